"""The paper's SDS baseline: multimodal score distillation (Eq. 7), after Diffusion Illusions.

A single-channel picture x = g(θ) (a Fourier-feature network) is optimised so that both diffusion models find it
likely: each iteration encodes x, noises it at a random t, and pushes it along w(t)·(ε̂ − ε) of each model

    ∇_θ L = λ_sds · ω_v(t)(ε_v − ε) ∂x/∂θ + ω_a(t)(ε_a − ε) ∂x/∂θ,   ω(t) = 1 − ᾱ_t            (Eq. 7)

with the authors' settings: λ_sds = 0.4, image term off for the first 1/8 of iterations (5,000 of 40,000),
t ~ U[20, 980], AdamW (lr 1e-4, weight decay 1e-3), guidance 80 (image) and 10 (audio).

Departure: the authors take the image score from DeepFloyd IF stage I in pixel space (8 random 256×256 crops at
64×64); we take it from the image model we already hold (Stable Diffusion), on the same VAE latent as the audio
score. The VAE encoding uses the posterior mean.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from pipelines.images_that_sound.pipeline_images_that_sound import (
    AUFFUSION, Guidance, ImagesThatSoundOutput, ImagesThatSoundPipeline,
)
from pipelines.pipeline_utils import StepCallback

MAX_ITERATIONS = 40_000
T_RANGE = (20, 980)


class FourierImage(nn.Module):
    """x = sigmoid(MLP(γ(u))): Gaussian Fourier features of pixel coordinates through 1×1 convs (the authors'
    `LearnableImageFourier`: 128 features at scale 10, hidden 256, three conv + ReLU + BatchNorm layers)."""

    def __init__(self, height: int, width: int, *, channels: int = 1, hidden: int = 256, features: int = 128,
                 scale: float = 10.0, generator: torch.Generator | None = None):
        super().__init__()
        grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"))
        projection = torch.randn(features, 2, generator=generator) * scale
        angles = 2 * math.pi * torch.einsum("fc,chw->fhw", projection, grid)
        self.register_buffer("features", torch.cat([angles.sin(), angles.cos()])[None])
        layers, width_in = [], 2 * features
        for _ in range(3):
            layers += [nn.Conv2d(width_in, hidden, 1), nn.ReLU(), nn.BatchNorm2d(hidden)]
            width_in = hidden
        self.net = nn.Sequential(*layers, nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self) -> torch.Tensor:
        return self.net(self.features)


def sds_loss(pipe: ImagesThatSoundPipeline, guidance: Guidance, latents: torch.Tensor, timestep: int,
             generator: torch.Generator | None) -> torch.Tensor:
    """A loss whose gradient w.r.t. `latents` is ω(t)(ε̂ − ε) / N (the usual 0.5·‖z − sg(z − g)‖² trick)."""
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)
    t = torch.tensor([timestep], device=latents.device)
    with torch.no_grad():
        noisy = pipe.scheduler.add_noise(latents.detach(), noise, t)
        predicted = pipe.guided_noise(guidance, noisy, t)
        weight = 1 - pipe.scheduler.alphas_cumprod[timestep]
        gradient = weight * (predicted - noise)
    return 0.5 * ((latents - (latents - gradient).detach()) ** 2).sum() / latents.shape[0]


def encode(pipe: ImagesThatSoundPipeline, picture: torch.Tensor) -> torch.Tensor:
    """[1, 1, H, W] picture in [0, 1] -> VAE latent (posterior mean, scaled), with gradients."""
    rgb = picture.repeat(1, 3, 1, 1) * 2 - 1
    return pipe.vae.encode(rgb.to(pipe.vae.dtype)).latent_dist.mean * pipe.vae.config.scaling_factor


def score_distillation(pipe: ImagesThatSoundPipeline, image_prompt: str, audio_prompt: str, *,
                       negative_prompt: str = "", iterations: int = 2000, image_guidance_scale: float = 80.0,
                       audio_guidance_scale: float = 10.0, image_weight: float = 0.4,
                       warm_start_fraction: float = 0.125, learning_rate: float = 1e-4, latent_width: int = 128,
                       generator: torch.Generator | None = None,
                       vocoder: Literal["auto", "hifigan", "griffinlim"] = "auto", griffin_lim_iterations: int = 32,
                       callback_on_step_end: StepCallback | None = None,
                       callback_on_step_end_tensor_inputs: list[str] | None = None) -> ImagesThatSoundOutput:
    """Optimise one picture by multimodal SDS for a bounded number of iterations; returns it as a sample.

    `callback_on_step_end(pipe, iteration, timestep, callback_kwargs)` runs after every iteration, with "preview"
    (the picture [1, n_mels, W] in [0, 1], numpy, made only when read) and "latents" (its VAE latent); what it
    returns is not used, since the picture's network, not a latent, is what is optimised. Setting
    `pipe._interrupt = True` stops after the current iteration and returns the picture as it is.
    """
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"`iterations` must be between 1 and {MAX_ITERATIONS} (the paper uses 40,000); got "
                         f"{iterations}")
    if not 0.0 <= warm_start_fraction < 1.0 or image_weight < 0:
        raise ValueError("`warm_start_fraction` must be in [0, 1) and `image_weight` >= 0, got "
                         f"{warm_start_fraction} and {image_weight}")
    pipe.check_inputs(1, image_guidance_scale, audio_guidance_scale, 1.0, 1.0, 0.0, 1, latent_width, None, vocoder)
    pipe.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
    image_model = pipe.image_guidance(image_prompt, negative_prompt, 1, image_guidance_scale, 1.0)
    audio_model = pipe.audio_guidance(audio_prompt, negative_prompt, 1, audio_guidance_scale, 1.0)
    pipe.vae.requires_grad_(False)  # gradients flow through the encoder to x, never into the VAE's weights
    picture = FourierImage(AUFFUSION.n_mels, latent_width * pipe.vae_scale_factor, generator=generator).to(pipe.device)
    optimizer = torch.optim.AdamW(picture.parameters(), lr=learning_rate, weight_decay=1e-3)
    warm_start = int(iterations * warm_start_fraction)
    for iteration in range(iterations):
        if pipe.interrupt:
            break
        timestep = int(torch.randint(T_RANGE[0], T_RANGE[1] + 1, (1,), generator=generator))
        latents = encode(pipe, picture())
        loss = sds_loss(pipe, audio_model, latents, timestep, generator)
        if iteration >= warm_start and image_weight > 0:
            loss = loss + image_weight * sds_loss(pipe, image_model, latents, timestep, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pipe.step_end(callback_on_step_end, iteration, timestep, callback_on_step_end_tensor_inputs,
                      preview=lambda: _as_spectrograms(picture), latents=lambda latents=latents: latents.detach())
    with torch.no_grad():
        final_latents = encode(pipe, picture())
    return pipe.finish(_as_spectrograms(picture), final_latents, vocoder, griffin_lim_iterations)


def _as_spectrograms(picture: FourierImage) -> np.ndarray:
    with torch.no_grad():
        return picture()[:, 0].float().cpu().numpy()
