"""Every number and prompt an artist can give, in every tab, tried badly: not a number, infinite, negative, huge, and
prompts empty or too long. Each gets one plain message naming the setting (a gr.Error, no exception name, whole
numbers in full), from the tab's handler and, by API, from the component before gradio's own check; and the studio
goes on serving a good request afterwards."""

from __future__ import annotations

import re

import gradio as gr
import numpy as np
import pandas as pd
import pytest

from studio.config import StudioConfig, build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from tests.factories import EXAMPLES, FakeRequest

# (value, how the message shows it)
BAD_NUMBERS = [(float("nan"), "got not a number"), (float("inf"), "got infinity"), (-1e6, "got -1000000"),
               (1e12, "got 1000000000000")]
TOO_LONG = "x" * 301


def bad_number_cases(settings: dict[str, str]) -> list:
    """pytest params (setting, value, message) for every setting {argument name: its label} and every bad number."""
    return [pytest.param(name, value, rf"^{re.escape(label)} (must be|is) .*{shown}\.$", id=f"{name}-{shown[4:]}")
            for name, label in settings.items() for value, shown in BAD_NUMBERS]


def assert_plain(error: pytest.ExceptionInfo, pattern: str) -> None:
    """The gr.Error's message matches `pattern` and names no exception, no traceback, no exponent."""
    message = error.value.message
    assert re.search(pattern, message), message
    assert "Error" not in message and "e+" not in message and "Traceback" not in message, message


def context(tmp_path, **config) -> StudioContext:
    return StudioContext(build_config(**config) if config else StudioConfig(), SessionFiles(tmp_path / "sessions"))


# Images that Sound --------------------------------------------------------------------------------------------------

ITS_NUMBERS = {"steps": "Steps", "image_scale": "Image guidance", "audio_scale": "Audio guidance",
               "warm_image": "Image model active for", "warm_audio": "Audio model active for", "seconds": "Length",
               "samples": "Samples", "seed": "Seed", "sds_iterations": "SDS iterations"}
ITS_PROMPTS = [("image_prompt", "", "Image prompt is empty"), ("image_prompt", TOO_LONG, "Image prompt is 301"),
               ("audio_prompt", " ", "Audio prompt is empty"), ("audio_prompt", TOO_LONG, "Audio prompt is 301"),
               ("negative_prompt", TOO_LONG, "Negative prompt is 301"),
               ("colour_prompt", TOO_LONG, "Colorize prompt is 301")]


def its_generate(tmp_path, **changes):
    from studio.tabs.images_that_sound import COMPOSED, SDS, ImagesThatSoundHandlers

    settings = dict(image_prompt="concentric rings", audio_prompt="a chiming bell", negative_prompt="", steps=2,
                    image_scale=3.0, audio_scale=3.0, warm_image=0.9, warm_audio=1.0, seconds=0.64, samples=1, seed=0,
                    vocoder="auto", method=SDS if "sds_iterations" in changes else COMPOSED, sds_iterations=10,
                    colour_prompt="")
    settings.update(changes)
    handlers = ImagesThatSoundHandlers(context(tmp_path, models="studio"), "studio")
    return list(handlers.generate(*settings.values(), FakeRequest()))


@pytest.mark.parametrize("name, value, message", bad_number_cases(ITS_NUMBERS))
def test_images_that_sound_numbers(tmp_path, name, value, message):
    with pytest.raises(gr.Error) as error:
        its_generate(tmp_path, **{name: value})
    assert_plain(error, message)


@pytest.mark.parametrize("name, value, message", ITS_PROMPTS)
def test_images_that_sound_prompts(tmp_path, name, value, message):
    with pytest.raises(gr.Error) as error:
        its_generate(tmp_path, **{name: value})
    assert_plain(error, message)


# Impact Sound -------------------------------------------------------------------------------------------------------

IMPACT_EDITS = {"seconds": "Length of the sound (s)", "pitch": "Pitch", "damping": "Damping",
                "brightness": "Brightness", "low_cut": "Low cut", "band_low": "Band 'from'", "band_high": "Band 'to'"}
GLASS_HIT = str(EXAMPLES / "glass-hit.mp4")


def impact(tmp_path):
    from studio.tabs.impact_sound import ImpactHandlers

    return ImpactHandlers(context(tmp_path), "auto")


