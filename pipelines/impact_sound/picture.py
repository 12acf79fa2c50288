"""A picture of an impact sound's physics: its spectrogram with one dot per mode on top, on real axes (time in s,
frequency in Hz on a log scale, a colour bar in dB), as RGB uint8 drawn by matplotlib's Agg backend.

- Background: the sound's |STFT| (the impact spec's, `audio.stft_magnitude`) in dB re its loudest bin, the top
  80 dB shown; time runs left to right, frequency bottom to top on a log axis (20 Hz to Nyquist).
- Dots: each mode at (its decay time T60, its frequency), i.e. where its line in the spectrogram has faded by
  60 dB; dot area grows with the mode's power (the loudest mode largest, modes 60 dB weaker smallest). A mode
  ringing past the end of the sound is drawn as a triangle at the right edge.

Every slider edit draws a new picture, so it must take milliseconds: one figure per Nyquist frequency is kept; its
frequency axis, labels and colour bar are rendered once, the strip under the plot with the time axis once per sound
length (the last few are kept), and each picture draws only the spectrogram and the dots over them (blitting).
matplotlib is imported on the first picture, never at studio start-up.
"""

from __future__ import annotations

import collections
import functools
import math
import threading

import numpy as np

from pipelines.audio import stft_magnitude
from pipelines.impact_sound.modal import IMPACT, Modes

WIDTH, HEIGHT, DPI = 760, 400, 100
AXES_BOX = (0.085, 0.2, 0.8, 0.74)  # left, bottom, width, height as fractions of the figure
COLORBAR_BOX = (0.9, 0.2, 0.02, 0.74)
MIN_HZ = 20.0
ROWS = 256  # log-spaced frequency rows of the spectrogram image
DYNAMIC_RANGE_DB = 80.0
DOT_RANGE_DB = 60.0
COLORMAP = "magma"
DOT_COLOUR, OUTLINE_COLOUR = "#5ae6ff", "#0a0a14"
FREQUENCY_TICKS = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
KEPT_TIME_AXES = 16  # rendered time-axis strips kept, one per recent sound length (0.2 MB each)
CAPTION = "each dot is a mode: height = pitch, across = decay time (fallen 60 dB), size = power"


def modes_picture(audio: np.ndarray, modes: Modes, sample_rate: int = IMPACT.sample_rate) -> np.ndarray:
    """[HEIGHT, WIDTH, 3] uint8: the spectrogram of `audio` with `modes` as dots (see the module docstring)."""
    seconds = max(len(audio) / sample_rate, 1e-3)
    return modes_figure(sample_rate / 2.0).draw(spectrogram_levels(audio, sample_rate), modes, seconds)


