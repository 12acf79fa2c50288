"""MM-Diffusion (Ruan et al., CVPR 2023): joint audio-video generation with a coupled U-Net and RS-MMA.

`MMDiffusionUNet` is the base 64x64 coupled U-Net and `MMDiffusionSuperResModel` the ADM 64->256 frame
up-sampler; both load the official checkpoints' state dicts unchanged and build from the official flags.
"""

from .attention import RSMMABlock, rs_mma_attention, rs_mma_key_indices, rs_mma_token_indices, rs_mma_windows
from .modeling_mm_diffusion import MMDiffusionUNet
from .modeling_mm_diffusion_sr import MMDiffusionSuperResModel

__all__ = [
    "MMDiffusionSuperResModel",
    "MMDiffusionUNet",
    "RSMMABlock",
    "rs_mma_attention",
    "rs_mma_key_indices",
    "rs_mma_token_indices",
    "rs_mma_windows",
]
