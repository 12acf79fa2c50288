"""MM-Diffusion attention computed the way the released code computes it: the baseline of `benchmarks.mm_diffusion`.

Written from a reading of the released `mm_diffusion/multimodal_unet.py`
(researchmm/MM-Diffusion@e180b3d); no code is copied. Same ops as the release:

- single-modality attention (`SingleModalAtten` / `SingleModalQKVAttention`): q|k|v chunked first, then heads;
  q and k each multiplied by ch ** -0.25; two einsums; the softmax upcast to float32 and cast back.
- RS-MMA (`CrossAttentionBlock` / `QKVAttention`): video and audio q|k|v concatenated along the token axis; per-token
  index tables `va_index` `[F*h*w, S*L/F]` (pointing into the concatenated tokens, hence `+ F*h*w`) and `av_index`
  `[L, S*h*w]`, built once per block and cached; on every call the shift R is added to the whole cached table and
  reduced modulo the length; then a Python loop over the F frames: for frame i, `index_select` of k and v with the
  table row of the frame's first token, einsum, softmax in the working dtype (the release does not upcast here),
  einsum, for video queries and for audio queries; the per-frame results are concatenated.

The tables have one row per query token, but the released `QKVAttention` reads only the row of each frame's first
token and gathers `[N, C, S*L/F]` keys once per frame, not once per token; so does this module (a per-token gather
would make the baseline artificially slow and memory-hungry).

`official_attention(model)` swaps these in for the forward of every `SelfAttention` and `RSMMABlock` of one model
instance (same weights, same drawn shift R) and restores our SDPA forward on exit.

Departures from the release, none of which changes the cost of the attention itself: the index tables are cached per
block and clip size (the release caches one table per block and goes stale if the size changes); the audio length
must be divisible by the frame count (as in our model); the release's always-on gradient checkpointing of the RS-MMA
block is left out (at inference it only wraps the call in `torch.no_grad`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pipelines.mm_diffusion.attention import RSMMABlock, SelfAttention

# block -> {(frames, tokens_per_frame, audio_len, device): (va_index, av_index)}; the release's `self.va_index` cache
_INDEX_TABLES: weakref.WeakKeyDictionary[RSMMABlock, dict] = weakref.WeakKeyDictionary()


def qkv_attention_einsum(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Released `SingleModalQKVAttention`: `[N, 3*H*C, T]` -> `[N, H*C, T]`."""
    n, width, length = qkv.shape
    ch = width // (3 * num_heads)
    q, k, v = qkv.chunk(3, dim=1)
    scale = ch ** -0.25  # on q and k each: "more stable with f16 than dividing afterwards"
    weight = torch.einsum(
        "bct,bcs->bts", (q * scale).reshape(n * num_heads, ch, length), (k * scale).reshape(n * num_heads, ch, length)
    )
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    out = torch.einsum("bts,bcs->bct", weight, v.reshape(n * num_heads, ch, length))
    return out.reshape(n, -1, length)


