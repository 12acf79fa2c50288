"""The diffusion of the physics-driven impact model (Su et al., CVPR 2023, Eq. 8-9): the cosine
schedule (Nichol & Dhariwal: s = 0.008, β clipped at 0.9999, T = 1000 in the paper), `q_sample`, the L1 ε loss of
Eq. 8 (`diffusion_loss`) and one step of the code's ancestral sampler (`DiffusionSchedule.step`): x̂0 from ε̂,
clipped to [-1, 1], q-posterior mean and variance (log clipped at 1e-20), no noise at the last step; optionally
respaced to fewer steps (Nichol & Dhariwal's respacing: the same ᾱ at a subset of the timesteps, β recomputed
between them). The classifier-free-guidance machinery of the code is unused there (null_cond_prob 0, cond_scale 1)
and left out here.

Noise is drawn on the CPU (`draw_noise`), from one generator for the whole batch or one per sample, so a seed gives
the same result on every device and a batch equals its samples run alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.impact_sound.modeling_impact_sound import ImpactDiffusionConfig

Generators = torch.Generator | list[torch.Generator] | None


def draw_noise(shape: tuple[int, ...], generator: Generators) -> torch.Tensor:
    """N(0, I) float32 on the CPU: one draw for the batch from one generator, or one draw per sample (the first axis)
    from a list of generators."""
    if isinstance(generator, list):
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return torch.randn(shape, generator=generator)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.9999) -> np.ndarray:
    """β_t (float64, [T]) of the cosine schedule: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2),
    β_t = 1 − ᾱ(t+1)/ᾱ(t), clipped to [0, max_beta] (Nichol & Dhariwal 2021, Eq. 17; the code's values)."""
    x = np.linspace(0.0, timesteps, timesteps + 1, dtype=np.float64)
    f = np.cos(((x / timesteps) + s) / (1.0 + s) * math.pi / 2.0) ** 2
    alphas_cumprod = f / f[0]
    return np.clip(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, max_beta)


class DiffusionSchedule:
    """A DDPM noise schedule over the model timesteps `timesteps` (all of 0..T−1, or a respaced subset).

    Index i runs over this schedule's steps; `timesteps[i]` is the model timestep fed to the U-Net. ᾱ_i is the
    training schedule's ᾱ at that timestep; β_i = 1 − ᾱ_i / ᾱ_{i−1} (respacing keeps the marginals).
    """

    def __init__(self, betas: np.ndarray, timesteps: np.ndarray | None = None) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        self.timesteps = np.arange(len(betas)) if timesteps is None else np.asarray(timesteps, dtype=np.int64)
        # q(x_{t−1} | x_t, x_0) (Ho et al. Eq. 6–7), the code's `posterior_*` buffers.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.maximum(self.posterior_variance, 1e-20))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / \
            (1.0 - self.alphas_cumprod)

    @classmethod
    def cosine(cls, timesteps: int, s: float = 0.008, max_beta: float = 0.9999) -> DiffusionSchedule:
        return cls(cosine_betas(timesteps, s, max_beta))

    @classmethod
    def from_config(cls, config: ImpactDiffusionConfig) -> DiffusionSchedule:
        return cls.cosine(config.timesteps, config.cosine_s, config.max_beta)

    def __len__(self) -> int:
        return len(self.betas)

    def respaced(self, num_steps: int) -> DiffusionSchedule:
        """`num_steps` timesteps evenly spaced from 0 to T−1 (rounded), with β recomputed between them."""
        if not 1 <= num_steps <= len(self):
            raise ValueError(f"`num_inference_steps` must be between 1 and {len(self)}, got {num_steps}")
        if num_steps == len(self):
            return self
        keep = np.unique(np.round(np.linspace(0, len(self) - 1, num_steps)).astype(np.int64))
        kept = self.alphas_cumprod[keep]
        betas = 1.0 - kept / np.concatenate([[1.0], kept[:-1]])
        return DiffusionSchedule(betas, self.timesteps[keep])

    def _at(self, values: np.ndarray, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[index] shaped [B, 1, 1, 1] in like's dtype and device."""
        gathered = torch.as_tensor(values, device=like.device)[index.to(like.device)]
        return gathered.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, index: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (paper Eq. 8's h(x_0, ε))."""
        return self._at(np.sqrt(self.alphas_cumprod), index, x0) * x0 + \
            self._at(np.sqrt(1.0 - self.alphas_cumprod), index, x0) * noise

    def predict_x0(self, xt: torch.Tensor, index: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."""
        return self._at(np.sqrt(1.0 / self.alphas_cumprod), index, xt) * xt - \
            self._at(np.sqrt(1.0 / self.alphas_cumprod - 1.0), index, xt) * eps

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, index: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of q(x_{t−1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, index, xt) * x0 + \
            self._at(self.posterior_mean_coef2, index, xt) * xt
        return mean, self._at(self.posterior_log_variance_clipped, index, xt)

    def step(self, eps: torch.Tensor, index: int, x: torch.Tensor, generator: Generators
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the code's ancestral sampler (paper Eq. 9 with σ = 1, plus x̂_0 clipping) from step `index` of
        this schedule, given ε̂ at x: (the next x, the clipped x̂_0). x = posterior mean + exp(½ log-variance)·z with
        z ~ N(0, I) from `draw_noise`, z = 0 at index 0 (the last step)."""
        at = torch.full((len(x),), index, dtype=torch.long)
        x0 = self.predict_x0(x, at, eps).clamp(-1.0, 1.0)
        mean, log_variance = self.posterior(x0, x, at)
        noise = draw_noise(tuple(x.shape), generator).to(x.device, x.dtype) if index > 0 else torch.zeros_like(x)
        return mean + torch.exp(0.5 * log_variance) * noise, x0


def diffusion_loss(denoiser: nn.Module, schedule: DiffusionSchedule, x0: torch.Tensor, mu: torch.Tensor,
                   nu: torch.Tensor, *, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Paper Eq. 8: mean ‖ε − f_θ(h(x_0, ε), t, μ, ν)‖₁ with t uniform over the schedule's timesteps and
    ε ~ N(0, I) (drawn from `generator` on the CPU unless given)."""
    if t is None:
        t = torch.randint(0, len(schedule), (x0.shape[0],), generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator)
    t, noise = t.to(x0.device), noise.to(x0.device, x0.dtype)
    return F.l1_loss(denoiser(schedule.q_sample(x0, t, noise), t, mu, nu), noise)
