"""MM-LDM's audio image convention (pipelines/audio.py), pinned with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import audio
from pipelines.audio import SPECS

PAPER = SPECS["mm_ldm"]
STUDIO = SPECS["mm_ldm_studio"]
HALF_LEVEL_DB = 100.0 / 255.0 / 2.0  # 8-bit rounding of a 100 dB range: at most half a grey level


def sweep(spec=STUDIO) -> np.ndarray:
    """A decaying two-octave sweep from 300 Hz over the spec's clip."""
    t = np.arange(spec.clip_samples) / spec.sample_rate
    hz = 300.0 * 2.0 ** (2.0 * t / spec.clip_seconds)
    return (0.5 * np.sin(2 * np.pi * np.cumsum(hz) / spec.sample_rate) * np.exp(-2.0 * t)).astype(np.float32)


def unit_db(log_mel_spec: np.ndarray, spec) -> np.ndarray:
    """The normalised mel in dB (unit × 100), the image's own scale."""
    return audio.log_mel_to_unit(log_mel_spec, spec) * 100.0


def test_specs_hold_the_released_mel_at_the_true_rate():
    for spec in (PAPER, STUDIO):
        assert (spec.n_mels, spec.n_fft, spec.hop_length, spec.win_length) == (80, 1024, 256, 1024)
        assert (spec.fmin, spec.fmax, spec.image_scale) == (0.0, 8000.0, "specvqgan")
    assert (PAPER.sample_rate, PAPER.clip_samples, PAPER.frames_for(PAPER.clip_samples)) == (44100, 70560, 275)
    assert (STUDIO.sample_rate, STUDIO.clip_samples, STUDIO.frames_for(STUDIO.clip_samples)) == (16000, 12800, 50)
    # The filters are built at the true rate: a 1 kHz tone peaks in the band whose centre is nearest 1 kHz.
    t = np.arange(PAPER.clip_samples) / PAPER.sample_rate
    mel = audio.log_mel(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32), PAPER, normalize=False)
    expected = int(np.argmin(np.abs(audio.mel_frequencies(PAPER) - 1000.0)))
    assert abs(int(np.argmax(mel.mean(axis=1))) - expected) <= 1


def test_audio_image_is_the_gray_mel_in_three_equal_channels():
    image = audio.audio_image(sweep(), STUDIO, 32, 32)
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    assert image.min() >= -1.0 and image.max() <= 1.0
    np.testing.assert_array_equal(image[0], image[1])
    np.testing.assert_array_equal(image[0], image[2])


def test_at_the_mel_size_the_round_trip_loses_only_the_8_bit_rounding():
    samples = sweep()
    frames = STUDIO.frames_for(len(samples))
    reference = unit_db(audio.log_mel(samples, STUDIO, normalize=False), STUDIO)
    image = audio.audio_image(samples, STUDIO, STUDIO.n_mels, frames)
    back = unit_db(audio.audio_image_to_log_mel(image, STUDIO, frames), STUDIO)
    assert np.abs(back - reference).max() <= HALF_LEVEL_DB + 1e-4


@pytest.mark.parametrize(("size", "mean_db", "max_db"), [(64, 0.286, 6.08), (32, 0.950, 12.88), (16, 3.350, 33.72)])
def test_round_trip_error_in_db_through_the_frame_size_is_pinned(size, mean_db, max_db):
    """80 × 50 mel -> size² audio image -> 80 × 50: the mean and largest absolute error in dB (measured 2026-12-05;
    the resize, not the rounding, dominates below the mel size)."""
    samples = sweep()
    frames = STUDIO.frames_for(len(samples))
    reference = unit_db(audio.log_mel(samples, STUDIO, normalize=False), STUDIO)
    back = unit_db(audio.audio_image_to_log_mel(audio.audio_image(samples, STUDIO, size, size), STUDIO, frames),
                   STUDIO)
    error = np.abs(back - reference)
    assert float(error.mean()) == pytest.approx(mean_db, rel=0.05)
    assert float(error.max()) == pytest.approx(max_db, rel=0.05)


def test_audio_image_back_to_sound_keeps_length_and_pitch():
    t = np.arange(STUDIO.clip_samples) / STUDIO.sample_rate
    samples = (0.5 * np.sin(2 * np.pi * 600.0 * t)).astype(np.float32)
    frames = STUDIO.frames_for(len(samples))
    waveform = audio.audio_image_to_waveform(audio.audio_image(samples, STUDIO, 32, 32), STUDIO, frames)
    assert waveform.shape == (STUDIO.clip_samples,)
    expected = int(np.argmin(np.abs(audio.mel_frequencies(STUDIO) - 600.0)))
    heard = audio.log_mel(waveform, STUDIO, normalize=False).mean(axis=1)
    assert abs(int(np.argmax(heard)) - expected) <= 1
