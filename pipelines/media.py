"""Every file in and out but audio analysis: wav, png, and video — one reader, one writer, one error type.

- `opened_video` / `read_video` / `read_soundtrack` / `video_info`: the only places a video is decoded; any decoder
  failure is a `VideoDecodeError` in words.
- `write_video`: the only place a video is encoded (H.264/AAC mp4, even frame sizes), from frames or a
  `frame_at(t)` function, with its sound muxed in when given (encoded first, and again turned down until its decoded
  peak is under PEAK_LIMIT: `_aac_soundtrack`).

Used by the studio tabs, the pipelines' command-line tools, the toy world and the trainers alike."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.audio import write_wav

PLAYHEAD_RGB = (255, 60, 40)


def save_png(image: np.ndarray, path: Path) -> Path:
    """A grayscale or RGB image, uint8 or float in [0, 1], as an 8-bit PNG."""
    Image.fromarray(_as_uint8(image)).save(path, format="PNG")
    return path


PEAK_LIMIT = 0.98  # written sound never reaches full scale: nothing clips, in the wav or the AAC


def limited(audio: np.ndarray) -> np.ndarray:
    """Mono float32 samples turned down (by one gain) so their peak is at most PEAK_LIMIT; non-finite samples are
    silenced. Quieter sound is left as it is."""
    audio = np.nan_to_num(np.asarray(audio, np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else audio


def save_wav(audio: np.ndarray, sample_rate: int, path: Path) -> Path:
    """A wav (16-bit PCM) of the sound, peak-limited (`limited`) so no sample clips."""
    return write_wav(path, limited(audio), sample_rate)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: its size (None when the reader refused to say) and pixel count."""

    width: int | None
    height: int | None
    pixels: int


def image_header(path: str | Path) -> ImageHeader:
    """An image's size from its header alone: no pixel is decoded (so a 20000×20000 PNG costs nothing)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only; .load() would decode
        with image:
            width, height = image.size
            return ImageHeader(width, height, width * height)
    except Image.DecompressionBombError as error:  # PIL refuses to open far too big pictures at all
        with open(path, "rb") as file:
            head = file.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            return ImageHeader(width, height, width * height)
        import re

        found = re.search(r"\((\d+) pixels\)", str(error))
        return ImageHeader(None, None, int(found.group(1)) if found else 10**12)


class VideoDecodeError(ValueError):
    """The file could not be read as a video, or holds no frames."""


@contextmanager
def opened_video(path: str | Path, **options) -> Iterator:
    """A moviepy `VideoFileClip` (no audio) with a positive frame rate and length, closed afterwards. Any decoder
    failure, on opening or part-way through a broken stream, becomes a VideoDecodeError in words."""
    from moviepy import VideoFileClip

    try:
        clip = VideoFileClip(str(path), audio=False, **options)
    except Exception as error:  # any decoder failure means the same thing to the user
        raise VideoDecodeError("no video decoder could read it") from error
    try:
        if not (float(clip.fps or 0.0) > 0 and float(clip.duration or 0.0) > 0):
            raise VideoDecodeError("it holds no video frames")
        yield clip
    except VideoDecodeError:
        raise
    except Exception as error:  # a broken stream fails part-way through decoding
        raise VideoDecodeError("the video stream is damaged") from error
    finally:
        clip.close()


@dataclass
class Video:
    """Decoded RGB frames [T, H, W, 3] (uint8), the rate they were taken at, and the file's own rate, length and
    size (width, height)."""

    frames: np.ndarray
    fps: float
    source_fps: float
    seconds: float
    size: tuple[int, int]


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    seconds: float
    size: tuple[int, int]  # width, height


def video_info(path: str | Path) -> VideoInfo:
    """The video's frame rate, length and size, without decoding its frames."""
    with opened_video(path) as clip:
        return VideoInfo(float(clip.fps), float(clip.duration), tuple(clip.size))


