"""The audio conventions of pipelines/audio.py, pinned with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from pipelines import audio
from pipelines.audio import SPECS

AUFFUSION = SPECS["auffusion"]


def test_specs_hold_the_papers_values():
    assert (AUFFUSION.sample_rate, AUFFUSION.n_fft, AUFFUSION.hop_length, AUFFUSION.win_length) == (16000, 2048, 160,
                                                                                                    1024)
    assert (AUFFUSION.n_mels, AUFFUSION.fmin, AUFFUSION.fmax) == (256, 0.0, 8000.0)
    assert AUFFUSION.frames_for(AUFFUSION.clip_samples) == 1024  # 10.24 s = 1024 frames, as Auffusion pads to
    assert SPECS["mm_diffusion"].clip_samples == 25600  # 1.6 s at 16 kHz
    impact = SPECS["impact"]
    assert (impact.sample_rate, impact.clip_samples, impact.n_fft, impact.hop_length) == (44100, 11025, 2048, 256)
    echoes = SPECS["visual_echoes"]
    assert (echoes.sample_rate, echoes.n_mels, echoes.fmin, echoes.fmax) == (22050, 80, 125.0, 7600.0)


def auffusion_reference_log_mel(samples: np.ndarray) -> np.ndarray:
    """Auffusion's analysis written independently with torch.stft, as its converter does it."""
    x = torch.from_numpy(samples)[None]
    pad = (2048 - 160) // 2
    x = torch.nn.functional.pad(x[None], (pad, pad), mode="reflect")[0]
    stft = torch.stft(x, 2048, hop_length=160, win_length=1024, window=torch.hann_window(1024), center=False,
                      return_complex=True)
    magnitude = torch.sqrt(stft.real**2 + stft.imag**2 + 1e-9)
    mel = torch.from_numpy(audio.mel_filters(AUFFUSION)) @ magnitude[0]
    return torch.log(torch.clamp(mel, min=1e-5)).numpy()


def test_log_mel_matches_the_auffusion_analysis(tone):
    rng = np.random.default_rng(0)
    samples = (tone(440, 1.0, 16000) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    ours = audio.log_mel(samples, AUFFUSION, normalize=False)
    assert ours.shape == (256, 100)
    np.testing.assert_allclose(ours, auffusion_reference_log_mel(samples), atol=2e-3)


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 6000.0])
def test_a_tone_lands_in_its_mel_bin_and_low_is_at_the_bottom(tone, freq):
    log_mel_spec = audio.log_mel(tone(freq, 0.5, 16000), AUFFUSION)
    expected_bin = int(np.argmin(np.abs(audio.mel_frequencies(AUFFUSION) - freq)))
    assert abs(int(np.argmax(log_mel_spec.mean(axis=1))) - expected_bin) <= 1
    image = audio.spectrogram_to_image(log_mel_spec, AUFFUSION)
    assert abs(int(np.argmax(image.mean(axis=1))) - (255 - expected_bin)) <= 1  # flipped: row 255 is bin 0


def test_image_normalisation_is_the_auffusion_range():
    ends = np.array([[math.log(1e-5), math.log(200.0)]], dtype=np.float32)
    np.testing.assert_allclose(audio.log_mel_to_unit(ends, AUFFUSION), [[0.0, 1.0]], atol=1e-6)
    # Pixel 0.5 is the midpoint of [ln 1e-5, ln 200] = -3.1073 (L = p·16.8112 − 11.5129).
    assert audio.unit_to_log_mel(np.array([0.5]), AUFFUSION)[0] == pytest.approx(0.5 * 16.8112 - 11.5129, abs=1e-3)
    unit = np.random.default_rng(1).random((256, 40)).astype(np.float32)
    np.testing.assert_allclose(audio.log_mel_to_unit(audio.unit_to_log_mel(unit, AUFFUSION), AUFFUSION), unit,
                               atol=1e-5)


def test_specvqgan_scale_matches_its_formula():
    spec = SPECS["visual_echoes"]
    magnitude = np.array([1e-5, 1e-3, 1.0, 10.0, 1e3], dtype=np.float32)
    expected = np.clip((20 * np.log10(magnitude) - 20 + 100) / 100, 0, 1)
    unit = audio.log_mel_to_unit(np.log(magnitude), spec)
    np.testing.assert_allclose(unit, expected, atol=1e-5)
    inside = (expected > 0) & (expected < 1)
    np.testing.assert_allclose(np.exp(audio.unit_to_log_mel(unit, spec))[inside], magnitude[inside], rtol=1e-4)


def test_image_to_spectrogram_averages_channels_and_unflips():
    rng = np.random.default_rng(2)
    gray = rng.random((256, 30)).astype(np.float32)
    log_mel_spec = audio.unit_to_log_mel(gray, AUFFUSION)
    image = audio.spectrogram_to_image(log_mel_spec, AUFFUSION)
    rgb = np.stack([image - 0.1, image, image + 0.1], axis=-1)  # channel mean is the gray image
    np.testing.assert_allclose(audio.image_to_spectrogram(rgb, AUFFUSION), log_mel_spec, atol=1e-4)
    with pytest.raises(ValueError, match="256 rows"):
        audio.image_to_spectrogram(np.zeros((100, 30)), AUFFUSION)


