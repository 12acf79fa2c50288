"""Sounding videos in and out of MM-Diffusion's clip format (16 frames of 64×64 at 10 fps with 1.6 s of 16 kHz audio
for the released models; a smaller model's own sizes otherwise).

Uploads of any length, rate, size and frame rate are converted with plain-language notes on what was changed; clips
are written as H.264/AAC mp4 (moviepy, ffmpeg from imageio-ffmpeg). Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.audio import SPECS
from pipelines.media import opened_video

FPS = 10  # paper §4.1 (pipeline_mm_diffusion.FPS)
SAMPLE_RATE = SPECS["mm_diffusion"].sample_rate


@dataclass(frozen=True)
class ClipFormat:
    """What one model generates: frames of height × width at `fps`, and `audio_samples` of audio at `sample_rate`."""

    frames: int
    height: int
    width: int
    audio_samples: int
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE

    @property
    def video_seconds(self) -> float:
        return self.frames / self.fps

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.sample_rate


@dataclass
class SoundingVideoPipelines:
    """A base MM-Diffusion pipeline and, when its checkpoint is configured, the 64→256 up-sampler."""

    base: Any  # MMDiffusionPipeline
    super_resolution: Any | None = None  # MMDiffusionSuperResPipeline

    def to(self, device) -> SoundingVideoPipelines:
        self.base.to(device)
        if self.super_resolution is not None:
            self.super_resolution.to(device)
        return self

    def clip_format(self) -> ClipFormat:
        frames, height, width = self.base.default_size()
        return ClipFormat(frames, height, width, self.base.audio_length(frames), self.base.fps, self.base.sample_rate)


def read_flags(path: Path) -> dict | str | None:
    """Official flags for a checkpoint trained with other flags: `<checkpoint>.json` holding {"flags": ...} (a flag
    mapping or string). None when there is no such file (the released models are recognised from their keys)."""
    import json

    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    flags = json.loads(sidecar.read_text()).get("flags")
    if not isinstance(flags, (dict, str)):
        raise ValueError(f"{sidecar.name} must hold {{\"flags\": {{...}}}} with the model's official flags.")
    return flags


def load_sounding_video(base_path: str, sr_path: str | None, device: str, dtype) -> SoundingVideoPipelines:
    """Load a base checkpoint (and an SR checkpoint) safely into their pipelines on `device`."""
    import torch

    from pipelines.mm_diffusion.checkpoints import load_official_checkpoint
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
    from pipelines.mm_diffusion.pipeline_mm_diffusion_sr import MMDiffusionSuperResPipeline

    precision = torch.float32 if dtype == torch.float32 else torch.float16  # official mixed precision off the CPU

    def load(path: str, kind: str):
        return load_official_checkpoint(path, kind=kind, flags=read_flags(Path(path)), dtype=precision, device=device)

    base = MMDiffusionPipeline(load(base_path, "base"))
    sr = MMDiffusionSuperResPipeline(load(sr_path, "sr")) if sr_path else None
    return SoundingVideoPipelines(base, sr)


@dataclass
class Converted:
    """A converted upload and the notes saying what was changed."""

    value: np.ndarray
    notes: list[str] = field(default_factory=list)


def fit_audio(samples: np.ndarray, fmt: ClipFormat) -> Converted:
    """Mono audio already at the model's rate -> exactly `fmt.audio_samples` in [-1, 1] (trimmed or padded)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    notes = []
    if len(samples) > fmt.audio_samples:
        notes.append(f"Used the first {fmt.audio_seconds:g} s of {len(samples) / fmt.sample_rate:.2f} s of audio.")
        samples = samples[: fmt.audio_samples]
    elif len(samples) < fmt.audio_samples:
        notes.append(f"Padded the {len(samples) / fmt.sample_rate:.2f} s of audio with silence to "
                     f"{fmt.audio_seconds:g} s.")
        samples = np.pad(samples, (0, fmt.audio_samples - len(samples)))
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 1.0:
        notes.append(f"Lowered the volume (its peak was {peak:.2f}, above full scale).")
        samples = samples / peak
    return Converted(samples.astype(np.float32), notes)


