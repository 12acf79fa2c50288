"""The Spectrogram Lab: pipeline behaviour with known answers, the shared pipeline contract where it applies, and the
tab's handlers writing real files.

The lab plays one picture per call, so the contract's "a batch equals its samples run alone" does not apply to it
(it has no case in tests.factories.CONTRACT_CASES); every other item is checked here.
"""

from __future__ import annotations

import subprocess

import gradio as gr
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from pipelines.audio import SPECS, mel_frequencies
from pipelines.pipeline_utils import BaseOutput, StudioPipeline
from pipelines.spectrogram_lab import round_trip_error
from pipelines.spectrogram_lab.pipeline_spectrogram_lab import SpectrogramLabPipeline, fit_picture
from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs.spectrogram_lab import LabHandlers
from tests.factories import EXAMPLES, FakeRequest, editor_value

SPEC = SPECS["auffusion"]


@pytest.fixture(scope="module")
def lab():
    return SpectrogramLabPipeline()


def test_a_horizontal_line_plays_as_a_tone_at_its_height(lab):
    picture = np.zeros((256, 200), dtype=np.float32)
    row = 255 - 84  # mel bin 84 is centred near 1 kHz; the image is flipped
    picture[row - 1 : row + 2] = 0.75
    result = lab(picture, seconds=1.0, griffin_lim_iterations=16)
    assert result.audio.shape == (16000,) and result.sample_rate == 16000
    assert np.abs(result.audio).max() <= 0.99 + 1e-6
    spectrum = np.abs(np.fft.rfft(result.audio))
    assert np.argmax(spectrum) * 16000 / len(result.audio) == pytest.approx(mel_frequencies(SPEC)[84], rel=0.03)


def test_picture_is_fitted_to_mels_by_frames_and_inverted_on_request(lab):
    gradient = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[:, None], (1, 32))  # dark top, bright bottom
    result = lab(gradient, seconds=0.8, griffin_lim_iterations=4)
    assert result.image.shape == (256, 80)
    inverted = lab(gradient, seconds=0.8, griffin_lim_iterations=4, invert=True)
    np.testing.assert_allclose(inverted.image, 1.0 - result.image, atol=1e-6)
    with pytest.raises(ValueError, match="`seconds` must be in"):
        lab(gradient, seconds=20.0)
    with pytest.raises(ValueError, match="`griffin_lim_iterations` must be at least 1"):
        lab(gradient, seconds=0.8, griffin_lim_iterations=0)


def test_sound_to_picture_and_back_round_trips(lab, tone):
    t = np.arange(16000) / 16000
    sound = (tone(500, 1.0, 16000) * np.exp(-4 * (t % 0.25))).astype(np.float32)
    seen = lab.sound_to_picture(sound)
    assert seen.image.shape == (256, 100) and 0.0 <= seen.image.min() and seen.image.max() <= 1.0
    played = lab(seen.image, seconds=1.0, griffin_lim_iterations=32)
    assert round_trip_error(seen.image, lab.heard_again(played)) < 0.05  # measured 0.013
    with pytest.raises(ValueError, match="too short"):
        lab.sound_to_picture(np.zeros(10, dtype=np.float32))


PICTURE = np.random.default_rng(0).random((64, 40)).astype(np.float32)


def play(lab, seed: int | None = 0, **kwargs):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return lab(PICTURE, seconds=0.5, griffin_lim_iterations=2, generator=generator, **kwargs)


def test_is_a_studio_pipeline_with_a_base_output_and_a_harmless_to(lab):
    assert isinstance(lab, StudioPipeline) and lab.to("cpu", torch.float16) is lab and lab.networks() == []
    output = play(lab)
    assert isinstance(output, BaseOutput) and output.seconds == 0.5
    audio, sample_rate, image, gain = play(lab, return_dict=False)
    np.testing.assert_array_equal(audio, output.audio)
    assert sample_rate == 16000 and image.shape == (256, 50) and gain == output.gain


def test_save_then_load_keeps_the_spec_and_the_griffin_lim_setting(tmp_path):
    lab = SpectrogramLabPipeline(griffin_lim_iterations=3)
    folder = lab.save_pretrained(tmp_path / "lab")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    loaded = SpectrogramLabPipeline.from_pretrained(folder)
    assert loaded.config.griffin_lim_iterations == 3 and loaded.spec == SPECS["auffusion"]
    picture = PICTURE
    np.testing.assert_array_equal(loaded(picture, seconds=0.5).audio, lab(picture, seconds=0.5).audio)
    other = SpectrogramLabPipeline.from_pretrained(SpectrogramLabPipeline("visual_echoes").save_pretrained(
        tmp_path / "echoes"))
    assert other.spec == SPECS["visual_echoes"] and other(picture, seconds=0.5).sample_rate == 22050
    with pytest.raises(ValueError, match="spectrogram convention"):
        SpectrogramLabPipeline("mm_diffusion")


