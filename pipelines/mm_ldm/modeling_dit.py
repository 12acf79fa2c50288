"""MM-LDM's latent diffusion transformer (paper §3.2, Fig. 2; the released `dit_v2.py`).

One DiT predicts the noise of both perceptual latents at once. The token sequence is
[EOS_a, audio tokens, EOS_v, video tokens]: each latent is cut into 1 × 1 patches (patch size 1: one token per latent
position), embedded, and given fixed 2-D sin-cos positions of its own grid plus a learnable embedding of its modality;
the two learnable EOS tokens are put in front of each modality's tokens. Shared transformer blocks with adaLN-Zero on
the timestep (DiT's block; one t for both modalities), then one final layer per modality (adaLN + linear, zero
initialised, so the initial prediction is 0 and the initial loss MSE_a + MSE_v ≈ 2).

Conditional latents (§3.3): the clean audio latent (A2V) and the clean video latent (V2A) go through their own
zero-initialised patch embeddings and are added to their modality's tokens; the null condition is a zero latent
(0_a, 0_v), embedded like any other, so at initialisation conditional and unconditional predictions are equal.

Departures, chosen between the paper and the released code:
- zero-initialised condition embeddings, as the paper says ("zero convolution layers"); the released `PatchEmbed`
  layers keep PyTorch's default initialisation;
- no context prefix: the released DiT puts 77 text/learnable context tokens in front; the paper has none;
- the modality embedding is one learnable vector per modality (the paper's "independent positional embeddings" are
  the fixed sin-cos grids); the released code learns one per position;
- the blocks are diffusers' `Attention` + `FeedForward` under `AdaLayerNormZero` driven by one shared timestep
  embedding, as in DiT: diffusers' `BasicTransformerBlock(norm_type="ada_norm_zero")` would embed the timestep (and a
  class label this model does not have) again inside every block.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_2d_sincos_pos_embed_from_grid
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormZero
from torch import nn


def sincos_positions(dim: int, height: int, width: int) -> torch.Tensor:
    """DiT's fixed 2-D sin-cos positions [height·width, dim] of a height × width grid, row-major."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    grid = torch.stack([cols, rows]).reshape(2, 1, height, width)  # DiT: np.meshgrid(grid_w, grid_h), w first
    return get_2d_sincos_pos_embed_from_grid(dim, grid, output_type="pt").float()


def to_tokens(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H·W, C] (patch size 1)."""
    return latent.flatten(2).transpose(1, 2)


def from_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H·W, C] -> [B, C, H, W]."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


class DiTBlock(nn.Module):
    """DiT's adaLN-Zero block: x + g₁·Attn(LN(x)(1 + s₁) + b₁), then x + g₂·MLP(LN(x)(1 + s₂) + b₂), all six
    modulations from the timestep embedding through a zero-initialised linear layer (so the block starts as
    identity)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.attn = Attention(query_dim=dim, heads=num_heads, dim_head=dim // num_heads, bias=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, inner_dim=int(dim * mlp_ratio), activation_fn="gelu-approximate")

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, emb=emb)
        x = x + gate_msa[:, None] * self.attn(h)
        h = self.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + gate_mlp[:, None] * self.ff(h)


