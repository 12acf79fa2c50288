"""Video in and out for impact soundtracks, through moviepy (ffmpeg from imageio-ffmpeg).

`read_frames` decodes a (silent) video to small grayscale frames for hit detection; `mux` writes the video again
as H.264 with a soundtrack as AAC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.media import VideoDecodeError, opened_video

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
    with opened_video(path, target_resolution=(None, width)) as clip:
        fps, seconds = float(clip.fps), float(clip.duration)
        notes = []
        if seconds > max_seconds:
            notes.append(f"Used the first {max_seconds:g} s of {seconds:.1f} s of video.")
            clip, seconds = clip.subclipped(0, max_seconds), max_seconds
        frames = [frame.astype(np.float32).mean(axis=2) / 255.0 for frame in clip.iter_frames(fps=fps)]
    if not frames:
        raise VideoDecodeError("it holds no video frames")
    return VideoFrames(np.stack(frames), fps, seconds, notes)


def video_seconds(path: str | Path) -> float:
    """The video's length in seconds (VideoDecodeError when it cannot be read)."""
    with opened_video(path) as clip:
        return float(clip.duration)


def mux(video_path: str | Path, audio: np.ndarray, sample_rate: int, out_path: str | Path) -> Path:
    """Write the video (its first len(audio)/sample_rate seconds) with `audio` as its sound: H.264/AAC mp4."""
    from moviepy import AudioArrayClip, VideoFileClip

    seconds = len(audio) / sample_rate
    video = VideoFileClip(str(video_path), audio=False)
    try:
        stereo = np.repeat(np.clip(audio, -1.0, 1.0).astype(np.float32)[:, None], 2, axis=1)
        clip = video.subclipped(0, min(seconds, video.duration)).with_audio(AudioArrayClip(stereo, fps=sample_rate))
        clip.write_videofile(str(out_path), codec="libx264", audio_codec="aac", audio_fps=sample_rate,
                             preset="veryfast", logger=None,
                             ffmpeg_params=["-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"])
    finally:
        video.close()
    return Path(out_path)
