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


@pytest.mark.parametrize(("size", "mean_db", "max_db"), [(64, 0.238, 5.18), (32, 0.886, 12.04), (16, 3.249, 31.14)])
def test_round_trip_error_in_db_through_the_frame_size_is_pinned(size, mean_db, max_db):
    """80 × 50 mel -> size² audio image -> 80 × 50: the mean and largest absolute error in dB (measured 2026-12-07
    with torch's bicubic on the way back; PIL's gave 0.286 / 0.950 / 3.350 dB. The resize, not the rounding,
    dominates below the mel size)."""
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


def lamp_hums(count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """`count` hums like the toy world's lamp (fundamental, second and third harmonics at 0.35 and 0.12) at
    log-spaced pitches over its 200-800 Hz, seeded phases."""
    t = np.arange(STUDIO.clip_samples) / STUDIO.sample_rate
    phases = np.random.default_rng(0).uniform(0.0, 2.0 * np.pi, count)
    pitches = np.geomspace(200.0, 800.0, count)
    hums = []
    for hz, offset in zip(pitches, phases):
        phase = 2.0 * np.pi * hz * t + offset
        hums.append((0.45 * (np.sin(phase) + 0.35 * np.sin(2 * phase) + 0.12 * np.sin(3 * phase))).astype(np.float32))
    return pitches, hums


def pil_bicubic_log_mel(image: np.ndarray, frames: int) -> np.ndarray:
    """The way back with PIL's bicubic instead (the baseline the chosen kernel is measured against)."""
    from PIL import Image

    unit = (image.mean(axis=0) + 1.0) / 2.0
    return audio.unit_to_log_mel(np.asarray(Image.fromarray(unit, mode="F").resize((frames, STUDIO.n_mels),
                                                                                   Image.BICUBIC)), STUDIO)


def test_the_way_back_from_a_32_pixel_image_keeps_lamp_hums_at_their_pitch():
    """Through a 32² image and Griffin-Lim, 64 lamp hums: torch's sharper bicubic brings 59 back within a tenth of an
    octave and 1 an octave off (measured 2026-12-07); PIL's bicubic 52 and 3."""
    from pipelines.metrics.sounding_video import hum_pitch
    from pipelines.mm_diffusion.clips import ClipFormat

    fmt = ClipFormat(8, 32, 32, STUDIO.clip_samples, 10, STUDIO.sample_rate)
    frames = STUDIO.frames_for(STUDIO.clip_samples)
    pitches, hums = lamp_hums(64)
    images = [audio.audio_image(hum, STUDIO, 32, 32) for hum in hums]
    errors = {}
    for name, back in (("torch", lambda image: audio.audio_image_to_log_mel(image, STUDIO, frames)),
                       ("pil", lambda image: pil_bicubic_log_mel(image, frames))):
        heard = np.array([hum_pitch(audio.griffin_lim(back(image), STUDIO), fmt) for image in images])
        errors[name] = np.abs(np.log2(heard / pitches))
    assert (errors["torch"] < 0.1).sum() >= 59 and (errors["torch"] > 0.5).sum() <= 1
    assert (errors["pil"] < 0.1).sum() <= 52 and (errors["pil"] > 0.5).sum() >= 3
