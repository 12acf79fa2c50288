"""The taming-transformers / SpecVQGAN tokenizer layouts load into `VQModel` key by key (tiny random checkpoints in
those layouts, written here; no network)."""

from __future__ import annotations

import pytest
import torch

from pipelines.visual_echoes.checkpoints import load_taming_vqgan


def taming_state(in_channels: int, ch: int = 32, ch_mult=(1, 2), num_res_blocks: int = 1, attention_levels=(1,),
                 z: int = 4, embed_dim: int = 4, n_embed: int = 16) -> dict[str, torch.Tensor]:
    """A random state dict named as taming-transformers' `VQModel` (Encoder/Decoder of diffusionmodules/model.py,
    VectorQuantizer, the Lightning `loss.*` weights) names it."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def conv(name, out, inp, k):
        state[f"{name}.weight"] = torch.randn(out, inp, k, k, generator=g) * 0.1
        state[f"{name}.bias"] = torch.randn(out, generator=g) * 0.1

    def norm(name, c):
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)

    def resblock(name, inp, out):
        norm(f"{name}.norm1", inp), conv(f"{name}.conv1", out, inp, 3), norm(f"{name}.norm2", out)
        conv(f"{name}.conv2", out, out, 3)
        if inp != out:
            conv(f"{name}.nin_shortcut", out, inp, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    conv("encoder.conv_in", ch, in_channels, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        for j in range(num_res_blocks):
            resblock(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
            if i in attention_levels:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != len(ch_mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    for part in ("encoder", "decoder"):
        if part == "decoder":
            conv("decoder.conv_in", block_in, z, 3)
        resblock(f"{part}.mid.block_1", block_in, block_in), attn(f"{part}.mid.attn_1", block_in)
        resblock(f"{part}.mid.block_2", block_in, block_in)
        if part == "encoder":
            norm("encoder.norm_out", block_in), conv("encoder.conv_out", z, block_in, 3)
    conv("quant_conv", embed_dim, z, 1), conv("post_quant_conv", z, embed_dim, 1)
    state["quantize.embedding.weight"] = torch.randn(n_embed, embed_dim, generator=g)
    for i in reversed(range(len(ch_mult))):
        for j in range(num_res_blocks + 1):
            resblock(f"decoder.up.{i}.block.{j}", block_in, ch * ch_mult[i])
            block_in = ch * ch_mult[i]
            if i in attention_levels:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", in_channels, block_in, 3)
    state["loss.discriminator.main.0.weight"] = torch.randn(8, in_channels, 4, 4, generator=g)  # not the tokenizer
    return state


@pytest.mark.parametrize(("in_channels", "name"), [(3, "taming vqgan_imagenet"), (1, "SpecVQGAN")])
def test_a_taming_layout_checkpoint_maps_exactly(tmp_path, in_channels, name):
    state = taming_state(in_channels)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "global_step": 7}, path)
    model = load_taming_vqgan(path)
    loaded = model.state_dict()
    tokenizer_keys = [k for k in state if not k.startswith("loss.")]
    assert len(loaded) == len(tokenizer_keys)  # every tensor mapped, one to one
    pairs = {"encoder.down.1.attn.0.q.weight": ("encoder.down_blocks.1.attentions.0.to_q.weight", True),
             "encoder.down.1.block.0.nin_shortcut.weight": ("encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                                                            False),
             "encoder.down.0.downsample.conv.bias": ("encoder.down_blocks.0.downsamplers.0.conv.bias", False),
             "decoder.up.1.block.1.conv2.weight": ("decoder.up_blocks.0.resnets.1.conv2.weight", False),
             "decoder.up.1.attn.1.proj_out.weight": ("decoder.up_blocks.0.attentions.1.to_out.0.weight", True),
             "decoder.up.0.block.0.nin_shortcut.weight": ("decoder.up_blocks.1.resnets.0.conv_shortcut.weight", False),
             "decoder.up.1.upsample.conv.weight": ("decoder.up_blocks.0.upsamplers.0.conv.weight", False),
             "decoder.mid.attn_1.norm.weight": ("decoder.mid_block.attentions.0.group_norm.weight", False),
             "encoder.mid.block_2.conv1.weight": ("encoder.mid_block.resnets.1.conv1.weight", False),
             "encoder.norm_out.bias": ("encoder.conv_norm_out.bias", False),
             "quantize.embedding.weight": ("quantize.embedding.weight", False)}
    for taming, (ours, squeeze) in pairs.items():
        expected = state[taming][:, :, 0, 0] if squeeze else state[taming]
        assert torch.equal(loaded[ours], expected), taming
    out = model(torch.rand(1, in_channels, 16, 16) * 2 - 1).sample
    assert out.shape == (1, in_channels, 16, 16) and torch.isfinite(out).all()


def test_a_wrong_or_damaged_file_gets_a_plain_message(tmp_path):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_taming_vqgan(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="taming"):
        load_taming_vqgan(other)
