"""Seeds: the UI speaks integers, pipelines speak `torch.Generator` (one CPU generator per sample)."""

from __future__ import annotations

import secrets

import torch


def generators_for(seed: int, num_samples: int) -> tuple[list[torch.Generator], int]:
    """CPU generators seeded seed, seed + 1, … (as the Images that Sound code seeds sample i with seed + i).

    A seed of -1 draws a random one; the seed actually used is returned so the UI can show it. CPU generators give
    the same noise whatever device the pipeline runs on.
    """
    if seed == -1:
        seed = secrets.randbelow(2**31)
    return [torch.Generator().manual_seed(seed + index) for index in range(num_samples)], seed
