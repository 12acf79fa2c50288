"""The residual (environment) component of an impact sound (Su et al., CVPR 2023, Sec. 3.1, Eq. 5-6, and
the released code): exponentially decaying, band-split, *fixed* noise with per-band weights and decays.

    R_m(t) = 10^{-γ_m t / 20} · BPF(N(0, 1))_m(t)            (paper Eq. 5)
    R(t)   = Σ_m w_m R_m(t),   m = 1..M, M = 100               (paper Eq. 6)

Parameterisation, as the authors' released code has it (`libs/models/sound_physics_residual_model.py`):

- **gains** w_m ∈ (0, 1): the band weights of Eq. 6 (the code's `sigmoid(Linear)` head);
- **decays** d_m ∈ (1e-5, 0.5] s: a T60 per band (the code's `noise_t = 1e-5 + 0.5·sigmoid(Linear)`), so Eq. 5's
  γ_m = 60 / d_m dB/s. This matches `Modes.decays` in `modal.py`, which is also a T60.

Note the names: the paper's γ is the *decay rate* and w the *weight*; this module calls w the "gains" and passes
decays as T60 seconds (γ is `ResidualParams.decay_rates`).

The noise is generated once (the code: `torch.manual_seed(0); torch.randn(1, 11025)`; here a private generator
seeded 0, which draws the same numbers without touching the global RNG) and split into 100 bands whose edges are
evenly spaced on the HTK mel scale from 0 Hz to Nyquist (the code: `julius.SplitBands(44100, n_bands=100)`, whose
cutoffs are `mel_frequencies(n_bands + 1, 0, sr/2)[1:-1]`).

**Departure from the official code**: julius splits with a cascade of windowed-sinc low-pass FIR filters (soft
transitions); here each band is an FFT-domain brick-wall mask over the whole clip (zero-phase, circular). The masks
partition the rfft bins, so the bands sum to the input exactly (up to float rounding) and each band holds no energy
outside its mel edges. For stationary white noise the circular filtering leaves no edge transient.

Also here: `STFTLoss`, the training objective. The paper says "multi-resolution STFT loss"; the released code uses
a *single* resolution, `auraloss.freq.STFTLoss(fft_size=2048, hop_size=128, w_sc=1, w_log_mag=1, w_lin_mag=1)`
which is what is implemented (auraloss 0.2.x semantics, re-written here, not imported).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.audio import SPECS, AudioSpec, impact_log_scale, peak_normalize_rows, stft, stft_magnitude

IMPACT: AudioSpec = SPECS["impact"]
SAMPLE_RATE = IMPACT.sample_rate  # 44.1 kHz
NUM_SAMPLES = IMPACT.clip_samples  # 0.25 s = 11,025 samples
N_BANDS = 100  # M = 100 (paper Sec. 4 and Fig. 5(a): 100 residual parameters per group is best)
NOISE_SEED = 0  # the code's torch.manual_seed(0) before the one randn(1, 11025)
T60_DB = 60.0  # decays are T60s: γ = 60 / d dB/s (the code's envelope 10^{-(60/noise_t)·t/20})
MIN_DECAY_S = 1e-5  # the code's decay head: noise_t = 1e-5 + 0.5·sigmoid(·) seconds
DECAY_SPAN_S = 0.5
MAX_DECAY_S = MIN_DECAY_S + DECAY_SPAN_S

# The training loss of the released code: auraloss STFTLoss at fft 2048, hop 128, all three terms weight 1.
LOSS_FFT_SIZE = 2048
LOSS_HOP_SIZE = 128
# auraloss's default window length, which the official call does not override: a 1024-sample Hann window centred
# inside the 2048-point FFT. (Inferred from auraloss's signature; the notes do not list it.)
LOSS_WIN_LENGTH = 1024
LOSS_EPS = 1e-8  # auraloss: |X| = sqrt(max(re² + im², eps))


# --------------------------------------------------------------------------------------------------------------
# Mel-spaced band split
# --------------------------------------------------------------------------------------------------------------


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale (as julius uses): 2595·log10(1 + f/700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def band_edges(n_bands: int = N_BANDS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """n_bands + 1 edges in Hz, from 0 to Nyquist, evenly spaced on the mel scale (julius `SplitBands` cutoffs plus
    the two ends). For 100 bands at 44.1 kHz the lowest band is 0-24.8 Hz and the highest 21.0-22.05 kHz."""
    if n_bands < 1:
        raise ValueError(f"`n_bands` must be at least 1, got {n_bands}")
    edges = mel_to_hz(np.linspace(0.0, float(hz_to_mel(sample_rate / 2.0)), n_bands + 1))
    edges[0], edges[-1] = 0.0, sample_rate / 2.0  # exact ends despite the round trip through the mel scale
    return edges


@functools.lru_cache(maxsize=16)
def _band_index(n_bands: int, num_samples: int, sample_rate: int) -> torch.Tensor:
    """Band of each rfft bin: b with edges[b] <= f < edges[b + 1] (Nyquist, f = edges[-1], goes to the last)."""
    frequencies = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    index = np.searchsorted(band_edges(n_bands, sample_rate), frequencies, side="right") - 1
    return torch.from_numpy(np.clip(index, 0, n_bands - 1))


def band_masks(n_bands: int, num_samples: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[n_bands, num_samples // 2 + 1] 0/1 float64 rfft masks that partition the bins (they sum to 1 everywhere)."""
    index = _band_index(n_bands, num_samples, sample_rate)
    return F.one_hot(index, n_bands).T.to(torch.float64)


