"""The multi-modal autoencoder: latent sizes, keyframes, posteriors, semantic heads and the shared decoder."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.mm_ldm.modeling_autoencoder import ContrastiveHead, MultiModalAutoencoder, keyframe_indices
from pipelines.mm_ldm.modeling_mm_ldm import build_components

from .conftest import randomize_zero_initialised


def tiny_autoencoder(**overrides) -> MultiModalAutoencoder:
    torch.manual_seed(0)
    if not overrides:
        return build_components("tiny")["autoencoder"]
    return MultiModalAutoencoder(**{**build_components("tiny")["autoencoder"].config, **overrides})


def inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-VAE latents of audio images [B, 4, 8, 8] and of clips [B, 8, 4, 8, 8] (the tiny preset's sizes)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=generator), torch.randn(batch, 8, 4, 8, 8, generator=generator)


def test_keyframes_are_the_released_indices():
    assert keyframe_indices(16, 4) == (0, 5, 10, 15)
    assert keyframe_indices(8, 4) == (0, 2, 5, 7)
    with pytest.raises(ValueError):
        keyframe_indices(3, 4)


def test_encoders_give_gaussians_of_the_latent_shapes():
    model = tiny_autoencoder()
    audio, video = inputs()
    (audio_shape, video_shape) = model.latent_shapes()
    assert audio_shape == (4, 2, 2) and video_shape == (4, 4, 4)  # f_a = 4, f_v = 2 on the 8 × 8 VAE latent
    q_audio, q_video = model.encode_audio(audio), model.encode_video(video)
    assert q_audio.mean.shape == (2, *audio_shape) and q_video.mean.shape == (2, *video_shape)
    kl = q_audio.kl()
    expected = 0.5 * (q_audio.mean.pow(2) + q_audio.var - 1 - q_audio.logvar).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kl, expected)


@torch.no_grad()
def test_the_video_latent_reads_only_the_keyframes():
    model = tiny_autoencoder()
    _, video = inputs()
    changed = video.clone()
    others = [i for i in range(8) if i not in model.keyframes]
    changed[:, others] += 5.0
    torch.testing.assert_close(model.encode_video(changed).mean, model.encode_video(video).mean)
    changed[:, model.keyframes[1]] += 1.0
    assert (model.encode_video(changed).mean - model.encode_video(video).mean).abs().max() > 1e-4


@torch.no_grad()
def test_classification_loss_is_ln_k_at_initialisation():
    model = tiny_autoencoder()
    audio, video = inputs(batch=6)
    s_audio, s_video = model.semantics(model.encode_audio(audio).mean, model.encode_video(video).mean)
    assert s_audio.shape == (6, 4, 16)  # 2 × 2 grid of 16-wide tokens
    loss = model.classification_loss(s_audio, s_video, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert float(loss) == pytest.approx(math.log(3), abs=1e-6)


@torch.no_grad()
def test_contrastive_loss_is_ln_b_at_chance():
    torch.manual_seed(0)
    head = ContrastiveHead(64, 256)
    same = torch.randn(1, 4, 64).expand(8, -1, -1)  # pairs the head cannot tell apart: every logit equal
    assert float(head(same, same)) == pytest.approx(math.log(8), abs=1e-5)
    audio, video = torch.randn(8, 4, 64), torch.randn(8, 4, 64)  # independent random features at initialisation
    assert float(head(audio, video)) == pytest.approx(math.log(8), abs=0.35)
    aligned = torch.randn(8, 4, 64)  # matched pairs identical: far below chance
    head.video_proj.load_state_dict(head.audio_proj.state_dict())
    assert float(head(aligned, aligned)) < 0.1
    assert float(head.temperature_a2v) == pytest.approx(0.07) and float(head.temperature_v2a) == pytest.approx(0.07)


def test_projectors_read_detached_latents_as_the_released_code():
    audio, video = inputs()
    for detach in (True, False):
        model = tiny_autoencoder(detach_projector_inputs=detach)
        s_audio, s_video = model.semantics(model.encode_audio(audio).mean, model.encode_video(video).mean)
        model.contrastive_loss(s_audio, s_video).backward()
        reached = model.audio_encoder.conv_in.weight.grad
        assert (reached is None) == detach
        assert model.audio_projector.net[0].weight.grad is not None


def decoder_inputs(model: MultiModalAutoencoder, modality: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = model.latent_shapes()[0 if modality == "audio" else 1]
    noisy = torch.randn(2, 4, 8, 8, generator=generator)
    latent = torch.randn(2, *shape, generator=generator)
    other = torch.randn(2, 4, 16, generator=generator)
    index = None if modality == "audio" else torch.tensor([0, 7])
    return noisy, torch.tensor([10, 900]), modality, latent, torch.tensor([0, 2]), other, index


@torch.no_grad()
def test_zero_initialised_latent_paths_leave_the_decoder_unconditioned_on_its_latent_at_initialisation():
    model = tiny_autoencoder()
    randomize_zero_initialised(model.decoder)  # a working U-Net; the hint and content paths stay zero
    for modality in ("audio", "video"):
        noisy, t, _, latent, labels, other, index = decoder_inputs(model, modality)
        out = model.denoise(noisy, t, modality, latent, labels, other, index)
        assert out.shape == noisy.shape
        torch.testing.assert_close(model.denoise(noisy, t, modality, latent * 3 + 1, labels, other, index), out)
        assert (model.denoise(noisy, t, modality, latent, labels, other * 2, index) - out).abs().max() > 1e-4


@torch.no_grad()
def test_the_decoder_uses_its_latent_frame_index_and_drop_once_trained():
    model = tiny_autoencoder()
    randomize_zero_initialised(model)
    noisy, t, modality, latent, labels, other, index = decoder_inputs(model, "video")
    out = model.denoise(noisy, t, modality, latent, labels, other, index)
    assert (model.denoise(noisy, t, modality, latent + 1, labels, other, index) - out).abs().max() > 1e-4
    assert (model.denoise(noisy, t, modality, latent, labels, other, torch.tensor([1, 6])) - out).abs().max() > 1e-4
    # Dropped rows see zero context and a zero latent, whatever they were given:
    drop = torch.tensor([True, False])
    dropped = model.denoise(noisy, t, modality, latent, labels, other, index, drop)
    everything = torch.ones(2, dtype=torch.bool)
    blank = model.denoise(noisy, t, modality, torch.zeros_like(latent), labels, other, index, drop=everything)
    torch.testing.assert_close(dropped[0], blank[0])
    torch.testing.assert_close(dropped[1], out[1])
    with pytest.raises(ValueError, match="frame_index"):
        model.denoise(noisy, t, "audio", latent, labels, other, index)


def test_training_losses_are_eq_3_without_the_adversarial_term():
    from pipelines.mm_ldm.modeling_autoencoder import LOSS_WEIGHTS
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    model = tiny_autoencoder()
    audio, video = inputs(batch=4)
    labels = torch.tensor([0, 1, 2, 1])
    losses = model.training_losses(audio, video, labels, make_scheduler(), torch.Generator().manual_seed(0))
    assert float(losses["classification"].detach()) == pytest.approx(math.log(3), abs=1e-6)
    assert float(losses["kl"].detach()) > 0 and float(losses["mse"].detach()) > 0
    weighted = sum(LOSS_WEIGHTS[name] * losses[name] for name in ("classification", "contrastive", "kl"))
    expected = losses["mse"] + weighted
    torch.testing.assert_close(losses["total"], expected)
    assert LOSS_WEIGHTS == {"classification": 0.1, "contrastive": 0.1, "kl": 1e-9}
    losses["total"].backward()
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0
    assert model.audio_projector.net[0].weight.grad.abs().sum() > 0
    assert model.video_encoder.conv_out.weight.grad.abs().sum() > 0  # the KL term reaches the encoders
    again = model.training_losses(audio, video, labels, make_scheduler(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(again["total"], losses["total"])
