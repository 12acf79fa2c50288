"""Checks on everything a user gives the studio, each failing with a plain-language `gr.Error`.

A message says what was wrong and what to do. Handlers are wrapped in `user_facing`: a pipeline's own input check
(a `ValueError` raised in `pipelines/`, which names the setting and the rule) reaches the artist as it is, so tabs do
not repeat the pipelines' rules; any other failure is logged and shown as a short apology instead of a stack trace,
and the server keeps serving everyone else.
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
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
MAX_PICTURE_PIXELS = 40_000_000


MAX_VIDEO_PIXELS = 3840 * 2160  # per frame: 4K UHD
MAX_EDITOR_SIDE = 8192  # the longest side a browser's image editor canvas (WebGL texture) reliably opens


def number_text(value) -> str:
    """A number as an artist reads it: whole numbers in full (2147483647, never 2.14748e+09), others to at most
    four decimals."""
    number = float(value)
    if not math.isfinite(number):
        return "not a number" if math.isnan(number) else ("infinity" if number > 0 else "minus infinity")
    if number == int(number) and abs(number) < 1e18:
        return str(int(number))
    text = f"{number:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("0", "-0") else f"{number:.2e}"


def require_number(value, label: str, minimum: float, maximum: float, *, integer: bool = False) -> float:
    """A finite number in [minimum, maximum] (a whole number when `integer`)."""
    bounds = f"between {number_text(minimum)} and {number_text(maximum)}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise gr.Error(f"{label} is empty: enter a number {bounds}.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"{label} must be a number {bounds}; '{value}' is not a number.") from None
    if not math.isfinite(number):
        raise gr.Error(f"{label} must be a finite number {bounds}; got {number_text(number)}.")
    if not minimum <= number <= maximum:
        raise gr.Error(f"{label} must be {bounds}; got {number_text(number)}.")
    if integer and number != int(number):
        raise gr.Error(f"{label} must be a whole number {bounds}; got {number_text(number)}.")
    return int(number) if integer else number


def checked_number_inputs(blocks: gr.Blocks) -> None:
    """Every slider and bounded number box in `blocks` checks what it receives before gradio's own preprocessing, with
    the message a handler gives ("Steps (DDIM) must be between 1 and 200; got 1000000000000."). Gradio's check reaches
    an API caller as "Value 1000000000000.0 is greater than maximum value 200.", naming no setting, and an empty
    slider fails inside gradio with no message at all."""
    for block in blocks.blocks.values():
        if isinstance(block, gr.Slider) or (isinstance(block, gr.Number) and
                                            (block.minimum is not None or block.maximum is not None)):
            _check_before_preprocess(block)


def _check_before_preprocess(block) -> None:
    preprocess, label = block.preprocess, block.label or "This setting"
    low = -math.inf if block.minimum is None else block.minimum
    high = math.inf if block.maximum is None else block.maximum
    empty_allowed = isinstance(block, gr.Number)  # a number box may be cleared: its handler says what is missing

    def preprocess_checked(payload):
        if not (payload is None and empty_allowed):
            require_number(payload, label, low, high)
        return preprocess(payload)

    block.preprocess = preprocess_checked


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
    if not np.any(loaded.samples):
        loaded.notes.append(f"'{path.name}' is silent (every sample is zero), so there is nothing to hear or see in "
                            "it; upload a recording with sound in it.")
    return loaded


def require_picture_file(path, label: str = "picture") -> None:
    """Refuse a picture file whose header says it is too big, before any pixel is decoded."""
    from pipelines.media import image_header

    header = image_header(path)
    if header.pixels > MAX_PICTURE_PIXELS:
        size = f"{header.width}×{header.height} pixels" if header.width else f"{header.pixels} pixels"
        raise gr.Error(f"The {label} is too big: {size} ({header.pixels / 1e6:.0f} megapixels); the limit is "
                       f"{MAX_PICTURE_PIXELS // 1_000_000} megapixels. Scale it down and upload it again.")


def editor_files(value) -> list:
    """The files of an image editor value (`type="filepath"`): its background, layers and composite (paths or None)
    and the browser's uploads they were made from (`checked_image_input`), to be claimed for the session; nothing for
    no value."""
    if not isinstance(value, dict):
        return []
    return [value.get("background"), list(value.get("layers") or []), value.get("composite"),
            list(value.get("uploads") or [])]


def editor_pixels(value, label: str = "picture") -> np.ndarray | None:
    """The composite of an image editor value (`type="filepath"`) decoded as `type="numpy"` gives it (uint8 RGBA),
    its size checked from its header first; None when there is none (`read_picture` says what is missing)."""
    from PIL import Image, UnidentifiedImageError

    path = value.get("composite") if isinstance(value, dict) else None
    if not path:
        return None
    if not Path(path).is_file():
        raise gr.Error(f"The {label} upload did not arrive; please upload it again.")
    try:
        require_picture_file(path, label)
        with Image.open(path) as image:
            return np.array(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError):
        raise gr.Error(f"The {label} could not be read as an image; upload a PNG or JPEG.") from None


def checked_image_input(component):
    """An image input (gr.Image or gr.ImageEditor) whose uploads are checked for size from their header before
    gradio decodes them: a huge picture gets a plain message in the browser and by API alike. An editor's value also
    names the files the browser uploaded (see `editor_files`)."""
    convert = component.convert_and_format_image if hasattr(component, "convert_and_format_image") else None
    if convert is not None:  # gr.ImageEditor decodes each layer here

        def convert_checked(file, *args, **kwargs):
            if file is not None and hasattr(file, "path"):
                require_picture_file(file.path)
            return convert(file, *args, **kwargs)

        component.convert_and_format_image = convert_checked
        component.preprocess = _with_uploaded_files(component.preprocess)
    else:
        preprocess = component.preprocess

        def preprocess_checked(payload):
            if payload is not None and getattr(payload, "path", None):
                require_picture_file(payload.path)
            return preprocess(payload)

        component.preprocess = preprocess_checked
    return component


def _with_uploaded_files(preprocess):
    """An image editor's preprocess whose value also names, under "uploads", the files the browser uploaded (gradio
    hands the handler re-encoded copies of them, so the handler could not claim the originals otherwise)."""

    def preprocess_naming_uploads(payload):
        value = preprocess(payload)
        if isinstance(value, dict) and payload is not None:
            sent = [payload.background, *(payload.layers or []), payload.composite]
            value["uploads"] = [file.path for file in sent if getattr(file, "path", None)]
        return value

    return preprocess_naming_uploads


def require_video(path, label: str = "video", *, max_mb: float) -> Path:
    """An uploaded video file that exists, is not too big as a file, and whose frames (read from its header, not
    decoded) are not too big."""
    from pipelines.media import VideoDecodeError, video_info

    path = require_file(path, label, suffixes=VIDEO_SUFFIXES, max_mb=max_mb)
    try:
        info = video_info(path)
    except VideoDecodeError as error:
        raise video_read_error(path, error) from None
    width, height = info.size
    if width * height > MAX_VIDEO_PIXELS:
        raise gr.Error(f"The {label} '{path.name}' is {width}×{height} pixels per frame; the limit is 3840×2160 "
                       "(4K). Scale it down and upload it again.")
    return path


def video_read_error(path: Path, error: Exception) -> gr.Error:
    """The message for a video no decoder could read: what went wrong and what to do, for this file's kind."""
    path = Path(path)
    if path.suffix.lower() in (".mp4", ".m4v"):
        advice = "It may be damaged or use an unusual codec: re-encode it as H.264 (e.g. export it again) and upload it."
    else:
        advice = "Try an MP4 file."
    return gr.Error(f"We could not read '{path.name}' as a video: {error}. {advice}")


