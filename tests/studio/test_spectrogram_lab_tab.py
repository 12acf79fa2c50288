"""Spectrogram Lab's handlers: bad numbers and pictures get one plain message each."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs.spectrogram_lab import LabHandlers
from tests.factories import FakeRequest, editor_value

PICTURE = np.full((64, 128, 3), 200, np.uint8)


@pytest.mark.parametrize("picture, duration, iterations, message", [
    (PICTURE, float("nan"), 8, "Duration must be a finite number between 0.5 and 10.24; got not a number"),
    (PICTURE, -2, 8, "Duration must be between 0.5 and 10.24; got -2"),
    (PICTURE, 2.0, 8.5, "Griffin-Lim iterations must be a whole number between 1 and 256; got 8.5"),
    (PICTURE, 2.0, None, "Griffin-Lim iterations is empty"),
    ({"background": None, "layers": [], "composite": None}, 2.0, 8,
     "There is no picture yet, or the one you uploaded is too big for the browser to open: upload an image"),
    (np.zeros((64, 128, 3), np.uint8), 2.0, 8, "is empty \\(all black"),
])
def test_bad_settings_get_plain_messages(tmp_path, picture, duration, iterations, message):
    lab = LabHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path)), "auto")
    if isinstance(picture, np.ndarray):
        picture = editor_value(tmp_path, picture)
    with pytest.raises(gr.Error, match=message):
        lab.play_picture(picture, duration, iterations, False, "Griffin-Lim", FakeRequest())


def test_bad_picture_files_get_plain_messages(tmp_path):
    """The composite file is checked from its header before it is decoded, and a file that is no picture is named."""
    from tests.studio.test_validation import _png_header_only

    lab = LabHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path / "sessions")), "auto")
    junk, huge = tmp_path / "junk.png", _png_header_only(tmp_path / "huge.png", 20_000, 20_000)
    junk.write_text("not a picture")
    for composite, message in [(junk, "could not be read as an image"), (huge, "too big: 20000×20000 pixels"),
                               (tmp_path / "gone.png", "upload did not arrive")]:
        with pytest.raises(gr.Error, match=message):
            lab.play_picture({"background": None, "layers": [], "composite": str(composite)}, 2.0, 8, False,
                             "Griffin-Lim", FakeRequest())


def test_the_composite_is_read_as_the_editor_drew_it(tmp_path):
    """A transparent canvas is empty; a drawing on it plays (transparent pixels are black: silence)."""
    lab = LabHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path / "sessions")), "auto")
    canvas = np.zeros((64, 128, 4), np.uint8)
    with pytest.raises(gr.Error, match="is empty \\(all black or transparent\\)"):
        lab.play_picture(editor_value(tmp_path, canvas), 2.0, 8, False, "Griffin-Lim", FakeRequest())
    canvas[20:40, 30:90] = (255, 255, 255, 255)
    wav, *_ = lab.play_picture(editor_value(tmp_path, canvas, "drawn.png"), 2.0, 8, False, "Griffin-Lim",
                               FakeRequest())
    assert wav.endswith(".wav")
