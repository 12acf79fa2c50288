"""The multi-modal DiT: token layout, zero-initialised paths and the initial loss, with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.mm_ldm.modeling_dit import MMLDMTransformer, sincos_positions
from pipelines.mm_ldm.scheduling_mm_ldm import forward_noise, make_scheduler, mm_ldm_loss, sample_timesteps

from .conftest import randomize_zero_initialised


def tiny_dit(**overrides) -> MMLDMTransformer:
    torch.manual_seed(0)
    config = {"audio_latent_size": (4, 2, 2), "video_latent_size": (4, 4, 4), "hidden_size": 32, "depth": 2,
              "num_heads": 4, **overrides}
    return MMLDMTransformer(**config)


def latents(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 2, 2, generator=generator), torch.randn(batch, 4, 4, 4, generator=generator)


def test_sincos_positions_are_dits_grid():
    """DiT's numpy construction: meshgrid(w, h), half the width per axis, sin then cos of pos · 10000^(-k/(D/4))."""
    dim, height, width = 8, 2, 3
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))

    def one_axis(pos):
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    grid_w, grid_h = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    expected = np.concatenate([one_axis(grid_w), one_axis(grid_h)], axis=1)
    np.testing.assert_allclose(sincos_positions(dim, height, width).numpy(), expected, atol=1e-6)


@torch.no_grad()
def test_outputs_are_zero_at_initialisation_and_the_initial_loss_is_two():
    model = tiny_dit()
    scheduler = make_scheduler()
    generator = torch.Generator().manual_seed(1)
    clean_a, clean_v = latents(batch=256)
    noise_a, noise_v = torch.randn(clean_a.shape, generator=generator), torch.randn(clean_v.shape, generator=generator)
    t = sample_timesteps(256, generator)
    noisy_a, noisy_v = forward_noise(scheduler, clean_a, noise_a, t), forward_noise(scheduler, clean_v, noise_v, t)
    eps_a, eps_v = model(noisy_a, noisy_v, t)
    assert eps_a.shape == clean_a.shape and eps_v.shape == clean_v.shape
    assert not eps_a.any() and not eps_v.any()
    assert float(mm_ldm_loss(eps_a, noise_a, eps_v, noise_v)) == pytest.approx(2.0, abs=0.1)


def test_zero_initialised_condition_embeddings_make_conditional_equal_unconditional():
    model = tiny_dit()
    randomize_zero_initialised(model.blocks)  # every block active, final layers too: only the condition paths are 0
    randomize_zero_initialised(model.audio_out)
    randomize_zero_initialised(model.video_out)
    audio, video = latents()
    condition_a, condition_v = latents(seed=5)
    t = torch.tensor([10, 500, 990])
    unconditional = model(audio, video, t)
    assert unconditional[0].abs().max() > 0
    for conditional in (model(audio, video, t, audio_condition=condition_a),
                        model(audio, video, t, video_condition=condition_v)):
        torch.testing.assert_close(conditional, unconditional, rtol=0, atol=0)
    randomize_zero_initialised(model)  # once trained, the condition paths count
    differs = model(audio, video, t, audio_condition=condition_a)[1] - model(audio, video, t)[1]
    assert differs.abs().max() > 1e-3


def test_none_is_the_zero_null_condition():
    model = tiny_dit()
    randomize_zero_initialised(model)
    audio, video = latents()
    t = torch.tensor([3, 4, 5])
    torch.testing.assert_close(model(audio, video, t),
                               model(audio, video, t, torch.zeros_like(audio), torch.zeros_like(video)))


def test_every_token_sees_both_modalities():
    """Shared blocks over [EOS_a, audio, EOS_v, video]: changing the audio changes the video prediction."""
    model = tiny_dit()
    randomize_zero_initialised(model)
    audio, video = latents()
    t = torch.tensor([100, 100, 100])
    _, before = model(audio, video, t)
    _, after = model(audio + 1.0, video, t)
    assert (after - before).abs().max() > 1e-3


def test_sequence_length_and_paper_width_check():
    assert tiny_dit().num_tokens == 2 + 4 + 16
    with pytest.raises(ValueError, match="divisible"):
        tiny_dit(hidden_size=30, num_heads=4)
