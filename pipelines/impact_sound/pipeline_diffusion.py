"""Impact sounds from video with the physics-driven diffusion model (Su et al., CVPR 2023).

`ImpactDiffusionPipeline` (a `StudioPipeline`) puts the networks (`modeling_impact_sound.py`), the schedule and
sampler step (`scheduling_impact_sound.py`) and the retrieval bank (`retrieval.py`) together, as the paper's test
time runs them:

1. ν: the frames around the hit → the visual encoder (material logits averaged over the frames);
2. μ: **retrieved** from the bank of training clips by the nearest ν (the paper's test-time rule), or, when the
   artist gives their own (edited) modes, computed from them exactly as in training (`physics_latent`);
3. a spectrogram sampled by the ancestral DDPM sampler conditioned on (μ, ν), all clips together (at most
   `MAX_BATCH` per U-Net call); noise from one CPU generator for the batch or one per clip, so a batch equals its
   clips run alone when each has its own generator;
4. Griffin-Lim back to a 0.25 s, 44.1 kHz waveform, clip by clip, peak-normalised to 0.9 (the training clips are
   peak-normalised, so their level carries no information).

Frames: float in [0, 1] (uint8 is divided by 255), [N, T, H, W, 3] or [T, H, W, 3], any size (resized to the
model's `frame_size` square with antialiasing). The visual encoder averages `num_frames` frames: those from
hit − num_frames // 2 to hit + num_frames − num_frames // 2 − 1 (the paper: hit − 11 to hit + 10 for 22 frames),
repeating the first or last frame where the window runs past the clip. The hit is frame `hit_frame` (default: the
middle frame, T // 2). Frames are taken to be at the model's frame rate; `render_hits` resamples a video of any
rate to it.

Folder layout (`save_pretrained` writes it, `from_pretrained` reads it; `pipelines.train impact_sound` exports it):

    config.json                {"format": "synesthesia-impact-diffusion", "version": 1, "model": {...},
                                "retrieval_metric": "l2"}
    denoiser.safetensors       U-Net (unet.*) and physics encoder (physics.*)
    visual_encoder.safetensors
    bank.safetensors, bank.json  the retrieval bank (`RetrievalBank`)
    residual/                  the residual predictor (`ResidualPredictor.save_pretrained`)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.audio import peak_normalize
from pipelines.impact_sound.modal import Modes, estimate_modes, synthesize
from pipelines.impact_sound.modeling_impact_sound import (
    ImpactDenoiser, ImpactDiffusionConfig, PhysicsPriors, VisualEncoder,
)
from pipelines.impact_sound.modeling_residual import ResidualPredictor
from pipelines.impact_sound.residual import ResidualParams
from pipelines.impact_sound.retrieval import LABELS_NAME, TENSORS_NAME, BankEntry, RetrievalBank
from pipelines.impact_sound.scheduling_impact_sound import DiffusionSchedule, Generators, draw_noise
from pipelines.impact_sound.soundtrack import place_impacts
from pipelines.impact_sound.spectrogram import (
    NUM_SAMPLES, SAMPLE_RATE, SPEC_FRAMES, spectrogram_pictures, spectrogram_to_audio,
)
from pipelines.media import read_video
from pipelines.pipeline_utils import (
    BaseOutput, StepCallback, StudioPipeline, load_weights, read_json, save_weights, write_json,
)

FORMAT_NAME = "synesthesia-impact-diffusion"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
DENOISER_NAME = "denoiser.safetensors"
VISUAL_NAME = "visual_encoder.safetensors"
RESIDUAL_FOLDER = "residual"
FOLDER_FILES = (CONFIG_NAME, DENOISER_NAME, VISUAL_NAME, TENSORS_NAME, LABELS_NAME, f"{RESIDUAL_FOLDER}/config.json")
OUTPUT_PEAK = 0.9
DEFAULT_STEPS = 50
MAX_BATCH = 64  # clips per U-Net call; larger requests run in chunks
MAX_HITS = 256


@dataclass
class ImpactDiffusionOutput(BaseOutput):
    """audio [N, 11025] float32 at `sample_rate`; spectrogram [N, freq_bins, 44] in [-1, 1]; retrieved: the bank
    index of each clip's μ (None when the artist's modes gave μ) and its ν distance."""

    audio: np.ndarray
    spectrogram: np.ndarray
    sample_rate: int
    retrieved: np.ndarray | None = None
    distances: np.ndarray | None = None


@dataclass
class ImpactHitsOutput(BaseOutput):
    """One impact per hit: audio [H, 11025]; soundtrack [S] with each impact starting at its hit time;
    retrieved bank indices [H] (or None)."""

    audio: np.ndarray
    soundtrack: np.ndarray
    hit_times: np.ndarray
    sample_rate: int
    retrieved: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------


def as_frame_batch(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, T, H, W, 3] or [T, H, W, 3], float in [0, 1] or uint8 → float32 tensor [N, T, H, W, 3] (checked)."""
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or array.shape[-1] != 3 or min(array.shape[:4]) < 1:
        raise ValueError(f"`frames` must be RGB video frames [T, H, W, 3] or a batch [N, T, H, W, 3], got shape "
                         f"{array.shape}")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"`frames` must hold numbers, got {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("`frames` hold NaN or infinite values")
    if array.min() < -1e-3 or array.max() > 1.0 + 1e-3:
        raise ValueError(f"float `frames` must lie in [0, 1], got values from {array.min():g} to {array.max():g}")
    return torch.from_numpy(np.clip(array, 0.0, 1.0))


