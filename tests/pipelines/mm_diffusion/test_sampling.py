"""MM-Diffusion's diffusion process, samplers and zero-shot conditioning.

- the schedule and the official `timestep_respacing` against their formulas and known values;
- diffusers' DDPM / DDIM schedulers, as configured here, against the official guided-diffusion formulas (written out
  below from the notes), step by step on random tensors, respaced and with learned sigma;
- DPM-Solver: logSNR-uniform time steps (known values), the official group orders, and exactness on problems with a
  closed-form probability-flow ODE solution;
- the pipeline: DDIM η = 0 equals a hand-written loop, λ = 0 equals the replacement sampler, the conditioning modality
  is returned as given, the guidance correction is linear in λ with the paper/code factors, resampling backs a step
  up to the right marginal and repeats the noisiest steps, batch = single runs, shapes, dtypes and input validation.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.mm_diffusion import MMDiffusionUNet
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline, frames_as_uint8, pack
from pipelines.mm_diffusion.scheduling_mm_diffusion import (
    DDIMSampler,
    DDPMSampler,
    DiffusionProcess,
    DiscreteVPSchedule,
    DPMSolverSampler,
    official_betas,
    respace_betas,
    singlestep_orders,
    space_timesteps,
)
from tests.factories import MM_DIFFUSION_GOLDEN as DATA

PROCESS = DiffusionProcess(official_betas("linear", 1000))



@pytest.fixture(scope="module")
def pipe() -> MMDiffusionPipeline:
    """The tiny golden-config U-Net (8 frames 16x16, 2048 audio samples, no random shift) with its golden weights."""
    flags = json.loads((DATA / "mm_diffusion_tiny_golden_config.json").read_text())["official_flags_equivalent"]
    model = MMDiffusionUNet.from_official_flags(**flags, num_heads=1)
    model.load_official_state_dict(load_file(DATA / "mm_diffusion_tiny_golden_weights.safetensors"))
    return MMDiffusionPipeline(model.eval())


@pytest.fixture(scope="module")
def pipe64(pipe) -> MMDiffusionPipeline:
    """The same U-Net in float64, where batch-vs-single or A-vs-B comparisons must not see the model's float32
    rounding amplified by 1/√ᾱ (up to 157) in x̂_0."""
    return MMDiffusionPipeline(copy.deepcopy(pipe.unet).double())


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# The official formulas (guided-diffusion `GaussianDiffusion`: float64 tables, cast to the sample's dtype when used)
# ---------------------------------------------------------------------------------------------------------------


class OfficialReference:
    """p_sample / ddim_sample of the official code, from guided-diffusion's tables."""

    def __init__(self, betas: np.ndarray):
        self.betas = betas
        self.ac = np.cumprod(1.0 - betas)
        self.ac_prev = np.append(1.0, self.ac[:-1])
        self.posterior_variance = betas * (1.0 - self.ac_prev) / (1.0 - self.ac)
        self.coef1 = betas * np.sqrt(self.ac_prev) / (1.0 - self.ac)
        self.coef2 = (1.0 - self.ac_prev) * np.sqrt(1.0 - betas) / (1.0 - self.ac)

    def c(self, value: float, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(value, dtype=like.dtype)

    def xstart(self, x: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        x0 = self.c(np.sqrt(1 / self.ac[t]), x) * x - self.c(np.sqrt(1 / self.ac[t] - 1), x) * eps
        return x0.clamp(-1, 1)

    def p_sample(self, x, t, eps, noise, var_values=None):
        x0 = self.xstart(x, t, eps)
        mean = self.c(self.coef1[t], x) * x0 + self.c(self.coef2[t], x) * x
        if var_values is None:  # FIXED_LARGE
            log_var = self.c(np.log(np.append(self.posterior_variance[1], self.betas[1:])[t]), x)
        else:  # LEARNED_RANGE
            min_log = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))[t]
            frac = (var_values + 1) / 2
            log_var = frac * self.c(np.log(self.betas[t]), x) + (1 - frac) * self.c(min_log, x)
        return mean + (t != 0) * torch.exp(0.5 * log_var) * noise, x0

    def ddim_sample(self, x, t, eps, noise, eta):
        x0 = self.xstart(x, t, eps)
        eps = (self.c(np.sqrt(1 / self.ac[t]), x) * x - x0) / self.c(np.sqrt(1 / self.ac[t] - 1), x)
        a, a_prev = self.ac[t], self.ac_prev[t]
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
        mean = x0 * self.c(np.sqrt(a_prev), x) + self.c(np.sqrt(1 - a_prev - sigma**2), x) * eps
        return mean + (t != 0) * self.c(sigma, x) * noise, x0


