"""The toy world: seeded, fast, procedural sounding scenes with known ground truth.

`sample(kind, n, seed, **options)` for kind in "impact", "sounding_video", "image", "sound", "paired" (see `api`);
`python -m pipelines.toyworld KIND --n N --seed S --out DIR` writes a dataset folder (formats in `__main__`).
Importing this package is light: the samplers load on first use.
"""

from __future__ import annotations

KINDS = ("impact", "sounding_video", "image", "sound", "paired")


def sample(kind: str, n: int, seed: int = 0, **options):
    """N seeded toy-world samples of `kind` with ground truth; see `pipelines.toyworld.api.sample`."""
    from pipelines.toyworld.api import sample as _sample

    return _sample(kind, n, seed, **options)


__all__ = ["KINDS", "sample"]
