"""MM-Diffusion's super-resolution stage: the ADM 64->256 up-sampler, applied frame by frame (joint-av.md §A4).

The network is guided-diffusion's `SuperResModel` (Dhariwal & Nichol), as the official MM-Diffusion code builds it
(`mm_diffusion/image_unet.py: ImageSuperResModel`, `script_util.image_sr_create_model`): the low-resolution frame is
bilinearly up-sampled to the output size and concatenated to x_t on the channel axis. Key names match the released
`Landscape_SR.pt` / `AIST++_SR.pt` (and guided-diffusion's `64_256_upsampler.pt`, which initialised them).

Facts taken from the official code: attention uses guided-diffusion's legacy head order (`QKVAttentionLegacy`;
the SR builder never sets `use_new_attention_order`); `sr_attention_resolutions` are used directly as down-sampling
factors (guided-diffusion converts them with `image_size // res`; for "8,16,32" at 256 both give the same set);
the time embedding is 4 x `model_channels` wide. Departure: `sr_class_cond=True` is refused (the official builder
would make an `nn.Embedding(0, ...)` with `NUM_CLASSES = 0`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import SelfAttention, resolve_num_heads
from .layers import timestep_embedding, upcast, zero_module
from .modeling_mm_diffusion import check_flag_names, parse_bool, parse_flag_string, parse_int_list

# Official SR flags and defaults (script_util.image_sr_model_and_diffusion_defaults, filtered to the builder's args).
OFFICIAL_SR_FLAGS: dict[str, Any] = {
    "large_size": 256,
    "small_size": 128,
    "sr_class_cond": False,
    "sr_learn_sigma": True,
    "sr_num_channels": 128,
    "sr_num_res_blocks": 2,
    "sr_num_heads": 4,
    "sr_num_head_channels": -1,
    "sr_num_heads_upsample": -1,
    "sr_attention_resolutions": "16,8",
    "sr_dropout": 0.0,
    "use_checkpoint": False,
    "sr_use_scale_shift_norm": True,
    "sr_resblock_updown": False,
    "use_fp16": False,
}
OFFICIAL_SR_DIFFUSION_FLAGS: dict[str, Any] = {
    "sr_diffusion_steps": 1000,
    "noise_schedule": "linear",
    "sr_timestep_respacing": "",
    "use_kl": False,
    "predict_xstart": False,
    "rescale_timesteps": False,
    "rescale_learned_sigmas": False,
}


class ImgGroupNorm(nn.GroupNorm):
    """GroupNorm(32) computed in float32 (official `ImgGroupNorm`; keys `<name>.weight`, `<name>.bias`)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(upcast(x, self.weight.dtype)).type(x.dtype)


class Downsample(nn.Module):
    """Stride-2 3x3 conv (key `op`) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv (key `conv`)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class ResBlock(nn.Module):
    """guided-diffusion ResBlock: GN-SiLU-conv, FiLM from the time embedding, GN-SiLU-Dropout-zero conv, skip.

    With `up`/`down` the features are re-sampled between the norm/SiLU and the conv (guided-diffusion order).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        *,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            ImgGroupNorm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            ImgGroupNorm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def attention_block(channels: int, num_heads: int, num_head_channels: int) -> SelfAttention:
    """guided-diffusion AttentionBlock with the legacy head order (keys `norm`, `qkv`, `proj_out`)."""
    heads = resolve_num_heads(channels, num_heads, num_head_channels)
    return SelfAttention(channels, heads, ImgGroupNorm(channels), legacy_order=True)


