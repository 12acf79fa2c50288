"""The physics-only impact sound pipeline: estimate modes from a hit, edit them, synthesize, and score a video.

Bundles what the Impact Sound tab (and Python callers) need, with no weights: modal estimation (`modal.py`),
the artist's global edits (`edits.py`), material presets (`materials.py`), hit detection in a silent video
(`hits.py`) and soundtrack assembly (`soundtrack.py`). The paper's diffusion model is not part of it.

Two departures from the paper, both for listening rather than analysis:

- The analysis starts at the hit: leading silence (a microphone recording) is skipped, up to 1 ms before the
  first sample within 20 dB of the peak. The estimators assume t = 0 is the hit.
- Synthesized sounds end with a 10 ms raised-cosine fade-out, so a mode still ringing when the clip stops does
  not end in a click.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.impact_sound import edits
from pipelines.impact_sound.hits import detect_hits
from pipelines.impact_sound.materials import MATERIALS, material_preset
from pipelines.impact_sound.modal import IMPACT, Modes, estimate_modes, synthesize
from pipelines.impact_sound.picture import modes_picture
from pipelines.impact_sound.soundtrack import place_impacts
from pipelines.impact_sound.video import mux, read_frames
from pipelines.media import video_info

METHODS = ("refined", "paper")
MATERIAL_CHOICES = [(material.name.capitalize(), key) for key, material in MATERIALS.items()]
MAX_MODES = 2048  # the paper's extractor gives 1025, less the silent DC and Nyquist ones
REFINED_MAX_MODES = 64
REFINED_ANALYSIS_S = 1.0  # the refined estimator reads up to this much after the hit (the paper's reads 0.25 s)
MIN_SECONDS, MAX_SECONDS = 0.05, 4.0  # length of one synthesized impact: a struck glass rings for about 3.7 s
FADE_OUT_S = 0.01
ONSET_DB = 20.0  # the hit starts at the first sample within this many dB of the peak
ONSET_LEAD_S = 1e-3


@dataclass(frozen=True)
class GlobalEdits:
    """Edits applied to every mode, in this order: pitch, damping, brightness, low cut, band removal.

    Args:
        pitch_semitones: transpose (+12 doubles every frequency); modes pushed past Nyquist are dropped.
        damping: multiply every decay rate (0.5 rings twice as long, 2 half as long).
        brightness_db_per_octave: tilt the powers around 1 kHz (positive is brighter).
        low_cut_hz: remove the modes below this frequency (the paper's "remove low-frequency physics").
        band_hz: remove the modes in [low, high] Hz, or None.
    """

    pitch_semitones: float = 0.0
    damping: float = 1.0
    brightness_db_per_octave: float = 0.0
    low_cut_hz: float = 0.0
    band_hz: tuple[float, float] | None = None

    def apply(self, modes: Modes) -> Modes:
        if self.pitch_semitones:
            modes = edits.shift_pitch(modes, self.pitch_semitones)
        if self.damping != 1.0:
            modes = edits.scale_damping(modes, self.damping)
        if self.brightness_db_per_octave:
            modes = edits.tilt_brightness(modes, self.brightness_db_per_octave)
        if self.low_cut_hz > 0.0:
            modes = edits.remove_band(modes, 0.0, np.nextafter(self.low_cut_hz, 0.0))
        if self.band_hz is not None:
            modes = edits.remove_band(modes, *self.band_hz)
        return modes

    def describe(self) -> list[str]:
        """The edits in effect, in plain words (empty when there are none)."""
        words = []
        if self.pitch_semitones:
            words.append(f"pitch {self.pitch_semitones:+g} semitones")
        if self.damping != 1.0:
            words.append(f"damping ×{self.damping:g}")
        if self.brightness_db_per_octave:
            words.append(f"brightness {self.brightness_db_per_octave:+g} dB/octave")
        if self.low_cut_hz > 0.0:
            words.append(f"modes below {self.low_cut_hz:g} Hz removed")
        if self.band_hz is not None:
            words.append(f"modes from {self.band_hz[0]:g} to {self.band_hz[1]:g} Hz removed")
        return words


@dataclass
class Estimate:
    """Modes estimated from a recording, and notes on what was done to the recording first."""

    modes: Modes
    notes: list[str] = field(default_factory=list)


@dataclass
class Hits:
    """Hit times (s, rising) found in a video, its length, and notes (e.g. trimming)."""

    times: np.ndarray
    seconds: float
    fps: float
    notes: list[str] = field(default_factory=list)


class ImpactPhysicsPipeline:
    """Modal impact sounds without weights: estimate, edit, synthesize, draw, and score a silent video."""

    sample_rate: int = IMPACT.sample_rate

    def estimate(self, audio: np.ndarray, sample_rate: int, method: Literal["refined", "paper"] = "refined", *,
                 max_modes: int = REFINED_MAX_MODES) -> Estimate:
        """Modes of a recorded hit (mono float at `sample_rate`), analysed from the hit on.

        Only audible modes (0 < f < Nyquist) are kept, with θ = 0 (the paper's choice): the paper's extractor's
        DC and Nyquist bins are silent, and phases are not editable.
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        samples = np.asarray(audio, dtype=np.float64).reshape(-1)
        if not samples.size or not np.isfinite(samples).all() or np.max(np.abs(samples)) == 0.0:
            raise ValueError("the recording is silent: record or upload a hit you can hear")
        start = hit_onset(samples, sample_rate)
        notes = [f"The hit starts {start / sample_rate:.2f} s into the recording: analysed from there."] \
            if start / sample_rate >= 0.005 else []
        samples = samples[start:]
        if method == "refined":
            samples = samples[: round(REFINED_ANALYSIS_S * sample_rate)]
        modes = estimate_modes(samples, sample_rate, method, max_modes=max_modes)
        audible = (modes.frequencies > 0.0) & (modes.frequencies < modes.nyquist)
        if method == "paper" and (~audible).any():
            silent = int((~audible).sum())
            notes.append(f"Left out {silent} silent mode(s) at 0 Hz or at Nyquist ({modes.nyquist:g} Hz).")
        modes = modes.select(audible).replace(phases=None)
        if not len(modes):
            raise ValueError("no ringing modes were found: the sound is noise-like or too short. Try a clean, "
                             "close recording of one hit, or the paper method")
        return Estimate(modes.sorted(), notes)

    def preset(self, material: str) -> Modes:
        """A struck plate of one of MATERIALS (physics-derived presets, `materials.py`)."""
        return material_preset(material, sample_rate=self.sample_rate)

    def modes(self, frequencies, powers, decays) -> Modes:
        """Modes at this pipeline's rate from plain lists (Hz, dB, T60 in s), sorted by frequency."""
        return Modes(frequencies, powers, decays, sample_rate=self.sample_rate).sorted()

    def load_modes(self, path: str | Path) -> Modes:
        """A modes JSON file (`Modes.save` format) at this pipeline's rate, phases dropped (θ = 0)."""
        modes = Modes.load(path)
        if modes.sample_rate != self.sample_rate:
            raise ValueError(f"the modes are for {modes.sample_rate} Hz; this studio synthesizes at "
                             f"{self.sample_rate} Hz")
        audible = (modes.frequencies > 0.0) & (modes.frequencies < modes.nyquist)
        return modes.select(audible).replace(phases=None).sorted()

    def edit(self, modes: Modes, global_edits: GlobalEdits) -> Modes:
        return global_edits.apply(modes)

    def synthesize(self, modes: Modes, seconds: float = IMPACT.clip_seconds) -> np.ndarray:
        """Float32 impact of `seconds` (Eq. 4, peak-safe) with a 10 ms fade-out at the end."""
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"the impact length must be between {MIN_SECONDS} and {MAX_SECONDS} s, got {seconds}")
        audio = synthesize(modes, self.sample_rate, seconds)
        fade = min(round(FADE_OUT_S * self.sample_rate), len(audio))
        audio[len(audio) - fade :] *= (0.5 + 0.5 * np.cos(np.pi * np.arange(1, fade + 1) / fade)).astype(np.float32)
        return audio

    def picture(self, audio: np.ndarray, modes: Modes) -> np.ndarray:
        """The sound's spectrogram with the modes as dots, RGB uint8 (`picture.py`)."""
        return modes_picture(audio, modes, self.sample_rate)

    def detect_hits(self, video_path: str | Path, *, max_seconds: float = 60.0, sensitivity: float = 0.5) -> Hits:
        """Hit times in a silent video from motion onsets (`hits.py`)."""
        video = read_frames(video_path, max_seconds=max_seconds)
        times = detect_hits(video.frames, video.fps, sensitivity=sensitivity)
        return Hits(times, video.seconds, video.fps, video.notes)

    def video_seconds(self, video_path: str | Path) -> float:
        """A video's length in seconds (`media.VideoDecodeError` when it cannot be read)."""
        return video_info(video_path).seconds

    def soundtrack(self, hit_times, impacts: np.ndarray, seconds: float) -> np.ndarray:
        """An impact (one for all, or one per hit) at each hit time in `seconds` of sound, peak-safe."""
        return place_impacts(hit_times, impacts, self.sample_rate, seconds)

    def mux(self, video_path: str | Path, soundtrack: np.ndarray, out_path: str | Path) -> Path:
        """The video with `soundtrack` as its sound (H.264/AAC mp4)."""
        return mux(video_path, soundtrack, self.sample_rate, out_path)


def hit_onset(samples: np.ndarray, sample_rate: int) -> int:
    """Index where the hit starts: 1 ms before the first sample within 20 dB of the peak."""
    magnitude = np.abs(samples)
    first = int(np.argmax(magnitude >= magnitude.max() * 10.0 ** (-ONSET_DB / 20.0)))
    return max(0, first - round(ONSET_LEAD_S * sample_rate))
