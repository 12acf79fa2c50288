"""`--preview-every N`: every trainer samples its current (EMA) model every N steps and at the end of its generating
stage into OUT/previews/, logs each preview in loss_log.jsonl, and trains exactly as without previews."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import load_file

from pipelines.train.__main__ import main
from pipelines.train.common import EMA, LossLog, as_exported, preview_due

TINY_RUNS = {
    "images_that_sound": ["--size", "tiny", "--pool", "8", "--width", "64", "--batch-size", "4",
                          "--vae-batch-size", "2", "--vae-steps", "1"],
    "impact_sound": ["--size", "tiny", "--clips", "8", "--batch-size", "4", "--residual-steps", "1",
                     "--residual-batch-size", "2", "--visual-steps", "1", "--visual-batch-size", "2"],
    "mm_diffusion": ["--size", "tiny", "--pool", "3"],
    "visual_echoes": ["--size", "tiny", "--pool", "24", "--tokenizer-batch-size", "4", "--batch-size", "8",
                      "--tokenizer-steps", "1", "--warmup", "1"],
}
PREVIEWED_STAGE = {"images_that_sound": "unets", "impact_sound": "diffusion", "mm_diffusion": "train",
                   "visual_echoes": "transformer"}
PICTURE_SHAPE = {"images_that_sound": (256, 62), "mm_diffusion": (64, 4 * 64, 3)}  # 62: the pipeline crops padding


def tiny_run(generator: str, out, *extra: str) -> None:
    main([generator, "--data", "toyworld", "--out", str(out), "--steps", "3", "--ema-decay", "0.9",
          "--checkpoint-every", "10", "--seed", "3", *TINY_RUNS[generator], *extra])


@pytest.mark.parametrize("generator", list(TINY_RUNS))
def test_previews_are_written_every_n_steps_and_at_the_end_as_real_files_and_logged(generator, tmp_path):
    tiny_run(generator, tmp_path, "--preview-every", "2")
    records = LossLog(tmp_path / "loss_log.jsonl").previews()
    assert [(r["stage"], r["step"]) for r in records] == [(PREVIEWED_STAGE[generator], 2),
                                                          (PREVIEWED_STAGE[generator], 3)]
    for record in records:
        assert record["preview"] == [f"previews/step-{record['step']:06d}.png",
                                     f"previews/step-{record['step']:06d}.wav"]
        picture = np.asarray(Image.open(tmp_path / record["preview"][0]))
        assert picture.dtype == np.uint8 and picture.ndim in (2, 3) and min(picture.shape[:2]) >= 8
        assert picture.shape == PICTURE_SHAPE.get(generator, picture.shape)
        sound, rate = soundfile.read(tmp_path / record["preview"][1])
        assert rate in (16_000, 22_050, 44_100) and sound.ndim == 1 and len(sound) > rate // 10
        assert np.isfinite(sound).all() and sound.std() > 0  # not constant
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == [
        "step-000002.png", "step-000002.wav", "step-000003.png", "step-000003.wav"]
    assert all("preview" not in r for r in LossLog(tmp_path / "loss_log.jsonl").read())  # losses stay losses


def test_previews_leave_the_training_unchanged(tmp_path):
    """Same seed with and without previews: the same losses and the same exported (EMA) weights, bit for bit (the
    preview samples in a forked RNG and puts the live weights, modes and gradient flags back)."""
    tiny_run("mm_diffusion", tmp_path / "with", "--preview-every", "1")
    tiny_run("mm_diffusion", tmp_path / "without")  # the default: no previews
    assert len(LossLog(tmp_path / "with" / "loss_log.jsonl").previews()) == 3
    assert LossLog(tmp_path / "without" / "loss_log.jsonl").previews() == []
    assert not (tmp_path / "without" / "previews").exists()
    assert LossLog(tmp_path / "with" / "loss_log.jsonl").read() == LossLog(tmp_path / "without" / "loss_log.jsonl").read()
    with_previews, without = load_file(tmp_path / "with" / "model.safetensors"), load_file(
        tmp_path / "without" / "model.safetensors")
    for key, tensor in without.items():
        torch.testing.assert_close(with_previews[key], tensor, rtol=0, atol=0)


def test_the_last_preview_is_the_exported_models_own_sample(tmp_path):
    """The preview samples the EMA weights, which are what the run exports: the end-of-run preview is what the
    exported model draws with the same sampler and seed."""
    from pipelines.mm_diffusion.clips import enlarged
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
    from pipelines.train.mm_diffusion import PREVIEW_STEPS

    tiny_run("mm_diffusion", tmp_path, "--preview-every", "5")  # 3 steps: only the end-of-run preview
    assert [r["step"] for r in LossLog(tmp_path / "loss_log.jsonl").previews()] == [3]
    exported = MMDiffusionPipeline.from_pretrained(tmp_path)
    video = exported(num_inference_steps=PREVIEW_STEPS, sampler="ddim", generator=torch.Generator().manual_seed(3)).video
    strip = np.concatenate(list(enlarged(video[0])), axis=1)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "previews" / "step-000003.png")), strip)


@pytest.mark.parametrize("generator", list(TINY_RUNS))
def test_a_negative_preview_interval_is_refused(generator, tmp_path):
    with pytest.raises(ValueError, match="--preview-every must be 0"):
        tiny_run(generator, tmp_path, "--preview-every", "-1")


def test_preview_steps():
    assert [s for s in range(1, 11) if preview_due(s, 10, 4)] == [4, 8, 10]
    assert [s for s in range(1, 9) if preview_due(s, 8, 4)] == [4, 8]
    assert not any(preview_due(s, 10, 0) for s in range(1, 11))


def test_as_exported_swaps_in_the_ema_weights_and_puts_everything_back():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model[0].bias.requires_grad_(False)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    live = model[0].weight.detach().clone()
    with as_exported([(model, ema)]):
        torch.testing.assert_close(model[0].weight, live - 1.0)  # the shadow: the weights before the change
        assert not model.training and not model[1].training and not torch.is_grad_enabled()
        model[0].weight.requires_grad_(False)  # as a pipeline built around it does
    torch.testing.assert_close(model[0].weight, live)
    assert model.training and model[1].training
    assert model[0].weight.requires_grad and not model[0].bias.requires_grad
