"""Small CNN judges of the toy world: which picture class a 256×W image shows, which sound class a spectrogram holds,
which material an impact sound was struck from.

All judges read a grayscale [N, H, W] array in [0, 1]: the image judge the picture, the sound judge the Auffusion
spectrogram image (`pipelines.audio`: 256 mel rows, low frequencies at the bottom), the material judge the impact
spectrogram image of `impact_spectrogram_images` (the paper's material classifier reads the clip's log-magnitude
STFT 2048/256; Su et al. 2023, Sec. 4). Rows are resized to 256; any width works (the features
are averaged over the columns, per row band, so where in time a sound sits does not matter but which frequency
band does).

Saved as `<kind>.safetensors` + `<kind>.json` (the config: classes, channels) in a folder (the bundled ones:
`assets/models/judges/`). `JudgeImageScorer` and `JudgeSoundScorer` wrap them in the ranking interface of
`pipelines.images_that_sound.ranking`: the score is the judge's probability of the class named by the prompt,
read from the prompt's words through the toy caption templates (`class_of_prompt`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pipelines.audio import SPECS, log_mel, peak_normalize_rows, resample, spectrogram_to_image, stft_magnitude
from pipelines.impact_sound.materials import MATERIALS
from pipelines.toyworld.captioned import (CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, IMAGE_CAPTIONS, IMAGE_CLASSES,
                                          SOUND_CAPTIONS, SOUND_CLASSES)

AUFFUSION = SPECS["auffusion"]
IMPACT = SPECS["impact"]
ROWS = 256
KINDS = ("image", "sound", "material")
# The material judge's input: dB re the clip's loudest STFT bin, floored 80 dB down (the paper extractor's floor).
MATERIAL_FLOOR_DB = 80.0
MATERIAL_AMIN = 1e-5  # magnitude floor before the log (librosa.amplitude_to_db's amin)
MATERIAL_ROW_POOL = 4  # 1024 STFT bins (Nyquist dropped) -> 256 rows of 86 Hz, max over each group of 4
STUDIO_JUDGES = Path(__file__).resolve().parent.parent.parent / "assets" / "models" / "judges"
STOPWORDS = frozenset({"a", "an", "the", "of", "on", "in", "and", "to", "going", "up", "down"})


@dataclass(frozen=True)
class JudgeConfig:
    """What a saved judge is: its kind ("image" | "sound" | "material"), its classes (output order) and its conv
    widths."""

    kind: str
    classes: tuple[str, ...]
    channels: tuple[int, ...] = (16, 32, 48, 64)
    bands: int = 8  # row bands kept after the convolutions (frequency position matters for sounds)
    extra: dict = field(default_factory=dict)


class JudgeCNN(torch.nn.Module):
    """Strided 3×3 conv stack (first 5×5) with BatchNorm + GELU, mean over columns, `bands` row bands, linear."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = config
        layers, previous = [], 1
        for index, width in enumerate(config.channels):
            kernel = 5 if index == 0 else 3
            layers += [torch.nn.Conv2d(previous, width, kernel, stride=2, padding=kernel // 2, bias=False),
                       torch.nn.BatchNorm2d(width), torch.nn.GELU()]
            previous = width
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(previous * config.bands, len(config.classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 1, 256, W] in [0, 1] -> logits [N, classes]."""
        return self.head(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 1, 256, W] in [0, 1] -> the features before the classification layer [N, channels · bands]."""
        h = self.features(x * 2.0 - 1.0)
        return F.adaptive_avg_pool2d(h, (self.config.bands, 1)).flatten(1)

    @torch.no_grad()
    def embeddings(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """[N, H, W] grayscale in [0, 1] -> pre-classifier features [N, channels · bands] (eval mode, float32),
        what the paper's FID/KID compare (Su et al. 2023, Sec. 4: "features before the classification layer")."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [self.embed(to_input(images[i : i + batch]).to(device)).float().cpu()
               for i in range(0, len(images), batch)]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, self.head.in_features), np.float32)

    @torch.no_grad()
    def probabilities(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """[N, H, W] grayscale in [0, 1] -> class probabilities [N, classes] (eval mode, float32)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [F.softmax(self(to_input(images[i : i + batch]).to(device)), dim=-1).float().cpu()
               for i in range(0, len(images), batch)]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.config.classes)), np.float32)

    def predict(self, images: np.ndarray) -> list[str]:
        """The most probable class name of each image."""
        return [self.config.classes[i] for i in self.probabilities(images).argmax(axis=1)]