# ---------------------------------------------------------------------------------------------------------------
# Schedule and respacing
# ---------------------------------------------------------------------------------------------------------------


def test_linear_schedule_known_values():
    betas = official_betas("linear", 1000)
    assert betas[0] == 1e-4 and betas[-1] == 0.02 and betas.dtype == np.float64
    assert np.cumprod(1 - betas)[-1] == pytest.approx(4.0358e-5, rel=1e-4)  # ᾱ_1000 ≈ 4.04e-5 (joint-av.md §A2)
    assert official_betas("linear", 250)[[0, -1]] == pytest.approx([4e-4, 0.08])  # scaled by 1000 / T


def test_official_timestep_respacing():
    assert space_timesteps(1000, "") == list(range(1000))
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    assert space_timesteps(1000, "ddim30") == list(range(0, 1000, 34))
    # "25": one section of 1000 steps, stride 999/24, rounded (Python's round: 41.625 -> 42, 83.25 -> 83, ...)
    assert space_timesteps(1000, "25") == [round(k * 999 / 24) for k in range(25)]
    assert space_timesteps(1000, "25")[:6] == [0, 42, 83, 125, 166, 208] and space_timesteps(1000, "25")[-1] == 999
    # "10,15,20": sections of 334, 333, 333 steps (the first takes the remainder)
    expected = ([round(k * 333 / 9) for k in range(10)] + [334 + round(k * 332 / 14) for k in range(15)]
                + [667 + round(k * 332 / 19) for k in range(20)])
    assert space_timesteps(1000, "10,15,20") == expected
    with pytest.raises(ValueError, match="section 0 has 500 steps"):
        space_timesteps(1000, "501,1")


