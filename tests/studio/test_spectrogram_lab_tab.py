"""Spectrogram Lab's handlers: bad numbers and pictures get one plain message each."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs.spectrogram_lab import LabHandlers
from tests.factories import FakeRequest

PICTURE = np.full((64, 128, 3), 200, np.uint8)


@pytest.mark.parametrize("picture, duration, iterations, message", [
    (PICTURE, float("nan"), 8, "Duration must be a finite number between 0.5 and 10.24; got not a number"),
    (PICTURE, -2, 8, "Duration must be between 0.5 and 10.24; got -2"),
    (PICTURE, 2.0, 8.5, "Griffin-Lim iterations must be a whole number between 1 and 256; got 8.5"),
    (PICTURE, 2.0, None, "Griffin-Lim iterations is empty"),
    ({"composite": None}, 2.0, 8, "There is no picture yet, or the one you uploaded is too big for the browser to "
                                  "open: upload an image \\(at most 8192 pixels a side"),
    (np.zeros((64, 128, 3), np.uint8), 2.0, 8, "is empty \\(all black"),
])
def test_bad_settings_get_plain_messages(tmp_path, picture, duration, iterations, message):
    lab = LabHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path)), "auto")
    with pytest.raises(gr.Error, match=message):
        lab.play_picture(picture, duration, iterations, False, "Griffin-Lim", FakeRequest())