class FinalLayer(nn.Module):
    """DiT's final layer for one modality: LN(x)(1 + s) + b from the timestep, then a linear map to the latent channels
    (modulation and output zero-initialised)."""

    def __init__(self, dim: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(emb).chunk(2, dim=1)
        return self.linear(self.norm(x) * (1 + scale[:, None]) + shift[:, None])


class MMLDMTransformer(ModelMixin, ConfigMixin):
    """The multi-modal DiT: (z_a^t, z_v^t, t; c_a, c_v) -> (ε̂_a, ε̂_v).

    Args:
        audio_latent_size, video_latent_size: (C, H, W) of the perceptual latents (paper: 16×8×8 and 16×16×16).
        hidden_size, depth, num_heads, mlp_ratio: the transformer (released config: 1152, 28, 16, 4: DiT-XL).
        frequency_embedding_size: sinusoidal timestep features before the timestep MLP (DiT: 256).
    """

    @register_to_config
    def __init__(self, audio_latent_size: tuple[int, int, int] = (16, 8, 8),
                 video_latent_size: tuple[int, int, int] = (16, 16, 16), hidden_size: int = 1152, depth: int = 28,
                 num_heads: int = 16, mlp_ratio: float = 4.0, frequency_embedding_size: int = 256):
        super().__init__()
        if hidden_size % num_heads or hidden_size % 4:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_heads` ({num_heads}) and by 4 "
                             f"(2-D sin-cos positions).")
        audio_channels, video_channels = audio_latent_size[0], video_latent_size[0]
        self.time_proj = Timesteps(frequency_embedding_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(frequency_embedding_size, hidden_size)
        self.audio_embed = nn.Linear(audio_channels, hidden_size)
        self.video_embed = nn.Linear(video_channels, hidden_size)
        self.audio_condition_embed = nn.Linear(audio_channels, hidden_size)
        self.video_condition_embed = nn.Linear(video_channels, hidden_size)
        for name, size in (("audio_positions", audio_latent_size), ("video_positions", video_latent_size)):
            self.register_buffer(name, sincos_positions(hidden_size, *size[1:]), persistent=False)
        self.audio_modality = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.video_modality = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.eos_audio = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.eos_video = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.audio_out = FinalLayer(hidden_size, audio_channels)
        self.video_out = FinalLayer(hidden_size, video_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linear layers with zero biases, N(0, 0.02) for the timestep MLP and the
        learnable tokens, and zeros for every adaLN modulation, both final layers and both condition embeddings."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for linear in (self.time_embedding.linear_1, self.time_embedding.linear_2):
            nn.init.normal_(linear.weight, std=0.02)
        for token in (self.audio_modality, self.video_modality, self.eos_audio, self.eos_video):
            nn.init.normal_(token, std=0.02)
        zeroed = [self.audio_condition_embed, self.video_condition_embed, *(b.norm1.linear for b in self.blocks)]
        for final in (self.audio_out, self.video_out):
            zeroed += [final.modulation[1], final.linear]
        for linear in zeroed:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def num_tokens(self) -> int:
        """Sequence length: 2 EOS tokens + one token per audio and per video latent position (paper: 322)."""
        (_, ha, wa), (_, hv, wv) = self.config.audio_latent_size, self.config.video_latent_size
        return 2 + ha * wa + hv * wv

    def forward(self, audio: torch.Tensor, video: torch.Tensor, timestep: torch.Tensor,
                audio_condition: torch.Tensor | None = None,
                video_condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict (ε_a, ε_v) for z_a^t `[B, C_a, H_a, W_a]`, z_v^t `[B, C_v, H_v, W_v]` at `timestep` `[B]`.

        `audio_condition` / `video_condition`: the clean latents for A2V / V2A; None is the null condition (zeros).
        """
        batch = audio.shape[0]
        audio_condition = torch.zeros_like(audio) if audio_condition is None else audio_condition
        video_condition = torch.zeros_like(video) if video_condition is None else video_condition
        audio_tokens = (self.audio_embed(to_tokens(audio)) + self.audio_condition_embed(to_tokens(audio_condition))
                        + self.audio_positions.to(audio.dtype) + self.audio_modality)
        video_tokens = (self.video_embed(to_tokens(video)) + self.video_condition_embed(to_tokens(video_condition))
                        + self.video_positions.to(video.dtype) + self.video_modality)
        x = torch.cat([self.eos_audio.expand(batch, -1, -1), audio_tokens,
                       self.eos_video.expand(batch, -1, -1), video_tokens], dim=1)
        emb = self.time_embedding(self.time_proj(timestep.reshape(-1).expand(batch)).to(x.dtype))
        for block in self.blocks:
            x = block(x, emb)
        count = audio_tokens.shape[1]
        eps_audio = self.audio_out(x[:, 1 : 1 + count], emb)
        eps_video = self.video_out(x[:, 2 + count :], emb)
        return from_tokens(eps_audio, *audio.shape[2:]), from_tokens(eps_video, *video.shape[2:])


__all__ = ["DiTBlock", "FinalLayer", "MMLDMTransformer", "sincos_positions"]
