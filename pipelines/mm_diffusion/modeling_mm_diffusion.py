"""MM-Diffusion's coupled U-Net (Ruan et al., CVPR 2023, paper 000).

Two streams with separate weights, a video U-Net (2D+1D convolutions, spatial then temporal attention) and an audio
U-Net (dilated 1D convolutions), share one timestep embedding and exchange information through RS-MMA blocks.
The module tree and key names match the official `MultimodalUNet` (researchmm/MM-Diffusion,
`mm_diffusion/multimodal_unet.py`), so the released `Landscape.pt` / `AIST++.pt` state dicts load unchanged with
`load_official_state_dict`; `MMDiffusionUNet.from_official_flags` takes the official command-line flags.

Departures from the official code (all without effect on the released checkpoints' outputs):
- video is held `[N, C, F, H, W]` inside the network (the official code keeps `[N, F, C, H, W]`), so video GroupNorm
  always normalises over (C/32, F, H, W); the official wrapper would pick the wrong axis for a clip with F == C;
- RS-MMA shifts come from `torch.randint` with an optional `torch.Generator` instead of Python's `random`, and the
  audio length at each RS-MMA level must be divisible by the frame count (see `attention.RSMMABlock`);
- `resblock_updown=False` is refused: the official network then builds no up-sampling blocks and its forward fails;
- `class_cond=True` is refused: the official model ignores it (it always builds `num_classes=None`);
- gradient checkpointing (`use_checkpoint`) uses `torch.utils.checkpoint`, with the RS-MMA shift drawn outside the
  recomputed function (the official RS-MMA block always checkpoints and re-draws a new shift in the backward pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import RSMMABlock, SelfAttention, resolve_num_heads
from .layers import (
    AudioConv,
    GroupNorm32,
    VideoConv,
    VideoConvType,
    downsample_audio,
    downsample_video,
    timestep_embedding,
    upsample_audio,
    upsample_video,
    zero_module,
)

MAX_DILATION_EXPONENT = 10  # official `max_dila`: dilation = 2 ** (counter % 10), so at most 2**9 = 512

# Official model flags and defaults (mm_diffusion/multimodal_script_util.py: model_defaults + diffusion_defaults).
OFFICIAL_MODEL_FLAGS: dict[str, Any] = {
    "video_size": "16,3,64,64",
    "audio_size": "1,25600",
    "num_channels": 128,
    "num_res_blocks": 2,
    "num_heads": 4,
    "num_heads_upsample": -1,
    "num_head_channels": -1,
    "cross_attention_resolutions": "2,4,8",
    "cross_attention_windows": "1,4,8",
    "cross_attention_shift": True,
    "video_attention_resolutions": "2,4,8",
    "audio_attention_resolutions": "-1",
    "channel_mult": "",
    "dropout": 0.0,
    "class_cond": False,
    "use_checkpoint": False,
    "use_scale_shift_norm": True,
    "resblock_updown": False,
    "use_fp16": False,
    "video_type": "2d+1d",
    "audio_type": "1d",
    "learn_sigma": False,
}
# Diffusion-process flags: accepted by `from_official_flags` and kept in `model.diffusion_flags` for the sampler;
# they do not change the network.
OFFICIAL_DIFFUSION_FLAGS: dict[str, Any] = {
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
    "timestep_respacing": "",
    "use_kl": False,
    "predict_xstart": False,
    "rescale_timesteps": False,
    "rescale_learned_sigmas": False,
}


# ---------------------------------------------------------------------------------------------------------------
# Flag parsing (the official scripts take strings such as "2,4,8" and "True")
# ---------------------------------------------------------------------------------------------------------------


def parse_int_list(value: str | int | Sequence[int]) -> tuple[int, ...]:
    """'2,4,8' / [2, 4, 8] / 8 -> (2, 4, 8)."""
    if isinstance(value, str):
        return tuple(int(v) for v in value.split(",") if v.strip() != "")
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def parse_bool(value: str | bool) -> bool:
    """The official `str2bool`."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise ValueError(f"Expected a boolean flag value, got {value!r}.")


