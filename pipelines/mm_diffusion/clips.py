"""Sounding videos in and out of MM-Diffusion's clip format: 16 frames of 64×64 at 10 fps with 1.6 s of 16 kHz audio
for the released models (`PAPER_CLIP`), a smaller model's own sizes otherwise (`MMDiffusionPipeline.clip_format`).

Uploads of any length, rate, size and frame rate are converted with plain-language notes on what was changed. Video
files are read with `pipelines.media`. Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.audio import SPECS
from pipelines.media import Video, read_video

MM_DIFFUSION = SPECS["mm_diffusion"]
FPS = 10  # paper §4.1
SAMPLE_RATE = MM_DIFFUSION.sample_rate
PAPER_FRAME_SIZE = 64  # paper §4.1: the base model's frames; the released SR model takes them to 256


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


PAPER_CLIP = ClipFormat(round(MM_DIFFUSION.clip_seconds * FPS), PAPER_FRAME_SIZE, PAPER_FRAME_SIZE,
                        MM_DIFFUSION.clip_samples)


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
    """A video file -> uint8 frames [F, H, W, 3] at the model's frame rate, centre-cropped and resized, the last frame
    held when the video is shorter. VideoDecodeError, in words, when it cannot be read."""
    return fit_frames(read_video(path, fps=fmt.fps, max_seconds=fmt.video_seconds), fmt)


def fit_frames(video: Video, fmt: ClipFormat) -> Converted:
    """Frames decoded at the model's frame rate -> exactly `fmt.frames` frames of its size (the first ones; the last
    frame held when there are fewer), with notes on what was changed."""
    frames = [crop_and_resize(frame, fmt) for frame in video.frames[: fmt.frames]]
    held = [frames[-1]] * (fmt.frames - len(frames))
    return Converted(np.stack(frames + held), video_notes(video, len(frames), fmt))


def crop_and_resize(frame: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """Centre-crop to the model's aspect ratio and resize (area-averaging when shrinking)."""
    frame = np.asarray(frame)[..., :3].astype(np.uint8)
    height, width = frame.shape[:2]
    target = fmt.width / fmt.height
    crop_w, crop_h = (round(height * target), height) if width / height > target else (width, round(width / target))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    image = Image.fromarray(frame[top : top + crop_h, left : left + crop_w])
    return np.asarray(image.resize((fmt.width, fmt.height), Image.Resampling.BOX if crop_w >= fmt.width
                                   else Image.Resampling.BICUBIC))


def video_notes(video: Video, used: int, fmt: ClipFormat) -> list[str]:
    notes = []
    if abs(video.source_fps - fmt.fps) > 1e-3:
        notes.append(f"Took {fmt.fps} frames per second from the video's {video.source_fps:g}.")
    if video.seconds > fmt.video_seconds + 1e-6:
        notes.append(f"Used the first {fmt.video_seconds:g} s of {video.seconds:.2f} s of video.")
    if used < fmt.frames:
        notes.append(f"The video is only {video.seconds:.2f} s long: held its last frame to fill "
                     f"{fmt.video_seconds:g} s.")
    width, height = video.size
    if (width, height) != (fmt.width, fmt.height):
        cropped = "centre-cropped and " if width * fmt.height != height * fmt.width else ""
        notes.append(f"The {width}×{height} frames were {cropped}resized to {fmt.width}×{fmt.height}.")
    return notes


__all__ = ["FPS", "PAPER_CLIP", "SAMPLE_RATE", "ClipFormat", "Converted", "fit_audio", "fit_frames",
           "read_video_clip"]


MIN_SHOWN_SIZE = 64  # smaller frames (the studio model's 16×16) are enlarged, pixel for pixel, to be shown and saved


def enlarged(frames: np.ndarray) -> np.ndarray:
    """Frames [F, H, W, 3] repeated pixel for pixel until they are at least MIN_SHOWN_SIZE high."""
    scale = -(-MIN_SHOWN_SIZE // frames.shape[1])
    return frames if scale <= 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


def playable(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """A model's sound at SAMPLE_RATE (the paper's 16 kHz), which every player and AAC encoder takes (the studio model
    makes 4 kHz)."""
    from pipelines.audio import resample

    return audio if sample_rate == SAMPLE_RATE else resample(audio, sample_rate, SAMPLE_RATE)


def sample_sheet(videos: np.ndarray, audios: np.ndarray, sample_rate: int, gap: int = 4) -> np.ndarray:
    """uint8 RGB picture: for every sample, its frames (enlarged) left to right and, under them, its spectrogram
    (linear frequency, 0 Hz at the bottom, time aligned with the frames) stretched to the same width and height."""
    from pipelines.audio import spectrogram_picture

    rows = []
    for video, audio in zip(videos, audios):
        frames = np.concatenate(list(enlarged(video)), axis=1)
        picture = (spectrogram_picture(audio, sample_rate) * 255).astype(np.uint8)
        stretched = np.asarray(Image.fromarray(picture).resize(frames.shape[1::-1], Image.Resampling.BILINEAR))
        rows += [frames, np.repeat(stretched[..., None], 3, axis=-1), np.full((gap, frames.shape[1], 3), 255, np.uint8)]
    return np.concatenate(rows[:-1], axis=0)


def write_samples(folder: Path, videos: np.ndarray, audios: np.ndarray, fmt: ClipFormat) -> None:
    """For every sample sample-XXX.mp4 (frames enlarged, with the sound) and sample-XXX.wav at SAMPLE_RATE, and
    sheet.png (`sample_sheet`): what the sounding-video CLIs write."""
    from pipelines.media import save_png, save_wav, write_video

    folder.mkdir(parents=True, exist_ok=True)
    for index, (video, audio) in enumerate(zip(videos, audios)):
        sound = playable(audio, fmt.sample_rate)
        stem = folder / f"sample-{index:03d}"
        write_video(f"{stem}.mp4", enlarged(video), fmt.fps, audio=sound, sample_rate=SAMPLE_RATE)
        save_wav(sound, SAMPLE_RATE, Path(f"{stem}.wav"))
    save_png(sample_sheet(videos, audios, fmt.sample_rate), folder / "sheet.png")
