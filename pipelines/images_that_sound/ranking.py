"""Scoring and re-ranking many samples, as the Images that Sound authors advise (~100 samples, keep the best).

Scorers are plain callables, so any judge plugs in (the toy-world classifiers of the training issue included):

- an image scorer: `(image_prompt, spectrograms [N, H, W] in [0, 1]) -> scores [N]`;
- an audio scorer: `(audio_prompt, audio [N, L], sample_rate) -> scores [N]`.

The paper's scorers (authors' `src/evaluator`): CLIP `openai/clip-vit-base-patch16` on the grayscale spectrogram
cut into H×H windows with stride H/8, scored as the mean over windows of max(cos, 0); CLAP
`laion/clap-htsat-unfused` on the audio resampled to 48 kHz and peak-normalised, scored as max(cos, 0).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from pipelines.audio import peak_normalize, resample
from pipelines.images_that_sound import CLAP_MODEL, CLIP_MODEL

CLAP_SAMPLE_RATE = 48000

ImageScorer = Callable[[str, np.ndarray], np.ndarray]
AudioScorer = Callable[[str, np.ndarray, int], np.ndarray]


def _features(output) -> torch.Tensor:
    """Projected embeddings from transformers' get_*_features (a tensor, or an output holding `pooler_output`)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def spectrogram_windows(spectrogram: np.ndarray) -> list[Image.Image]:
    """H×H windows with stride H/8 across the width (25 for 256×1024), as RGB images; one window if W < H."""
    height, width = spectrogram.shape
    gray = (np.clip(spectrogram, 0, 1) * 255 + 0.5).astype(np.uint8)
    starts = range(0, width - height + 1, max(height // 8, 1)) if width >= height else [0]
    return [Image.fromarray(gray[:, start : start + height]).convert("RGB") for start in starts]


class ClipWindowScorer:
    """CLIP score of an image prompt against a spectrogram, averaged over sliding square windows."""

    def __init__(self, model, tokenizer, image_processor):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor

    @classmethod
    def from_pretrained(cls, source: str = CLIP_MODEL) -> ClipWindowScorer:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        return cls(CLIPModel.from_pretrained(source), AutoTokenizer.from_pretrained(source),
                   CLIPImageProcessor.from_pretrained(source))

    @torch.no_grad()
    def __call__(self, prompt: str, spectrograms: np.ndarray) -> np.ndarray:
        tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
        text = _features(self.model.get_text_features(**tokens))
        scores = []
        for spectrogram in spectrograms:
            pixels = self.image_processor(images=spectrogram_windows(spectrogram), return_tensors="pt").pixel_values
            image = _features(self.model.get_image_features(pixel_values=pixels))
            scores.append(_cosine(image, text)[:, 0].clamp(min=0).mean().item())
        return np.asarray(scores, dtype=np.float32)


class ClapScorer:
    """CLAP score of an audio prompt against each sound (48 kHz, peak-normalised), max(cos, 0)."""

    def __init__(self, model, tokenizer, feature_extractor):
        self.model, self.tokenizer, self.feature_extractor = model.eval(), tokenizer, feature_extractor

    @classmethod
    def from_pretrained(cls, source: str = CLAP_MODEL) -> ClapScorer:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        return cls(ClapModel.from_pretrained(source), AutoTokenizer.from_pretrained(source),
                   ClapFeatureExtractor.from_pretrained(source))

    @torch.no_grad()
    def __call__(self, prompt: str, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        sounds = [peak_normalize(resample(a, sample_rate, CLAP_SAMPLE_RATE), 1.0) for a in audio]
        features = self.feature_extractor(sounds, sampling_rate=CLAP_SAMPLE_RATE, return_tensors="pt")
        tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
        sound = _features(self.model.get_audio_features(**features))
        text = _features(self.model.get_text_features(**tokens))
        return _cosine(sound, text)[:, 0].clamp(min=0).numpy().astype(np.float32)


def rank(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Sample indices, best first, by the mean of each scorer's rank (ties broken by index)."""
    names = sorted(scores)
    if not names:
        raise ValueError("no scores to rank by")
    ranks = np.mean([np.argsort(np.argsort(-scores[name], kind="stable"), kind="stable") for name in names], axis=0)
    return np.argsort(ranks, kind="stable")


def authors_selection(clip: np.ndarray, clap: np.ndarray, top_fraction: float = 0.2) -> np.ndarray:
    """The authors' `enable_rank`: samples in both the top 20 % by CLAP and the top 20 % by CLIP, best CLIP first."""
    count = max(1, int(round(len(clip) * top_fraction)))
    both = set(np.argsort(-clip, kind="stable")[:count]) & set(np.argsort(-clap, kind="stable")[:count])
    return np.asarray(sorted(both, key=lambda index: -clip[index]), dtype=int)
