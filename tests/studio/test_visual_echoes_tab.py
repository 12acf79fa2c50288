"""The Visual Echoes tab: handlers called directly on a tiny random pipeline (every task streams previews and writes
its files; every bad input gets a plain message), and once on the bundled studio weights through the registry."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile
from PIL import Image

from pipelines.audio import SPECS
from pipelines.registry import available
from studio.app import working_tabs
from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import visual_echoes
from studio.tabs.visual_echoes import BOTH, INPAINT, PICTURE_TO_SOUND, SOUND_TO_PICTURE, VisualEchoesHandlers
from tests.factories import FakeRequest, editor_value, tiny_visual_echoes, toy_picture

SR = SPECS["visual_echoes"].sample_rate


@pytest.fixture(scope="module")
def tiny_pipe():
    return tiny_visual_echoes()


@pytest.fixture
def handlers(tmp_path, tiny_pipe, monkeypatch):
    monkeypatch.setattr(visual_echoes, "get_pipeline", lambda name, variant="auto": tiny_pipe)
    return VisualEchoesHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path / "sessions")), "auto")


@pytest.fixture
def bell_wav(tmp_path):
    t = np.arange(int(0.5 * SR)) / SR
    path = tmp_path / "bell.wav"
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 900 * t) * np.exp(-4 * t), SR)
    return str(path)


def picture_uint8(seed: int = 0) -> np.ndarray:
    return (toy_picture(seed) * 255).round().astype(np.uint8)


def run(handlers, task, picture=None, sound=None, start=0.05, end=0.2, steps=3, samples=1, seed=5):
    return list(handlers.generate(task, picture, sound, start, end, steps, 9, 3, samples, seed, FakeRequest()))


def test_picture_to_sound_streams_previews_and_writes_wav_png_and_mp4(handlers, tmp_path):
    updates = run(handlers, PICTURE_TO_SOUND, picture=editor_value(tmp_path, picture_uint8()), steps=6, samples=2)
    previews, (_, gallery, wav, mp4, note, files) = updates[:-1], updates[-1]
    assert len(previews) == 2 and all(preview[0].endswith(".png") for preview in previews)
    assert not Path(previews[0][0]).exists()  # previews are files; only the last one shown outlives the job
    assert np.asarray(Image.open(previews[-1][0])).ndim == 3
    assert [caption for _, caption in gallery] == ["seed 5 · spectrogram", "seed 6 · spectrogram"]
    assert soundfile.info(wav).samplerate == SR and soundfile.info(wav).frames == 32 * 256
    assert Image.open(gallery[0][0]).size == (32, 80)
    assert mp4.endswith(".mp4") and "Seeds 5…6" in note and len(files) == 5


def test_a_drawing_on_a_transparent_canvas_is_put_on_the_pale_ground(handlers, tmp_path):
    canvas = np.zeros((64, 64, 4), np.uint8)
    canvas[20:40, 20:40] = (204, 38, 31, 255)
    picture = visual_echoes.on_background(canvas)
    assert np.allclose(picture[0, 0], visual_echoes.BACKGROUND) and np.allclose(picture[30, 30], (0.8, 0.149, 0.1216),
                                                                                 atol=1e-3)
    *_, final = run(handlers, PICTURE_TO_SOUND, picture=editor_value(tmp_path, canvas))
    assert final[2].endswith(".wav")


def test_sound_to_picture_and_both_at_once(handlers, bell_wav):
    *_, (_, gallery, wav, mp4, _note, files) = run(handlers, SOUND_TO_PICTURE, sound=bell_wav)
    assert [caption for _, caption in gallery] == ["seed 5 · picture"] and wav is None and mp4 is None
    assert Image.open(gallery[0][0]).size == (16, 16) and len(files) == 1
    *_, (_, gallery, wav, mp4, _, files) = run(handlers, BOTH)
    assert [caption for _, caption in gallery] == ["seed 5 · picture", "seed 5 · spectrogram"]
    assert wav.endswith(".wav") and mp4.endswith(".mp4") and len(files) == 4


def test_inpainting_keeps_the_sound_outside_the_range(handlers, bell_wav, tiny_pipe, tmp_path):
    *_, (_, _gallery, wav, _, _, _) = run(handlers, INPAINT, picture=editor_value(tmp_path, picture_uint8()),
                                         sound=bell_wav, start=0.0, end=0.1)
    assert wav.endswith(".wav")
    audio, _ = soundfile.read(bell_wav)
    given = tiny_pipe.encode_audio(audio.astype(np.float32), SR).view(*tiny_pipe.audio_grid)
    out = tiny_pipe(picture_uint8(), audio.astype(np.float32), inpaint_range_s=(0.0, 0.1), num_inference_steps=2,
                    output_type="tokens").audio_tokens[0].reshape(tiny_pipe.audio_grid)
    assert np.array_equal(out[:, 1:], given[:, 1:].numpy())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": PICTURE_TO_SOUND}, "There is no picture yet"),
    ({"task": PICTURE_TO_SOUND, "picture": np.zeros((32, 32, 4), np.uint8)}, "empty"),
    ({"task": PICTURE_TO_SOUND, "picture": np.full((1, 1, 3), 200, np.uint8)}, "needs at least 8 × 8"),
    ({"task": SOUND_TO_PICTURE}, "No sound was given"),
    ({"task": PICTURE_TO_SOUND, "picture": picture_uint8(), "steps": 0}, "Iterations N must be between 1 and 100"),
    ({"task": PICTURE_TO_SOUND, "picture": picture_uint8(), "samples": 9}, "Samples must be between 1 and 4"),
    ({"task": "draw me a cat"}, "Choose what to make"),
])
def test_bad_inputs_get_plain_messages(handlers, tmp_path, kwargs, message):
    if isinstance(kwargs.get("picture"), np.ndarray):  # the editor's canvas, saved as its files
        kwargs = {**kwargs, "picture": editor_value(tmp_path, kwargs["picture"])}
    with pytest.raises(gr.Error, match=message):
        run(handlers, **kwargs)


def test_bad_sounds_get_plain_messages(handlers, tmp_path, bell_wav):
    silent, text, huge = tmp_path / "silent.wav", tmp_path / "notes.wav", tmp_path / "loud.wav"
    soundfile.write(silent, np.zeros(SR // 2), SR)
    text.write_text("not a sound")
    soundfile.write(huge, np.full(SR // 2, 1e6, np.float32), SR, subtype="FLOAT")
    with pytest.raises(gr.Error, match="silent"):
        run(handlers, SOUND_TO_PICTURE, sound=str(silent))
    with pytest.raises(gr.Error, match="could not read 'notes.wav' as audio"):
        run(handlers, SOUND_TO_PICTURE, sound=str(text))
    *_, final = run(handlers, SOUND_TO_PICTURE, sound=str(huge))  # loaded audio is normalised, so it still draws
    assert final[1]
    with pytest.raises(gr.Error, match="must come after"):
        run(handlers, INPAINT, picture=editor_value(tmp_path, picture_uint8()), sound=bell_wav, start=0.3, end=0.1)


@pytest.mark.skipif(not available("visual_echoes"), reason="the bundled studio weights are not in assets/")
def test_the_tab_is_shown_and_hears_a_picture_with_the_bundled_weights(tmp_path):
    context = StudioContext(StudioConfig(), SessionFiles(tmp_path / "sessions"))
    assert visual_echoes in working_tabs(context)
    from tests.factories import toy_picture as picture

    handlers = VisualEchoesHandlers(context, "auto")
    canvas = editor_value(tmp_path, (picture(1, size=32) * 255).round().astype(np.uint8))
    *_, (_, _gallery, wav, mp4, _, _) = list(handlers.generate(
        PICTURE_TO_SOUND, canvas, None, 0, 1, 4, 9, 3, 1, 0, FakeRequest()))
    assert soundfile.info(wav).frames == 128 * 256 and mp4.endswith(".mp4")
