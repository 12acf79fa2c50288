"""Visual Echoes' iterative decoding (the paper's Code 1, in the MaskGIT / MAGE loop it follows) and its training masks.

Decoding one modality of L tokens in N iterations (`MaskScheduler.step`), from the tokens `current` [B, L] where the
unknown ones hold [MASK]:

1. sample every position from the (guided) logits: categorical sampling, not argmax;
2. keep the known tokens: `sampled = where(unknown, sampled, current)`;
3. ratio r = (n + 1) / N; the cosine schedule leaves mask_len = ⌊L₀ · cos(π/2 · r)⌋ tokens masked, clamped to
   [1, #unknown − 1] (L₀ = the number of unknown tokens when decoding started; L for a fully masked modality);
4. confidence = log p(sampled) + T · (1 − r) · Gumbel noise (the temperature is annealed), +inf at known tokens, so
   they are never re-masked;
5. re-mask the mask_len lowest-confidence positions (`mask_by_random_topk`: every position whose confidence is at
   most the mask_len-th smallest).

After the last iteration the fully sampled tokens are returned (MAGE returns `sampled`, not the re-masked state).
Every random draw (categorical and Gumbel) comes from the sample's own CPU `torch.Generator`, so a batch equals its
samples run one by one.

Classifier-free guidance (Eq. 2) as printed, on probabilities: p̂ = s · p_c + (1 − s) · p_u (`guide`). At s > 1 a code
the unconditional pass likes more than the conditional one can go negative; it is clipped to 0 and the rest
renormalised (the paper does not say how; one clip at 0 is the least change). We first applied Eq. 2 to logits as
MUSE does (ℓ_u + s · (ℓ_c − ℓ_u), p_c^s / p_u^(s−1)): that multiplies a code the unconditional pass finds unlikely by a
large factor at every masked position at once, and on the toy world it added events and heard the pictured kind less
often than no guidance (64 pairs: 0.78 at s = 3 against 0.91 at s = 1; on probabilities 0.95).

Training masks (`training_masks`): per sample and per modality a mask ratio r from a truncated Gaussian on [0.2, 1]
(mean 0.7; the paper does not give the standard deviation, 0.25 is MAGE's), ⌈r·L⌉ tokens masked and ⌈0.5·L⌉ tokens
dropped from the encoder, both taken from one uniform noise per token (the lowest values), so with r ≥ 0.5 the
dropped tokens are all masked and with r < 0.5 every masked token is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK_RATIO_RANGE = (0.2, 1.0)
MASK_RATIO_MEAN = 0.7
MASK_RATIO_STD = 0.25  # MAGE's; the paper does not say
DROP_RATIO = 0.5


def cosine_mask_ratio(ratio: float) -> float:
    """The share of tokens left masked after a fraction `ratio` ∈ (0, 1] of the iterations: cos(π/2 · ratio)."""
    return math.cos(math.pi / 2.0 * ratio)


def mask_length(total: int, step: int, num_steps: int, unknown: int) -> int:
    """Tokens left masked after iteration `step` (0-based) of `num_steps`: ⌊total · cos(π/2 · (step+1)/N)⌋ clamped
    to [1, unknown − 1] (`unknown`: the unknown tokens before this iteration)."""
    length = math.floor(total * cosine_mask_ratio((step + 1) / num_steps))
    return max(1, min(length, unknown - 1))


def remaining_masked_counts(total: int, num_steps: int) -> list[int]:
    """The masked count after each iteration when decoding `total` fully masked tokens in `num_steps` (the last
    entry is the count the clamp leaves before the final `sampled` is returned)."""
    counts, unknown = [], total
    for step in range(num_steps):
        unknown = mask_length(total, step, num_steps, unknown)
        counts.append(unknown)
    return counts


def gumbel(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """Gumbel(0, 1) noise [B, ...], row b drawn from generators[b] (on the CPU)."""
    rows = []
    for generator in generators:
        u = torch.rand(shape[1:], generator=generator, dtype=torch.float64).clamp_(1e-20, 1.0 - 1e-12)
        rows.append(-torch.log(-torch.log(u)))
    return torch.stack(rows).float()


def categorical(logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One draw per position from softmax(logits) [B, L, C] -> ids [B, L]; row b from generators[b]."""
    probs = torch.softmax(logits.float(), dim=-1).cpu()
    draws = [torch.multinomial(p, 1, generator=g)[:, 0] for p, g in zip(probs, generators)]
    return torch.stack(draws).to(logits.device)


