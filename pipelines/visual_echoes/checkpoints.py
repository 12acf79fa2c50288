"""Load the paper's public tokenizer layouts into diffusers `VQModel`s, key by key.

Both tokenizers of the paper come from the taming-transformers code base and share its layout:

- the image VQGAN, taming-transformers `vqgan_imagenet_f16_1024` (ch 128, ch_mult 1-1-2-2-4, 2 res blocks,
  attention at 16 × 16, z 256, codebook 1024 × 256; a Lightning `.ckpt` holding `state_dict`);
- SpecVQGAN's spectrogram codebook (the same shape over one input channel, attention at the lowest resolution).

taming names -> diffusers names: `encoder.down.{i}.block.{j}` -> `encoder.down_blocks.{i}.resnets.{j}` (with
`nin_shortcut` -> `conv_shortcut`), `...attn.{j}.{norm,q,k,v,proj_out}` -> `...attentions.{j}.{group_norm, to_q,
to_k, to_v, to_out.0}` (1×1 convolutions become linear layers), `downsample.conv` -> `downsamplers.0.conv`,
`mid.block_1 / attn_1 / block_2` -> `mid_block.resnets.0 / attentions.0 / resnets.1`, `norm_out` -> `conv_norm_out`;
the decoder's `up.{i}` (numbered from the highest resolution) -> `up_blocks.{levels − 1 − i}`, `upsample.conv` ->
`upsamplers.0.conv`; `quant_conv`, `post_quant_conv` and `quantize.embedding.weight` keep their names. The training
losses' weights (`loss.*`: discriminator, LPIPS) are not part of the tokenizer and are skipped. The configuration is
read from the tensor shapes, so any taming-layout VQGAN loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import VQModel

IGNORED_PREFIXES = ("loss.",)
STRIPPED_PREFIXES = ("first_stage_model.",)  # a taming transformer checkpoint holds its VQGAN under this name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a taming / SpecVQGAN checkpoint (`.ckpt` / `.pt` with `state_dict`, or safetensors), read
    safely (`weights_only=True`), without the training losses' weights."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a wrong, truncated or unsafe file means the same to the user
        raise ValueError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    out = {}
    for key, value in state.items():
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        if not key.startswith(IGNORED_PREFIXES):
            out[key] = value
    return out


def taming_config(state: dict[str, torch.Tensor]) -> dict:
    """`VQModel` arguments read from a taming-layout state dict's shapes."""
    try:
        channels_in = state["encoder.conv_in.weight"].shape[1]
        levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
        blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)))
        widths = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels))
        attention = [any(k.startswith(f"encoder.down.{i}.attn.") for k in state) for i in range(levels)]
        z_channels = state["encoder.conv_out.weight"].shape[0]
        codebook, code_dim = state["quantize.embedding.weight"].shape
    except (KeyError, ValueError) as error:
        raise ValueError(f"not a taming-transformers VQGAN layout (missing {error})") from None
    down = tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention)
    up = tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attention))
    return dict(in_channels=channels_in, out_channels=state["decoder.conv_out.weight"].shape[0], down_block_types=down,
                up_block_types=up, block_out_channels=widths, layers_per_block=blocks, latent_channels=z_channels,
                num_vq_embeddings=codebook, vq_embed_dim=code_dim, norm_num_groups=32)


def taming_to_diffusers_key(key: str, levels: int) -> str:
    """One taming key -> its `VQModel` key."""
    name = key
    name = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets.", name)
    name = re.sub(r"^encoder\.down\.(\d+)\.attn\.", r"encoder.down_blocks.\1.attentions.", name)
    name = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", name)

    def up(match: re.Match) -> str:
        return f"decoder.up_blocks.{levels - 1 - int(match.group(1))}.{match.group(2)}"

    name = re.sub(r"^decoder\.up\.(\d+)\.(block|attn|upsample)\.", lambda m: up(m) + ".", name)
    name = re.sub(r"\.block\.", ".resnets.", name) if name.startswith("decoder.up_blocks") else name
    name = re.sub(r"\.attn\.", ".attentions.", name) if name.startswith("decoder.up_blocks") else name
    name = re.sub(r"\.upsample\.", ".upsamplers.0.", name) if name.startswith("decoder.up_blocks") else name
    name = re.sub(r"^(encoder|decoder)\.mid\.block_1\.", r"\1.mid_block.resnets.0.", name)
    name = re.sub(r"^(encoder|decoder)\.mid\.block_2\.", r"\1.mid_block.resnets.1.", name)
    name = re.sub(r"^(encoder|decoder)\.mid\.attn_1\.", r"\1.mid_block.attentions.0.", name)
    name = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", name)
    # Attention projections: taming names, now under `attentions`
    if ".attentions." in name:
        for old, new in ((".norm.", ".group_norm."), (".q.", ".to_q."), (".k.", ".to_k."), (".v.", ".to_v."),
                         (".proj_out.", ".to_out.0.")):
            name = name.replace(old, new)
    return name.replace(".nin_shortcut.", ".conv_shortcut.")


def convert_taming_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(VQModel config, its state dict) from a taming-layout state dict."""
    config = taming_config(state)
    levels = len(config["block_out_channels"])
    converted = {}
    for key, value in state.items():
        name = taming_to_diffusers_key(key, levels)
        if ".attentions." in name and value.dim() == 4:  # 1×1 conv -> linear
            value = value[:, :, 0, 0]
        converted[name] = value
    return config, converted


def load_taming_vqgan(path: str | Path, torch_dtype: torch.dtype = torch.float32) -> VQModel:
    """A taming-transformers VQGAN (`vqgan_imagenet_f16_1024`'s `last.ckpt`) or a SpecVQGAN codebook checkpoint as a
    `VQModel` (strict: every tokenizer tensor must map and every `VQModel` tensor must be filled)."""
    config, converted = convert_taming_state_dict(read_state_dict(path))
    model = VQModel(**config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(k for k in set(expected) & set(converted) if expected[k].shape != converted[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit the taming layout: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shapes {wrong[:5]}")
    model.load_state_dict(converted, strict=True)
    return (model if torch_dtype == torch.float32 else model.to(torch_dtype)).eval()


__all__ = ["convert_taming_state_dict", "load_taming_vqgan", "read_state_dict", "taming_config",
           "taming_to_diffusers_key"]