def test_griffin_lim_round_trip_is_close_and_reproducible(tone):
    t = np.arange(16000) / 16000
    samples = (tone(700, 1.0, 16000) * np.exp(-3 * (t % 0.5)) + tone(2100, 1.0, 16000, 0.2)).astype(np.float32)
    log_mel_spec = audio.log_mel(samples, AUFFUSION, normalize=False)
    rebuilt = audio.griffin_lim(log_mel_spec, AUFFUSION, n_iter=32, seed=3)
    assert rebuilt.shape == samples.shape
    np.testing.assert_array_equal(rebuilt, audio.griffin_lim(log_mel_spec, AUFFUSION, n_iter=32, seed=3))
    again = audio.log_mel(rebuilt, AUFFUSION, normalize=False)
    error = np.abs(audio.log_mel_to_unit(again, AUFFUSION) - audio.log_mel_to_unit(log_mel_spec, AUFFUSION))
    assert error.mean() < 0.03  # measured 0.012 at 32 iterations


def test_load_audio_downmixes_resamples_and_trims_with_notes(tmp_path, tone):
    stereo = np.stack([tone(440, 3.0, 44100), tone(440, 3.0, 44100)], axis=1)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 44100)
    loaded = audio.load_audio(path, AUFFUSION, max_seconds=2.0)
    assert loaded.sample_rate == 16000 and loaded.samples.dtype == np.float32
    assert loaded.samples.shape == (32000,)
    assert any("2 channels" in note for note in loaded.notes)
    assert any("first 2 s" in note for note in loaded.notes)
    assert any("44100 Hz to 16000 Hz" in note for note in loaded.notes)
    peak_bin = np.argmax(np.abs(np.fft.rfft(loaded.samples)))
    assert peak_bin * 16000 / 32000 == pytest.approx(440, abs=1)


def test_load_audio_at_its_own_rate_changes_nothing(tmp_path, tone):
    path = tmp_path / "mono.wav"
    soundfile.write(path, tone(440, 0.5, 16000), 16000, subtype="FLOAT")
    loaded = audio.load_audio(path, AUFFUSION)
    assert loaded.notes == []
    np.testing.assert_allclose(loaded.samples, tone(440, 0.5, 16000), atol=1e-7)


@pytest.mark.parametrize("content", [b"", b"RIFF not really a wave file" * 50])
def test_load_audio_rejects_undecodable_files(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioDecodeError):
        audio.load_audio(path, AUFFUSION)


def test_load_audio_rejects_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    soundfile.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioDecodeError, match="NaN"):
        audio.load_audio(path, AUFFUSION)


def test_write_wav_clips_to_full_scale(tmp_path):
    path = audio.write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], dtype=np.float32), 16000)
    samples, rate = soundfile.read(path)
    assert rate == 16000
    np.testing.assert_allclose(samples, [1.0, -1.0, 0.5], atol=1e-4)


# The impact convention and the torch STFT ----------------------------------------------------------------------------
IMPACT = SPECS["impact"]


def decaying_noise(seed: int = 0, count: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, IMPACT.clip_samples)) * np.exp(-np.arange(IMPACT.clip_samples) / 900)


def test_stft_magnitude_is_librosas_default_stft_for_numpy_and_torch_alike():
    import librosa

    x = decaying_noise(count=2)
    reference = np.abs(librosa.stft(x, n_fft=IMPACT.n_fft, hop_length=IMPACT.hop_length))
    assert audio.stft_magnitude(x, IMPACT).shape == (2, 1025, 44)
    np.testing.assert_allclose(audio.stft_magnitude(x, IMPACT), reference, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(audio.stft_magnitude(torch.from_numpy(x), IMPACT).numpy(), reference, atol=1e-9)
    shorter_window = audio.stft_magnitude(torch.from_numpy(x), AUFFUSION).numpy()  # 1024 samples in 2048
    np.testing.assert_allclose(audio.stft_magnitude(x, AUFFUSION), shorter_window, atol=1e-9)


def test_a_shorter_window_sits_in_the_middle_of_the_frame_with_reflect_padding():
    import librosa

    x = decaying_noise(1)[0]
    ours = audio.stft(torch.from_numpy(x), 64, 16, 32, pad_mode="reflect").numpy()
    reference = librosa.stft(x, n_fft=64, hop_length=16, win_length=32, window="hann", pad_mode="reflect")
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_peak_normalize_rows_scales_each_row_and_keeps_silence():
    x = torch.tensor([[0.5, -2.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(audio.peak_normalize_rows(x), torch.tensor([[0.25, -1.0, 0.5], [0.0, 0.0, 0.0]]))


def test_the_impact_log_scale_maps_its_range_to_minus_one_to_one_and_back():
    ends = torch.tensor([0.0, math.exp(audio.IMPACT_SPEC_MAX) - audio.IMPACT_LOG_EPS], dtype=torch.float64)
    torch.testing.assert_close(audio.impact_log_scale(ends), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    magnitude = torch.from_numpy(audio.stft_magnitude(decaying_noise(2), IMPACT))
    torch.testing.assert_close(audio.impact_log_unscale(audio.impact_log_scale(magnitude)), magnitude, rtol=1e-9,
                               atol=1e-12)


def test_both_griffin_lims_recover_a_magnitude_they_were_given():
    x = torch.from_numpy(decaying_noise(3, count=2))
    magnitude = audio.stft_magnitude(x, IMPACT)

    def convergence(rebuilt: torch.Tensor) -> float:
        error = audio.stft_magnitude(rebuilt, IMPACT) - magnitude
        return float(torch.linalg.vector_norm(error) / torch.linalg.vector_norm(magnitude))

    def torch_version(n_iter: int) -> torch.Tensor:
        return audio.griffin_lim_torch(magnitude, IMPACT, n_iter, torch.Generator().manual_seed(0), x.shape[-1])

    assert convergence(torch_version(16)) < 0.5 * convergence(torch_version(0))
    numpy_version = audio.griffin_lim_magnitude(magnitude.numpy(), IMPACT, 16, seed=0, length=x.shape[-1])
    assert numpy_version.shape == tuple(x.shape)
    assert convergence(torch.from_numpy(numpy_version)) < 0.5 * convergence(torch_version(0))
