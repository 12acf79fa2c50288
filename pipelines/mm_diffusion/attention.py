"""Attention for MM-Diffusion: single-modality self-attention and RS-MMA (random-shift multi-modal attention).

Everything runs through `torch.nn.functional.scaled_dot_product_attention`. The official code scales q and k by
`ch ** -0.25` each and runs einsum + softmax; SDPA's default scale `1 / sqrt(ch)` is the same maths.

Key names follow the official `mm_diffusion/multimodal_unet.py` (`SingleModalAtten`, `CrossAttentionBlock`), so
official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AudioConv, GroupNorm32, VideoConv, zero_module


def split_heads(qkv: torch.Tensor, num_heads: int, legacy_order: bool = False) -> tuple[torch.Tensor, ...]:
    """Split a `[B, 3*C, T]` qkv tensor into q, k, v of shape `[B, heads, T, C/heads]`.

    `legacy_order=False` is the official MM-Diffusion order (chunk q|k|v first, then heads: `QKVAttention`);
    `legacy_order=True` is guided-diffusion's `QKVAttentionLegacy` (heads first, then q|k|v), used by the ADM
    super-resolution model.
    """
    b, width, t = qkv.shape
    ch = width // (3 * num_heads)
    if legacy_order:
        q, k, v = qkv.reshape(b, num_heads, 3 * ch, t).split(ch, dim=2)
    else:
        q, k, v = (x.reshape(b, num_heads, ch, t) for x in qkv.chunk(3, dim=1))
    # contiguous: SDPA's fused kernels need a unit stride on the last axis and otherwise fall back to the math path
    # (benchmarks/mm_diffusion.py: 16x1024 tokens, 64 channels on a CPU core: 0.65 s strided, 0.11 s contiguous)
    return tuple(x.transpose(-1, -2).contiguous() for x in (q, k, v))


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """`[B, heads, T, ch]` -> `[B, heads*ch, T]` (the inverse of `split_heads` for one tensor)."""
    b, h, t, ch = x.shape
    return x.transpose(-1, -2).reshape(b, h * ch, t)


def resolve_num_heads(channels: int, num_heads: int, num_head_channels: int) -> int:
    """Official rule: `num_head_channels == -1` means use `num_heads`, else `channels // num_head_channels`."""
    if num_head_channels == -1:
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"`channels` ({channels}) must be divisible by `num_head_channels` ({num_head_channels}).")
    return channels // num_head_channels


class SelfAttention(nn.Module):
    """Multi-head self-attention over the last axis of `[B, C, T]`, residual, zero-initialised output.

    Official `SingleModalAtten` (MM-Diffusion, `legacy_order=False`) and guided-diffusion `AttentionBlock`
    (`legacy_order=True`). The norm is `GroupNorm32` (key `norm.GroupNorm.*`) for MM-Diffusion or a plain
    `nn.GroupNorm` (key `norm.*`) for ADM; pass it in.
    """

    def __init__(self, channels: int, num_heads: int, norm: nn.Module, legacy_order: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.legacy_order = legacy_order
        self.norm = norm
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        q, k, v = split_heads(self.qkv(self.norm(x)), self.num_heads, self.legacy_order)
        h = merge_heads(F.scaled_dot_product_attention(q, k, v))
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


# ---------------------------------------------------------------------------------------------------------------
# RS-MMA (paper §3.3, Fig. 3c; released CrossAttentionBlock / QKVAttention, joint-av.md §A3.1)
# ---------------------------------------------------------------------------------------------------------------


def rs_mma_windows(num_frames: int, window: int, shift: int) -> torch.Tensor:
    """Frame (or audio-segment) indices each frame/segment attends to: `[F, S]`, row i = (i + R + s) mod F.

    Paper Step II: f_s = (i + R) % F, f_e = (i + R + S) % F, end exclusive, wrap-around. The released code uses the
    same +R offset in both directions (video frame i -> audio segments, audio segment j -> video frames).
    """
    if not 1 <= window <= num_frames:
        raise ValueError(f"RS-MMA window must be between 1 and the number of frames ({num_frames}), got {window}.")
    if not 0 <= shift <= num_frames - window:
        raise ValueError(f"RS-MMA shift must be in [0, F - S] = [0, {num_frames - window}], got {shift}.")
    return (torch.arange(num_frames)[:, None] + shift + torch.arange(window)[None, :]) % num_frames


def rs_mma_key_indices(
    num_frames: int, tokens_per_frame: int, audio_len: int, window: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key indices of RS-MMA, one row per video frame / audio segment.

    Returns `(video_keys [F, S*L/F], audio_keys [F, S*h*w])`: row i of `video_keys` holds the audio sample indices
    that every video token of frame i attends to; row j of `audio_keys` holds the video token indices (in
    `(f h w)` order) that every audio sample of segment j attends to. These equal the official `va_index` (minus
    its `+ video_len` offset) and `av_index`, taken at the first token of each frame/segment.
    """
    if audio_len % num_frames:
        raise ValueError(f"RS-MMA needs the audio length ({audio_len}) to be divisible by the frames ({num_frames}).")
    per_frame = audio_len // num_frames
    frames = rs_mma_windows(num_frames, window, shift)  # [F, S]
    video_keys = (frames[:, :, None] * per_frame + torch.arange(per_frame)).reshape(num_frames, -1)
    audio_keys = (frames[:, :, None] * tokens_per_frame + torch.arange(tokens_per_frame)).reshape(num_frames, -1)
    return video_keys, audio_keys


