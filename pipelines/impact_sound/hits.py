"""Hit detection in a silent video from motion onsets (pure numpy; issue 4, item 4).

Not in the paper (its videos come with the hit times of the Greatest Hits dataset). A hit shows as a sudden rise
in how much the picture changes from one frame to the next:

1. motion energy m[i] = mean |frame_i − frame_{i−1}| over all pixels (grayscale in [0, 1]; m[0] = m[1], so a
   video that starts in motion does not start with a hit);
2. onset strength s[i] = max(0, m[i] − m[i−1]): a rise in motion, not steady motion;
3. hits are local maxima of s that stand above an adaptive threshold (median + k·MAD of s, with k set by the
   sensitivity) and an absolute floor (so compression noise in a still video is never a hit), at least
   `min_gap_s` apart (the stronger one wins).

A hit at frame i (the first frame showing the change) is placed at t = i / fps seconds.
"""

from __future__ import annotations

import math

import numpy as np

MIN_GAP_S = 0.25  # one impact clip: hits closer than this are one hit
MIN_STRENGTH = 2e-3  # onset floor: half a grey level of average change (on a 0–255 scale) over the whole picture


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change from the previous frame, [T] (the first frame repeats the second's; 0 for one frame).

    `frames`: [T, H, W] grayscale or [T, H, W, C] colour (channels are averaged), values in [0, 1].
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 4:
        frames = frames.mean(axis=3)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [T, H, W] or [T, H, W, C], got shape {frames.shape}")
    energy = np.zeros(len(frames), dtype=np.float64)
    if len(frames) > 1:
        energy[1:] = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
        energy[0] = energy[1]
    return energy


def onset_strength(energy: np.ndarray) -> np.ndarray:
    """Half-wave rectified rise of the motion energy, [T] (0 for the first frame)."""
    strength = np.zeros_like(energy, dtype=np.float64)
    strength[1:] = np.maximum(np.diff(energy), 0.0)
    return strength


def pick_peaks(strength: np.ndarray, fps: float, *, sensitivity: float = 0.5, min_gap_s: float = MIN_GAP_S,
               min_strength: float = MIN_STRENGTH) -> np.ndarray:
    """Frame indices (rising) of the onset peaks, greedily strongest first, at least `min_gap_s` apart.

    `sensitivity` in [0, 1]: 0 keeps only peaks 10 MADs above the median onset strength, 1 those 1 MAD above.
    """
    if not 0.0 <= sensitivity <= 1.0:
        raise ValueError(f"sensitivity must be between 0 and 1, got {sensitivity}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    s = np.asarray(strength, dtype=np.float64)
    if len(s) < 2:
        return np.zeros(0, dtype=int)
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median)))  # MAD, scaled to a standard deviation
    threshold = max(min_strength, median + (10.0 - 9.0 * sensitivity) * spread)
    left = np.concatenate([[-np.inf], s[:-1]])
    right = np.concatenate([s[1:], [-np.inf]])
    candidates = np.flatnonzero((s > left) & (s >= right) & (s >= threshold))
    gap = math.ceil(min_gap_s * fps - 1e-9)  # frames: peaks must be at least min_gap_s apart
    chosen: list[int] = []
    for index in candidates[np.argsort(-s[candidates], kind="stable")]:
        if all(abs(index - other) >= gap for other in chosen):
            chosen.append(int(index))
    return np.array(sorted(chosen), dtype=int)


def detect_hits(frames: np.ndarray, fps: float, *, sensitivity: float = 0.5,
                min_gap_s: float = MIN_GAP_S) -> np.ndarray:
    """Hit times in seconds (rising) in a silent video's frames ([T, H, W] or [T, H, W, C] in [0, 1])."""
    strength = onset_strength(motion_energy(frames))
    return pick_peaks(strength, fps, sensitivity=sensitivity, min_gap_s=min_gap_s) / float(fps)