def read_video(path: str | Path, *, times_s: Sequence[float] | np.ndarray | None = None, fps: float | None = None,
               max_seconds: float | None = None, width: int | None = None) -> Video:
    """Decode a video's frames: at `times_s` (each clamped into the video), or else every 1/`fps` seconds (default:
    the file's own rate) up to `max_seconds`; scaled to `width` pixels wide when given.
    VideoDecodeError, in words, when it cannot be read or holds no frames."""
    options = {"target_resolution": (None, width)} if width else {}
    with opened_video(path, **options) as clip:
        source_fps, seconds, size = float(clip.fps), float(clip.duration), tuple(clip.size)
        rate = float(fps or source_fps)
        if times_s is None:
            end = seconds if max_seconds is None else min(seconds, max_seconds)
            times = np.arange(max(1, int(end * rate + 1e-6))) / rate
        else:
            times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        times = np.clip(times, 0.0, max(0.0, seconds - 1.0 / source_fps))
        frames = [np.asarray(clip.get_frame(t))[..., :3].astype(np.uint8) for t in times]
    shape = (0, *(frames[0].shape if frames else (size[1], size[0], 3)))
    stacked = np.stack(frames) if frames else np.zeros(shape, np.uint8)
    if times_s is None and not frames:
        raise VideoDecodeError("it holds no video frames")
    return Video(stacked, rate, source_fps, seconds, size)


def read_soundtrack(path: str | Path, sample_rate: int | None) -> np.ndarray:
    """A video file's first audio stream as mono float32 at `sample_rate` (ffmpeg mixes and resamples), or at the
    stream's own rate when None (the samples exactly as decoded). VideoDecodeError, in words, when it has no sound or
    cannot be read."""
    import subprocess

    from imageio_ffmpeg import get_ffmpeg_exe

    rate = ["-ar", str(int(sample_rate))] if sample_rate is not None else []
    command = [get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", *rate, "-f", "f32le",
               "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        if b"matches no streams" in result.stderr:
            raise VideoDecodeError("it has no sound track")
        raise VideoDecodeError(f"its sound could not be decoded ({result.stderr.decode(errors='replace').strip()[:160]})")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def write_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray | Callable[[float], np.ndarray], fps: float,
                *, audio: np.ndarray | None = None, sample_rate: int | None = None, seconds: float | None = None,
                crf: int | None = None) -> Path:
    """Write an H.264 mp4 (yuv420p, sizes padded to even), with mono `audio` muxed in as AAC when given.

    `frames`: RGB or grayscale frames, uint8 or float in [0, 1]; or a function `frame_at(t)` returning one, with
    `seconds` its length (frames are taken at t = i / fps). Every frame given is written, exactly. Audio longer than
    the frames is cut; its decoded peak is at most PEAK_LIMIT (`_aac_soundtrack`). `crf`: H.264 quality (lower is
    better; default ffmpeg's 23)."""
    import tempfile

    import imageio_ffmpeg

    if callable(frames):
        if seconds is None:
            raise ValueError("write_video needs `seconds` when frames is a function of time")
        frame_at = frames
        count = max(1, math.ceil(seconds * fps - 1e-9))  # frames covering the whole length: no sound is cut
        frames = (frame_at(index / fps) for index in range(count))
    pictures = (_even_sized_rgb(_as_uint8(frame)) for frame in frames)
    first = next(pictures)
    path = Path(path)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="synesthesia-mux-") as scratch:
        options = {}
        if audio is not None:
            if not sample_rate:
                raise ValueError("write_video needs `sample_rate` with `audio`")
            sound = _aac_soundtrack(audio, sample_rate, Path(scratch))
            options = {"audio_path": str(sound), "audio_codec": "copy"}  # muxed as encoded: its peak was checked
        writer = imageio_ffmpeg.write_frames(
            str(path), (first.shape[1], first.shape[0]), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            macro_block_size=1, ffmpeg_log_level="error", quality=None,
            output_params=["-preset", "veryfast", "-shortest"] + (["-crf", str(crf)] if crf is not None else []),
            **options)
        writer.send(None)
        for picture in itertools.chain([first], pictures):
            writer.send(np.ascontiguousarray(picture))
        writer.close()
    if not path.is_file():
        raise OSError(f"ffmpeg wrote no video to {path}")
    return path


