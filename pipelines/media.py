"""Files in and out: wav, png, an mp4 of a spectrogram with a moving playhead and its sound muxed in, and video
frames read at chosen times.

Used by the studio tabs, the pipelines' command-line tools and the trainers alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.audio import write_wav

PLAYHEAD_RGB = (255, 60, 40)


def save_png(image: np.ndarray, path: Path) -> Path:
    """A [0, 1] grayscale or RGB image as an 8-bit PNG."""
    Image.fromarray(to_uint8(image)).save(path, format="PNG")
    return path


def save_wav(audio: np.ndarray, sample_rate: int, path: Path) -> Path:
    return write_wav(path, audio, sample_rate)


class VideoDecodeError(ValueError):
    """The file could not be read as a video, or holds no frames."""


@contextmanager
def opened_video(path: str | Path, **options) -> Iterator:
    """A moviepy `VideoFileClip` (no audio) with a positive frame rate and length, closed afterwards. Any decoder
    failure, on opening or part-way through a broken stream, becomes a VideoDecodeError in words."""
    from moviepy import VideoFileClip

    try:
        clip = VideoFileClip(str(path), audio=False, **options)
    except Exception as error:  # noqa: BLE001 - any decoder failure means the same thing to the user
        raise VideoDecodeError(f"no video decoder could read it ({type(error).__name__})") from error
    try:
        if not (float(clip.fps or 0.0) > 0 and float(clip.duration or 0.0) > 0):
            raise VideoDecodeError("it holds no video frames")
        yield clip
    except VideoDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - a broken stream fails part-way through decoding
        raise VideoDecodeError(f"the video stream is damaged ({type(error).__name__})") from error
    finally:
        clip.close()


def frames_at(path: str | Path, times_s: np.ndarray) -> tuple[np.ndarray, float, float]:
    """RGB uint8 frames [N, H, W, 3] of a video at the given times (each clamped into the video), with the
    video's frame rate and length in seconds. VideoDecodeError, in words, when it cannot be read."""
    with opened_video(path) as clip:
        fps, seconds = float(clip.fps), float(clip.duration)
        times = np.clip(np.asarray(times_s, dtype=np.float64).reshape(-1), 0.0, max(0.0, seconds - 1.0 / fps))
        frames = np.stack([np.asarray(clip.get_frame(t))[..., :3] for t in times]).astype(np.uint8) \
            if len(times) else np.zeros((0, *clip.size[::-1], 3), np.uint8)
    return frames, fps, seconds


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_playhead_video(image: np.ndarray, audio: np.ndarray, sample_rate: int, path: Path, *, fps: int = 15) -> Path:
    """An H.264/AAC mp4 showing the spectrogram image with a playhead sweeping left to right as the sound plays."""
    from moviepy import AudioArrayClip, VideoClip

    still = _even_sized_rgb(to_uint8(image))
    width = still.shape[1]
    seconds = len(audio) / sample_rate

    def frame_at(t: float) -> np.ndarray:
        frame = still.copy()
        x = min(int(t / seconds * width), width - 1)
        frame[:, max(x - 1, 0) : x + 1] = PLAYHEAD_RGB
        return frame

    stereo = np.repeat(np.clip(audio, -1.0, 1.0).astype(np.float32)[:, None], 2, axis=1)
    sound = AudioArrayClip(stereo, fps=sample_rate)
    clip = VideoClip(frame_at, duration=seconds).with_audio(sound)
    clip.write_videofile(str(path), fps=fps, codec="libx264", audio_codec="aac", preset="veryfast", logger=None,
                         ffmpeg_params=["-pix_fmt", "yuv420p"])
    clip.close()
    return path


def _even_sized_rgb(image: np.ndarray) -> np.ndarray:
    """RGB with even height and width (yuv420p needs both), padding the bottom/right edge by one pixel if odd."""
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
