"""MM-LDM (paper 001): sounding videos from a multi-modal autoencoder's latents and a DiT over both.

`MultiModalAutoencoder` (encoders, semantic space, shared diffusion decoder), `MMLDMTransformer` (the latent DiT),
`MMLDMPipeline` (joint generation, A2V and V2A by cross-modal guidance), `TripletDiscriminator` (the adversarial
loss) and `build_components(preset)` (`paper`, `studio`, `tiny`). Importing this package is light: the names below
load on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "MultiModalAutoencoder": "modeling_autoencoder", "MMLDMTransformer": "modeling_dit",
    "PRESETS": "modeling_mm_ldm", "build_components": "modeling_mm_ldm", "kl_vae": "modeling_mm_ldm",
    "MMLDMPipeline": "pipeline_mm_ldm", "MMLDMPipelineOutput": "pipeline_mm_ldm",
    "TripletDiscriminator": "modeling_discriminator",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
