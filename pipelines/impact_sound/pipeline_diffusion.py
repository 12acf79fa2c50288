"""Impact sounds from video with the physics-driven diffusion model (Su et al., CVPR 2023; research notes B3).

`ImpactDiffusionPipeline` puts the parts of `modeling_diffusion.py` together, as the paper's test time runs them:

1. ν: the frames around the hit → the visual encoder (material logits averaged over the frames);
2. μ: **retrieved** from the bank of training clips by the nearest ν (the paper's test-time rule), or, when the
   artist gives their own (edited) modes, computed from them exactly as in training (`physics_latent`);
3. a spectrogram sampled by the ancestral DDPM sampler conditioned on (μ, ν), several clips in one U-Net call;
4. Griffin-Lim back to a 0.25 s, 44.1 kHz waveform, peak-normalised to 0.9 (the training clips are peak-normalised,
   so their level carries no information).

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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.impact_sound.modal import Modes, estimate_modes, synthesize
from pipelines.impact_sound.modeling_diffusion import (
    NUM_SAMPLES, SAMPLE_RATE, SPEC_FRAMES, BankEntry, DiffusionSchedule, ImpactDenoiser, ImpactDiffusionConfig,
    PhysicsPriors, RetrievalBank, VisualEncoder, sample, spectrogram_to_audio,
)
from pipelines.impact_sound.modeling_residual import ResidualPredictor
from pipelines.impact_sound.residual import ResidualParams
from pipelines.impact_sound.soundtrack import place_impacts

FORMAT_NAME = "synesthesia-impact-diffusion"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
DENOISER_NAME = "denoiser.safetensors"
VISUAL_NAME = "visual_encoder.safetensors"
RESIDUAL_FOLDER = "residual"
OUTPUT_PEAK = 0.9
DEFAULT_STEPS = 50
MAX_BATCH = 64  # clips per U-Net call; larger requests run in chunks
MAX_HITS = 256

ProgressCallback = Callable[[int, int, np.ndarray], None]


@dataclass
class ImpactDiffusionOutput:
    """audio [N, 11025] float32 at `sample_rate`; spectrogram [N, freq_bins, 44] in [-1, 1]; retrieved: the bank
    index of each clip's μ (None when the artist's modes gave μ) and its ν distance."""

    audio: np.ndarray
    spectrogram: np.ndarray
    sample_rate: int
    retrieved: np.ndarray | None
    distances: np.ndarray | None = None


@dataclass
class ImpactHitsOutput:
    """One impact per hit: audio [H, 11025]; soundtrack [S] with each impact starting at its hit time;
    retrieved bank indices [H] (or None)."""

    audio: np.ndarray
    soundtrack: np.ndarray
    hit_times: np.ndarray
    sample_rate: int
    retrieved: np.ndarray | None


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
    from pipelines.media import frames_at

    times = window_times(hit_times, config)
    frames, _, seconds = frames_at(video_path, times.reshape(-1))
    windows = torch.from_numpy(frames.astype(np.float32) / 255.0).reshape(*times.shape, *frames.shape[1:])
    return (resize_frames(windows, config.frame_size) * 255.0 + 0.5).to(torch.uint8).numpy(), seconds


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


class ImpactDiffusionPipeline:
    """Video frames (and optionally the artist's modes) → impact sounds, with the paper's retrieval of μ."""

    def __init__(self, config: ImpactDiffusionConfig, denoiser: ImpactDenoiser, visual_encoder: VisualEncoder,
                 residual_predictor: ResidualPredictor, bank: RetrievalBank, *,
                 retrieval_metric: Literal["l2", "l1"] = "l2") -> None:
        if retrieval_metric not in ("l2", "l1"):
            raise ValueError(f"`retrieval_metric` must be \"l2\" or \"l1\", got {retrieval_metric!r}")
        if bank.keys.shape[1] != config.visual_dim:
            raise ValueError(f"the bank's keys have {bank.keys.shape[1]} values, the visual encoder gives "
                             f"{config.visual_dim}")
        self.config = config
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.visual_encoder = visual_encoder.eval().requires_grad_(False)
        self.residual_predictor = residual_predictor.eval().requires_grad_(False)
        self.bank = bank
        self.retrieval_metric = retrieval_metric
        self.schedule = DiffusionSchedule.from_config(config)
        self.sample_rate = SAMPLE_RATE

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    # Saving and loading --------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write the folder layout of the module docstring; weights in `dtype` (the bank stays float32)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": self.config.to_dict(),
                "retrieval_metric": self.retrieval_metric}
        (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for module, name in ((self.denoiser, DENOISER_NAME), (self.visual_encoder, VISUAL_NAME)):
            state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(folder / name), metadata={"format": "pt"})
        self.residual_predictor.to(dtype)
        try:
            self.residual_predictor.save_pretrained(folder / RESIDUAL_FOLDER)
        finally:
            self.residual_predictor.to(torch.float32)
        self.bank.save(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> ImpactDiffusionPipeline:
        """Load a folder written by `save_pretrained` (or `pipelines.train impact_sound`); strict safetensors."""
        from safetensors.torch import load_file

        folder = Path(folder)
        missing = [name for name in (CONFIG_NAME, DENOISER_NAME, VISUAL_NAME, "bank.safetensors", "bank.json",
                                     f"{RESIDUAL_FOLDER}/config.json") if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not an impact diffusion model folder: it lacks {', '.join(missing)}")
        meta = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{folder / CONFIG_NAME} is not a version-{FORMAT_VERSION} {FORMAT_NAME} config")
        config = ImpactDiffusionConfig.from_dict(meta["model"])
        denoiser, visual = ImpactDenoiser(config), VisualEncoder(config)
        denoiser.load_state_dict(load_file(str(folder / DENOISER_NAME)), strict=True)
        visual.load_state_dict(load_file(str(folder / VISUAL_NAME)), strict=True)
        residual = ResidualPredictor.from_pretrained(folder / RESIDUAL_FOLDER)
        pipeline = cls(config, denoiser.float(), visual.float(), residual, RetrievalBank.load(folder),
                       retrieval_metric=meta.get("retrieval_metric", "l2"))
        pipeline.denoiser.to(device, dtype)
        pipeline.visual_encoder.to(device, dtype)
        pipeline.residual_predictor.to(device)
        return pipeline

    # The steps -----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def visual_features(self, frames: np.ndarray | torch.Tensor,
                        hit_frame: int | Sequence[int] | None = None) -> np.ndarray:
        """ν [N, classes] (float32): material logits averaged over the `num_frames` frames around each hit."""
        batch = hit_windows(as_frame_batch(frames), hit_frame, self.config.num_frames)
        batch = resize_frames(batch, self.config.frame_size)
        features = [self.visual_encoder(chunk.to(self.device, self.dtype)).float().cpu()
                    for chunk in batch.split(MAX_BATCH)]
        return torch.cat(features).numpy()

    def retrieve(self, features: np.ndarray | torch.Tensor,
                 metric: Literal["l2", "l1"] | None = None) -> list[BankEntry]:
        """The nearest bank entry (index, distance, μ, refined modes, residual, label) for each ν row [N, classes]."""
        features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if features.ndim not in (1, 2) or features.shape[-1] != self.config.visual_dim \
                or not bool(torch.isfinite(features).all()):
            raise ValueError(f"`features` must be finite visual features [N, {self.config.visual_dim}], got shape "
                             f"{tuple(features.shape)}")
        index, distance = self.bank.query(features, metric or self.retrieval_metric)
        return [self.bank.entry(int(i), float(d)) for i, d in zip(index, distance)]

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
        generator: torch.Generator | int | None = None,
        callback: ProgressCallback | None = None,
        callback_every: int = 5,
        retrieval_metric: Literal["l2", "l1"] | None = None,
    ) -> ImpactDiffusionOutput:
        """Impact sounds for N clips' frames (see the module docstring for the frame conventions).

        Args:
            modes, residual: the artist's physics for every clip (μ from `physics_latent`) instead of retrieval.
            num_inference_steps: sampler steps, respaced from the model's T training steps (the paper samples
                all T; default min(50, T)).
            generator: a torch.Generator or an int seed (noise is drawn on the CPU).
            callback: `callback(step, total, preview)` every `callback_every` steps and at the end; preview is
                the current x̂_0 spectrogram [N, freq_bins, 44] in [-1, 1].
        """
        # 1. Check inputs
        if residual is not None and modes is None:
            raise ValueError("`residual` needs `modes` too: give the artist's modes with it, or neither")
        if callback_every < 1:
            raise ValueError(f"`callback_every` must be at least 1, got {callback_every}")
        steps = min(DEFAULT_STEPS, len(self.schedule)) if num_inference_steps is None else num_inference_steps
        schedule = self.schedule.respaced(int(steps))
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        # 2. Encode the conditions: ν from the frames; μ from the artist's modes or retrieved by ν
        nu = torch.from_numpy(self.visual_features(frames, hit_frame))
        n = len(nu)
        if modes is not None:
            mu = torch.from_numpy(self.physics_latent(modes, residual)).expand(n, -1)
            retrieved = distances = None
        else:
            entries = self.retrieve(nu, retrieval_metric)
            mu = torch.from_numpy(np.stack([entry.mu for entry in entries]))
            retrieved = np.array([entry.index for entry in entries])
            distances = np.array([entry.distance for entry in entries], dtype=np.float32)
        # 3. Sample the spectrograms, all clips in one U-Net call per step
        spectrogram = self.sample_spectrograms(mu, nu, schedule, generator, callback, callback_every)
        # 4. Decode
        audio = np.stack([self.decode(spectrogram[i : i + 1])[0] for i in range(n)])
        return ImpactDiffusionOutput(audio, spectrogram.numpy(), self.sample_rate, retrieved, distances)

    def sample_spectrograms(self, mu: torch.Tensor, nu: torch.Tensor, schedule: DiffusionSchedule,
                            generator: torch.Generator | None, callback: ProgressCallback | None,
                            callback_every: int) -> torch.Tensor:
        """[N, freq_bins, 44] float32 spectrograms in [-1, 1] for conditions μ [N, 256], ν [N, classes]."""
        if len(mu) > MAX_BATCH:  # chunks, each its own sampler run (the generator advances through them)
            return torch.cat([self.sample_spectrograms(m, v, schedule, generator, callback, callback_every)
                              for m, v in zip(mu.split(MAX_BATCH), nu.split(MAX_BATCH))])
        device, dtype = self.device, self.dtype
        mu, nu = mu.to(device, dtype), nu.to(device, dtype)

        def report(step: int, total: int, x0: torch.Tensor) -> None:
            if callback is not None and (step % callback_every == 0 or step == total):
                callback(step, total, x0[:, 0].float().cpu().numpy())

        x = sample(lambda x, t: self.denoiser(x, t, mu, nu), (len(mu), 1, self.config.freq_bins, SPEC_FRAMES),
                   schedule, generator=generator, device=device, dtype=dtype, callback=report)
        return x[:, 0].clamp(-1.0, 1.0).float().cpu()

    def decode(self, spectrogram: torch.Tensor) -> np.ndarray:
        """[N, freq_bins, 44] → [N, 11025] float32 by Griffin-Lim, each clip peak-normalised to 0.9."""
        audio = spectrogram_to_audio(spectrogram)
        peak = np.max(np.abs(audio), axis=-1, keepdims=True)
        return (audio * (OUTPUT_PEAK / np.maximum(peak, 1e-8))).astype(np.float32)

    def render_hits(
        self,
        frames: np.ndarray | torch.Tensor,
        fps: float,
        hit_times: Sequence[float],
        *,
        duration_s: float | None = None,
        modes: Modes | None = None,
        residual: ResidualParams | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | int | None = None,
        callback: ProgressCallback | None = None,
    ) -> ImpactHitsOutput:
        """One impact per hit of a video's frames [T, H, W, 3] at `fps`, all hits in one batch, placed into a
        soundtrack of `duration_s` (default: the video's length T / fps).

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
        index = np.clip(np.round(window_times(times, self.config) * fps), 0, length - 1).astype(int)
        windows = video[0][torch.from_numpy(index)]  # [H, num_frames, height, width, 3]
        return self.score_windows(windows, times, length / fps if duration_s is None else float(duration_s),
                                  modes=modes, residual=residual, num_inference_steps=num_inference_steps,
                                  generator=generator, callback=callback)

    def render_video(self, video_path: str | Path, hit_times: Sequence[float], *, duration_s: float | None = None,
                     modes: Modes | None = None, residual: ResidualParams | None = None,
                     num_inference_steps: int | None = None, generator: torch.Generator | int | None = None,
                     callback: ProgressCallback | None = None) -> ImpactHitsOutput:
        """`render_hits` for a video file, decoding only the frames around the hits (`read_hit_windows`)."""
        windows, seconds = read_hit_windows(video_path, hit_times, self.config)
        times = self.check_hit_times(hit_times, seconds)
        return self.score_windows(torch.from_numpy(windows.astype(np.float32) / 255.0), times,
                                  seconds if duration_s is None else float(duration_s), modes=modes,
                                  residual=residual, num_inference_steps=num_inference_steps, generator=generator,
                                  callback=callback)

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
        out = self(resize_frames(windows, self.config.frame_size), hit_frame=self.config.num_frames // 2, **options)
        soundtrack = place_impacts(times, out.audio, self.sample_rate, seconds)
        return ImpactHitsOutput(out.audio, soundtrack, times, self.sample_rate, out.retrieved)
