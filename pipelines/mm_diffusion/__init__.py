"""MM-Diffusion (Ruan et al., CVPR 2023): joint audio-video generation with a coupled U-Net and RS-MMA.

`MMDiffusionUNet` is the base 64x64 coupled U-Net and `MMDiffusionSuperResModel` the ADM 64->256 frame
up-sampler; both load the official checkpoints' state dicts unchanged and build from the official flags.
Importing this package is light (its registry entries are read at start-up): the names below load on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "RSMMABlock": "attention", "rs_mma_attention": "attention", "rs_mma_key_indices": "attention",
    "rs_mma_token_indices": "attention", "rs_mma_windows": "attention",
    "MMDiffusionUNet": "modeling_mm_diffusion", "MMDiffusionSuperResModel": "modeling_mm_diffusion_sr",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