def split_bands(x: torch.Tensor, n_bands: int = N_BANDS, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Split [..., T] into [..., n_bands, T] zero-phase bands that sum exactly to x (FFT-domain brick-wall masks;
    a departure from julius's sinc FIR cascade, see the module docstring)."""
    length = x.shape[-1]
    masks = band_masks(n_bands, length, sample_rate).to(device=x.device)
    spectrum = torch.fft.rfft(x.to(torch.float64), dim=-1)
    bands = torch.fft.irfft(spectrum.unsqueeze(-2) * masks, n=length, dim=-1)
    return bands.to(x.dtype)


@functools.lru_cache(maxsize=8)
def _noise_bands_cpu(n_bands: int, num_samples: int, sample_rate: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, num_samples, generator=generator)[0]  # the code: manual_seed(0); randn(1, 11025)
    return split_bands(noise.to(torch.float64), n_bands, sample_rate).to(torch.float32)


def noise_bands(
    n_bands: int = N_BANDS,
    num_samples: int = NUM_SAMPLES,
    sample_rate: int = SAMPLE_RATE,
    seed: int = NOISE_SEED,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The fixed, seeded white noise split into mel bands: [n_bands, num_samples], identical on every call (the code
    draws it once and keeps it for all samples and epochs)."""
    return _noise_bands_cpu(n_bands, num_samples, sample_rate, seed).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------


def decay_envelopes(decays: torch.Tensor, num_samples: int = NUM_SAMPLES,
                    sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[..., M] T60s (s) -> [..., M, T] envelopes 10^{-(60/d)·t/20} (Eq. 5 with γ = 60/d), t = n / sample_rate."""
    t = torch.arange(num_samples, device=decays.device, dtype=decays.dtype) / sample_rate
    nepers_per_s = (T60_DB * math.log(10.0) / 20.0) / decays  # 10^{-γt/20} = e^{-γ·ln10/20·t}
    return torch.exp(-nepers_per_s.unsqueeze(-1) * t)


def render_residual(
    gains: torch.Tensor | np.ndarray,
    decays: torch.Tensor | np.ndarray,
    *,
    num_samples: int = NUM_SAMPLES,
    sample_rate: int = SAMPLE_RATE,
    seed: int = NOISE_SEED,
) -> torch.Tensor | np.ndarray:
    """R(t) = Σ_m w_m · 10^{-(60/d_m)·t/20} · noise_m(t) (paper Eq. 5-6, the code's T60 form).

    Args:
        gains: w_m, [..., M] (any batch shape); the predictor's range is (0, 1), but any real value renders.
        decays: d_m, T60 in seconds, [..., M], positive.
    Returns:
        [..., num_samples]: a torch tensor (differentiable in gains and decays) for torch inputs, float32 numpy for
        numpy inputs. Not peak-normalised.
    """
    as_numpy = not isinstance(gains, torch.Tensor)
    gains_t = torch.as_tensor(gains, dtype=torch.float32) if as_numpy else gains
    decays_t = torch.as_tensor(decays, dtype=gains_t.dtype, device=gains_t.device)
    if gains_t.shape != decays_t.shape or gains_t.ndim == 0:
        raise ValueError(f"`gains` and `decays` must have the same shape [..., M], got {tuple(gains_t.shape)} and "
                         f"{tuple(decays_t.shape)}")
    if not bool(torch.isfinite(decays_t).all() and (decays_t > 0).all()):
        raise ValueError("`decays` (T60 in seconds) must be positive and finite")
    bands = noise_bands(gains_t.shape[-1], num_samples, sample_rate, seed, device=gains_t.device, dtype=gains_t.dtype)
    weighted = gains_t.unsqueeze(-1) * decay_envelopes(decays_t, num_samples, sample_rate)  # [..., M, T]
    out = (weighted * bands).sum(dim=-2)  # a broadcast multiply-sum: several times faster than einsum on CPU
    return out.numpy().astype(np.float32) if as_numpy else out


@dataclass(frozen=True, eq=False)
class ResidualParams:
    """One clip's residual parameters: gains w_m (Eq. 6) and T60 decays d_m in seconds (Eq. 5: γ_m = 60/d_m)."""

    gains: np.ndarray
    decays: np.ndarray

    def __post_init__(self) -> None:
        gains = np.array(self.gains, dtype=np.float64).reshape(-1)
        decays = np.array(self.decays, dtype=np.float64).reshape(-1)
        if gains.shape != decays.shape or not gains.size:
            raise ValueError(f"`gains` and `decays` need one value per band, got {gains.size} and {decays.size}")
        if not (np.isfinite(gains).all() and np.isfinite(decays).all()) or decays.min() <= 0:
            raise ValueError("residual gains must be finite and decays (T60, s) positive and finite")
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "decays", decays)

    def __len__(self) -> int:
        return len(self.gains)

    @property
    def decay_rates(self) -> np.ndarray:
        """γ_m of Eq. 5 in dB/s."""
        return T60_DB / self.decays

    def render(self, num_samples: int = NUM_SAMPLES, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The residual waveform (float32, not normalised)."""
        return render_residual(self.gains, self.decays, num_samples=num_samples, sample_rate=sample_rate)

    def to_dict(self) -> dict:
        return {"gains": self.gains.tolist(), "decay_s": self.decays.tolist(), "decay_convention": "T60 seconds"}


# --------------------------------------------------------------------------------------------------------------
# Encoder input and shared waveform helpers
# --------------------------------------------------------------------------------------------------------------


def fit_length(x: torch.Tensor, num_samples: int = NUM_SAMPLES) -> torch.Tensor:
    """Cut or zero-pad the last axis to `num_samples` (the code zero-pads a clip at the end of its file)."""
    if x.shape[-1] >= num_samples:
        return x[..., :num_samples]
    return F.pad(x, (0, num_samples - x.shape[-1]))


def log_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """The encoder input (paper: "log-spectrogram" S ∈ R^{1025×44}): [B, T] -> [B, 1025, 44] for 0.25 s at
    44.1 kHz, in [-1, 1].

    The impact |STFT| (`pipelines.audio`: n_fft 2048, hop 256, periodic Hann, centred with zero padding, librosa's
    defaults) of the peak-normalised clip, then ln(|S| + 1e-8) mapped to [-1, 1] as the official diffusion
    dataset scales its log-spectrogram (`audio.impact_log_scale`).
    **Departure**: the released residual code feeds *linear* |STFT| to its encoder; the paper says log-spectrogram,
    which is used here.
    """
    return impact_log_scale(stft_magnitude(peak_normalize_rows(audio), IMPACT))


# --------------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------------


class STFTLoss(nn.Module):
    """Single-resolution STFT loss of the released code (auraloss 0.2.x `STFTLoss` semantics):

        L = w_sc · ‖|Y| - |X|‖_F / ‖|Y|‖_F  +  w_log · mean|ln|X| - ln|Y||  +  w_lin · mean||X| - |Y||

    with X = STFT(input), Y = STFT(target), |·| = sqrt(max(re² + im², 1e-8)); `audio.stft` centred with reflect
    padding, a periodic Hann window of `win_length` samples centred in the `fft_size`-point frame. The Frobenius
    norms and the means run over the whole batch (auraloss's reduction), not per clip.

    Departure from the paper: the paper says multi-resolution (Parallel WaveGAN style); the official code, followed
    here, uses this single resolution.
    """

    def __init__(self, fft_size: int = LOSS_FFT_SIZE, hop_size: int = LOSS_HOP_SIZE,
                 win_length: int = LOSS_WIN_LENGTH, w_sc: float = 1.0, w_log_mag: float = 1.0,
                 w_lin_mag: float = 1.0, eps: float = LOSS_EPS) -> None:
        super().__init__()
        if win_length > fft_size:
            raise ValueError(f"`win_length` ({win_length}) cannot exceed `fft_size` ({fft_size})")
        self.fft_size, self.hop_size, self.win_length = fft_size, hop_size, win_length
        self.weights = (float(w_sc), float(w_log_mag), float(w_lin_mag))
        self.eps = eps

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """[..., T] -> [B, fft_size // 2 + 1, frames] magnitudes (leading axes flattened)."""
        spectrum = stft(x.reshape(-1, x.shape[-1]), self.fft_size, self.hop_size, self.win_length, pad_mode="reflect")
        return torch.sqrt(torch.clamp(spectrum.real**2 + spectrum.imag**2, min=self.eps))

    def terms(self, input: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three unweighted terms: spectral convergence, log-magnitude L1, linear-magnitude L1."""
        if input.shape != target.shape:
            raise ValueError(f"input and target shapes differ: {tuple(input.shape)} vs {tuple(target.shape)}")
        x_mag, y_mag = self.magnitude(input), self.magnitude(target)
        return {
            "sc": torch.linalg.vector_norm(y_mag - x_mag) / torch.linalg.vector_norm(y_mag),
            "log_mag": F.l1_loss(torch.log(x_mag), torch.log(y_mag)),
            "lin_mag": F.l1_loss(x_mag, y_mag),
        }

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.terms(input, target)
        w_sc, w_log, w_lin = self.weights
        return w_sc * terms["sc"] + w_log * terms["log_mag"] + w_lin * terms["lin_mag"]
