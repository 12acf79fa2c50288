"""MM-LDM's networks at named sizes: the pre-compression KL-VAE, the multi-modal autoencoder and the latent DiT.

- `kl_vae(...)`: a diffusers `AutoencoderKL`. At paper size it is LDM's / Stable Diffusion's KL-f8 (4 latent channels,
  scaling factor 0.18215), 256² frames and audio images -> 4 × 32 × 32 (paper §3.1 "pre-compression"; its decoder is
  fine-tuned on frames and audio images per dataset).
- `PRESETS`: `paper` (16 frames of 256², 1.6 s at 44.1 kHz; z_v 16×16×16, z_a 16×8×8; the released encoders,
  Stable Diffusion's U-Net as the shared decoder, DiT 1152 × 28 × 16 heads: 322 tokens), `studio` (a clip a 2-core
  CPU can train on: 8 frames of 32² at 10 fps with 0.8 s of 16 kHz audio, KL-VAE f = 2, z_v 8×8×8, z_a 8×4×4, DiT
  128 × 4: 82 tokens) and `tiny` (for tests).
- `build_components(preset)`: the four components of `MMLDMPipeline` with consistent sizes (the autoencoder's input
  follows from the VAE and the clip, the DiT's latents from the autoencoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffusers import AutoencoderKL

from pipelines.audio import SPECS, AudioSpec

from .modeling_autoencoder import MultiModalAutoencoder
from .modeling_dit import MMLDMTransformer
from .scheduling_mm_ldm import make_scheduler

SD_VAE_SCALING_FACTOR = 0.18215


def kl_vae(block_out_channels: tuple[int, ...] = (128, 256, 512, 512), layers_per_block: int = 2,
           latent_channels: int = 4, norm_num_groups: int = 32, sample_size: int = 256,
           scaling_factor: float = SD_VAE_SCALING_FACTOR) -> AutoencoderKL:
    """A KL-VAE down-sampling by 2^(levels − 1); the defaults are LDM's KL-f8 (Stable Diffusion's VAE)."""
    levels = len(block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=block_out_channels,
                         layers_per_block=layers_per_block, latent_channels=latent_channels,
                         norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor)


@dataclass(frozen=True)
class Preset:
    """One size of MM-LDM: the clip it makes and the arguments of its three networks (sizes that follow from others,
    such as the autoencoder's input size, are filled in by `build_components`)."""

    num_frames: int
    frame_size: int
    fps: int
    audio_spec: str
    vae: dict[str, Any] = field(default_factory=dict)
    autoencoder: dict[str, Any] = field(default_factory=dict)
    transformer: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> AudioSpec:
        return SPECS[self.audio_spec]


PRESETS: dict[str, Preset] = {
    # The paper's clip (§4.1) and the released configs: SD's KL-f8 and U-Net, the released encoders (320 channels;
    # audio (1, 2, 4), video (1, 2)), DiT-XL widths (1152 × 28, 16 heads).
    "paper": Preset(16, 256, 10, "mm_ldm", vae={}, autoencoder={}, transformer={}),
    # A 2-core CPU's clip: the studio MM-Diffusion's 8 frames at 10 fps, at 32² so the latents keep a spatial grid.
    # The scaling factor of a freshly trained VAE is 1 until its trainer measures the latents' spread.
    "studio": Preset(
        8, 32, 10, "mm_ldm_studio",
        vae={"block_out_channels": (32, 64), "layers_per_block": 1, "norm_num_groups": 8, "scaling_factor": 1.0},
        autoencoder={"latent_channels": 8, "encoder_channels": 32, "audio_channel_mult": (1, 2, 2),
                     "video_channel_mult": (1, 2), "num_res_blocks": 1, "head_dim": 16, "norm_groups": 8,
                     "semantic_dim": 64, "semantic_grid": 2, "num_classes": 6, "contrastive_dim": 64,
                     "prompt_tokens": 4, "decoder_channels": (32, 64), "decoder_layers_per_block": 1,
                     "decoder_attention_heads": 4, "decoder_norm_groups": 8, "decoder_cross_attention_blocks": 2},
        transformer={"hidden_size": 128, "depth": 4, "num_heads": 4}),
    # For tests: the studio clip's structure at 16² frames, tens of thousands of parameters per network.
    "tiny": Preset(
        8, 16, 10, "mm_ldm_studio",
        vae={"block_out_channels": (8, 8), "layers_per_block": 1, "norm_num_groups": 4, "scaling_factor": 1.0},
        autoencoder={"latent_channels": 4, "encoder_channels": 8, "audio_channel_mult": (1, 2, 2),
                     "video_channel_mult": (1, 2), "num_res_blocks": 1, "head_dim": 8, "norm_groups": 4,
                     "semantic_dim": 16, "semantic_grid": 2, "num_classes": 3, "contrastive_dim": 16,
                     "prompt_tokens": 2, "decoder_channels": (8, 16), "decoder_layers_per_block": 1,
                     "decoder_attention_heads": 2, "decoder_norm_groups": 4, "decoder_cross_attention_blocks": 1},
        transformer={"hidden_size": 32, "depth": 2, "num_heads": 4}),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"Unknown MM-LDM size {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


def build_components(preset: str | Preset, **transformer_overrides: Any) -> dict[str, Any]:
    """Randomly initialised `vae`, `autoencoder`, `transformer` and `scheduler` of a preset (build inside
    `torch.device("meta")` to size the paper's networks without memory)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    vae = kl_vae(sample_size=preset.frame_size, **preset.vae)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if preset.frame_size % factor:
        raise ValueError(f"frame size {preset.frame_size} is not divisible by the KL-VAE's factor {factor}")
    autoencoder = MultiModalAutoencoder(vae_channels=vae.config.latent_channels, vae_size=preset.frame_size // factor,
                                        num_frames=preset.num_frames, **preset.autoencoder)
    audio_shape, video_shape = autoencoder.latent_shapes()
    transformer = MMLDMTransformer(audio_latent_size=audio_shape, video_latent_size=video_shape,
                                   **{**preset.transformer, **transformer_overrides})
    return {"vae": vae, "autoencoder": autoencoder, "transformer": transformer, "scheduler": make_scheduler()}


__all__ = ["PRESETS", "SD_VAE_SCALING_FACTOR", "Preset", "build_components", "get_preset", "kl_vae"]
