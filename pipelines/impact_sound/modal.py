"""Modal analysis and synthesis of impact sounds (Su et al., CVPR 2023, Sec. 3.1).

An impact sound is a sum of damped sinusoids, one per mode (paper Eq. 4):

    q_i(t) = 10^{(p_i − λ_i t)/20} · sin(2π f_i t + θ_i)

`Modes` holds f_i (Hz), p_i (dB: 20·log10 of the mode's amplitude at t = 0), the decay time d_i (s) and optional
phases θ_i (rad; None means θ = 0, the paper's choice). **Decay convention**: d_i is a T60, the time the mode takes
to fall by 60 dB, so λ_i = 60 / d_i dB/s. This is how the authors' released code uses its "decay time" (its
resynthesis decays 60 dB over d), not the paper's wording ("time to reach −80 dB").

Two estimators (`estimate_modes`):

- `paper`: the published extractor exactly as released (`tools/extract_physics_params.py`), quirks
  included: 1025 modes, one per STFT bin.
- `refined`: a sparse estimator that fixes what the notes measured as wrong with it (saturated and biased decays,
  every bin a mode, the onset click). Not in the paper.

JSON file format (`Modes.save` / `Modes.load`), all numbers as exact float64 reprs::

    {"format": "synesthesia-impact-modes", "version": 1, "sample_rate": 44100,
     "decay_convention": "...", "frequency_hz": [...], "power_db": [...], "decay_s": [...],
     "phase_rad": [...] | null}
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.audio import SPECS, AudioSpec, resample, stft_magnitude

IMPACT: AudioSpec = SPECS["impact"]
FORMAT_NAME = "synesthesia-impact-modes"
FORMAT_VERSION = 1
DECAY_CONVENTION = "decay_s is a T60 (time to fall 60 dB); Eq. 4 decay rate lambda = 60 / decay_s dB/s"
T60_DB = 60.0

# The released extractor's constants.
PAPER_FLOOR_DB = -80.0  # librosa.amplitude_to_db(ref=np.max) with top_db=80
PAPER_AMIN = 1e-5  # amplitude floor inside amplitude_to_db
PAPER_SEARCH_HALF_WIDTH_HZ = 10.76  # ±half an STFT bin (21.533 Hz / 2 = 10.767 Hz, rounded down)

# Synthesis: a raised-cosine fade-in this long removes the onset step a mode with θ ≠ 0 (or the sum of many
# modes) would otherwise start with. 0.25 ms = 11 samples at 44.1 kHz: far shorter than any audible attack.
FADE_IN_S = 0.25e-3

# Synthesis: an envelope factor below this fraction of the loudest mode's amplitude (−140 dB, under float32 resolution)
# is exactly zero, so a product of four factors has a magnitude of at least 1e-28, far from the float32 subnormals
# (below 1.2e-38) that make x86 arithmetic 10× slower.
DENORMAL_GUARD = 1e-7

# Refined estimator settings (see `_estimate_refined`).
REFINED_ZERO_PAD = 4  # whole-clip FFT length = 4 × next power of two: 0.67 Hz grid for a 0.25 s clip at 44.1 kHz
REFINED_FLOOR_HALF_WIDTH_HZ = 1500.0  # running-median window for the noise floor (robust to sparse peaks)
REFINED_MIN_WINDOW, REFINED_MAX_WINDOW = 256, 2048  # envelope window lengths at 44.1 kHz (scaled with the rate)
REFINED_FALLBACK_WINDOW = 64  # a mode too short-lived for its window is retried with halved windows down to this
REFINED_DYNAMIC_RANGE_DB = 80.0  # peaks more than this below the loudest are ignored (the paper's floor, too)
REFINED_MIN_POINTS = 4  # envelope points above the noise floor a mode needs to be fitted
MIN_DECAY_S, MAX_DECAY_S = 1e-4, 60.0  # fitted T60s are clipped to this range (a flat envelope has T60 = ∞)


# --------------------------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Modes:
    """A set of damped sinusoids (paper Eq. 4), as float64 arrays of one length K.

    Args:
        frequencies: f_i in Hz, each in [0, sample_rate / 2]. (0 Hz and Nyquist are allowed because the paper's
            extractor gives its DC and Nyquist STFT bins a mode there; with θ = 0 both are silent.)
        powers: p_i in dB, the mode's level at t = 0 (20·log10 amplitude; 0 dB = amplitude 1 = full scale).
        decays: d_i in seconds, a T60: λ_i = 60 / d_i dB/s. Positive and finite.
        phases: θ_i in radians, or None for θ = 0 (the paper neglects θ: the object is at rest, struck at t = 0).
        sample_rate: the rate these modes were analysed at or are meant for (sets the Nyquist limit).
    """

    frequencies: np.ndarray
    powers: np.ndarray
    decays: np.ndarray
    phases: np.ndarray | None = None
    sample_rate: int = IMPACT.sample_rate

    def __post_init__(self) -> None:
        for name in ("frequencies", "powers", "decays", "phases"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.array(value, dtype=np.float64).reshape(-1))
        _validate(self)

    def __len__(self) -> int:
        return len(self.frequencies)

    @property
    def nyquist(self) -> float:
        return self.sample_rate / 2.0

    @property
    def decay_rates(self) -> np.ndarray:
        """λ_i of Eq. 4 in dB/s (= 60 / T60)."""
        return T60_DB / self.decays

    @property
    def amplitudes(self) -> np.ndarray:
        """Linear amplitude of each mode at t = 0 (10^{p/20})."""
        return 10.0 ** (self.powers / 20.0)

    def replace(self, **changes) -> Modes:
        """A copy with some fields changed (validated again)."""
        fields = {"frequencies": self.frequencies, "powers": self.powers, "decays": self.decays, "phases": self.phases,
                  "sample_rate": self.sample_rate}
        fields.update(changes)
        return Modes(**fields)

    def select(self, keep: np.ndarray) -> Modes:
        """The modes where the boolean mask (or index array) `keep` selects."""
        phases = None if self.phases is None else self.phases[keep]
        return self.replace(frequencies=self.frequencies[keep], powers=self.powers[keep], decays=self.decays[keep],
                            phases=phases)

    def sorted(self) -> Modes:
        """The same modes in order of rising frequency (stable)."""
        return self.select(np.argsort(self.frequencies, kind="stable"))

    # JSON ----------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "sample_rate": int(self.sample_rate),
            "decay_convention": DECAY_CONVENTION,
            "frequency_hz": self.frequencies.tolist(),
            "power_db": self.powers.tolist(),
            "decay_s": self.decays.tolist(),
            "phase_rad": None if self.phases is None else self.phases.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Modes:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError(f"not a modes file: expected \"format\": \"{FORMAT_NAME}\"")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported modes file version {data.get('version')!r}, this code reads "
                             f"version {FORMAT_VERSION}")
        missing = [key for key in ("sample_rate", "frequency_hz", "power_db", "decay_s") if key not in data]
        if missing:
            raise ValueError(f"the modes file lacks {', '.join(missing)}")
        return cls(frequencies=data["frequency_hz"], powers=data["power_db"], decays=data["decay_s"],
                   phases=data.get("phase_rad"), sample_rate=data["sample_rate"])

    def to_json(self) -> str:
        # Python's float repr is the shortest string that reads back to the same float64: the round trip is exact.
        return json.dumps(self.to_dict(), allow_nan=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Modes:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"the modes file is not valid JSON ({error.msg}, line {error.lineno})") from error
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        Path(path).write_text(self.to_json(), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Modes:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not a modes file (not UTF-8 JSON text)") from error
        return cls.from_json(text)


def _validate(modes: Modes) -> None:
    """Raise ValueError naming the field and the rule it breaks."""
    rate = modes.sample_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"`sample_rate` must be a positive integer, got {rate!r}")
    object.__setattr__(modes, "sample_rate", int(rate))
    count = len(modes.frequencies)
    arrays = {"frequencies": modes.frequencies, "powers": modes.powers, "decays": modes.decays}
    if modes.phases is not None:
        arrays["phases"] = modes.phases
    for name, values in arrays.items():
        if len(values) != count:
            raise ValueError(f"`{name}` has {len(values)} values but `frequencies` has {count}: one per mode")
        if not np.isfinite(values).all():
            raise ValueError(f"`{name}` must be finite numbers, found NaN or infinity")
    if count and (modes.frequencies.min() < 0.0 or modes.frequencies.max() > rate / 2.0):
        raise ValueError(f"`frequencies` must lie in [0, {rate / 2.0:g}] Hz (Nyquist at {rate} Hz), got "
                         f"{modes.frequencies.min():g} to {modes.frequencies.max():g} Hz")
    if count and modes.decays.min() <= 0.0:
        raise ValueError(f"`decays` (T60 in seconds) must be positive, got {modes.decays.min():g}")


# --------------------------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------------------------


def estimate_modes(
    audio: np.ndarray,
    sample_rate: int,
    method: Literal["paper", "refined"] = "paper",
    *,
    max_modes: int = 64,
    min_peak_db: float = 15.0,
    floor_margin_db: float = 10.0,
) -> Modes:
    """Estimate modes (f, p, T60) from a mono impact sound that starts at the hit (t = 0 is the first sample).

    `method="paper"` reproduces the released extractor of Su et al. exactly, on the clip resampled to
    44.1 kHz, cut or zero-padded to 0.25 s and peak-normalised to 1, as its data pipeline prepares it:

    1. S = |STFT| with n_fft 2048, hop 256, periodic Hann, centred with zero padding: 1025 bins × 44 frames.
    2. S_dB = 20·log10(max(1e-5, S)) re the global maximum, floored at −80 dB (librosa `amplitude_to_db`).
    3. For each bin k (centre k·21.533 Hz) f_k = the frequency of the loudest rfft bin of the whole clip within
       ±10.76 Hz of the centre, counted only if its level 20·log10|X| is above 0 dB; otherwise the bin centre.
    4. p_k = S_dB[k, 0] (first frame, dB re the maximum, in [−80, 0]).
    5. d_k = j·256/44100 s for the first frame j where S_dB[k, j] hits −80 dB; 44 frames if it never does; half
       a frame if j = 0. d_k is then used as a T60 (λ_k = 60/d_k dB/s).

    Its quirks, kept on purpose (measured in the notes):

    - **Every bin is a mode**: 1025 modes, including leakage and noise bins; onset leakage (centred STFT, half a
      window of zeros at t = 0) gives even a clean, short single mode p > −80 dB in every bin.
    - **Frequency labels**: the rfft frequencies are labelled `linspace(0, 22050, 5513)` (spacing 4.00036 Hz)
      instead of the true k·4.0 Hz, mislabelling peaks by up to 2 Hz at the top; DC and Nyquist bins keep modes at
      0 Hz and 22050 Hz; a bin whose window holds no rfft level above 0 dB keeps its centre frequency; the
      neighbours of a true mode get f at the edge of their window nearest to it.
    - **Decays are biased and saturate**: d is the −80 dB crossing time but is used as a T60, so decays are not
      the true T60 (e.g. 81 ms for a true 50 ms); a bin that never reaches −80 dB re max gets 255.4 ms, so any
      stationary noise above −80 dB wipes out all decay information; d is quantised to 5.8 ms frames.
    - **Powers are relative**: p is dB re the loudest STFT cell, so the clip's level is lost.

    Computed in float64 (the released code runs librosa on float32 audio); the STFT and dB values match
    librosa's to 1e-9, so decisions only differ on exact ties.

    `method="refined"` (not in the paper) returns at most `max_modes` sparse modes at the analysis rate, with
    powers in dB re full scale (not re the loudest cell) and fitted phases:

    1. Peaks of the whole-clip spectrum (half-Hann fade-out at the end, zero-padded 4×) that stand `min_peak_db`
       above a running-median noise floor (±1.5 kHz) and lie within 80 dB of the loudest peak; sub-bin frequency
       by parabolic interpolation on the dB magnitude.
    2. Per mode, a complex envelope: the clip heterodyned to f_i and low-passed by a Hann window short enough to
       keep the nearest other mode out of its main lobe (256–2048 samples at 44.1 kHz; halved down to 64 for a
       mode too short-lived to fit).
    3. The envelope's dB level is fitted by a weighted straight line over the first run of frames standing
       `floor_margin_db` above the noise (noise power subtracted): slope → T60, intercept at t = 0 (corrected for
       the window's own decay weighting) → p; the envelope's phase slope refines f (by at most a quarter of the
       gap to the nearest mode) and its intercept gives θ. Modes with fewer than 4 frames above the floor are
       dropped, so noise is never a mode.
    4. Peeling: peaks that stand out in the residual (clip minus the fit), clear of the modes found, are added;
       all modes are refitted twice against the residual's noise floor (in a clean clip the clip's own floor is
       the modes' spectral skirts, far above the true noise).

    Limits: two modes closer than ~90 Hz (at 44.1 kHz) share a window and are fitted with beating envelopes;
    a weak mode lasting only ~10 ms beside a strong one may be missed; t = 0 is taken to be the hit.
    """
    samples = _mono_float64(audio)
    if method == "paper":
        return _estimate_paper(samples, sample_rate)
    if method == "refined":
        return _estimate_refined(samples, int(sample_rate), max_modes=max_modes, min_peak_db=min_peak_db,
                                 floor_margin_db=floor_margin_db)
    raise ValueError(f"`method` must be \"paper\" or \"refined\", got {method!r}")


def _mono_float64(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"`audio` must be one mono channel (1-D), got shape {samples.shape}")
    if samples.size == 0 or not np.isfinite(samples).all():
        raise ValueError("`audio` must hold at least one sample and only finite values")
    if not np.any(samples):
        raise ValueError("`audio` is silent: there are no modes to estimate")
    return samples


# The released extractor ---------------------------------------------------------------------------------------


def amplitude_to_db_ref_max(magnitude: np.ndarray, top_db: float = -PAPER_FLOOR_DB) -> np.ndarray:
    """librosa.amplitude_to_db(S, ref=np.max): dB re the largest value, floored `top_db` below the maximum."""
    power = np.square(magnitude)
    ref = np.max(power)
    amin = PAPER_AMIN**2
    decibels = 10.0 * np.log10(np.maximum(amin, power)) - 10.0 * np.log10(np.maximum(amin, ref))
    return np.maximum(decibels, decibels.max() - top_db)


def _fit_paper_clip(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 44.1 kHz, cut or zero-pad to 0.25 s (the code zero-pads at file end), peak-normalise to 1."""
    if sample_rate != IMPACT.sample_rate:
        samples = resample(samples, sample_rate, IMPACT.sample_rate).astype(np.float64)
    clip = np.zeros(IMPACT.clip_samples)
    clip[: min(len(samples), len(clip))] = samples[: len(clip)]
    peak = np.max(np.abs(clip))
    if peak == 0.0:
        raise ValueError("the first 0.25 s of `audio` are silent: there are no modes to estimate")
    return clip / peak


def _paper_peak_frequencies(samples: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Step 3 of the released extractor: the loudest rfft bin above 0 dB within ±10.76 Hz of each bin centre."""
    with np.errstate(divide="ignore"):
        levels = 20.0 * np.log10(np.abs(np.fft.rfft(samples)))  # unnormalised rfft magnitude in dB
    # Quirk kept: the code labels the rfft bins linspace(0, sr/2, n) (4.00036 Hz apart) instead of k·sr/len (4.0).
    labels = np.linspace(0.0, IMPACT.sample_rate / 2.0, len(levels))
    spacing = labels[1]
    first = np.floor((centers - PAPER_SEARCH_HALF_WIDTH_HZ) / spacing).astype(int) - 1
    offsets = np.arange(int(2 * PAPER_SEARCH_HALF_WIDTH_HZ / spacing) + 4)
    candidates = np.clip(first[:, None] + offsets[None, :], 0, len(levels) - 1)  # [bins, candidates]
    in_window = np.abs(labels[candidates] - centers[:, None]) <= PAPER_SEARCH_HALF_WIDTH_HZ
    window_levels = np.where(in_window, levels[candidates], -np.inf)
    # The code keeps the first bin whose level beats the best so far, starting from 0 dB: argmax keeps the first.
    best = np.argmax(window_levels, axis=1)
    rows = np.arange(len(centers))
    return np.where(window_levels[rows, best] > 0.0, labels[candidates[rows, best]], centers)


def _estimate_paper(samples: np.ndarray, sample_rate: int) -> Modes:
    clip = _fit_paper_clip(samples, sample_rate)
    hop = IMPACT.hop_length
    spectrogram_db = amplitude_to_db_ref_max(stft_magnitude(clip, IMPACT))  # [1025, 44]
    centers = np.fft.rfftfreq(IMPACT.n_fft, 1.0 / IMPACT.sample_rate)  # librosa.fft_frequencies
    frequencies = _paper_peak_frequencies(clip, centers)
    powers = spectrogram_db[:, 0]
    at_floor = spectrogram_db <= spectrogram_db.max() + PAPER_FLOOR_DB  # the code tests == −80 (the exact floor)
    frames = np.where(at_floor.any(axis=1), np.argmax(at_floor, axis=1), spectrogram_db.shape[1]).astype(float)
    frames[frames == 0] = 0.5
    return Modes(frequencies=frequencies, powers=powers, decays=frames * hop / IMPACT.sample_rate,
                 sample_rate=IMPACT.sample_rate)


# The refined estimator ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spectrum:
    frequencies: np.ndarray  # Hz, zero-padded grid
    level_db: np.ndarray  # 20·log10 |X| on that grid
    floor_db: np.ndarray  # running-median noise floor on that grid, same scale
    noise_variance: np.ndarray  # per-sample noise variance implied by the floor, on that grid


def _analysis_taper(length: int) -> np.ndarray:
    """1 at the hit, a half-Hann fade to 0 at the clip end: no truncation sidelobes for modes still ringing.

    The envelope e^{−σt}·taper stays non-negative, so each mode's spectral peak stays exactly at its frequency.
    """
    return 0.5 + 0.5 * np.cos(np.pi * np.arange(length) / length)


def _noise_floor(samples: np.ndarray, sample_rate: int, frequencies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running median (±1.5 kHz) of the tapered periodogram at `frequencies`: (floor in dB, white-noise variance).

    A periodogram of white noise of variance v through the taper is exponential with mean v·Σtaper², whose median
    is ln2 times the mean; the median ignores the few bins that sparse modes occupy.
    """
    from scipy import ndimage  # imported on use: scipy takes a second to import at studio start-up

    taper = _analysis_taper(len(samples))
    power = np.abs(np.fft.rfft(samples * taper)) ** 2
    bins = np.fft.rfftfreq(len(samples), 1.0 / sample_rate)
    width = 2 * int(REFINED_FLOOR_HALF_WIDTH_HZ / bins[1]) + 1
    median = ndimage.median_filter(power, size=min(width, len(power)), mode="reflect")
    median = np.maximum(np.interp(frequencies, bins, median), np.finfo(float).tiny)
    return 10.0 * np.log10(median), median / (math.log(2.0) * np.sum(taper**2))


def _clip_spectrum(samples: np.ndarray, sample_rate: int) -> _Spectrum:
    """Zero-padded spectrum of the whole (end-tapered) clip, and its noise floor."""
    n_fft = REFINED_ZERO_PAD * 2 ** math.ceil(math.log2(len(samples)))
    with np.errstate(divide="ignore"):
        level_db = 20.0 * np.log10(np.abs(np.fft.rfft(samples * _analysis_taper(len(samples)), n_fft)))
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    floor_db, noise_variance = _noise_floor(samples, sample_rate, frequencies)
    return _Spectrum(frequencies, level_db, floor_db, noise_variance)


def _detect_peaks(spectrum: _Spectrum, max_modes: int, min_peak_db: float, loudest_db: float) -> np.ndarray:
    """Sub-bin frequencies of up to `max_modes` spectral peaks standing `min_peak_db` above the noise floor
    (strongest first), within 80 dB of the loudest peak of the clip."""
    from scipy import signal

    if max_modes < 1:
        return np.zeros(0)
    excess = spectrum.level_db - spectrum.floor_db
    levels = np.nan_to_num(spectrum.level_db, neginf=-1e9)
    peaks, _ = signal.find_peaks(levels, prominence=min_peak_db / 2.0)
    peaks = peaks[(excess[peaks] >= min_peak_db) & (levels[peaks] >= loudest_db - REFINED_DYNAMIC_RANGE_DB)]
    peaks = peaks[(peaks > 0) & (peaks < len(levels) - 1)]
    peaks = peaks[np.argsort(-excess[peaks], kind="stable")][:max_modes]
    return _parabolic_peak(spectrum.level_db, peaks, spectrum.frequencies[1])


def _parabolic_peak(level_db: np.ndarray, peaks: np.ndarray, bin_hz: float) -> np.ndarray:
    """Sub-bin frequency of each peak from a parabola through the dB levels of its bin and both neighbours."""
    left, centre, right = level_db[peaks - 1], level_db[peaks], level_db[peaks + 1]
    curvature = left - 2.0 * centre + right
    offset = np.where(curvature < 0.0, 0.5 * (left - right) / np.where(curvature < 0.0, curvature, -1.0), 0.0)
    return (peaks + np.clip(offset, -0.5, 0.5)) * bin_hz


def _nearest_gaps(frequencies: np.ndarray, sample_rate: int) -> np.ndarray:
    """Distance in Hz from each mode to the nearest other mode or mirror image (−f, and sr − f past Nyquist)."""
    gaps = np.abs(frequencies[:, None] - frequencies[None, :])
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(axis=1) if len(frequencies) > 1 else np.full(len(frequencies), np.inf)
    return np.minimum.reduce([nearest, 2.0 * frequencies, 2.0 * (sample_rate / 2.0 - frequencies)])


def _envelope_window_lengths(gaps: np.ndarray, sample_rate: int) -> np.ndarray:
    """Hann length per mode: main lobe (±2·sr/N) within half the gap to the nearest other mode or image."""
    scale = sample_rate / IMPACT.sample_rate
    shortest = max(16, round(REFINED_MIN_WINDOW * scale))
    longest = max(shortest, round(REFINED_MAX_WINDOW * scale))
    needed = np.ceil(4.0 * sample_rate / np.maximum(gaps, 1e-9))
    return np.clip(needed, shortest, longest).astype(int)


def _complex_envelope(samples: np.ndarray, frequency: float, sample_rate: int, window: np.ndarray) -> np.ndarray:
    """2·Σ_n w[n] x[τ+n−N/2] e^{−i2πf(τ+n−N/2)/sr} for every centre τ whose window lies inside the clip.

    With Σw = 1, a steady sinusoid of amplitude A gives |envelope| = A; entry j is centred on sample j + N/2.
    """
    from scipy import signal

    t = np.arange(len(samples)) / sample_rate
    heterodyned = samples * np.exp(-2j * np.pi * frequency * t)
    return 2.0 * signal.fftconvolve(heterodyned, window[::-1], mode="valid")


def _window_decay_gain(window: np.ndarray, decay_nepers: float, detune_rad: float, sample_rate: int) -> complex:
    """Σ_n w[n] e^{(−σ + iδ)(n − N/2)/sr}: what the window does to a mode decaying at σ and detuned by δ."""
    offsets = (np.arange(len(window)) - len(window) // 2) / sample_rate
    return complex(np.sum(window * np.exp((-decay_nepers + 1j * detune_rad) * offsets)))


@dataclass(frozen=True)
class _ModeFit:
    frequency: float
    power_db: float
    decay_s: float
    phase: float


def _fit_mode(samples: np.ndarray, sample_rate: int, frequency: float, window_length: int, noise_variance: float,
              floor_margin_db: float, max_shift_hz: float) -> _ModeFit | None:
    """Fit one mode, halving the window (down to 64 samples at 44.1 kHz) while it is too short-lived to fit.

    Two passes: the envelope's phase slope corrects the frequency, and the mode is measured again there. The
    correction is limited to `max_shift_hz` so that a weak mode cannot be pulled onto a strong neighbour whose
    leakage dominates its envelope.
    """
    shortest = max(8, round(REFINED_FALLBACK_WINDOW * sample_rate / IMPACT.sample_rate))
    while True:
        fit = _fit_envelope(samples, sample_rate, frequency, window_length, noise_variance, floor_margin_db)
        if fit is not None:
            corrected = frequency + float(np.clip(fit.frequency - frequency, -max_shift_hz, max_shift_hz))
            fit = _fit_envelope(samples, sample_rate, corrected, window_length, noise_variance, floor_margin_db)
        if fit is not None:
            limited = frequency + float(np.clip(fit.frequency - frequency, -max_shift_hz, max_shift_hz))
            return dataclasses.replace(fit, frequency=limited)
        if window_length // 2 < shortest:
            return None
        window_length //= 2


def _fit_envelope(samples: np.ndarray, sample_rate: int, frequency: float, window_length: int,
                  noise_variance: float, floor_margin_db: float) -> _ModeFit | None:
    """Fit one mode's log envelope, heterodyned at `frequency`, by linear regression of dB vs time over the frames
    that stand `floor_margin_db` above the noise (None if fewer than 4 do)."""
    from scipy import signal

    window = signal.get_window("hann", window_length, fftbins=False)
    window /= window.sum()
    step = max(1, window_length // 8)
    noise_power = 4.0 * noise_variance * np.sum(window**2)  # E|envelope|² of white noise, by `_complex_envelope`
    envelope = _complex_envelope(samples, frequency, sample_rate, window)[::step]
    times = (np.arange(len(envelope)) * step + window_length // 2) / sample_rate
    clean_power = np.abs(envelope) ** 2 - noise_power  # noise power subtracted
    above = clean_power > noise_power * 10.0 ** (floor_margin_db / 10.0)
    usable = int(np.argmin(above)) if not above.all() else len(above)  # the first run above the floor only
    if usable < REFINED_MIN_POINTS:
        return None
    times, envelope, clean_power = times[:usable], envelope[:usable], clean_power[:usable]
    # Weighted least squares: the variance of a dB level (and of a phase) falls as 1/SNR.
    weights = np.sqrt(clean_power / noise_power) if noise_power > 0 else None
    slope, intercept = np.polyfit(times, 10.0 * np.log10(clean_power), 1, w=weights)  # dB/s, dB at t = 0
    phase_slope, phase_intercept = np.polyfit(times, np.unwrap(np.angle(envelope)), 1, w=weights)
    decay_nepers = max(-slope, 0.0) * math.log(10.0) / 20.0
    gain = _window_decay_gain(window, decay_nepers, phase_slope, sample_rate)
    # sin(ωt + θ) heterodynes to (A/2i)·e^{iθ}: θ = envelope phase at t = 0 + π/2 − the window's own phase.
    phase = float(np.angle(np.exp(1j * (phase_intercept + np.pi / 2.0 - np.angle(gain)))))
    return _ModeFit(
        frequency=frequency + phase_slope / (2.0 * np.pi),
        power_db=intercept - 20.0 * math.log10(abs(gain)),
        decay_s=float(np.clip(T60_DB / max(-slope, 1e-12), MIN_DECAY_S, MAX_DECAY_S)),
        phase=phase,
    )


def _estimate_refined(samples: np.ndarray, sample_rate: int, *, max_modes: int, min_peak_db: float,
                      floor_margin_db: float) -> Modes:
    if max_modes < 1:
        raise ValueError(f"`max_modes` must be at least 1, got {max_modes}")
    spectrum = _clip_spectrum(samples, sample_rate)
    loudest_db = float(np.max(spectrum.level_db))
    # 1. Sparse peaks and sub-bin frequencies from the whole-clip spectrum, fitted against the clip's floor.
    candidates = _detect_peaks(spectrum, max_modes, min_peak_db, loudest_db)
    modes = _fit_modes(samples, sample_rate, candidates, spectrum, floor_margin_db)
    # 2. Peel: the first fit's residual no longer holds the strong modes' skirts, so broad or weak modes they
    #    masked now stand out; new peaks must be clear of the modes already found. Candidates that could not be
    #    fitted against the (too high) clip floor get a second chance against the residual's floor.
    residual_spectrum = _clip_spectrum(samples - modal_sum(modes, len(samples), sample_rate), sample_rate)
    unfitted = _clear_of(candidates, modes.frequencies, _min_new_gap(sample_rate))
    extra = _clear_of(_detect_peaks(residual_spectrum, max_modes, min_peak_db, loudest_db),
                      np.concatenate([modes.frequencies, unfitted]), _min_new_gap(sample_rate))
    frequencies = np.concatenate([modes.frequencies, unfitted, extra])[:max_modes]
    # 3. Refit all against the residual's floor (in a clean clip the clip's own floor is the modes' skirts, far
    #    above the true noise), then once more against the floor of the new residual.
    for _ in range(2):
        modes = _fit_modes(samples, sample_rate, frequencies, residual_spectrum, floor_margin_db)
        residual_spectrum = _clip_spectrum(samples - modal_sum(modes, len(samples), sample_rate), sample_rate)
        frequencies = modes.frequencies
    return modes.sorted()


def _clear_of(frequencies: np.ndarray, known: np.ndarray, gap_hz: float) -> np.ndarray:
    """The frequencies at least `gap_hz` away from every known one (order kept)."""
    if not len(known) or not len(frequencies):
        return frequencies
    return frequencies[np.min(np.abs(frequencies[:, None] - known[None, :]), axis=1) >= gap_hz]


def _min_new_gap(sample_rate: int) -> float:
    """Peaks found in the residual closer than this to a known mode are that mode's fitting error, not modes."""
    return 4.0 * sample_rate / REFINED_MAX_WINDOW  # the main-lobe half-width of the longest envelope window × 2


def _fit_modes(samples: np.ndarray, sample_rate: int, frequencies: np.ndarray, noise: _Spectrum,
               floor_margin_db: float) -> Modes:
    """Fit every mode's envelope; window lengths and frequency leeway follow the gaps between the modes."""
    gaps = _nearest_gaps(frequencies, sample_rate)
    lengths = _envelope_window_lengths(gaps, sample_rate)
    noise_variances = np.interp(frequencies, noise.frequencies, noise.noise_variance)
    fits = [_fit_mode(samples, sample_rate, f, n, v, floor_margin_db, gap / 4.0)
            for f, n, v, gap in zip(frequencies, lengths, noise_variances, gaps)]
    return _modes_from_fits([fit for fit in fits if fit is not None and 0.0 < fit.frequency < sample_rate / 2.0],
                            sample_rate)


def _modes_from_fits(fits: list[_ModeFit], sample_rate: int) -> Modes:
    return Modes(frequencies=[fit.frequency for fit in fits], powers=[fit.power_db for fit in fits],
                 decays=[fit.decay_s for fit in fits], phases=[fit.phase for fit in fits], sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------------------------


def synthesize(
    modes: Modes,
    sample_rate: int | None = None,
    duration: float | None = None,
    *,
    fade_in_s: float = FADE_IN_S,
    ceiling: float = 1.0,
    block: int = 96,
) -> np.ndarray:
    """Sum of damped sinusoids (paper Eq. 4) as float32 samples: Σ_i 10^{(p_i − λ_i t)/20} sin(2π f_i t + θ_i).

    λ_i = 60 / d_i dB/s (d_i is a T60, see the module docstring); θ_i = 0 when `modes.phases` is None, as in the
    paper (its released code uses cos instead, which lines all modes up into a click at t = 0; see
    `official_code_resynthesis`). Modes at or above the Nyquist frequency of `sample_rate` (default:
    `modes.sample_rate`) are left out rather than aliased. `duration` defaults to the impact clip length (0.25 s).

    - No onset click: the first `fade_in_s` (0.25 ms, 11 samples at 44.1 kHz) are shaped by a raised-cosine
      fade-in from exactly 0, so modes with θ ≠ 0 do not start with a step.
    - Peak-safe: if the largest |sample| exceeds `ceiling` (default 1.0 = full scale), the whole sound is scaled
      down uniformly to exactly `ceiling` (relative powers kept, no clipping distortion); quieter sounds are left
      at their level.
    """
    rate = int(sample_rate or modes.sample_rate)
    seconds = IMPACT.clip_seconds if duration is None else float(duration)
    if not (rate > 0 and seconds > 0.0 and math.isfinite(seconds)):
        raise ValueError(f"`sample_rate` and `duration` must be positive, got {rate} Hz and {seconds} s")
    if not ceiling > 0.0:
        raise ValueError(f"`ceiling` must be positive, got {ceiling}")
    out = modal_sum(modes, round(seconds * rate), rate, block=block)
    out *= fade_in(len(out), round(fade_in_s * rate))
    return _peak_safe(out, ceiling)


def modal_sum(modes: Modes, num_samples: int, sample_rate: int, *, block: int = 100) -> np.ndarray:
    """Eq. 4 summed over the modes below Nyquist, float64, no fade and no level control.

    Mode i at sample n is Im(a_i·z_i^n) with a_i = 10^{p_i/20}·e^{jθ_i} and z_i = e^{(−λ_i·ln10/20 + j2πf_i)/rate}.
    The samples come in blocks of `block`: with n = kB + b and w_i^b = j·conj(z_i^b), Im(a_i z_i^n) =
    Re(a_i z_i^{kB})·Re(w_i^b) + Im(a_i z_i^{kB})·Im(w_i^b), so the whole sound is one real matrix product of the
    two complex tables seen as interleaved floats, [blocks × 2·modes] @ [2·modes × B] (single-precision BLAS: errors
    near 1e-7 of full scale). Amplitudes are taken relative to the loudest mode (DENORMAL_GUARD is relative) and the
    result scaled back.
    """
    audible = modes.frequencies < sample_rate / 2.0
    if num_samples == 0 or not audible.any():
        return np.zeros(num_samples)
    phases = np.zeros(int(audible.sum())) if modes.phases is None else modes.phases[audible]
    log_amplitudes = modes.powers[audible] * (math.log(10.0) / 20.0)
    loudest = log_amplitudes.max()
    log_decay = -modes.decay_rates[audible] * (math.log(10.0) / 20.0) / sample_rate  # per sample
    turns = modes.frequencies[audible] / sample_rate  # per sample
    starts = phasor_table(log_amplitudes - loudest, phases / (2.0 * math.pi), log_decay * block, turns * block,
                          -(-num_samples // block))  # a_i z_i^{kB} / max|a|
    steps = phasor_table(np.zeros_like(turns), np.full_like(turns, 0.25), log_decay, -turns, block)  # w_i^b
    product = starts.view(np.float32) @ steps[:block].view(np.float32).T
    return product.reshape(-1)[:num_samples].astype(np.float64) * math.exp(loudest)


def phasor_table(log_start: np.ndarray, turn_start: np.ndarray, log_step: np.ndarray, turn_step: np.ndarray,
                 count: int) -> np.ndarray:
    """complex64 exp(log_start + m·log_step + j2π(turn_start + m·turn_step)) for m = 0, 1, …: [M, K] with M ≥ count
    (rows past `count` continue the sequence).

    Two levels, m = qR + r with R ≈ √count: only K·(M/R + R) exponentials, cosines and sines (of double-precision
    exponents, whole turns dropped first), then one single-precision complex product per entry (relative error
    ≈ 2e-7). Factors below DENORMAL_GUARD are exact zeros, so the products stay clear of float32 subnormals.
    """
    fine = math.isqrt(count - 1) + 1
    coarse_m = np.arange(-(-count // fine))[:, None, None] * fine
    fine_m = np.arange(fine)[:, None]
    coarse = phasors(log_start + log_step * coarse_m, turn_start + turn_step * coarse_m)  # [Q, 1, K]
    return (coarse * phasors(log_step * fine_m, turn_step * fine_m)).reshape(-1, len(log_start))  # [Q·R, K]


def phasors(log_magnitude: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """complex64 exp(log_magnitude + j·2π·turns); magnitudes below DENORMAL_GUARD are exact zeros.

    The whole turns are dropped in double precision first, so float32 trigonometry sees an angle in [0, 2π).
    """
    log_guard = math.log(DENORMAL_GUARD)
    magnitude = np.exp(np.maximum(log_magnitude, log_guard)).astype(np.float32)
    magnitude[log_magnitude < log_guard] = 0.0
    angle = ((turns - np.floor(turns)) * (2.0 * math.pi)).astype(np.float32)
    out = np.empty(magnitude.shape, dtype=np.complex64)
    np.multiply(magnitude, np.cos(angle), out=out.real)
    np.multiply(magnitude, np.sin(angle), out=out.imag)
    return out


def fade_in(length: int, fade_samples: int) -> np.ndarray:
    """Gain curve: raised cosine 0 → 1 over `fade_samples` (starting at exactly 0), then 1."""
    gain = np.ones(length)
    n = min(max(fade_samples, 0), length)
    gain[:n] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(n, 1))
    return gain


def _peak_safe(samples: np.ndarray, ceiling: float) -> np.ndarray:
    """Scale down uniformly so max|x| ≤ ceiling; the final clip only absorbs float32 rounding."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > ceiling:
        samples = samples * (ceiling / peak)
    limit = np.float32(ceiling)
    return np.clip(samples.astype(np.float32), -limit, limit)


def official_code_resynthesis(modes: Modes, duration: float | None = None) -> np.ndarray:
    """The released code's resynthesis, for comparison only, at `modes.sample_rate`:

    ŝ = Σ_k cos(2π f_k t) · 10^{p_k/20} · 10^{−(60/d_k)·t/20}, then ŝ / max|ŝ|. All modes start in phase, so the
    peak sits at sample 0: the onset click that `synthesize` avoids.
    """
    rate = modes.sample_rate
    t = np.arange(round((IMPACT.clip_seconds if duration is None else duration) * rate)) / rate
    out = np.zeros_like(t)
    for start in range(0, len(modes), 128):
        part = slice(start, start + 128)
        out += np.sum(np.cos(2.0 * np.pi * modes.frequencies[part, None] * t)
                      * 10.0 ** (modes.powers[part, None] / 20.0)
                      * 10.0 ** (-modes.decay_rates[part, None] * t / 20.0), axis=0)
    peak = np.max(np.abs(out))
    return (out / peak if peak > 0 else out).astype(np.float32)
