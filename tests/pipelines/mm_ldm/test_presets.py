"""MM-LDM's sizes: the paper's, built on the meta device, and the studio's."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.mm_ldm.modeling_mm_ldm import PRESETS, SD_VAE_SCALING_FACTOR, build_components, get_preset


def latent_shapes_by_running(name: str) -> tuple[torch.Size, torch.Size, int]:
    """Build a preset on the meta device and push one clip and one audio image through the encoders."""
    preset = get_preset(name)
    size = preset.frame_size
    with torch.device("meta"):
        parts = build_components(name)
        vae_latent = parts["vae"].encode(torch.empty(1, 3, size, size)).latent_dist.mean
        clip = vae_latent[:, None].expand(1, preset.num_frames, *vae_latent.shape[1:])
        z_video = parts["autoencoder"].encode_video(clip).mean
        z_audio = parts["autoencoder"].encode_audio(vae_latent).mean
    return z_video.shape[1:], z_audio.shape[1:], parts["transformer"].num_tokens


def ratios(name: str) -> tuple[float, float, int]:
    preset = get_preset(name)
    z_video, z_audio, tokens = latent_shapes_by_running(name)
    video = preset.num_frames * 3 * preset.frame_size**2 / math.prod(z_video)
    audio = 3 * preset.frame_size**2 / math.prod(z_audio)
    return video, audio, tokens


def test_paper_compresses_768x_video_192x_audio_into_322_tokens():
    z_video, z_audio, tokens = latent_shapes_by_running("paper")
    assert tuple(z_video) == (16, 16, 16) and tuple(z_audio) == (16, 8, 8) and tokens == 2 + 64 + 256
    assert ratios("paper") == (768.0, 192.0, 322)


def test_paper_networks_are_the_released_configs():
    with torch.device("meta"):
        parts = build_components("paper")
    dit, vae, ae = parts["transformer"].config, parts["vae"].config, parts["autoencoder"].config
    assert (dit.hidden_size, dit.depth, dit.num_heads, dit.mlp_ratio) == (1152, 28, 16, 4.0)
    assert (vae.latent_channels, vae.scaling_factor, len(vae.block_out_channels)) == (4, SD_VAE_SCALING_FACTOR, 4)
    assert ae.encoder_channels == 320
    assert (tuple(ae.audio_channel_mult), tuple(ae.video_channel_mult)) == ((1, 2, 4), (1, 2))
    assert (ae.num_frames, ae.num_keyframes, ae.semantic_dim, ae.prompt_tokens) == (16, 4, 768, 77)
    assert tuple(ae.decoder_channels) == (320, 640, 1280, 1280)
    assert PRESETS["paper"].spec.sample_rate == 44100


def test_studio_is_a_small_clip_with_82_tokens():
    preset = get_preset("studio")
    assert (preset.num_frames, preset.frame_size, preset.fps) == (8, 32, 10)
    assert preset.spec.clip_seconds == preset.num_frames / preset.fps == 0.8
    assert ratios("studio") == (48.0, 24.0, 82)
    torch.manual_seed(0)
    parts = build_components("studio")
    counts = {name: sum(p.numel() for p in parts[name].parameters()) for name in ("vae", "autoencoder", "transformer")}
    assert all(count < 2_000_000 for count in counts.values()), counts


def test_unknown_size_is_named():
    with pytest.raises(ValueError, match="Unknown MM-LDM size 'huge'"):
        get_preset("huge")
