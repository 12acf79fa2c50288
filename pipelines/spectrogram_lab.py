"""The Spectrogram Lab: pictures played as spectrograms, and sounds drawn as pictures.

Uses the Auffusion convention of `pipelines.audio` (the one Images that Sound composes in): a grayscale picture
is a log-mel spectrogram whose pixel p means log-magnitude p·(ln 200 − ln 1e-5) + ln 1e-5, top row = highest
mel bin. Sound comes back by Griffin-Lim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.audio import (
    SPECS, AudioSpec, griffin_lim, image_to_spectrogram, log_mel, spectrogram_to_image,
)

MIN_SECONDS, MAX_SECONDS = 0.5, 10.24
FULL_SCALE = 0.99  # loud pictures are scaled down to this peak instead of clipping


@dataclass
class LabResult:
    """A sound and the spectrogram image that goes with it (grayscale, [0, 1], low frequencies at the bottom)."""

    audio: np.ndarray
    sample_rate: int
    image: np.ndarray
    gain: float = 1.0  # applied to the audio to keep it below full scale (1.0: unchanged)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class SpectrogramLabPipeline:
    """Picture <-> sound through the Auffusion spectrogram convention and Griffin-Lim (no weights)."""

    def __init__(self, spec: AudioSpec = SPECS["auffusion"]):
        self.spec = spec

    def picture_to_sound(self, picture: np.ndarray, seconds: float = 5.12, invert: bool = False,
                         n_iter: int = 32, seed: int = 0, vocoder: Callable | None = None) -> LabResult:
        """Play a picture as a spectrogram lasting `seconds`.

        `picture`: [H, W] or [H, W, C] in [0, 1] (channels are averaged); it is resized to n_mels rows and one
        column per spectrogram frame. `invert` makes dark pixels loud, for dark drawings on a light ground.
        `vocoder` (log-mel -> waveform, e.g. a HiFi-GAN) replaces Griffin-Lim (`n_iter`, `seed`) when given.
        """
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in [{MIN_SECONDS}, {MAX_SECONDS}], got {seconds}")
        frames = self.spec.frames_for(round(seconds * self.spec.sample_rate))
        image = fit_picture(picture, rows=self.spec.n_mels, columns=frames)
        if invert:
            image = 1.0 - image
        log_mel_spec = image_to_spectrogram(image, self.spec)
        if vocoder is None:
            audio = griffin_lim(log_mel_spec, self.spec, n_iter=n_iter, seed=seed)
        else:
            audio = vocoder(log_mel_spec)
        gain = min(1.0, FULL_SCALE / max(float(np.abs(audio).max()), 1e-12))
        return LabResult(audio * gain, self.spec.sample_rate, image, gain)

    def sound_to_picture(self, audio: np.ndarray) -> LabResult:
        """The Auffusion spectrogram image of a sound at the spec's rate."""
        if len(audio) < self.spec.hop_length:
            raise ValueError(f"the sound is too short: it needs at least {self.spec.hop_length} samples")
        image = spectrogram_to_image(log_mel(audio, self.spec), self.spec)
        return LabResult(np.asarray(audio, dtype=np.float32), self.spec.sample_rate, image)

    def heard_again(self, played: LabResult) -> np.ndarray:
        """The spectrogram image of a played picture's sound at its level before the safety gain.

        Compared with `played.image`, this shows what Griffin-Lim's phase recovery kept.
        """
        log_mel_spec = log_mel(played.audio / played.gain, self.spec, normalize=False)
        return spectrogram_to_image(log_mel_spec, self.spec)


def round_trip_error(original: np.ndarray, again: np.ndarray) -> float:
    """Mean absolute difference between two spectrogram images, in image units (0 = same, 1 = opposite)."""
    columns = min(original.shape[1], again.shape[1])
    return float(np.abs(original[:, :columns] - again[:, :columns]).mean())


def fit_picture(picture: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Grayscale [rows, columns] in [0, 1] from an [H, W] or [H, W, C] picture in [0, 1] (bicubic resize)."""
    picture = np.asarray(picture, dtype=np.float32)
    gray = picture.mean(axis=-1) if picture.ndim == 3 else picture
    resized = Image.fromarray(gray).resize((columns, rows), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
