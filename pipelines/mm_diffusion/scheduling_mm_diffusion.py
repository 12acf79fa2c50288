"""MM-Diffusion's diffusion process and samplers (paper §3.1 Eqs. 1-7).

Both modalities share one β schedule and one timestep (Eq. 5), so every sampler here works on a *packed* state: the
video `[N, F, C, H, W]` and audio `[N, C, L]` of each sample flattened and concatenated into one `[N, D]` row. All the
update rules are element-wise (x̂_0 clipping included), so stepping the packed state equals stepping each modality.

- `official_betas`: guided-diffusion's named schedules ("linear": β = linspace(1e-4, 0.02)·1000/T; "cosine"), float64.
- `space_timesteps` / `respace_betas`: the official `timestep_respacing` ("250", "10,15,20", "ddim25") and the betas of
  the respaced process, 1 − ᾱ_i / ᾱ_prev over the kept steps (official `SpacedDiffusion`).
- `DDPMSampler` / `DDIMSampler`: diffusers' `DDPMScheduler` / `DDIMScheduler` built on the respaced betas, with ᾱ
  taken from the float64 schedule. tests/test_mm_diffusion_sampling.py pins them against the official formulas.
- `DPMSolverSampler`: singlestep DPM-Solver ("DPM-Solver-fast", noise prediction) with logSNR-uniform time steps, as
  the official multimodal sampler (`steps=20, order=3, skip_type="logSNR", method="singlestep"`). Written here:
  diffusers' `DPMSolverSinglestepScheduler` evaluates the model at integer timesteps and its third-order stage
  uses a different intermediate update, so it is not the official maths.

Every sampler has the same small contract for the pipeline: `num_steps` model evaluations; `model_timesteps[i]`, the
timestep the U-Net receives at evaluation i; `noise_level(i)` = (α, σ) of the state at evaluation i
(x_t = α x_0 + σ ε); `next_noise_level(i)`, that of the state step i returns; `step(eps, i, sample, ...)` ->
(next state, x̂_0). DDPM and DDIM also `renoise(i, x_{t-1})`: back up step i by q(x_t | x_{t-1}), for RePaint's
resampling of zero-shot generation.

Learned sigma (official flag `learn_sigma`): DDPM uses the learned-range variance (official `LEARNED_RANGE`); DDIM and
DPM-Solver use the ε half only, as the official samplers. `predict_xstart=True` is not supported (the released
checkpoints predict ε).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

SamplerName = Literal["ddpm", "ddim", "dpm_solver"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm_solver")


# ---------------------------------------------------------------------------------------------------------------
# The diffusion process (Eqs. 1-2, 5)
# ---------------------------------------------------------------------------------------------------------------


def official_betas(schedule: str = "linear", num_timesteps: int = 1000) -> np.ndarray:
    """β_1..β_T in float64, as guided-diffusion's `get_named_beta_schedule` (the official code's)."""
    if schedule == "linear":  # Ho et al., scaled so that any T keeps the same end points per unit time
        scale = 1000 / num_timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
    if schedule == "cosine":  # Nichol & Dhariwal: ᾱ(t) = cos²((t + 0.008)/1.008 · π/2), β capped at 0.999
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), 0.999)
                         for i in range(num_timesteps)], dtype=np.float64)
    raise ValueError(f"`noise_schedule` must be 'linear' or 'cosine', got {schedule!r}.")


def space_timesteps(num_timesteps: int, respacing: str) -> list[int]:
    """The steps kept by the official `timestep_respacing` string, sorted ascending.

    "ddimN": the stride i for which range(0, T, i) has exactly N steps. "N" or "N1,N2,...": the T steps split into
    equal sections, each sampled at N_k evenly spaced (rounded) positions, both ends included.
    """
    if respacing == "":
        return list(range(num_timesteps))
    if respacing.startswith("ddim"):
        count = int(respacing[len("ddim"):])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == count:
                return list(range(0, num_timesteps, stride))
        raise ValueError(
            f"`timestep_respacing`={respacing!r}: no integer stride gives exactly {count} of {num_timesteps} steps; "
            f"use a plain count such as '{count}' instead."
        )
    counts = [int(part) for part in respacing.split(",")]
    size_per, extra = divmod(num_timesteps, len(counts))
    kept: set[int] = set()
    start = 0
    for index, count in enumerate(counts):
        size = size_per + (1 if index < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(
                f"`timestep_respacing`={respacing!r}: section {index} has {size} steps, so it can keep between 1 and "
                f"{size}, got {count}."
            )
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        kept.update(start + round(stride * k) for k in range(count))
        start += size
    return sorted(kept)


def respace_betas(alphas_cumprod: np.ndarray, kept: list[int]) -> np.ndarray:
    """β̃_k = 1 − ᾱ_{kept[k]} / ᾱ_{kept[k-1]} (ᾱ before the first kept step = 1): ∏(1 − β̃) = ᾱ at the kept steps."""
    previous = np.concatenate([[1.0], alphas_cumprod[kept][:-1]])
    return 1.0 - alphas_cumprod[kept] / previous


@dataclass(frozen=True)
class DiffusionProcess:
    """The forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) shared by video and audio (Eqs. 1, 2, 5)."""

    betas: np.ndarray  # float64 [T]
    learn_sigma: bool = False
    rescale_timesteps: bool = False

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], learn_sigma: bool = False) -> DiffusionProcess:
        """From the official diffusion flags (`model.diffusion_flags`: diffusion_steps, noise_schedule, ...)."""
        from .modeling_mm_diffusion import parse_bool

        if parse_bool(flags.get("predict_xstart", False)):
            raise ValueError("`predict_xstart=True` is not supported: these samplers take an ε-prediction model "
                             "(the released MM-Diffusion checkpoints predict ε).")
        betas = official_betas(str(flags.get("noise_schedule", "linear")), int(flags.get("diffusion_steps", 1000)))
        return cls(betas, learn_sigma, parse_bool(flags.get("rescale_timesteps", False)))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    def model_time(self, timesteps: list[int] | np.ndarray) -> torch.Tensor:
        """Timesteps as the U-Net sees them (official `_scale_timesteps`: ×1000/T when `rescale_timesteps`)."""
        t = torch.as_tensor(np.asarray(timesteps), dtype=torch.float32)
        return t * (1000.0 / self.num_timesteps) if self.rescale_timesteps else t


def split_model_output(output: torch.Tensor, channel_dim: int, learn_sigma: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε, variance values) from a U-Net output; with learned sigma the channels are [ε | v] (official split)."""
    if not learn_sigma:
        return output, torch.zeros_like(output)
    return output.chunk(2, dim=channel_dim)