def to_input(images: np.ndarray) -> torch.Tensor:
    """[N, H, W] (or [H, W]) array in [0, 1] -> float32 tensor [N, 1, 256, W] (rows resized to 256 if needed)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    x = x[None] if x.ndim == 2 else x
    x = x[:, None].clamp(0.0, 1.0)
    if x.shape[-2] != ROWS:
        x = F.interpolate(x, size=(ROWS, x.shape[-1]), mode="bilinear", align_corners=False)
    return x


def save_judge(judge: JudgeCNN, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """`folder/<kind>.safetensors` (in `dtype`) + `folder/<kind>.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in judge.state_dict().items()}
    save_file(state, str(folder / f"{judge.config.kind}.safetensors"))
    (folder / f"{judge.config.kind}.json").write_text(json.dumps(asdict(judge.config), indent=2))
    return folder / f"{judge.config.kind}.safetensors"


def load_judge(kind: str, folder: str | Path = STUDIO_JUDGES) -> JudgeCNN:
    """The saved judge of `kind` from `folder`, float32, eval mode (safetensors only)."""
    if kind not in KINDS:
        raise ValueError(f"judge kind must be one of {KINDS}, got {kind!r}")
    folder = Path(folder)
    raw = json.loads((folder / f"{kind}.json").read_text())
    config = JudgeConfig(raw["kind"], tuple(raw["classes"]), tuple(raw["channels"]), raw["bands"], raw.get("extra", {}))
    judge = JudgeCNN(config)
    judge.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in load_file(str(folder / f"{kind}.safetensors")).items()})
    return judge.eval()


def judges_missing(folder: str | Path = STUDIO_JUDGES, kinds: tuple[str, ...] = KINDS) -> str | None:
    """None when every judge file is there, else a sentence saying which are missing."""
    absent = [f"{k}.{ext}" for k in kinds for ext in ("json", "safetensors")
              if not (Path(folder) / f"{k}.{ext}").is_file()]
    return f"are missing: {', '.join(absent)} not found in {folder}" if absent else None


# Prompt -> class -----------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def class_keywords(kind: str) -> dict[str, set[str]]:
    """Per class of `kind`, the caption-template words (slots and stop words removed, singular forms) that no other
    class of that kind uses. The class name always counts."""
    templates = IMAGE_CAPTIONS if kind == "image" else SOUND_CAPTIONS
    words = {name: {_singular(w) for t in tts for w in _words(re.sub(r"\{\w+\}", " ", t))} - STOPWORDS
             for name, tts in templates.items()}
    return {name: {w for w in own if all(w not in words[o] for o in words if o != name)} | {_singular(name)}
            for name, own in words.items()}


def template_class(prompt: str, kind: str) -> str | None:
    """The class whose caption template the prompt fills exactly (slots take one or two words), or None."""
    text = " ".join(_words(prompt))
    for name, templates in (IMAGE_CAPTIONS if kind == "image" else SOUND_CAPTIONS).items():
        for template in templates:
            pattern = r"[a-z]+(?: [a-z]+)?".join(re.escape(" ".join(_words(part)))
                                                   for part in re.split(r"\{\w+\}", template))
            if re.fullmatch(re.sub(r"\s+", " ", pattern).strip(), text):
                return name
    return None


def class_of_prompt(prompt: str, kind: str, classes: tuple[str, ...] | None = None) -> str:
    """The toy class a prompt names ("a chiming bell" -> "bells"): the class whose caption template it fills, else
    the most keyword hits (`class_keywords`, the class name counting double). Raises ValueError when no class or
    several tie, or the class is not among `classes`."""
    found = template_class(prompt, kind)
    if found is not None:
        if classes is not None and found not in classes:
            raise ValueError(f"{prompt!r} names {found!r}, which this judge does not know ({', '.join(classes)})")
        return found
    scores: dict[str, int] = {}
    names = {_singular(name): name for name in (IMAGE_CLASSES if kind == "image" else SOUND_CLASSES)}
    for name, keys in class_keywords(kind).items():
        hits = [w for w in map(_singular, _words(prompt)) if w in keys]
        scores[name] = len(hits) + sum(1 for w in hits if names.get(w) == name)
    best = max(scores.values())
    winners = [name for name, score in scores.items() if score == best]
    if best == 0 or len(winners) > 1:
        raise ValueError(f"cannot tell which toy {kind} class {prompt!r} names"
                         + (f" (ties: {', '.join(winners)})" if best else ""))
    if classes is not None and winners[0] not in classes:
        raise ValueError(f"{prompt!r} names {winners[0]!r}, which this judge does not know ({', '.join(classes)})")
    return winners[0]


# Scorers (the ranking interface) -------------------------------------------------------------------------------------


class JudgeImageScorer:
    """Image scorer: `(image_prompt, spectrograms [N, H, W] in [0, 1]) -> P(prompt's picture class)` [N]."""

    def __init__(self, judge: JudgeCNN) -> None:
        self.judge = judge

    def to(self, device: str) -> JudgeImageScorer:
        self.judge.to(device)
        return self

    @classmethod
    def from_pretrained(cls, folder: str | Path = STUDIO_JUDGES) -> JudgeImageScorer:
        return cls(load_judge("image", folder))

    def __call__(self, prompt: str, spectrograms: np.ndarray) -> np.ndarray:
        index = self.judge.config.classes.index(class_of_prompt(prompt, "image", self.judge.config.classes))
        return self.judge.probabilities(spectrograms)[:, index].astype(np.float32)


class JudgeSoundScorer:
    """Audio scorer: `(audio_prompt, audio [N, L], sample_rate) -> P(prompt's sound class)` [N], judged on the
    Auffusion spectrogram image of the audio (`score_spectrograms` judges spectrogram images directly)."""

    def __init__(self, judge: JudgeCNN) -> None:
        self.judge = judge

    def to(self, device: str) -> JudgeSoundScorer:
        self.judge.to(device)
        return self

    @classmethod
    def from_pretrained(cls, folder: str | Path = STUDIO_JUDGES) -> JudgeSoundScorer:
        return cls(load_judge("sound", folder))

    def __call__(self, prompt: str, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.score_spectrograms(prompt, audio_to_spectrograms(audio, sample_rate))

    def score_spectrograms(self, prompt: str, spectrograms: np.ndarray) -> np.ndarray:
        index = self.judge.config.classes.index(class_of_prompt(prompt, "sound", self.judge.config.classes))
        return self.judge.probabilities(spectrograms)[:, index].astype(np.float32)


def audio_to_spectrograms(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[N, L] audio at any rate -> Auffusion spectrogram images [N, 256, frames] (as the toy world makes them)."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    rows = [resample(a, sample_rate, AUFFUSION.sample_rate) if sample_rate != AUFFUSION.sample_rate else a
            for a in audio]
    return np.stack([spectrogram_to_image(log_mel(a, AUFFUSION), AUFFUSION) for a in rows])


def default_classes(kind: str, which: str = "core") -> tuple[str, ...]:
    """The judge's classes: the core four or all eight of `kind`; for "material" the toy materials."""
    if kind == "material":
        return tuple(MATERIALS)
    if kind == "image":
        return CORE_IMAGE_CLASSES if which == "core" else IMAGE_CLASSES
    return CORE_SOUND_CLASSES if which == "core" else SOUND_CLASSES


# The material judge's input ------------------------------------------------------------------------------------------


def impact_spectrogram_images(audio: np.ndarray | torch.Tensor, sample_rate: int = IMPACT.sample_rate) -> np.ndarray:
    """Impact clips [N, S] (or one [S]) -> the material judge's input [N, 256, 44] in [0, 1], float32.

    Each clip is resampled to 44.1 kHz if needed, cut or zero-padded to 0.25 s and peak-normalised; then
    |STFT| with n_fft 2048, hop 256, periodic Hann, centred with zero padding (the paper's representation, notes
    B1: 1025 × 44), in dB re the clip's loudest bin, floored at −80 dB (`MATERIAL_FLOOR_DB`) and mapped to
    [0, 1] (0 = floor, 1 = loudest). The 1024 bins below Nyquist are pooled (max) in groups of 4 into 256 rows
    of 86 Hz, low frequencies in row 0. **Departure**: the paper's classifier reads the log-spectrogram itself;
    the relative floor makes this judge blind to the overall level and to anything 80 dB below the peak (e.g. the
    different near-silent floors of recordings, syntheses and Griffin-Lim outputs). A silent clip gives an
    all-zero image. Raises ValueError on non-finite or empty input.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    x = x.float().reshape(1, -1) if x.ndim == 1 else x.float()
    if x.ndim != 2 or x.shape[-1] == 0 or not bool(torch.isfinite(x).all()):
        raise ValueError("impact audio must be finite mono clips, [samples] or [clips, samples], not empty")
    if sample_rate != IMPACT.sample_rate:
        x = torch.as_tensor(np.stack([resample(row, sample_rate, IMPACT.sample_rate) for row in x.numpy()]))
    return impact_spectrogram_tensor(x).numpy()


def impact_spectrogram_tensor(audio: torch.Tensor) -> torch.Tensor:
    """The batched torch core of `impact_spectrogram_images`: [N, S] at 44.1 kHz -> [N, 256, 44] in [0, 1]."""
    clip = IMPACT.clip_samples
    x = audio[..., :clip] if audio.shape[-1] >= clip else F.pad(audio, (0, clip - audio.shape[-1]))
    x = peak_normalize_rows(x, eps=1e-12)
    magnitude = stft_magnitude(x, IMPACT)
    decibels = 20.0 * torch.log10(magnitude.clamp_min(MATERIAL_AMIN))
    decibels = decibels - decibels.amax(dim=(1, 2), keepdim=True)
    unit = (decibels.clamp_min(-MATERIAL_FLOOR_DB) + MATERIAL_FLOOR_DB) / MATERIAL_FLOOR_DB
    bins = (IMPACT.n_fft // 2) // MATERIAL_ROW_POOL * MATERIAL_ROW_POOL
    pooled = unit[:, :bins].reshape(len(unit), -1, MATERIAL_ROW_POOL, unit.shape[-1]).amax(dim=2)
    silent = x.abs().amax(dim=-1) == 0
    return torch.where(silent[:, None, None], torch.zeros_like(pooled), pooled)


def material_probabilities(judge: JudgeCNN, audio: np.ndarray, sample_rate: int = IMPACT.sample_rate) -> np.ndarray:
    """The material judge's class probabilities [N, materials] for impact clips [N, S]."""
    if judge.config.kind != "material":
        raise ValueError(f"this needs the material judge, got the {judge.config.kind!r} judge")
    return judge.probabilities(impact_spectrogram_images(audio, sample_rate))
