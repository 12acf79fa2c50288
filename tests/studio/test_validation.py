"""studio.validation: every bad input gets a plain-language gr.Error, and surprises never leak a traceback."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import soundfile

from pipelines.audio import SPECS
from studio import validation


@pytest.mark.parametrize("value, message", [
    (float("nan"), "must be a finite number between 0.5 and 10; got not a number"), (float("inf"), "got infinity"),
    ("abc", "must be a number between 0.5 and 10; 'abc' is not a number"), (None, "Duration is empty"),
    ("", "Duration is empty"), (-1.0, "between 0.5 and 10; got -1"), (11.0, "between 0.5 and 10"),
    (0.1, "between 0.5 and 10"),
])
def test_bad_numbers(value, message):
    with pytest.raises(gr.Error, match=message):
        validation.require_number(value, "Duration", 0.5, 10.0)


def test_good_numbers_and_whole_numbers():
    assert validation.require_number("2.5", "Duration", 0.5, 10.0) == 2.5
    assert validation.require_number(32.0, "Iterations", 1, 256, integer=True) == 32
    with pytest.raises(gr.Error, match="whole number"):
        validation.require_number(3.5, "Iterations", 1, 256, integer=True)


def test_prompts():
    assert validation.require_prompt("  bell ringing ", "Audio prompt") == "bell ringing"
    with pytest.raises(gr.Error, match="Audio prompt is empty"):
        validation.require_prompt("   ", "Audio prompt")
    with pytest.raises(gr.Error, match="keep it under 300"):
        validation.require_prompt("x" * 301, "Audio prompt")
    assert validation.require_prompt(None, "Negative prompt", allow_empty=True) == ""


def test_files(tmp_path):
    with pytest.raises(gr.Error, match="No audio was given"):
        validation.require_file(None, "audio", suffixes=(".wav",), max_mb=1)
    with pytest.raises(gr.Error, match="did not arrive"):
        validation.require_file(tmp_path / "gone.wav", "audio", suffixes=(".wav",), max_mb=1)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(gr.Error, match="not a audio file we can read"):
        validation.require_file(tmp_path / "notes.txt", "audio", suffixes=(".wav",), max_mb=1)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(gr.Error, match="is empty"):
        validation.require_file(tmp_path / "empty.wav", "audio", suffixes=(".wav",), max_mb=1)
    (tmp_path / "big.wav").write_bytes(b"0" * (2 * 1024**2))
    with pytest.raises(gr.Error, match="the limit is 1 MB"):
        validation.require_file(tmp_path / "big.wav", "audio", suffixes=(".wav",), max_mb=1)


def test_read_audio_corrupt_short_and_good(tmp_path):
    spec = SPECS["auffusion"]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(gr.Error, match="could not read 'corrupt.wav' as audio") as error:
        validation.read_audio(corrupt, spec, max_mb=5, max_seconds=10)
    assert "Error" not in error.value.message  # no exception name reaches the artist
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(gr.Error, match="only 6 ms long"):
        validation.read_audio(short, spec, max_mb=5, max_seconds=10)
    good = tmp_path / "good.wav"
    soundfile.write(good, np.full(48000, 0.1, dtype=np.float32), 48000)
    loaded = validation.read_audio(good, spec, max_mb=5, max_seconds=10)
    assert loaded.sample_rate == 16000 and loaded.notes == ["Resampled from 48000 Hz to 16000 Hz."]


def test_read_picture_from_arrays_and_editor_values(tmp_path):
    from PIL import Image

    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:2, ..., 3] = 255  # top half opaque white, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "composite.png")
    layer, composite = str(tmp_path / "layer_0.png"), str(tmp_path / "composite.png")
    value = {"background": None, "layers": [layer], "composite": composite}
    assert validation.editor_files(value) == [None, [layer], composite, []]
    assert validation.editor_files(None) == [] and validation.editor_pixels({"composite": None}) is None
    assert np.array_equal(validation.editor_pixels(value), rgba)  # as gr.ImageEditor(type="numpy") gave it
    picture = validation.read_picture(validation.editor_pixels(value))
    assert picture.shape == (4, 6, 3) and picture.dtype == np.float32
    np.testing.assert_allclose(picture[:2], 1.0)
    np.testing.assert_allclose(picture[2:], 0.0)  # transparent counts as black: silence
    assert validation.read_picture(np.full((3, 3), 0.5, dtype=np.float32)).shape == (3, 3, 3)


@pytest.mark.parametrize("value, message", [
    (None, "no picture yet"),
    (np.zeros((4, 4, 4), dtype=np.uint8), "is empty"), (np.zeros((4, 4, 2)), "could not be read"),
    (np.full((3, 3), np.nan, dtype=np.float32), "invalid pixel values"),
])
def test_read_picture_rejects(value, message):
    with pytest.raises(gr.Error, match=message):
        validation.read_picture(value)


def test_user_facing_hides_surprises_but_keeps_user_errors():
    @validation.user_facing("testing")
    def explode():
        raise ZeroDivisionError("internal detail")

    @validation.user_facing("testing")
    def refuse():
        raise gr.Error("Say what to do.")

    with pytest.raises(gr.Error, match="Something went wrong while testing") as caught:
        explode()
    assert "internal detail" not in str(caught.value)
    with pytest.raises(gr.Error, match="Say what to do."):
        refuse()

    @validation.user_facing("streaming")
    def stream():
        yield 1
        raise KeyError("internal detail")

    streamed = stream()
    assert next(streamed) == 1
    with pytest.raises(gr.Error, match="Something went wrong while streaming"):
        next(streamed)


def test_a_pipelines_input_check_reaches_the_artist_but_a_library_error_does_not():
    @validation.user_facing("testing")
    def pipeline_check():
        from pipelines.pipeline_utils import StudioPipeline

        StudioPipeline().start_sampling(None, ["not_offered"])  # raises a ValueError naming the setting

    @validation.user_facing("testing")
    def library_failure():
        np.zeros(3).reshape(2, 2)  # numpy's own ValueError: jargon

    with pytest.raises(gr.Error, match="not_offered") as caught:
        pipeline_check()
    assert "`" not in caught.value.message
    with pytest.raises(gr.Error, match="Something went wrong while testing") as caught:
        library_failure()
    assert "reshape" not in caught.value.message


@pytest.mark.parametrize("value", [float("nan"), 3e9, -5, 2.5, "x", None])
def test_seed_messages_say_integers_as_integers_and_name_no_exception(value):
    with pytest.raises(gr.Error) as raised:
        validation.require_number(value, "Seed", -1, 2**31 - 1, integer=True)
    message = str(raised.value)
    assert "2147483647" in message and "e+" not in message and "Error" not in message and message.strip("' ")


def test_number_text():
    assert validation.number_text(2**31 - 1) == "2147483647"
    assert validation.number_text(0.25) == "0.25" and validation.number_text(1 / 3) == "0.3333"
    assert validation.number_text(float("nan")) == "not a number"


def _png_header_only(path, width, height):
    """A PNG whose header claims width×height (no pixel data: decoding it would fail, reading the header not)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_huge_pictures_are_refused_from_their_header(tmp_path, side):
    path = _png_header_only(tmp_path / "huge.png", side, side)
    with pytest.raises(gr.Error, match=f"too big: {side}×{side} pixels .* the limit is 40 megapixels"):
        validation.require_picture_file(path)
    editor = validation.checked_image_input(gr.ImageEditor(type="numpy"))  # the check runs before gradio decodes
    from gradio.data_classes import FileData

    with pytest.raises(gr.Error, match="too big"):
        editor.convert_and_format_image(FileData(path=str(path), orig_name="huge.png"))
    validation.require_picture_file("assets/examples/rings.png")  # a normal one passes


