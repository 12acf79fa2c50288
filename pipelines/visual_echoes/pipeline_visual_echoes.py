"""Visual Echoes sampling: image → sound, sound → image, both at once, and image-guided sound inpainting.

One masked token transformer over [audio tokens, image tokens] (`modeling_visual_echoes`) and one MaskGIT/MAGE decoding
loop (`scheduling_visual_echoes`) serve every task; the task only says which tokens start masked:

- `image_to_audio`: the picture's tokens are given, the audio tokens start fully masked;
- `audio_to_image`: the sound's tokens are given, the image tokens start fully masked;
- `co_generation`: both start fully masked and are unmasked together, each modality with its own cosine schedule
  (the paper does not say whether one schedule runs over both; separate schedules keep each modality's pace);
- `inpaint_audio`: the sound's tokens are given except the token columns overlapping `inpaint_range_s`, which are
  regenerated guided by the picture (tokens outside the range never change).

Classifier-free guidance (Eq. 2 as printed, on probabilities: p̂ = s·p_c + (1 − s)·p_u, see `guide`), where the
unconditional pass sees the condition modality fully masked (the paper needs no extra training for it: its independent
per-modality mask ratios already show a nearly masked modality; the studio trainer's `--task-share` also trains that
state). The conditional and unconditional passes run as one batch. The paper's
defaults: N = 30 iterations, temperature T = 9, s = 3; the paper uses no guidance for any picture it generates and
none for co-generation, so `guidance_scale=None` means 3 for a sound made from a picture (image_to_audio,
inpaint_audio) and 1 (off) otherwise.

Sound: token grid -> SpecVQGAN spectrogram (the audio tokenizer's decoder) -> waveform by Griffin-Lim through
`pipelines.audio` (the paper uses a HiFi-GAN vocoder; none matching this mel convention is bundled).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import VQModel

from pipelines.audio import SPECS, griffin_lim, resample, specvqgan_mel, unit_to_log_mel
from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline, read_json, save_module, write_json

from .modeling_visual_echoes import VisualEchoesTransformer, decode_tokens, encode_tokens, tokenizer_grid
from .scheduling_visual_echoes import MaskScheduler, guide

SPEC = SPECS["visual_echoes"]
CONFIG_NAME = "visual_echoes.json"
CONFIG_FORMAT = "visual_echoes-1"
TASKS = ("image_to_audio", "audio_to_image", "co_generation", "inpaint_audio")
OUTPUT_TYPES = ("np", "spectrogram", "tokens")
MAX_SAMPLES = 64  # samples per call
DEFAULT_STEPS, DEFAULT_TEMPERATURE, DEFAULT_GUIDANCE = 30, 9.0, 3.0
GRIFFIN_LIM_ITERATIONS = 32
SILENCE_PEAK = 1e-4  # a sound whose peak is below this is treated as silence
MIN_PICTURE_SIDE = 8

Task = Literal["image_to_audio", "audio_to_image", "co_generation", "inpaint_audio"]
Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class VisualEchoesPipelineOutput(BaseOutput):
    """What one call made (None for what it did not make).

    audios: `[N, S]` float32 waveforms at `sample_rate` (peak at most 0.99), None for `audio_to_image` or
        `output_type` "spectrogram" / "tokens".
    sample_rate: of `audios` (22,050 Hz).
    images: `[N, H, W, 3]` float32 pictures in [0, 1] (the given picture, decoded, for image-conditioned tasks).
    spectrograms: `[N, n_mels, frames]` float32 SpecVQGAN spectrograms in [0, 1], row 0 the lowest band.
    audio_tokens, image_tokens: `[N, L]` int64 token ids (the grids flattened row-major).
    """

    audios: np.ndarray | None
    sample_rate: int
    images: np.ndarray | None
    spectrograms: np.ndarray | None
    audio_tokens: np.ndarray
    image_tokens: np.ndarray


class VisualEchoesPipeline(StudioPipeline):
    """Image → sound, sound → image, co-generation and image-guided sound inpainting with one masked transformer.

    Args:
        audio_tokenizer: `VQModel` over SpecVQGAN spectrograms (1 channel, 80 mels) in [-1, 1].
        image_tokenizer: `VQModel` over RGB pictures in [-1, 1].
        transformer: `VisualEchoesTransformer` whose token lengths and codebooks match the tokenizers.
        audio_frames: spectrogram frames of a clip (paper: 848 = 53·16, 10 s at hop 256 and 22,050 Hz).
        picture_size: side of the square pictures (paper: 256).
        training_record: how the weights were trained (saved with them).
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["preview", "audio_tokens", "image_tokens"]

    def __init__(self, audio_tokenizer: VQModel, image_tokenizer: VQModel, transformer: VisualEchoesTransformer,
                 audio_frames: int | None = None, picture_size: int | None = None,
                 training_record: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.register_modules(audio_tokenizer=audio_tokenizer.eval(), image_tokenizer=image_tokenizer.eval(),
                              transformer=transformer.eval())
        audio_factor = 2 ** (len(audio_tokenizer.config.block_out_channels) - 1)
        image_factor = 2 ** (len(image_tokenizer.config.block_out_channels) - 1)
        length_a, length_v = transformer.lengths
        self.audio_frames = audio_frames or length_a // (SPEC.n_mels // audio_factor) * audio_factor
        self.picture_size = picture_size or int(round(math.sqrt(length_v))) * image_factor
        self.audio_grid = tokenizer_grid(audio_tokenizer, SPEC.n_mels, self.audio_frames)
        self.image_grid = tokenizer_grid(image_tokenizer, self.picture_size, self.picture_size)
        if self.audio_grid[0] * self.audio_grid[1] != length_a or self.image_grid[0] * self.image_grid[1] != length_v:
            raise ValueError(f"the tokenizers give {self.audio_grid} audio and {self.image_grid} image token grids, but "
                             f"the transformer expects {length_a} audio and {length_v} image tokens")
        self.training_record = dict(training_record or {})

    # 0. Loading and saving
    @classmethod
    def from_pretrained(cls, folder: str | Path, torch_dtype: torch.dtype = torch.float32) -> VisualEchoesPipeline:
        """A folder written by `save_pretrained` or the trainer: audio_tokenizer/, image_tokenizer/, transformer/
        (diffusers folders, safetensors) and visual_echoes.json; loaded on the CPU in `torch_dtype`."""
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise ValueError(f"{folder} is not a Visual Echoes model folder (no {CONFIG_NAME})")
        config = read_json(folder / CONFIG_NAME)
        if config.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{folder / CONFIG_NAME} has format {config.get('format')!r}, expected {CONFIG_FORMAT!r}")
        audio = VQModel.from_pretrained(folder / "audio_tokenizer", torch_dtype=torch_dtype)
        image = VQModel.from_pretrained(folder / "image_tokenizer", torch_dtype=torch_dtype)
        transformer = VisualEchoesTransformer.from_pretrained(folder / "transformer", torch_dtype=torch_dtype)
        return cls(audio, image, transformer, config["audio_frames"], config["picture_size"],
                   config.get("training_record"))

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None, **kwargs) -> Path:
        """Write the three networks (optionally cast, e.g. float16 for bundling) and visual_echoes.json."""
        folder = Path(folder)
        for name in ("audio_tokenizer", "image_tokenizer", "transformer"):
            save_module(getattr(self, name), folder / name, dtype)
        write_json({"format": CONFIG_FORMAT, "audio_frames": self.audio_frames, "picture_size": self.picture_size,
                    "sample_rate": SPEC.sample_rate, "training_record": self.training_record}, folder / CONFIG_NAME)
        return folder

    @property
    def clip_seconds(self) -> float:
        return self.audio_frames * SPEC.hop_length / SPEC.sample_rate

    @property
    def clip_samples(self) -> int:
        return self.audio_frames * SPEC.hop_length

    # 1. Inputs
    @staticmethod
    def infer_task(image, audio, inpaint_range_s, task: str | None) -> str:
        if task is not None:
            if task not in TASKS:
                raise ValueError(f"`task` must be one of {', '.join(TASKS)}, got {task!r}.")
            return task
        if inpaint_range_s is not None:
            return "inpaint_audio"
        if image is not None and audio is None:
            return "image_to_audio"
        if audio is not None and image is None:
            return "audio_to_image"
        if image is None and audio is None:
            return "co_generation"
        raise ValueError("Both `image` and `audio` were given: give one (image → sound or sound → image), neither "
                         "(both at once), or both with `inpaint_range_s` (regenerate part of the sound).")

    def check_inputs(self, task: str, image, audio, inpaint_range_s, num_inference_steps: int, temperature: float,
                     guidance_scale: float, num_samples: int, generator: Generator, output_type: str) -> None:
        needs = {"image_to_audio": ("image",), "audio_to_image": ("audio",), "co_generation": (),
                 "inpaint_audio": ("image", "audio")}[task]
        for name, value in (("image", image), ("audio", audio)):
            if name in needs and value is None:
                raise ValueError(f"The task {task!r} needs `{name}`.")
            if name not in needs and value is not None:
                raise ValueError(f"The task {task!r} does not use `{name}`; leave it out.")
        if task == "inpaint_audio":
            if inpaint_range_s is None or len(inpaint_range_s) != 2:
                raise ValueError("`inpaint_range_s` must be (start, end) in seconds for task 'inpaint_audio'.")
            start, end = (float(x) for x in inpaint_range_s)
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end <= self.clip_seconds + 1e-6):
                raise ValueError(f"`inpaint_range_s` must satisfy 0 <= start < end <= {self.clip_seconds:.2f} s (the "
                                 f"clip's length), got {inpaint_range_s}.")
        elif inpaint_range_s is not None:
            raise ValueError(f"`inpaint_range_s` applies to task 'inpaint_audio' only, not {task!r}.")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 1000:
            raise ValueError(f"`num_inference_steps` must be an integer from 1 to 1000, got {num_inference_steps!r}.")
        for name, value in (("temperature", temperature), ("guidance_scale", guidance_scale)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
                raise ValueError(f"`{name}` must be a finite number from 0 to 100, got {value!r}.")
        if not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
            raise ValueError(f"`num_samples` must be an integer from 1 to {MAX_SAMPLES}, got {num_samples!r}.")
        if isinstance(generator, list) and len(generator) != num_samples:
            raise ValueError(f"`generator` is a list of {len(generator)} generators but `num_samples` is "
                             f"{num_samples}; pass one generator per sample, or a single generator.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}.")

    # 2. Conditions -> tokens
    def prepare_picture(self, image) -> torch.Tensor:
        """A PIL image or an array [H, W, 3] / [H, W] (uint8, or float in [0, 1]) -> [1, 3, S, S] in [-1, 1]
        (centre-cropped to a square, resized to the model's side)."""
        from PIL import Image

        if isinstance(image, Image.Image):
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        else:
            array = np.asarray(image)
            if array.dtype == np.uint8:
                array = array.astype(np.float32) / 255.0
            elif not np.issubdtype(array.dtype, np.floating):
                raise ValueError(f"`image` must hold uint8 or float pixels, got {array.dtype}.")
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=-1)
            if array.ndim != 3 or array.shape[-1] not in (3, 4):
                raise ValueError(f"`image` must be a picture [H, W, 3], got an array of shape {array.shape}.")
            if not np.isfinite(array).all():
                raise ValueError("`image` holds invalid (NaN or infinite) pixels.")
            if array.min() < 0 or array.max() > 1:
                raise ValueError("A float `image` must have pixels in [0, 1] (or pass uint8 pixels in 0..255).")
            array = array[..., :3].astype(np.float32)
        height, width = array.shape[:2]
        if min(height, width) < MIN_PICTURE_SIDE:
            raise ValueError(f"The picture is {width} × {height} pixels; it needs at least {MIN_PICTURE_SIDE} × "
                             f"{MIN_PICTURE_SIDE}.")
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = Image.fromarray((array[top:top + side, left:left + side] * 255).round().astype(np.uint8))
        square = square.resize((self.picture_size, self.picture_size), Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.asarray(square, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        return tensor * 2.0 - 1.0

    def prepare_spectrogram(self, audio, audio_sample_rate: int) -> torch.Tensor:
        """A mono waveform [S] in [-1, 1] at `audio_sample_rate` -> SpecVQGAN spectrogram [1, 1, 80, frames] in
        [-1, 1] (resampled to 22,050 Hz, cut or padded with silence to the model's clip)."""
        samples = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio)
        if samples.ndim == 2 and 1 in samples.shape:
            samples = samples.reshape(-1)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
            raise ValueError(f"`audio` must be a mono float waveform [samples], got {samples.dtype} {samples.shape}.")
        if samples.size < 256:
            raise ValueError(f"`audio` is too short ({samples.size} samples); give at least a few milliseconds.")
        if not np.isfinite(samples).all():
            raise ValueError("`audio` holds invalid (NaN or infinite) samples.")
        peak = float(np.abs(samples).max())
        if peak < SILENCE_PEAK:
            raise ValueError("The sound is silent: there is nothing to hear in it. Give a sound with some content.")
        if peak > 1.0:
            raise ValueError(f"`audio` must be in [-1, 1], its peak is {peak:.3g}: normalise it first.")
        if not isinstance(audio_sample_rate, int) or not 1000 <= audio_sample_rate <= 384000:
            raise ValueError(f"`audio_sample_rate` must be an integer rate in Hz, got {audio_sample_rate!r}.")
        if audio_sample_rate != SPEC.sample_rate:
            samples = resample(samples, audio_sample_rate, SPEC.sample_rate)
        samples = np.pad(samples[: self.clip_samples], (0, max(0, self.clip_samples - len(samples))))
        unit = specvqgan_mel(samples.astype(np.float32), SPEC)[:, : self.audio_frames]
        return torch.from_numpy(unit)[None, None] * 2.0 - 1.0

    @torch.no_grad()
    def encode_picture(self, image) -> torch.Tensor:
        return encode_tokens(self.image_tokenizer, self.prepare_picture(image).to(self.device, self.dtype))

    @torch.no_grad()
    def encode_audio(self, audio, audio_sample_rate: int) -> torch.Tensor:
        return encode_tokens(self.audio_tokenizer,
                             self.prepare_spectrogram(audio, audio_sample_rate).to(self.device, self.dtype))

    def inpaint_columns(self, inpaint_range_s: tuple[float, float]) -> list[int]:
        """Audio token columns overlapping the time range (each column spans `factor` spectrogram frames)."""
        factor = self.audio_frames // self.audio_grid[1]
        seconds_per_column = factor * SPEC.hop_length / SPEC.sample_rate
        start, end = inpaint_range_s
        return [c for c in range(self.audio_grid[1])
                if c * seconds_per_column < end and (c + 1) * seconds_per_column > start]

    # 3. The model, with guidance
    def logits(self, audio_tokens: torch.Tensor, image_tokens: torch.Tensor, guided: str | None,
               guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio logits, image logits); the `guided` modality's logits with Eq. 2, the unconditional half of the
        batch seeing the other modality fully masked."""
        if guided is None or guidance_scale == 1.0:
            return self.transformer(audio_tokens, image_tokens)
        batch = audio_tokens.shape[0]
        mask_a, mask_v = self.transformer.mask_ids
        if guided == "audio":
            audio_in = torch.cat([audio_tokens, audio_tokens])
            image_in = torch.cat([image_tokens, torch.full_like(image_tokens, mask_v)])
        else:
            audio_in = torch.cat([audio_tokens, torch.full_like(audio_tokens, mask_a)])
            image_in = torch.cat([image_tokens, image_tokens])
        logits_a, logits_v = self.transformer(audio_in, image_in)
        if guided == "audio":
            return guide(logits_a[:batch], logits_a[batch:], guidance_scale), logits_v[:batch]
        return logits_a[:batch], guide(logits_v[:batch], logits_v[batch:], guidance_scale)

    @torch.inference_mode()
    def __call__(
        self,
        image=None,
        audio=None,
        *,
        task: Task | None = None,
        audio_sample_rate: int = SPEC.sample_rate,
        inpaint_range_s: tuple[float, float] | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        temperature: float = DEFAULT_TEMPERATURE,
        guidance_scale: float | None = None,
        num_samples: int = 1,
        generator: Generator = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> VisualEchoesPipelineOutput | tuple:
        """Make `num_samples` results of `task` (inferred from what is given when None).

        Args:
            image: the picture (PIL image, or [H, W, 3] uint8 / float in [0, 1]) for image → sound and inpainting.
            audio: a mono waveform in [-1, 1] at `audio_sample_rate` for sound → image and inpainting.
            task: "image_to_audio", "audio_to_image", "co_generation" or "inpaint_audio".
            inpaint_range_s: (start, end) seconds of the sound to regenerate (inpainting).
            num_inference_steps: N decoding iterations (paper: 30).
            temperature: T, scaling the Gumbel noise that picks which tokens stay masked (paper: 9).
            guidance_scale: s of Eq. 2 (None: 3 for a sound made from a picture, else 1 = off).
            generator: one CPU generator per sample (or one shared, or None).
            output_type: "np" (everything decoded, sound by Griffin-Lim), "spectrogram" (no waveform) or "tokens".
        """
        # 1. Check inputs
        task = self.infer_task(image, audio, inpaint_range_s, task)
        if guidance_scale is None:
            guidance_scale = DEFAULT_GUIDANCE if task in ("image_to_audio", "inpaint_audio") else 1.0
        self.check_inputs(task, image, audio, inpaint_range_s, num_inference_steps, temperature, guidance_scale,
                          num_samples, generator, output_type)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        generators = self.prepare_generators(generator, num_samples)
        device = self.device
        mask_a, mask_v = self.transformer.mask_ids
        length_a, length_v = self.transformer.lengths

        # 2. Encode the conditions; the tokens to decode start as [MASK]
        audio_tokens = torch.full((num_samples, length_a), mask_a, dtype=torch.long, device=device)
        image_tokens = torch.full((num_samples, length_v), mask_v, dtype=torch.long, device=device)
        if image is not None:
            image_tokens = self.encode_picture(image).expand(num_samples, -1).clone()
        if audio is not None:
            audio_tokens = self.encode_audio(audio, audio_sample_rate).expand(num_samples, -1).clone()
        if task == "inpaint_audio":
            grid = audio_tokens.view(num_samples, *self.audio_grid)
            grid[:, :, self.inpaint_columns(inpaint_range_s)] = mask_a
        targets = {"image_to_audio": ("audio",), "audio_to_image": ("image",), "co_generation": ("audio", "image"),
                   "inpaint_audio": ("audio",)}[task]
        guided = None if task == "co_generation" else targets[0]
        state = {"audio": audio_tokens, "image": image_tokens}
        sampled = dict(state)
        schedulers = {name: MaskScheduler(num_inference_steps, float(temperature), mask_id,
                                          (state[name] == mask_id).sum(dim=1).cpu())
                      for name, mask_id in (("audio", mask_a), ("image", mask_v)) if name in targets}

        # 3. Iterative decoding (Code 1 in the MaskGIT / MAGE loop)
        for step in range(num_inference_steps):
            if self.interrupt:
                break
            logits = dict(zip(("audio", "image"), self.logits(state["audio"], state["image"], guided, guidance_scale)))
            for name in targets:
                state[name], sampled[name] = schedulers[name].step(step, logits[name], state[name], generators)
            self.step_end(callback_on_step_end, step, num_inference_steps - 1 - step,
                          callback_on_step_end_tensor_inputs,
                          preview=lambda: self.preview(state, sampled, targets),
                          audio_tokens=lambda: state["audio"].cpu().numpy(),
                          image_tokens=lambda: state["image"].cpu().numpy())

        # 4. Decode (an interrupted run decodes its latest samples)
        return self.decode(sampled["audio"], sampled["image"], task, output_type, generators, return_dict)

    # 4. Helpers
    @staticmethod
    def prepare_generators(generator: Generator, num_samples: int) -> list[torch.Generator]:
        """One CPU generator per sample: the given list, or seeded from the one given (or a random one)."""
        if isinstance(generator, list):
            return generator
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
        if num_samples == 1:
            return [generator]
        seeds = torch.randint(0, 2**62, (num_samples,), generator=generator)
        return [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    @torch.no_grad()
    def decode_spectrograms(self, audio_tokens: torch.Tensor) -> np.ndarray:
        """Audio tokens [N, L_a] -> SpecVQGAN spectrograms [N, 80, frames] in [0, 1]."""
        decoded = decode_tokens(self.audio_tokenizer, audio_tokens, self.audio_grid)
        return ((decoded[:, 0].float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu().numpy()

    @torch.no_grad()
    def decode_pictures(self, image_tokens: torch.Tensor) -> np.ndarray:
        """Image tokens [N, L_v] -> pictures [N, S, S, 3] in [0, 1]."""
        decoded = decode_tokens(self.image_tokenizer, image_tokens, self.image_grid)
        return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()

    def waveforms(self, spectrograms: np.ndarray, generators: list[torch.Generator]) -> np.ndarray:
        """Griffin-Lim of each spectrogram (initial phase seeded from the sample's generator), peak at most 0.99."""
        out = []
        for unit, generator in zip(spectrograms, generators):
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            wave = griffin_lim(unit_to_log_mel(unit, SPEC), SPEC, GRIFFIN_LIM_ITERATIONS, seed)
            peak = float(np.abs(wave).max()) if wave.size else 0.0
            out.append((wave * (0.99 / peak) if peak > 0.99 else wave).astype(np.float32))
        return np.stack(out)

    def decode(self, audio_tokens, image_tokens, task: str, output_type: str, generators, return_dict: bool):
        spectrograms = images = audios = None
        if output_type != "tokens":
            spectrograms = self.decode_spectrograms(audio_tokens) if task != "audio_to_image" else None
            images = self.decode_pictures(image_tokens)
            if output_type == "np" and spectrograms is not None:
                audios = self.waveforms(spectrograms, generators)
        if task == "audio_to_image" and output_type != "tokens":
            spectrograms = self.decode_spectrograms(audio_tokens)  # the given sound, as the tokenizer hears it
        output = VisualEchoesPipelineOutput(audios, SPEC.sample_rate, images, spectrograms,
                                            audio_tokens.cpu().numpy(), image_tokens.cpu().numpy())
        if return_dict:
            return output
        return tuple(getattr(output, field.name) for field in dataclasses.fields(output))  # None kept in place

    @torch.no_grad()
    def preview(self, state: dict, sampled: dict, targets: tuple[str, ...]) -> np.ndarray:
        """What the tab shows while decoding, [N, H, W, 3] in [0, 1]: each generated modality decoded from its latest
        samples, with the positions still masked dimmed (so the tokens fill in); for co-generation the picture
        (scaled to the spectrogram's height) left of the spectrogram."""
        parts = []
        mask_a, mask_v = self.transformer.mask_ids
        if "image" in targets:
            pictures = self.decode_pictures(sampled["image"])
            masked = (state["image"] == mask_v).view(-1, *self.image_grid).float().cpu().numpy()
            factor = self.picture_size // self.image_grid[0]
            dim = 1.0 - 0.6 * np.kron(masked, np.ones((factor, factor)))[..., None]
            parts.append(pictures * dim)
        if "audio" in targets:
            spectrograms = self.decode_spectrograms(sampled["audio"])
            masked = (state["audio"] == mask_a).view(-1, *self.audio_grid).float().cpu().numpy()
            rows, columns = spectrograms.shape[1] // self.audio_grid[0], spectrograms.shape[2] // self.audio_grid[1]
            dim = 1.0 - 0.6 * np.kron(masked, np.ones((rows, columns)))
            gray = np.flip(spectrograms * dim, axis=1)  # low frequencies at the bottom
            parts.append(np.repeat(gray[..., None], 3, axis=-1))
        if len(parts) == 2:
            picture, spectrogram = parts
            height = spectrogram.shape[1]
            index = (np.arange(height) * picture.shape[1] // height)
            parts = [picture[:, index][:, :, index], spectrogram]
        return np.concatenate(parts, axis=2).astype(np.float32)


__all__ = ["TASKS", "VisualEchoesPipeline", "VisualEchoesPipelineOutput"]
