"""Nothing the studio writes clips: every wav (and every mp4's sound) is peak-limited below full scale. Each tab's
loudest fast case is run and its session folder scanned; the generators' own tab tests scan theirs too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from pipelines.impact_sound.modal import Modes
from pipelines.media import PEAK_LIMIT, read_soundtrack, save_wav, write_video
from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs.impact_sound import ImpactHandlers, modes_table
from studio.tabs.spectrogram_lab import LabHandlers
from tests.factories import FakeRequest


def clipped_samples(folder: Path) -> dict[str, int]:
    """{wav name: how many samples are at |x| >= 1} for every wav under `folder` (an empty dict: none clips)."""
    found = {}
    for wav in sorted(Path(folder).rglob("*.wav")):
        audio, _ = soundfile.read(wav, dtype="float32")
        found[wav.name] = int(np.count_nonzero(np.abs(audio) >= 1.0))
    return found


def test_save_wav_and_write_video_limit_the_peak(tmp_path):
    sine = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32) * 3.0
    loud = sine.copy()
    loud[5] = np.nan
    audio, _ = soundfile.read(save_wav(loud, 16000, tmp_path / "loud.wav"), dtype="float32")
    assert np.isfinite(audio).all() and np.abs(audio).max() <= PEAK_LIMIT + 1e-3
    quiet = np.full(100, 0.25, np.float32)
    np.testing.assert_allclose(soundfile.read(save_wav(quiet, 16000, tmp_path / "q.wav"))[0], 0.25, atol=1e-4)
    mp4 = write_video(tmp_path / "loud.mp4", np.zeros((10, 16, 16, 3), np.uint8), 10, audio=sine,
                      sample_rate=16000)
    assert np.abs(read_soundtrack(mp4, 16000)).max() < 1.0


def test_every_fast_tab_writes_no_clipped_sample(tmp_path):
    context = StudioContext(StudioConfig(), SessionFiles(tmp_path / "sessions"))
    lab = LabHandlers(context, "auto")
    white = np.full((256, 512, 3), 255, np.uint8)  # the loudest picture there is
    lab.play_picture(white, 2.0, 8, False, "Griffin-Lim", FakeRequest())
    impact = ImpactHandlers(context, "auto")
    loud = Modes(frequencies=[220.0, 440.0, 880.0], powers=[40.0, 40.0, 40.0], decays=[1.0, 1.0, 1.0])
    impact.render(modes_table(loud), "", 2.0, 0, 1, 0, 0, 0, 0, FakeRequest())
    found = clipped_samples(tmp_path / "sessions")
    assert len(found) >= 2 and not any(found.values()), found