def test_the_same_seed_gives_the_same_sound_and_another_seed_another(lab):
    first, again, other = play(lab, 5).audio, play(lab, 5).audio, play(lab, 6).audio
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    np.testing.assert_array_equal(play(lab, None).audio, play(lab, None).audio)  # no generator: always seed 0


def test_the_callback_sees_both_stages_with_numpy_previews_made_only_when_read(lab, monkeypatch):
    calls, analyses = [], []
    heard_again = lab.heard_again
    monkeypatch.setattr(lab, "heard_again", lambda played: analyses.append(1) or heard_again(played))

    def record(called, step, timestep, callback_kwargs):
        calls.append((called, step, timestep, callback_kwargs["preview"]))
        return {}

    output = play(lab, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["preview"])
    assert [(step, timestep) for _, step, timestep, _ in calls] == [(0, 0), (1, 1)]
    assert all(called is lab and isinstance(preview, np.ndarray) for called, *_, preview in calls)
    np.testing.assert_array_equal(calls[0][3], output.image)  # the picture fitted to the spectrogram grid
    np.testing.assert_array_equal(calls[1][3], heard_again(output))  # the sound made, analysed again
    analyses.clear()
    play(lab, callback_on_step_end=lambda *args: {})
    assert analyses == []
    with pytest.raises(ValueError, match="no_such_tensor"):
        play(lab, callback_on_step_end=lambda *args: {}, callback_on_step_end_tensor_inputs=["no_such_tensor"])


def test_an_interrupt_after_fitting_the_picture_leaves_the_sound_silent(lab):
    steps = []

    def stop(called, step, timestep, callback_kwargs):
        steps.append(step)
        called._interrupt = True
        return {}

    output = play(lab, callback_on_step_end=stop)
    assert steps == [0] and output.audio.shape == (8000,) and not output.audio.any()
    steps.clear()
    play(lab, callback_on_step_end=lambda called, step, t, kwargs: steps.append(step) or {})
    assert steps == [0, 1]  # the flag is cleared for the next call


def test_fit_picture_keeps_values_in_range():
    fitted = fit_picture(np.random.default_rng(0).random((33, 17, 3)), rows=256, columns=50)
    assert fitted.shape == (256, 50) and fitted.min() >= 0.0 and fitted.max() <= 1.0


@pytest.fixture
def handlers(tmp_path):
    return LabHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path)), "auto")


def media_streams(path) -> str:
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True)
    return probe.stderr


def test_play_picture_writes_wav_png_and_mp4_with_sound(handlers, tmp_path):
    picture = np.asarray(Image.open(EXAMPLES / "rings.png").convert("RGBA"))
    wav, mp4, png, again, note, downloads = handlers.play_picture(
        editor_value(tmp_path, picture), 1.5, 8, False, "Griffin-Lim", FakeRequest(), progress=lambda *a, **k: None)
    samples, rate = soundfile.read(wav)
    assert rate == 16000 and len(samples) == 24000
    assert Image.open(png).size == (150, 256) and Image.open(again).size == (150, 256)
    streams = media_streams(mp4)
    assert "Video: h264" in streams and "Audio: aac" in streams and "Duration: 00:00:01.5" in streams
    assert "Round-trip difference" in note and sorted(downloads) == sorted([wav, png, mp4])


def test_draw_sound_notes_conversion_and_round_trips(handlers, tmp_path, tone):
    path = tmp_path / "stereo-44k.wav"
    soundfile.write(path, np.stack([tone(300, 1.0, 44100)] * 2, axis=1), 44100)
    png, mp4, back_wav, note, downloads = handlers.draw_sound(str(path), 8, FakeRequest(),
                                                              progress=lambda *a, **k: None)
    assert Image.open(png).size == (100, 256)
    assert "Mixed 2 channels down to mono." in note and "Resampled from 44100 Hz to 16000 Hz." in note
    assert soundfile.info(back_wav).frames == 16000 and "Audio: aac" in media_streams(mp4)
    assert len(downloads) == 3


def test_handlers_answer_bad_input_with_messages(handlers, tmp_path):
    corrupt = tmp_path / "song.wav"
    corrupt.write_bytes(b"\x00garbage" * 300)
    with pytest.raises(gr.Error, match="could not read 'song.wav' as audio"):
        handlers.draw_sound(str(corrupt), 8, FakeRequest(), progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="no picture yet"):
        handlers.play_picture(None, 2.0, 8, False, "Griffin-Lim", FakeRequest(), progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="Duration must be a finite number"):
        handlers.play_picture(editor_value(tmp_path, np.ones((8, 8, 3), np.uint8)), float("nan"), 8, False,
                              "Griffin-Lim", FakeRequest(), progress=lambda *a, **k: None)
