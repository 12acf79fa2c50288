"""Fine-tuning (`--init`, `--lora-rank`, an artist's folder or zip) on tiny components: Images that Sound in depth,
the other trainers' starting points in brief."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import load_file

from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline
from pipelines.train.__main__ import main
from pipelines.train.common import LossLog, checkpoint_dirs
from pipelines.train.data import read_data
from tests.factories import cached_repo, tiny_images_that_sound_models

FINE_TUNE = ["images_that_sound", "--width", "64", "--batch-size", "2", "--checkpoint-every", "1", "--seed", "1"]
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Tiny random image and audio models in the studio layout (what `save_pretrained` writes)."""
    return tiny_images_that_sound_models(tmp_path_factory.mktemp("base") / "models")


def write_sound(path, freq: float, seconds: float = 0.4, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.5 * np.sign(np.sin(2 * np.pi * freq * t))).astype(np.float32), rate)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """An artist's folder: two good sounds, a picture, and three bad files (no captions.jsonl)."""
    folder = tmp_path_factory.mktemp("artist") / "field_recordings"
    folder.mkdir()
    write_sound(folder / "buzzing_saw.wav", 220.0)
    write_sound(folder / "buzzing-saw-2.wav", 330.0)
    Image.fromarray(np.full((32, 48), 200, np.uint8)).save(folder / "grey_square.png")
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    (folder / "notes.txt").write_text("not a sound")
    return folder


def run(data, out, *options: str) -> None:
    main([*FINE_TUNE, "--data", str(data), "--out", str(out), *options])


@pytest.fixture(scope="module")
def adapter(base, sounds, tmp_path_factory):
    """A rank-2 LoRA on the audio model (and its text encoder), 2 steps at a large learning rate, previewed at the
    end."""
    out = tmp_path_factory.mktemp("lora") / "run"
    run(sounds, out, "--init", str(base), "--models", "audio", "--lora-rank", "2", "--lora-text-encoder",
        "--steps", "2", "--lr", "0.05", "--ema-decay", "0", "--preview-every", "5")
    return out


def spectrogram(pipe: ImagesThatSoundPipeline, audio_prompt: str = "bell ringing") -> np.ndarray:
    out = pipe("a castle", audio_prompt, num_inference_steps=2, latent_width=8, vocoder="griffinlim",
               griffin_lim_iterations=1, generator=torch.Generator().manual_seed(0))
    return out.spectrogram