def parse_flag_string(flags: str) -> dict[str, str]:
    """'--num_channels 128 --learn_sigma False' -> {'num_channels': '128', 'learn_sigma': 'False'}."""
    tokens = flags.split()
    if len(tokens) % 2 or not all(t.startswith("--") for t in tokens[::2]):
        raise ValueError(f"Flags must be '--name value' pairs, got {flags!r}.")
    return {name[2:]: value for name, value in zip(tokens[::2], tokens[1::2])}


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """The official `channel_mult=""` rule, by frame size."""
    table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if image_size not in table:
        raise ValueError(f"No default `channel_mult` for frame size {image_size}; pass `channel_mult` explicitly.")
    return table[image_size]


def check_flag_names(flags: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    unknown = sorted(set(flags) - set(known))
    if unknown:
        raise ValueError(f"Unknown official flags {unknown}; known flags are {sorted(known)}.")


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


class InitialBlock(nn.Module):
    """Input stem: video VideoConv(2d+1d, k3) and audio Conv1d(k3) to `model_channels` (official `InitialBlock`)."""

    def __init__(self, video_channels: int, audio_channels: int, channels: int):
        super().__init__()
        self.video_conv = VideoConv(video_channels, channels, 3, conv_type="2d+1d")
        self.audio_conv = AudioConv(audio_channels, channels, 3)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.video_conv(video), self.audio_conv(audio)


class MMResBlock(nn.Module):
    """Coupled residual block (paper Fig. 3b "MM-Block"; official `ResBlock`), both modalities in parallel.

    Per modality: `h = Conv_in(SiLU(GN(x)))`; `h = GN(h) * (1 + scale) + shift` with (scale, shift) from the **same**
    `emb_layers` projection of the shared timestep embedding; `h = ZeroConv_out(Dropout(SiLU(h)))`;
    `out = skip(x) + h`. Video `Conv_in` is 2D+1D k3, audio `Conv_in` is Conv1d k3 with dilation `audio_dilation`.
    With `down`/`up`, the **whole** `in_layers` (conv included) runs first and then h and x are re-sampled (official
    order; guided-diffusion re-samples before the conv). Optional video attention (spatial over h*w per frame, then
    temporal over F per pixel) and audio self-attention follow the residual sum.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        *,
        dropout: float = 0.0,
        audio_dilation: int = 1,
        video_type: VideoConvType = "2d+1d",
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
        video_attention: bool = False,
        audio_attention: bool = False,
        num_heads: int = 4,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.up, self.down = up, down
        self.video_in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), VideoConv(channels, out_channels, 3, conv_type=video_type)
        )
        self.audio_in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), AudioConv(channels, out_channels, 3, dilation=audio_dilation)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.video_out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(VideoConv(out_channels, out_channels, 1, conv_type="3d")),
        )
        self.audio_out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(AudioConv(out_channels, out_channels, 1)),
        )
        if out_channels == channels:
            self.video_skip_connection, self.audio_skip_connection = nn.Identity(), nn.Identity()
        else:
            self.video_skip_connection = VideoConv(channels, out_channels, 1, conv_type="3d")
            self.audio_skip_connection = AudioConv(channels, out_channels, 1)
        # The official ResBlock passes `num_heads` with `num_head_channels=-1` to its single-modality attention.
        if video_attention:
            self.spatial_attention_block = SelfAttention(out_channels, num_heads, GroupNorm32(out_channels))
            self.temporal_attention_block = SelfAttention(out_channels, num_heads, GroupNorm32(out_channels))
        if audio_attention:
            self.audio_attention_block = SelfAttention(out_channels, num_heads, GroupNorm32(out_channels))

    def _resample(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.down:
            return downsample_video(video), downsample_audio(audio)
        if self.up:
            return upsample_video(video), upsample_audio(audio)
        return video, audio

    def _modulate(self, h: torch.Tensor, out_layers: nn.Sequential, emb_out: torch.Tensor) -> torch.Tensor:
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - 2)))
        if not self.use_scale_shift_norm:
            return out_layers(h + emb_out)
        scale, shift = emb_out.chunk(2, dim=1)
        return out_layers[1:](out_layers[0](h) * (1 + scale) + shift)

    def _video_attention(self, video: torch.Tensor) -> torch.Tensor:
        """Spatial self-attention over h*w tokens of each frame, then temporal over F tokens of each pixel."""
        n, c, f, h, w = video.shape
        x = video.transpose(1, 2).reshape(n * f, c, h * w)  # '(b f) c (h w)'
        x = self.spatial_attention_block(x)
        x = x.reshape(n, f, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, f)  # '(b h w) c f'
        x = self.temporal_attention_block(x)
        return x.reshape(n, h, w, c, f).permute(0, 3, 4, 1, 2)

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor, emb: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        video_h, audio_h = self.video_in_layers(video), self.audio_in_layers(audio)
        video_h, audio_h = self._resample(video_h, audio_h)
        video, audio = self._resample(video, audio)
        video_emb, audio_emb = emb
        video_emb_out = self.emb_layers(video_emb).type(video_h.dtype)  # one projection, shared by both modalities
        audio_emb_out = video_emb_out if audio_emb is video_emb else self.emb_layers(audio_emb).type(audio_h.dtype)
        video_h = self._modulate(video_h, self.video_out_layers, video_emb_out)
        audio_h = self._modulate(audio_h, self.audio_out_layers, audio_emb_out)
        video = self.video_skip_connection(video) + video_h
        audio = self.audio_skip_connection(audio) + audio_h
        if hasattr(self, "spatial_attention_block"):
            video = self._video_attention(video)
        if hasattr(self, "audio_attention_block"):
            audio = self.audio_attention_block(audio)
        return video, audio


class MMBlockSequence(nn.Sequential):
    """One U-Net entry (official `TimestepEmbedSequential`): res-blocks get `emb` (the video stream's and the audio
    stream's timestep embeddings, one tensor twice when the streams share their step), RS-MMA blocks a shift."""

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        emb: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator | None = None,
        use_checkpoint: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self:
            if isinstance(layer, MMResBlock):
                args = (video, audio, emb)
            elif isinstance(layer, RSMMABlock):
                shift = layer.draw_shift(video.shape[2], generator)  # drawn outside any recomputation
                args = (video, audio, shift)
            else:
                args = (video, audio)
            if use_checkpoint and torch.is_grad_enabled():
                video, audio = checkpoint(layer, *args, use_reentrant=False)
            else:
                video, audio = layer(*args)
        return video, audio


# ---------------------------------------------------------------------------------------------------------------
# The coupled U-Net
# ---------------------------------------------------------------------------------------------------------------


class MMDiffusionUNet(nn.Module):
    """The coupled U-Net of MM-Diffusion (paper §3.2-3.3, Table A.1; official `MultimodalUNet`).

    Args (keyword-only; defaults are the released Landscape / AIST++ configuration):
        video_size: `(F, C, H, W)` of the training clips; F is the full-window size of the middle RS-MMA block.
        audio_size: `(C, L)` of the training audio.
        model_channels: base channels (128); the time-embedding width equals it (2-layer MLP, Table A.1).
        num_res_blocks: res-blocks per level (2).
        channel_mult: channel multiplier per level (1, 2, 3, 4).
        cross_attention_resolutions: down-sampling factors with RS-MMA after each res-block ((2, 4, 8)).
        cross_attention_windows: RS-MMA window S for each of those ((1, 4, 8)).
        cross_attention_shift: draw a random shift R on every call (True, in training and sampling).
        video_attention_resolutions / audio_attention_resolutions: down-sampling factors with video (spatial +
            temporal) / audio self-attention ((2, 4, 8) / none).
        num_heads: heads of the single-modality attention (4).
        num_head_channels: channels per RS-MMA head (64); -1 uses `num_heads`.
        video_out_channels / audio_out_channels: 3 / 1 (6 / 2 with learned sigma).
        middle_cross_attention: add the full-window (S = F, R = 0) RS-MMA between the middle res-blocks. None follows
            the official rule: only when `cross_attention_windows == (1, 4, 8)`.
    """

    def __init__(
        self,
        *,
        video_size: Sequence[int] = (16, 3, 64, 64),
        audio_size: Sequence[int] = (1, 25600),
        model_channels: int = 128,
        num_res_blocks: int = 2,
        channel_mult: Sequence[float] = (1, 2, 3, 4),
        cross_attention_resolutions: Sequence[int] = (2, 4, 8),
        cross_attention_windows: Sequence[int] = (1, 4, 8),
        cross_attention_shift: bool = True,
        video_attention_resolutions: Sequence[int] = (2, 4, 8),
        audio_attention_resolutions: Sequence[int] = (),
        num_heads: int = 4,
        num_head_channels: int = 64,
        video_out_channels: int = 3,
        audio_out_channels: int = 1,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        video_type: VideoConvType = "2d+1d",
        use_checkpoint: bool = False,
        middle_cross_attention: bool | None = None,
    ):
        super().__init__()
        if not resblock_updown:
            raise ValueError(
                "`resblock_updown=False` builds no up-sampling blocks in the official MultimodalUNet, whose forward "
                "then fails; the released checkpoints use `resblock_updown=True`."
            )
        if len(cross_attention_windows) != len(cross_attention_resolutions):
            raise ValueError(
                f"`cross_attention_windows` {tuple(cross_attention_windows)} needs one window per entry of "
                f"`cross_attention_resolutions` {tuple(cross_attention_resolutions)}."
            )
        self.config = dict(
            video_size=tuple(video_size), audio_size=tuple(audio_size), model_channels=model_channels,
            num_res_blocks=num_res_blocks, channel_mult=tuple(channel_mult),
            cross_attention_resolutions=tuple(cross_attention_resolutions),
            cross_attention_windows=tuple(cross_attention_windows), cross_attention_shift=cross_attention_shift,
            video_attention_resolutions=tuple(video_attention_resolutions),
            audio_attention_resolutions=tuple(audio_attention_resolutions), num_heads=num_heads,
            num_head_channels=num_head_channels, video_out_channels=video_out_channels,
            audio_out_channels=audio_out_channels, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, video_type=video_type, use_checkpoint=use_checkpoint,
            middle_cross_attention=middle_cross_attention,
        )
        self.diffusion_flags: dict[str, Any] = dict(OFFICIAL_DIFFUSION_FLAGS)
        self.model_channels = model_channels
        self.use_checkpoint = use_checkpoint
        self.num_levels = len(channel_mult)
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, model_channels), nn.SiLU(), nn.Linear(model_channels, model_channels)
        )
        self._build()
        ch = int(channel_mult[0] * model_channels)
        self.audio_out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zero_module(AudioConv(ch, audio_out_channels, 3)))
        self.video_out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), zero_module(VideoConv(ch, video_out_channels, 3, conv_type="3d"))
        )

    def _build(self) -> None:
        """Builds input/middle/output blocks from `self.config` in the official order (it fixes the key indices)."""
        cfg = self.config
        model_channels, channel_mult, num_heads = cfg["model_channels"], cfg["channel_mult"], cfg["num_heads"]
        cross_res, cross_windows = cfg["cross_attention_resolutions"], cfg["cross_attention_windows"]
        emb_ch = model_channels  # official: time_embed_dim = model_channels

        def res_block(ch_in: int, ch_out: int, dilation: int, ds: int | None = None, **kw: Any) -> MMResBlock:
            # Dilated audio convs (paper §3.2, DiffWave-style): dilation = 2 ** (counter % 10) (joint-av.md §A3).
            # `ds` given: attention as the resolution lists say; None (up/down/middle blocks): as `kw` says.
            if ds is not None:
                kw.update(video_attention=ds in cfg["video_attention_resolutions"],
                          audio_attention=ds in cfg["audio_attention_resolutions"])
            return MMResBlock(
                ch_in, emb_ch, ch_out, dropout=cfg["dropout"], audio_dilation=2 ** (dilation % MAX_DILATION_EXPONENT),
                video_type=cfg["video_type"], use_scale_shift_norm=cfg["use_scale_shift_norm"], num_heads=num_heads,
                **kw,
            )

        def rs_mma(ch: int, window: int, shift: bool) -> RSMMABlock:
            return RSMMABlock(ch, resolve_num_heads(ch, num_heads, cfg["num_head_channels"]), window, shift)

        ch = int(channel_mult[0] * model_channels)
        stem = InitialBlock(cfg["video_size"][1], cfg["audio_size"][0], ch)
        self.input_blocks = nn.ModuleList([MMBlockSequence(stem)])
        skip_channels, ds, dilation = [ch], 1, 1
        # Encoder: per level, num_res_blocks x [ResBlock (+ RS-MMA)], then a down ResBlock (not on the last level).
        for level, mult in enumerate(channel_mult):
            for _ in range(cfg["num_res_blocks"]):
                layers: list[nn.Module] = [res_block(ch, int(mult * model_channels), dilation, ds)]
                dilation += 1
                ch = int(mult * model_channels)
                if ds in cross_res:
                    layers.append(rs_mma(ch, cross_windows[cross_res.index(ds)], cfg["cross_attention_shift"]))
                self.input_blocks.append(MMBlockSequence(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(MMBlockSequence(res_block(ch, ch, dilation, down=True)))
                dilation += 1
                skip_channels.append(ch)
                ds *= 2
        # Middle (code only, not in the paper): ResBlock(video+audio attention) [-> full-window RS-MMA] -> ResBlock;
        # both res-blocks use the same dilation.
        middle_cross_attention = cfg["middle_cross_attention"]
        if middle_cross_attention is None:
            middle_cross_attention = cross_windows == (1, 4, 8)  # official rule: `windows == [1,4,8]`
        middle: list[nn.Module] = [res_block(ch, ch, dilation, video_attention=True, audio_attention=True)]
        if middle_cross_attention:
            middle.append(rs_mma(ch, cfg["video_size"][0], False))  # S = F, no shift: full cross-attention
        middle.append(res_block(ch, ch, dilation, video_attention=True, audio_attention=True))
        self.middle_blocks = MMBlockSequence(*middle)
        # Decoder: the dilation counter steps back down; each up ResBlock takes the already-decremented value.
        self.output_blocks = nn.ModuleList()
        dilation -= 1
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for block_id in range(cfg["num_res_blocks"] + 1):
                layers = [res_block(ch + skip_channels.pop(), int(model_channels * mult), dilation, ds)]
                dilation -= 1
                ch = int(model_channels * mult)
                if ds in cross_res:
                    layers.append(rs_mma(ch, cross_windows[cross_res.index(ds)], cfg["cross_attention_shift"]))
                if level and block_id == cfg["num_res_blocks"]:
                    layers.append(res_block(ch, ch, dilation, up=True))
                    ds //= 2
                self.output_blocks.append(MMBlockSequence(*layers))

    # -----------------------------------------------------------------------------------------------------------

    @classmethod
    def from_official_flags(cls, **flags: Any) -> MMDiffusionUNet:
        """Build from the official flags (`multimodal_script_util.model_and_diffusion_defaults` names/defaults).

        Values may be strings as on the official command line (`video_size="16,3,64,64"`, `learn_sigma="False"`)
        or parsed values. Diffusion flags are kept in `model.diffusion_flags`, all flags as given in
        `model.official_flags`. `use_fp16=True` converts the convolutions to float16 as the official `convert_to_fp16`
        does.
        """
        check_flag_names(flags, {**OFFICIAL_MODEL_FLAGS, **OFFICIAL_DIFFUSION_FLAGS})
        f = {**OFFICIAL_MODEL_FLAGS, **flags}
        if parse_bool(f["class_cond"]):
            raise ValueError("`class_cond=True` is not supported: the official MultimodalUNet is unconditional.")
        if f["audio_type"] not in ("1d", "linear"):
            raise ValueError(f"`audio_type` must be '1d' or 'linear', got {f['audio_type']!r}.")
        video_size, audio_size = parse_int_list(f["video_size"]), parse_int_list(f["audio_size"])
        mult = f["channel_mult"]
        channel_mult = default_channel_mult(video_size[-1]) if mult in ("", None) else parse_int_list(mult)
        learn_sigma = parse_bool(f["learn_sigma"])
        model = cls(
            video_size=video_size,
            audio_size=audio_size,
            model_channels=int(f["num_channels"]),
            num_res_blocks=int(f["num_res_blocks"]),
            channel_mult=channel_mult,
            cross_attention_resolutions=parse_int_list(f["cross_attention_resolutions"]),
            cross_attention_windows=parse_int_list(f["cross_attention_windows"]),
            cross_attention_shift=parse_bool(f["cross_attention_shift"]),
            video_attention_resolutions=parse_int_list(f["video_attention_resolutions"]),
            audio_attention_resolutions=parse_int_list(f["audio_attention_resolutions"]),
            num_heads=int(f["num_heads"]),
            num_head_channels=int(f["num_head_channels"]),
            video_out_channels=6 if learn_sigma else 3,
            audio_out_channels=2 if learn_sigma else 1,
            dropout=float(f["dropout"]),
            use_scale_shift_norm=parse_bool(f["use_scale_shift_norm"]),
            resblock_updown=parse_bool(f["resblock_updown"]),
            video_type=f["video_type"],
            use_checkpoint=parse_bool(f["use_checkpoint"]),
        )
        # `num_heads_upsample` is accepted for flag compatibility: the official MultimodalUNet never uses it.
        model.diffusion_flags.update({k: flags[k] for k in OFFICIAL_DIFFUSION_FLAGS if k in flags})
        model.official_flags = dict(flags)  # what `save_pretrained` writes, to build the same network again
        if parse_bool(f["use_fp16"]):
            model.convert_to_fp16()
        return model

    @classmethod
    def from_flag_string(cls, flags: str) -> MMDiffusionUNet:
        """Build from an official command line fragment, e.g. `"--num_channels 128 --learn_sigma False"`."""
        return cls.from_official_flags(**parse_flag_string(flags))

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load an official checkpoint's state dict (keys unchanged), strictly: missing or extra keys raise."""
        self.load_state_dict(dict(state_dict), strict=True)

    def convert_to_fp16(self) -> None:
        """Official mixed precision: convolution weights in float16; norms, embeddings and softmax in float32."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module.half()

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.video_out[2].video_conv.weight.dtype

    # -----------------------------------------------------------------------------------------------------------

    def _time_embedding(self, timesteps: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=device).reshape(-1).expand(batch)
        return self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))

    def check_inputs(self, video: torch.Tensor, audio: torch.Tensor) -> None:
        """Raise a ValueError naming the rule when the clip cannot pass through the U-Net."""
        if video.dim() != 5 or audio.dim() != 3 or video.shape[0] != audio.shape[0]:
            raise ValueError(
                f"Expected `video` [N, F, C, H, W] and `audio` [N, C, L] with the same N, got {tuple(video.shape)} "
                f"and {tuple(audio.shape)}."
            )
        n_down = self.num_levels - 1
        _, frames, channels, height, width = video.shape
        if channels != self.config["video_size"][1] or audio.shape[1] != self.config["audio_size"][0]:
            raise ValueError(
                f"Expected {self.config['video_size'][1]} video and {self.config['audio_size'][0]} audio channels, "
                f"got {channels} and {audio.shape[1]}."
            )
        if height % 2**n_down or width % 2**n_down or audio.shape[2] % 4**n_down:
            raise ValueError(
                f"Frame size must be divisible by {2**n_down} and the audio length by {4**n_down}, got "
                f"{height}x{width} and {audio.shape[2]}."
            )
        for ds in self.config["cross_attention_resolutions"]:
            level_len = audio.shape[2] // ds**2  # audio shrinks by 4 per level, video by 2
            if level_len % frames:
                raise ValueError(
                    f"RS-MMA at down-sampling {ds} needs the audio length there ({level_len}) to be divisible by the "
                    f"frame count ({frames}); use an audio length divisible by {frames * ds**2}."
                )

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        timesteps: torch.Tensor | float,
        *,
        audio_timesteps: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict (ε_video, ε_audio) (paper Eq. 6-7).

        Args:
            video: `[N, F, C, H, W]` noisy video.
            audio: `[N, C, L]` noisy waveform.
            timesteps: `[N]` (or a scalar) diffusion steps, shared by both modalities (the paper's network).
            audio_timesteps: the audio stream's own steps, when they differ from the video's (a departure, for a
                stream given clean at step 0: see `pipelines.train.mm_diffusion`); both streams' modulations then
                come from the one time embedding and projection, each at its stream's step.
            generator: draws the RS-MMA random shifts (one per RS-MMA block per call) when shifting is on.
        Returns:
            `(video [N, F, C_out, H, W], audio [N, C_out, L])`.
        """
        self.check_inputs(video, audio)
        video_emb = self._time_embedding(timesteps, video.shape[0], video.device)
        audio_emb = video_emb if audio_timesteps is None else self._time_embedding(audio_timesteps, video.shape[0],
                                                                                    video.device)
        emb = (video_emb, audio_emb)
        dtype = self.compute_dtype
        video, audio = video.transpose(1, 2).to(dtype), audio.to(dtype)  # [N, C, F, H, W]
        ckpt = self.use_checkpoint and self.training
        skips = []
        for block in self.input_blocks:
            video, audio = block(video, audio, emb, generator, ckpt)
            skips.append((video, audio))
        video, audio = self.middle_blocks(video, audio, emb, generator, ckpt)
        for block in self.output_blocks:
            video_skip, audio_skip = skips.pop()
            video, audio = torch.cat([video, video_skip], dim=1), torch.cat([audio, audio_skip], dim=1)
            video, audio = block(video, audio, emb, generator, ckpt)
        return self.video_out(video).transpose(1, 2), self.audio_out(audio)


__all__ = ["InitialBlock", "MMBlockSequence", "MMDiffusionUNet", "MMResBlock", "parse_flag_string"]