def read_picture(value, label: str = "picture") -> np.ndarray:
    """A picture (a numpy image, e.g. from `editor_pixels`) as float32 [H, W, 3] in [0, 1]; transparent pixels count
    as black."""
    if value is None:
        # The editor sends nothing both when nothing was given and when the browser could not open the upload (a
        # 20000×20000 PNG does not fit its canvas): the file never reaches the server, so one message says both.
        raise gr.Error(f"There is no {label} yet, or the one you uploaded is too big for the browser to open: upload "
                       f"an image (at most {MAX_EDITOR_SIDE} pixels a side and under "
                       f"{MAX_PICTURE_PIXELS // 1_000_000} megapixels) or draw one.")
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


def require_mode_table(table, *, nyquist: float, max_rows: int, max_decay_s: float = 60.0,
                       power_range_db: tuple[float, float] = (-200.0, 40.0)) -> tuple[np.ndarray, ...]:
    """A table of modes (rows of frequency Hz, power dB, decay s) as three float arrays; blank rows are skipped.

    Accepts what a gr.Dataframe gives (a pandas DataFrame), a list of rows, or a {"data": rows} dict.
    """
    rows = _table_rows(table)
    filled = [(number, row) for number, row in enumerate(rows, start=1) if not all(_blank(cell) for cell in row)]
    if not filled:
        raise gr.Error("The mode table is empty: estimate the physics of a hit, pick a material, or type in at "
                       "least one mode (frequency, power, decay).")
    if len(filled) > max_rows:
        raise gr.Error(f"The mode table has {len(filled)} rows; the limit is {max_rows}. Delete some modes.")
    columns = [("frequency (Hz)", 0.0, nyquist), ("power (dB)", *power_range_db), ("decay (s)", 0.0, max_decay_s)]
    values = np.zeros((len(filled), 3))
    for index, (number, row) in enumerate(filled):
        if len(row) < 3 or any(_blank(cell) for cell in row[:3]):
            raise gr.Error(f"Row {number} of the mode table is incomplete: give a frequency, a power and a decay, "
                           "or delete the row.")
        for column, (label, low, high) in enumerate(columns):
            values[index, column] = _table_number(row[column], number, label, low, high, open_low=column != 1,
                                                  open_high=column == 0)
    return values[:, 0], values[:, 1], values[:, 2]


