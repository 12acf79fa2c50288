"""The decoding schedule, the confidence re-masking, guidance and the training masks, against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.visual_echoes.scheduling_visual_echoes import (
    MaskScheduler,
    guide,
    mask_by_random_topk,
    masked_cross_entropy,
    remaining_masked_counts,
    training_masks,
    truncated_normal,
)

# The remaining-masked counts of the MAGE loop (⌊L·cos(π/2·(n+1)/N)⌋ clamped to [1, unknown − 1]).
COUNTS_265_30 = [264, 263, 261, 259, 255, 252, 247, 242, 236, 229, 222, 214, 205, 196, 187, 177, 166, 155, 144, 132,
                 120, 107, 94, 81, 68, 55, 41, 27, 13, 1]
COUNTS_265_15 = [263, 259, 252, 242, 229, 214, 196, 177, 155, 132, 107, 81, 55, 27, 1]


def test_the_cosine_schedule_leaves_the_known_counts_masked():
    assert remaining_masked_counts(265, 30) == COUNTS_265_30
    assert remaining_masked_counts(265, 15) == COUNTS_265_15


def test_short_sequences_still_decrease_by_at_least_one_each_step():
    counts = remaining_masked_counts(4, 30)
    assert counts[0] == 3 and counts[-1] == 1 and all(b <= a for a, b in zip(counts, counts[1:]))


def test_random_topk_at_temperature_zero_remasks_the_lowest_and_never_the_known():
    confidence = torch.tensor([[0.5, -1.0, math.inf, -3.0, 0.1, -2.0]])
    masking = mask_by_random_topk(torch.tensor([3]), confidence)
    assert masking.tolist() == [[False, True, False, True, False, True]]
    all_known_but_one = torch.tensor([[math.inf, math.inf, -5.0]])
    assert mask_by_random_topk(torch.tensor([1]), all_known_but_one).tolist() == [[False, False, True]]


def test_a_scheduler_step_keeps_known_tokens_and_masks_exactly_the_scheduled_count():
    torch.manual_seed(0)
    mask_id, length = 16, 12
    current = torch.full((2, length), mask_id)
    current[:, :4] = torch.tensor([3, 1, 4, 1])  # known tokens
    scheduler = MaskScheduler(num_steps=4, temperature=9.0, mask_id=mask_id, initial_unknown=torch.tensor([8, 8]))
    logits = torch.randn(2, length, 16)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    nxt, sampled = scheduler.step(0, logits, current, generators)
    assert (nxt[:, :4] == current[:, :4]).all() and (sampled[:, :4] == current[:, :4]).all()
    assert ((nxt == mask_id).sum(dim=1) == math.floor(8 * math.cos(math.pi / 8))).all()  # 7 left masked
    assert (sampled < mask_id).all()
    last, last_sampled = scheduler.step(3, logits, nxt, generators)
    assert (last == last_sampled).all() and (last < mask_id).all()  # the last iteration fills everything


def test_guidance_identities():
    conditional, unconditional = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    assert torch.equal(guide(conditional, unconditional, 1.0), conditional)
    assert torch.equal(guide(conditional, unconditional, 0.0), unconditional)
    p_c, p_u = conditional.softmax(-1), unconditional.softmax(-1)
    torch.testing.assert_close(guide(conditional, unconditional, 0.5).exp(), (p_c + p_u) / 2)  # no clipping below 1


def test_guidance_on_probabilities_clips_negative_mixtures_by_hand():
    p_c, p_u = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    # s = 3: 3 p_c − 2 p_u = [1.1, 0.5, −0.6] -> clipped [1.1, 0.5, 0] / 1.6
    guided = guide(p_c.log(), p_u.log(), 3.0)
    torch.testing.assert_close(guided.exp(), torch.tensor([1.1 / 1.6, 0.5 / 1.6, 0.0]))
    assert guided[2] == -math.inf


def test_the_truncated_gaussian_stays_in_range_with_the_known_mean():
    draws = truncated_normal(200_000, torch.Generator().manual_seed(0))
    assert draws.min() >= 0.2 and draws.max() <= 1.0
    assert draws.mean().item() == pytest.approx(0.6593, abs=0.003)  # truncated N(0.7, 0.25²) on [0.2, 1]
    low = truncated_normal(200_000, torch.Generator().manual_seed(1), mean=0.55)
    assert low.mean().item() == pytest.approx(0.5700, abs=0.003)


def test_training_masks_have_exact_counts_and_nest():
    masked, dropped, ratios = training_masks(64, 265, torch.Generator().manual_seed(0))
    assert (masked.sum(dim=1) == torch.ceil(ratios * 265).long()).all()
    assert (dropped.sum(dim=1) == 133).all()  # ⌈0.5·265⌉ dropped, 132 kept
    for m, d, r in zip(masked, dropped, ratios):
        if r >= 0.5:
            assert not (d & ~m).any()  # every dropped token is masked
        else:
            assert not (m & ~d).any()  # every masked token is dropped


def test_the_loss_covers_masked_positions_only():
    logits = torch.randn(2, 6, 5, requires_grad=True)
    targets = torch.randint(0, 5, (2, 6))
    masked = torch.tensor([[True, False, True, False, False, False], [False, False, False, False, True, True]])
    loss = masked_cross_entropy(logits, targets, masked)
    loss.backward()
    assert (logits.grad[~masked] == 0).all() and (logits.grad[masked].abs().sum(dim=-1) > 0).all()
    expected = torch.nn.functional.cross_entropy(logits[masked], targets[masked])
    torch.testing.assert_close(loss, expected)