def spectrogram_levels(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """dB re the loudest bin, floored 80 dB down, on ROWS log-spaced rows from Nyquist (top) to 20 Hz: [ROWS, frames].
    Silence is at the floor everywhere."""
    samples = np.asarray(audio, dtype=np.float64)
    if len(samples) < IMPACT.hop_length:
        samples = np.pad(samples, (0, IMPACT.hop_length - len(samples)))
    magnitude = stft_magnitude(samples, IMPACT)  # [bins, frames]
    if magnitude.max() < 1e-9:
        return np.full((ROWS, magnitude.shape[1]), -DYNAMIC_RANGE_DB)
    level = 20.0 * np.log10(np.maximum(magnitude, 1e-12) / magnitude.max())
    rows = MIN_HZ * (sample_rate / 2.0 / MIN_HZ) ** np.linspace(1.0, 0.0, ROWS)  # Hz per row, top to bottom
    bins = np.clip(np.round(rows / (sample_rate / IMPACT.n_fft)).astype(int), 0, len(level) - 1)
    return np.maximum(level[bins], -DYNAMIC_RANGE_DB)


@functools.lru_cache(maxsize=4)
def modes_figure(nyquist: float) -> ModesFigure:
    """The figure for sounds with this Nyquist frequency (made once)."""
    return ModesFigure(nyquist)


class ModesFigure:
    """One figure (axes, labels, colour bar) whose spectrogram and dots are redrawn for each picture; one picture at
    a time (the studio serves several artists from threads)."""

    def __init__(self, nyquist: float) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.lock = threading.Lock()
        self.low, self.high = math.log10(MIN_HZ), math.log10(nyquist)
        self.figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
        FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes(AXES_BOX)
        self.image = self.axes.imshow(np.zeros((ROWS, 1)), cmap=COLORMAP, vmin=-DYNAMIC_RANGE_DB, vmax=0.0,
                                      aspect="auto", interpolation="nearest", animated=True)
        self.dots = self.axes.scatter([], [], c=DOT_COLOUR, edgecolors=OUTLINE_COLOUR, linewidths=0.7,
                                      animated=True)
        self.ringing = self.axes.scatter([], [], marker=">", c=DOT_COLOUR, edgecolors=OUTLINE_COLOUR,
                                         linewidths=0.7, animated=True, clip_on=False)
        self._label(nyquist)
        self.axes.xaxis.set_animated(True)  # the time axis changes with the sound's length: rendered apart
        self.figure.canvas.draw()
        self.background = self.figure.canvas.copy_from_bbox(self.figure.bbox)
        self.time_axes: collections.OrderedDict = collections.OrderedDict()  # sound length → rendered strip

    def _label(self, nyquist: float) -> None:
        ticks = [tick for tick in FREQUENCY_TICKS if tick <= nyquist]
        self.axes.set_ylim(self.low, self.high)
        self.axes.set_yticks(np.log10(ticks), [f"{tick // 1000}k" if tick >= 1000 else str(tick) for tick in ticks])
        self.axes.set_xlabel("time (s)")
        self.axes.set_ylabel("frequency (Hz)")
        colorbar = self.figure.colorbar(self.image, cax=self.figure.add_axes(COLORBAR_BOX))
        colorbar.set_label("level (dB re loudest)")
        self.figure.text(0.5, 0.02, CAPTION, ha="center", va="bottom")

    def _time_axis(self, duration: float):
        """The strip under the plot (time ticks, their labels, the axis label) rendered for `duration` seconds, over
        the background: restore the background first, this strip on top of it."""
        if duration in self.time_axes:
            self.time_axes.move_to_end(duration)
            return self.time_axes[duration]
        from matplotlib.transforms import Bbox

        self.axes.draw_artist(self.axes.xaxis)
        below_plot = Bbox.from_extents(0, 0, self.figure.bbox.width, self.axes.bbox.y0)
        self.time_axes[duration] = self.figure.canvas.copy_from_bbox(below_plot)
        if len(self.time_axes) > KEPT_TIME_AXES:
            self.time_axes.popitem(last=False)
        return self.time_axes[duration]

    def _place_dots(self, modes: Modes, duration: float) -> None:
        order = np.argsort(modes.powers, kind="stable")  # loud dots on top
        loudest = modes.powers.max() if len(modes) else 0.0
        relative = np.clip((modes.powers[order] - loudest + DOT_RANGE_DB) / DOT_RANGE_DB, 0.0, 1.0)
        diameter_pt = (4.0 + 14.0 * np.sqrt(relative)) * 72.0 / DPI  # 4 to 18 pixels across
        y = np.clip(np.log10(np.maximum(modes.frequencies[order], MIN_HZ)), self.low, self.high)
        decays = modes.decays[order]
        inside = decays <= duration
        self.dots.set_offsets(np.column_stack([decays[inside], y[inside]]))
        self.dots.set_sizes(diameter_pt[inside] ** 2)
        self.ringing.set_offsets(np.column_stack([np.full((~inside).sum(), duration), y[~inside]]))
        self.ringing.set_sizes(diameter_pt[~inside] ** 2)

    def draw(self, levels: np.ndarray, modes: Modes, duration: float) -> np.ndarray:
        """The picture of spectrogram `levels` (`spectrogram_levels`) and `modes` over `duration` seconds."""
        with self.lock:
            self.axes.set_xlim(0.0, duration)
            self.image.set_extent((0.0, duration, self.low, self.high))
            self.figure.canvas.restore_region(self.background)
            self.figure.canvas.restore_region(self._time_axis(duration))
            self.image.set_data(levels)
            self._place_dots(modes, duration)
            for artist in (self.image, *self.axes.spines.values(), self.dots, self.ringing):
                self.axes.draw_artist(artist)
            return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()
