"""The networks of the physics-driven diffusion model of Su et al. (CVPR 2023, Sec. 3.2, and
its released code): the spectrogram U-Net conditioned on a physics latent μ and a visual latent ν, the physics encoder that makes
μ, and the visual encoder that makes ν. The schedule and sampler are in `scheduling_impact_sound.py`, the retrieval
bank in `retrieval.py`, the spectrogram they work on in `spectrogram.py`.

- `ImpactDiffusionConfig`: sizes and constants, presets `paper`, `studio`, `tiny` (`ImpactDiffusionConfig.preset`);
  JSON through `to_dict` / `from_dict`.
- `PhysicsEncoder` (the code's `ParamsNet`): five parallel PReLU MLPs for the per-bin mode
  frequencies f, powers p and decays d (1025 each, from the paper's extractor, `modal.estimate_modes(...,
  "paper")`) and the residual's band gains w and decays noise_t (100 each, from the residual predictor), widths
  1025→h→h→h→64 (×3) and 100→64→64→32 (×2), concatenated to 256, then Linear(256, 256) and tanh. Hidden width h
  is 512 in the paper (configurable). Inputs are normalised as the code's dataset does (`normalize_priors`).
- `VisualEncoder`: **departure**. The paper uses the 17-d material logits of a pretrained ResNet-50 + TSM video
  classifier, averaged over 22 frames centred on the hit. Here a small per-frame CNN (stride-2 3×3 convolutions,
  GroupNorm, SiLU, global average pooling, one linear layer) gives per-frame material logits that are averaged
  over `num_frames` frames around the hit; it is trained as a material classifier (`pipelines.train`).
- `SpectrogramUNet` (the code's `Unet3D`, 2-D despite its name): init 7×7 conv (no bias) to `dim`
  channels; per level two ResNet blocks (3×3 conv, GroupNorm(`groups`), FiLM scale/shift from the conditioning
  vector on the first conv, SiLU) then residual pre-norm linear attention, then a 4×4 stride-2 downsampling conv
  (not at the last level); two mid blocks; an up path of skip concatenation, two blocks, attention and a 4×4
  stride-2 transposed conv (zero-padded to the skip's size for odd sizes); then concatenation with the init-conv
  features, a final block and a 1×1 conv. Conditioning vector = concat[time embedding (sinusoidal(dim) → Linear →
  GELU → Linear, 4·dim wide), μ (256), ν (number of visual classes)].
- `ImpactDenoiser`: the U-Net and the physics encoder, trained jointly; saved together (`unet.*`, `physics.*`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.impact_sound.modal import PAPER_FLOOR_DB, Modes
from pipelines.impact_sound.residual import DECAY_SPAN_S, MIN_DECAY_S, N_BANDS, ResidualParams
from pipelines.impact_sound.spectrogram import BIN_HZ, IMPACT, SAMPLE_RATE, SPEC_FRAMES, STFT_BINS

DECAY_MIN_S = 0.5 * IMPACT.hop_length / SAMPLE_RATE  # the paper extractor's shortest decay: half a frame, 0.0029 s
DECAY_MAX_S = SPEC_FRAMES * IMPACT.hop_length / SAMPLE_RATE  # its longest: 44 frames, 0.2554 s
PHYSICS_DIM = 256  # μ
MODE_BRANCH_DIM, RESIDUAL_BRANCH_DIM, RESIDUAL_HIDDEN = 64, 32, 64  # ParamsNet: 3 × 64 + 2 × 32 = 256
CONFIG_TYPE = "impact-physics-diffusion"

# Greatest Hits' materials in the released code's subset; the paper's own 17-d logits are undocumented.
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
    """The code's dataset normalisations, each to about [-1, 1] or (0, 1):

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
