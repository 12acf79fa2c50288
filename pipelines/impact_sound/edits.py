"""Edits an artist understands, each a pure function Modes -> Modes (nothing is changed in place).

The paper calls its physics priors "fully interpretable" and demonstrates editing by "removing low frequency
physics priors" (project page) but gives no procedure: the edits below are this project's, built on the
modal model of the paper's Eq. 1–4.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.impact_sound.modal import T60_DB, Modes

DB_PER_NEPER = 20.0 / math.log(10.0)  # an amplitude e^{−σt} falls 20·log10(e)·σ dB per second


def shift_pitch(modes: Modes, semitones: float = 0.0, *, ratio: float | None = None) -> Modes:
    """Multiply every frequency by `ratio` (default 2^{semitones/12}; +12 semitones doubles them).

    Decay times and powers are kept: the object rings as long, only higher or lower. Modes pushed to or above the
    Nyquist frequency are dropped (they would alias).
    """
    factor = 2.0 ** (semitones / 12.0) if ratio is None else float(ratio)
    if not (factor > 0.0 and math.isfinite(factor)):
        raise ValueError(f"the pitch ratio must be positive and finite, got {factor}")
    shifted = modes.frequencies * factor
    keep = shifted < modes.nyquist
    return modes.select(keep).replace(frequencies=shifted[keep])


def scale_damping(modes: Modes, factor: float) -> Modes:
    """Multiply every decay rate by `factor`: 0.5 halves the damping, so each mode rings twice as long (T60 × 2)."""
    if not (factor > 0.0 and math.isfinite(factor)):
        raise ValueError(f"the damping factor must be positive and finite, got {factor}")
    return modes.replace(decays=modes.decays / factor)


def rayleigh_decay_times(frequencies: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """T60 of each mode under Rayleigh damping C = αM + βK (paper Eq. 2).

    Each decoupled mode obeys q̈ + (α + βω²) q̇ + ω² q = 0, so its amplitude decays as e^{−σt} with
    σ = (α + βω²)/2 (ω = 2πf); it falls 60 dB in T60 = 60 / (20·log10(e)·σ) s.
    """
    omega = 2.0 * np.pi * np.asarray(frequencies, dtype=np.float64)
    sigma = 0.5 * (alpha + beta * omega**2)
    with np.errstate(divide="ignore"):
        return T60_DB / (DB_PER_NEPER * sigma)


def set_rayleigh_damping(modes: Modes, alpha: float, beta: float) -> Modes:
    """Replace every decay by the Rayleigh model's: σ_i = (α + β ω_i²)/2. α damps all modes alike (1/s), β damps
    high modes more (s). Frequencies are kept as given (the observed, damped frequencies)."""
    if not (alpha >= 0.0 and beta >= 0.0 and alpha + beta > 0.0 and math.isfinite(alpha + beta)):
        raise ValueError(f"Rayleigh α and β must be non-negative and not both zero, got α={alpha}, β={beta}")
    decays = rayleigh_decay_times(modes.frequencies, alpha, beta)
    keep = np.isfinite(decays) & (decays > 0.0)  # a 0 Hz mode with α = 0 never decays: dropped
    return modes.select(keep).replace(decays=decays[keep])


def tilt_brightness(modes: Modes, db_per_octave: float, reference_hz: float = 1000.0) -> Modes:
    """Add `db_per_octave` × log2(f / reference_hz) dB to each mode's power: positive is brighter.

    Modes at 0 Hz (the paper extractor's DC bin) are left unchanged.
    """
    if not reference_hz > 0.0:
        raise ValueError(f"`reference_hz` must be positive, got {reference_hz}")
    octaves = np.zeros_like(modes.frequencies)
    positive = modes.frequencies > 0.0
    octaves[positive] = np.log2(modes.frequencies[positive] / reference_hz)
    return modes.replace(powers=modes.powers + db_per_octave * octaves)


def _band_mask(modes: Modes, low_hz: float, high_hz: float) -> np.ndarray:
    if not (0.0 <= low_hz <= high_hz):
        raise ValueError(f"a band needs 0 ≤ low ≤ high, got {low_hz} to {high_hz} Hz")
    return (modes.frequencies >= low_hz) & (modes.frequencies <= high_hz)


def remove_band(modes: Modes, low_hz: float, high_hz: float) -> Modes:
    """Delete the modes with low_hz ≤ f ≤ high_hz (e.g. 0 to 500 Hz: the paper's "remove low-frequency physics")."""
    return modes.select(~_band_mask(modes, low_hz, high_hz))


def keep_band(modes: Modes, low_hz: float, high_hz: float) -> Modes:
    """Keep only the modes with low_hz ≤ f ≤ high_hz."""
    return modes.select(_band_mask(modes, low_hz, high_hz))


def mute_band(modes: Modes, low_hz: float, high_hz: float, floor_db: float = -80.0) -> Modes:
    """Set the power of the modes in the band to `floor_db` but keep them: the paper's fixed 1025-mode layout
    (one per STFT bin) stays intact, as its physics encoder needs."""
    inside = _band_mask(modes, low_hz, high_hz)
    return modes.replace(powers=np.where(inside, floor_db, modes.powers))


def match_modes(a: Modes, b: Modes, max_semitones: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Pair modes of `a` and `b` one to one, minimising the total |log2 f_a − log2 f_b| (Hungarian assignment);
    pairs more than `max_semitones` apart are left unpaired. Returns index arrays (into a, into b)."""
    from scipy.optimize import linear_sum_assignment  # imported on use: scipy.optimize takes a second to import

    if not len(a) or not len(b):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    pitch_a = np.log2(np.maximum(a.frequencies, 1.0))  # 0 Hz modes (paper DC bin) count as 1 Hz
    pitch_b = np.log2(np.maximum(b.frequencies, 1.0))
    distance = np.abs(pitch_a[:, None] - pitch_b[None, :]) * 12.0  # semitones
    too_far = distance > max_semitones
    cost = np.where(too_far, 1e6, distance)  # far pairs cost more than any set of near ones
    rows, cols = linear_sum_assignment(cost)
    near = ~too_far[rows, cols]
    return rows[near], cols[near]


def morph(a: Modes, b: Modes, amount: float, max_semitones: float = 3.0) -> Modes:
    """Interpolate sound `a` (amount 0) towards sound `b` (amount 1).

    Matched modes (`match_modes`) glide: frequency and decay time geometrically (log-linear), power linearly in
    dB. Unmatched modes cross-fade: a's fade out (power + 20·log10(1 − amount)) and b's fade in
    (power + 20·log10(amount)); a mode at zero amplitude is dropped, so amount 0 returns exactly a's modes and
    amount 1 exactly b's (sorted by frequency). Phases follow the nearer end (kept only if both sounds have them).
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"`amount` must be between 0 and 1, got {amount}")
    if a.sample_rate != b.sample_rate:
        raise ValueError(f"both sounds need the same sample rate, got {a.sample_rate} and {b.sample_rate} Hz")
    ia, ib = match_modes(a, b, max_semitones)
    solo_a = np.setdiff1d(np.arange(len(a)), ia)
    solo_b = np.setdiff1d(np.arange(len(b)), ib)
    keep_a = 1.0 - amount > 0.0
    keep_b = amount > 0.0
    solo_a = solo_a if keep_a else solo_a[:0]
    solo_b = solo_b if keep_b else solo_b[:0]
    fade_out = 20.0 * math.log10(1.0 - amount) if keep_a else 0.0
    fade_in = 20.0 * math.log10(amount) if keep_b else 0.0
    frequencies = np.concatenate([_geometric(a.frequencies[ia], b.frequencies[ib], amount), a.frequencies[solo_a],
                                  b.frequencies[solo_b]])
    powers = np.concatenate([(1.0 - amount) * a.powers[ia] + amount * b.powers[ib], a.powers[solo_a] + fade_out,
                             b.powers[solo_b] + fade_in])
    decays = np.concatenate([_geometric(a.decays[ia], b.decays[ib], amount), a.decays[solo_a], b.decays[solo_b]])
    phases = None
    if a.phases is not None and b.phases is not None:
        near = a.phases[ia] if amount < 0.5 else b.phases[ib]
        phases = np.concatenate([near, a.phases[solo_a], b.phases[solo_b]])
    return Modes(frequencies, powers, decays, phases, sample_rate=a.sample_rate).sorted()


def _geometric(x: np.ndarray, y: np.ndarray, amount: float) -> np.ndarray:
    """x^{1−t}·y^t: log-linear interpolation, exactly x at t = 0 and exactly y at t = 1."""
    return np.power(x, 1.0 - amount) * np.power(y, amount)
