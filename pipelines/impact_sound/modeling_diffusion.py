"""The physics-driven diffusion model of Su et al. (CVPR 2023, Sec. 3.2; research notes Part B3, B7): a spectrogram
U-Net DDPM conditioned on a physics latent μ and a visual latent ν, the physics encoder that makes μ, a visual
encoder that makes ν, the cosine schedule and ancestral sampler, the retrieval bank of training (ν, μ) pairs, and
the spectrogram representation with its Griffin-Lim inverse.

Parts (each a small class or function below):

- `ImpactDiffusionConfig`: sizes and constants, presets `paper`, `studio`, `tiny` (`ImpactDiffusionConfig.preset`).
- Spectrogram (notes B3): ln(|STFT_{2048/256}(x / max|x|)| + 1e-8), min-max mapped to [-1, 1] with
  spec_min = ln 1e-8 and spec_max = 5.9540715; 1025 bins × 44 frames for a 0.25 s clip at 44.1 kHz. Inverse:
  exp(·) − 1e-8, then `librosa.griffinlim` (n_fft 2048, hop 256, 32 iterations, length 11,025).
  **Departure** (`freq_bins` < 1025, the studio and tiny presets): the paper's U-Net runs on all 1025 bins, too
  slow to train on a CPU. Here the magnitude is first resampled onto `freq_bins` rows evenly spaced on the HTK
  mel scale (the scale of the residual's band split) from 0 Hz to Nyquist, so low modes keep their resolution:
  each row is a triangular-weighted *mean of magnitudes* of the STFT bins around its centre (half-width the
  larger of the row spacing and one bin, so a row finer than the bins linearly interpolates its two neighbouring
  bins); the log and the [-1, 1] scaling follow. Back to 1025 bins before Griffin-Lim, each bin linearly
  interpolates the scaled log values of the two rows around its frequency. Both maps are fixed matrices
  (`frequency_maps`); with `freq_bins` = 1025 both are the identity and the paper's representation is exact.
- `PhysicsEncoder` (the code's `ParamsNet`, notes B2 table): five parallel PReLU MLPs for the per-bin mode
  frequencies f, powers p and decays d (1025 each, from the paper's extractor, `modal.estimate_modes(...,
  "paper")`) and the residual's band gains w and decays noise_t (100 each, from the residual predictor), widths
  1025→h→h→h→64 (×3) and 100→64→64→32 (×2), concatenated to 256, then Linear(256, 256) and tanh. Hidden width h
  is 512 in the paper (configurable). Inputs are normalised as the code's dataset does (`normalize_priors`).
- `VisualEncoder`: **departure**. The paper uses the 17-d material logits of a pretrained ResNet-50 + TSM video
  classifier, averaged over 22 frames centred on the hit. Here a small per-frame CNN (stride-2 3×3 convolutions,
  GroupNorm, SiLU, global average pooling, one linear layer) gives per-frame material logits that are averaged
  over `num_frames` frames around the hit; it is trained as a material classifier (`pipelines.train`).
- `SpectrogramUNet` (the code's `Unet3D`, 2-D despite its name; notes B3): init 7×7 conv (no bias) to `dim`
  channels; per level two ResNet blocks (3×3 conv, GroupNorm(`groups`), FiLM scale/shift from the conditioning
  vector on the first conv, SiLU) then residual pre-norm linear attention, then a 4×4 stride-2 downsampling conv
  (not at the last level); two mid blocks; an up path of skip concatenation, two blocks, attention and a 4×4
  stride-2 transposed conv (zero-padded to the skip's size for odd sizes); then concatenation with the init-conv
  features, a final block and a 1×1 conv. Conditioning vector = concat[time embedding (sinusoidal(dim) → Linear →
  GELU → Linear, 4·dim wide), μ (256), ν (number of visual classes)].
- `DiffusionSchedule`: the cosine schedule (Nichol & Dhariwal: s = 0.008, β clipped at 0.9999, T = 1000 in the
  paper), `q_sample`, the L1 ε loss of paper Eq. 8 (`diffusion_loss`) and the code's ancestral sampler
  (`sample`): x̂0 from ε̂, clipped to [-1, 1], q-posterior mean and variance (log clipped at 1e-20), no noise at
  the last step; optionally respaced to fewer steps (Nichol & Dhariwal's respacing: the same ᾱ at a subset of the
  timesteps, β recomputed between them). The classifier-free-guidance machinery of the code is unused there
  (null_cond_prob 0, cond_scale 1) and left out here.
- `RetrievalBank`: keys ν_train, values μ_train, and per entry the sparse `refined` modes (≤ 64) and residual
  parameters of the clip so the app can show, play and edit the retrieved physics. Nearest neighbour by L2
  distance (the paper) or L1 (the code's `query_latents.py`).

Weights are safetensors; configs are JSON (`ImpactDiffusionConfig.to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.impact_sound.modal import PAPER_FLOOR_DB, Modes
from pipelines.impact_sound.residual import (
    DECAY_SPAN_S, IMPACT, LOG_EPS, MIN_DECAY_S, N_BANDS, SPEC_MAX, SPEC_MIN, ResidualParams, hz_to_mel, mel_to_hz,
    peak_normalize,
)

SAMPLE_RATE = IMPACT.sample_rate  # 44.1 kHz
NUM_SAMPLES = IMPACT.clip_samples  # 0.25 s = 11,025 samples
N_FFT, HOP_LENGTH = IMPACT.n_fft, IMPACT.hop_length  # 2048, 256
STFT_BINS = N_FFT // 2 + 1  # 1025 (also the paper's number of modes: one per bin)
SPEC_FRAMES = 1 + NUM_SAMPLES // HOP_LENGTH  # 44 (centred STFT)
BIN_HZ = SAMPLE_RATE / N_FFT  # 21.533 Hz between STFT bin centres
DECAY_MIN_S = 0.5 * HOP_LENGTH / SAMPLE_RATE  # the paper extractor's shortest decay: half a frame, 0.0029 s
DECAY_MAX_S = SPEC_FRAMES * HOP_LENGTH / SAMPLE_RATE  # its longest: 44 frames, 0.2554 s
GRIFFIN_LIM_ITERATIONS = 32  # librosa's default, which the code uses
PHYSICS_DIM = 256  # μ
MODE_BRANCH_DIM, RESIDUAL_BRANCH_DIM, RESIDUAL_HIDDEN = 64, 32, 64  # ParamsNet: 3 × 64 + 2 × 32 = 256
MAX_BANK_MODES = 64  # `refined` modes kept per retrieval-bank entry
CONFIG_TYPE = "impact-physics-diffusion"

# Greatest Hits' materials in the released code's subset (notes B2); the paper's own 17-d logits are undocumented.
GREATEST_HITS_MATERIALS = ("glass", "wood", "ceramic", "metal", "cloth", "plastic", "drywall", "carpet", "paper",
                           "rock")


# --------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpactDiffusionConfig:
    """Sizes and constants of the diffusion model, its physics and visual encoders, and its spectrogram.

    Args:
        freq_bins: spectrogram rows the U-Net sees (1025 = the paper's STFT bins; fewer = mel-spaced rows).
        dim, dim_mults, groups: U-Net base width, per-level width multipliers, GroupNorm groups (paper 64,
            (1, 2, 4, 8), 8).
        attn_heads, attn_dim_head: linear attention heads and head width (paper 8 × 32).
        physics_hidden: hidden width of the three per-bin MLPs of the physics encoder (paper 512).
        visual_classes: material names whose logits make ν (its width).
        num_frames, fps, frame_size: frames around the hit the visual encoder averages over (paper 22 at
            Greatest Hits' 29.97 fps: hit frame − 11 to hit frame + 10), their rate, and their side in pixels.
        visual_channels: widths of the visual CNN's stride-2 convolutions.
        timesteps, cosine_s, max_beta: T and the cosine schedule (paper code: 1000, 0.008, 0.9999).
        n_bands: residual bands (paper 100).
    """

    freq_bins: int = STFT_BINS
    dim: int = 64
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    groups: int = 8
    attn_heads: int = 8
    attn_dim_head: int = 32
    physics_hidden: int = 512
    visual_classes: tuple[str, ...] = GREATEST_HITS_MATERIALS
    num_frames: int = 22
    fps: float = 29.97
    frame_size: int = 224
    visual_channels: tuple[int, ...] = (32, 64, 128, 256)
    timesteps: int = 1000
    cosine_s: float = 0.008
    max_beta: float = 0.9999
    n_bands: int = N_BANDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim_mults", tuple(int(m) for m in self.dim_mults))
        object.__setattr__(self, "visual_classes", tuple(str(c) for c in self.visual_classes))
        object.__setattr__(self, "visual_channels", tuple(int(c) for c in self.visual_channels))
        if not 8 <= self.freq_bins <= STFT_BINS:
            raise ValueError(f"`freq_bins` must be between 8 and {STFT_BINS}, got {self.freq_bins}")
        widths = [self.dim * m for m in self.dim_mults]
        if not self.dim_mults or min(self.dim_mults) < 1 or any(w % self.groups for w in [self.dim, *widths]):
            raise ValueError(f"every U-Net width ({self.dim} × {self.dim_mults}) must be divisible by `groups` "
                             f"({self.groups})")
        if len(self.visual_classes) < 2 or len(set(self.visual_classes)) != len(self.visual_classes):
            raise ValueError(f"`visual_classes` needs at least two distinct names, got {self.visual_classes}")
        if self.num_frames < 1 or self.frame_size < 8 or not self.visual_channels or not self.fps > 0:
            raise ValueError("`num_frames` must be ≥ 1, `frame_size` ≥ 8, `fps` positive and `visual_channels` "
                             "non-empty")
        if self.timesteps < 2 or not 0.0 < self.max_beta < 1.0 or self.cosine_s <= 0.0:
            raise ValueError("`timesteps` must be ≥ 2, `max_beta` in (0, 1) and `cosine_s` positive")
        if min(self.attn_heads, self.attn_dim_head, self.physics_hidden, self.n_bands) < 1:
            raise ValueError("attention sizes, `physics_hidden` and `n_bands` must be at least 1")

    @property
    def visual_dim(self) -> int:
        return len(self.visual_classes)

    @property
    def time_dim(self) -> int:
        return 4 * self.dim

    @property
    def cond_dim(self) -> int:
        """Width of the FiLM conditioning vector: time embedding + μ + ν (the code: 256 + 256 + 17 = 529)."""
        return self.time_dim + PHYSICS_DIM + self.visual_dim

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update({key: list(value) for key, value in data.items() if isinstance(value, tuple)})
        return {"model_type": CONFIG_TYPE, **data}

    @classmethod
    def from_dict(cls, data: dict) -> ImpactDiffusionConfig:
        if not isinstance(data, dict) or data.get("model_type") != CONFIG_TYPE:
            raise ValueError(f"not an impact diffusion config: expected \"model_type\": \"{CONFIG_TYPE}\"")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"model_type"})
        if unknown:
            raise ValueError(f"unknown impact diffusion config keys: {', '.join(unknown)}")
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in data.items() if key in names})

    @classmethod
    def preset(cls, name: Literal["paper", "studio", "tiny"], visual_classes: tuple[str, ...] | None = None,
               ) -> ImpactDiffusionConfig:
        """`paper`: the code's sizes on all 1025 bins; `studio`: small, 96 mel rows, CPU-trainable; `tiny`:
        for tests."""
        sizes = {
            "paper": {},
            "studio": dict(freq_bins=96, dim=16, dim_mults=(1, 2, 4), groups=8, attn_heads=2, attn_dim_head=16,
                           physics_hidden=128, num_frames=8, fps=30.0, frame_size=32, visual_channels=(16, 32, 64)),
            "tiny": dict(freq_bins=32, dim=8, dim_mults=(1, 2), groups=4, attn_heads=1, attn_dim_head=8,
                         physics_hidden=16, num_frames=4, fps=30.0, frame_size=16, visual_channels=(8, 8),
                         timesteps=100),
        }
        if name not in sizes:
            raise ValueError(f"unknown size preset {name!r}; choose paper, studio or tiny")
        extra = {} if visual_classes is None else {"visual_classes": tuple(visual_classes)}
        return cls(**sizes[name], **extra)


# --------------------------------------------------------------------------------------------------------------
# Spectrogram representation
# --------------------------------------------------------------------------------------------------------------


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


def stft_magnitude(audio: torch.Tensor) -> torch.Tensor:
    """[B, T] → |STFT| [B, 1025, frames]: n_fft 2048, hop 256, periodic Hann, centred with zero padding (librosa's
    defaults, notes B1), of the peak-normalised clip."""
    window = torch.hann_window(N_FFT, periodic=True, dtype=audio.dtype, device=audio.device)
    stft = torch.stft(peak_normalize(audio), N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    return stft.abs()


def scale_log(log_magnitude: torch.Tensor) -> torch.Tensor:
    """ln-magnitude → [-1, 1] by spec_min = ln 1e-8, spec_max = 5.9540715 (notes B3)."""
    return 2.0 * (log_magnitude - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) - 1.0


def unscale_log(spectrogram: torch.Tensor) -> torch.Tensor:
    return (spectrogram + 1.0) / 2.0 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN


def audio_to_spectrogram(audio: np.ndarray | torch.Tensor, freq_bins: int = STFT_BINS) -> torch.Tensor:
    """Clips [B, 11025] (or one [11025]) at 44.1 kHz → the model's spectrogram [B, freq_bins, 44] (float32).

    ln(rows(|STFT(x / max|x|)|) + 1e-8) scaled to [-1, 1]; rows = the identity for 1025 bins, else the mel-row map.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    x = x.float().reshape(-1, x.shape[-1])
    if x.shape[-1] != NUM_SAMPLES:
        raise ValueError(f"impact clips must hold {NUM_SAMPLES} samples (0.25 s at {SAMPLE_RATE} Hz), got "
                         f"{x.shape[-1]}")
    magnitude = stft_magnitude(x)
    if freq_bins != STFT_BINS:
        magnitude = torch.einsum("rk,bkn->brn", frequency_maps(freq_bins)[0].to(x.device), magnitude)
    return scale_log(torch.log(magnitude + LOG_EPS))


def spectrogram_to_magnitude(spectrogram: torch.Tensor) -> np.ndarray:
    """[B, freq_bins, frames] in [-1, 1] → linear |STFT| [B, 1025, frames] (float32 numpy) for Griffin-Lim."""
    spectrogram = spectrogram.detach().float().cpu()
    freq_bins = spectrogram.shape[-2]
    if freq_bins != STFT_BINS:
        spectrogram = torch.einsum("kr,brn->bkn", frequency_maps(freq_bins)[1], spectrogram)
    return torch.clamp(torch.exp(unscale_log(spectrogram)) - LOG_EPS, min=0.0).numpy()


def spectrogram_to_audio(spectrogram: torch.Tensor, n_iter: int = GRIFFIN_LIM_ITERATIONS,
                         seed: int = 0) -> np.ndarray:
    """[B, freq_bins, 44] → [B, 11025] float32 waveforms by Griffin-Lim (librosa, n_fft 2048, hop 256, centred),
    from a seeded random initial phase (the code uses librosa's unseeded random default)."""
    import librosa

    magnitude = spectrogram_to_magnitude(spectrogram)
    audio = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=HOP_LENGTH, n_fft=N_FFT, window="hann",
                               center=True, length=NUM_SAMPLES, random_state=seed)
    return np.asarray(audio, dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# Physics priors and the physics encoder (ParamsNet)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class PhysicsPriors:
    """A batch of physics priors, raw units, float32 tensors: per-bin mode frequencies (Hz), powers (dB re max)
    and decays (s) [B, 1025] from the paper's extractor; residual gains w and decays noise_t (s) [B, M]."""

    frequencies: torch.Tensor
    powers: torch.Tensor
    decays: torch.Tensor
    gains: torch.Tensor
    noise_decays: torch.Tensor

    def __len__(self) -> int:
        return self.frequencies.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.frequencies, self.powers, self.decays, self.gains, self.noise_decays

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PhysicsPriors:
        return PhysicsPriors(*(t.to(device, dtype) for t in self.tensors()))

    def select(self, index: torch.Tensor) -> PhysicsPriors:
        return PhysicsPriors(*(t[index] for t in self.tensors()))

    @classmethod
    def stack(cls, paper_modes: list[Modes], residuals: list[ResidualParams]) -> PhysicsPriors:
        """Priors of B clips from their paper-extractor modes (1025 each, in bin order) and residual parameters."""
        if len(paper_modes) != len(residuals):
            raise ValueError(f"got {len(paper_modes)} mode sets and {len(residuals)} residuals: one each per clip")
        for modes in paper_modes:
            if len(modes) != STFT_BINS:
                raise ValueError(f"physics priors need the paper extractor's {STFT_BINS} per-bin modes "
                                 f"(`estimate_modes(..., method=\"paper\")`), got {len(modes)} modes")

        def rows(values) -> torch.Tensor:
            return torch.as_tensor(np.stack(values), dtype=torch.float32)

        return cls(rows([m.frequencies for m in paper_modes]), rows([m.powers for m in paper_modes]),
                   rows([m.decays for m in paper_modes]), rows([r.gains for r in residuals]),
                   rows([r.decays for r in residuals]))


def normalize_priors(priors: PhysicsPriors) -> tuple[torch.Tensor, ...]:
    """The code's dataset normalisations (notes B2), each to about [-1, 1] or (0, 1):

    f: 2·(f − bin centre)/21.533; p: 2·p/(−80) − 1 (0 dB → −1, −80 dB → +1); d: 2·(d − t_min)/(t_max − t_min) − 1
    with t_min = 0.5·256/44100 s, t_max = 44·256/44100 s; w as is; noise_t: (noise_t − 1e-5)/0.5.
    """
    centres = torch.arange(STFT_BINS, device=priors.frequencies.device, dtype=priors.frequencies.dtype) * BIN_HZ
    f = 2.0 * (priors.frequencies - centres) / BIN_HZ
    p = 2.0 * priors.powers / PAPER_FLOOR_DB - 1.0
    d = 2.0 * (priors.decays - DECAY_MIN_S) / (DECAY_MAX_S - DECAY_MIN_S) - 1.0
    noise_t = (priors.noise_decays - MIN_DECAY_S) / DECAY_SPAN_S
    return f, p, d, priors.gains, noise_t


def prelu_mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers through `widths` with a PReLU after every one but the last."""
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if index < len(widths) - 2:
            layers.append(nn.PReLU())
    return nn.Sequential(*layers)


class PhysicsEncoder(nn.Module):
    """ParamsNet: raw `PhysicsPriors` → μ [B, 256] in (−1, 1) (five parallel MLPs, concat, Linear, tanh)."""

    def __init__(self, config: ImpactDiffusionConfig) -> None:
        super().__init__()
        h = config.physics_hidden
        self.frequency = prelu_mlp([STFT_BINS, h, h, h, MODE_BRANCH_DIM])
        self.power = prelu_mlp([STFT_BINS, h, h, h, MODE_BRANCH_DIM])
        self.decay = prelu_mlp([STFT_BINS, h, h, h, MODE_BRANCH_DIM])
        self.gain = prelu_mlp([config.n_bands, RESIDUAL_HIDDEN, RESIDUAL_HIDDEN, RESIDUAL_BRANCH_DIM])
        self.noise_decay = prelu_mlp([config.n_bands, RESIDUAL_HIDDEN, RESIDUAL_HIDDEN, RESIDUAL_BRANCH_DIM])
        self.out = nn.Linear(3 * MODE_BRANCH_DIM + 2 * RESIDUAL_BRANCH_DIM, PHYSICS_DIM)

    def forward(self, priors: PhysicsPriors) -> torch.Tensor:
        f, p, d, w, noise_t = normalize_priors(priors)
        parts = [self.frequency(f), self.power(p), self.decay(d), self.gain(w), self.noise_decay(noise_t)]
        return torch.tanh(self.out(torch.cat(parts, dim=-1)))


# --------------------------------------------------------------------------------------------------------------
# Visual encoder
# --------------------------------------------------------------------------------------------------------------


class VisualEncoder(nn.Module):
    """Frames [N, T, H, W, 3] in [0, 1] (H = W = frame_size) → ν [N, classes]: per-frame material logits averaged
    over the T frames (a departure from the paper's ResNet-50 + TSM, see the module docstring)."""

    def __init__(self, config: ImpactDiffusionConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for width in config.visual_channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(min(8, width), width),
                       nn.SiLU()]
            previous = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(previous, config.visual_dim)

    def frame_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, T, H, W, 3] → per-frame logits [N, T, classes]."""
        n, t = frames.shape[:2]
        x = frames.reshape(n * t, *frames.shape[2:]).permute(0, 3, 1, 2) * 2.0 - 1.0
        return self.classifier(self.features(x)).reshape(n, t, -1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(frames).mean(dim=1)


# --------------------------------------------------------------------------------------------------------------
# Spectrogram U-Net
# --------------------------------------------------------------------------------------------------------------


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] timesteps → [B, dim]: (sin, cos) of t·10000^{−i/(dim/2 − 1)} (lucidrains' SinusoidalPosEmb)."""
    half = dim // 2
    scale = math.log(10000.0) / max(half - 1, 1)
    frequencies = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
    angles = t.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResnetBlock(nn.Module):
    """Two (3×3 conv, GroupNorm, SiLU) blocks; FiLM (scale + 1, shift) from the conditioning vector after the first
    norm; a 1×1 conv on the skip path when the width changes."""

    def __init__(self, dim_in: int, dim_out: int, cond_dim: int, groups: int) -> None:
        super().__init__()
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim_out))
        self.conv1, self.norm1 = nn.Conv2d(dim_in, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out)
        self.conv2, self.norm2 = nn.Conv2d(dim_out, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(self.conv1(x)) * (scale + 1.0) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel, with a learned gain (lucidrains' `LayerNorm`)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gain


class LinearAttention(nn.Module):
    """Residual pre-norm linear attention (Shen et al.; lucidrains): softmax of q over features and of k over
    positions, context = k vᵀ summed over positions, out = context q; cost linear in the number of positions."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        hidden = heads * dim_head
        self.norm = ChannelLayerNorm(dim)
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, -1, height * width).unbind(dim=1)
        q = q.softmax(dim=-2) * self.scale  # [b, heads, d, n]
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, -1, height, width)
        return x + self.to_out(out)


def pad_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Zero-pad the bottom/right of x to like's height and width (transposed convs of odd sizes fall one short)."""
    return F.pad(x, (0, like.shape[-1] - x.shape[-1], 0, like.shape[-2] - x.shape[-2]))


class SpectrogramUNet(nn.Module):
    """ε-prediction U-Net on [B, 1, freq_bins, 44] spectrograms, FiLM-conditioned on (t, μ, ν)."""

    def __init__(self, config: ImpactDiffusionConfig) -> None:
        super().__init__()
        dim, groups, cond = config.dim, config.groups, config.cond_dim
        widths = [dim, *(dim * m for m in config.dim_mults)]
        pairs = list(zip(widths[:-1], widths[1:]))
        self.time_dim = dim
        self.init_conv = nn.Conv2d(1, dim, 7, padding=3, bias=False)
        self.time_mlp = nn.Sequential(nn.Linear(dim, config.time_dim), nn.GELU(),
                                      nn.Linear(config.time_dim, config.time_dim))
        attention = functools.partial(LinearAttention, heads=config.attn_heads, dim_head=config.attn_dim_head)
        self.downs = nn.ModuleList()
        for level, (w_in, w_out) in enumerate(pairs):
            last = level == len(pairs) - 1
            self.downs.append(nn.ModuleList([
                ResnetBlock(w_in, w_out, cond, groups), ResnetBlock(w_out, w_out, cond, groups), attention(w_out),
                nn.Identity() if last else nn.Conv2d(w_out, w_out, 4, stride=2, padding=1),
            ]))
        self.mid = nn.ModuleList([ResnetBlock(widths[-1], widths[-1], cond, groups) for _ in range(2)])
        self.ups = nn.ModuleList()
        for w_in, w_out in reversed(pairs[1:]):
            self.ups.append(nn.ModuleList([
                ResnetBlock(2 * w_out, w_in, cond, groups), ResnetBlock(w_in, w_in, cond, groups), attention(w_in),
                nn.ConvTranspose2d(w_in, w_in, 4, stride=2, padding=1),
            ]))
        self.final_block = ResnetBlock(2 * dim, dim, cond, groups)
        self.final_conv = nn.Conv2d(dim, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        """x [B, 1, F, N], t [B] (integer timesteps), μ [B, 256], ν [B, classes] → ε̂ [B, 1, F, N]."""
        cond = torch.cat([self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(x.dtype)), mu, nu], dim=-1)
        x = self.init_conv(x)
        first = x
        skips = []
        for block1, block2, attention, down in self.downs:
            x = attention(block2(block1(x, cond), cond))
            skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, attention, up in self.ups:
            skip = skips.pop()
            x = torch.cat([pad_to(x, skip), skip], dim=1)
            x = up(attention(block2(block1(x, cond), cond)))
        x = torch.cat([pad_to(x, first), first], dim=1)
        return self.final_conv(self.final_block(x, cond))


class ImpactDenoiser(nn.Module):
    """The U-Net and the physics encoder, trained jointly (the code keeps ParamsNet inside `GaussianDiffusion`)."""

    def __init__(self, config: ImpactDiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = SpectrogramUNet(config)
        self.physics = PhysicsEncoder(config)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, mu, nu)


# --------------------------------------------------------------------------------------------------------------
# Diffusion: schedule, forward process, loss, sampler
# --------------------------------------------------------------------------------------------------------------


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.9999) -> np.ndarray:
    """β_t (float64, [T]) of the cosine schedule: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2),
    β_t = 1 − ᾱ(t+1)/ᾱ(t), clipped to [0, max_beta] (Nichol & Dhariwal 2021, Eq. 17; the code's values)."""
    x = np.linspace(0.0, timesteps, timesteps + 1, dtype=np.float64)
    f = np.cos(((x / timesteps) + s) / (1.0 + s) * math.pi / 2.0) ** 2
    alphas_cumprod = f / f[0]
    return np.clip(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, max_beta)


class DiffusionSchedule:
    """A DDPM noise schedule over the model timesteps `timesteps` (all of 0..T−1, or a respaced subset).

    Index i runs over this schedule's steps; `timesteps[i]` is the model timestep fed to the U-Net. ᾱ_i is the
    training schedule's ᾱ at that timestep; β_i = 1 − ᾱ_i / ᾱ_{i−1} (respacing keeps the marginals).
    """

    def __init__(self, betas: np.ndarray, timesteps: np.ndarray | None = None) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        self.timesteps = np.arange(len(betas)) if timesteps is None else np.asarray(timesteps, dtype=np.int64)
        # q(x_{t−1} | x_t, x_0) (Ho et al. Eq. 6–7), the code's `posterior_*` buffers.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.maximum(self.posterior_variance, 1e-20))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / \
            (1.0 - self.alphas_cumprod)

    @classmethod
    def cosine(cls, timesteps: int, s: float = 0.008, max_beta: float = 0.9999) -> DiffusionSchedule:
        return cls(cosine_betas(timesteps, s, max_beta))

    @classmethod
    def from_config(cls, config: ImpactDiffusionConfig) -> DiffusionSchedule:
        return cls.cosine(config.timesteps, config.cosine_s, config.max_beta)

    def __len__(self) -> int:
        return len(self.betas)

    def respaced(self, num_steps: int) -> DiffusionSchedule:
        """`num_steps` timesteps evenly spaced from 0 to T−1 (rounded), with β recomputed between them."""
        if not 1 <= num_steps <= len(self):
            raise ValueError(f"`num_inference_steps` must be between 1 and {len(self)}, got {num_steps}")
        if num_steps == len(self):
            return self
        keep = np.unique(np.round(np.linspace(0, len(self) - 1, num_steps)).astype(np.int64))
        kept = self.alphas_cumprod[keep]
        betas = 1.0 - kept / np.concatenate([[1.0], kept[:-1]])
        return DiffusionSchedule(betas, self.timesteps[keep])

    def _at(self, values: np.ndarray, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[index] shaped [B, 1, 1, 1] in like's dtype and device."""
        gathered = torch.as_tensor(values, device=like.device)[index.to(like.device)]
        return gathered.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, index: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (paper Eq. 8's h(x_0, ε))."""
        return self._at(np.sqrt(self.alphas_cumprod), index, x0) * x0 + \
            self._at(np.sqrt(1.0 - self.alphas_cumprod), index, x0) * noise

    def predict_x0(self, xt: torch.Tensor, index: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."""
        return self._at(np.sqrt(1.0 / self.alphas_cumprod), index, xt) * xt - \
            self._at(np.sqrt(1.0 / self.alphas_cumprod - 1.0), index, xt) * eps

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, index: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of q(x_{t−1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, index, xt) * x0 + \
            self._at(self.posterior_mean_coef2, index, xt) * xt
        return mean, self._at(self.posterior_log_variance_clipped, index, xt)


def diffusion_loss(denoiser: nn.Module, schedule: DiffusionSchedule, x0: torch.Tensor, mu: torch.Tensor,
                   nu: torch.Tensor, *, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Paper Eq. 8: mean ‖ε − f_θ(h(x_0, ε), t, μ, ν)‖₁ with t uniform over the schedule's timesteps and
    ε ~ N(0, I) (drawn from `generator` on the CPU unless given)."""
    if t is None:
        t = torch.randint(0, len(schedule), (x0.shape[0],), generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator)
    t, noise = t.to(x0.device), noise.to(x0.device, x0.dtype)
    return F.l1_loss(denoiser(schedule.q_sample(x0, t, noise), t, mu, nu), noise)


StepCallback = Callable[[int, int, torch.Tensor], None]


@torch.no_grad()
def sample(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    schedule: DiffusionSchedule,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """The code's ancestral sampler (paper Eq. 9 with σ = 1, plus x̂_0 clipping) over `schedule`'s steps.

    x_T ~ N(0, I); each step: ε̂ = eps_fn(x, model timesteps [B]); x̂_0 from ε̂, clipped to [−1, 1]; x = posterior
    mean + exp(½ log-variance)·z, z ~ N(0, I), z = 0 at the last step. Noise is drawn on the CPU from
    `generator`, so a seed gives the same result on every device. `callback(step, total, x̂_0)` after each step.
    """
    x = torch.randn(shape, generator=generator).to(device, dtype)
    total = len(schedule)
    for step, i in enumerate(reversed(range(total))):
        index = torch.full((shape[0],), i, dtype=torch.long)
        t = torch.full((shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=device)
        x0 = schedule.predict_x0(x, index, eps_fn(x, t)).clamp(-1.0, 1.0)
        mean, log_variance = schedule.posterior(x0, x, index)
        noise = torch.randn(shape, generator=generator).to(device, dtype) if i > 0 else torch.zeros_like(x)
        x = mean + torch.exp(0.5 * log_variance) * noise
        if callback is not None:
            callback(step + 1, total, x0)
    return x


# --------------------------------------------------------------------------------------------------------------
# Retrieval bank
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BankEntry:
    """One retrieved training clip: its bank index, distance to the query, μ [256], sparse `refined` modes, residual
    parameters, and its label (material) when known."""

    index: int
    distance: float
    mu: np.ndarray
    modes: Modes
    residual: ResidualParams
    label: str | None = None


class RetrievalBank:
    """Training (ν, μ) pairs plus each clip's editable physics; nearest-neighbour look-up by ν.

    Arrays (float32 tensors): keys [N, visual_dim], values [N, 256], mode_frequencies/powers/decays
    [N, MAX_BANK_MODES] (padded; mode_counts [N] says how many are real), residual_gains/decays [N, M].
    """

    TENSORS = ("keys", "values", "mode_frequencies", "mode_powers", "mode_decays", "mode_counts",
               "residual_gains", "residual_decays")

    def __init__(self, keys, values, mode_frequencies, mode_powers, mode_decays, mode_counts, residual_gains,
                 residual_decays, labels: list[str] | None = None) -> None:
        self.keys = torch.as_tensor(keys, dtype=torch.float32)
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.mode_frequencies = torch.as_tensor(mode_frequencies, dtype=torch.float32)
        self.mode_powers = torch.as_tensor(mode_powers, dtype=torch.float32)
        self.mode_decays = torch.as_tensor(mode_decays, dtype=torch.float32)
        self.mode_counts = torch.as_tensor(mode_counts, dtype=torch.int64)
        self.residual_gains = torch.as_tensor(residual_gains, dtype=torch.float32)
        self.residual_decays = torch.as_tensor(residual_decays, dtype=torch.float32)
        self.labels = None if labels is None else [str(label) for label in labels]
        n = len(self.keys)
        if n == 0 or any(len(getattr(self, name)) != n for name in self.TENSORS):
            raise ValueError("a retrieval bank needs at least one entry and the same number of rows in every array")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"got {len(self.labels)} labels for {n} bank entries")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, keys: torch.Tensor, values: torch.Tensor, modes: list[Modes], residuals: list[ResidualParams],
              labels: list[str] | None = None, max_modes: int = MAX_BANK_MODES) -> RetrievalBank:
        """From per-clip sparse modes (the strongest `max_modes` kept) and residual parameters."""
        n = len(modes)
        arrays = np.zeros((3, n, max_modes), dtype=np.float32)
        counts = np.zeros(n, dtype=np.int64)
        for row, clip_modes in enumerate(modes):
            keep = np.sort(np.argsort(-clip_modes.powers, kind="stable")[:max_modes])
            counts[row] = len(keep)
            for k, values_ in enumerate((clip_modes.frequencies, clip_modes.powers, clip_modes.decays)):
                arrays[k, row, : len(keep)] = values_[keep]
        gains = np.stack([r.gains for r in residuals]).astype(np.float32)
        decays = np.stack([r.decays for r in residuals]).astype(np.float32)
        return cls(keys.detach().float().cpu(), values.detach().float().cpu(), *arrays, counts, gains, decays,
                   labels)

    def query(self, features: torch.Tensor, metric: Literal["l2", "l1"] = "l2") -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest key of each row of features [B, visual_dim] → (indices [B], distances [B])."""
        if metric not in ("l2", "l1"):
            raise ValueError(f"`metric` must be \"l2\" (the paper) or \"l1\" (the code), got {metric!r}")
        features = torch.as_tensor(features, dtype=torch.float32).reshape(-1, self.keys.shape[1])
        distances = torch.cdist(features.cpu(), self.keys, p=2.0 if metric == "l2" else 1.0,
                                compute_mode="donot_use_mm_for_euclid_dist")
        best, index = distances.min(dim=1)
        return index, best

    def entry(self, index: int, distance: float = 0.0) -> BankEntry:
        count = int(self.mode_counts[index])
        modes = Modes(self.mode_frequencies[index, :count].double().numpy(),
                      self.mode_powers[index, :count].double().numpy(),
                      self.mode_decays[index, :count].double().numpy(), sample_rate=SAMPLE_RATE)
        residual = ResidualParams(self.residual_gains[index].double().numpy(),
                                  self.residual_decays[index].double().numpy())
        label = None if self.labels is None else self.labels[index]
        return BankEntry(int(index), float(distance), self.values[index].numpy().copy(), modes, residual, label)

    def save(self, folder: str | Path, name: str = "bank") -> None:
        """`name.safetensors` (float32 arrays) and `name.json` (entry count and labels)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        save_file({key: getattr(self, key).contiguous() for key in self.TENSORS}, str(folder / f"{name}.safetensors"))
        (folder / f"{name}.json").write_text(json.dumps({"entries": len(self), "labels": self.labels}),
                                             encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, name: str = "bank") -> RetrievalBank:
        from safetensors.torch import load_file

        folder = Path(folder)
        tensors = load_file(str(folder / f"{name}.safetensors"))
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        return cls(*(tensors[key] for key in cls.TENSORS), labels=meta.get("labels"))