class TimestepSequential(nn.Sequential):
    """Passes the time embedding to the res-blocks (guided-diffusion `TimestepEmbedSequential`)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class MMDiffusionSuperResModel(nn.Module):
    """ADM super-resolution U-Net (official `ImageSuperResModel`), conditioned on a bilinearly up-sampled frame.

    Args (keyword-only; defaults are the released 64->256 configuration, Table A.1 SR column):
        image_size: output size (256).
        in_channels: image channels (3); the network sees 2 x in_channels (x_t and the up-sampled low-res frame).
        model_channels: base channels (192).
        out_channels: 6 with learned sigma (ε and the variance interpolation), else 3.
        num_res_blocks: res-blocks per level (2).
        attention_resolutions: down-sampling factors with self-attention ((8, 16, 32)).
        channel_mult: per level ((1, 1, 2, 2, 4, 4)).
        num_heads / num_head_channels / num_heads_upsample: attention heads (4 / -1 / -1 = num_heads).
        resblock_updown: res-blocks re-sample (True) instead of strided conv / nearest + conv.
    """

    def __init__(
        self,
        *,
        image_size: int = 256,
        in_channels: int = 3,
        model_channels: int = 192,
        out_channels: int = 6,
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (8, 16, 32),
        channel_mult: Sequence[float] = (1, 1, 2, 2, 4, 4),
        dropout: float = 0.0,
        num_heads: int = 4,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.config = dict(
            image_size=image_size, in_channels=in_channels, model_channels=model_channels, out_channels=out_channels,
            num_res_blocks=num_res_blocks, attention_resolutions=tuple(attention_resolutions),
            channel_mult=tuple(channel_mult), dropout=dropout, num_heads=num_heads,
            num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
            use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown, use_checkpoint=use_checkpoint,
        )
        self.diffusion_flags: dict[str, Any] = dict(OFFICIAL_SR_DIFFUSION_FLAGS)
        self.model_channels = model_channels
        self.in_channels = in_channels
        self.use_checkpoint = use_checkpoint
        self.num_levels = len(channel_mult)
        emb_ch = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample

        def res(ch_in: int, ch_out: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_ch, ch_out, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm, **kw)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(2 * in_channels, ch, 3, padding=1))])
        skip_channels, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attention_block(ch, num_heads, num_head_channels))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, use_conv=True)
                self.input_blocks.append(TimestepSequential(down))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(res(ch), attention_block(ch, num_heads, num_head_channels), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attention_block(ch, heads_up, num_head_channels))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, use_conv=True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(
            ImgGroupNorm(ch), nn.SiLU(), zero_module(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @classmethod
    def from_official_flags(cls, **flags: Any) -> MMDiffusionSuperResModel:
        """Build from the official SR flags (`sr_num_channels`, `large_size`, ...; values may be strings); the flags as
        given are kept in `model.official_flags`."""
        check_flag_names(flags, {**OFFICIAL_SR_FLAGS, **OFFICIAL_SR_DIFFUSION_FLAGS})
        f = {**OFFICIAL_SR_FLAGS, **flags}
        if parse_bool(f["sr_class_cond"]):
            raise ValueError("`sr_class_cond=True` is not supported: the official SR model has no classes.")
        large_size = int(f["large_size"])
        mults = {512: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}  # official, by large_size
        if large_size not in mults:
            raise ValueError(f"`large_size` must be one of {sorted(mults)}, got {large_size}.")
        model = cls(
            image_size=large_size,
            model_channels=int(f["sr_num_channels"]),
            out_channels=6 if parse_bool(f["sr_learn_sigma"]) else 3,
            num_res_blocks=int(f["sr_num_res_blocks"]),
            attention_resolutions=parse_int_list(f["sr_attention_resolutions"]),
            channel_mult=mults[large_size],
            dropout=float(f["sr_dropout"]),
            num_heads=int(f["sr_num_heads"]),
            num_head_channels=int(f["sr_num_head_channels"]),
            num_heads_upsample=int(f["sr_num_heads_upsample"]),
            use_scale_shift_norm=parse_bool(f["sr_use_scale_shift_norm"]),
            resblock_updown=parse_bool(f["sr_resblock_updown"]),
            use_checkpoint=parse_bool(f["use_checkpoint"]),
        )
        model.diffusion_flags.update({k: flags[k] for k in OFFICIAL_SR_DIFFUSION_FLAGS if k in flags})
        model.official_flags = dict(flags)  # what `save_pretrained` writes, to build the same network again
        if parse_bool(f["use_fp16"]):
            model.convert_to_fp16()
        return model

    @classmethod
    def from_flag_string(cls, flags: str) -> MMDiffusionSuperResModel:
        """Build from an official command line fragment, e.g. `"--large_size 256 --sr_num_channels 192"`."""
        return cls.from_official_flags(**parse_flag_string(flags))

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load an official `*_SR.pt` state dict (keys unchanged), strictly."""
        self.load_state_dict(dict(state_dict), strict=True)

    def convert_to_fp16(self) -> None:
        """Official mixed precision: convolutions of the torso (not the output head) in float16."""
        for blocks in (self.input_blocks, self.middle_block, self.output_blocks):
            for module in blocks.modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                    module.half()

    def _unet(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))
        h = x.type(self.input_blocks[0][0].weight.dtype)
        ckpt = self.use_checkpoint and self.training and torch.is_grad_enabled()
        skips = []
        for block in self.input_blocks:
            h = checkpoint(block, h, emb, use_reentrant=False) if ckpt else block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            h = checkpoint(block, h, emb, use_reentrant=False) if ckpt else block(h, emb)
        return self.out(h.type(x.dtype))

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor | float, low_res: torch.Tensor
    ) -> torch.Tensor:
        """Predict ε (and the variance term when `out_channels == 6`) for high-resolution frames.

        Args:
            x: `[N, C, H, W]` noisy frames, or `[N, F, C, H, W]` clips (handled frame-wise, as the official
                sampler does with `(b f) c h w`).
            timesteps: `[N]` or a scalar (shared by the frames of a clip).
            low_res: the low-resolution frames, `[N, C, h, w]` or `[N, F, C, h, w]`, in [-1, 1].
        Returns:
            `[N, out_channels, H, W]` or `[N, F, out_channels, H, W]`.
        """
        if x.dim() not in (4, 5) or low_res.dim() != x.dim() or low_res.shape[:-2] != x.shape[:-2]:
            raise ValueError(
                f"`x` and `low_res` must both be [N, C, H, W] or [N, F, C, H, W] with matching leading sizes, got "
                f"{tuple(x.shape)} and {tuple(low_res.shape)}."
            )
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"Expected {self.in_channels} channels, got {x.shape[-3]}.")
        n_down = self.num_levels - 1
        if x.shape[-1] % 2**n_down or x.shape[-2] % 2**n_down:
            raise ValueError(f"Frame size must be divisible by {2**n_down}, got {x.shape[-2]}x{x.shape[-1]}.")
        timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        clip_shape = x.shape[:2] if x.dim() == 5 else None
        if clip_shape is not None:  # frame-wise: '(b f) c h w'
            x, low_res = x.flatten(0, 1), low_res.flatten(0, 1)
            timesteps = timesteps.repeat_interleave(clip_shape[1])
        # ADM SuperResModel: bilinear up-sampling of the condition, concatenated on channels
        upsampled = F.interpolate(low_res.to(x.dtype), x.shape[-2:], mode="bilinear")
        out = self._unet(torch.cat([x, upsampled], dim=1), timesteps)
        return out if clip_shape is None else out.unflatten(0, tuple(clip_shape))