# ---------------------------------------------------------------------------------------------------------------
# DDPM and DDIM through diffusers, on the respaced process
# ---------------------------------------------------------------------------------------------------------------


class _RespacedSampler:
    """Shared part of DDPM/DDIM: a diffusers scheduler on the respaced process, stepped at K-1, ..., 0."""

    scheduler: DDPMScheduler | DDIMScheduler

    def __init__(self, process: DiffusionProcess, respacing: str):
        self.process = process
        self.kept = space_timesteps(process.num_timesteps, respacing)  # official `timestep_map`
        self.alphas_cumprod = process.alphas_cumprod[self.kept]  # float64 ᾱ of the respaced process
        self.betas = respace_betas(process.alphas_cumprod, self.kept)
        self.num_steps = len(self.kept)
        self.model_timesteps = process.model_time(self.kept[::-1])

    def _use_exact_alphas(self) -> None:
        # diffusers forms ᾱ with a float32 cumprod; the official code forms it in float64. Hand the scheduler the
        # float64 ᾱ (0-dim float64 factors cast to the sample's dtype, as the official float64 tables are).
        self.scheduler.alphas_cumprod = torch.from_numpy(self.alphas_cumprod)
        self.scheduler.set_timesteps(self.num_steps)

    def index(self, i: int) -> int:
        """Respaced timestep of evaluation i (evaluation 0 is the noisiest)."""
        return self.num_steps - 1 - i

    def noise_level(self, i: int) -> tuple[float, float]:
        a = float(self.alphas_cumprod[self.index(i)])
        return math.sqrt(a), math.sqrt(1.0 - a)

    def next_noise_level(self, i: int) -> tuple[float, float]:
        a = float(self.alphas_cumprod[self.index(i) - 1]) if self.index(i) > 0 else 1.0
        return math.sqrt(a), math.sqrt(1.0 - a)

    def renoise(self, i: int, sample: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
                ) -> torch.Tensor:
        """Back up evaluation i's step: x_t ~ q(x_t | x_{t-1}) = N(√(ᾱ_t/ᾱ_{t-1}) x_{t-1}, (1 − ᾱ_t/ᾱ_{t-1}) I) on the
        respaced process (RePaint's resampling, jump length 1)."""
        step_alpha = self.noise_level(i)[0] ** 2 / self.next_noise_level(i)[0] ** 2
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return math.sqrt(step_alpha) * sample + math.sqrt(1.0 - step_alpha) * noise


