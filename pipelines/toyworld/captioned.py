"""Captioned images and captioned sounds for Images that Sound (grayscale pictures and Auffusion spectrograms).

Images: grayscale [H, W] float32 in [0, 1] (default 16 × 64; any size, shapes are laid out in units of the height so
a class looks alike at 16 × 64 and 256 × 1024). Classes (`IMAGE_CLASSES`; the first four are the core set the
judges and metrics use): towers (bars rising from the bottom), rings (concentric outlines), stripes (diagonal bars), dots (a dot
grid), grids (thin horizontal and vertical lines), circles (filled disks), glyphs (letters), waves (wavy lines).

Sounds: 16 kHz mono audio lasting `width` spectrogram frames (width · 160 samples: 0.64 s for 64 frames, 10.24 s for
1024) and its spectrogram image in the Auffusion convention of `pipelines.audio` (`log_mel` → `spectrogram_to_image`:
256 mel rows, low frequencies at the bottom). A `height` below 256 averages blocks of mel rows (box filter), so a
16-row image is a coarse view of the same spectrogram; `height=256` is the exact Auffusion image. Classes
(`SOUND_CLASSES`; the first four are the core set): bells (inharmonic partials with long decays, synthesised by
the impact pipeline's modal `synthesize`), chirps (rising sweeps), knocks (material knocks, see `videos.knock`),
hums (a steady low harmonic tone), sirens (a tone gliding up and down), rain (dense ticks), wind (low-passed noise in
gusts), beeps (short pulses of one pure tone).

Every sample has a short caption drawn from its class's templates (`IMAGE_CAPTIONS`, `SOUND_CAPTIONS`), filled
with its own parameters (counts, pitch words), and its parameters as ground truth.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.audio import SPECS, log_mel, spectrogram_to_image
from pipelines.impact_sound import Modes, synthesize
from pipelines.toyworld.common import add_at, coverage, item_rngs, pick_one, pixel_grid
from pipelines.toyworld.videos import knock, tick

AUFFUSION = SPECS["auffusion"]
IMAGE_CLASSES = ("towers", "rings", "stripes", "dots", "grids", "circles", "glyphs", "waves")
SOUND_CLASSES = ("bells", "chirps", "knocks", "hums", "sirens", "rain", "wind", "beeps")
CORE_IMAGE_CLASSES = IMAGE_CLASSES[:4]
CORE_SOUND_CLASSES = SOUND_CLASSES[:4]
HEIGHT, WIDTH = 16, 64
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

IMAGE_CAPTIONS: dict[str, tuple[str, ...]] = {
    "towers": ("{count} towers", "a skyline of {count} towers", "tall towers in a row", "a city of towers"),
    "rings": ("concentric rings", "{count} sets of rings", "ripples of rings", "circles inside circles"),
    "stripes": ("diagonal stripes", "stripes slanting {direction}", "a pattern of slanted bars", "diagonal lines"),
    "dots": ("a grid of dots", "rows of dots", "a dotted pattern", "evenly spaced dots"),
    "grids": ("a grid of thin lines", "a lattice", "a square grid", "crossing lines"),
    "circles": ("{count} circles", "{count} round disks", "filled circles", "round shapes"),
    "glyphs": ("the letters {text}", "letters spelling {text}", "glyphs {text}", "a word in capitals"),
    "waves": ("{count} wavy lines", "waves", "ripples across the picture", "curving lines"),
}
SOUND_CAPTIONS: dict[str, tuple[str, ...]] = {
    "bells": ("a {pitch} bell ringing", "a bell struck {count_times}", "church bells", "a chiming bell"),
    "chirps": ("{count} rising chirps", "a bird chirping", "chirps going up", "a {pitch} chirp"),
    "knocks": ("{count} knocks on {material}", "knocking on a {material} door", "someone knocking", "knocks"),
    "hums": ("a {pitch} hum", "an engine humming", "a steady drone", "a humming motor"),
    "sirens": ("a siren wailing", "an ambulance siren", "a siren going up and down", "a {pitch} siren"),
    "rain": ("{intensity} rain", "rain falling", "raindrops pattering", "a rain shower"),
    "wind": ("wind blowing", "gusts of wind", "a {intensity} wind", "wind howling"),
    "beeps": ("{count} beeps", "a {pitch} beeping", "an alarm beeping", "electronic beeps"),
}


def caption_vocabulary() -> list[str]:
    """Every word the caption templates can produce (slots filled with all their values), sorted."""
    fills = {"{count}": NUMBER_WORDS[1:], "{count_times}": ("once", "twice", "three times"),
             "{direction}": ("up", "down"), "{text}": (), "{pitch}": ("low", "high"),
             "{material}": ("wood", "plastic"), "{intensity}": ("light", "steady", "heavy", "strong")}
    words = set()
    for template in [*sum(IMAGE_CAPTIONS.values(), ()), *sum(SOUND_CAPTIONS.values(), ())]:
        for slot, values in fills.items():
            if slot in template:
                words.update(values)
                template = template.replace(slot, "")
        words.update(template.split())
    return sorted(words)


@dataclass
class CaptionedImages:
    """images: [N, H, W] float32 in [0, 1]; classes, captions and params per sample."""

    images: np.ndarray
    classes: list[str]
    captions: list[str]
    params: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.classes)


@dataclass
class CaptionedSounds:
    """audio: [N, S] float32 at `sample_rate`; spectrograms: [N, H, W] float32 Auffusion images in [0, 1]."""

    audio: np.ndarray
    spectrograms: np.ndarray
    sample_rate: int
    classes: list[str]
    captions: list[str]
    params: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.classes)


def _check_size(height: int, width: int, max_height: int) -> None:
    if not (4 <= height <= max_height and 4 <= width <= 4096):
        raise ValueError(f"`height` must be 4–{max_height} and `width` 4–4096 pixels, got {height} × {width}")


def _class_of(rng: np.random.Generator, index: int, classes: tuple[str, ...], known: tuple[str, ...],
              balanced: bool, what: str) -> str:
    if balanced:
        pick_one(rng, classes, known, what)  # validates (and keeps the draws the same as unbalanced)
        return classes[index % len(classes)]
    return pick_one(rng, classes, known, what)


def _fill(rng: np.random.Generator, templates: tuple[str, ...], params: dict) -> str:
    return templates[int(rng.integers(len(templates)))].format(**params)


# Images -----------------------------------------------------------------------------------------------------------


def sample_images(n: int, seed: int, *, classes: tuple[str, ...] = IMAGE_CLASSES, height: int = HEIGHT,
                  width: int = WIDTH, balanced: bool = False) -> CaptionedImages:
    """N seeded grayscale class images with captions (`balanced`: sample i has class classes[i % len])."""
    _check_size(height, width, 4096)
    images, names, captions, params = [], [], [], []
    for index, rng in enumerate(item_rngs(seed, n)):
        name = _class_of(rng, index, tuple(classes), IMAGE_CLASSES, balanced, "image class")
        image, values = _IMAGE_RENDERERS[name](rng, height, width)
        images.append(np.clip(image, 0.0, 1.0).astype(np.float32))
        names.append(name)
        params.append(values)
        captions.append(_fill(rng, IMAGE_CAPTIONS[name], values))
    stacked = np.stack(images) if n else np.zeros((0, height, width), np.float32)
    return CaptionedImages(stacked, names, captions, params)


def _towers(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    count = int(rng.integers(3, min(9, max(4, w // (h // 4 + 1)))))
    centres = np.linspace(0, w, count + 1)[:-1] + w / count / 2.0 + rng.uniform(-0.1, 0.1, count) * w / count
    half_widths = rng.uniform(0.25, 0.4, count) * w / count
    tops = h * (1.0 - rng.uniform(0.35, 0.95, count))
    image = np.zeros((h, w), np.float32)
    for cx, half, top, level in zip(centres, half_widths, tops, rng.uniform(0.7, 1.0, count)):
        inside = np.maximum(np.abs(x - cx) - half, top - y)
        image = np.maximum(image, level * coverage(inside)[0])
    return image, {"count": NUMBER_WORDS[count] if count < 10 else str(count)}


def _rings(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    count = int(rng.integers(1, 4))
    spacing, thickness = rng.uniform(0.18, 0.3) * h, rng.uniform(0.06, 0.1) * h
    image = np.zeros((1, h, w), np.float32)
    for cx in (np.arange(count) + rng.uniform(0.3, 0.7, count)) * w / count:
        distance = np.sqrt((x - cx) ** 2 + (y - rng.uniform(0.3, 0.7) * h) ** 2)
        ring = np.abs((distance + spacing / 2.0) % spacing - spacing / 2.0)  # distance to the nearest ring
        image = np.maximum(image, coverage(ring - thickness / 2.0 - 0.5) * (distance < 1.6 * h))
    return image[0], {"count": NUMBER_WORDS[count]}


def _stripes(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    angle = math.radians(45.0 + rng.uniform(-10.0, 10.0))
    period = rng.uniform(0.3, 0.5) * h
    along = (x * math.cos(angle) + sign * (h - y) * math.sin(angle)) / period + rng.uniform()
    distance = np.abs((along % 1.0) - 0.5) * period  # from the stripe centre line, pixels
    return coverage(distance - period / 4.0)[0], {"direction": "up" if sign > 0 else "down"}


def _dots(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    spacing = rng.uniform(0.25, 0.4) * h
    ox, oy = rng.uniform(0, spacing, 2)
    dx = (x - ox) % spacing - spacing / 2.0
    dy = (y - oy) % spacing - spacing / 2.0
    return coverage(np.sqrt(dx**2 + dy**2) - 0.25 * spacing)[0], {}


def _grids(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    spacing, thickness = rng.uniform(0.3, 0.5) * h, max(1.0, 0.06 * h)
    ox, oy = rng.uniform(0, spacing, 2)
    dx = np.abs((x - ox) % spacing - spacing / 2.0)
    dy = np.abs((y - oy) % spacing - spacing / 2.0)
    return coverage(np.minimum(dx, dy) - thickness / 2.0)[0], {}


def _circles(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    count = int(rng.integers(1, 5))
    image = np.zeros((1, h, w), np.float32)
    for cx in (np.arange(count) + rng.uniform(0.3, 0.7, count)) * w / count:
        radius = rng.uniform(0.2, 0.42) * h
        distance = np.sqrt((x - cx) ** 2 + (y - rng.uniform(0.4, 0.6) * h) ** 2)
        image = np.maximum(image, rng.uniform(0.6, 1.0) * coverage(distance - radius))
    return image[0], {"count": NUMBER_WORDS[count]}


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _glyphs(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    letters = "AEFHKLMNTVWXYZ"
    text = "".join(letters[i] for i in rng.integers(len(letters), size=int(rng.integers(2, 5))))
    scale = 4  # draw large, then shrink: smooth edges at any size
    canvas = Image.new("L", (w * scale, h * scale), 0)
    font = _font(max(4, round(0.9 * h * scale)))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    spare = max(w * scale - (right - left), 0)
    draw.text((-left + rng.uniform(0, spare), -top + (h * scale - (bottom - top)) / 2), text, fill=255, font=font)
    image = np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return image / max(float(image.max()), 1e-6), {"text": text}


def _waves(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    y, x = pixel_grid(h, w)
    count = int(rng.integers(1, 4))
    thickness = max(1.0, 0.08 * h)
    image = np.zeros((1, h, w), np.float32)
    for level in (np.arange(count) + 0.5) / count:
        wavelength, amplitude = rng.uniform(0.8, 1.6) * h, rng.uniform(0.08, 0.3) * h / count
        centre = level * h + amplitude * np.sin(2.0 * np.pi * x / wavelength + rng.uniform(0, 2 * np.pi))
        image = np.maximum(image, coverage(np.abs(y - centre) - thickness / 2.0))
    return image[0], {"count": NUMBER_WORDS[count]}


_IMAGE_RENDERERS = {"towers": _towers, "rings": _rings, "stripes": _stripes, "dots": _dots, "grids": _grids,
                    "circles": _circles, "glyphs": _glyphs, "waves": _waves}


# Sounds -----------------------------------------------------------------------------------------------------------


def sample_sounds(n: int, seed: int, *, classes: tuple[str, ...] = SOUND_CLASSES, height: int = HEIGHT,
                  width: int = WIDTH, balanced: bool = False) -> CaptionedSounds:
    """N seeded class sounds (16 kHz, width · 160 samples) with Auffusion spectrogram images [height, width]."""
    _check_size(height, width, AUFFUSION.n_mels)
    rate, length = AUFFUSION.sample_rate, AUFFUSION.samples_for(width)
    sounds, images, names, captions, params = [], [], [], [], []
    for index, rng in enumerate(item_rngs(seed, n)):
        name = _class_of(rng, index, tuple(classes), SOUND_CLASSES, balanced, "sound class")
        audio, values = _SOUND_RENDERERS[name](rng, length, rate)
        peak = float(np.max(np.abs(audio)))
        audio = (audio * (0.9 / peak) if peak > 0 else audio).astype(np.float32)
        sounds.append(audio)
        images.append(spectrogram_image(audio, height))
        names.append(name)
        params.append(values)
        captions.append(_fill(rng, SOUND_CAPTIONS[name], values))
    audio = np.stack(sounds) if n else np.zeros((0, length), np.float32)
    spectrograms = np.stack(images) if n else np.zeros((0, height, width), np.float32)
    return CaptionedSounds(audio, spectrograms, rate, names, captions, params)


def spectrogram_image(audio: np.ndarray, height: int = AUFFUSION.n_mels) -> np.ndarray:
    """Auffusion spectrogram image [height, frames] in [0, 1] (low at the bottom); mel rows box-averaged."""
    image = spectrogram_to_image(log_mel(audio, AUFFUSION), AUFFUSION)  # [256, frames]
    if height == image.shape[0]:
        return image.astype(np.float32)
    if image.shape[0] % height == 0:
        return image.reshape(height, -1, image.shape[1]).mean(axis=1).astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((image.shape[1], height),
                                                                          Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def _pitch_word(frequency: float, split_hz: float) -> str:
    return "low" if frequency < split_hz else "high"


def _times(rng: np.random.Generator, count: int, seconds: float, margin: float) -> np.ndarray:
    """`count` sorted onset times spread over the clip (one per equal slot, jittered), leaving `margin` at the end."""
    slots = (np.arange(count) + rng.uniform(0.05, 0.6, count)) / count
    return np.sort(slots * max(seconds - margin, 1e-3))


def _bells(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    fundamental = float(rng.uniform(300.0, 1200.0))
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.52, 2.67, 3.0, 4.0])  # a church bell's partials (hum to upper)
    keep = fundamental * ratios < 0.45 * rate
    modes = Modes(frequencies=fundamental * ratios[keep], powers=-6.0 - 3.0 * np.arange(keep.sum()),
                  decays=np.linspace(2.5, 0.6, keep.sum()) * rng.uniform(0.7, 1.3), sample_rate=rate)
    strike = synthesize(modes, duration=length / rate, ceiling=float("inf")).astype(np.float64)
    count = int(rng.integers(1, 3 if length / rate < 2.0 else 6))
    track = np.zeros(length)
    onsets = _times(rng, count, length / rate, 0.1)
    for onset in onsets:
        add_at(track, strike, round(onset * rate))
    return track, {"fundamental_hz": fundamental, "count_times": ("once", "twice", "three times")[min(count, 3) - 1],
                   "onsets_s": onsets.tolist(), "pitch": _pitch_word(fundamental, 700.0)}


def _chirps(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    seconds = length / rate
    count = max(1, int(rng.integers(1, 4) * max(1.0, seconds / 0.64) ** 0.5))
    start_hz = float(rng.uniform(400.0, 1500.0))
    ratio = float(rng.uniform(2.0, 3.5))
    chirp_s = min(seconds / count * 0.8, rng.uniform(0.12, 0.3))
    n = round(chirp_s * rate)
    t = np.arange(n) / rate
    # Exponential sweep start → start·ratio: phase = 2π f0 T / ln r · (r^{t/T} − 1).
    phase = 2.0 * np.pi * start_hz * chirp_s / math.log(ratio) * (ratio ** (t / chirp_s) - 1.0)
    one = (np.sin(phase) + 0.3 * np.sin(2.0 * phase)) * np.hanning(n)
    track = np.zeros(length)
    onsets = _times(rng, count, seconds, chirp_s)
    for onset in onsets:
        add_at(track, one, round(onset * rate))
    return track, {"count": NUMBER_WORDS[min(count, 9)], "start_hz": start_hz, "end_hz": start_hz * ratio,
                   "onsets_s": onsets.tolist(), "chirp_s": chirp_s, "pitch": _pitch_word(start_hz, 900.0)}


def _knocks(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    material = ("wood", "plastic")[int(rng.integers(2))]
    sound = knock(material, float(rng.uniform(0.6, 1.5)))
    count = max(2, int(rng.integers(2, 6) * max(1.0, length / rate / 0.64) ** 0.5))
    onsets = _times(rng, count, length / rate, 0.05)
    track = np.zeros(length)
    for onset in onsets:
        add_at(track, sound, round(onset * rate), gain=rng.uniform(0.6, 1.0))
    return track, {"count": NUMBER_WORDS[min(count, 9)], "material": material, "onsets_s": onsets.tolist()}


def _hums(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    fundamental = float(rng.uniform(80.0, 250.0))
    t = np.arange(length) / rate
    phase = 2.0 * np.pi * fundamental * t + 0.02 * np.sin(2.0 * np.pi * rng.uniform(3, 6) * t)
    harmonics = int(rng.integers(4, 7))
    track = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return track * np.minimum(t / 0.01, 1.0), {"fundamental_hz": fundamental, "harmonics": harmonics,
                                                "pitch": _pitch_word(fundamental, 150.0)}


def _sirens(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    low, high = float(rng.uniform(500.0, 800.0)), float(rng.uniform(1100.0, 1600.0))
    sweep_hz = float(rng.uniform(1.5, 4.0))
    t = np.arange(length) / rate
    frequency = low + (high - low) * 0.5 * (1.0 - np.cos(2.0 * np.pi * sweep_hz * t + rng.uniform(0, 2 * np.pi)))
    phase = 2.0 * np.pi * np.cumsum(frequency) / rate
    return np.sin(phase) + 0.25 * np.sin(3.0 * phase), {"low_hz": low, "high_hz": high, "sweep_hz": sweep_hz,
                                                         "pitch": _pitch_word(high, 1350.0)}


def _rain(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    per_second = float(rng.uniform(40.0, 150.0))
    count = max(1, int(per_second * length / rate))
    track = np.zeros(length)
    for onset in rng.uniform(0, length, count):
        add_at(track, tick(rng), int(onset), gain=rng.uniform(0.2, 1.0))
    intensity = "light" if per_second < 70 else "steady" if per_second < 110 else "heavy"
    return track, {"ticks_per_second": per_second, "intensity": intensity}


def _wind(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    t = np.arange(length) / rate
    seconds = length / rate
    envelope = np.full(length, 0.2)
    for _ in range(int(rng.integers(1, 3))):
        centre, width = rng.uniform(0.2, 0.8) * seconds, rng.uniform(0.15, 0.35) * seconds
        envelope += rng.uniform(0.5, 0.8) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    cutoff = float(rng.uniform(300.0, 900.0))
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1.0 / rate)
    noise = np.fft.irfft(spectrum / (1.0 + (frequencies / cutoff) ** 2), n=length)
    strong = float(envelope.max()) > 0.85
    return noise * envelope, {"cutoff_hz": cutoff, "intensity": "strong" if strong else "light"}


def _beeps(rng: np.random.Generator, length: int, rate: int) -> tuple[np.ndarray, dict]:
    frequency = float(rng.uniform(1000.0, 3000.0))
    seconds = length / rate
    count = max(2, int(rng.integers(2, 6) * max(1.0, seconds / 0.64) ** 0.5))
    beep_s = min(rng.uniform(0.04, 0.08), seconds / count * 0.6)
    n = round(beep_s * rate)
    one = np.sin(2.0 * np.pi * frequency * np.arange(n) / rate) * np.minimum(1.0, np.minimum(
        np.arange(n), n - 1 - np.arange(n)) / (0.003 * rate))
    onsets = _times(rng, count, seconds, beep_s)
    track = np.zeros(length)
    for onset in onsets:
        add_at(track, one, round(onset * rate))
    return track, {"count": NUMBER_WORDS[min(count, 9)], "frequency_hz": frequency, "onsets_s": onsets.tolist(),
                   "pitch": _pitch_word(frequency, 2000.0)}


_SOUND_RENDERERS = {"bells": _bells, "chirps": _chirps, "knocks": _knocks, "hums": _hums, "sirens": _sirens,
                    "rain": _rain, "wind": _wind, "beeps": _beeps}
