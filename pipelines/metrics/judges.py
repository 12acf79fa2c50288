"""Small CNN judges of the toy world: which picture class a 256×W image shows, which sound class a spectrogram holds.

Both judges read a grayscale [N, H, W] array in [0, 1]: the image judge the picture, the sound judge the Auffusion
spectrogram image (`pipelines.audio`: 256 mel rows, low frequencies at the bottom). Rows are resized to 256; any
width works (the features are averaged over the columns, per row band, so where in time a sound sits does not
matter but which frequency band does).

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

from pipelines.audio import SPECS, log_mel, resample, spectrogram_to_image
from pipelines.toyworld.captioned import (CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, IMAGE_CAPTIONS, IMAGE_CLASSES,
                                          SOUND_CAPTIONS, SOUND_CLASSES)

AUFFUSION = SPECS["auffusion"]
ROWS = 256
KINDS = ("image", "sound")
STUDIO_JUDGES = Path(__file__).resolve().parent.parent.parent / "assets" / "models" / "judges"
STOPWORDS = frozenset({"a", "an", "the", "of", "on", "in", "and", "to", "going", "up", "down"})


@dataclass(frozen=True)
class JudgeConfig:
    """What a saved judge is: its kind ("image" | "sound"), its classes (output order) and its conv widths."""

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
        h = self.features(x * 2.0 - 1.0)
        h = F.adaptive_avg_pool2d(h, (self.config.bands, 1)).flatten(1)
        return self.head(h)

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
    """The judge's classes: the core four (DESIGN §6) or all eight of `kind`."""
    if kind == "image":
        return CORE_IMAGE_CLASSES if which == "core" else IMAGE_CLASSES
    return CORE_SOUND_CLASSES if which == "core" else SOUND_CLASSES
