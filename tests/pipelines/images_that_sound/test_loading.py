"""One loading path for Images that Sound: the bundled studio folder, its save → load round trip, the paper's two
models (local or from the Hub cache) with the HiFi-GAN found in the audio model's vocoder/, and the default call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.images_that_sound.entries import STUDIO_FOLDER
from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline
from tests.factories import cached_repo, tiny_images_that_sound_models, tiny_model_folder

SAVED_LAYOUT = {
    "image_model/unet/config.json", "image_model/unet/diffusion_pytorch_model.safetensors",
    "image_model/text_encoder/config.json", "image_model/text_encoder/model.safetensors",
    "image_model/tokenizer/tokenizer.json", "image_model/tokenizer/tokenizer_config.json",
    "image_model/scheduler/scheduler_config.json",
    "audio_model/unet/config.json", "audio_model/unet/diffusion_pytorch_model.safetensors",
    "audio_model/vae/config.json", "audio_model/vae/diffusion_pytorch_model.safetensors",
    "audio_model/text_encoder/config.json", "audio_model/text_encoder/model.safetensors",
    "audio_model/tokenizer/tokenizer.json", "audio_model/tokenizer/tokenizer_config.json",
}
VOCODER_FILES = {"audio_model/vocoder/config.json", "audio_model/vocoder/vocoder.pt"}


def files_in(folder) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def sample(pipe: ImagesThatSoundPipeline, **kwargs):
    """The default call, made short: 2 steps on 8 latent columns (0.64 s), seed 0."""
    pipe.set_progress_bar_config(disable=True)
    return pipe("concentric rings", "a chiming bell", num_inference_steps=2, latent_width=8,
                generator=torch.Generator().manual_seed(0), **kwargs)


@pytest.fixture(scope="module")
def studio():
    return ImagesThatSoundPipeline.from_pretrained(STUDIO_FOLDER)


def test_the_bundled_folder_round_trips_through_save_pretrained(studio, tmp_path):
    saved = studio.save_pretrained(tmp_path / "saved")
    assert files_in(saved) == SAVED_LAYOUT  # no vocoder: the studio models use Griffin-Lim
    again = ImagesThatSoundPipeline.from_pretrained(saved)
    first, second = sample(studio, griffin_lim_iterations=2), sample(again, griffin_lim_iterations=2)
    np.testing.assert_array_equal(first.spectrogram, second.spectrogram)
    np.testing.assert_array_equal(first.audio, second.audio)


def test_the_default_call_on_the_studio_weights_uses_griffin_lim(studio):
    assert studio.vocoder is None
    out = sample(studio)
    assert out.vocoder == "griffinlim" and out.spectrogram.shape == (1, 256, 62) and out.audio.shape == (1, 62 * 160)
    assert np.isfinite(out.audio).all() and np.abs(out.audio).max() > 0
    with pytest.raises(ValueError, match="without a HiFi-GAN vocoder"):
        sample(studio, vocoder="hifigan")


def test_the_paper_layout_loads_its_vocoder_by_default_and_saves_it(tmp_path):
    root = tiny_images_that_sound_models(tmp_path / "paper")
    pipe = ImagesThatSoundPipeline.from_pretrained(image_model=root / "image_model", audio_model=root / "audio_model")
    assert pipe.vocoder is not None
    out = sample(pipe)
    assert out.vocoder == "hifigan" and out.audio.shape == (1, 62 * 160) and np.isfinite(out.audio).all()
    saved = pipe.save_pretrained(tmp_path / "saved")
    assert files_in(saved) == SAVED_LAYOUT | VOCODER_FILES
    np.testing.assert_allclose(sample(ImagesThatSoundPipeline.from_pretrained(saved)).audio, out.audio, atol=1e-6)
    without = ImagesThatSoundPipeline.from_pretrained(image_model=root / "image_model",
                                                      audio_model=root / "audio_model", vocoder=None)
    assert without.vocoder is None and sample(without, griffin_lim_iterations=2).vocoder == "griffinlim"


def test_the_paper_ids_load_from_the_hub_cache_with_or_without_a_vocoder(hub_cache, tmp_path):
    root = tiny_images_that_sound_models(tmp_path / "paper")
    for repo_id, folder in ((PAPER_IMAGE_MODEL, "image_model"), (PAPER_AUDIO_MODEL, "audio_model")):
        destination = cached_repo(hub_cache, repo_id)
        destination.rmdir()
        (root / folder).rename(destination)
    assert ImagesThatSoundPipeline.from_pretrained().vocoder is not None  # the paper's defaults, offline

    audio_without_vocoder = "someone/audio-model-without-vocoder"
    tiny_model_folder(cached_repo(hub_cache, audio_without_vocoder), seed=1)
    assert ImagesThatSoundPipeline.from_pretrained(audio_model=audio_without_vocoder).vocoder is None


def test_a_folder_and_two_models_are_refused_together():
    with pytest.raises(ValueError, match="either a studio-layout `folder` or"):
        ImagesThatSoundPipeline.from_pretrained(STUDIO_FOLDER, image_model=PAPER_IMAGE_MODEL)
