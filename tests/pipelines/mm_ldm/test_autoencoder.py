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



@torch.no_grad()
def test_conditions_computed_once_give_what_denoise_gives_at_every_step():
    model = tiny_autoencoder(per_frame_audio_condition=True, per_frame_latent_condition=True)
    randomize_zero_initialised(model)
    noisy, _, modality, latent, labels, other, index = decoder_inputs(model, "video")
    drop = torch.tensor([False, True])
    conditions = model.decoder_conditions(modality, latent, labels, other, index, drop)
    for step in (999, 500, 1):
        t = torch.full((2,), step)
        torch.testing.assert_close(model.denoise_with(noisy, t, conditions),
                                   model.denoise(noisy, t, modality, latent, labels, other, index, drop))

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


def test_the_decoder_predicts_epsilon_or_v_and_either_gives_back_the_clean_latent():
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    scheduler = make_scheduler()
    generator = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    t = torch.tensor([0, 500, 999])
    noisy = scheduler.add_noise(clean, noise, t)
    alphas = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    velocity = alphas.sqrt() * noise - (1 - alphas).sqrt() * clean
    assert tiny_autoencoder().config.decoder_prediction_type == "epsilon"  # the released configs
    for kind, expected in (("epsilon", noise), ("v_prediction", velocity)):
        model = tiny_autoencoder(decoder_prediction_type=kind)
        target = model.decoder_target(scheduler, clean, noise, t)
        torch.testing.assert_close(target, expected)
        torch.testing.assert_close(model.predicted_original(scheduler, noisy, target, t), clean, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="decoder_prediction_type"):
        tiny_autoencoder(decoder_prediction_type="sample")


def test_v_weighs_an_error_of_the_clean_latent_by_one_plus_snr_and_epsilon_by_snr():
    """Why the studio decoder predicts v: at the noisiest steps ε's loss barely sees what x̂_0 gets wrong."""
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    scheduler = make_scheduler()
    generator = torch.Generator().manual_seed(1)
    clean, noise = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor([100, 999])
    noisy = scheduler.add_noise(clean, noise, t)
    wrong = clean + 0.1 * torch.randn(clean.shape, generator=generator)  # an x̂_0 with an error
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    x0_error = (wrong - clean).pow(2).flatten(1).sum(1)
    for kind, weight in (("epsilon", snr), ("v_prediction", 1 + snr)):
        model = tiny_autoencoder(decoder_prediction_type=kind)
        # the output that gives x̂_0 = wrong at `noisy`: the target computed as if `wrong` were the clean latent
        output = model.decoder_target(scheduler, wrong, (noisy - alphas.sqrt().reshape(-1, 1, 1, 1) * wrong)
                                      / (1 - alphas).sqrt().reshape(-1, 1, 1, 1), t)
        error = (output - model.decoder_target(scheduler, clean, noise, t)).pow(2).flatten(1).sum(1)
        torch.testing.assert_close(error, weight * x0_error, rtol=1e-4, atol=1e-6)
    assert float(snr[1]) < 5e-3  # at t = 999 ε weighs it by under 0.5 %, v by over 100 %


def with_a_new_path(option: str, prefix: str) -> tuple[MultiModalAutoencoder, MultiModalAutoencoder]:
    """A trained-looking tiny autoencoder, and the same weights with `option` on: only the path under `prefix` new."""
    plain = tiny_autoencoder()
    randomize_zero_initialised(plain)
    model = tiny_autoencoder(**{option: True})
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith(prefix) for name in missing)
    return plain, model


@torch.no_grad()
def test_the_per_frame_audio_path_starts_at_zero_then_gives_each_frame_its_own_share_of_the_sound():
    plain, model = with_a_new_path("per_frame_audio_condition", "frame_sound.")
    noisy, t, modality, latent, labels, other, index = decoder_inputs(model, "video")
    out = model.denoise(noisy, t, modality, latent, labels, other, index)
    torch.testing.assert_close(out, plain.denoise(noisy, t, modality, latent, labels, other, index))  # zero at first
    randomize_zero_initialised(model.frame_sound)
    out = model.denoise(noisy, t, modality, latent, labels, other, index)
    assert (out - plain.denoise(noisy, t, modality, latent, labels, other, index)).abs().max() > 1e-4
    # each frame index picks its own embedding of the same sound:
    extra = model.frame_sound(other.flatten(1)).unflatten(1, (model.config.num_frames, -1))
    assert (extra[:, 0] - extra[:, 7]).abs().max() > 1e-4
    # a dropped row (the decoder's unconditional branch) hears nothing:
    drop = torch.ones(2, dtype=torch.bool)
    torch.testing.assert_close(model.denoise(noisy, t, modality, latent, labels, other, index, drop),
                               model.denoise(noisy, t, modality, latent, labels, other * 0, index, drop))
    audio_rows = decoder_inputs(model, "audio")
    torch.testing.assert_close(model.denoise(*audio_rows), plain.denoise(*audio_rows))  # audio rows: no such path
    with pytest.raises(ValueError, match="cross_modal_condition"):
        tiny_autoencoder(per_frame_audio_condition=True, cross_modal_condition=False)


