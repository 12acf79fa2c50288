"""Shared pieces of the toy world: per-sample random generators, drawing primitives, colours, sound placement.

Drawing works on float32 pictures in [0, 1], channels last, and is vectorised over frames: a primitive takes per-frame
parameters of shape [T] and returns a coverage mask [T, H, W] (anti-aliased over about one pixel), which `paint`
blends into frames [T, H, W, 3]. Pixel coordinates: x to the right, y downwards, pixel centres at integers.
"""

from __future__ import annotations

import numpy as np

# Named colours (RGB in [0, 1]) used by objects in impact clips and sounding videos.
COLOURS: dict[str, tuple[float, float, float]] = {
    "steel grey": (0.55, 0.60, 0.66),
    "silver": (0.80, 0.82, 0.85),
    "pale blue": (0.62, 0.85, 0.95),
    "white": (0.95, 0.95, 0.92),
    "brown": (0.55, 0.35, 0.18),
    "tan": (0.80, 0.62, 0.40),
    "red": (0.90, 0.15, 0.12),
    "green": (0.20, 0.75, 0.25),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.10),
}

# Each material looks like itself: its colour is drawn from its own palette, so a picture tells the material.
MATERIAL_COLOURS: dict[str, tuple[str, ...]] = {
    "metal": ("steel grey",),
    "aluminium": ("silver",),
    "glass": ("pale blue",),
    "ceramic": ("white",),
    "wood": ("brown", "tan"),
    "plastic": ("red", "green", "blue", "yellow"),
}


def item_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """One independent generator per sample: sample i depends only on (seed, i), not on n."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"`n` must be a non-negative integer, got {n!r}")
    return [np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index,))) for index in range(n)]


def pick_one(rng: np.random.Generator, classes: tuple[str, ...], known: tuple[str, ...], what: str) -> str:
    """One of `classes` (checked against `known`), uniformly."""
    unknown = [name for name in classes if name not in known]
    if not classes or unknown:
        raise ValueError(f"unknown {what} {unknown or list(classes)!r}; choose from {', '.join(known)}")
    return classes[int(rng.integers(len(classes)))]


# Drawing --------------------------------------------------------------------------------------------------------


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(y [1, H, 1], x [1, 1, W]) float32 pixel-centre coordinates, ready to broadcast against [T, 1, 1]."""
    y = np.arange(height, dtype=np.float32)[None, :, None]
    x = np.arange(width, dtype=np.float32)[None, None, :]
    return y, x


def _column(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside): 1 inside, 0 beyond half a pixel."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def disk(height: int, width: int, cx, cy, radius) -> np.ndarray:
    """Coverage [T, H, W] of disks centred at (cx[t], cy[t]) with radius[t] (scalars broadcast)."""
    y, x = pixel_grid(height, width)
    distance = np.sqrt((x - _column(cx)) ** 2 + (y - _column(cy)) ** 2)
    return coverage(distance - _column(radius))


def box(height: int, width: int, cx, cy, half_width, half_height) -> np.ndarray:
    """Coverage [T, H, W] of axis-aligned rectangles centred at (cx, cy) with the given half sizes."""
    y, x = pixel_grid(height, width)
    dx = np.abs(x - _column(cx)) - _column(half_width)
    dy = np.abs(y - _column(cy)) - _column(half_height)
    return coverage(np.maximum(dx, dy))


def segment(height: int, width: int, x0, y0, x1, y1, thickness) -> np.ndarray:
    """Coverage [T, H, W] of line segments (x0, y0)–(x1, y1) of the given full thickness, round-capped."""
    y, x = pixel_grid(height, width)
    x0, y0, x1, y1 = (_column(v) for v in (x0, y0, x1, y1))
    dx, dy = x1 - x0, y1 - y0
    length_sq = np.maximum(dx * dx + dy * dy, 1e-6)
    along = np.clip(((x - x0) * dx + (y - y0) * dy) / length_sq, 0.0, 1.0)
    distance = np.sqrt((x - x0 - along * dx) ** 2 + (y - y0 - along * dy) ** 2)
    return coverage(distance - _column(thickness) / 2.0)


def paint(frames: np.ndarray, mask: np.ndarray, colour) -> None:
    """Blend `colour` (RGB, or [T, 3]) into `frames` [T, H, W, 3] in place, weighted by `mask` [T, H, W]."""
    rgb = np.asarray(colour, dtype=np.float32).reshape(-1, 1, 1, 3)
    frames += mask[..., None] * (rgb - frames)


def backdrop(num_frames: int, size: int, floor_y: float, rng: np.random.Generator) -> np.ndarray:
    """Frames [T, H, W, 3]: a soft vertical sky gradient above a grey floor whose top edge is at `floor_y`."""
    sky_top = np.array([0.20, 0.24, 0.35]) + rng.uniform(-0.05, 0.05, 3)
    sky_bottom = np.array([0.45, 0.50, 0.60]) + rng.uniform(-0.05, 0.05, 3)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    sky = (1.0 - ramp) * sky_top + ramp * sky_bottom  # [H, 3]
    picture = np.repeat(sky[:, None, :], size, axis=1).astype(np.float32)  # [H, W, 3]
    frames = np.repeat(picture[None], num_frames, axis=0)
    floor = box(size, size, [size / 2.0], [floor_y + size], [size], [size])  # [1, H, W]: everything below floor_y
    paint(frames, np.repeat(floor, num_frames, axis=0), (0.30, 0.30, 0.28))
    return frames


# Sound ----------------------------------------------------------------------------------------------------------


def add_at(track: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add `gain · sound` into `track` in place, its first sample at index `start` (cut at the track's end)."""
    start = int(start)
    length = min(len(sound), len(track) - start)
    if start >= 0 and length > 0:
        track[start : start + length] += gain * sound[:length]


def fit_peak(audio: np.ndarray, peak: float = 0.9) -> tuple[np.ndarray, float]:
    """Scale to the given peak; returns (float32 audio, the linear gain used; 1 for silence)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    gain = peak / top if top > 0.0 else 1.0
    return (audio * gain).astype(np.float32), gain

