"""Vocoders: our HiFi-GAN loads Auffusion's vocoder format exactly; the registry finds it in the local cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.audio import SPECS
from pipelines.registry import REGISTRY, available, describe, get_pipeline
from pipelines.spectrogram_lab.pipeline_spectrogram_lab import SpectrogramLabPipeline
from pipelines.vocoders import AUFFUSION_REPO, GriffinLimVocoder, load_hifigan
from pipelines.vocoders.hifigan import HiFiGAN, HiFiGANConfig
from tests.factories import TINY, cached_repo, write_auffusion_vocoder


def test_hifigan_loads_auffusion_format_and_matches_the_weight_normed_model(tmp_path):
    reference = write_auffusion_vocoder(tmp_path, TINY)
    vocoder = load_hifigan(tmp_path, SPECS["auffusion"])
    log_mel = torch.randn(256, 12) - 4
    expected = reference(log_mel[None])[0]
    audio = vocoder(log_mel.numpy())
    assert audio.shape == (12 * 160,) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, expected.detach().numpy(), atol=1e-5)
    assert np.abs(audio).max() <= 1.0


def test_hifigan_resblock_2_and_config_checks():
    config = dict(TINY, resblock="2", resblock_dilation_sizes=[[1, 3], [1, 3]])
    model = HiFiGAN(HiFiGANConfig.from_dict(config)).eval()
    assert model.vocode(torch.zeros(256, 3)).shape == (480,)
    with pytest.raises(ValueError, match="resblock must be"):
        HiFiGANConfig.from_dict(dict(TINY, resblock="3"))


def test_hifigan_refuses_a_spectrogram_it_was_not_trained_for(tmp_path):
    write_auffusion_vocoder(tmp_path, TINY)
    with pytest.raises(ValueError, match="expects 256 mels at hop 160"):
        load_hifigan(tmp_path, SPECS["visual_echoes"])


def test_registry_uses_paper_hifigan_from_the_local_cache_offline(hub_cache):
    assert not available("hifigan")
    assert "not in the local cache and the studio is offline" in describe("hifigan")

    write_auffusion_vocoder(cached_repo(hub_cache, AUFFUSION_REPO), TINY)
    assert available("hifigan")
    vocoder = get_pipeline("hifigan", device="cpu")
    assert [report.variant for report in REGISTRY.reports() if report.name == "hifigan"] == ["paper"]
    played = SpectrogramLabPipeline()(np.full((256, 50), 0.4), seconds=0.5, vocoder=vocoder)
    assert played.audio.shape == (8000,) and np.isfinite(played.audio).all()


def test_griffin_lim_vocoder_is_the_audio_convention():
    log_mel = np.full((256, 20), -6.0, dtype=np.float32)
    audio = GriffinLimVocoder(SPECS["auffusion"], n_iter=4)(log_mel)
    assert audio.shape == (3200,)
