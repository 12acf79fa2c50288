"""Where models run: the device and dtype choice shared by the registry, the command-line tools and the trainers."""

from __future__ import annotations


def choose_device(preference: str = "auto") -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit choice is checked against what this machine has."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if preference == "auto":
        return next(device for device in ("cuda", "mps", "cpu") if available[device])
    if preference not in available:
        raise ValueError(f"device must be one of auto, cpu, cuda, mps; got {preference!r}")
    if not available[preference]:
        raise ValueError(f"device {preference!r} was asked for but this machine has none")
    return preference


def choose_dtype(device: str):
    """fp16/bf16 on accelerators (bf16 where the GPU supports it), fp32 on the CPU."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32