AAC_MIN_RATE = 8000  # ffmpeg's AAC encoder refuses lower rates
AAC_FALLBACK_RATE = 16000  # what lower-rate sound is resampled to for muxing


def _aac_ready(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Audio at a rate AAC can carry: below `AAC_MIN_RATE` it is resampled to `AAC_FALLBACK_RATE` (same sound, more
    samples)."""
    if sample_rate >= AAC_MIN_RATE:
        return audio, sample_rate
    from pipelines.audio import resample

    return resample(audio, sample_rate, AAC_FALLBACK_RATE).astype(np.float32), AAC_FALLBACK_RATE


AAC_PASSES = 8  # encodings at most; measured: 1 for most sound, up to 6 for harsh full-scale sound
AAC_MARGIN = 0.9  # each re-encoding aims this much under the limit: the encoder's overshoot is not proportional


def _aac_soundtrack(audio: np.ndarray, sample_rate: int, folder: Path) -> Path:
    """The sound, peak-limited, as an AAC file (`folder`/sound.m4a) whose decoded peak is at most PEAK_LIMIT.

    AAC's quantisation overshoots on harsh sound: a square wave limited to 0.98 decodes to a peak of 2.29, a noisy
    4-step Sounding Video sample to 1.005, and not in proportion to the level (a 440 Hz sine at 0.98 decodes to 1.02,
    at 0.5 to 1.07). So the encoded sound is decoded and, while its peak is over the limit, encoded again with the
    gain lowered by limit / peak × AAC_MARGIN, at most AAC_PASSES times (on 40 harsh test sounds, full-scale noise,
    square waves, loud sines and clicks at 4-44.1 kHz: 1 to 6 passes, all ending under the limit). The video stream is
    encoded once, after, with this sound copied in.
    Cost (2-core CPU, busy): one pass (write, encode, decode) takes about 0.1 s for a 1.6 s Sounding Video clip at
    16 kHz and 0.15 s for a 10 s Images that Sound playhead video; `write_video` went from 0.11 to 0.2 s and from 0.47
    to 0.6 s on these (one pass each)."""
    import subprocess

    from imageio_ffmpeg import get_ffmpeg_exe

    sound, rate = _aac_ready(limited(audio), sample_rate)
    wav, encoded = folder / "sound.wav", folder / "sound.m4a"
    gain = 1.0
    for _ in range(AAC_PASSES):
        write_wav(wav, sound * gain, rate)
        result = subprocess.run([get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(encoded)],
                                capture_output=True, check=False)
        if result.returncode != 0:
            raise OSError(f"ffmpeg could not encode the sound ({result.stderr.decode(errors='replace').strip()[:160]})")
        peak = float(np.abs(read_soundtrack(encoded, None)).max(initial=0.0))
        if peak <= PEAK_LIMIT:
            break
        gain *= PEAK_LIMIT / peak * AAC_MARGIN
    return encoded


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    return frame if frame.dtype == np.uint8 else to_uint8(frame)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_playhead_video(image: np.ndarray, audio: np.ndarray, sample_rate: int, path: Path, *, fps: int = 15) -> Path:
    """An H.264/AAC mp4 showing the spectrogram image with a playhead sweeping left to right as the sound plays."""
    still = _even_sized_rgb(to_uint8(image))
    width = still.shape[1]
    seconds = len(audio) / sample_rate

    def frame_at(t: float) -> np.ndarray:
        frame = still.copy()
        x = min(int(t / seconds * width), width - 1)
        frame[:, max(x - 1, 0) : x + 1] = PLAYHEAD_RGB
        return frame

    return write_video(path, frame_at, fps, audio=audio, sample_rate=sample_rate, seconds=seconds)


def _even_sized_rgb(image: np.ndarray) -> np.ndarray:
    """RGB with even height and width (yuv420p needs both), padding the bottom/right edge by one pixel if odd."""
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
