"""Checks on everything a user gives the studio, each failing with a plain-language `gr.Error`.

A message says what was wrong and what to do. Handlers are wrapped in `user_facing`, so an unexpected failure is
logged and shown as a short apology instead of a stack trace, and the server keeps serving everyone else.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np

from pipelines.audio import AudioDecodeError, AudioSpec, LoadedAudio, load_audio

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".opus", ".webm")
MAX_PICTURE_PIXELS = 40_000_000


def require_number(value, label: str, minimum: float, maximum: float, *, integer: bool = False) -> float:
    """A finite number in [minimum, maximum] (a whole number when `integer`)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{label} must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise gr.Error(f"{label} must be a finite number; got {value!r}. Enter a value between {minimum:g} and "
                       f"{maximum:g}.")
    if not minimum <= number <= maximum:
        raise gr.Error(f"{label} must be between {minimum:g} and {maximum:g}; got {number:g}.")
    if integer and number != int(number):
        raise gr.Error(f"{label} must be a whole number; got {number:g}.")
    return int(number) if integer else number


def require_prompt(text, label: str, *, max_chars: int = 300, allow_empty: bool = False) -> str:
    """A prompt, stripped, no longer than `max_chars`."""
    text = "" if text is None else str(text).strip()
    if not text and not allow_empty:
        raise gr.Error(f"{label} is empty: describe what you want, e.g. 'a castle with bell towers'.")
    if len(text) > max_chars:
        raise gr.Error(f"{label} is {len(text)} characters long; keep it under {max_chars}.")
    return text


def require_file(path, label: str, *, suffixes: tuple[str, ...], max_mb: float) -> Path:
    """An uploaded file that exists, has an accepted extension and is not too big."""
    if not path:
        raise gr.Error(f"No {label} was given: upload one first.")
    path = Path(path)
    if not path.is_file():
        raise gr.Error(f"The {label} upload did not arrive; please upload it again.")
    if path.suffix.lower() not in suffixes:
        raise gr.Error(f"'{path.name}' is not a {label} file we can read; use one of: {', '.join(suffixes)}.")
    size_mb = path.stat().st_size / 1024**2
    if size_mb > max_mb:
        raise gr.Error(f"'{path.name}' is {size_mb:.0f} MB; the limit is {max_mb:g} MB. Upload a shorter or "
                       "smaller file.")
    if size_mb == 0:
        raise gr.Error(f"'{path.name}' is empty. Upload a file that holds some {label}.")
    return path


def read_audio(path, spec: AudioSpec, *, max_mb: float, max_seconds: float, label: str = "audio") -> LoadedAudio:
    """Decode an upload to mono float32 at the spec's rate, trimmed to `max_seconds` (with notes)."""
    path = require_file(path, label, suffixes=AUDIO_SUFFIXES, max_mb=max_mb)
    try:
        loaded = load_audio(path, spec, max_seconds=max_seconds)
    except AudioDecodeError as error:
        raise gr.Error(f"We could not read '{path.name}' as audio: {error}. Try a WAV, FLAC, OGG or MP3 file.") \
            from None
    if loaded.seconds < 0.05:
        raise gr.Error(f"'{path.name}' is only {loaded.seconds * 1000:.0f} ms long; give at least 0.05 s of audio.")
    return loaded


def read_picture(value, label: str = "picture") -> np.ndarray:
    """A picture from an image input or editor as float32 [H, W, 3] in [0, 1]; transparent pixels count as black.

    Accepts a numpy image or an ImageEditor value (a dict whose `composite` is the flattened drawing).
    """
    if isinstance(value, dict):
        value = value.get("composite")
    if value is None:
        raise gr.Error(f"There is no {label} yet: upload an image or draw one.")
    image = np.asarray(value)
    if image.ndim not in (2, 3) or image.size == 0 or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise gr.Error(f"The {label} could not be read as an image; upload a PNG or JPEG.")
    if image.shape[0] * image.shape[1] > MAX_PICTURE_PIXELS:
        raise gr.Error(f"The {label} is {image.shape[1]}×{image.shape[0]} pixels; use one under 40 megapixels.")
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3] * image[..., 3:]
    if not np.isfinite(image).all():
        raise gr.Error(f"The {label} holds invalid pixel values; upload a regular PNG or JPEG.")
    if np.all(image == 0):
        raise gr.Error(f"The {label} is empty (all black or transparent): draw or upload something first.")
    return np.clip(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image, 0.0, 1.0)


def user_facing(action: str) -> Callable[[Callable], Callable]:
    """Let `gr.Error` through; turn anything else into a short message (logged with its traceback)."""

    def apology() -> gr.Error:
        log.exception("%s failed", action)
        return gr.Error(f"Something went wrong while {action}. Please try again; if it keeps happening, try another "
                        "file or smaller settings.")

    def decorate(handler: Callable) -> Callable:
        if inspect.isgeneratorfunction(handler):  # handlers that stream previews

            @functools.wraps(handler)
            def streaming(*args, **kwargs):
                try:
                    yield from handler(*args, **kwargs)
                except gr.Error:
                    raise
                except Exception:  # noqa: BLE001 - the user gets a message, the log gets the traceback
                    raise apology() from None

            return streaming

        @functools.wraps(handler)
        def wrapped(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception:  # noqa: BLE001 - the user gets a message, the log gets the traceback
                raise apology() from None

        return wrapped

    return decorate