def a_table():
    from pipelines.impact_sound.modal import Modes
    from studio.tabs.impact_sound import modes_table

    return modes_table(Modes(frequencies=[440.0], powers=[0.0], decays=[0.2]))


def edits(**changes) -> list:
    values = dict(seconds=0.25, pitch=0, damping=1, brightness=0, low_cut=0, band_low=0, band_high=0)
    values.update(changes)
    return list(values.values())


@pytest.mark.parametrize("name, value, message", bad_number_cases(IMPACT_EDITS))
def test_impact_sound_edit_numbers(tmp_path, name, value, message):
    with pytest.raises(gr.Error) as error:
        impact(tmp_path).render(a_table(), "", *edits(**{name: value}), FakeRequest())
    assert_plain(error, message)


@pytest.mark.parametrize("name, value, message", bad_number_cases({"sensitivity": "Hit detection sensitivity",
                                                                   "steps": "Diffusion steps", "seed": "Seed"}))
def test_impact_sound_video_numbers(tmp_path, name, value, message):
    handlers = impact(tmp_path)
    with pytest.raises(gr.Error) as error:
        if name == "sensitivity":
            handlers.find_hits(GLASS_HIT, value)
        else:
            settings = {"steps": 10, "seed": 0, name: value}
            list(handlers.score_video(GLASS_HIT, "0.5", a_table(), *edits(), "retrieved", settings["steps"],
                                      settings["seed"], request=FakeRequest()))
    assert_plain(error, message)


@pytest.mark.parametrize("cell, message", [
    (float("inf"), "Row 1: frequency \\(Hz\\) must be above 0 and below 22050; got infinity\\.$"),
    (-1e6, "Row 1: frequency \\(Hz\\) must be above 0 and below 22050; got -1000000\\.$"),
    (1e12, "Row 1: frequency \\(Hz\\) must be above 0 and below 22050; got 1000000000000\\.$"),
    ("nan", "Row 1: frequency \\(Hz\\) must be above 0 and below 22050; got not a number\\.$"),
])
def test_impact_sound_mode_table_numbers(tmp_path, cell, message):
    from studio.tabs.impact_sound import COLUMNS

    with pytest.raises(gr.Error) as error:
        impact(tmp_path).render(pd.DataFrame([[cell, 0, 0.1]], columns=COLUMNS), "", *edits(), FakeRequest())
    assert_plain(error, message)


@pytest.mark.parametrize("text, message", [
    ("nan", "'nan' in the hit times is not a time"), ("0.5, inf", "'inf' in the hit times is not a time"),
    ("-1", "The time -1 in the hit times is outside the video"),
    ("1000000000000", "The time 1000000000000 in the hit times is outside the video"),
    ("0.1 " * 241, "There are 241 hit times; the limit is 240"),
])
def test_impact_sound_hit_times(tmp_path, text, message):
    with pytest.raises(gr.Error) as error:
        list(impact(tmp_path).score_video(GLASS_HIT, text, a_table(), *edits(), request=FakeRequest()))
    assert_plain(error, message)


# Sounding Video -----------------------------------------------------------------------------------------------------

SV_NUMBERS = {"steps": "Steps", "guidance": "Guidance λ", "resample": "Resampling rounds", "seed": "Seed",
              "samples": "Samples"}


@pytest.mark.parametrize("name, value, message", bad_number_cases(SV_NUMBERS))
def test_sounding_video_numbers(tmp_path, name, value, message):
    from studio.tabs.sounding_video import AUDIO_TO_VIDEO, STUDIO_WEIGHTS, SoundingVideoHandlers

    settings = dict(steps=2, guidance=0, resample=1, seed=0, samples=1)
    settings[name] = value
    handlers = SoundingVideoHandlers(context(tmp_path, models="studio"), "studio")
    with pytest.raises(gr.Error) as error:  # guidance is read for audio -> video (joint: unused)
        list(handlers.generate(STUDIO_WEIGHTS, AUDIO_TO_VIDEO, str(EXAMPLES / "lamp-high.wav"), None, "DDPM",
                               settings["steps"], settings["guidance"], None, settings["resample"], settings["seed"],
                               settings["samples"], False, FakeRequest()))
    assert_plain(error, message)


