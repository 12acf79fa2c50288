"""The MM-Diffusion benchmark's baseline: the official-style attention path computes what ours computes.

- the release's index tables reproduce the released code's test vector and are built once per block;
- the per-frame windowed loop equals our batched RS-MMA, the einsum QKVAttention equals our SDPA self-attention,
  whose heads are laid out for SDPA's fused kernels;
- swapped into one model instance, the official-style path gives the same U-Net outputs (≤ 1e-4, float32, same
  seed and shifts) and our forward is restored afterwards, also after an error;
- the CPU memory probe sees a known allocation; `--official-size` without CUDA exits with a clear message.
Nothing here is timed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import mm_diffusion as bench
from benchmarks.mm_diffusion_official_attention import (
    _INDEX_TABLES,
    official_attention,
    official_rs_mma_forward,
    official_self_attention_forward,
    qkv_attention_einsum,
    shifted_index_tables,
    windowed_attention_loop,
)
from pipelines.mm_diffusion import MMDiffusionUNet, RSMMABlock, rs_mma_attention
from pipelines.mm_diffusion.attention import SelfAttention, split_heads
from pipelines.mm_diffusion.layers import GroupNorm32


def tiny_model(seed: int = 0) -> MMDiffusionUNet:
    """Every attention kind of the released layout: RS-MMA windows 1 and 4 with random shift, the middle full-window
    RS-MMA, spatial + temporal video attention, audio self-attention; random weights."""
    model = MMDiffusionUNet(video_size=(8, 3, 16, 16), audio_size=(1, 512), model_channels=32, num_res_blocks=1,
                            channel_mult=(1, 2, 2), cross_attention_resolutions=(2, 4), cross_attention_windows=(1, 4),
                            video_attention_resolutions=(2, 4), audio_attention_resolutions=(4,), num_head_channels=16,
                            middle_cross_attention=True)
    return bench.randomize_weights(model, seed).eval()


def test_index_tables_match_the_official_test_vector():
    block = RSMMABlock(32, 2, window=2, random_shift=True)
    va, av = shifted_index_tables(block, 4, 1, 8, 1, torch.device("cpu"))  # F=4, h=w=1, L=8, S=2, R=1
    assert (va - 4).tolist() == [[2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 0, 1], [0, 1, 2, 3]]  # + F*h*w: past the video
    assert av.tolist() == [[1, 2], [1, 2], [2, 3], [2, 3], [3, 0], [3, 0], [0, 1], [0, 1]]
    shifted_index_tables(block, 4, 1, 8, 0, torch.device("cpu"))
    assert len(_INDEX_TABLES[block]) == 1  # built once, shifted per call, as the release caches `va_index`


@pytest.mark.parametrize(("window", "shift"), [(1, 0), (1, 7), (3, 2), (8, 0)])
def test_windowed_loop_equals_our_batched_rs_mma(window, shift):
    g = torch.Generator().manual_seed(window + 10 * shift)
    f, hw, length, heads = 8, 6, 64, 2
    video_qkv, audio_qkv = torch.randn(2, 48, f * hw, generator=g), torch.randn(2, 48, length, generator=g)
    va, av = shifted_index_tables(RSMMABlock(32, heads, window, True), f, hw, length, shift, torch.device("cpu"))
    theirs = windowed_attention_loop(torch.cat([video_qkv, audio_qkv], 2), va, av, heads, hw, length // f)
    ours = rs_mma_attention(video_qkv, audio_qkv, f, heads, window, shift)
    torch.testing.assert_close(theirs[0], ours[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs[1], ours[1], atol=1e-5, rtol=1e-5)


def test_einsum_attention_equals_our_self_attention_and_plain_softmax():
    block = bench.randomize_weights(SelfAttention(32, 4, GroupNorm32(32)), seed=1)
    x = torch.randn(3, 32, 5, 7)
    torch.testing.assert_close(official_self_attention_forward(block, x), block(x), atol=1e-5, rtol=1e-5)
    qkv = torch.randn(2, 3 * 8, 10)  # one head: softmax(q^T k / sqrt(8)) v
    q, k, v = qkv.chunk(3, dim=1)
    expected = v @ torch.softmax(q.transpose(1, 2) @ k / 8**0.5, dim=-1).transpose(1, 2)
    torch.testing.assert_close(qkv_attention_einsum(qkv, 1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("legacy_order", [False, True])
def test_our_heads_have_a_unit_last_stride(legacy_order):
    """What the benchmark found: SDPA's fused kernels need it; strided q/k/v silently run its slower math path."""
    assert all(x.stride(-1) == 1 for x in split_heads(torch.randn(2, 3 * 32, 50), 4, legacy_order))


def test_official_path_gives_the_same_unet_outputs_and_is_restored():
    model = tiny_model()
    inputs = bench.make_inputs(model, 2, 0, "cpu")
    difference = bench.step_difference(model, inputs, seed=3)
    assert difference["max_abs_difference"] <= bench.TOLERANCE_FP32
    assert difference["max_abs_output"] > 0.1  # the outputs (and the attention in them) are not trivially zero
    bench.check_equal_outputs(difference, torch.float32)

    blocks = [m for m in model.modules() if isinstance(m, (SelfAttention, RSMMABlock))]
    assert {type(b) for b in blocks} == {SelfAttention, RSMMABlock}
    with official_attention(model):
        assert all(b.forward.func in (official_self_attention_forward, official_rs_mma_forward) for b in blocks)
    assert not any("forward" in b.__dict__ for b in blocks)
    with pytest.raises(RuntimeError, match="boom"), official_attention(model):
        raise RuntimeError("boom")
    assert not any("forward" in b.__dict__ for b in blocks)


def test_a_disagreement_stops_the_benchmark():
    with pytest.raises(AssertionError, match="different U-Net outputs"):
        bench.check_equal_outputs({"max_abs_difference": 1e-3, "max_abs_output": 1.0}, torch.float32)
    bench.check_equal_outputs({"max_abs_difference": 1e-2, "max_abs_output": 1.0}, torch.float16)  # reported only


def test_official_path_refuses_the_legacy_head_order():
    with pytest.raises(ValueError, match="legacy order"), \
            official_attention(SelfAttention(32, 4, torch.nn.GroupNorm(8, 32), legacy_order=True)):
        pass
    with pytest.raises(ValueError, match="`path`"):
        bench.on_path("reference", tiny_model(), lambda: None)


def test_peak_extra_rss_sees_a_known_allocation():
    size = 64 * 2**20
    extra = bench.peak_extra_rss(lambda: np.ones(size // 8))  # touched, then freed
    assert 0.99 * size <= extra < size + 16 * 2**20  # RSS is counted in pages, give or take a few


def test_official_size_without_cuda_exits_with_a_message(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--official-size"])
    assert "CUDA" in str(exit_info.value.code)  # a message: exit status 1
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "huge"])