def mask_by_random_topk(mask_len: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Code 1: True where confidence [B, L] is at most the mask_len[b]-th smallest of its row (re-mask there)."""
    sorted_confidence, _ = torch.sort(confidence, dim=-1)
    cut_off = torch.gather(sorted_confidence, 1, (mask_len.long() - 1).clamp(min=0)[:, None])
    return confidence <= cut_off


def guide(conditional: torch.Tensor, unconditional: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Eq. 2 on probabilities, from logits [..., C]: log(s · p_c + (1 − s) · p_u), negative mixtures clipped to 0 and
    the rest renormalised (clipped codes get −inf). s = 1 (or no unconditional pass) returns ℓ_c itself, s = 0 ℓ_u."""
    if unconditional is None or scale == 1.0:
        return conditional
    if scale == 0.0:
        return unconditional
    p_c, p_u = torch.softmax(conditional.float(), dim=-1), torch.softmax(unconditional.float(), dim=-1)
    mixed = (scale * p_c + (1.0 - scale) * p_u).clamp(min=0.0)
    return torch.log(mixed / mixed.sum(dim=-1, keepdim=True))


@dataclass
class MaskScheduler:
    """The decoding schedule of one modality: N iterations, temperature T, [MASK] id, and L₀ per sample."""

    num_steps: int
    temperature: float
    mask_id: int
    initial_unknown: torch.Tensor  # [B] unknown tokens when decoding started

    def step(self, step: int, logits: torch.Tensor, current: torch.Tensor,
             generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration: (guided) logits [B, L, C], tokens [B, L] -> (next tokens with re-masks, sampled [B, L])."""
        unknown = current == self.mask_id
        sampled = torch.where(unknown, categorical(logits, generators), current)  # known tokens never change
        ratio = (step + 1) / self.num_steps
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(-1, sampled.clamp(max=logits.shape[-1] - 1)[..., None])
        confidence = log_p[..., 0] + self.temperature * (1.0 - ratio) * gumbel(tuple(current.shape),
                                                                                generators).to(logits.device)
        confidence = torch.where(unknown, confidence, torch.full_like(confidence, math.inf))
        lengths = torch.tensor([mask_length(int(total), step, self.num_steps, int(count))
                                for total, count in zip(self.initial_unknown, unknown.sum(dim=1))],
                               device=current.device)
        if step == self.num_steps - 1:
            return sampled, sampled
        remask = mask_by_random_topk(lengths, confidence) & unknown
        # A row whose tokens are all known (nothing to decode) keeps them.
        remask &= (unknown.sum(dim=1) > 0)[:, None]
        return torch.where(remask, torch.full_like(sampled, self.mask_id), sampled), sampled


# Training masks ------------------------------------------------------------------------------------------------------


def truncated_normal(count: int, generator: torch.Generator, mean: float = MASK_RATIO_MEAN, std: float = MASK_RATIO_STD,
                     low: float = MASK_RATIO_RANGE[0], high: float = MASK_RATIO_RANGE[1]) -> torch.Tensor:
    """`count` draws from N(mean, std²) truncated to [low, high], by the inverse CDF."""
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    a, b = normal.cdf(torch.tensor(low, dtype=torch.float64)), normal.cdf(torch.tensor(high, dtype=torch.float64))
    u = a + (b - a) * torch.rand(count, generator=generator, dtype=torch.float64)
    return normal.icdf(u.clamp(1e-12, 1 - 1e-12)).clamp(low, high).float()


def training_masks(batch: int, length: int, generator: torch.Generator, mean: float = MASK_RATIO_MEAN,
                   drop_ratio: float = DROP_RATIO) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked [B, L] bool, dropped [B, L] bool, ratios [B]) for one modality: ⌈r·L⌉ masked, ⌈drop·L⌉ dropped,
    both the lowest values of one uniform noise per token."""
    ratios = truncated_normal(batch, generator, mean)
    noise = torch.rand(batch, length, generator=generator)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)  # rank of each token's noise in its row
    num_masked = torch.ceil(ratios * length).long().clamp(1, length)
    masked = rank < num_masked[:, None]
    dropped = rank < math.ceil(drop_ratio * length)
    return masked, dropped, ratios


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Eq. 1 for one modality: the mean cross-entropy over the masked positions only (0 when none is masked)."""
    losses = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # [B, L]
    weights = masked.float()
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


__all__ = ["DROP_RATIO", "MASK_RATIO_MEAN", "MASK_RATIO_RANGE", "MASK_RATIO_STD", "MaskScheduler", "categorical",
           "cosine_mask_ratio", "guide", "gumbel", "mask_by_random_topk", "mask_length", "masked_cross_entropy",
           "remaining_masked_counts", "training_masks", "truncated_normal"]
