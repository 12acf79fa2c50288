"""Building blocks shared by the MM-Diffusion networks: norms, video/audio convolutions, resampling, embeddings.

Layout: video is held channels-first, `[N, C, F, H, W]`, inside the networks (the official code keeps
`[N, F, C, H, W]` and rearranges around every op; the maths is the same). Audio is `[N, C, L]`.
Module and attribute names reproduce the official key paths (`GroupNorm`, `video_conv_spatial`, `audio_conv`, ...).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

VideoConvType = Literal["2d+1d", "3d"]


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (zero-initialised output layers make a fresh model output 0)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class GroupNorm32(nn.Module):
    """GroupNorm with 32 groups computed in float32, under the official key `<name>.GroupNorm.*`.

    Takes `[N, C, ...]`. The official wrapper also takes video as `[N, F, C, H, W]` and permutes it only when
    `F != C`, so a clip with F == C would normalise the wrong axis (joint-av.md §A3). Departure: video here is always
    channels-first, so statistics are always taken jointly over (C/32, F, H, W), as the official code intends.
    """

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.GroupNorm = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.GroupNorm(upcast(x, self.GroupNorm.weight.dtype)).type(x.dtype)


def upcast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half-precision input -> the (float32 or float64) parameter dtype; norms run at full precision."""
    return x.to(dtype) if x.dtype in (torch.float16, torch.bfloat16) or dtype == torch.float64 else x.float()


class VideoConv(nn.Module):
    """Video convolution on `[N, C, F, H, W]`, official `VideoConv`.

    `"2d+1d"` (paper §3.2 "2D+1D", after Video Diffusion Models): a k x k Conv2d on every frame, **then** a kernel-k
    Conv1d over the frame axis at every pixel (spatial then temporal, as in the released code). `"3d"`: one Conv3d.
    Padding is "same" and stride 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, conv_type: VideoConvType = "2d+1d"):
        super().__init__()
        self.conv_type = conv_type
        pad = kernel_size // 2
        if conv_type == "2d+1d":
            self.video_conv_spatial = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad)
            self.video_conv_temporal = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)
        elif conv_type == "3d":
            self.video_conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=pad)
        else:
            raise ValueError(f"`conv_type` must be '2d+1d' or '3d', got {conv_type!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_type == "3d":
            return self.video_conv(x)
        n, _, f, h, w = x.shape
        x = self.video_conv_spatial(x.transpose(1, 2).reshape(n * f, -1, h, w))  # [(N F), C', H, W]
        c = x.shape[1]
        x = x.reshape(n, f, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, f)  # [(N H W), C', F]
        x = self.video_conv_temporal(x)
        return x.reshape(n, h, w, c, f).permute(0, 3, 4, 1, 2)  # [N, C', F, H, W]


class AudioConv(nn.Module):
    """Conv1d on `[N, C, L]` with "same" padding and optional dilation (official `AudioConv`, key `audio_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.audio_conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_conv(x)


def downsample_video(x: torch.Tensor) -> torch.Tensor:
    """Average-pool H and W by 2; frames are never down-sampled (Table A.1). avg_pool2d also has a CPU fp16 kernel."""
    n, c, f, h, w = x.shape
    return F.avg_pool2d(x.reshape(n, c * f, h, w), kernel_size=2, stride=2).reshape(n, c, f, h // 2, w // 2)


def upsample_video(x: torch.Tensor) -> torch.Tensor:
    """Nearest up-sampling of H and W by 2."""
    return F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")


def downsample_audio(x: torch.Tensor) -> torch.Tensor:
    """Average-pool the waveform axis by 4 (Table A.1, "Audio downsample scale T/4")."""
    return F.avg_pool1d(x, kernel_size=4, stride=4)


def upsample_audio(x: torch.Tensor) -> torch.Tensor:
    """Nearest up-sampling of the waveform axis by 4."""
    return F.interpolate(x, scale_factor=4, mode="nearest")


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal timestep embedding `[N, dim]`, cos half first then sin (guided-diffusion convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