def official_self_attention_forward(block: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Released `SingleModalAtten._forward` with the weights of our `SelfAttention` block."""
    b, c, *spatial = x.shape
    x = x.reshape(b, c, -1)
    h = qkv_attention_einsum(block.qkv(block.norm(x)), block.num_heads)
    return (x + block.proj_out(h)).reshape(b, c, *spatial)


def base_index_tables(
    num_frames: int, tokens_per_frame: int, audio_len: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's unshifted per-token tables (R = 0, before the modulo).

    `va [F*h*w, S*L/F]`: row of video token t (frame i) = i*L/F + 0 .. S*L/F - 1 (audio sample offsets);
    `av [L, S*h*w]`: row of audio sample j (segment i) = i*h*w + 0 .. S*h*w - 1 (video token offsets).
    """
    per_frame = audio_len // num_frames
    frame_of_token = torch.arange(num_frames).repeat_interleave(tokens_per_frame)[:, None]
    va = frame_of_token * per_frame + torch.arange(window * per_frame)[None, :]
    segment_of_sample = torch.arange(num_frames).repeat_interleave(per_frame)[:, None]
    av = segment_of_sample * tokens_per_frame + torch.arange(window * tokens_per_frame)[None, :]
    return va, av


def shifted_index_tables(
    block: RSMMABlock, num_frames: int, tokens_per_frame: int, audio_len: int, shift: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per call, as the release: the cached tables + R frames, modulo the length; video->audio rows point past the
    F*h*w video tokens of the concatenated q|k|v."""
    video_len = num_frames * tokens_per_frame
    per_frame = audio_len // num_frames
    cache = _INDEX_TABLES.setdefault(block, {})
    key = (num_frames, tokens_per_frame, audio_len, device)
    if key not in cache:
        cache[key] = tuple(t.to(device) for t in base_index_tables(num_frames, tokens_per_frame, audio_len,
                                                                     block.window))
    va, av = cache[key]
    return (va + per_frame * shift) % audio_len + video_len, (av + tokens_per_frame * shift) % video_len


def windowed_attention_loop(
    qkv: torch.Tensor,
    va_index: torch.Tensor,
    av_index: torch.Tensor,
    num_heads: int,
    tokens_per_frame: int,
    samples_per_frame: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Released RS-MMA `QKVAttention`: `qkv [N, 3*H*C, F*h*w + L]` -> `(video [N, H*C, F*h*w], audio [N, H*C, L])`."""
    n, width, _ = qkv.shape
    video_len, audio_len = va_index.shape[0], av_index.shape[0]
    ch = width // (3 * num_heads)
    q, k, v = qkv.chunk(3, dim=1)
    scale = ch ** -0.25
    video_q, audio_q = q[:, :, :video_len], q[:, :, video_len:]

    def attend(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        frame_k, frame_v = torch.index_select(k, -1, keys), torch.index_select(v, -1, keys)  # [N, H*C, S*...]
        weight = torch.einsum("bct,bcs->bts", (queries * scale).reshape(n * num_heads, ch, -1),
                              (frame_k * scale).reshape(n * num_heads, ch, -1))
        weight = torch.softmax(weight, dim=-1)  # working dtype: the release does not upcast in RS-MMA
        return torch.einsum("bts,bcs->bct", weight, frame_v.reshape(n * num_heads, ch, -1))

    video_out, audio_out = [], []
    for i in range(video_len // tokens_per_frame):
        tokens = slice(i * tokens_per_frame, (i + 1) * tokens_per_frame)
        video_out.append(attend(video_q[:, :, tokens], va_index[i * tokens_per_frame]))
        samples = slice(i * samples_per_frame, (i + 1) * samples_per_frame)
        audio_out.append(attend(audio_q[:, :, samples], av_index[i * samples_per_frame]))
    return (torch.cat(video_out, dim=2).reshape(n, -1, video_len),
            torch.cat(audio_out, dim=2).reshape(n, -1, audio_len))


def official_rs_mma_forward(
    block: RSMMABlock,
    video: torch.Tensor,
    audio: torch.Tensor,
    shift: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Released `CrossAttentionBlock._forward` with the weights (and the drawn shift R) of our `RSMMABlock`."""
    n, c, f, h, w = video.shape
    audio_len = audio.shape[-1]
    if audio_len % f:
        raise ValueError(f"RS-MMA needs the audio length ({audio_len}) to be divisible by the frames ({f}).")
    if shift is None:
        shift = block.draw_shift(f, generator)
    va_index, av_index = shifted_index_tables(block, f, h * w, audio_len, shift, video.device)
    video_qkv = block.v_qkv(block.v_norm(video.reshape(n, c, f * h * w)))
    audio_qkv = block.a_qkv(block.a_norm(audio))
    qkv = torch.cat([video_qkv, audio_qkv], dim=2)
    video_h, audio_h = windowed_attention_loop(qkv, va_index, av_index, block.num_heads, h * w, audio_len // f)
    video_h = block.video_proj_out(video_h.reshape(n, c, f, h, w))
    return video + video_h, audio + block.audio_proj_out(audio_h)


@contextmanager
def official_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` with the release's attention: every `SelfAttention` / `RSMMABlock` forward is swapped, then
    restored (also on error). Only MM-Diffusion's q|k|v order is supported (not the ADM SR model's legacy order)."""
    blocks = [m for m in model.modules() if isinstance(m, (SelfAttention, RSMMABlock))]
    if any(isinstance(m, SelfAttention) and m.legacy_order for m in blocks):
        raise ValueError("The official-style path covers MM-Diffusion's attention (q|k|v first, then heads); this "
                         "model uses the ADM legacy order (the super-resolution model).")
    try:
        for block in blocks:
            forward = official_rs_mma_forward if isinstance(block, RSMMABlock) else official_self_attention_forward
            block.forward = functools.partial(forward, block)
        yield model
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


__all__ = ["base_index_tables", "official_attention", "qkv_attention_einsum", "windowed_attention_loop"]