def read_video_clip(path: str | Path, fmt: ClipFormat) -> Converted:
    """A video file -> uint8 frames [F, H, W, 3] at the model's frame rate, centre-cropped square and resized.
    VideoDecodeError, in words, when it cannot be read."""
    with opened_video(path) as clip:
        fps, seconds, size = float(clip.fps), float(clip.duration), tuple(clip.size)
        times = [index / fmt.fps for index in range(fmt.frames) if index / fmt.fps < seconds]
        frames = [_square(clip.get_frame(t), fmt) for t in times]
    return Converted(np.stack(frames + [frames[-1]] * (fmt.frames - len(frames))),
                     _video_notes(fps, seconds, size, len(frames), fmt))


def _square(frame: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """Centre-crop to the model's aspect ratio and resize (area-averaging when shrinking)."""
    frame = np.asarray(frame)[..., :3].astype(np.uint8)
    height, width = frame.shape[:2]
    target = fmt.width / fmt.height
    crop_w, crop_h = (round(height * target), height) if width / height > target else (width, round(width / target))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    image = Image.fromarray(frame[top : top + crop_h, left : left + crop_w])
    return np.asarray(image.resize((fmt.width, fmt.height), Image.Resampling.BOX if crop_w >= fmt.width
                                   else Image.Resampling.BICUBIC))


def _video_notes(fps: float, seconds: float, size: tuple[int, int], used: int, fmt: ClipFormat) -> list[str]:
    notes = []
    if abs(fps - fmt.fps) > 1e-3:
        notes.append(f"Took {fmt.fps} frames per second from the video's {fps:g}.")
    if seconds > fmt.video_seconds + 1e-6:
        notes.append(f"Used the first {fmt.video_seconds:g} s of {seconds:.2f} s of video.")
    if used < fmt.frames:
        notes.append(f"The video is only {seconds:.2f} s long: held its last frame to fill {fmt.video_seconds:g} s.")
    if tuple(size) != (fmt.width, fmt.height):
        cropped = "centre-cropped and " if size[0] * fmt.height != size[1] * fmt.width else ""
        notes.append(f"The {size[0]}×{size[1]} frames were {cropped}resized to {fmt.width}×{fmt.height}.")
    return notes


def preview_grid(video: np.ndarray, columns: int = 8) -> np.ndarray:
    """Frames [F, H, W, 3] (uint8) as one image, `columns` frames per row, each upscaled to at least 64 pixels."""
    frames, height, width = video.shape[:3]
    scale = max(1, 64 // max(height, 1))
    rows = -(-frames // columns)
    padded = np.concatenate([video, np.zeros((rows * columns - frames, height, width, 3), video.dtype)])
    grid = padded.reshape(rows, columns, height, width, 3).transpose(0, 2, 1, 3, 4).reshape(rows * height,
                                                                                            columns * width, 3)
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_sounding_video(frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: int, path: Path) -> Path:
    """uint8 frames [F, H, W, 3] with their audio muxed: an H.264/AAC mp4 at `fps`, audio at `sample_rate`."""
    from moviepy import AudioArrayClip, ImageSequenceClip

    frames = np.asarray(frames, dtype=np.uint8)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # yuv420p needs even sizes
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    stereo = np.repeat(np.clip(audio, -1.0, 1.0).astype(np.float32)[:, None], 2, axis=1)
    clip = ImageSequenceClip(list(frames), fps=fps)
    clip = clip.with_audio(AudioArrayClip(stereo, fps=sample_rate).with_duration(min(clip.duration,
                                                                                     len(audio) / sample_rate)))
    clip.write_videofile(str(path), fps=fps, codec="libx264", audio_codec="aac", audio_fps=sample_rate,
                         preset="veryfast", logger=None, ffmpeg_params=["-pix_fmt", "yuv420p"])
    clip.close()
    return Path(path)


__all__ = ["ClipFormat", "Converted", "SoundingVideoPipelines", "fit_audio", "load_sounding_video",
           "preview_grid", "read_video_clip", "save_sounding_video"]
