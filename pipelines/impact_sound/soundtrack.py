"""An impact soundtrack: an impact sound placed at every hit time, summed, kept below full scale.

Hit at t seconds -> the impact's first sample lands on sample round(t · sample_rate) of the soundtrack; impacts
that run past the end are cut there. If overlapping impacts sum above `ceiling`, the whole soundtrack is scaled
down uniformly (no clipping distortion); quieter soundtracks keep their level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def hit_samples(hit_times: Sequence[float], sample_rate: int) -> np.ndarray:
    """The sample index round(t · sample_rate) of each hit time."""
    return np.array([round(float(t) * sample_rate) for t in hit_times], dtype=np.int64)


def place_impacts(
    hit_times: Sequence[float],
    impacts: np.ndarray,
    sample_rate: int,
    duration_s: float,
    *,
    gains: Sequence[float] | None = None,
    ceiling: float = 0.99,
) -> np.ndarray:
    """Float32 soundtrack of `duration_s` seconds with an impact (mono, at `sample_rate`) starting at each hit.

    `impacts`: one sound [S] used for every hit, or one per hit [N, S]. `gains` (linear, one per hit) scale
    individual impacts; default 1 for all.
    """
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"the soundtrack duration must be positive, got {duration_s}")
    times = np.asarray(hit_times, dtype=np.float64).reshape(-1)
    if not np.isfinite(times).all() or (times < 0).any() or (times > duration_s).any():
        raise ValueError(f"hit times must lie between 0 and {duration_s:g} s")
    gains = np.ones(len(times)) if gains is None else np.asarray(gains, dtype=np.float64).reshape(-1)
    if len(gains) != len(times):
        raise ValueError(f"got {len(gains)} gains for {len(times)} hits: give one per hit")
    impacts = np.asarray(impacts, dtype=np.float64)
    if impacts.ndim == 1:
        impacts = np.broadcast_to(impacts, (len(times), impacts.size))
    if impacts.ndim != 2 or len(impacts) != len(times):
        raise ValueError(f"got {len(impacts)} impact sounds for {len(times)} hits: give one, or one per hit")
    out = np.zeros(round(duration_s * sample_rate), dtype=np.float64)
    for start, gain, impact in zip(hit_samples(times, sample_rate), gains, impacts):
        length = min(len(impact), len(out) - int(start))
        if length > 0:
            out[start : start + length] += gain * impact[:length]
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > ceiling:
        out *= ceiling / peak
    return out.astype(np.float32)