MM_LDM_NUMBERS = {"latent_steps": "DiT steps (DDIM)", "decoder_steps": "Decoder steps (DDIM)",
                  "cross_guidance": "Cross-modal guidance φ", "reconstruction": "Reconstruction guidance λ",
                  "latent_resample": "Resampling rounds", "seed": "Seed", "samples": "Samples"}


@pytest.mark.parametrize("name, value, message", bad_number_cases(MM_LDM_NUMBERS))
def test_sounding_video_mm_ldm_numbers(tmp_path, name, value, message):
    from studio.tabs.sounding_video import AUDIO_TO_VIDEO, SoundingVideoHandlers

    settings = dict(latent_steps=2, decoder_steps=2, cross_guidance=3.0, reconstruction=100.0, latent_resample=2,
                    seed=0, samples=1)
    settings[name] = value
    handlers = SoundingVideoHandlers(context(tmp_path, models="studio"), "studio")
    with pytest.raises(gr.Error) as error:  # φ and λ are read for audio -> video; MM-Diffusion's are not read
        list(handlers.generate("mm_ldm_toyworld", AUDIO_TO_VIDEO, str(EXAMPLES / "lamp-high.wav"), None, None, None,
                               None, None, None, settings["seed"], settings["samples"], False, FakeRequest(),
                               settings["latent_steps"], settings["decoder_steps"], settings["cross_guidance"],
                               settings["reconstruction"], latent_resample=settings["latent_resample"]))
    assert_plain(error, message)


# Spectrogram Lab ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, message", bad_number_cases({"duration": "Duration",
                                                                   "iterations": "Griffin-Lim iterations"}))
def test_spectrogram_lab_picture_numbers(tmp_path, name, value, message):
    from studio.tabs.spectrogram_lab import GRIFFIN_LIM, LabHandlers
    from tests.factories import editor_value

    settings = {"duration": 1.0, "iterations": 4, name: value}
    picture = editor_value(tmp_path, np.full((64, 64, 3), 200, np.uint8))
    with pytest.raises(gr.Error) as error:
        LabHandlers(context(tmp_path), "auto").play_picture(picture, settings["duration"], settings["iterations"],
                                                             False, GRIFFIN_LIM, FakeRequest())
    assert_plain(error, message)


@pytest.mark.parametrize("name, value, message", bad_number_cases({"iterations": "Griffin-Lim iterations"}))
def test_spectrogram_lab_sound_numbers(tmp_path, name, value, message):
    from studio.tabs.spectrogram_lab import LabHandlers

    with pytest.raises(gr.Error) as error:
        LabHandlers(context(tmp_path), "auto").draw_sound(str(EXAMPLES / "chirp.wav"), value, FakeRequest())
    assert_plain(error, message)


# Visual Echoes (a tiny random model: the tab shows once studio weights are bundled) -------------------------------

VE_NUMBERS = {"steps": "Iterations N", "temperature": "Temperature T", "guidance": "Guidance s",
              "samples": "Samples", "seed": "Seed", "start": "Inpaint from", "end": "Inpaint to"}


@pytest.fixture(scope="module")
def tiny_visual_echoes_pipe():
    from tests.factories import tiny_visual_echoes

    return tiny_visual_echoes()


@pytest.mark.parametrize("name, value, message", bad_number_cases(VE_NUMBERS))
def test_visual_echoes_numbers(tmp_path, monkeypatch, tiny_visual_echoes_pipe, name, value, message):
    import soundfile

    from studio.tabs import visual_echoes
    from studio.tabs.visual_echoes import INPAINT, SPEC, VisualEchoesHandlers
    from tests.factories import editor_value, toy_picture

    monkeypatch.setattr(visual_echoes, "get_pipeline", lambda *_: tiny_visual_echoes_pipe)
    sound = tmp_path / "tone.wav"
    soundfile.write(sound, 0.3 * np.sin(np.arange(SPEC.sample_rate // 2) * 0.2), SPEC.sample_rate)
    settings = dict(start=0.0, end=0.1, steps=2, temperature=9, guidance=3, samples=1, seed=0)
    settings[name] = value
    picture = editor_value(tmp_path, (toy_picture(0) * 255).astype(np.uint8))
    with pytest.raises(gr.Error) as error:
        list(VisualEchoesHandlers(context(tmp_path), "auto").generate(INPAINT, picture, str(sound),
                                                                      *settings.values(), FakeRequest()))
    assert_plain(error, message)


# Train --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, message", bad_number_cases({"steps": "Steps", "batch": "Batch size",
                                                                   "lora_rank": "LoRA rank"}) + [
    pytest.param("name", "", "^Give the result a name", id="name-empty"),
    pytest.param("name", TOO_LONG, "is too long or has unusual characters", id="name-too-long"),
])
def test_train_numbers_and_name(tmp_path, name, value, message):
    from studio.tabs.train import SCRATCH, TOY_WORLD, TrainHandlers

    settings = dict(name="bad input", steps=2, batch=2, lora_rank=0)
    settings[name] = value
    handlers = TrainHandlers(StudioContext(StudioConfig(device="cpu"), SessionFiles(tmp_path)))  # checks come first
    with pytest.raises(gr.Error) as error:
        next(handlers.start("images_that_sound", SCRATCH, TOY_WORLD, None, "", settings["name"], settings["steps"],
                            settings["batch"], "tiny", settings["lora_rank"], FakeRequest("bad-numbers")))
    assert_plain(error, message)


