"""The bundled `studio` Images that Sound weights load offline through the registry and generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pipelines.images_that_sound.entries import STUDIO_FOLDER
from pipelines.registry import REGISTRY, _register_builtin_pipelines, get_pipeline
from studio.app import working_tabs
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import images_that_sound

FOLDER = STUDIO_FOLDER


@pytest.fixture
def studio_only():
    """The registry as `--models studio` configures it (offline), restored afterwards."""
    _register_builtin_pipelines()
    saved = (REGISTRY.default_variant, REGISTRY.device_preference, REGISTRY.offline, REGISTRY.max_resident)
    REGISTRY.configure(default_variant="studio", device="cpu", offline=True)
    yield REGISTRY
    REGISTRY.configure(default_variant=saved[0], device=saved[1], offline=saved[2], max_resident=saved[3])
    REGISTRY.clear()


def test_bundled_weights_are_small_fp16_safetensors():
    files = list(FOLDER.rglob("*"))
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert len(weights) == 6  # unet, vae, text encoder for each of image_model and audio_model
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert sum(f.stat().st_size for f in files if f.is_file()) < 20e6
    for path in weights:
        with safe_open(str(path), "pt") as handle:
            assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}, path


def test_studio_variant_loads_offline_and_generates(studio_only):
    assert studio_only.resolve("images_that_sound", "studio")[0] == "studio"
    assert studio_only.resolve("images_that_sound")[0] == "studio"
    pipe = get_pipeline("images_that_sound", "studio", device="cpu")
    assert pipe.vocoder is None and pipe.image_unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    out = pipe("concentric rings", "a bell ringing", num_inference_steps=2, latent_width=8,
               generator=torch.Generator().manual_seed(0))  # the default vocoder: Griffin-Lim, as there is no HiFi-GAN
    assert out.vocoder == "griffinlim"
    assert out.spectrogram.shape == (1, 256, 62) and np.isfinite(out.spectrogram).all()
    assert out.audio.shape == (1, 62 * 160) and np.isfinite(out.audio).all()


def test_tab_works_with_studio_models(tmp_path, studio_only):
    context = StudioContext(build_config(models="studio"), SessionFiles(tmp_path / "files"))
    assert images_that_sound in working_tabs(context)


def test_tab_says_griffin_lim_made_the_sound_and_refuses_a_missing_hifigan(tmp_path, studio_only):
    import gradio as gr

    from studio.tabs.images_that_sound import COMPOSED, ImagesThatSoundHandlers
    from tests.factories import FakeRequest

    handlers = ImagesThatSoundHandlers(StudioContext(build_config(models="studio"), SessionFiles(tmp_path)), "studio")
    settings = ("concentric rings", "a bell ringing", "", 2, 3, 3, 0.9, 1.0, 0.64, 1, 0)
    *_, final = handlers.generate(*settings, "auto", COMPOSED, 10, "", FakeRequest())
    assert "Griffin-Lim made the sound" in final[4]
    with pytest.raises(gr.Error, match="These weights come without a HiFi-GAN vocoder"):
        list(handlers.generate(*settings, "hifigan", COMPOSED, 10, "", FakeRequest()))