def rs_mma_token_indices(
    num_frames: int, tokens_per_frame: int, audio_len: int, window: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official per-token index tables: `[F*h*w, S*L/F]` (video token -> audio keys) and `[L, S*h*w]`."""
    video_keys, audio_keys = rs_mma_key_indices(num_frames, tokens_per_frame, audio_len, window, shift)
    per_frame = audio_len // num_frames
    return video_keys.repeat_interleave(tokens_per_frame, 0), audio_keys.repeat_interleave(per_frame, 0)


def rs_mma_attention(
    video_qkv: torch.Tensor,
    audio_qkv: torch.Tensor,
    num_frames: int,
    num_heads: int,
    window: int,
    shift: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional windowed cross-attention between video and audio tokens (the RS-MMA core).

    Args:
        video_qkv: `[N, 3*C, F*h*w]` video q|k|v, tokens in `(f h w)` order.
        audio_qkv: `[N, 3*C, L]` audio q|k|v.
    Returns:
        `(video_out [N, C, F*h*w], audio_out [N, C, L])`: video tokens of frame i attend to the audio samples of
        segments (i+R .. i+R+S-1) mod F, audio samples of segment j attend to all h*w tokens of frames
        (j+R .. j+R+S-1) mod F (paper Eq. 8-9, both directions with the same S and R as in the released code).
    """
    n, _, video_len = video_qkv.shape
    audio_len = audio_qkv.shape[-1]
    hw = video_len // num_frames
    per_frame = audio_len // num_frames
    video_keys, audio_keys = rs_mma_key_indices(num_frames, hw, audio_len, window, shift)
    video_keys, audio_keys = video_keys.to(video_qkv.device), audio_keys.to(video_qkv.device)

    qv, kv, vv = split_heads(video_qkv, num_heads)  # [N, heads, F*hw, ch]
    qa, ka, va = split_heads(audio_qkv, num_heads)  # [N, heads, L, ch]
    ch = qv.shape[-1]

    # video queries, grouped by frame: [N, heads*F, hw, ch]; keys: the windowed audio samples of each frame
    qv_frames = qv.reshape(n, num_heads * num_frames, hw, ch)
    ka_win = ka[:, :, video_keys].reshape(n, num_heads * num_frames, -1, ch)
    va_win = va[:, :, video_keys].reshape(n, num_heads * num_frames, -1, ch)
    video_out = F.scaled_dot_product_attention(qv_frames, ka_win, va_win)

    # audio queries, grouped by segment: [N, heads*F, L/F, ch]; keys: all tokens of the windowed frames
    qa_segments = qa.reshape(n, num_heads * num_frames, per_frame, ch)
    kv_win = kv[:, :, audio_keys].reshape(n, num_heads * num_frames, -1, ch)
    vv_win = vv[:, :, audio_keys].reshape(n, num_heads * num_frames, -1, ch)
    audio_out = F.scaled_dot_product_attention(qa_segments, kv_win, vv_win)

    video_out = merge_heads(video_out.reshape(n, num_heads, video_len, ch))
    audio_out = merge_heads(audio_out.reshape(n, num_heads, audio_len, ch))
    return video_out, audio_out


class RSMMABlock(nn.Module):
    """RS-MMA block (official `CrossAttentionBlock`): norms, QKV, windowed bidirectional attention, residual.

    Separate GroupNorm, 1x1 QKV and zero-initialised output projection per modality (keys `v_norm`, `a_norm`,
    `v_qkv`, `a_qkv`, `video_proj_out.video_conv`, `audio_proj_out.audio_conv`). With `random_shift=True` a new
    shift R ~ U{0..F-S} is drawn on every call, in training and sampling alike, as the released code does.

    Departures from the official code: R is drawn from `torch.randint` with an optional `torch.Generator` (the
    official code uses Python's global `random.randint`); the audio length must be divisible by the frame count
    (the official code silently truncates the segment length and pads its index table); the index tables are
    rebuilt per call instead of being cached on the module on first use (the official cache goes stale if the
    input size changes).
    """

    def __init__(self, channels: int, num_heads: int, window: int, random_shift: bool):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.random_shift = random_shift
        self.v_norm = GroupNorm32(channels)
        self.a_norm = GroupNorm32(channels)
        self.v_qkv = nn.Conv1d(channels, channels * 3, 1)
        self.a_qkv = nn.Conv1d(channels, channels * 3, 1)
        self.video_proj_out = zero_module(VideoConv(channels, channels, 1, conv_type="3d"))
        self.audio_proj_out = zero_module(AudioConv(channels, channels, 1))

    def draw_shift(self, num_frames: int, generator: torch.Generator | None = None) -> int:
        """R ~ U{0, ..., F - S} when random shift is on (paper Step II), else 0."""
        if not self.random_shift:
            return 0
        if self.window > num_frames:
            raise ValueError(f"RS-MMA window ({self.window}) is larger than the number of frames ({num_frames}).")
        return int(torch.randint(0, num_frames - self.window + 1, (1,), generator=generator).item())

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        shift: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video `[N, C, F, H, W]`, audio `[N, C, L]`; `shift` overrides the drawn R (tests, ablations)."""
        n, c, f, h, w = video.shape
        if shift is None:
            shift = self.draw_shift(f, generator)
        video_tokens = video.reshape(n, c, f * h * w)  # 'b c (f h w)'
        video_qkv = self.v_qkv(self.v_norm(video_tokens))
        audio_qkv = self.a_qkv(self.a_norm(audio))
        video_h, audio_h = rs_mma_attention(video_qkv, audio_qkv, f, self.num_heads, self.window, shift)
        video_h = self.video_proj_out(video_h.reshape(n, c, f, h, w))
        return video + video_h, audio + self.audio_proj_out(audio_h)