# Every slider and bounded number box of the built studio, as gradio preprocesses what an API caller sends ---------


def test_every_slider_and_number_box_checks_its_value_before_gradio(tmp_path):
    from studio.app import build_studio

    demo = build_studio(context(tmp_path, models="studio"))
    checked = [block for block in demo.blocks.values()
               if isinstance(block, gr.Slider) or (isinstance(block, gr.Number) and block.minimum is not None)]
    assert len(checked) >= 20  # every tab but Visual Echoes (no studio weights yet) has several
    for block in checked:
        for value, shown in BAD_NUMBERS + [(None, "enter a number")]:
            if value is None and isinstance(block, gr.Number):
                assert block.preprocess(None) is None  # a cleared box: its handler says what is missing
                continue
            with pytest.raises(gr.Error) as error:
                block.preprocess(value)
            assert_plain(error, rf"^{re.escape(block.label)} (must be|is) .*{shown}")
        assert block.preprocess(block.value) == block.value


def test_by_api_bad_settings_get_plain_messages_and_the_studio_keeps_serving(tmp_path):
    """The real studio on a free localhost port, called as a script would (JSON carries no NaN or infinity: those are
    pinned above): each bad value gets its message, and a good request afterwards is served."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from studio.app import build_studio

    files = SessionFiles(tmp_path / "sessions")
    demo = build_studio(StudioContext(build_config(models="studio"), files)).queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", allowed_paths=[str(files.root)],
                            quiet=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        chirp = handle_file(str(EXAMPLES / "chirp.wav"))
        for value, message in [(-1e6, "got -1000000."), (1e12, "got 1000000000000."), (None, "is empty"),
                               ("many", "'many' is not a number")]:
            with pytest.raises(AppError, match="Griffin-Lim iterations") as error:
                client.predict(chirp, value, api_name="/sound_to_picture")
            assert message in str(error.value), error.value
        with pytest.raises(AppError, match=re.escape("Steps (DDIM) must be between 1 and 200; got 1000000000000.")):
            client.predict("rows of dots", "someone knocking", "", 1e12, 10, 10, 0.9, 1, 0.64, 1, -1, "auto",
                           "Composed (the paper's method)", 10, "", None, "studio", api_name="/images_that_sound")
        with pytest.raises(AppError, match=re.escape("Decoder steps (DDIM) must be between 1 and 1000; got "
                                                     "1000000000000.")):
            client.predict("mm_ldm_toyworld", "Video and sound together", None, None, "DDPM", 2, 0,
                           "Paper (Eq. 12: √(1 − ᾱ))", 1, 0, 1, False, 2, 1e12, 3.0, api_name="/sounding_video")
        _, _, _, note, downloads = client.predict(chirp, 8, api_name="/sound_to_picture")
        assert note.startswith("1.50 s at 16000 Hz") and len(downloads) == 3
        *_, note = client.predict("mm_ldm_toyworld", "Video and sound together", None, None, "DDPM", 2, 0,
                                  "Paper (Eq. 12: √(1 − ᾱ))", 1, 0, 1, False, 2, 2, 3.0, api_name="/sounding_video")
        assert "8 frames of 32×32" in note  # MM-LDM's settings reach it by API, after the request in its signature
    finally:
        demo.close()
