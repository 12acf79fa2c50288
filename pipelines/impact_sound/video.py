"""Video in and out for impact soundtracks, through `pipelines.media`'s one reader and one writer.

`read_frames` decodes a (silent) video to small grayscale frames for hit detection; `mux` writes the video again
as H.264 with a soundtrack as AAC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.media import opened_video, read_video, write_video

ANALYSIS_WIDTH = 160  # pixels: plenty to see motion, fast to decode


@dataclass
class VideoFrames:
    """Grayscale frames [T, H, W] in [0, 1], their rate, the video's length, and notes on what was changed."""

    frames: np.ndarray
    fps: float
    seconds: float
    notes: list[str] = field(default_factory=list)


def read_frames(path: str | Path, *, max_seconds: float, width: int = ANALYSIS_WIDTH) -> VideoFrames:
    """Decode up to `max_seconds` of a video at its own frame rate, scaled to `width` pixels wide, as grayscale."""
    video = read_video(path, max_seconds=max_seconds, width=width)
    notes = [f"Used the first {max_seconds:g} s of {video.seconds:.1f} s of video."] if video.seconds > max_seconds \
        else []
    gray = video.frames.astype(np.float32).mean(axis=3) / 255.0
    return VideoFrames(gray, video.fps, min(video.seconds, max_seconds), notes)


def mux(video_path: str | Path, audio: np.ndarray, sample_rate: int, out_path: str | Path) -> Path:
    """Write the video (its first len(audio)/sample_rate seconds) with `audio` as its sound: H.264/AAC mp4."""
    with opened_video(video_path) as clip:
        seconds = min(len(audio) / sample_rate, float(clip.duration))
        return write_video(out_path, clip.get_frame, float(clip.fps), audio=audio, sample_rate=sample_rate,
                           seconds=seconds)