def _table_rows(table) -> list[list]:
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):  # pandas DataFrame
        return [list(row) for row in table.values.tolist()]
    if isinstance(table, dict):
        table = table.get("data") or []
    try:
        return [list(row) if isinstance(row, (list, tuple, np.ndarray)) else [row] for row in table]
    except TypeError:
        raise gr.Error("The mode table could not be read; reload the page and try again.") from None


def _blank(cell) -> bool:
    if cell is None:
        return True
    if isinstance(cell, str):
        return not cell.strip()
    return isinstance(cell, float) and math.isnan(cell)


def _table_number(cell, row: int, label: str, low: float, high: float, *, open_low: bool, open_high: bool) -> float:
    """One cell as a finite number within its range (bounds excluded where `open_*`)."""
    try:
        number = float(str(cell).strip()) if isinstance(cell, str) else float(cell)
    except (TypeError, ValueError):
        raise gr.Error(f"Row {row}: {label} must be a number; got {cell!r}.") from None
    too_low = number <= low if open_low else number < low
    too_high = number >= high if open_high else number > high
    if not math.isfinite(number) or too_low or too_high:
        bounds = (f"{'above' if open_low else 'at least'} {number_text(low)} and "
                  f"{'below' if open_high else 'at most'} {number_text(high)}")
        raise gr.Error(f"Row {row}: {label} must be {bounds}; got {number_text(number)}.")
    return number


def require_times(text, label: str, *, maximum: float, max_count: int) -> list[float]:
    """A list of times in seconds typed as numbers separated by commas, spaces or new lines, each in [0, maximum].

    Returned sorted; empty text gives an empty list.
    """
    parts = [part for part in str(text or "").replace(",", " ").replace(";", " ").split() if part]
    if len(parts) > max_count:
        raise gr.Error(f"There are {len(parts)} {label}; the limit is {max_count}. Remove some.")
    times = []
    for part in parts:
        try:
            time = float(part.rstrip("s"))
        except ValueError:
            time = math.nan
        if not math.isfinite(time):  # words, and 'nan' or 'inf', which float() reads
            raise gr.Error(f"'{part}' in the {label} is not a time: write seconds like 0.5, 1.25, 3.")
        if not 0.0 <= time <= maximum:
            raise gr.Error(f"The time {part} in the {label} is outside the video: use 0 to {maximum:.2f} s.")
        times.append(time)
    return sorted(times)


PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def raised_by_a_pipeline_check(error: BaseException) -> bool:
    """A `ValueError` raised by our own pipeline code (an input check), not one from deep inside a library."""
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    frame = error.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    return Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(PIPELINES)


def plain_message(error: ValueError) -> str:
    text = str(error).strip().replace("`", "'")
    return text[:1].upper() + text[1:] if text else "One of the settings is not valid; check them and try again."


def user_facing(action: str) -> Callable[[Callable], Callable]:
    """Let `gr.Error` through, and a pipeline's input check as its own message; turn anything else into a short
    apology (logged with its traceback)."""

    def apology(error: Exception) -> gr.Error:
        from studio.sessions import SessionEnded

        if raised_by_a_pipeline_check(error):
            return gr.Error(plain_message(error))
        if isinstance(error, SessionEnded):  # the tab was closed mid-request: nobody is waiting, nothing is kept
            return gr.Error("This session has ended; reload the page to start again.")
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
                except Exception as error:  # noqa: BLE001 - the user gets a message, the log gets the traceback
                    raise apology(error) from None

            return streaming

        @functools.wraps(handler)
        def wrapped(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - the user gets a message, the log gets the traceback
                raise apology(error) from None

        return wrapped

    return decorate
