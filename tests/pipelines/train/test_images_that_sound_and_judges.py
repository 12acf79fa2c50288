"""`python -m pipelines.train images_that_sound`: checkpoints, loss log and picture, resume, EMA, loadable output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import load_file

from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline
from pipelines.toyworld import sample
from pipelines.toyworld.captioned import CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES
from pipelines.train.__main__ import main
from pipelines.train.common import EMA, LossLog, checkpoint_dirs
from pipelines.train.data import folder_pools

TINY_RUN = ["images_that_sound", "--data", "toyworld", "--size", "tiny", "--pool", "8", "--width", "64",
            "--batch-size", "4", "--vae-batch-size", "2", "--vae-steps", "2", "--checkpoint-every", "1",
            "--seed", "3"]


def unet_steps(out) -> list[int]:
    return [r["step"] for r in LossLog(out / "loss_log.jsonl").read() if r["stage"] == "unets"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 2 + 2-step run with EMA decay 0 (the saved weights must then be the live ones)."""
    out = tmp_path_factory.mktemp("train") / "run"
    main(TINY_RUN + ["--out", str(out), "--steps", "2", "--ema-decay", "0"])
    return out


def test_run_writes_checkpoints_loss_log_and_loss_picture(trained):
    assert [p.name for p in checkpoint_dirs(trained / "checkpoints" / "vae")] == ["step-1", "step-2"]
    assert [p.name for p in checkpoint_dirs(trained / "checkpoints" / "unets")] == ["step-1", "step-2"]
    records = LossLog(trained / "loss_log.jsonl").read()
    assert [r["step"] for r in records if r["stage"] == "vae"] == [1, 2]
    assert unet_steps(trained) == [1, 2]
    assert all(np.isfinite(r["image_loss"]) and np.isfinite(r["audio_loss"]) for r in records if r["stage"] == "unets")
    with Image.open(trained / "loss_curve.png") as picture:
        assert picture.size[0] > 100 and picture.size[1] > 100
    assert json.loads((trained / "training_summary.json").read_text())["args"]["seed"] == 3


