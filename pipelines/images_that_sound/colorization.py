"""Colorization by Factorized Diffusion: colour a spectrogram without changing it.

An image is split into a grayscale component (the channel mean, exactly how the spectrogram is read from a decoded
image) and a colour component (the rest). While the image model samples a "colorful photo of …", every step's clean
estimate has its grayscale component replaced by the spectrogram, so only the colour is generated (paper §3.3,
after Geng et al.'s Factorized Diffusion).

This is the ungated path on the Stable Diffusion image model we already hold. It differs from the paper's DeepFloyd
IF path (`colorization_if.py`, gated): SD works on VAE latents, so each projection decodes the clean estimate,
projects it in pixel space and encodes it back (slower, and the VAE round trip loosens the constraint during
sampling); the final projection is exact. The projection keeps pixel values in [0, 1] by shrinking the colour
component where it would overflow, so the result's channel mean equals the spectrogram exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.images_that_sound.pipeline_images_that_sound import Guidance, ImagesThatSoundPipeline


def replace_grayscale(rgb: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """RGB [N, 3, H, W] with its grayscale component (channel mean) swapped for `gray` [N, H, W]: G(x) := gray.

    The colour component C(x) = x − G(x) is kept as it is; no range limit (noisy images live outside [0, 1]).
    """
    return gray[:, None] + (rgb - rgb.mean(dim=1, keepdim=True))


def project_grayscale(rgb: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """RGB [N, 3, H, W] whose channel mean is `gray` [N, H, W] exactly, colour kept where it fits in [0, 1]."""
    gray = gray[:, None].clamp(0, 1)
    colour = rgb - rgb.mean(dim=1, keepdim=True)
    # Largest k <= 1 with gray + k·colour inside [0, 1] for every channel of the pixel.
    room_up = torch.where(colour > 0, (1 - gray) / colour.clamp(min=1e-12), torch.full_like(colour, np.inf))
    room_down = torch.where(colour < 0, gray / (-colour).clamp(min=1e-12), torch.full_like(colour, np.inf))
    k = torch.minimum(room_up, room_down).amin(dim=1, keepdim=True).clamp(max=1.0)
    return gray + k * colour


@torch.no_grad()
def colorize(pipe: ImagesThatSoundPipeline, spectrograms: np.ndarray, prompt: str, *, negative_prompt: str = "",
             num_inference_steps: int = 30, guidance_scale: float = 10.0,
             generator: torch.Generator | list[torch.Generator] | None = None) -> np.ndarray:
    """Colour images [N, H, W, 3] in [0, 1] whose channel mean equals `spectrograms` [N, H, W] exactly."""
    if num_inference_steps < 1 or not np.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"need `num_inference_steps` >= 1 and a finite `guidance_scale` >= 0, got "
                         f"{num_inference_steps} and {guidance_scale}")
    count, height, width = spectrograms.shape
    block = pipe.vae_scale_factor * 8  # the UNet halves the latent three times
    padded_width = -(-width // block) * block
    gray = torch.zeros((count, height, padded_width), device=pipe.device)
    gray[..., :width] = torch.from_numpy(np.ascontiguousarray(spectrograms)).to(pipe.device)
    model = Guidance(pipe.image_unet, pipe.encode_prompt(pipe.image_text_encoder, pipe.image_tokenizer, prompt,
                                                         negative_prompt, count), guidance_scale, 1.0)
    latents = pipe.prepare_latents(count, padded_width // pipe.vae_scale_factor, generator, None)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps, device=pipe.device)
    for index, timestep in enumerate(pipe.progress_bar(scheduler.timesteps)):
        noise = pipe.guided_noise(model, latents, timestep)
        alpha = scheduler.alphas_cumprod[timestep]
        clean = (latents - (1 - alpha).sqrt() * noise) / alpha.sqrt()
        clean = _encode(pipe, project_grayscale(_decode(pipe, clean), gray))  # only colour is left to the model
        noise = (latents - alpha.sqrt() * clean) / (1 - alpha).sqrt()
        previous = scheduler.timesteps[index + 1] if index + 1 < len(scheduler.timesteps) else None
        alpha_prev = scheduler.alphas_cumprod[previous] if previous is not None else scheduler.final_alpha_cumprod
        latents = alpha_prev.sqrt() * clean + (1 - alpha_prev).sqrt() * noise  # DDIM, η = 0
    colour = project_grayscale(_decode(pipe, latents), gray)[..., :width]
    return colour.permute(0, 2, 3, 1).float().cpu().numpy()


def _decode(pipe: ImagesThatSoundPipeline, latents: torch.Tensor) -> torch.Tensor:
    return (pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1).float()


def _encode(pipe: ImagesThatSoundPipeline, rgb: torch.Tensor) -> torch.Tensor:
    posterior = pipe.vae.encode((rgb * 2 - 1).to(pipe.vae.dtype)).latent_dist
    return posterior.mean * pipe.vae.config.scaling_factor