def load_base(base) -> ImagesThatSoundPipeline:
    pipe = ImagesThatSoundPipeline.from_pretrained(base, vocoder=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --init ---------------------------------------------------------------------------------------------------------------
def test_init_from_a_saved_folder_starts_from_its_weights(base, sounds, tmp_path):
    out = tmp_path / "zero"
    run(sounds, out, "--init", str(base), "--steps", "0", "--ema-decay", "0")
    for model in ("image_model", "audio_model"):
        saved, start = load_file(out / model / UNET_FILE), load_file(base / model / UNET_FILE)
        assert saved.keys() == start.keys()
        for key, tensor in start.items():
            torch.testing.assert_close(saved[key], tensor, rtol=0, atol=0)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["init"] == str(base) and summary["models"] == ["image", "audio"]
    assert (out / "audio_model" / "vocoder" / "vocoder.pt").is_file()  # the starting HiFi-GAN is kept


def test_full_fine_tuning_of_the_audio_model_leaves_the_image_model_alone(base, sounds, tmp_path):
    out = tmp_path / "full"
    run(sounds, out, "--init", str(base), "--models", "audio", "--steps", "1", "--lr", "0.01", "--ema-decay", "0")
    image, start_image = load_file(out / "image_model" / UNET_FILE), load_file(base / "image_model" / UNET_FILE)
    assert all(torch.equal(image[k], v) for k, v in start_image.items())
    audio, start_audio = load_file(out / "audio_model" / UNET_FILE), load_file(base / "audio_model" / UNET_FILE)
    assert any(not torch.equal(audio[k], v) for k, v in start_audio.items())
    pipe = load_base(out)  # the fine-tuned folder loads and knows the captions' new words
    assert "buzzing" in pipe.audio_tokenizer.get_vocab()
    assert np.isfinite(spectrogram(pipe, "buzzing saw")).all()


def test_init_paper_loads_the_paper_ids_from_the_local_cache(hub_cache, sounds, tmp_path):
    with pytest.raises(ValueError, match="--init paper: the paper's weights"):
        run(sounds, tmp_path / "nothing", "--init", "paper", "--models", "audio", "--steps", "1")
    root = tiny_images_that_sound_models(tmp_path / "paper")
    for repo_id, folder in ((PAPER_IMAGE_MODEL, "image_model"), (PAPER_AUDIO_MODEL, "audio_model")):
        destination = cached_repo(hub_cache, repo_id)
        destination.rmdir()
        (root / folder).rename(destination)
    out = tmp_path / "paper_lora"
    run(sounds, out, "--init", "paper", "--models", "audio", "--lora-rank", "2", "--steps", "1")
    assert json.loads((out / "audio_lora" / "adapter.json").read_text())["base"]["init"] == "paper"


@pytest.mark.parametrize(("options", "message"), [
    (["--models", "audio"], "training from scratch makes both models"),
    (["--lora-rank", "2"], "training from scratch makes both models"),
    (["--init", "studio", "--lora-text-encoder"], "--lora-text-encoder needs --lora-rank"),
    (["--init", "studio", "--models", "voice"], "--models must be"),
    (["--init", "/no/such/folder"], "no such folder"),
])
def test_options_that_make_no_sense_are_refused(sounds, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run(sounds, tmp_path / "run", "--steps", "1", *options)


# LoRA -----------------------------------------------------------------------------------------------------------------
def test_the_trainer_saves_only_a_small_adapter(adapter, base):
    assert sorted(p.name for p in (adapter / "audio_lora").iterdir()) == ["adapter.json", "adapter.safetensors"]
    assert not (adapter / "audio_model").exists() and not (adapter / "image_lora").exists()
    config = json.loads((adapter / "audio_lora" / "adapter.json").read_text())
    assert config["model"] == "audio" and config["rank"] == 2 and config["base"]["init"] == str(base)
    assert config["added_words"] == ["buzzing", "saw", "2"]  # file names as captions; the tiny vocabulary lacks them
    tensors = load_file(adapter / "audio_lora" / "adapter.safetensors")
    assert any(k.startswith("text_encoder.") for k in tensors) and tensors["added_embeddings"].shape == (3, 8)
    lora_size = (adapter / "audio_lora" / "adapter.safetensors").stat().st_size
    assert lora_size < (base / "audio_model" / UNET_FILE).stat().st_size / 2


def test_a_lora_changes_the_output_and_scale_zero_is_the_base_exactly(adapter, base):
    pipe = load_base(base)
    before, before_new_words = spectrogram(pipe), spectrogram(pipe, "buzzing saw")
    config = pipe.load_lora_weights(adapter, model="audio")
    assert config["rank"] == 2
    adapted = spectrogram(pipe)
    assert np.abs(adapted - before).max() > 1e-4
    pipe.set_lora_scale(0.0)
    np.testing.assert_array_equal(spectrogram(pipe), before)
    pipe.set_lora_scale(1.0, model="audio")
    np.testing.assert_array_equal(spectrogram(pipe), adapted)
    with pytest.raises(ValueError, match="call unload_lora_weights"):
        pipe.save_pretrained(adapter / "never")
    pipe.unload_lora_weights()
    np.testing.assert_array_equal(spectrogram(pipe), before)
    np.testing.assert_array_equal(spectrogram(pipe, "buzzing saw"), before_new_words)  # the added words are gone
    assert len(pipe.audio_tokenizer) == len(pipe.image_tokenizer)


def test_a_lora_run_loads_as_its_base_with_the_adapter(adapter, base):
    by_hand = load_base(base)
    by_hand.load_lora_weights(adapter, model="audio")
    run_folder = ImagesThatSoundPipeline.from_pretrained(adapter, vocoder=None)  # what a weights choice loads
    run_folder.set_progress_bar_config(disable=True)
    assert run_folder.lora_models(None) == ["audio"]
    np.testing.assert_array_equal(spectrogram(run_folder, "buzzing saw"), spectrogram(by_hand, "buzzing saw"))


def test_a_fine_tunes_preview_is_the_trained_audio_model_alone(adapter, sounds):
    """One model fine-tuned: the preview is that model's own sample (the image model's warm start 0), the one the
    run's folder draws with the same prompts and settings."""
    from pipelines.train.images_that_sound import PREVIEW_STEPS, preview_prompts

    [record] = LossLog(adapter / "loss_log.jsonl").previews()  # every 5 steps: only the one at the end
    assert record["step"] == 2 and record["preview"] == ["previews/step-000002.png", "previews/step-000002.wav"]
    data = read_data(str(sounds), 64, None)
    image_prompt, audio_prompt = preview_prompts(data.pictures, data.sounds)
    pipe = ImagesThatSoundPipeline.from_pretrained(adapter, vocoder=None)
    output = pipe(image_prompt, audio_prompt, num_inference_steps=PREVIEW_STEPS, warm_start_image=0.0,
                  latent_width=8, vocoder="griffinlim", generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(np.asarray(Image.open(adapter / record["preview"][0])), np.asarray(output.image[0]))


def test_a_lora_for_one_model_is_refused_on_the_other(adapter, base):
    pipe = load_base(base)
    with pytest.raises(ValueError, match="holds no LoRA adapter"):
        pipe.load_lora_weights(adapter, model="image")
    with pytest.raises(ValueError, match="for the audio model, not the image model"):
        pipe.load_lora_weights(adapter / "audio_lora", model="image")


def test_a_lora_fine_tune_resumes_where_it_stopped(base, sounds, tmp_path):
    options = ["--init", str(base), "--models", "audio", "--lora-rank", "2", "--lr", "0.05", "--ema-decay", "0.9"]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    run(sounds, straight, *options, "--steps", "4")
    run(sounds, halves, *options, "--steps", "2")
    run(sounds, halves, *options, "--steps", "4", "--resume")
    assert [r["step"] for r in LossLog(halves / "loss_log.jsonl").read()] == [1, 2, 3, 4]
    assert [p.name for p in checkpoint_dirs(halves / "checkpoints" / "unets")] == ["step-3", "step-4"]
    whole = load_file(straight / "audio_lora" / "adapter.safetensors")
    resumed = load_file(halves / "audio_lora" / "adapter.safetensors")
    assert whole.keys() == resumed.keys()
    for key, tensor in whole.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=1e-5, atol=1e-7)


# An artist's data -----------------------------------------------------------------------------------------------------
def test_bad_files_are_skipped_with_their_reasons(adapter, sounds):
    skipped = {item["file"]: item["reason"] for item in json.loads((adapter / "skipped.json").read_text())}
    assert set(skipped) == {"broken.wav", "empty.wav", "notes.txt"}
    assert "could not be used" in skipped["broken.wav"] and "not a picture" in skipped["notes.txt"]
    data = read_data(sounds, width=64)
    assert data.sounds.captions == ["buzzing saw 2", "buzzing saw"] and data.pictures.captions == ["grey square"]
    assert data.sounds.images.shape == (2, 256, 64)


def test_a_zip_with_one_caption_for_all(sounds, tmp_path):
    archive = tmp_path / "sounds.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(sounds.iterdir()):
            bundle.write(path, f"field_recordings/{path.name}")  # one folder inside, as zipping a folder makes
    data = read_data(archive, width=64, caption="my field recordings")
    assert data.sounds.captions == ["my field recordings"] * 2 and len(data.pictures) == 1
    assert {item["file"] for item in data.skipped} == {"broken.wav", "empty.wav", "notes.txt"}


def test_too_little_data_says_how_much_is_needed(base, sounds, tmp_path):
    folder = tmp_path / "pictures_only"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "black.png")
    (folder / "bad.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"needs at least 1 usable sound .*found 0 \(1 file\(s\) skipped"):
        run(folder, tmp_path / "run", "--init", str(base), "--models", "audio", "--steps", "1")


# The other trainers' starting points ------------------------------------------------------------------------------------
def test_mm_diffusion_starts_from_a_saved_folder_and_records_it(tmp_path):
    from argparse import Namespace

    from pipelines.train.mm_diffusion import starting_pipeline, starting_unet
    from tests.factories import tiny_mm_diffusion

    folder = tiny_mm_diffusion().save_pretrained(tmp_path / "start")
    args = Namespace(init=str(folder), init_checkpoint=None)
    start_weights = load_file(folder / "model.safetensors")
    unet = starting_unet(starting_pipeline(args))
    assert unet.training and all(p.requires_grad for p in unet.parameters())
    for key, tensor in unet.state_dict().items():
        torch.testing.assert_close(tensor, start_weights[key], rtol=0, atol=0)
    out = tmp_path / "run"
    main(["mm_diffusion", "--data", "toyworld", "--init", str(folder), "--pool", "1", "--steps", "1",
          "--batch-size", "1", "--out", str(out)])  # --size studio is ignored: the network is the tiny one
    config = json.loads((out / "model.json").read_text())
    assert config["init"] == str(folder) and config["flags"] == json.loads((folder / "model.json").read_text())["flags"]
    with pytest.raises(ValueError, match="--init paper needs --init-checkpoint"):
        starting_pipeline(Namespace(init="paper", init_checkpoint=None))
    with pytest.raises(ValueError, match="--lora-rank is offered for images_that_sound and mm_diffusion"):
        main(["impact_sound", "--data", "toyworld", "--lora-rank", "4", "--out", str(out)])  # MM-Diffusion's LoRA:
    # tests/pipelines/train/test_mm_diffusion_lora.py


def test_impact_sound_refuses_starting_points_that_cannot_fit(tmp_path):
    from tests.factories import tiny_impact_diffusion

    folder = tiny_impact_diffusion().save_pretrained(tmp_path / "start")
    common = ["impact_sound", "--data", "toyworld", "--out", str(tmp_path / "run"), "--steps", "1"]
    with pytest.raises(ValueError, match="its visual encoder knows the materials"):
        main([*common, "--init", str(folder)])  # the tiny model knows 3 materials, the toy world has more
    with pytest.raises(ValueError, match="no published weights"):
        main([*common, "--init", "paper"])


def test_visual_echoes_fine_tunes_a_saved_folder(tmp_path):
    from tests.factories import tiny_visual_echoes

    folder = tiny_visual_echoes().save_pretrained(tmp_path / "start")
    out = tmp_path / "run"
    main(["visual_echoes", "--data", "toyworld", "--init", str(folder), "--pool", "4", "--tokenizer-steps", "1",
          "--tokenizer-batch-size", "2", "--steps", "1", "--batch-size", "2", "--out", str(out)])
    record = json.loads((out / "visual_echoes.json").read_text())["training_record"]
    assert record["init"] == str(folder) and record["size"] == "tiny"  # the preset the starting networks match
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline
    from pipelines.weights import ASSETS

    studio = tmp_path / "from-studio"  # the bundled weights, their codebooks kept
    main(["visual_echoes", "--data", "toyworld", "--init", "studio", "--pool", "2", "--stage", "transformer",
          "--steps", "1", "--batch-size", "2", "--warmup", "1", "--out", str(studio)])
    assert json.loads((studio / "visual_echoes.json").read_text())["training_record"]["init"] == "studio"
    bundled = VisualEchoesPipeline.from_pretrained(ASSETS / "visual_echoes")
    tuned = VisualEchoesPipeline.from_pretrained(studio)
    assert tuned.transformer.codebook_sizes == bundled.transformer.codebook_sizes


def test_the_counted_adapter_size_is_what_peft_adds(base):
    from diffusers import UNet2DConditionModel

    from pipelines.images_that_sound import lora

    unet = UNet2DConditionModel.from_pretrained(base / "audio_model" / "unet")
    expected = lora.lora_parameter_count(unet, 4, lora.UNET_TARGETS)
    added = sum(p.numel() for p in lora.add_lora(unet, 4, lora.UNET_TARGETS))
    assert added == expected > 0 and not any(p.requires_grad for n, p in unet.named_parameters() if "lora_" not in n)