def test_resume_continues_the_step_count(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    main(TINY_RUN + ["--out", str(copy), "--steps", "4", "--ema-decay", "0", "--resume"])
    assert unet_steps(copy) == [1, 2, 3, 4]  # continued from step 2, no step repeated
    assert [p.name for p in checkpoint_dirs(copy / "checkpoints" / "unets")] == ["step-3", "step-4"]  # keeps 2
    assert [r["step"] for r in LossLog(copy / "loss_log.jsonl").read() if r["stage"] == "vae"] == [1, 2]  # VAE done
    log = LossLog(copy / "loss_log.jsonl").read()
    first = LossLog(trained / "loss_log.jsonl").read()
    assert log[: len(first)] == first


def test_ema_decay_zero_saves_the_live_weights(trained):
    live = load_file(trained / "checkpoints" / "unets" / "step-2" / "model.safetensors")
    for folder, prefix in (("image_model", "image_unet."), ("audio_model", "audio_unet.")):
        saved = load_file(trained / folder / "unet" / "diffusion_pytorch_model.safetensors")
        assert saved.keys() == {k[len(prefix):] for k in live if k.startswith(prefix)}
        for key, tensor in saved.items():
            torch.testing.assert_close(tensor, live[prefix + key], rtol=0, atol=0)


def test_ema_known_values():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = min(0.9, 1/10) = 0.1: 0.1·0 + 0.9·1
    ema.update(model)  # d = min(0.9, 2/11): (2/11)·0.9 + (9/11)·1
    target = torch.nn.Linear(1, 1, bias=False)
    ema.copy_to(target)
    assert target.weight.item() == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    restored = EMA(model, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 2 and restored.current_decay() == pytest.approx(min(0.9, 3 / 12))


def generates_a_finite_sample(folder) -> ImagesThatSoundPipeline:
    """The trainer's output loads as one folder and the default call makes a finite 0.64 s sample with it."""
    pipe = ImagesThatSoundPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("concentric rings", "a bell ringing", num_inference_steps=2, latent_width=8, griffin_lim_iterations=2,
               generator=torch.Generator().manual_seed(0))
    assert out.spectrogram.shape == (1, 256, 62) and np.isfinite(out.spectrogram).all()
    assert out.audio.shape == (1, 62 * 160) and np.isfinite(out.audio).all() and out.vocoder == "griffinlim"
    return pipe


def test_output_is_the_pipelines_own_layout_and_generates(trained, tmp_path):
    pipe = generates_a_finite_sample(trained)
    assert pipe.vae.config.scaling_factor > 0
    resaved = pipe.save_pretrained(tmp_path / "resaved")
    for model in ("image_model", "audio_model"):  # exactly what save_pretrained writes, nothing more
        assert sorted(p.name for p in (trained / model).iterdir()) == sorted(p.name for p in
                                                                             (resaved / model).iterdir())


def test_folder_format(tmp_path, tone):
    Image.fromarray(np.full((32, 48), 200, np.uint8)).save(tmp_path / "a.png")
    soundfile.write(tmp_path / "b.wav", tone(440.0, 0.3, 22050), 22050)  # resampled to 16 kHz, zero-padded
    lines = [{"file": "a.png", "caption": "a grey square", "kind": "image"},
             {"file": "b.wav", "caption": "a beep", "kind": "sound"}]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    pictures, sounds = folder_pools(tmp_path, width=64)
    assert pictures.images.shape == (1, 256, 64) and sounds.images.shape == (1, 256, 64)
    assert pictures.captions == ["a grey square"] and sounds.captions == ["a beep"]
    assert 0.7 < pictures.images.mean() < 0.85 and sounds.images[:, :, :20].max() > sounds.images[:, :, -5:].max()
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "a.png", "kind": "video"}) + "\n")
    with pytest.raises(ValueError, match="kind image|sound"):
        folder_pools(tmp_path, width=64)


def run_on_two_processes(arguments: list[str]) -> None:
    """`accelerate launch` on several devices = several processes: here torchrun with 2 CPU processes (gloo)."""
    import os
    import subprocess
    import sys

    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "pipelines.train",
               *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_train_on_different_batches_and_write_one_loadable_model(tmp_path):
    out = tmp_path / "ddp"
    run_on_two_processes([*TINY_RUN, "--out", str(out), "--steps", "1", "--vae-steps", "1"])
    assert [r["step"] for r in LossLog(out / "loss_log.jsonl").read()] == [1, 1]  # the main process logs, once
    generates_a_finite_sample(out)


def test_the_judges_train_on_two_processes(tmp_path):
    from pipelines.metrics.judges import load_judge

    out = tmp_path / "judges"
    run_on_two_processes(["judges", "--data", "toyworld", "--out", str(out), "--steps", "1", "--batch-size", "4",
                          "--pool", "8", "--held-out", "4", "--judges", "image,sound"])
    assert [r["step"] for r in LossLog(out / "loss_log.jsonl").read()] == [1]
    for kind, classes in (("image", CORE_IMAGE_CLASSES), ("sound", CORE_SOUND_CLASSES)):
        judge = load_judge(kind, out)
        assert judge.config.classes == classes
        toy = sample(kind, 4, seed=5, classes=classes, height=256, width=64, balanced=True)
        probabilities = judge.probabilities(toy.images if kind == "image" else toy.spectrograms)
        assert probabilities.shape == (4, len(classes)) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_each_process_draws_its_own_batches():
    from types import SimpleNamespace

    from pipelines.train.common import batch_indices, data_seed

    seeds = [data_seed(SimpleNamespace(process_index=k), 3) for k in range(2)]
    assert seeds[0] == 3  # one process: the seed as given (the bundled weights' runs are unchanged)
    assert not torch.equal(batch_indices(seeds[0], 5, 16, 1000), batch_indices(seeds[1], 5, 16, 1000))