def test_respaced_betas_match_the_official_formula():
    ac = PROCESS.alphas_cumprod
    kept = space_timesteps(1000, "10")
    betas = respace_betas(ac, kept)
    last = 1.0
    for k, step in enumerate(kept):  # official SpacedDiffusion: β̃ = 1 − ᾱ_t / ᾱ_last over the kept steps
        assert betas[k] == pytest.approx(1 - ac[step] / last, rel=1e-15, abs=0)
        last = ac[step]
    np.testing.assert_allclose(np.cumprod(1 - betas), ac[kept], rtol=1e-12)
    sampler = DDPMSampler(PROCESS, "10")
    assert sampler.model_timesteps.tolist() == kept[::-1]  # the U-Net sees the original steps (timestep_map)
    np.testing.assert_allclose(sampler.scheduler.betas.numpy(), betas, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# diffusers' DDPM / DDIM = the official formulas
# ---------------------------------------------------------------------------------------------------------------


# float64: the same maths to rounding. float32: both sides round differently ordered products (x/√ᾱ vs √(1/ᾱ)·x, with
# factors up to 1/√ᾱ ≈ 157), so agreement is to a few float32 ulps of the result.
TOLERANCE = {torch.float64: dict(atol=1e-12, rtol=0), torch.float32: dict(atol=5e-6, rtol=5e-6)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("respacing", "learn_sigma"), [("", False), ("10", False), ("10", True)])
def test_ddpm_scheduler_matches_the_official_p_sample(respacing, learn_sigma, dtype):
    process = DiffusionProcess(PROCESS.betas, learn_sigma=learn_sigma)
    sampler = DDPMSampler(process, respacing)
    reference = OfficialReference(respace_betas(PROCESS.alphas_cumprod, sampler.kept))
    g = gen(0)
    tol = TOLERANCE[dtype]
    for i in sorted({0, 1, sampler.num_steps // 2, sampler.num_steps - 2, sampler.num_steps - 1}):
        x, eps = torch.randn(3, 64, generator=g, dtype=dtype), torch.randn(3, 64, generator=g, dtype=dtype)
        var = torch.rand(3, 64, generator=g, dtype=dtype) * 2 - 1
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        out, x0 = sampler.step(eps, var, i, x, gen(seed))
        noise = torch.randn(3, 64, generator=gen(seed), dtype=dtype)  # the draw diffusers makes from that generator
        t = sampler.index(i)
        want, want_x0 = reference.p_sample(x, t, eps, noise, var if learn_sigma else None)
        assert out.dtype == dtype
        torch.testing.assert_close(x0, want_x0, **tol)
        torch.testing.assert_close(out, want, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("respacing", "eta"), [("ddim25", 0.0), ("ddim25", 1.0), ("7", 0.5)])
def test_ddim_scheduler_matches_the_official_ddim_sample(respacing, eta, dtype):
    sampler = DDIMSampler(PROCESS, respacing, eta)
    reference = OfficialReference(respace_betas(PROCESS.alphas_cumprod, sampler.kept))
    g = gen(1)
    tol = TOLERANCE[dtype]
    for i in range(sampler.num_steps):
        x, eps = torch.randn(2, 50, generator=g, dtype=dtype), torch.randn(2, 50, generator=g, dtype=dtype)
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        out, x0 = sampler.step(eps, torch.zeros_like(eps), i, x, gen(seed))
        noise = torch.randn(2, 50, generator=gen(seed), dtype=dtype)
        want, want_x0 = reference.ddim_sample(x, sampler.index(i), eps, noise, eta)
        torch.testing.assert_close(x0, want_x0, **tol)
        torch.testing.assert_close(out, want, **tol)


# ---------------------------------------------------------------------------------------------------------------
# DPM-Solver
# ---------------------------------------------------------------------------------------------------------------


def test_dpm_solver_logsnr_time_steps_known_values():
    sampler = DPMSolverSampler(PROCESS, 20, order=3)
    ac = PROCESS.alphas_cumprod
    # λ = log α − log σ with α² = ᾱ: λ(t=1) = ½ log(ᾱ_999 / (1 − ᾱ_999)) ≈ −5.0588, λ(t=1/N) = ½ log((1 − β_1) / β_1)
    lam_T, lam_0 = 0.5 * math.log(ac[-1] / (1 - ac[-1])), 0.5 * math.log((1 - 1e-4) / 1e-4)
    assert lam_T == pytest.approx(-5.0588, abs=1e-4) and lam_0 == pytest.approx(4.6051, abs=1e-4)
    np.testing.assert_allclose(sampler.lambdas, np.linspace(lam_T, lam_0, 21), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sampler.schedule.lambda_(sampler.times), sampler.lambdas, atol=1e-9)  # uniform in λ
    assert sampler.times[0] == pytest.approx(1.0) and sampler.times[-1] == pytest.approx(1e-3)
    # the integer U-Net timesteps int((t − 1/N)·N); identical to the official float32 computation
    assert sampler.model_timesteps.int().tolist() == [999, 949, 898, 843, 784, 721, 652, 576, 492, 399, 302, 211,
                                                      138, 85, 51, 30, 16, 8, 3, 1]
    assert singlestep_orders(20, 3) == [3, 3, 3, 3, 3, 3, 2]  # official: K = 7 groups, (K − 1) × DPM-Solver-3 + one -2
    assert singlestep_orders(21, 3) == [3] * 6 + [2, 1] and singlestep_orders(19, 3) == [3] * 6 + [1]


def test_discrete_schedule_interpolates_log_alpha():
    schedule = DiscreteVPSchedule(PROCESS.alphas_cumprod)
    t = np.array([0.5005, 0.001, 1.0])  # halfway between steps 499 and 500; the first and the last step
    la = 0.5 * np.log(PROCESS.alphas_cumprod)
    np.testing.assert_allclose(schedule.log_alpha(t), [(la[499] + la[500]) / 2, la[0], la[-1]], rtol=1e-12)
    np.testing.assert_allclose(schedule.inverse_lambda(schedule.lambda_(t)), t, rtol=1e-9)


def run_dpm_solver(sampler: DPMSolverSampler, eps_fn, x: torch.Tensor) -> torch.Tensor:
    for i in range(sampler.num_steps):
        alpha, sigma = sampler.noise_level(i)
        x, _ = sampler.step(eps_fn(x, alpha, sigma), None, i, x)
    return x


def test_dpm_solver_is_exact_for_a_point_mass():
    """Data = c: the exact ε is (x_t − α_t c)/σ_t, constant along the ODE path, so every order is exact:
    x_{t_0} = α_{t_0} c + σ_{t_0} ε_T."""
    c, x_T = torch.linspace(-0.9, 0.9, 40, dtype=torch.float64), torch.randn(40, generator=gen(2), dtype=torch.float64)
    for steps in (20, 19, 21, 7):
        sampler = DPMSolverSampler(PROCESS, steps)
        out = run_dpm_solver(sampler, lambda x, a, s: (x - a * c) / s, sampler.noise_level(0)[1] * x_T
                             + sampler.noise_level(0)[0] * c)
        alpha_0, sigma_0 = sampler.next_noise_level(steps - 1)
        torch.testing.assert_close(out, alpha_0 * c + sigma_0 * x_T, atol=1e-10, rtol=0)


def test_dpm_solver_orders_converge_at_their_rates_on_gaussian_data():
    """Data ~ N(0, s²): ε*(x_t) = σ_t x_t / (α_t² s² + σ_t²), and the probability-flow ODE keeps
    x_t / √(α_t² s² + σ_t²) fixed. Against that closed form, doubling the steps must divide the error of the order-k
    singlestep solver by about 2^k (a wrong higher-order coefficient drops it to first order)."""
    s2 = 0.25
    x_T = torch.randn(1000, generator=gen(3), dtype=torch.float64)

    def error(order: int, steps: int) -> float:
        sampler = DPMSolverSampler(PROCESS, steps, order=order)
        (a_T, s_T), (a_0, s_0) = sampler.noise_level(0), sampler.next_noise_level(steps - 1)
        exact = x_T * math.sqrt(a_0**2 * s2 + s_0**2)
        out = run_dpm_solver(sampler, lambda x, a, s: s * x / (a * a * s2 + s * s),
                             x_T * math.sqrt(a_T**2 * s2 + s_T**2))
        return float((out - exact).abs().max() / exact.abs().max())

    for order in (1, 2, 3):
        rate = math.log2(error(order, 24) / error(order, 48))
        assert abs(rate - order) < 0.6, (order, rate)
    assert error(3, 20) < error(1, 20) / 10  # the official 20-step setting: far closer than DDIM-20


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_rates(pipe):
    out = pipe(sampler="ddim", num_inference_steps=2, num_samples=2, generator=gen(0))
    assert out.video.shape == (2, 8, 16, 16, 3) and out.video.dtype == np.uint8
    assert out.audio.shape == (2, 2048) and out.audio.dtype == np.float32
    assert (out.sample_rate, out.fps) == (16000, 10)
    video, audio, rate, fps = pipe(sampler="ddim", num_inference_steps=2, num_samples=2, generator=gen(0),
                                   output_type="pt", return_dict=False)
    assert video.shape == (2, 8, 16, 16, 3) and video.dtype == torch.float32 and 0 <= video.min() <= video.max() <= 1
    assert audio.shape == (2, 2048) and audio.dtype == torch.float32 and (rate, fps) == (16000, 10)
    assert np.abs(out.video.astype(int) - (video * 255).round().numpy()).max() <= 1
    np.testing.assert_array_equal(out.audio, audio.numpy())


def test_ddim_eta_0_is_deterministic_and_equals_a_hand_written_loop(pipe):
    steps, kept = 4, list(range(0, 1000, 250))  # "ddim4"
    out = pipe(sampler="ddim", num_inference_steps=steps, generator=gen(5), output_type="pt")
    again = pipe(sampler="ddim", num_inference_steps=steps, generator=gen(7), latents=None, output_type="pt")
    assert not torch.equal(out.audio, again.audio)
    repeat = pipe(sampler="ddim", num_inference_steps=steps, generator=gen(5), output_type="pt")
    assert torch.equal(out.video, repeat.video) and torch.equal(out.audio, repeat.audio)

    g = gen(5)
    video, audio = torch.randn(1, 8, 3, 16, 16, generator=g), torch.randn(1, 1, 2048, generator=g)
    ac = PROCESS.alphas_cumprod[kept]
    for k in reversed(range(steps)):  # official ddim_sample, η = 0
        eps_v, eps_a = pipe.unet(video, audio, torch.tensor([kept[k]]))
        a, a_prev = ac[k], (ac[k - 1] if k else 1.0)
        new = []
        for x, eps in ((video, eps_v), (audio, eps_a)):
            x0 = (math.sqrt(1 / a) * x - math.sqrt(1 / a - 1) * eps).clamp(-1, 1)
            eps = (math.sqrt(1 / a) * x - x0) / math.sqrt(1 / a - 1)
            new.append(x0 * math.sqrt(a_prev) + math.sqrt(1 - a_prev) * eps)
        video, audio = new
    torch.testing.assert_close(out.audio, audio[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.video, ((video + 1) / 2).clamp(0, 1).permute(0, 1, 3, 4, 2), atol=1e-5, rtol=0)


def test_batch_of_two_equals_two_single_runs(pipe64):
    pipe = pipe64
    seeds = [11, 12]
    kwargs = dict(sampler="ddpm", num_inference_steps=3, output_type="pt")
    batch = pipe(num_samples=2, generator=[gen(s) for s in seeds], **kwargs)
    for n, seed in enumerate(seeds):
        single = pipe(generator=gen(seed), **kwargs)
        torch.testing.assert_close(batch.video[n:n + 1], single.video, atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.audio[n:n + 1], single.audio, atol=1e-6, rtol=0)
    # guided A2V: per-sample losses are summed, so each sample's guidance is independent of the batch
    cond = torch.rand(2, 2048, generator=gen(3)) * 2 - 1
    kwargs.update(guidance_scale=2.0)
    batch = pipe(audio=cond, num_samples=2, generator=[gen(s) for s in seeds], **kwargs)
    single = pipe(audio=cond[1], generator=gen(seeds[1]), **kwargs)
    torch.testing.assert_close(batch.video[1:], single.video, atol=1e-6, rtol=0)


class ForcedGuidance(MMDiffusionPipeline):
    """Runs the gradient-guided step even at λ = 0."""

    @staticmethod
    def uses_guidance(cond, guidance_scale) -> bool:
        return cond is not None


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guidance_at_lambda_0_is_exactly_the_replacement_sampler(pipe, sampler):
    forced = ForcedGuidance(pipe.unet)
    audio = torch.rand(2048, generator=gen(4)) * 2 - 1
    kwargs = dict(audio=audio, sampler=sampler, num_inference_steps=3, num_samples=2, output_type="pt")
    replaced = pipe(generator=gen(8), **kwargs)
    guided = forced(generator=gen(8), guidance_scale=0.0, **kwargs)
    assert torch.equal(replaced.video, guided.video) and torch.equal(replaced.audio, guided.audio)
    moved = forced(generator=gen(8), guidance_scale=5.0, **kwargs)
    assert not torch.equal(moved.video, replaced.video)


def guided_correction(pipe, scale: float, form: str, sampler_name: str = "ddpm"):
    """(x̃_{t-1} − x_{t-1}) on the target after one guided step of an A2V run, and the sampler used."""
    from pipelines.mm_diffusion.pipeline_mm_diffusion import Condition
    from pipelines.mm_diffusion.scheduling_mm_diffusion import make_sampler

    sampler = make_sampler(pipe.process, sampler_name, 4)
    shapes = pipe.shapes(1, 8, 16, 16)
    split = math.prod(shapes[0][1:])
    clean = torch.rand(1, 2048, generator=gen(6), dtype=torch.float64) * 2 - 1
    cond = Condition("audio", clean, slice(split, None), slice(0, split))
    x = pack(torch.randn(shapes[0], generator=gen(9)), torch.randn(shapes[1], generator=gen(10))).double()
    eps_c = x[:, cond.part].clone()
    alpha, sigma = sampler.noise_level(1)
    x[:, cond.part] = alpha * clean + sigma * eps_c
    t = sampler.model_timesteps[1].expand(1)

    def model(state):
        return pipe.predict_noise(state, t, split, shapes, None)

    out, _ = pipe.guided_step(sampler, x, 1, cond, eps_c, scale, form, gen(1), model)
    plain, _ = sampler.step(*model(x), 1, x, gen(1))
    return (out - plain)[:, cond.target], sampler


def test_guidance_correction_is_linear_in_lambda_with_the_paper_and_code_factors(pipe64):
    pipe = pipe64
    one, sampler = guided_correction(pipe, 1.0, "paper")
    three, _ = guided_correction(pipe, 3.0, "paper")
    code, _ = guided_correction(pipe, 1.0, "code")
    assert one.abs().max() > 0
    torch.testing.assert_close(three, 3 * one, atol=1e-12, rtol=1e-9)
    # paper: w = √(1 − ᾱ_{t-1}) (the step's output); code: w = √ᾱ_t (its input), same gradient
    ratio = math.sqrt(1 - sampler.alphas_cumprod[sampler.index(1) - 1]) / math.sqrt(
        sampler.alphas_cumprod[sampler.index(1)])
    torch.testing.assert_close(one, ratio * code, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("sampler", ["ddpm", "dpm_solver"])
def test_replacement_returns_the_condition_as_given(pipe, sampler):
    audio = (torch.rand(2048, generator=gen(2)) * 2 - 1).numpy()
    a2v = pipe(audio=audio, sampler=sampler, num_inference_steps=3, num_samples=2, generator=gen(0))
    assert np.array_equal(a2v.audio, np.stack([audio, audio]))
    assert a2v.video.shape == (2, 8, 16, 16, 3)
    frames = torch.randint(0, 256, (8, 16, 16, 3), generator=gen(3), dtype=torch.uint8).numpy()
    v2a = pipe(video=frames, sampler=sampler, num_inference_steps=3, generator=gen(0))
    assert np.array_equal(v2a.video[0], frames) and v2a.audio.shape == (1, 2048)


def test_renoise_backs_a_step_up_to_the_marginal_of_its_input_time():
    sampler = DDPMSampler(PROCESS, "10")
    i = 3  # evaluation 3 goes from respaced step 6 to step 5
    alpha_t, sigma_t = sampler.noise_level(i)
    alpha_prev, sigma_prev = sampler.next_noise_level(i)
    x0 = torch.full((1, 400_000), 0.5, dtype=torch.float64)
    previous = alpha_prev * x0 + sigma_prev * torch.randn(x0.shape, generator=gen(0), dtype=torch.float64)
    backed_up = sampler.renoise(i, previous, gen(1))
    assert backed_up.mean().item() == pytest.approx(0.5 * alpha_t, abs=3e-3)
    assert backed_up.std().item() == pytest.approx(sigma_t, rel=5e-3)
    assert alpha_t < alpha_prev  # it really went back to a noisier time


class CountingPipeline(MMDiffusionPipeline):
    """Counts U-Net evaluations."""

    calls = 0

    def predict_noise(self, *args, **kwargs):
        self.calls += 1
        return super().predict_noise(*args, **kwargs)


@pytest.mark.parametrize(("share", "calls"), [(0.6, 5 + 2 * 3), (1.0, 5 + 2 * 4), (0.0, 5)])
def test_resampling_repeats_the_noisiest_steps_and_returns_the_condition_as_given(pipe, share, calls):
    counting = CountingPipeline(pipe.unet)
    audio = (torch.rand(2048, generator=gen(2)) * 2 - 1).numpy()
    out = counting(audio=audio, sampler="ddpm", num_inference_steps=5, resample_rounds=3, resample_share=share,
                   generator=gen(0))
    assert counting.calls == calls  # each of the resampled steps (never the last) is taken 3 times
    assert np.array_equal(out.audio[0], audio)
    plain = pipe(audio=audio, sampler="ddpm", num_inference_steps=5, generator=gen(0))
    assert np.array_equal(out.video, plain.video) == (share == 0.0)


def test_resampling_corrects_joint_samples_with_the_same_rounds(pipe):
    counting = CountingPipeline(pipe.unet)
    out = counting(sampler="ddim", num_inference_steps=5, resample_rounds=3, generator=gen(0))
    assert counting.calls == 5 + 2 * 3  # the noisiest 60 % of the steps, never the last, taken 3 times
    plain = pipe(sampler="ddim", num_inference_steps=5, generator=gen(0))
    assert not np.array_equal(out.video, plain.video) and not np.array_equal(out.audio, plain.audio)
    again = pipe(sampler="ddim", num_inference_steps=5, resample_rounds=3, generator=gen(0))
    assert np.array_equal(out.video, again.video) and np.array_equal(out.audio, again.audio)  # seeded


def test_callback_sees_every_step_with_lazy_tensors_and_interrupt_stops(pipe):
    seen = []

    def callback(called, step, timestep, callback_kwargs):
        seen.append((step, timestep, sorted(callback_kwargs)))
        assert callback_kwargs["denoised_video"].shape == (1, 8, 3, 16, 16)
        assert callback_kwargs["audio"].shape == (1, 1, 2048)
        preview = callback_kwargs["preview"]  # x̂_0's frames, as the tab shows them
        assert preview.dtype == np.uint8 and preview.shape == (1, 8, 16, 16, 3)
        np.testing.assert_array_equal(preview, frames_as_uint8(callback_kwargs["denoised_video"]).numpy())
        if step == 1:
            called._interrupt = True
        return {}

    pipe(sampler="dpm_solver", num_inference_steps=6, generator=gen(0), callback_on_step_end=callback)
    assert [s[0] for s in seen] == [0, 1] and seen[0][1] == 999
    assert seen[0][2] == ["audio", "denoised_audio", "denoised_video", "preview", "video"]


def test_a_callback_that_returns_audio_replaces_the_state(pipe):
    def silence_at_the_last_step(called, step, timestep, callback_kwargs):
        return {"audio": torch.zeros_like(callback_kwargs["audio"])} if step == 2 else {}

    kwargs = dict(sampler="ddim", num_inference_steps=3, output_type="pt")
    silenced = pipe(generator=gen(0), callback_on_step_end=silence_at_the_last_step, **kwargs)
    plain = pipe(generator=gen(0), **kwargs)
    assert not silenced.audio.any() and plain.audio.any()
    assert torch.equal(silenced.video, plain.video)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(video=np.zeros((8, 16, 16, 3), np.uint8), audio=np.zeros(2048, np.float32)), "at most one of `video`"),
        (dict(sampler="euler"), "`sampler` must be one of"),
        (dict(num_inference_steps=0), "`num_inference_steps` must be an integer >= 1"),
        (dict(num_inference_steps=1001, sampler="ddpm"), "at most the 1000"),
        (dict(eta=0.5, sampler="ddpm"), "`eta` only applies"),
        (dict(guidance_scale=float("nan")), "`guidance_scale` must be a finite"),
        (dict(guidance_scale_form="both"), "`guidance_scale_form` must be"),
        (dict(audio=np.zeros(2048, np.float32), guidance_scale=1.0, sampler="dpm_solver"), "needs sampler='ddpm'"),
        (dict(audio=np.zeros(2048, np.float32), resample_rounds=0), "`resample_rounds` must be an integer >= 1"),
        (dict(audio=np.zeros(2048, np.float32), resample_share=1.5), "`resample_share` must be a share"),
        (dict(audio=np.zeros(2048, np.float32), resample_rounds=2, sampler="dpm_solver"), "Resampling .* needs"),
        (dict(num_samples=2, generator=[torch.Generator()]), "list of 1 generators"),
        (dict(num_frames=2), "smaller than the U-Net's largest RS-MMA window"),
        (dict(width=0), "`width` must be a positive integer"),
        (dict(height=18), "do not fit the U-Net"),
        (dict(audio=np.zeros(1000, np.float32)), "mono waveform of 2048 samples"),
        (dict(audio=np.full(2048, 2.0, np.float32)), "in \\[-1, 1\\]"),
        (dict(video=np.zeros((8, 16, 16), np.uint8)), "`video` must have shape"),
        (dict(video=np.full((8, 16, 16, 3), 3.0, np.float32)), "float `video` must be finite and in \\[0, 1\\]"),
        (dict(sampler="ddim", timestep_respacing="ddim7x"), "`timestep_respacing`='ddim7x'"),
        (dict(timestep_respacing="10"), "applies to 'ddpm' and 'ddim' only"),
        (dict(latents=(torch.zeros(1, 8, 3, 16, 16), torch.zeros(1, 1, 10))), "`latents` audio noise"),
        (dict(output_type="pil"), "`output_type` must be"),
        (dict(callback_on_step_end_tensor_inputs=["latents"]), "has \\['latents'\\]"),
    ],
)
def test_input_validation(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)
