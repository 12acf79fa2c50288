"""The Images that Sound tab appears when its weights can load, streams previews, and writes every sample as files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.registry import REGISTRY, available
from studio.app import working_tabs
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import images_that_sound
from studio.tabs.images_that_sound import ImagesThatSoundHandlers, colorization_paths
from tests.factories import TINY, FakeRequest, cached_repo, tiny_model_folder, write_auffusion_vocoder


@pytest.fixture
def paper_weights_cached(hub_cache):
    """Tiny random stand-ins for Stable Diffusion v1.5 and Auffusion, in the local cache under their paper ids."""
    tiny_model_folder(cached_repo(hub_cache, PAPER_IMAGE_MODEL), seed=0)
    audio = cached_repo(hub_cache, PAPER_AUDIO_MODEL)
    tiny_model_folder(audio, seed=1)
    write_auffusion_vocoder(audio, TINY)


def context(tmp_path, models="auto"):
    return StudioContext(build_config(models=models), SessionFiles(tmp_path / "files"))


def test_without_paper_weights_the_tab_runs_on_the_bundled_studio_weights(tmp_path, hub_cache):
    assert available("images_that_sound") and REGISTRY.resolve("images_that_sound")[0] == "studio"
    assert images_that_sound in working_tabs(context(tmp_path))
    assert not available("images_that_sound", "paper")
    assert images_that_sound not in working_tabs(context(tmp_path, models="paper"))


def test_tab_streams_previews_and_writes_samples(tmp_path, paper_weights_cached):
    assert available("images_that_sound") and REGISTRY.resolve("images_that_sound")[0] == "paper"  # paper wins
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    updates = list(handlers.generate("a castle", "bell ringing", "", 10, 7.5, 7.5, 0.9, 1.0, 0.64, 2, 7, "hifigan",
                                     images_that_sound.COMPOSED, 10, "", FakeRequest()))
    previews, final = updates[:-1], updates[-1]
    assert len(previews) == 2 and all(preview[0].endswith(".png") for preview in previews)  # files of the session
    assert np.asarray(Image.open(previews[-1][0])).shape[:2] == (256, 64)
    assert not Path(previews[0][0]).exists()  # only the last preview shown outlives the job
    _, gallery, wav, mp4, note, downloads, coloured = final
    assert coloured is None
    assert [caption for _, caption in gallery] == ["seed 7", "seed 8"]
    assert Image.open(gallery[0][0]).size == (62, 256)
    assert soundfile.info(wav).samplerate == 16000 and soundfile.info(wav).frames == 62 * 160
    assert mp4.endswith(".mp4") and "Seeds 7…8" in note and len(downloads) == 5
    assert "HiFi-GAN made the sound" in note
    from tests.studio.test_no_clipping import clipped_samples

    found = clipped_samples(tmp_path / "files")
    assert len(found) == 3 and not any(found.values()), found  # the two wavs and the mp4's sound: nothing clips
    assert "paper" in [r.variant for r in REGISTRY.reports() if r.name == "images_that_sound"]  # (an earlier test's
    # studio pipeline may still be loaded beside it)


def test_tab_runs_the_imprint_baseline(tmp_path, paper_weights_cached):
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, final, coloured = handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 1, 3,
                                            "griffinlim", images_that_sound.IMPRINT, 10, "a colorful castle",
                                            FakeRequest())
    assert Image.open(final[1][0][0]).size == (62, 256) and "Seeds 3…3" in final[4]
    colour = np.asarray(Image.open(coloured[-1]).convert("RGB"), dtype=np.float32)
    assert colour.shape == (256, 62, 3) and colour.std(axis=-1).max() > 0


def test_tab_shows_the_pipelines_own_rule_for_settings_with_no_model_at_the_start(tmp_path, paper_weights_cached):
    import gradio as gr

    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    with pytest.raises(gr.Error, match="At least one of 'warm_start_image' and 'warm_start_audio' must be 1.0"):
        list(handlers.generate("a", "b", "", 4, 7.5, 7.5, 0.5, 0.5, 0.64, 1, 3, "hifigan", images_that_sound.COMPOSED,
                               10, "", FakeRequest()))
    with pytest.raises(gr.Error, match="Image prompt is empty"):
        list(handlers.generate(" ", "b", "", 4, 7.5, 7.5, 1, 1, 0.64, 1, 3, "hifigan", images_that_sound.COMPOSED,
                               10, "", FakeRequest()))


def test_tab_runs_the_sds_baseline_with_previews(tmp_path, paper_weights_cached):
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    updates = list(handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 3, 1, "griffinlim",
                                     images_that_sound.SDS, 20, "", FakeRequest()))
    assert len(updates) == 21  # a preview every iteration // 20, then the result (SDS makes one sample)
    assert len(updates[-1][1]) == 1


def test_tab_ranks_samples_by_clip_and_clap_when_the_scorers_are_cached(tmp_path, paper_weights_cached, hub_cache):
    from pipelines.images_that_sound import CLAP_MODEL, CLIP_MODEL
    from tests.factories import tiny_clap, tiny_clip

    tiny_clip(cached_repo(hub_cache, CLIP_MODEL))
    tiny_clap(cached_repo(hub_cache, CLAP_MODEL))
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, final = handlers.generate("a castle", "bell ringing", "", 4, 7.5, 7.5, 0.9, 1.0, 0.64, 3, 5, "griffinlim",
                                  images_that_sound.COMPOSED, 10, "", FakeRequest())
    captions = [caption for _, caption in final[1]]
    assert all("CLIP" in caption and "CLAP" in caption for caption in captions)
    assert sorted(int(caption.split(" ")[1]) for caption in captions) == [5, 6, 7]
    assert "Ranked best first by CLIP and CLAP" in final[4]


def test_colorization_says_which_path_it_uses_and_why(tmp_path, hub_cache, monkeypatch):
    from tests.factories import place_in_cache, tiny_if_folders

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    paths, reason = colorization_paths("auto")  # studio weights only: neither colorizer can run
    assert paths == [] and reason.startswith("Colorization is unavailable.")
    assert "need a Hugging Face token" in reason and "only draw in grayscale" in reason

    tiny_model_folder(cached_repo(hub_cache, PAPER_IMAGE_MODEL), seed=0)
    tiny_model_folder(cached_repo(hub_cache, PAPER_AUDIO_MODEL), seed=1)
    write_auffusion_vocoder(hub_cache / f"models--{PAPER_AUDIO_MODEL.replace('/', '--')}" / "snapshots" /
                            "89abcdef0123456789abcdef0123456789abcdef", TINY)
    paths, reason = colorization_paths("auto")
    assert paths == [images_that_sound.SD_COLORIZER]
    assert reason.startswith("Colorization uses **Stable Diffusion 1.5 (ungated)**. DeepFloyd IF (paper) is off: "
                             "paper weights need a Hugging Face token")

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    paths, reason = colorization_paths("auto")
    assert paths == [images_that_sound.SD_COLORIZER] and "not in the local cache and the studio is offline" in reason

    tiny_if_folders(tmp_path / "if_1", tmp_path / "if_2")
    place_in_cache(hub_cache, (tmp_path / "if_1", tmp_path / "if_2"))
    paths, reason = colorization_paths("auto")
    assert paths == [images_that_sound.IF_COLORIZER, images_that_sound.SD_COLORIZER]
    assert reason.startswith("Colorization uses **DeepFloyd IF (paper)**: a Hugging Face token is set")


def test_tab_colorizes_on_deepfloyd_if_when_its_gate_is_open(tmp_path, paper_weights_cached, hub_cache, monkeypatch):
    from tests.factories import place_in_cache, tiny_if_folders

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    tiny_if_folders(tmp_path / "if_1", tmp_path / "if_2")
    place_in_cache(hub_cache, (tmp_path / "if_1", tmp_path / "if_2"))
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, coloured = handlers.generate("a castle", "bell ringing", "", 3, 7.5, 7.5, 0.9, 1.0, 0.64, 1, 3, "griffinlim",
                                     images_that_sound.COMPOSED, 10, "a colorful photo of a castle", FakeRequest())
    colour = np.asarray(Image.open(coloured[-1]).convert("RGB"), dtype=np.float32)
    assert colour.shape == (256, 62, 3) and colour.std(axis=-1).max() > 0
    assert {r.name for r in REGISTRY.reports()} >= {"images_that_sound", "colorizer_if"}


def test_a_colorizer_that_cannot_run_is_refused_with_the_reason(tmp_path, paper_weights_cached, monkeypatch):
    import gradio as gr

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    with pytest.raises(gr.Error, match="DeepFloyd IF \\(paper\\) cannot colorize now.*Hugging Face token"):
        list(handlers.generate("a", "b", "", 2, 7.5, 7.5, 0.9, 1.0, 0.64, 1, 3, "griffinlim",
                               images_that_sound.COMPOSED, 10, "a colorful castle", FakeRequest(),
                               images_that_sound.IF_COLORIZER))


def test_paper_examples_are_made_on_first_click_then_served_from_the_store(tmp_path, paper_weights_cached,
                                                                            monkeypatch):
    import tempfile

    import gradio as gr

    monkeypatch.delenv("GRADIO_EXAMPLES_CACHE", raising=False)
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto", steps_default=3, seconds_default=0.64)
    made, generate = [], handlers.generate

    def counting_generate(*args, **kwargs):
        made.append(args[:2])
        yield from generate(*args, **kwargs)

    monkeypatch.setattr(handlers, "generate", counting_generate)
    with gr.Blocks():
        prompts = [gr.Textbox(), gr.Textbox()]
        outputs = images_that_sound.output_components()
        examples = images_that_sound.paper_examples(handlers, prompts, outputs, gpu_seconds=0)
        for component in outputs:
            component.render()
    assert made == [] and str(examples.cached_folder).startswith(tempfile.gettempdir())  # lazy; not in the repo
    first = examples.load_from_cache(1, FakeRequest())
    second = examples.load_from_cache(1, FakeRequest())
    assert made == [tuple(images_that_sound.PAPER_PROMPTS[1])]  # generated once, then served
    assert first == second and "Seeds 0…0" in first[3]
    assert Image.open(first[0].root[0].image.path).size == (62, 256)  # the gallery, read back from the store


def test_on_the_studio_weights_the_tab_opens_with_prompts_and_examples_they_can_draw(tmp_path):
    import gradio as gr

    from pipelines.toyworld.captioned import caption_vocabulary

    with gr.Blocks() as demo:
        images_that_sound.build(context(tmp_path, models="studio"))
    values = {block.label: block.value for block in demo.blocks.values() if hasattr(block, "value")}
    words = set(caption_vocabulary())
    prompts = [values["Image prompt"], values["Audio prompt"]] + [t for pair in images_that_sound.STUDIO_PROMPTS
                                                                  for t in pair]
    assert all(set(prompt.split()) <= words for prompt in prompts), prompts
    assert values["Vocoder"] == "auto"
    examples = [block for block in demo.blocks.values() if isinstance(block, gr.Dataset)]
    assert examples and examples[0].samples[0][:2] == images_that_sound.STUDIO_PROMPTS[0]


@pytest.mark.parametrize("changes, message", [
    (dict(image_prompt="   "), "Image prompt is empty"),
    (dict(audio_prompt="x" * 301), "Audio prompt is 301 characters long; keep it under 300"),
    (dict(seed=float("nan")), "Seed must be a finite number between -1 and 2147483647; got not a number"),
    (dict(seed=3e9), "Seed must be between -1 and 2147483647; got 3000000000"),
    (dict(steps=0), "Steps must be between 1 and 200; got 0"),
    (dict(samples=2.5), "Samples must be a whole number between 1 and 8; got 2.5"),
    (dict(image_scale="loud"), "Image guidance must be a number between 0 and 30; 'loud' is not a number"),
    (dict(seconds=-1), "Length must be between"),
])
def test_bad_prompts_and_numbers_get_plain_messages_before_any_model_loads(tmp_path, changes, message):
    import gradio as gr

    settings = dict(image_prompt="concentric rings", audio_prompt="a chiming bell", steps=4, image_scale=3.0,
                    seconds=0.64, samples=1, seed=0)
    settings.update(changes)
    handlers = ImagesThatSoundHandlers(context(tmp_path, models="studio"), "studio")
    with pytest.raises(gr.Error, match=message):
        list(handlers.generate(settings["image_prompt"], settings["audio_prompt"], "", settings["steps"],
                               settings["image_scale"], 3.0, 0.9, 1.0, settings["seconds"], settings["samples"],
                               settings["seed"], "auto", images_that_sound.COMPOSED, 10, "", FakeRequest()))


def test_the_vocoder_default_fits_the_loaded_weights(tmp_path, paper_weights_cached):
    """The control starts at Auto, which is HiFi-GAN where the weights have one (the paper's Auffusion) and Griffin-Lim
    where they do not (the studio weights: tests/studio/test_studio_weights.py)."""
    import gradio as gr

    with gr.Blocks() as demo:
        images_that_sound.build(context(tmp_path))
    assert next(block.value for block in demo.blocks.values() if getattr(block, "label", None) == "Vocoder") == "auto"
    handlers = ImagesThatSoundHandlers(context(tmp_path), "auto")
    *_, final = handlers.generate("a castle", "bell ringing", "", 2, 7.5, 7.5, 0.9, 1.0, 0.64, 1, 0, "auto",
                                  images_that_sound.COMPOSED, 10, "", FakeRequest())
    assert final[4].endswith("HiFi-GAN made the sound.")
