"""The Spectrogram Lab's pipeline: a picture played as a spectrogram, and a sound drawn as one.

Uses an `AudioSpec` of `pipelines.audio` (by default Auffusion's, the convention Images that Sound composes in): a
grayscale picture is a log-mel spectrogram whose pixel p means log-magnitude p·(ln 200 − ln 1e-5) + ln 1e-5, top
row = highest mel bin. Sound comes back by Griffin-Lim, or by a neural vocoder handed to the call.

It has no weights: `save_pretrained` writes `config.json` naming the spec and Griffin-Lim's iteration count, and
`from_pretrained` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.audio import SPECS, griffin_lim, image_to_spectrogram, log_mel, spectrogram_to_image
from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline, read_json, write_json
from pipelines.spectrogram_lab import FULL_SCALE, MAX_SECONDS, MIN_SECONDS

CONFIG_NAME = "config.json"
Vocoder = Callable[[np.ndarray], np.ndarray]  # log-mel [n_mels, frames] -> waveform


@dataclass
class SpectrogramLabOutput(BaseOutput):
    """A sound and the spectrogram image that goes with it (grayscale, [0, 1], low frequencies at the bottom)."""

    audio: np.ndarray
    sample_rate: int
    image: np.ndarray
    gain: float = 1.0  # applied to the audio to keep it below full scale (1.0: unchanged)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class SpectrogramLabPipeline(StudioPipeline):
    """Picture <-> sound through one spectrogram convention and Griffin-Lim (no weights).

    Calling it plays a picture; `sound_to_picture` draws a sound; `heard_again` analyses a played picture's sound.
    """

    def __init__(self, spec: str = "auffusion", griffin_lim_iterations: int = 32):
        super().__init__()
        if spec not in SPECS or SPECS[spec].n_mels is None:
            raise ValueError(f"`spec` must name a spectrogram convention of pipelines.audio, got {spec!r}")
        self.register_to_config(spec=spec, griffin_lim_iterations=griffin_lim_iterations)
        self.spec = SPECS[spec]

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SpectrogramLabPipeline:
        return cls(**read_json(Path(folder) / CONFIG_NAME))

    def save_pretrained(self, folder: str | Path) -> Path:
        write_json({"spec": self.config.spec, "griffin_lim_iterations": self.config.griffin_lim_iterations},
                   Path(folder) / CONFIG_NAME)
        return Path(folder)

    def __call__(self, picture: np.ndarray, seconds: float = 5.12, invert: bool = False,
                 griffin_lim_iterations: int | None = None, vocoder: Vocoder | None = None,
                 generator: torch.Generator | None = None, return_dict: bool = True,
                 callback_on_step_end: StepCallback | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None) -> SpectrogramLabOutput | tuple:
        """Play a picture as a spectrogram lasting `seconds`.

        `picture`: [H, W] or [H, W, C] in [0, 1] (channels are averaged); it is resized to n_mels rows and one
        column per spectrogram frame. `invert` makes dark pixels loud, for dark drawings on a light ground.
        `vocoder` (log-mel -> waveform, e.g. a HiFi-GAN) replaces Griffin-Lim, whose initial phase is drawn from
        `generator` (none: seed 0, so a picture always plays the same).

        Two stages reach `callback_on_step_end(pipe, step, timestep, callback_kwargs)` (timestep = step: there is
        no noise schedule): 0 once the picture is fitted (preview: the spectrogram image to play), 1 once the sound
        is made (preview: the sound's own spectrogram, `heard_again`, computed only when read). Griffin-Lim runs
        as one call, so an interrupt takes effect between the stages: set after stage 0, the sound is silence.
        """
        iterations = self.config.griffin_lim_iterations if griffin_lim_iterations is None else griffin_lim_iterations
        self.check_inputs(seconds, iterations)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        frames = self.spec.frames_for(round(seconds * self.spec.sample_rate))
        image = fit_picture(picture, rows=self.spec.n_mels, columns=frames)
        if invert:
            image = 1.0 - image
        self.step_end(callback_on_step_end, 0, 0, callback_on_step_end_tensor_inputs, preview=lambda: image)
        if self.interrupt:
            output = SpectrogramLabOutput(np.zeros(self.spec.samples_for(frames), np.float32), self.spec.sample_rate,
                                          image)
        else:
            output = self.play(image, iterations, vocoder, generator)
            self.step_end(callback_on_step_end, 1, 1, callback_on_step_end_tensor_inputs,
                          preview=lambda: self.heard_again(output))
        return output if return_dict else output.to_tuple()

    def check_inputs(self, seconds: float, iterations: int) -> None:
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"`seconds` must be in [{MIN_SECONDS}, {MAX_SECONDS}], got {seconds}")
        if iterations < 1:
            raise ValueError(f"`griffin_lim_iterations` must be at least 1, got {iterations}")

    def play(self, image: np.ndarray, iterations: int, vocoder: Vocoder | None,
             generator: torch.Generator | None) -> SpectrogramLabOutput:
        """The spectrogram image as sound, turned down to FULL_SCALE when it would clip."""
        log_mel_spec = image_to_spectrogram(image, self.spec)
        if vocoder is None:
            audio = griffin_lim(log_mel_spec, self.spec, n_iter=iterations, seed=phase_seed(generator))
        else:
            audio = vocoder(log_mel_spec)
        gain = min(1.0, FULL_SCALE / max(float(np.abs(audio).max()), 1e-12))
        return SpectrogramLabOutput(audio * gain, self.spec.sample_rate, image, gain)

    def sound_to_picture(self, audio: np.ndarray) -> SpectrogramLabOutput:
        """The spectrogram image of a sound at the spec's rate."""
        if len(audio) < self.spec.hop_length:
            raise ValueError(f"the sound is too short: it needs at least {self.spec.hop_length} samples")
        image = spectrogram_to_image(log_mel(audio, self.spec), self.spec)
        return SpectrogramLabOutput(np.asarray(audio, dtype=np.float32), self.spec.sample_rate, image)

    def heard_again(self, played: SpectrogramLabOutput) -> np.ndarray:
        """The spectrogram image of a played picture's sound at its level before the safety gain.

        Compared with `played.image`, this shows what phase recovery kept.
        """
        log_mel_spec = log_mel(played.audio / played.gain, self.spec, normalize=False)
        return spectrogram_to_image(log_mel_spec, self.spec)


def phase_seed(generator: torch.Generator | None) -> int:
    """Griffin-Lim's seed for its random initial phase: drawn from `generator`, 0 without one."""
    return 0 if generator is None else int(torch.randint(2**31 - 1, (1,), generator=generator))


def fit_picture(picture: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Grayscale [rows, columns] in [0, 1] from an [H, W] or [H, W, C] picture in [0, 1] (bicubic resize)."""
    picture = np.asarray(picture, dtype=np.float32)
    gray = picture.mean(axis=-1) if picture.ndim == 3 else picture
    resized = Image.fromarray(gray).resize((columns, rows), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
