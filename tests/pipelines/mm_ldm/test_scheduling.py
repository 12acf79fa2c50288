"""MM-LDM's schedule, forward process, guidance and objective, with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.mm_ldm.scheduling_mm_ldm import (
    condition_masks,
    dit_training_loss,
    forward_noise,
    guided_noise,
    make_scheduler,
    mm_ldm_loss,
    renoise,
    resampled,
    sample_timesteps,
)


def test_schedule_is_ldms_scaled_linear_with_1000_steps():
    scheduler = make_scheduler()
    expected = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(scheduler.betas.double(), expected, rtol=1e-6, atol=0)
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(4.66e-3, rel=0.01)
    assert not scheduler.config.clip_sample


def test_ddim_50_steps_are_ldms_uniform_steps():
    scheduler = make_scheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))


def test_ddim_step_with_eta_zero_is_the_ddim_formula():
    scheduler = make_scheduler()
    scheduler.set_timesteps(50)
    x, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    t, prev = 981, 961
    a_t, a_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[prev]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(scheduler.step(eps, t, x).prev_sample, expected, rtol=1e-5, atol=1e-5)


def test_forward_noise_uses_the_square_root_of_one_minus_alpha_bar():
    scheduler = make_scheduler()
    clean, noise = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 499, 999])
    a = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(forward_noise(scheduler, clean, noise, t), a.sqrt() * clean + (1 - a).sqrt() * noise)
    torch.testing.assert_close(forward_noise(scheduler, clean, noise, t), scheduler.add_noise(clean, noise, t))
    # The printed Eq. 5, (1 − ᾱ) n, would not keep unit variance; the corrected one does:
    big = forward_noise(scheduler, torch.randn(20000), torch.randn(20000), torch.full((1,), 500))
    assert float(big.var()) == pytest.approx(1.0, abs=0.05)


def test_guidance_identities():
    uncond, cond = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(guided_noise(uncond, cond, 1.0), cond)
    torch.testing.assert_close(guided_noise(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(guided_noise(uncond, cond, 3.0), uncond + 3.0 * (cond - uncond))


def test_loss_is_the_sum_of_the_two_mean_squared_errors():
    noise_a, noise_v = torch.randn(8, 4, 2, 2), torch.randn(8, 4, 4, 4)
    zero = mm_ldm_loss(torch.zeros_like(noise_a), noise_a, torch.zeros_like(noise_v), noise_v)
    torch.testing.assert_close(zero, noise_a.pow(2).mean() + noise_v.pow(2).mean())
    assert float(mm_ldm_loss(noise_a, noise_a, noise_v, noise_v)) == 0.0


def test_each_condition_is_kept_for_five_percent_and_never_both():
    audio, video = condition_masks(200_000, torch.Generator().manual_seed(0))
    assert not (audio & video).any()
    assert float(audio.float().mean()) == pytest.approx(0.05, abs=0.002)
    assert float(video.float().mean()) == pytest.approx(0.05, abs=0.002)


def test_timesteps_cover_zero_to_t_minus_one():
    t = sample_timesteps(50_000, torch.Generator().manual_seed(0))
    assert int(t.min()) == 0 and int(t.max()) == 999


def test_dit_training_loss_starts_at_two_and_feeds_the_kept_conditions():
    from pipelines.mm_ldm.modeling_dit import MMLDMTransformer

    torch.manual_seed(0)
    model = MMLDMTransformer(audio_latent_size=(4, 2, 2), video_latent_size=(4, 4, 4), hidden_size=32, depth=1,
                             num_heads=4)
    audio, video = torch.randn(512, 4, 2, 2), torch.randn(512, 4, 4, 4)
    seen = {}

    def spy(audio_t, video_t, t, audio_condition, video_condition):
        seen.update(audio=audio_condition, video=video_condition)
        return model(audio_t, video_t, t, audio_condition, video_condition)

    loss = dit_training_loss(spy, make_scheduler(), audio, video, torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(2.0, abs=0.05)
    kept_audio = seen["audio"].flatten(1).any(1)
    kept_video = seen["video"].flatten(1).any(1)
    assert not (kept_audio & kept_video).any()
    assert 10 <= int(kept_audio.sum()) <= 45 and 10 <= int(kept_video.sum()) <= 45  # 5 % of 512 ≈ 26 each
    torch.testing.assert_close(seen["audio"][kept_audio], audio[kept_audio])
    torch.testing.assert_close(seen["video"][kept_video], video[kept_video])


def test_resampling_repeats_the_noisiest_share_of_the_steps_and_never_the_last():
    assert [i for i in range(50) if resampled(i, 50, 0.6)] == list(range(30))
    assert [i for i in range(50) if resampled(i, 50, 1.0)] == list(range(49))
    assert not any(resampled(i, 50, 0.0) for i in range(50))


def test_renoise_draws_from_q_of_z_t_given_z_t_minus_one():
    """z^t = √(ᾱ_t/ᾱ_{t-1}) z^{t-1} + √(1 − ᾱ_t/ᾱ_{t-1}) n: the noise is recovered exactly, and from forward-noised
    z^{t-1} of a fixed z^0 the result has q(z^t | z^0)'s mean and variance (the marginal the next step expects)."""
    scheduler = make_scheduler()
    alphas = scheduler.alphas_cumprod
    previous = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    ratio = alphas[981] / alphas[961]
    torch.testing.assert_close(renoise(scheduler, previous, 981, 961, noise), ratio.sqrt() * previous
                               + (1 - ratio).sqrt() * noise)
    clean = torch.full((200_000,), 0.7)
    generator = torch.Generator().manual_seed(2)
    at_previous = forward_noise(scheduler, clean, torch.randn(clean.shape, generator=generator), torch.tensor([461]))
    backed_up = renoise(scheduler, at_previous, 481, 461, torch.randn(clean.shape, generator=generator))
    assert float(backed_up.mean()) == pytest.approx(float(alphas[481].sqrt()) * 0.7, abs=0.01)
    assert float(backed_up.var()) == pytest.approx(float(1 - alphas[481]), abs=0.01)