def window_indices(hit_frame: int, num_frames: int, length: int) -> np.ndarray:
    """Frame indices hit − num_frames//2 … hit + num_frames − num_frames//2 − 1, clamped into [0, length − 1]."""
    start = int(hit_frame) - num_frames // 2
    return np.clip(np.arange(start, start + num_frames), 0, length - 1)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[..., H, W, 3] → [..., size, size, 3] (bilinear with antialiasing)."""
    lead, (height, width) = frames.shape[:-3], frames.shape[-3:-1]
    if (height, width) == (size, size):
        return frames
    x = frames.reshape(-1, height, width, 3).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1).clamp(0.0, 1.0).reshape(*lead, size, size, 3)


def hit_windows(frames: torch.Tensor, hit_frame: int | Sequence[int] | None, num_frames: int) -> torch.Tensor:
    """[N, T, H, W, 3] → the `num_frames` frames around each clip's hit, [N, num_frames, H, W, 3]."""
    n, length = frames.shape[:2]
    hits = np.full(n, length // 2) if hit_frame is None else np.asarray(hit_frame).reshape(-1)
    if hits.size == 1:
        hits = np.full(n, hits[0])
    if len(hits) != n:
        raise ValueError(f"`hit_frame` needs one frame number per clip ({n}), got {len(hits)}")
    if hits.dtype.kind not in "iuf" or not np.all(np.mod(hits, 1) == 0):
        raise ValueError(f"`hit_frame` must be whole frame numbers, got {hit_frame}")
    if (hits < 0).any() or (hits >= length).any():
        raise ValueError(f"`hit_frame` must lie between 0 and {length - 1} (the clip has {length} frames), got "
                         f"{hit_frame}")
    index = torch.from_numpy(np.stack([window_indices(h, num_frames, length) for h in hits.astype(int)]))
    return frames[torch.arange(n)[:, None], index]


def window_times(hit_times: Sequence[float], config: ImpactDiffusionConfig) -> np.ndarray:
    """[H, num_frames] times of the frames around each hit, at the model's frame rate."""
    offsets = (np.arange(config.num_frames) - config.num_frames // 2) / config.fps
    return np.asarray(hit_times, dtype=np.float64).reshape(-1, 1) + offsets[None, :]


def read_hit_windows(video_path: str | Path, hit_times: Sequence[float],
                     config: ImpactDiffusionConfig) -> tuple[np.ndarray, float]:
    """uint8 frames [H, num_frames, S, S, 3] around each hit of a video file (nearest frames to `window_times`,
    clamped into the video, resized to the model's square), and the video's length in seconds.
    `media.VideoDecodeError` when it cannot be read."""
    times = window_times(hit_times, config)
    video = read_video(video_path, times_s=times.reshape(-1))
    windows = torch.from_numpy(video.frames.astype(np.float32) / 255.0).reshape(*times.shape, *video.frames.shape[1:])
    return (resize_frames(windows, config.frame_size) * 255.0 + 0.5).to(torch.uint8).numpy(), video.seconds


# --------------------------------------------------------------------------------------------------------------
# Physics priors, as training computes them
# --------------------------------------------------------------------------------------------------------------


def residual_params_of(predictor: ResidualPredictor, audio: np.ndarray, batch: int = 64) -> list[ResidualParams]:
    """The residual predictor's (w, T60) for clips [B, 11025] (eval mode, in chunks)."""
    params: list[ResidualParams] = []
    for start in range(0, len(audio), batch):
        params += predictor.predict(np.asarray(audio[start : start + batch], dtype=np.float32))
    return params


def physics_priors_of(audio: np.ndarray, predictor: ResidualPredictor) -> tuple[PhysicsPriors, list[ResidualParams]]:
    """The physics priors of clips [B, 11025] at 44.1 kHz starting at the hit: the paper extractor's 1025 per-bin
    modes (`estimate_modes(..., "paper")`) and the residual predictor's band gains and T60s; also the residuals."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1, NUM_SAMPLES)
    paper_modes = [estimate_modes(clip, SAMPLE_RATE, "paper") for clip in audio]
    residuals = residual_params_of(predictor, audio)
    return PhysicsPriors.stack(paper_modes, residuals), residuals


def modal_audio(modes: Modes, residual: ResidualParams | None = None) -> np.ndarray:
    """0.25 s at 44.1 kHz of the modes (paper Eq. 4, `modal.synthesize`) scaled to peak 1, plus the residual.

    The residual's gains are relative to a modal sound of peak 1: the training clips' modal resyntheses are
    peak-normalised, as the code normalises its own, so bank entries (modes + residual) play back at the level
    they were fitted at.
    """
    if not isinstance(modes, Modes):
        raise ValueError(f"`modes` must be a Modes object, got {type(modes).__name__}")
    if residual is not None and not isinstance(residual, ResidualParams):
        raise ValueError(f"`residual` must be ResidualParams or None, got {type(residual).__name__}")
    audio = synthesize(modes, SAMPLE_RATE, NUM_SAMPLES / SAMPLE_RATE, ceiling=math.inf).astype(np.float64)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not math.isfinite(peak) or peak < 1e-12:
        raise ValueError("the modes make no sound at 44.1 kHz (none below 22.05 kHz, or all far too quiet): add "
                         "or raise some modes")
    audio /= peak
    if residual is not None:
        audio = audio + residual.render(NUM_SAMPLES, SAMPLE_RATE)
    return audio.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------------------


class ImpactDiffusionPipeline(StudioPipeline):
    """Video frames (and optionally the artist's modes) → impact sounds, with the paper's retrieval of μ.

    Components: `denoiser` (the U-Net with the physics encoder), `visual_encoder`, `residual_predictor`, and the
    retrieval `bank` (registered too, because diffusers rebuilds a pipeline from every constructor argument:
    `ImpactDiffusionPipeline(**pipe.components)`). Plain attributes: `model_config` (the networks' config),
    `retrieval_metric`, `schedule`.
    """

    def __init__(self, denoiser: ImpactDenoiser, visual_encoder: VisualEncoder, residual_predictor: ResidualPredictor,
                 bank: RetrievalBank, retrieval_metric: Literal["l2", "l1"] = "l2") -> None:
        super().__init__()
        config = denoiser.config
        if retrieval_metric not in ("l2", "l1"):
            raise ValueError(f"`retrieval_metric` must be \"l2\" or \"l1\", got {retrieval_metric!r}")
        if bank.keys.shape[1] != config.visual_dim:
            raise ValueError(f"the bank's keys have {bank.keys.shape[1]} values, the visual encoder gives "
                             f"{config.visual_dim}")
        self.register_modules(denoiser=denoiser.eval().requires_grad_(False),
                              visual_encoder=visual_encoder.eval().requires_grad_(False),
                              residual_predictor=residual_predictor.eval().requires_grad_(False), bank=bank)
        self.model_config: ImpactDiffusionConfig = config
        self.retrieval_metric = retrieval_metric
        self.schedule = DiffusionSchedule.from_config(config)
        self.sample_rate = SAMPLE_RATE

    # Saving and loading --------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the folder layout of the module docstring; network weights cast to `dtype` when given (e.g. fp16
        for bundled weights), the bank always float32."""
        folder = Path(folder)
        write_json({"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": self.model_config.to_dict(),
                    "retrieval_metric": self.retrieval_metric}, folder / CONFIG_NAME)
        save_weights(self.denoiser, folder / DENOISER_NAME, dtype)
        save_weights(self.visual_encoder, folder / VISUAL_NAME, dtype)
        self.residual_predictor.save_pretrained(folder / RESIDUAL_FOLDER, dtype)
        self.bank.save(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, torch_dtype: torch.dtype = torch.float32) -> ImpactDiffusionPipeline:
        """Load a folder written by `save_pretrained` (or `pipelines.train impact_sound`), strictly; every network in
        `torch_dtype`, on the CPU (`.to(device)` moves it)."""
        folder = Path(folder)
        missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not an impact diffusion model folder: it lacks {', '.join(missing)}")
        meta = read_json(folder / CONFIG_NAME)
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{folder / CONFIG_NAME} is not a version-{FORMAT_VERSION} {FORMAT_NAME} config")
        config = ImpactDiffusionConfig.from_dict(meta["model"])
        pipe = cls(load_weights(ImpactDenoiser(config), folder / DENOISER_NAME),
                   load_weights(VisualEncoder(config), folder / VISUAL_NAME),
                   ResidualPredictor.from_pretrained(folder / RESIDUAL_FOLDER), RetrievalBank.load(folder),
                   retrieval_metric=meta.get("retrieval_metric", "l2"))
        return pipe.to(dtype=torch_dtype)

    # The steps -----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def visual_features(self, frames: np.ndarray | torch.Tensor,
                        hit_frame: int | Sequence[int] | None = None) -> np.ndarray:
        """ν [N, classes] (float32): material logits averaged over the `num_frames` frames around each hit."""
        batch = hit_windows(as_frame_batch(frames), hit_frame, self.model_config.num_frames)
        batch = resize_frames(batch, self.model_config.frame_size)
        features = [self.visual_encoder(chunk.to(self.device, self.dtype)).float().cpu()
                    for chunk in batch.split(MAX_BATCH)]
        return torch.cat(features).numpy()

    def retrieve(self, features: np.ndarray | torch.Tensor,
                 metric: Literal["l2", "l1"] | None = None) -> list[BankEntry]:
        """The nearest bank entry (index, distance, μ, refined modes, residual, label) for each ν row [N, classes]."""
        features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if features.ndim not in (1, 2) or features.shape[-1] != self.model_config.visual_dim \
                or not bool(torch.isfinite(features).all()):
            raise ValueError(f"`features` must be finite visual features [N, {self.model_config.visual_dim}], got "
                             f"shape {tuple(features.shape)}")
        index, distance = self.bank.query(features, metric or self.retrieval_metric)
        return [self.bank.entry(int(i), float(d)) for i, d in zip(index, distance)]

    def retrieve_video(self, video_path: str | Path, hit_times: Sequence[float],
                       metric: Literal["l2", "l1"] | None = None) -> list[BankEntry]:
        """The bank entry retrieved for each hit of a video file, from the frames around it (`read_hit_windows`)."""
        windows, seconds = read_hit_windows(video_path, hit_times, self.model_config)
        self.check_hit_times(hit_times, seconds)
        return self.retrieve(self.visual_features(windows, hit_frame=self.model_config.num_frames // 2), metric)

    @torch.no_grad()
    def physics_priors(self, audio: np.ndarray) -> PhysicsPriors:
        """Priors of recorded or synthesised clips [B, 11025] (paper extractor + residual predictor), as training
        computes them."""
        return physics_priors_of(audio, self.residual_predictor)[0]

    @torch.no_grad()
    def physics_latent(self, modes: Modes, residual: ResidualParams | None = None) -> np.ndarray:
        """μ [256] of the artist's physics, exactly as training computes it from a recording: synthesise the modes
        (+ residual) to 0.25 s of audio, run the paper extractor and the residual predictor on it, then the physics
        encoder."""
        priors = self.physics_priors(modal_audio(modes, residual)[None])
        return self.denoiser.physics(priors.to(self.device, self.dtype)).float().cpu().numpy()[0]

    @torch.no_grad()
    def __call__(
        self,
        frames: np.ndarray | torch.Tensor,
        *,
        hit_frame: int | Sequence[int] | None = None,
        modes: Modes | None = None,
        residual: ResidualParams | None = None,
        num_inference_steps: int | None = None,
        generator: Generators = None,
        retrieval_metric: Literal["l2", "l1"] | None = None,
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImpactDiffusionOutput | tuple:
        """Impact sounds for N clips' frames (see the module docstring for the frame conventions).

        Args:
            modes, residual: the artist's physics for every clip (μ from `physics_latent`) instead of retrieval.
            num_inference_steps: sampler steps, respaced from the model's T training steps (the paper samples
                all T; default min(50, T)).
            generator: one CPU `torch.Generator` for the batch, or a list of one per clip.
            callback_on_step_end: `callback(pipe, step, timestep, callback_kwargs)` after every step; its "preview"
                is the current x̂_0 as pictures [N, freq_bins, 44] in [0, 1], low frequencies in the bottom row.
        Returns:
            `ImpactDiffusionOutput`, or with `return_dict=False` the tuple (audio, spectrogram, sample_rate,
            retrieved, distances).
        """
        # 1. Check inputs
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        if residual is not None and modes is None:
            raise ValueError("`residual` needs `modes` too: give the artist's modes with it, or neither")
        steps = min(DEFAULT_STEPS, len(self.schedule)) if num_inference_steps is None else num_inference_steps
        schedule = self.schedule.respaced(int(steps))
        # 2. Encode the conditions: ν from the frames; μ from the artist's modes or retrieved by ν
        nu = torch.from_numpy(self.visual_features(frames, hit_frame))
        check_generators(generator, len(nu))
        mu, retrieved, distances = self.physics_condition(nu, modes, residual, retrieval_metric)
        # 3. Sample the spectrograms
        spectrogram = self.sample_spectrograms(mu, nu, schedule, generator, callback_on_step_end,
                                               callback_on_step_end_tensor_inputs)
        # 4. Decode
        output = (self.decode(spectrogram), spectrogram.numpy(), self.sample_rate, retrieved, distances)
        return ImpactDiffusionOutput(*output) if return_dict else output

    def physics_condition(self, nu: torch.Tensor, modes: Modes | None, residual: ResidualParams | None,
                          metric: Literal["l2", "l1"] | None
                          ) -> tuple[torch.Tensor, np.ndarray | None, np.ndarray | None]:
        """(μ [N, 256], retrieved bank indices, their ν distances): μ of the artist's modes for every clip (no
        retrieval), or each clip's retrieved μ."""
        if modes is not None:
            return torch.from_numpy(self.physics_latent(modes, residual)).expand(len(nu), -1), None, None
        entries = self.retrieve(nu, metric)
        mu = torch.from_numpy(np.stack([entry.mu for entry in entries]))
        distances = np.array([entry.distance for entry in entries], dtype=np.float32)
        return mu, np.array([entry.index for entry in entries]), distances

    def sample_spectrograms(self, mu: torch.Tensor, nu: torch.Tensor, schedule: DiffusionSchedule,
                            generator: Generators, callback_on_step_end: StepCallback | None,
                            tensor_inputs: list[str] | None) -> torch.Tensor:
        """[N, freq_bins, 44] float32 spectrograms in [-1, 1] for conditions μ [N, 256], ν [N, classes]; stops after
        the current step once `interrupt` is set."""
        device, dtype = self.device, self.dtype
        mu, nu = mu.to(device, dtype), nu.to(device, dtype)
        x = draw_noise((len(mu), 1, self.model_config.freq_bins, SPEC_FRAMES), generator).to(device, dtype)
        for step, index in enumerate(reversed(range(len(schedule)))):
            if self.interrupt:
                break
            timestep = int(schedule.timesteps[index])
            x, x0 = schedule.step(self.predict_noise(x, timestep, mu, nu), index, x, generator)
            self.step_end(callback_on_step_end, step, timestep, tensor_inputs,
                          preview=functools.partial(spectrogram_pictures, x0[:, 0]))
        return x[:, 0].clamp(-1.0, 1.0).float().cpu()

    def predict_noise(self, x: torch.Tensor, timestep: int, mu: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        """ε̂ of every clip at model timestep `timestep`, at most MAX_BATCH clips per U-Net call."""
        t = torch.full((len(x),), timestep, dtype=torch.long, device=x.device)
        chunks = zip(x.split(MAX_BATCH), t.split(MAX_BATCH), mu.split(MAX_BATCH), nu.split(MAX_BATCH))
        return torch.cat([self.denoiser(*chunk) for chunk in chunks])

    def decode(self, spectrogram: torch.Tensor) -> np.ndarray:
        """[N, freq_bins, 44] → [N, 11025] float32 by Griffin-Lim clip by clip (each from the same seeded phase, so a
        batch decodes as its clips alone), each peak-normalised to 0.9."""
        return np.stack([peak_normalize(spectrogram_to_audio(clip[None])[0], OUTPUT_PEAK) for clip in spectrogram])

    def render_hits(
        self,
        frames: np.ndarray | torch.Tensor,
        fps: float,
        hit_times: Sequence[float],
        *,
        duration_s: float | None = None,
        **options,
    ) -> ImpactHitsOutput:
        """One impact per hit of a video's frames [T, H, W, 3] at `fps`, all hits in one batch, placed into a
        soundtrack of `duration_s` (default: the video's length T / fps). `options` go to `__call__` (modes,
        residual, num_inference_steps, generator, callback_on_step_end, ...).

        The frames around each hit are taken at the model's frame rate (nearest video frame to each of the times
        hit + (j − num_frames // 2) / model fps), so a video of any rate gives the window the model was trained on.
        """
        video = as_frame_batch(frames)
        if video.shape[0] != 1:
            raise ValueError(f"`frames` must be one video [T, H, W, 3], got a batch of {video.shape[0]}")
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"`fps` must be a positive number, got {fps!r}")
        length = video.shape[1]
        times = self.check_hit_times(hit_times, length / fps)
        index = np.clip(np.round(window_times(times, self.model_config) * fps), 0, length - 1).astype(int)
        windows = video[0][torch.from_numpy(index)]  # [H, num_frames, height, width, 3]
        return self.score_windows(windows, times, length / fps if duration_s is None else float(duration_s), **options)

    def render_video(self, video_path: str | Path, hit_times: Sequence[float], *, duration_s: float | None = None,
                     **options) -> ImpactHitsOutput:
        """`render_hits` for a video file, decoding only the frames around the hits (`read_hit_windows`)."""
        windows, seconds = read_hit_windows(video_path, hit_times, self.model_config)
        times = self.check_hit_times(hit_times, seconds)
        return self.score_windows(torch.from_numpy(windows.astype(np.float32) / 255.0), times,
                                  seconds if duration_s is None else float(duration_s), **options)

    @staticmethod
    def check_hit_times(hit_times: Sequence[float], seconds: float) -> np.ndarray:
        times = np.asarray(hit_times, dtype=np.float64).reshape(-1)
        if not 1 <= len(times) <= MAX_HITS:
            raise ValueError(f"give between 1 and {MAX_HITS} hit times, got {len(times)}")
        if not np.isfinite(times).all() or times.min() < 0 or times.max() > seconds:
            raise ValueError(f"hit times must lie inside the video (0 to {seconds:.2f} s), got {times.tolist()}")
        return times

    def score_windows(self, windows: torch.Tensor, times: np.ndarray, seconds: float, **options) -> ImpactHitsOutput:
        """Impacts for the frame windows [H, num_frames, h, w, 3] of hits at `times`, placed in `seconds` of sound."""
        out = self(resize_frames(windows, self.model_config.frame_size), hit_frame=self.model_config.num_frames // 2,
                   **options)
        soundtrack = place_impacts(times, out.audio, self.sample_rate, seconds)
        return ImpactHitsOutput(out.audio, soundtrack, times, self.sample_rate, out.retrieved)


def check_generators(generator: Generators, clips: int) -> None:
    """A list of generators needs one per clip."""
    if isinstance(generator, list) and len(generator) != clips:
        raise ValueError(f"`generator` is a list of {len(generator)} generators for {clips} clips: give one per clip, "
                         "or one for all")