def test_silent_audio_is_accepted_with_a_note(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(16000, np.float32), 16000)
    loaded = validation.read_audio(path, SPECS["auffusion"], max_mb=10, max_seconds=10)
    assert any("silent" in note for note in loaded.notes)


def test_unreadable_videos_get_advice_that_fits_the_file(tmp_path):
    for name in ("clip.mp4", "clip.mov"):
        path = tmp_path / name
        path.write_bytes(b"not a video at all" * 100)
        with pytest.raises(gr.Error) as raised:
            validation.require_video(path, max_mb=10)
        message = str(raised.value)
        assert "could not read" in message and "Error)" not in message
        assert ("Try an MP4 file" in message) == (name == "clip.mov")


def test_a_video_over_4k_is_refused_from_its_header(tmp_path):
    """One black 4096×2160 frame (more pixels than 3840×2160): refused with the size and the limit, by name."""
    from pipelines.media import write_video

    path = write_video(tmp_path / "wide.mp4", np.zeros((1, 2160, 4096, 3), np.uint8), 10)
    with pytest.raises(gr.Error) as raised:
        validation.require_video(path, max_mb=10)
    assert raised.value.message == ("The video 'wide.mp4' is 4096×2160 pixels per frame; the limit is 3840×2160 (4K). "
                                    "Scale it down and upload it again.")
    small = write_video(tmp_path / "small.mp4", np.zeros((1, 64, 64, 3), np.uint8), 10)
    assert validation.require_video(small, max_mb=10) == small
