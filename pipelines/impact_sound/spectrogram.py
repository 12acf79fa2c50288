"""The spectrogram the physics-driven diffusion model (Su et al., CVPR 2023) denoises, and its
Griffin-Lim inverse.

- Forward: ln(|STFT_{2048/256}(x / max|x|)| + 1e-8), min-max mapped to [-1, 1] (`pipelines.audio`'s impact
  convention): 1025 bins × 44 frames for a 0.25 s clip at 44.1 kHz.
- Inverse: exp(·) − 1e-8, then Griffin-Lim (`audio.griffin_lim_magnitude`: n_fft 2048, hop 256, 32 iterations,
  length 11,025).
- **Departure** (`freq_bins` < 1025, the studio and tiny presets): the paper's U-Net runs on all 1025 bins, too slow
  to train on a CPU. Here the magnitude is first resampled onto `freq_bins` rows evenly spaced on the HTK mel scale
  (the scale of the residual's band split) from 0 Hz to Nyquist, so low modes keep their resolution: each row is a
  triangular-weighted *mean of magnitudes* of the STFT bins around its centre (half-width the larger of the row
  spacing and one bin, so a row finer than the bins linearly interpolates its two neighbouring bins); the log and the
  [-1, 1] scaling follow. Back to 1025 bins before Griffin-Lim, each bin linearly interpolates the scaled log values
  of the two rows around its frequency. Both maps are fixed matrices (`frequency_maps`); with `freq_bins` = 1025
  both are the identity and the paper's representation is exact.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from pipelines.audio import (
    SPECS, griffin_lim_magnitude, impact_log_scale, impact_log_unscale, peak_normalize_rows, stft_magnitude,
)
from pipelines.impact_sound.residual import hz_to_mel, mel_to_hz

IMPACT = SPECS["impact"]
SAMPLE_RATE = IMPACT.sample_rate  # 44.1 kHz
NUM_SAMPLES = IMPACT.clip_samples  # 0.25 s = 11,025 samples
STFT_BINS = IMPACT.n_fft // 2 + 1  # 1025 (also the paper's number of modes: one per bin)
SPEC_FRAMES = 1 + NUM_SAMPLES // IMPACT.hop_length  # 44 (centred STFT)
BIN_HZ = SAMPLE_RATE / IMPACT.n_fft  # 21.533 Hz between STFT bin centres
GRIFFIN_LIM_ITERATIONS = 32  # librosa's default, which the code uses


def bin_frequencies() -> np.ndarray:
    """Centre frequency in Hz of each of the 1025 STFT bins (k · 21.533 Hz)."""
    return np.arange(STFT_BINS) * BIN_HZ


def row_frequencies(freq_bins: int) -> np.ndarray:
    """Centre frequency in Hz of each spectrogram row: the STFT bin centres for 1025 rows, else rows evenly spaced
    on the HTK mel scale from 0 Hz to Nyquist."""
    if freq_bins == STFT_BINS:
        return bin_frequencies()
    rows = mel_to_hz(np.linspace(0.0, float(hz_to_mel(SAMPLE_RATE / 2.0)), freq_bins))
    rows[0], rows[-1] = 0.0, SAMPLE_RATE / 2.0
    return rows


@functools.lru_cache(maxsize=8)
def frequency_maps(freq_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(down [freq_bins, 1025], up [1025, freq_bins]) float32 matrices (see the module docstring).

    down: row r = triangular weights max(0, 1 − |f_k − c_r| / h_r) over the bins k, normalised to sum 1, with
    h_r = max(local row spacing, one bin). up: bin k = linear interpolation between the rows around f_k.
    """
    if freq_bins == STFT_BINS:
        eye = torch.eye(STFT_BINS)
        return eye, eye.clone()
    bins, rows = bin_frequencies(), row_frequencies(freq_bins)
    spacing = np.gradient(rows)
    half_width = np.maximum(spacing, BIN_HZ)
    down = np.maximum(0.0, 1.0 - np.abs(bins[None, :] - rows[:, None]) / half_width[:, None])
    down /= down.sum(axis=1, keepdims=True)
    up = np.zeros((STFT_BINS, freq_bins))
    right = np.clip(np.searchsorted(rows, bins, side="right"), 1, freq_bins - 1)
    left = right - 1
    weight = np.clip((bins - rows[left]) / (rows[right] - rows[left]), 0.0, 1.0)
    up[np.arange(STFT_BINS), left] = 1.0 - weight
    up[np.arange(STFT_BINS), right] += weight
    return torch.from_numpy(down).float(), torch.from_numpy(up).float()


def audio_to_spectrogram(audio: np.ndarray | torch.Tensor, freq_bins: int = STFT_BINS) -> torch.Tensor:
    """Clips [B, 11025] (or one [11025]) at 44.1 kHz → the model's spectrogram [B, freq_bins, 44] (float32).

    ln(rows(|STFT(x / max|x|)|) + 1e-8) scaled to [-1, 1]; rows = the identity for 1025 bins, else the mel-row map.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    x = x.float().reshape(-1, x.shape[-1])
    if x.shape[-1] != NUM_SAMPLES:
        raise ValueError(f"impact clips must hold {NUM_SAMPLES} samples (0.25 s at {SAMPLE_RATE} Hz), got "
                         f"{x.shape[-1]}")
    magnitude = stft_magnitude(peak_normalize_rows(x), IMPACT)
    if freq_bins != STFT_BINS:
        magnitude = torch.einsum("rk,bkn->brn", frequency_maps(freq_bins)[0].to(x.device), magnitude)
    return impact_log_scale(magnitude)


def spectrogram_to_magnitude(spectrogram: torch.Tensor) -> np.ndarray:
    """[B, freq_bins, frames] in [-1, 1] → linear |STFT| [B, 1025, frames] (float32 numpy) for Griffin-Lim."""
    spectrogram = spectrogram.detach().float().cpu()
    freq_bins = spectrogram.shape[-2]
    if freq_bins != STFT_BINS:
        spectrogram = torch.einsum("kr,brn->bkn", frequency_maps(freq_bins)[1], spectrogram)
    return impact_log_unscale(spectrogram).numpy()


def spectrogram_to_audio(spectrogram: torch.Tensor, n_iter: int = GRIFFIN_LIM_ITERATIONS,
                         seed: int = 0) -> np.ndarray:
    """[B, freq_bins, 44] → [B, 11025] float32 waveforms by Griffin-Lim from a seeded random initial phase (the code
    uses librosa's unseeded random default)."""
    audio = griffin_lim_magnitude(spectrogram_to_magnitude(spectrogram), IMPACT, n_iter, seed, length=NUM_SAMPLES)
    return np.asarray(audio, dtype=np.float32)


def spectrogram_pictures(spectrogram: torch.Tensor) -> np.ndarray:
    """[B, freq_bins, frames] in [-1, 1] → float32 pictures [B, freq_bins, frames] in [0, 1], low frequencies in the
    bottom row (what a tab shows while the model samples)."""
    return ((spectrogram.detach().float().cpu().flip(-2) + 1.0) / 2.0).clamp(0.0, 1.0).numpy()