@torch.no_grad()
def test_the_per_frame_latent_path_starts_at_zero_then_reads_each_frame_from_the_video_latent():
    plain, model = with_a_new_path("per_frame_latent_condition", "frame_latent.")
    noisy, t, modality, latent, labels, other, index = decoder_inputs(model, "video")
    torch.testing.assert_close(model.denoise(noisy, t, modality, latent, labels, other, index),
                               plain.denoise(noisy, t, modality, latent, labels, other, index))  # zero at first
    randomize_zero_initialised(model.frame_latent)
    extra = model.frame_latent(latent.flatten(1)).unflatten(1, (model.config.num_frames, -1))
    torch.testing.assert_close(model.per_frame(model.frame_latent, latent, index), extra[[0, 1], index])
    assert (extra[:, 0] - extra[:, 7]).abs().max() > 1e-4  # each frame its own readout of the same latent
    # The trained path moves the output with the latent, beyond what the other latent paths do:
    def moved(net: MultiModalAutoencoder) -> torch.Tensor:
        doubled = net.denoise(noisy, t, modality, latent * 2, labels, other, index)
        return doubled - net.denoise(noisy, t, modality, latent, labels, other, index)

    assert (moved(model) - moved(plain)).abs().max() > 1e-4
    audio_rows = decoder_inputs(model, "audio")
    torch.testing.assert_close(model.denoise(*audio_rows), plain.denoise(*audio_rows))  # audio rows: no such path


def recorded_decoder_calls(model: MultiModalAutoencoder, monkeypatch) -> dict[str, dict[str, torch.Tensor]]:
    """Filled, per modality, with the arguments of the last `denoise` call of `model` (as `training_losses` makes)."""
    seen = {}
    denoise = model.denoise

    def record(noisy, timesteps, modality, latent, labels, other, frame_index=None, drop=None):
        seen[modality] = {"timesteps": timesteps, "latent": latent, "other": other, "frame_index": frame_index}
        return denoise(noisy, timesteps, modality, latent, labels, other, frame_index, drop)

    monkeypatch.setattr(model, "denoise", record)
    return seen


def test_cross_modal_drop_silences_the_other_modality_for_that_share_of_rows_and_keeps_the_own_latent(monkeypatch):
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    model = tiny_autoencoder()
    audio, video = inputs(batch=64)
    seen = recorded_decoder_calls(model, monkeypatch)
    labels = torch.zeros(64, dtype=torch.long)
    for share, expected in ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0)):
        model.training_losses(audio, video, labels, make_scheduler(), torch.Generator().manual_seed(0),
                              cross_modal_drop=share)
        for modality in ("audio", "video"):
            latent, other = seen[modality]["latent"], seen[modality]["other"]
            silent = other.flatten(1).abs().amax(dim=1) == 0
            assert float(silent.float().mean()) == pytest.approx(expected, abs=0.15)
            assert bool((latent.flatten(1).abs().amax(dim=1) > 0).all())  # the own latent is kept
    with pytest.raises(ValueError, match="cross_modal_drop"):
        model.training_losses(audio, video, labels, make_scheduler(), cross_modal_drop=1.5)


def test_decoder_timesteps_are_uniform_or_partly_among_the_noisiest():
    from pipelines.mm_ldm.modeling_autoencoder import HIGH_NOISE_FRACTION, decoder_timesteps

    uniform = decoder_timesteps(20_000, 1000, 0.0, torch.Generator().manual_seed(0))
    assert int(uniform.min()) == 0 and int(uniform.max()) == 999
    assert float((uniform >= 850).float().mean()) == pytest.approx(0.15, abs=0.01)
    assert HIGH_NOISE_FRACTION == 0.15
    assert int(decoder_timesteps(1000, 1000, 1.0, torch.Generator().manual_seed(0)).min()) >= 850
    half = decoder_timesteps(20_000, 1000, 0.5, torch.Generator().manual_seed(0))
    assert float((half >= 850).float().mean()) == pytest.approx(0.5 + 0.5 * 0.15, abs=0.01)
    with pytest.raises(ValueError, match="high_noise_share"):
        decoder_timesteps(4, 1000, 1.5)


def test_training_rows_are_the_audio_image_and_distinct_frames_of_each_clip(monkeypatch):
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    model = tiny_autoencoder()
    audio, video = inputs(batch=3)
    seen = recorded_decoder_calls(model, monkeypatch)
    model.training_losses(audio, video, torch.zeros(3, dtype=torch.long), make_scheduler(),
                          torch.Generator().manual_seed(0), frames_per_clip=4, high_noise_share=1.0)
    assert len(seen["audio"]["timesteps"]) == 3 and len(seen["video"]["timesteps"]) == 3 * 4
    assert all(len(set(frames.tolist())) == 4 for frames in seen["video"]["frame_index"].reshape(3, 4))
    assert int(min(seen["audio"]["timesteps"].min(), seen["video"]["timesteps"].min())) >= 850
    with pytest.raises(ValueError, match="frames_per_clip"):
        model.training_losses(audio, video, torch.zeros(3, dtype=torch.long), make_scheduler(), frames_per_clip=9)


@torch.no_grad()
def test_keyframe_skips_start_at_zero_then_let_each_keyframe_write_into_the_video_latent():
    plain, model = with_a_new_path("keyframe_skips", "keyframe_paths.")
    _, frames = inputs()
    torch.testing.assert_close(model.encode_video(frames).mean, plain.encode_video(frames).mean)  # zero at first
    randomize_zero_initialised(model.keyframe_paths)
    last = model.keyframes[-1]
    changed = frames.clone()
    changed[:, last] += 1.0  # one keyframe brighter

    def moved(net: MultiModalAutoencoder) -> torch.Tensor:
        return net.encode_video(changed).mean - net.encode_video(frames).mean

    assert (moved(model) - moved(plain)).abs().max() > 1e-3  # its own path carries the change straight into z_v
    unread = frames.clone()
    unread[:, 1] += 1.0  # frame 1 is no keyframe of 8: nothing moves
    torch.testing.assert_close(model.encode_video(unread).mean, model.encode_video(frames).mean)