class DDPMSampler(_RespacedSampler):
    """Ancestral DDPM (Ho et al.; paper Eq. 3) with the official settings: ε-prediction, x̂_0 clipped to [-1, 1],
    variance β_t ("fixed large") or, with learned sigma, the learned range between β̃_t and β_t."""

    def __init__(self, process: DiffusionProcess, respacing: str = ""):
        super().__init__(process, respacing)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=self.num_steps, trained_betas=self.betas,
            variance_type="learned_range" if process.learn_sigma else "fixed_large",
            clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon", timestep_spacing="leading",
        )
        self._use_exact_alphas()

    def step(self, eps: torch.Tensor, variance: torch.Tensor, i: int, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{t-1} ~ N(μ̃(x_t, x̂_0), Σ) with fresh noise from `generator`; returns (x_{t-1}, x̂_0)."""
        output = torch.cat([eps, variance], dim=1) if self.process.learn_sigma else eps
        out = self.scheduler.step(output, self.index(i), sample, generator=generator)
        return out.prev_sample, out.pred_original_sample


class DDIMSampler(_RespacedSampler):
    """DDIM (Song et al.) as the official `ddim_sample`: x̂_0 clipped, ε re-derived from the clipped x̂_0, η given."""

    def __init__(self, process: DiffusionProcess, respacing: str, eta: float = 0.0):
        super().__init__(process, respacing)
        self.eta = eta
        self.scheduler = DDIMScheduler(
            num_train_timesteps=self.num_steps, trained_betas=self.betas, clip_sample=True, clip_sample_range=1.0,
            set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", timestep_spacing="leading",
        )
        self._use_exact_alphas()

    def step(self, eps: torch.Tensor, variance: torch.Tensor, i: int, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.scheduler.step(eps, self.index(i), sample, eta=self.eta, use_clipped_model_output=True,
                                  generator=generator)
        return out.prev_sample, out.pred_original_sample


# ---------------------------------------------------------------------------------------------------------------
# DPM-Solver (Lu et al., NeurIPS 2022), singlestep, logSNR spacing: the official multimodal sampler
# ---------------------------------------------------------------------------------------------------------------


def singlestep_orders(steps: int, order: int) -> list[int]:
    """Orders of the singlestep groups ("DPM-Solver-fast"): they use exactly `steps` model evaluations."""
    if order == 3:  # K = steps // 3 + 1 groups, the last one or two of lower order
        groups = steps // 3 + 1
        if steps % 3 == 0:
            return [3] * (groups - 2) + [2, 1]
        return [3] * (groups - 1) + ([1] if steps % 3 == 1 else [2])
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    if order == 1:
        return [1] * steps
    raise ValueError(f"`order` must be 1, 2 or 3, got {order}.")


class DiscreteVPSchedule:
    """DPM-Solver's continuous view of a discrete process: step n sits at t_n = (n + 1)/N, log α(t) is piecewise
    linear between those points (α_t = √ᾱ), σ_t = √(1 − α_t²) and λ_t = log α_t − log σ_t (the half-logSNR)."""

    def __init__(self, alphas_cumprod: np.ndarray):
        self.total_n = len(alphas_cumprod)
        self.t_grid = np.arange(1, self.total_n + 1, dtype=np.float64) / self.total_n
        self.log_alpha_grid = 0.5 * np.log(alphas_cumprod)

    def log_alpha(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.t_grid, self.log_alpha_grid)

    def sigma(self, t: np.ndarray) -> np.ndarray:
        return np.sqrt(-np.expm1(2.0 * self.log_alpha(t)))

    def lambda_(self, t: np.ndarray) -> np.ndarray:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * np.log(-np.expm1(2.0 * log_alpha))

    def inverse_lambda(self, lam: np.ndarray) -> np.ndarray:
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * lam)  # α² = 1 / (1 + e^{-2λ})
        return np.interp(log_alpha, self.log_alpha_grid[::-1], self.t_grid[::-1])

    def model_timestep(self, t: np.ndarray) -> np.ndarray:
        """The U-Net's discrete input (t − 1/N)·N, truncated to an integer as the official MM-Diffusion wrapper
        does (`.to(torch.int)`); the 1e-6 guards float rounding just below an integer (e.g. 998.9999999 at t = 1)."""
        return np.floor((t - 1.0 / self.total_n) * self.total_n + 1e-6)


class DPMSolverSampler:
    """Singlestep DPM-Solver for a noise-prediction model, official multimodal settings by default.

    Time steps: `steps + 1` points uniform in λ between t_T = 1 and t_0 = 1/N (skip_type "logSNR"). Groups of
    `singlestep_orders(steps, order)` consecutive intervals are each one DPM-Solver-k step (paper Algorithms 1-2,
    solver type "dpm_solver"), whose intermediate points are the grid points inside the group (r1, r2 = their λ
    fractions). So the model is evaluated at grid points 0..steps-1, once each.
    """

    def __init__(self, process: DiffusionProcess, num_inference_steps: int = 20, order: int = 3):
        self.process = process
        self.schedule = DiscreteVPSchedule(process.alphas_cumprod)
        n = self.schedule.total_n
        lam_T, lam_0 = self.schedule.lambda_(np.array(1.0)), self.schedule.lambda_(np.array(1.0 / n))
        self.lambdas = np.linspace(lam_T, lam_0, num_inference_steps + 1)
        self.times = self.schedule.inverse_lambda(self.lambdas)  # continuous t, from 1 down to 1/N
        self.log_alphas = self.schedule.log_alpha(self.times)
        self.sigmas = self.schedule.sigma(self.times)
        self.orders = singlestep_orders(num_inference_steps, order)
        self.group_start = np.repeat(np.cumsum([0] + self.orders[:-1]), self.orders)  # per evaluation: its group's
        self.group_order = np.repeat(self.orders, self.orders)  # first grid point, and the group's order
        self.num_steps = num_inference_steps
        self.model_timesteps = process.model_time(self.schedule.model_timestep(self.times[:-1]))
        self._x_s: torch.Tensor | None = None
        self._eps: list[torch.Tensor] = []

    def noise_level(self, i: int) -> tuple[float, float]:
        return math.exp(self.log_alphas[i]), float(self.sigmas[i])

    def next_noise_level(self, i: int) -> tuple[float, float]:
        return math.exp(self.log_alphas[i + 1]), float(self.sigmas[i + 1])

    def step(self, eps: torch.Tensor, variance: torch.Tensor, i: int, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Take the model's ε at grid point i; return the state at grid point i + 1 and x̂_0 = (x − σ ε)/α."""
        start = int(self.group_start[i])
        if i == start:  # a new singlestep group begins at x_s
            self._x_s, self._eps = sample, []
        self._eps.append(eps)
        next_sample = self._update(start, i + 1 - start, int(self.group_order[i]))
        alpha, sigma = self.noise_level(i)
        return next_sample, (sample - sigma * eps) / alpha

    def _update(self, s: int, k: int, order: int) -> torch.Tensor:
        """State at grid point s + k from x_s and the ε at points s..s+k-1 (k <= order)."""
        x, eps = self._x_s, self._eps
        lam, log_alpha, sigma = self.lambdas, self.log_alphas, self.sigmas
        t = s + k
        h = lam[t] - lam[s]
        decay = math.exp(log_alpha[t] - log_alpha[s])  # α_t / α_s
        phi_1 = math.expm1(h)
        if k == 1:  # DPM-Solver-1 (= DDIM, η = 0): x_t = (α_t/α_s) x_s − σ_t (e^h − 1) ε_s
            return decay * x - sigma[t] * phi_1 * eps[0]
        if k == 2 and order == 2:  # DPM-Solver-2 end point, r1 = (λ_s1 − λ_s)/h
            r1 = (lam[s + 1] - lam[s]) / h
            return decay * x - sigma[t] * phi_1 * eps[0] - (0.5 / r1) * sigma[t] * phi_1 * (eps[1] - eps[0])
        r1 = (lam[s + 1] - lam[s]) / (lam[s + 3] - lam[s])
        if k == 2:  # DPM-Solver-3 second stage, to s2 (r2 h = λ_s2 − λ_s)
            r2_h = h
            r2 = r2_h / (lam[s + 3] - lam[s])
            phi_22 = math.expm1(r2_h) / r2_h - 1.0
            return decay * x - sigma[t] * phi_1 * eps[0] - (r2 / r1) * sigma[t] * phi_22 * (eps[1] - eps[0])
        # k == 3: DPM-Solver-3 end point, x_t = (α_t/α_s) x_s − σ_t φ_1 ε_s − (1/r2) σ_t (φ_1/h − 1)(ε_s2 − ε_s)
        r2 = (lam[s + 2] - lam[s]) / h
        phi_2 = phi_1 / h - 1.0
        return decay * x - sigma[t] * phi_1 * eps[0] - (1.0 / r2) * sigma[t] * phi_2 * (eps[2] - eps[0])


Sampler = DDPMSampler | DDIMSampler | DPMSolverSampler


def make_sampler(process: DiffusionProcess, sampler: str, num_inference_steps: int,
                 timestep_respacing: str | None = None, eta: float = 0.0) -> Sampler:
    """Build a sampler. DDPM respaces as the official `--timestep_respacing K` ("" for K = T); DDIM as "ddimK"."""
    if sampler == "ddpm":
        respacing = timestep_respacing if timestep_respacing is not None else (
            "" if num_inference_steps == process.num_timesteps else str(num_inference_steps))
        return DDPMSampler(process, respacing)
    if sampler == "ddim":
        respacing = timestep_respacing if timestep_respacing is not None else f"ddim{num_inference_steps}"
        return DDIMSampler(process, respacing, eta)
    if sampler == "dpm_solver":
        return DPMSolverSampler(process, num_inference_steps, order=3)
    raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}.")


__all__ = [
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "DiffusionProcess",
    "DiscreteVPSchedule",
    "Sampler",
    "make_sampler",
    "official_betas",
    "respace_betas",
    "singlestep_orders",
    "space_timesteps",
    "split_model_output",
]
