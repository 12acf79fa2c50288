"""LoRA adapters for MM-Diffusion's coupled U-Net (`peft`, through the shared `pipelines.lora`).

The adapter sits on every attention projection of the U-Net (`TARGETS`, all 1×1 convolutions, which peft adapts as
convolutions): the video and audio self-attention's `qkv` and `proj_out`, and the RS-MMA cross-modal blocks' `v_qkv`,
`a_qkv` and output projections (`video_proj_out.video_conv`, a 1×1×1 Conv3d, and `audio_proj_out.audio_conv`).

An adapter folder (the trainer's `--lora-rank` output OUT, written by `save_adapter`):

- `adapter.safetensors`: the LoRA matrices, `unet.<peft key>`;
- `adapter.json`: {"format": "synesthesia-lora", "model": "mm_diffusion", "rank", "alpha", "targets", "base":
  {"init": "studio", "paper" or the starting folder/file (absolute), "checkpoint": the released file (paper),
  "unet_parameters"}, and the trainer's record (data, steps, seed...)}.

`MMDiffusionPipeline.from_pretrained(OUT)` of such a folder (an adapter and no model.json) loads the base with it
(`from_lora_run`); `load_lora_weights`, `set_lora_scale` and `unload_lora_weights` put it on and off any pipeline
of the same base.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.lora import CONFIG_NAME, read_adapter

MODEL = "mm_diffusion"
TARGETS = ("qkv", "proj_out", "v_qkv", "a_qkv", "video_proj_out.video_conv", "audio_proj_out.audio_conv")


def lora_run(path: str | Path) -> bool:
    """Whether `path` is a LoRA run's folder: an adapter and no model of its own (model.json)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and not (path / "model.json").is_file()


def read_mm_adapter(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an MM-Diffusion adapter folder; a ValueError for another model's adapter."""
    path = Path(path)
    if not (path / CONFIG_NAME).is_file():
        raise ValueError(f"{path} holds no LoRA adapter ({CONFIG_NAME}): give the folder a --lora-rank run wrote")
    config, tensors = read_adapter(path)
    if config.get("model") != MODEL:
        raise ValueError(f"{path} is an adapter for {config.get('model')!r}, not for MM-Diffusion")
    return config, tensors


def base_path(config: dict) -> Path:
    """Where the adapter's base weights are: the bundled studio folder, the released checkpoint, or the path."""
    base = config["base"]
    if base["init"] == "studio":
        from pipelines.mm_diffusion.entries import STUDIO_FOLDER

        return STUDIO_FOLDER
    return Path(base["checkpoint"] if base["init"] == "paper" else base["init"])


def base_parameter_count(unet: torch.nn.Module) -> int:
    """The U-Net's own parameters (a loaded LoRA's left out)."""
    return sum(p.numel() for name, p in unet.named_parameters() if "lora_" not in name)
