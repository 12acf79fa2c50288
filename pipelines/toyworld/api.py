"""One entry point to the toy world: `sample(kind, n, seed, **options)`.

- "impact" -> `ImpactBatch`; options: materials, shapes, num_frames, fps, frame_size, audio_onset_s, residual_db
- "sounding_video" -> `SoundingVideoBatch`; options: scenes, frame_size, materials
- "image" -> `CaptionedImages`; options: classes, height, width, balanced
- "sound" -> `CaptionedSounds`; options: classes, height, width, balanced
- "paired" -> `PairedBatch` (Visual Echoes' pictures and their sounds); options: kinds, size, frames, balanced

Sample i of a call depends only on (kind, seed, i, options): `sample(k, 8, s)` is the first 8 of `sample(k, 32, s)`.
"""

from __future__ import annotations

from typing import Literal

from pipelines.toyworld.captioned import CaptionedImages, CaptionedSounds, sample_images, sample_sounds
from pipelines.toyworld.impacts import ImpactBatch, sample_impacts
from pipelines.toyworld.paired import PairedBatch, sample_paired
from pipelines.toyworld.videos import SoundingVideoBatch, sample_videos

Kind = Literal["impact", "sounding_video", "image", "sound", "paired"]
KINDS: tuple[str, ...] = ("impact", "sounding_video", "image", "sound", "paired")
_SAMPLERS = {"impact": sample_impacts, "sounding_video": sample_videos, "image": sample_images,
             "sound": sample_sounds, "paired": sample_paired}


def sample(kind: Kind, n: int, seed: int = 0,
           **options) -> ImpactBatch | SoundingVideoBatch | CaptionedImages | CaptionedSounds | PairedBatch:
    """N seeded toy-world samples of `kind` with their ground truth (see the table in the module docstring)."""
    if kind not in _SAMPLERS:
        raise ValueError(f"unknown toy-world kind {kind!r}; choose one of {', '.join(KINDS)}")
    return _SAMPLERS[kind](n, seed, **options)
