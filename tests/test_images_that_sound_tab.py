"""The Images that Sound tab appears when its weights can load, streams previews, and writes every sample as files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from PIL import Image

from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.registry import REGISTRY, available
from studio.app import working_tabs
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import images_that_sound
from studio.tabs.images_that_sound import ImagesThatSoundHandlers
from tests.conftest import FakeRequest, cached_repo
from tests.test_images_that_sound import tiny_model_folder
from tests.test_vocoders import TINY, write_auffusion_vocoder

@pytest.fixture
def paper_weights_cached(hub_cache):
    """Tiny random stand-ins for Stable Diffusion v1.5 and Auffusion, in the local cache under their paper ids."""
    tiny_model_folder(cached_repo(hub_cache, PAPER_IMAGE_MODEL), seed=0)
    audio = cached_repo(hub_cache, PAPER_AUDIO_MODEL)
    tiny_model_folder(audio, seed=1)
    write_auffusion_vocoder(audio, TINY)


def context(tmp_path, models="auto"):
    return StudioContext(build_config(models=models), SessionFiles(tmp_path / "files"))


def test_without_paper_weights_the_tab_runs_on_the_bundled_studio_weights(tmp_path, hub_cache):
    assert available("images_that_sound") and REGISTRY.resolve("images_that_sound")[0] == "studio"
    assert images_that_sound in working_tabs(context(tmp_path))
    assert not available("images_that_sound", "paper")
    assert images_that_sound not in working_tabs(context(tmp_path, models="paper"))


def test_tab_streams_previews_and_writes_samples(tmp_path, paper_weights_cached):
    assert available("images_that_sound") and REGISTRY.resolve("images_that_sound")[0] == "paper"  # paper wins
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    updates = list(handlers.generate("a castle", "bell ringing", "", 10, 7.5, 7.5, 0.9, 1.0, 0.64, 2, 7, "hifigan",
                                     images_that_sound.COMPOSED, 10, "", FakeRequest()))
    previews, final = updates[:-1], updates[-1]
    assert len(previews) == 2 and previews[0][0].shape == (256, 64) and previews[0][0].dtype == np.uint8
    _, gallery, wav, mp4, note, downloads, coloured = final
    assert coloured is None
    assert [caption for _, caption in gallery] == ["seed 7", "seed 8"]
    assert Image.open(gallery[0][0]).size == (62, 256)
    assert soundfile.info(wav).samplerate == 16000 and soundfile.info(wav).frames == 62 * 160
    assert mp4.endswith(".mp4") and "Seeds 7…8" in note and len(downloads) == 5
    assert [r.variant for r in REGISTRY.reports() if r.name == "images_that_sound"] == ["paper"]


def test_tab_runs_the_imprint_baseline(tmp_path, paper_weights_cached):
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, final, coloured = handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 1, 3,
                                            "griffinlim", images_that_sound.IMPRINT, 10, "a colorful castle",
                                            FakeRequest())
    assert Image.open(final[1][0][0]).size == (62, 256) and "Seeds 3…3" in final[4]
    colour = np.asarray(Image.open(coloured[-1]).convert("RGB"), dtype=np.float32)
    assert colour.shape == (256, 62, 3) and colour.std(axis=-1).max() > 0


def test_tab_refuses_settings_with_no_model_at_the_start(tmp_path, paper_weights_cached):
    import gradio as gr

    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    with pytest.raises(gr.Error, match="must be active from the start"):
        list(handlers.generate("a", "b", "", 4, 7.5, 7.5, 0.5, 0.5, 0.64, 1, 3, "hifigan", images_that_sound.COMPOSED,
                               10, "", FakeRequest()))
    with pytest.raises(gr.Error, match="Image prompt is empty"):
        list(handlers.generate(" ", "b", "", 4, 7.5, 7.5, 1, 1, 0.64, 1, 3, "hifigan", images_that_sound.COMPOSED,
                               10, "", FakeRequest()))


def test_tab_runs_the_sds_baseline_with_previews(tmp_path, paper_weights_cached):
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    updates = list(handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 3, 1, "griffinlim",
                                     images_that_sound.SDS, 20, "", FakeRequest()))
    assert len(updates) == 21  # a preview every iteration // 20, then the result (SDS makes one sample)
    assert len(updates[-1][1]) == 1


def test_tab_ranks_samples_by_clip_and_clap_when_the_scorers_are_cached(tmp_path, paper_weights_cached, hub_cache):
    from pipelines.images_that_sound import CLAP_MODEL, CLIP_MODEL
    from tests.test_images_that_sound_ranking import tiny_clap, tiny_clip

    tiny_clip(cached_repo(hub_cache, CLIP_MODEL))
    tiny_clap(cached_repo(hub_cache, CLAP_MODEL))
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, final = handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 3, 5, "griffinlim",
                                  images_that_sound.COMPOSED, 10, "", FakeRequest())
    captions = [caption for _, caption in final[1]]
    assert all("CLIP" in caption and "CLAP" in caption for caption in captions)
    assert sorted(int(caption.split(" ")[1]) for caption in captions) == [5, 6, 7]
    assert "Ranked best first by CLIP and CLAP" in final[4]
