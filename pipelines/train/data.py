"""Captioned pictures and spectrogram images for Images that Sound, from the toy world, a folder or a zip (see the
package doc): unusable files are skipped with a reason (`FolderData.skipped`, OUT/skipped.json)."""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SOUND_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".opus")
INDEX_NAME, SKIPPED_NAME = "captions.jsonl", "skipped.json"
MIN_FILES = 1  # usable files of each kind a model needs to train on


@dataclass
class FolderData:
    """What a folder or zip held: the usable pictures and sounds, and the files skipped, each with its reason."""

    pictures: CaptionedPool
    sounds: CaptionedPool
    skipped: list[dict]


def read_data(source: str | Path, width: int, caption: str | None = None) -> FolderData:
    """Pictures and sounds of a folder or a .zip (with a `captions.jsonl`, or captions from `caption` or the file
    names; see the `pipelines.train` docstring). Bad files are skipped with a reason, never raised."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="synesthesia-data-") as scratch:
            return read_folder(unzip(path, Path(scratch)), width, caption)
    if not path.is_dir():
        raise ValueError(f"--data {source}: neither 'toyworld', a folder nor a .zip of pictures and sounds")
    return read_folder(path, width, caption)


def unzip(archive: Path, into: Path) -> Path:
    """Extract `archive` (zipfile keeps every member inside `into`); a zip holding one folder yields that folder."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.namelist() if not m.startswith("__MACOSX/")]
            bundle.extractall(into, members=members)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{archive.name} could not be read as a zip ({error})") from None
    entries = [p for p in into.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def read_folder(folder: Path, width: int, caption: str | None) -> FolderData:
    entries = indexed_entries(folder) if (folder / INDEX_NAME).is_file() else inferred_entries(folder, caption)
    pools: dict[str, tuple[list, list]] = {"image": ([], []), "sound": ([], [])}
    skipped = []
    for name, text, kind, reason in entries:
        if reason is None:
            try:
                pools[kind][0].append(load_item(folder / name, kind, width))
                pools[kind][1].append(text)
                continue
            except Exception as error:  # noqa: BLE001 - any unreadable file is skipped with its reason, by design
                reason = f"{'picture' if kind == 'image' else 'sound'} could not be used: {describe(error)}"
        skipped.append({"file": name, "reason": reason})
    return FolderData(make_pool(pools["image"], width), make_pool(pools["sound"], width), skipped)


def indexed_entries(folder: Path) -> list[tuple[str, str, str, str | None]]:
    """(file, caption, kind, None) per line of captions.jsonl; a missing file gets a reason instead of None."""
    entries = []
    for number, line in enumerate((folder / INDEX_NAME).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        entry = json.loads(line)
        missing = {"file", "caption", "kind"} - set(entry)
        if missing or entry["kind"] not in ("image", "sound"):
            raise ValueError(f"captions.jsonl line {number}: need file, caption and kind image|sound; got {entry}")
        reason = None if (folder / entry["file"]).is_file() else "listed in captions.jsonl but not found"
        entries.append((str(entry["file"]), str(entry["caption"]), entry["kind"], reason))
    return entries


def inferred_entries(folder: Path, caption: str | None) -> list[tuple[str, str, str, str | None]]:
    """Every file under `folder` (hidden ones ignored): kind from the suffix, caption `caption` or the file name."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or relative.name == SKIPPED_NAME:
            continue
        kind = kind_of(path)
        reason = None if kind else (f"not a picture ({', '.join(IMAGE_SUFFIXES)}) or a sound "
                                    f"({', '.join(SOUND_SUFFIXES)})")
        entries.append((str(relative), caption or caption_from_name(path), kind or "", reason))
    return entries


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "sound" if suffix in SOUND_SUFFIXES else None


def caption_from_name(path: Path) -> str:
    """'rain_on-tin_roof.wav' -> 'rain on tin roof'."""
    return " ".join(re.sub(r"[_\-]+", " ", path.stem).split())


def load_item(path: Path, kind: str, width: int) -> np.ndarray:
    return load_picture(path, width) if kind == "image" else load_sound(path, width)


def describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def make_pool(items: tuple[list, list], width: int) -> CaptionedPool:
    images = np.stack(items[0]) if items[0] else np.zeros((0, ROWS, width), np.float32)
    return CaptionedPool(images, items[1])


def write_skipped(data: FolderData, out: Path) -> Path:
    """Print every skipped file with its reason and write them to OUT/skipped.json."""
    return report_skipped(data.skipped, out)


def report_skipped(skipped: list[dict], out: Path) -> Path:
    """Print every skipped file ({"file", "reason"}) and write the list to OUT/skipped.json."""
    for item in skipped:
        print(f"[data] skipped {item['file']}: {item['reason']}")
    path = Path(out) / SKIPPED_NAME
    path.write_text(json.dumps(skipped, indent=2) + "\n")
    return path


def check_enough(data: FolderData, kinds: tuple[str, ...]) -> None:
    """A ValueError saying how much is needed when a kind to train on has fewer than MIN_FILES usable files."""
    for kind in kinds:
        pool = data.pictures if kind == "image" else data.sounds
        if len(pool) < MIN_FILES:
            suffixes = IMAGE_SUFFIXES if kind == "image" else SOUND_SUFFIXES
            noun = "picture" if kind == "image" else "sound"
            raise ValueError(f"too little data: training the {'image' if kind == 'image' else 'audio'} model needs at "
                             f"least {MIN_FILES} usable {noun} ({', '.join(suffixes)}); found {len(pool)} "
                             f"({len(data.skipped)} file(s) skipped, listed in {SKIPPED_NAME})")


def folder_pools(folder: str | Path, width: int) -> tuple[CaptionedPool, CaptionedPool]:
    """Pictures and sounds of a folder or zip (`read_data`), at least one of each (training from scratch)."""
    data = read_data(folder, width)
    check_enough(data, ("image", "sound"))
    return data.pictures, data.sounds


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
    if not len(samples):
        raise ValueError("the file holds no samples (zero length)")
    if not np.any(samples):
        raise ValueError("the sound is silent (every sample is zero)")
    length = spec.samples_for(width)
    samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return spectrogram_image(samples, ROWS)[:, :width]
