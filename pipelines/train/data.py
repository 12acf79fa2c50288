"""Captioned pictures and spectrogram images for Images that Sound, from the toy world or a folder (see package doc)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROWS = 256  # Auffusion's mel rows: the pipeline decodes 256-row spectrograms


@dataclass
class CaptionedPool:
    """images: [N, 256, W] float32 in [0, 1] with one caption each (pictures or spectrogram images)."""

    images: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def toyworld_pools(count: int, seed: int, width: int, classes: str = "core") -> tuple[CaptionedPool, CaptionedPool]:
    """`count` toy pictures and `count` toy sounds (Auffusion spectrogram images), balanced over the classes."""
    from pipelines.toyworld import sample
    from pipelines.toyworld.captioned import (CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, IMAGE_CLASSES,
                                              SOUND_CLASSES)

    image_classes, sound_classes = ((CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES) if classes == "core"
                                    else (IMAGE_CLASSES, SOUND_CLASSES))
    images = sample("image", count, seed, classes=image_classes, height=ROWS, width=width, balanced=True)
    sounds = sample("sound", count, seed + 1, classes=sound_classes, height=ROWS, width=width, balanced=True)
    return CaptionedPool(images.images, images.captions), CaptionedPool(sounds.spectrograms, sounds.captions)


def folder_pools(folder: str | Path, width: int) -> tuple[CaptionedPool, CaptionedPool]:
    """Pictures and sounds listed in `folder/captions.jsonl` (format: `pipelines.train` docstring)."""
    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not index.is_file():
        raise FileNotFoundError(f"{folder} has no captions.jsonl (one JSON line per file: file, caption, kind)")
    pictures: tuple[list, list] = ([], [])
    sounds: tuple[list, list] = ([], [])
    for number, line in enumerate(index.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        entry = json.loads(line)
        missing = {"file", "caption", "kind"} - set(entry)
        if missing or entry["kind"] not in ("image", "sound"):
            raise ValueError(f"captions.jsonl line {number}: need file, caption and kind image|sound; got {entry}")
        path = folder / entry["file"]
        target = pictures if entry["kind"] == "image" else sounds
        target[0].append(load_picture(path, width) if entry["kind"] == "image" else load_sound(path, width))
        target[1].append(str(entry["caption"]))
    if not pictures[1] or not sounds[1]:
        raise ValueError(f"{index} must list at least one image and one sound")
    return (CaptionedPool(np.stack(pictures[0]), pictures[1]), CaptionedPool(np.stack(sounds[0]), sounds[1]))


def load_picture(path: Path, width: int) -> np.ndarray:
    """Grayscale [256, width] in [0, 1]."""
    with Image.open(path) as image:
        resized = image.convert("L").resize((width, ROWS), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32) / 255.0


def load_sound(path: Path, width: int) -> np.ndarray:
    """Auffusion spectrogram image [256, width] of the first `width` frames (zero-padded when shorter)."""
    from pipelines.audio import SPECS, load_audio
    from pipelines.toyworld.captioned import spectrogram_image

    spec = SPECS["auffusion"]
    samples = load_audio(path, spec).samples
    length = spec.samples_for(width)
    samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return spectrogram_image(samples, ROWS)[:, :width]
