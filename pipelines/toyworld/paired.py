"""Paired pictures and sounds for Visual Echoes: a picture of sounding things and the sound they make, paired the way
a video frame and its clip are.

Kinds (`PAIRED_KINDS`, 8): bell, drum, bird, whistle, engine, dog, clock, rain. A picture (RGB float32 in [0, 1],
default 32 × 32) shows 1–3 objects of one kind on a tinted backdrop, each kind with its own shape and colour
palette, drawn with variation (backdrop tint, colour jitter, position jitter). The sound (22,050 Hz mono, default
128 spectrogram frames of 256 samples = 32,768 samples, 1.49 s) holds one event per object drawn, in slots across
the clip, with jittered onsets. Continuous links beyond the kind:

- **size sets pitch**: every object of a picture has the same size s ∈ [0, 1] (drawn half-size 2.5 + 2.5·s pixels at
  32 × 32, scaled with the picture); the kind's pitch is f = f_kind · 2^(−1.5·s), so bigger is lower by up to 1.5
  octaves;
- **number of objects sets the number of events** heard (1–3).

Ground truth per sample: kind, count, size, pitch_hz, onsets_s, colour. Sample i depends only on (seed, i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.audio import SPECS
from pipelines.toyworld.common import add_at, box, coverage, disk, item_rngs, paint, pick_one, pixel_grid, segment

PAIRED_KINDS = ("bell", "drum", "bird", "whistle", "engine", "dog", "clock", "rain")
SAMPLE_RATE = SPECS["visual_echoes"].sample_rate  # SpecVQGAN's convention, as Visual Echoes hears
HOP = SPECS["visual_echoes"].hop_length
FRAMES = 128
PICTURE_SIZE = 32
MAX_COUNT = 3
# Base pitch of each kind at size 0 (Hz); the drawn size lowers it by up to 1.5 octaves.
BASE_HZ = {"bell": 1400.0, "drum": 220.0, "bird": 3000.0, "whistle": 2400.0, "engine": 180.0, "dog": 700.0,
           "clock": 4000.0, "rain": 3000.0}
PALETTES = {"bell": ((0.95, 0.78, 0.15), (0.85, 0.65, 0.10)), "drum": ((0.80, 0.15, 0.12), (0.65, 0.10, 0.25)),
            "bird": ((0.15, 0.45, 0.95), (0.10, 0.70, 0.90)), "whistle": ((0.10, 0.55, 0.45), (0.15, 0.45, 0.55)),
            "engine": ((0.25, 0.25, 0.28), (0.35, 0.30, 0.25)), "dog": ((0.55, 0.33, 0.15), (0.70, 0.50, 0.30)),
            "clock": ((0.97, 0.97, 0.95), (0.90, 0.92, 0.80)), "rain": ((0.30, 0.55, 0.85), (0.45, 0.65, 0.95))}


@dataclass
class PairedBatch:
    """images: [N, H, W, 3] float32 in [0, 1]; audio: [N, S] float32 at `sample_rate`; ground truth per sample."""

    images: np.ndarray
    audio: np.ndarray
    sample_rate: int
    kinds: list[str]
    counts: list[int]
    sizes: list[float]
    params: list[dict] = field(default_factory=list)

    @property
    def captions(self) -> list[str]:
        words = ("", "one", "two", "three")
        return [f"{words[c]} {'small' if s < 0.5 else 'big'} {k}{'s' if c > 1 else ''}"
                for k, c, s in zip(self.kinds, self.counts, self.sizes)]

    def __len__(self) -> int:
        return len(self.kinds)


def pitch_hz(kind: str, size: float) -> float:
    """The pitch of a `kind` object of size s ∈ [0, 1]: f_kind · 2^(−1.5·s)."""
    return BASE_HZ[kind] * 2.0 ** (-1.5 * float(size))


def sample_paired(n: int, seed: int, *, kinds: tuple[str, ...] = PAIRED_KINDS, size: int = PICTURE_SIZE,
                  frames: int = FRAMES, balanced: bool = False) -> PairedBatch:
    """N seeded (picture, sound) pairs (`balanced`: sample i has kind kinds[i % len])."""
    if not 8 <= size <= 1024:
        raise ValueError(f"`size` must be 8–1024 pixels, got {size}")
    if not 16 <= frames <= 4096:
        raise ValueError(f"`frames` must be 16–4096, got {frames}")
    length = frames * HOP
    images, sounds, names, counts, sizes, params = [], [], [], [], [], []
    for index, rng in enumerate(item_rngs(seed, n)):
        kind = pick_one(rng, tuple(kinds), PAIRED_KINDS, "paired kind")
        if balanced:
            kind = kinds[index % len(kinds)]
        count = int(rng.integers(1, MAX_COUNT + 1))
        scale = float(rng.uniform(0.0, 1.0))
        picture, colour = draw_picture(rng, kind, count, scale, size)
        onsets = event_onsets(rng, count, length / SAMPLE_RATE)
        audio = render_sound(rng, kind, scale, onsets, length)
        images.append(picture)
        sounds.append(audio)
        names.append(kind)
        counts.append(count)
        sizes.append(scale)
        params.append({"kind": kind, "count": count, "size": scale, "pitch_hz": pitch_hz(kind, scale),
                       "onsets_s": onsets.tolist(), "colour": colour})
    images_array = np.stack(images) if n else np.zeros((0, size, size, 3), np.float32)
    audio_array = np.stack(sounds) if n else np.zeros((0, length), np.float32)
    return PairedBatch(images_array, audio_array, SAMPLE_RATE, names, counts, sizes, params)


# Pictures ---------------------------------------------------------------------------------------------------------


def draw_picture(rng: np.random.Generator, kind: str, count: int, scale: float,
                 size: int) -> tuple[np.ndarray, list[float]]:
    """[size, size, 3] picture of `count` objects of `kind` with half-size (2.5 + 2.5·scale)·size/32 pixels."""
    unit = size / PICTURE_SIZE
    tint = rng.uniform(0.75, 0.95) + rng.uniform(-0.05, 0.05, 3)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    picture = np.broadcast_to(tint * (1.0 - 0.15 * ramp), (size, size, 3)).astype(np.float32).copy()
    palette = PALETTES[kind]
    colour = np.clip(np.asarray(palette[int(rng.integers(len(palette)))]) + rng.uniform(-0.06, 0.06, 3), 0, 1)
    half = (2.5 + 2.5 * scale) * unit
    slot = size / count
    for k in range(count):
        cx = (k + 0.5) * slot + rng.uniform(-0.15, 0.15) * slot
        cy = size * 0.5 + rng.uniform(-0.15, 0.15) * size
        _DRAW[kind](picture[None], cx, cy, half, colour, unit)
    return np.clip(picture, 0.0, 1.0), colour.tolist()


def _bell(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    y, x = pixel_grid(h, w)
    # A bell: a dome narrowing to the top, a flared lip, a clapper below.
    top, bottom = cy - r, cy + 0.8 * r
    t = np.clip((y - top) / max(bottom - top, 1e-3), 0.0, 1.0)
    half_width = r * (0.35 + 0.65 * t ** 0.7)
    inside = np.maximum(np.abs(x - cx) - half_width, np.maximum(top - y, y - bottom))
    paint(frames, coverage(inside), colour)
    paint(frames, disk(h, w, cx, bottom + 0.2 * r, 0.25 * r + 0.3 * unit), colour * 0.6)


def _drum(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    paint(frames, box(h, w, cx, cy + 0.15 * r, r, 0.65 * r), colour)
    y, x = pixel_grid(h, w)
    top = np.sqrt(((x - cx) / r) ** 2 + ((y - (cy - 0.5 * r)) / (0.35 * r)) ** 2)
    paint(frames, coverage((top - 1.0) * 0.35 * r), (0.93, 0.90, 0.82))


def _bird(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    y, x = pixel_grid(h, w)
    body = np.sqrt(((x - cx) / r) ** 2 + ((y - cy) / (0.6 * r)) ** 2)
    paint(frames, coverage((body - 1.0) * 0.6 * r), colour)
    paint(frames, disk(h, w, cx + 0.75 * r, cy - 0.45 * r, 0.4 * r), colour)
    paint(frames, segment(h, w, cx + 1.05 * r, cy - 0.45 * r, cx + 1.45 * r, cy - 0.35 * r, 0.25 * r + unit),
          (1.0, 0.6, 0.1))


def _whistle(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    paint(frames, box(h, w, cx, cy, r, 0.3 * r), colour)
    paint(frames, disk(h, w, cx + 0.8 * r, cy + 0.35 * r, 0.45 * r), colour)
    paint(frames, box(h, w, cx - 0.5 * r, cy - 0.3 * r, 0.15 * r, 0.15 * r), (0.1, 0.1, 0.1))


def _engine(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    paint(frames, box(h, w, cx, cy - 0.1 * r, r, 0.55 * r), colour)
    for offset in (-0.55, 0.55):
        paint(frames, disk(h, w, cx + offset * r, cy + 0.55 * r, 0.35 * r), (0.08, 0.08, 0.08))
    paint(frames, box(h, w, cx + 0.3 * r, cy - 0.8 * r, 0.12 * r, 0.3 * r), colour * 0.7)


def _dog(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    paint(frames, box(h, w, cx, cy, 0.8 * r, 0.4 * r), colour)
    paint(frames, disk(h, w, cx + 0.8 * r, cy - 0.5 * r, 0.4 * r), colour)
    paint(frames, box(h, w, cx + 0.6 * r, cy - 0.9 * r, 0.1 * r, 0.2 * r), colour * 0.6)
    for offset in (-0.6, 0.5):
        paint(frames, box(h, w, cx + offset * r, cy + 0.65 * r, 0.12 * r, 0.3 * r), colour * 0.8)


def _clock(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    paint(frames, disk(h, w, cx, cy, r), (0.15, 0.15, 0.15))
    paint(frames, disk(h, w, cx, cy, 0.82 * r), colour)
    paint(frames, segment(h, w, cx, cy, cx, cy - 0.65 * r, 0.15 * r + 0.5 * unit), (0.1, 0.1, 0.1))
    paint(frames, segment(h, w, cx, cy, cx + 0.45 * r, cy, 0.15 * r + 0.5 * unit), (0.1, 0.1, 0.1))


def _rain(frames, cx, cy, r, colour, unit):
    h, w = frames.shape[1:3]
    y, x = pixel_grid(h, w)
    cloud = np.sqrt(((x - cx) / r) ** 2 + ((y - (cy - 0.35 * r)) / (0.45 * r)) ** 2)
    paint(frames, coverage((cloud - 1.0) * 0.45 * r), (0.55, 0.57, 0.62))
    for offset in (-0.5, 0.0, 0.5):
        paint(frames, segment(h, w, cx + offset * r, cy + 0.3 * r, cx + offset * r - 0.15 * r, cy + 0.9 * r,
                              0.12 * r + 0.5 * unit), colour)


_DRAW = {"bell": _bell, "drum": _drum, "bird": _bird, "whistle": _whistle, "engine": _engine, "dog": _dog,
         "clock": _clock, "rain": _rain}


# Sounds -----------------------------------------------------------------------------------------------------------


def event_onsets(rng: np.random.Generator, count: int, seconds: float) -> np.ndarray:
    """`count` onsets, one per equal slot of the clip (the last 0.35 s of each slot left for the event)."""
    slot = seconds / count
    return np.array([k * slot + rng.uniform(0.02, max(0.03, slot - 0.4)) for k in range(count)])


def render_sound(rng: np.random.Generator, kind: str, scale: float, onsets: np.ndarray, length: int) -> np.ndarray:
    """The clip [length] at 22,050 Hz: one `kind` event at each onset, peak-normalised to 0.9."""
    f = pitch_hz(kind, scale)
    track = np.zeros(length)
    for onset in onsets:
        add_at(track, _EVENTS[kind](rng, f), round(onset * SAMPLE_RATE), gain=rng.uniform(0.8, 1.0))
    peak = float(np.max(np.abs(track)))
    return (track * (0.9 / peak) if peak > 0 else track).astype(np.float32)


def _time(seconds: float) -> np.ndarray:
    return np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _bell_event(rng, f):
    t = _time(0.35)
    ratios, decays = (1.0, 2.0, 2.76, 5.4), (0.25, 0.15, 0.1, 0.06)
    return sum(np.sin(2 * np.pi * f * q * t) * np.exp(-t / d) / (k + 1)
               for k, (q, d) in enumerate(zip(ratios, decays)) if f * q < 0.45 * SAMPLE_RATE)


def _drum_event(rng, f):
    t = _time(0.3)
    sweep = f * (1.0 + 1.5 * np.exp(-t / 0.02))
    body = np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.exp(-t / 0.08)
    return body + 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.01)


def _bird_event(rng, f):
    t = _time(0.2)
    sweep = f * (0.7 + 0.6 * t / t[-1])
    return np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.hanning(t.size)


def _whistle_event(rng, f):
    t = _time(0.3)
    vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * 6.0 * t)
    return np.sin(2 * np.pi * np.cumsum(f * vibrato) / SAMPLE_RATE) * np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)


def _engine_event(rng, f):
    t = _time(0.33)
    phase = f * t % 1.0
    saw = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 9) if k * f < 0.45 * SAMPLE_RATE)
    return (saw + 0.2 * (phase - 0.5)) * np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)


def _dog_event(rng, f):
    t = _time(0.18)
    envelope = np.exp(-t / 0.06) * np.minimum(1.0, t / 0.005)
    tone = sum(np.sin(2 * np.pi * k * f * (1.0 - 0.3 * t / t[-1]) * t) / k for k in range(1, 5))
    return (tone + 0.3 * rng.standard_normal(t.size)) * envelope


def _clock_event(rng, f):
    t = _time(0.12)
    click = np.sin(2 * np.pi * f * t) * np.exp(-t / 0.01)
    second = np.zeros_like(t)
    start = round(0.06 * SAMPLE_RATE)
    second[start:] = 0.7 * np.sin(2 * np.pi * 0.8 * f * t[: t.size - start]) * np.exp(-t[: t.size - start] / 0.01)
    return click + second


def _rain_event(rng, f):
    t = _time(0.3)
    out = np.zeros(t.size)
    tick_t = _time(0.01)
    for start in rng.uniform(0, t.size - tick_t.size, 25).astype(int):
        tone = f * rng.uniform(0.8, 1.25)
        out[start : start + tick_t.size] += np.sin(2 * np.pi * tone * tick_t) * np.exp(-tick_t / 0.003)
    return out


_EVENTS = {"bell": _bell_event, "drum": _drum_event, "bird": _bird_event, "whistle": _whistle_event,
           "engine": _engine_event, "dog": _dog_event, "clock": _clock_event, "rain": _rain_event}

__all__ = [
    "BASE_HZ",
    "FRAMES",
    "HOP",
    "MAX_COUNT",
    "PAIRED_KINDS",
    "PICTURE_SIZE",
    "SAMPLE_RATE",
    "PairedBatch",
    "draw_picture",
    "math",
    "pitch_hz",
    "render_sound",
    "sample_paired",
]
