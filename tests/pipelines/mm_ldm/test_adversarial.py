"""MM-LDM's adversarial loss (Eq. 2): triplets, hinge losses, an order-aware discriminator, and its place in Eq. 3."""

from __future__ import annotations

import pytest
import torch

from pipelines.mm_ldm.modeling_autoencoder import ADVERSARIAL_WEIGHT, LOSS_WEIGHTS, frame_pairs
from pipelines.mm_ldm.modeling_discriminator import (
    TripletDiscriminator,
    gan_triplets,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from pipelines.mm_ldm.modeling_mm_ldm import build_components


def tiny_discriminator() -> TripletDiscriminator:
    torch.manual_seed(0)
    return TripletDiscriminator(channels=16, down=2, depth=1, head_dim=8, norm_groups=4)


def test_triplets_are_the_released_real_and_fake_sets():
    a, vi, vj, fa, fi, fj = (torch.full((1,), float(k)) for k in range(6))
    real, fakes, generated = gan_triplets(a, vi, vj, fa, fi, fj)
    names = {id(t): n for t, n in zip((a, vi, vj, fa, fi, fj), ("a", "vi", "vj", "ā", "v̄i", "v̄j"))}

    def spelled(triplet):
        return tuple(names[id(t)] for t in triplet)

    assert spelled(real) == ("a", "vi", "vj")
    assert [spelled(f) for f in fakes] == [("ā", "v̄i", "v̄j"), ("ā", "v̄i", "vj"), ("ā", "vi", "v̄j"),
                                           ("ā", "v̄j", "v̄i")]  # the last one order-swapped
    assert spelled(generated) == ("ā", "v̄i", "v̄j")


def test_hinge_losses_have_their_known_values():
    real = torch.tensor([2.0, 0.0])  # relu(1 − 2) = 0, relu(1 − 0) = 1 -> 0.5
    fakes = [torch.tensor([-2.0, 0.0]), torch.tensor([1.0, 1.0])]  # 0.5 and 2.0 -> 1.25
    assert float(hinge_discriminator_loss(real, fakes)) == pytest.approx(0.5 + 1.25)
    assert float(hinge_generator_loss(torch.tensor([1.0, 3.0]))) == pytest.approx(-2.0)


@torch.no_grad()
def test_the_discriminator_scores_each_triplet_and_hears_the_frame_order():
    model = tiny_discriminator()
    a, x, y = torch.randn(3, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    scores = model(a, x, y)
    assert scores.shape == (2,)
    assert (model(a, y, x) - scores).abs().max() > 1e-5
    torch.testing.assert_close(model(a[:1], x[:1], y[:1]), scores[:1], rtol=1e-5, atol=1e-5)  # per triplet


def test_frame_pairs_are_ordered_and_cover_every_pair():
    pairs = frame_pairs(20_000, 4, torch.Generator().manual_seed(0))
    assert (pairs[:, 0] < pairs[:, 1]).all() and int(pairs.min()) == 0 and int(pairs.max()) == 3
    assert len({tuple(p) for p in pairs.tolist()}) == 6


def test_training_losses_with_a_discriminator_add_the_adversarial_term():
    from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

    torch.manual_seed(0)
    parts = build_components("tiny")
    autoencoder, vae = parts["autoencoder"], parts["vae"].requires_grad_(False)
    discriminator = tiny_discriminator()
    generator = torch.Generator().manual_seed(0)
    audio, video = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 8, 4, 8, 8, generator=generator)
    labels = torch.tensor([0, 2])
    losses = autoencoder.training_losses(audio, video, labels, make_scheduler(), torch.Generator().manual_seed(1),
                                         vae=vae, discriminator=discriminator)
    expected = losses["mse"] + sum(LOSS_WEIGHTS[n] * losses[n] for n in LOSS_WEIGHTS) \
        + ADVERSARIAL_WEIGHT * losses["adversarial"]
    torch.testing.assert_close(losses["total"], expected)
    assert ADVERSARIAL_WEIGHT == 0.1
    # The discriminator's loss reaches the discriminator only; the adversarial term reaches the shared decoder.
    losses["discriminator"].backward(retain_graph=True)
    assert discriminator.score.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in autoencoder.parameters())
    losses["adversarial"].backward()
    assert autoencoder.decoder.conv_out.weight.grad.abs().sum() > 0
    plain = autoencoder.training_losses(audio, video, labels, make_scheduler(), torch.Generator().manual_seed(1))
    assert "adversarial" not in plain and "discriminator" not in plain
    with pytest.raises(ValueError, match="needs the `vae`"):
        autoencoder.training_losses(audio, video, labels, make_scheduler(), discriminator=discriminator)
