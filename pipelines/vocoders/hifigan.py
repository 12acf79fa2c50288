"""HiFi-GAN generator (Kong et al. 2020), loadable from Auffusion's `vocoder/` folder.

Auffusion ships `vocoder/config.json` and `vocoder/vocoder.pt`: a pickled dict whose `generator` entry is the state
dict of HiFi-GAN's generator with old-style weight-norm keys (`weight_g`, `weight_v`). We fold weight norm into
plain weights at load time (w = g · v / ‖v‖), so inference runs plain convolutions. The input is the natural-log
mel magnitude of `pipelines.audio` (Auffusion: 256 mels, hop 160), the output a float32 waveform in [-1, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    """The generator's part of a HiFi-GAN `config.json` (other keys, e.g. training settings, are ignored)."""

    num_mels: int = 256
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2)
    upsample_kernel_sizes: tuple[int, ...] = (11, 8, 8, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sampling_rate: int = 16000

    @classmethod
    def from_dict(cls, data: dict) -> HiFiGANConfig:
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if key in values:
                values[key] = tuple(values[key])
        if "resblock_dilation_sizes" in values:
            values["resblock_dilation_sizes"] = tuple(tuple(d) for d in values["resblock_dilation_sizes"])
        config = cls(**values)
        if config.resblock not in ("1", "2"):
            raise ValueError(f"HiFi-GAN resblock must be '1' or '2', got {config.resblock!r}")
        return config

    @property
    def hop_length(self) -> int:
        """Samples per mel frame: the product of the upsampling rates."""
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        return hop


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three dilated convs, each followed by an undilated one, with residual connections (HiFi-GAN V1)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.convs1, self.convs2):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, LEAKY_SLOPE)), LEAKY_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Dilated convs with residual connections, no second conv (HiFi-GAN V3)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LEAKY_SLOPE))
        return x


class HiFiGAN(nn.Module):
    """Mel [B, num_mels, T] (natural-log magnitude) -> waveform [B, T · hop] in [-1, 1]."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        self.config = config
        channels = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.num_mels, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if config.resblock == "1" else ResBlock2
        for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            in_channels, out_channels = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(in_channels, out_channels, kernel, rate, padding=(kernel - rate) // 2))
            for size, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(block(out_channels, size, dilations))
        self.conv_post = nn.Conv1d(channels // 2 ** len(config.upsample_rates), 1, 7, padding=3)

    @property
    def device(self) -> torch.device:
        return self.conv_pre.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_pre.weight.dtype

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        kernels = len(self.config.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, upsample in enumerate(self.ups):
            x = upsample(F.leaky_relu(x, LEAKY_SLOPE))
            x = sum(self.resblocks[i * kernels + j](x) for j in range(kernels)) / kernels
        x = self.conv_post(F.leaky_relu(x))  # HiFi-GAN uses the default slope (0.01) before the last conv
        return torch.tanh(x).squeeze(1)

    @torch.no_grad()
    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Waveform(s) from log-mel [num_mels, T] or [B, num_mels, T], as float32 on the model's device."""
        batched = log_mel if log_mel.dim() == 3 else log_mel[None]
        audio = self(batched.to(self.device, self.dtype)).float()
        return audio if log_mel.dim() == 3 else audio[0]

    def load_weight_norm_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a state dict whose convs may carry `weight_g`/`weight_v` pairs (strict on every other key)."""
        self.load_state_dict(fold_weight_norm(state_dict), strict=True)

    @classmethod
    def from_folder(cls, folder: str | Path) -> HiFiGAN:
        """Build from `config.json` + `vocoder.pt` (Auffusion layout; weights under `generator`), in eval mode."""
        folder = Path(folder)
        config = HiFiGANConfig.from_dict(json.loads((folder / "config.json").read_text()))
        checkpoint = torch.load(folder / "vocoder.pt", map_location="cpu", weights_only=True)
        model = cls(config)
        model.load_weight_norm_state_dict(checkpoint.get("generator", checkpoint))
        return model.eval()


def fold_weight_norm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each `<name>.weight_g` / `<name>.weight_v` pair by `<name>.weight` = g · v / ‖v‖.

    The norm is taken over every dimension but the first, as `torch.nn.utils.weight_norm(dim=0)` does for both
    Conv1d ([out, in, k]) and ConvTranspose1d ([in, out, k]) weights.
    """
    folded = {}
    for key, value in state_dict.items():
        if key.endswith(".weight_v"):
            continue
        if key.endswith(".weight_g"):
            stem = key[: -len(".weight_g")]
            v = state_dict[f"{stem}.weight_v"]
            norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
            folded[f"{stem}.weight"] = value * v / norm
        else:
            folded[key] = value
    return folded
