"""A picture of an impact sound's physics: its spectrogram with one dot per mode on top (RGB uint8, drawn with PIL).

- Background: the sound's STFT magnitude (the impact spec's n_fft 2048 / hop 256) in dB, the top 80 dB shown;
  time runs left to right, frequency bottom to top on a log axis (20 Hz to Nyquist).
- Dots: each mode at (its decay time T60, its frequency), i.e. where its line in the spectrogram has faded by
  60 dB; dot area grows with the mode's power (the loudest mode largest, modes 60 dB weaker smallest). A mode
  ringing past the end of the sound is drawn as a triangle at the right edge.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.impact_sound.modal import IMPACT, Modes, stft_magnitude

WIDTH, HEIGHT = 760, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 46
MIN_HZ = 20.0
DYNAMIC_RANGE_DB = 80.0
DOT_RANGE_DB = 60.0
DOT_RGB, OUTLINE_RGB, TEXT_RGB, BACKGROUND_RGB = (90, 230, 255), (10, 10, 20), (30, 30, 40), (255, 255, 255)
# Dark purple -> red -> orange -> pale yellow, as (level in [0, 1], R, G, B).
COLORMAP = np.array([(0.0, 0, 0, 4), (0.35, 80, 18, 123), (0.65, 221, 70, 70), (0.85, 253, 160, 70),
                     (1.0, 252, 253, 191)])
FREQUENCY_TICKS = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def modes_picture(audio: np.ndarray, modes: Modes, sample_rate: int = IMPACT.sample_rate) -> np.ndarray:
    """[HEIGHT, WIDTH, 3] uint8: the spectrogram of `audio` with `modes` as dots (see the module docstring)."""
    seconds = max(len(audio) / sample_rate, 1e-3)
    image = _axes(seconds, sample_rate / 2.0).copy()
    plot = _spectrogram_pixels(audio, sample_rate, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
    image.paste(Image.fromarray(plot), (LEFT, TOP))
    _draw_modes(ImageDraw.Draw(image), modes, seconds, sample_rate / 2.0)
    return np.asarray(image)


@functools.lru_cache(maxsize=16)
def _axes(duration: float, nyquist: float) -> Image.Image:
    """The empty picture with its axes and labels (drawn once per length and rate: text is the slow part)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND_RGB)
    _draw_axes(ImageDraw.Draw(image), ImageFont.load_default(size=12), duration, nyquist)
    return image


def _y(frequency: np.ndarray | float, nyquist: float) -> np.ndarray:
    """Pixel row of a frequency on the log axis (MIN_HZ at the bottom of the plot, Nyquist at the top)."""
    span = math.log(nyquist / MIN_HZ)
    fraction = np.log(np.maximum(frequency, MIN_HZ) / MIN_HZ) / span
    return TOP + (1.0 - np.clip(fraction, 0.0, 1.0)) * (HEIGHT - TOP - BOTTOM)


def _x(seconds: np.ndarray | float, duration: float) -> np.ndarray:
    return LEFT + np.clip(np.asarray(seconds) / duration, 0.0, 1.0) * (WIDTH - LEFT - RIGHT)


def _spectrogram_pixels(audio: np.ndarray, sample_rate: int, width: int, height: int) -> np.ndarray:
    """The log-frequency dB spectrogram resampled to [height, width] and coloured."""
    samples = np.asarray(audio, dtype=np.float64)
    if len(samples) < IMPACT.hop_length:
        samples = np.pad(samples, (0, IMPACT.hop_length - len(samples)))
    magnitude = stft_magnitude(samples, IMPACT.n_fft, IMPACT.hop_length)  # [bins, frames]
    level = 20.0 * np.log10(np.maximum(magnitude, 1e-12))
    level = np.clip((level - (level.max() - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    if magnitude.max() < 1e-9:  # silence
        level[:] = 0.0
    rows = MIN_HZ * (sample_rate / 2.0 / MIN_HZ) ** np.linspace(1.0, 0.0, height)  # Hz per row, top to bottom
    bins = np.clip(np.round(rows / (sample_rate / IMPACT.n_fft)).astype(int), 0, level.shape[0] - 1)
    columns = np.minimum((np.arange(width) * level.shape[1]) // width, level.shape[1] - 1)
    return _colour(level[bins][:, columns])


def _colour(level: np.ndarray) -> np.ndarray:
    """Levels in [0, 1] -> RGB uint8 through the colormap, quantised to its 256 entries."""
    return np.take(_palette(), (level * 255.0 + 0.5).astype(np.uint8), axis=0)


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    """[256, 3] uint8: COLORMAP interpolated at 256 evenly spaced levels."""
    levels = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(levels, COLORMAP[:, 0], COLORMAP[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.uint8)


def _draw_axes(draw: ImageDraw.ImageDraw, font, duration: float, nyquist: float) -> None:
    bottom = HEIGHT - BOTTOM
    draw.rectangle([LEFT - 1, TOP - 1, WIDTH - RIGHT, bottom], outline=TEXT_RGB)
    for hz in [tick for tick in FREQUENCY_TICKS if tick <= nyquist]:
        y = float(_y(hz, nyquist))
        draw.line([LEFT - 5, y, LEFT - 1, y], fill=TEXT_RGB)
        draw.text((LEFT - 8, y), f"{hz // 1000}k" if hz >= 1000 else str(hz), fill=TEXT_RGB, font=font, anchor="rm")
    step = _nice_step(duration)
    for tick in np.arange(0.0, duration + 1e-9, step):
        x = float(_x(tick, duration))
        draw.line([x, bottom, x, bottom + 4], fill=TEXT_RGB)
        draw.text((x, bottom + 6), f"{tick:g}", fill=TEXT_RGB, font=font, anchor="mt")
    draw.text((LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 4), "time (s) · each dot is a mode: height = pitch, "
              "across = decay time (fallen 60 dB), size = power", fill=TEXT_RGB, font=font, anchor="mb")
    draw.text((4, TOP + 2), "Hz", fill=TEXT_RGB, font=font)


def _nice_step(duration: float) -> float:
    """A tick spacing of 1, 2 or 5 × 10^k giving 4 to 10 ticks."""
    for power in range(-3, 3):
        for base in (1, 2, 5):
            step = base * 10.0**power
            if duration / step <= 10:
                return step
    return duration


def _draw_modes(draw: ImageDraw.ImageDraw, modes: Modes, duration: float, nyquist: float) -> None:
    if not len(modes):
        return
    order = np.argsort(modes.powers, kind="stable")  # loud dots on top
    relative = np.clip((modes.powers - modes.powers.max() + DOT_RANGE_DB) / DOT_RANGE_DB, 0.0, 1.0)
    radius = 2.0 + 7.0 * np.sqrt(relative)  # dot area ~ power above the −60 dB floor
    xs, ys = _x(modes.decays, duration), _y(modes.frequencies, nyquist)
    for i in order:
        x, y, r = float(xs[i]), float(ys[i]), float(radius[i])
        if modes.decays[i] > duration:  # still ringing at the end: a triangle pointing right
            draw.polygon([(x - 2 * r, y - r), (x, y), (x - 2 * r, y + r)], fill=DOT_RGB, outline=OUTLINE_RGB)
        else:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=DOT_RGB, outline=OUTLINE_RGB)
