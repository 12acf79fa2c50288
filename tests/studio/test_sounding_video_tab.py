"""The Sounding Video tab: shown with a configured MM-Diffusion checkpoint or the bundled studio weights; joint,
audio→video and video→audio through the handlers with a tiny model, previews streamed and Stop ending the sampling;
mp4 with sound, 16 kHz wav, the pipeline's own errors as plain messages; space.yaml `checkpoints`. MM-LDM's studio model
as the second choice of weights: its own settings and defaults, joint, audio→video and video→audio."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile
import torch

from pipelines.audio import SPECS, load_audio
from pipelines.media import write_video
from pipelines.mm_diffusion import MMDiffusionSuperResModel, MMDiffusionUNet
from pipelines.mm_diffusion.clips import fit_audio
from pipelines.registry import REGISTRY, available, get_pipeline, register_local_checkpoints
from studio.app import working_tabs
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import sounding_video
from studio.tabs.sounding_video import AUDIO_TO_VIDEO, JOINT, VIDEO_TO_AUDIO, SoundingVideoHandlers
from tests.factories import ROOT, FakeRequest

DATA = ROOT / "tests" / "data" / "mm_diffusion"
TINY_SR_FLAGS = dict(large_size=64, small_size=16, sr_num_channels=32, sr_num_res_blocks=1,
                     sr_attention_resolutions="8")
LANDSCAPE = "mm_diffusion_landscape"
PAPER_FORM = "Paper (Eq. 12: √(1 − ᾱ))"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    register_local_checkpoints({})
    REGISTRY.forget(LANDSCAPE)
    REGISTRY.forget(f"{LANDSCAPE}_sr")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny base checkpoint (golden-config U-Net, 8 frames 16×16, 2048 samples) and a tiny 16→64 SR checkpoint,
    each with a `<name>.json` holding its flags."""
    folder = tmp_path_factory.mktemp("checkpoints")
    flags = {**json.loads((DATA / "mm_diffusion_tiny_golden_config.json").read_text())["official_flags_equivalent"],
             "num_heads": 1}
    torch.manual_seed(0)
    for name, model, model_flags in (("Landscape", MMDiffusionUNet.from_official_flags(**flags), flags),
                                     ("Landscape_SR", MMDiffusionSuperResModel.from_official_flags(**TINY_SR_FLAGS),
                                      TINY_SR_FLAGS)):
        torch.save(model.state_dict(), folder / f"{name}.pt")
        (folder / f"{name}.json").write_text(json.dumps({"flags": model_flags}))
    return folder


def context(tmp_path, checkpoints_yaml: str = "", models: str = "auto") -> StudioContext:
    space = tmp_path / "space.yaml"
    space.write_text((ROOT / "space.yaml").read_text().split("checkpoints:")[0] + checkpoints_yaml + "\ntabs: {}\n")
    return StudioContext(build_config(models=models, space_file=space), SessionFiles(tmp_path / "files"))


@pytest.fixture
def handlers(tmp_path, checkpoints) -> SoundingVideoHandlers:
    ctx = context(tmp_path, f"checkpoints: {{mm_diffusion: {{landscape: {checkpoints / 'Landscape.pt'}, "
                            f"landscape_sr: {checkpoints / 'Landscape_SR.pt'}}}}}")
    assert sounding_video in working_tabs(ctx)  # registers the configured files
    return SoundingVideoHandlers(ctx, "auto")


def run(handlers, mode=JOINT, audio=None, video=None, sampler="DDIM", steps=2, guidance=0, samples=1, seed=3,
        super_res=False, resample=1) -> list:
    return list(handlers.generate(LANDSCAPE, mode, audio, video, sampler, steps, guidance, PAPER_FORM, resample, seed,
                                  samples, super_res, FakeRequest()))


def streams(path: str) -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    result = subprocess.run([get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    return result.stderr


def test_tab_shows_with_a_configured_checkpoint_file_or_the_bundled_studio_weights(tmp_path, checkpoints):
    assert sounding_video in working_tabs(context(tmp_path))  # the studio (toy world) weights
    assert not available(LANDSCAPE)
    assert sounding_video not in working_tabs(context(tmp_path, models="paper"))
    assert sounding_video not in working_tabs(context(tmp_path, "checkpoints: {mm_diffusion: {aist: nowhere.pt}}",
                                                      models="paper"))
    configured = f"checkpoints: {{mm_diffusion: {{landscape: {checkpoints / 'Landscape.pt'}}}}}"
    assert sounding_video in working_tabs(context(tmp_path, configured, models="paper"))
    assert available(LANDSCAPE) and not available(LANDSCAPE, "studio")


def test_joint_generation_streams_frames_and_writes_mp4_with_sound(handlers):
    updates = run(handlers, samples=2, seed=5, steps=2 * sounding_video.PREVIEW_EVERY)
    previews, (_, mp4, wav, files, note) = updates[:-1], updates[-1]
    assert len(previews) == 2 and all(preview[0].endswith(".png") for preview in previews)
    from PIL import Image  # previews are png files; only the last one shown outlives the job

    assert np.asarray(Image.open(previews[-1][0])).shape[:2] == (64, 512)
    assert not Path(previews[0][0]).exists()
    info = streams(mp4)
    assert "Video: h264" in info and "Audio: aac" in info and "16000 Hz" in info, info
    assert soundfile.info(wav).samplerate == 16000 and soundfile.info(wav).frames == 2048
    assert np.abs(soundfile.read(wav)[0]).max() < 1.0  # nothing clips
    assert len(files) == 4 and "Seeds 5…6" in note and "8 frames of 16×16 at 10 fps" in note


def test_the_format_note_comes_from_the_loaded_model(handlers):
    note = handlers.describe_weights(LANDSCAPE)
    assert "**Clip format:** 8 frames of 16×16 at 10 fps (0.8 s) with 0.128 s of sound at 16000 Hz" in note
    assert "shrunk from the paper's 16 frames of 64×64" in note and "toy world" not in note


def test_stop_ends_the_sampling_at_its_next_preview(handlers, monkeypatch):
    """What Gradio does on Stop: close the handler. The pipeline's next preview then raises, ending the sampling."""
    previews, ended = [], threading.Event()
    sample = sounding_video.sample

    def counted_sample(pipe, upsampler, arguments, generators, preview):
        try:
            return sample(pipe, upsampler, arguments, generators, lambda frames: previews.append(preview(frames)))
        finally:
            ended.set()

    monkeypatch.setattr(sounding_video, "sample", counted_sample)
    updates = handlers.generate(LANDSCAPE, JOINT, None, None, "DDPM", 1000, 0, PAPER_FORM, 1, 3, 1, False,
                                FakeRequest())
    next(updates)
    updates.close()
    assert ended.wait(timeout=120)  # only a guard against hanging the suite
    assert len(previews) < 500  # a whole run shows 1000 / PREVIEW_EVERY previews


def test_audio_to_video_keeps_the_given_sound_and_says_what_was_converted(handlers, tmp_path, tone):
    stereo = np.stack([tone(440, 0.5, 44100), tone(660, 0.5, 44100)], axis=1)
    source = tmp_path / "sound.wav"
    soundfile.write(source, stereo, 44100, subtype="PCM_16")
    *_, (_, mp4, wav, _, note) = run(handlers, AUDIO_TO_VIDEO, audio=str(source), guidance=1.0)
    assert "Mixed 2 channels" in note and "Resampled from 44100 Hz to 16000 Hz" in note
    expected = fit_audio(load_audio(source, SPECS["mm_diffusion"], max_seconds=0.128).samples,
                         get_pipeline(LANDSCAPE).clip_format).value  # the handler's conversion, repeated here
    returned, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000 and np.abs(returned - np.clip(expected, -1, 1)).max() <= 1 / 32767
    assert "Video: h264" in streams(mp4)


def test_resampling_rounds_reach_every_mode_and_the_clean_condition_the_zero_shot_ones(handlers):
    settings = dict(sampler="DDPM", steps=10, guidance=0, form=PAPER_FORM, resample=3, clean=True, samples=1)
    for mode in (AUDIO_TO_VIDEO, VIDEO_TO_AUDIO):
        arguments = handlers._settings(mode, **settings)
        assert arguments["resample_rounds"] == 3 and arguments["clean_condition"] is True
    arguments = handlers._settings(JOINT, **settings)
    assert arguments["resample_rounds"] == 3 and arguments["clean_condition"] is False  # nothing given


def test_video_to_audio_converts_the_upload_and_super_resolution_only_upsamples_generated_video(handlers, tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (30, 48, 80, 3), dtype=np.uint8)
    source = write_video(tmp_path / "clip.mp4", frames, 30, audio=np.zeros(16000, np.float32), sample_rate=16000)
    *_, (_, mp4, wav, _, note) = run(handlers, VIDEO_TO_AUDIO, video=str(source), sampler="DPM-Solver", steps=3)
    assert "10 frames per second from the video's 30" in note and "80×48 frames were centre-cropped" in note
    assert "Audio: aac" in streams(mp4) and soundfile.info(wav).frames == 2048
    *previews, (_, mp4, _, _, note) = run(handlers, super_res=True, steps=2)
    assert "8 frames of 64×64" in note and re.search(r"64x64", streams(mp4))
    from PIL import Image

    assert np.asarray(Image.open(previews[-1][0])).shape == (64, 512, 3)  # the up-sampler's previews stream too (8 frames of 64×64)
    *_, (_, _, _, _, note) = run(handlers, VIDEO_TO_AUDIO, video=str(source), super_res=True)
    assert "Super-resolution up-samples generated frames only" in note


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode=AUDIO_TO_VIDEO), "needs a sound"),
    (dict(mode=VIDEO_TO_AUDIO), "needs a video"),
    (dict(mode=AUDIO_TO_VIDEO, audio="tone", sampler="DPM-Solver", guidance=3), "needs sampler='ddpm' or 'ddim'"),
    (dict(mode=AUDIO_TO_VIDEO, audio="tone", sampler="DPM-Solver", resample=4), "Resampling .* needs sampler='ddpm'"),
    (dict(mode=AUDIO_TO_VIDEO, audio="tone", resample=11), "Resampling rounds must be between 1 and 10; got 11"),
    (dict(steps=0), "Steps must be between"),
    (dict(samples=float("nan")), "Samples must be a finite number between 1 and 4; got not a number"),
    (dict(seed=float("nan")), "Seed must be a finite number between -1 and 2147483647; got not a number"),
    (dict(seed=3e9), "Seed must be between -1 and 2147483647; got 3000000000"),
    (dict(guidance=float("inf"), mode=AUDIO_TO_VIDEO, audio="tone"),
     "Guidance λ must be a finite number between 0 and 1000000000; got infinity"),
    (dict(mode=VIDEO_TO_AUDIO, video="corrupt"), "could not read 'clip.mp4' as a video"),
    (dict(mode=VIDEO_TO_AUDIO, video="notes.txt"), "not a video file"),
    (dict(mode=AUDIO_TO_VIDEO, audio="corrupt-audio"), "could not read 'sound.wav' as audio"),
])
def test_bad_uploads_and_settings_get_plain_errors(handlers, tmp_path, tone, kwargs, message):
    if kwargs.get("audio") == "tone":
        soundfile.write(tmp_path / "tone.wav", tone(440, 0.2, 16000), 16000)
        kwargs["audio"] = str(tmp_path / "tone.wav")
    if kwargs.get("video") == "corrupt":
        (tmp_path / "clip.mp4").write_text("not a video at all")
        kwargs["video"] = str(tmp_path / "clip.mp4")
    if kwargs.get("video") == "notes.txt":
        (tmp_path / "notes.txt").write_text("hello")
        kwargs["video"] = str(tmp_path / "notes.txt")
    if kwargs.get("audio") == "corrupt-audio":
        (tmp_path / "sound.wav").write_bytes(b"RIFF0000WAVEjunk" * 10)
        kwargs["audio"] = str(tmp_path / "sound.wav")
    with pytest.raises(gr.Error, match=message):
        run(handlers, **kwargs)


def test_space_file_checkpoint_paths_are_carried_relative_to_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("checkpoints: {mm_diffusion: {landscape: weights/Landscape.pt, aist: null}}")
    config = build_config(space_file=path)
    assert config.checkpoints == {"mm_diffusion": {"landscape": str(tmp_path / "weights" / "Landscape.pt")}}
    assert build_config().checkpoints == {}


@pytest.mark.parametrize("learnt", [False, True])
def test_the_studio_model_starts_at_steps_an_artist_can_wait_for(monkeypatch, learnt):
    """DDPM's 1000-step chain took 261 s on the studio model; its default is 100 steps, of which joint samples
    resample the noisiest 60 % 3 times (220 model calls), and audio -> video 3 times from a learnt clean condition,
    else 4. Studio weights that learnt a clean condition
    take what the artist gives clean in both directions; otherwise video -> audio starts from replacement. Weights
    trained in the Train tab are not assumed to have learnt it."""
    from studio.tabs import sounding_video as tab
    from studio.tabs.sounding_video import (
        JOINT,
        STUDIO_WEIGHTS,
        default_sampler,
        default_steps,
        sampler_steps,
        steering_controls,
    )

    monkeypatch.setattr(tab, "studio_learnt_clean_condition", lambda: learnt)
    assert default_sampler(STUDIO_WEIGHTS) == "DDPM" and default_steps(STUDIO_WEIGHTS) == 100
    replacement, resampled = (0.0, PAPER_FORM, 1, False), (0.0, PAPER_FORM, 4, False)
    clean, clean_resampled = (0.0, PAPER_FORM, 1, True), (0.0, PAPER_FORM, 3, True)
    assert steering_controls(STUDIO_WEIGHTS, AUDIO_TO_VIDEO) == (clean_resampled if learnt else resampled)
    assert steering_controls(STUDIO_WEIGHTS, VIDEO_TO_AUDIO) == (clean if learnt else replacement)
    assert steering_controls(STUDIO_WEIGHTS, JOINT) == (0.0, PAPER_FORM, 3, False)  # the rounds as a corrector
    assert steering_controls("session-run-1", AUDIO_TO_VIDEO) == resampled  # a small model trained in the tab
    assert steering_controls(LANDSCAPE, AUDIO_TO_VIDEO) == replacement  # the released checkpoints: the paper's
    assert steering_controls(LANDSCAPE, JOINT) == replacement
    assert sampler_steps("DDPM", STUDIO_WEIGHTS) == 100 and sampler_steps("DDPM", LANDSCAPE) == 1000
    assert default_steps(LANDSCAPE) == 20


def test_the_studio_models_mp4_holds_every_frame_the_note_names(tmp_path):
    """The bundled studio model: the note says 8 frames at 10 fps, and the mp4 holds 8 (it held 7) with its sound."""
    from imageio_ffmpeg import count_frames_and_secs

    from studio.tabs.sounding_video import STUDIO_WEIGHTS

    handlers = SoundingVideoHandlers(context(tmp_path, models="studio"), "studio")
    *_, (_, mp4, wav, _, note) = handlers.generate(
        weights=STUDIO_WEIGHTS, mode=JOINT, audio_file=None, video_file=None, sampler="DDPM", steps=2, guidance=0,
        form=PAPER_FORM, resample=1, seed=0, samples=1, super_res=False, request=FakeRequest())
    frames = int(re.search(r"(\d+) frames of", note).group(1))
    assert frames == 8 and count_frames_and_secs(mp4)[0] == frames
    assert "Audio: aac" in streams(mp4) and soundfile.info(wav).duration == pytest.approx(frames / 10)


# MM-LDM (the bundled studio model) as the tab's second model ---------------------------------------------------------

MM_LDM = "mm_ldm_toyworld"


@pytest.fixture
def studio_handlers(tmp_path) -> SoundingVideoHandlers:
    return SoundingVideoHandlers(context(tmp_path, models="studio"), "studio")


def run_mm_ldm(handlers, mode=JOINT, audio=None, video=None, seed=2, samples=1, latent_steps=2,
               reconstruction=100.0) -> list:
    """MM-LDM at 2 DiT and 2 decoder steps; MM-Diffusion's settings are given as None: MM-LDM does not read them."""
    return list(handlers.generate(MM_LDM, mode, audio, video, None, None, None, None, None, seed, samples, None,
                                  FakeRequest(), latent_steps=latent_steps, decoder_steps=2, cross_guidance=3.0,
                                  reconstruction=reconstruction))


def mp4_frames(path: str) -> np.ndarray:
    from pipelines.media import read_video

    return read_video(path).frames


def shown(block) -> bool:
    """Whether a block and every layout around it are visible."""
    while block is not None:
        if block.visible is False:
            return False
        block = block.parent
    return True


def test_mm_ldm_is_offered_beside_mm_diffusion_and_its_settings_replace_mm_diffusions(tmp_path):
    """The dropdown lists both studio models (MM-Diffusion's first: the default); choosing MM-LDM shows its own
    settings at its defaults (DiT steps, decoder steps, φ, reconstruction λ) and hides MM-Diffusion's (sampler, steps,
    guidance, resampling: left as they were) and the super-resolution box; choosing MM-Diffusion again brings its
    defaults back."""
    from pipelines.mm_ldm.entries import STUDIO_DECODER_STEPS, STUDIO_GUIDANCE, STUDIO_RECONSTRUCTION, STUDIO_STEPS
    from studio.tabs.sounding_video import LATENT_PREVIEW, STUDIO_WEIGHTS, settings_shown, steering_controls

    with gr.Blocks():
        sounding_video.build(context(tmp_path, models="studio"))
        blocks = gr.context.Context.root_block.blocks.values()
    (dropdown,) = [block for block in blocks if isinstance(block, gr.Dropdown) and block.label == "Weights"]
    assert [tuple(choice) for choice in dropdown.choices] == [("MM-Diffusion · studio (toy world)", STUDIO_WEIGHTS),
                                                              ("MM-LDM · studio (toy world)", MM_LDM)]
    assert dropdown.value == STUDIO_WEIGHTS
    by_id = {block.elem_id: block for block in blocks if getattr(block, "elem_id", None)}
    assert by_id["sv-ldm-steps"].value == STUDIO_STEPS and not shown(by_id["sv-ldm-steps"])  # until MM-LDM is chosen
    assert shown(by_id["sv-steps"]) and by_id["sv-steps"].value == 100

    assert by_id["sv-reconstruction"].value == STUDIO_RECONSTRUCTION["joint"] == 0  # joint clips: nothing given
    diffusion, latent, sampler, steps, guidance, form, resample, clean, super_res, dit, decoder, phi, reconstruction, \
        rounds, preview = settings_shown(MM_LDM, AUDIO_TO_VIDEO, "studio")
    assert diffusion["visible"] is False and latent["visible"] is True and super_res["visible"] is False
    assert guidance == form == gr.skip()
    assert (dit, decoder, phi, reconstruction, rounds) == (STUDIO_STEPS, STUDIO_DECODER_STEPS, STUDIO_GUIDANCE,
                                                           STUDIO_RECONSTRUCTION["a2v"], 2) == (50, 50, 1.0, 300.0, 2)
    assert settings_shown(MM_LDM, JOINT, "studio")[13] == settings_shown(MM_LDM, VIDEO_TO_AUDIO, "studio")[13] == 1
    assert settings_shown(MM_LDM, VIDEO_TO_AUDIO, "studio")[12] == STUDIO_RECONSTRUCTION["v2a"] == 0.0
    assert by_id["sv-ldm-resample"].value == 1  # the tab opens on joint generation
    assert sampler == steps == resample == clean == gr.skip() and preview["label"] == LATENT_PREVIEW
    diffusion, latent, sampler, steps, guidance, form, resample, clean, _, dit, _, _, _, rounds, _ = settings_shown(
        STUDIO_WEIGHTS, AUDIO_TO_VIDEO, "studio")
    assert diffusion["visible"] is True and latent["visible"] is False and dit == rounds == gr.skip()
    assert (sampler, steps, guidance, form, resample, clean) == ("DDPM", 100, *steering_controls(STUDIO_WEIGHTS,
                                                                                                 AUDIO_TO_VIDEO))


def test_mm_ldm_format_note_says_its_clip_and_what_it_was_trained_on(studio_handlers):
    note = studio_handlers.describe_weights(MM_LDM)
    assert "**Clip format:** 8 frames of 32×32 at 10 fps (0.8 s) with 0.8 s of sound at 16000 Hz" in note
    assert "shrunk from the paper's 16 frames of 256×256 with 44.1 kHz sound" in note
    assert "trained on the toy world's lamp scenes" in note


def test_mm_ldm_joint_generation_previews_its_latent_and_writes_mp4_and_wav(studio_handlers):
    from PIL import Image

    *previews, (_, mp4, wav, files, note) = run_mm_ldm(studio_handlers, latent_steps=sounding_video.PREVIEW_EVERY)
    assert len(previews) == 1  # a preview every PREVIEW_EVERY steps of either loop
    picture = np.asarray(Image.open(previews[0][0]))
    assert picture.shape == (64, 64, 3)  # the 8×8 latent picture, enlarged 8× pixel for pixel
    assert (picture[::8, ::8].repeat(8, 0).repeat(8, 1) == picture).all()
    assert "8 frames of 32×32 at 10 fps, 0.8 s of sound at 16000 Hz" in note and "enlarged 2×" in note
    assert "Video: h264" in streams(mp4) and "Audio: aac" in streams(mp4) and mp4_frames(mp4).shape == (8, 64, 64, 3)
    assert soundfile.info(wav).samplerate == 16000 and soundfile.info(wav).frames == 12800
    assert [Path(path).suffix for path in files] == [".mp4", ".wav"]


def test_mm_ldm_audio_to_video_keeps_the_given_sound_and_makes_a_video(studio_handlers, tmp_path, tone, monkeypatch):
    """A stereo 44.1 kHz second: read with the clip's rate (16 kHz) and fitted to 0.8 s, exactly what the wav holds;
    λ left out is the studio model's for audio → video."""
    from pipelines.mm_ldm.entries import STUDIO_RECONSTRUCTION

    source = tmp_path / "sound.wav"
    soundfile.write(source, np.stack([tone(440, 1.0, 44100), tone(660, 1.0, 44100)], axis=1), 44100,
                    subtype="PCM_16")
    sample, asked = sounding_video.sample, []

    def recorded_sample(pipe, upsampler, arguments, generators, preview):
        asked.append(arguments)
        return sample(pipe, upsampler, arguments, generators, preview)

    monkeypatch.setattr(sounding_video, "sample", recorded_sample)
    *_, (_, mp4, wav, _, note) = run_mm_ldm(studio_handlers, AUDIO_TO_VIDEO, audio=str(source), reconstruction=None)
    assert asked[0]["reconstruction_scale"] == STUDIO_RECONSTRUCTION["a2v"] == 300.0
    assert "Mixed 2 channels" in note and "Resampled from 44100 Hz to 16000 Hz" in note
    fmt = get_pipeline(MM_LDM, "studio").clip_format
    spec = dataclasses.replace(SPECS["mm_diffusion"], sample_rate=16000, clip_seconds=0.8)
    expected = fit_audio(load_audio(source, spec, max_seconds=0.8).samples, fmt).value
    returned, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000 and len(returned) == 12800
    assert np.abs(returned - np.clip(expected, -1, 1)).max() <= 1 / 32767
    assert "Video: h264" in streams(mp4) and mp4_frames(mp4).shape == (8, 64, 64, 3)


def test_mm_ldm_video_to_audio_converts_the_upload_and_makes_its_sound(studio_handlers, tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (30, 48, 80, 3), dtype=np.uint8)
    source = write_video(tmp_path / "clip.mp4", frames, 30, audio=np.zeros(16000, np.float32), sample_rate=16000)
    *_, (_, mp4, wav, _, note) = run_mm_ldm(studio_handlers, VIDEO_TO_AUDIO, video=str(source))
    assert "10 frames per second from the video's 30" in note and "80×48 frames were centre-cropped" in note
    assert "Audio: aac" in streams(mp4) and mp4_frames(mp4).shape == (8, 64, 64, 3)
    sound, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000 and len(sound) == 12800 and np.abs(sound).max() > 0  # a sound was made


def test_mm_ldm_reads_phi_and_lambda_only_where_something_is_given(studio_handlers):
    settings = studio_handlers._latent_settings
    assert settings(JOINT, 2, 3, float("nan"), float("nan"), 1, 1) == dict(num_inference_steps=2, decoder_steps=3,
                                                                           resample_rounds=1, num_samples=1)
    guided = settings(AUDIO_TO_VIDEO, 2, 3, 1.5, 40, 2, 3)
    assert (guided["guidance_scale"], guided["reconstruction_scale"], guided["resample_rounds"]) == (1.5, 40, 3)
    assert settings(VIDEO_TO_AUDIO, 2, 3, 0, 0, 2, 1)["guidance_scale"] == 0


def test_mm_ldm_preview_is_its_latent_picture_enlarged_pixel_for_pixel():
    from studio.tabs.sounding_video import latent_picture

    picture = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    shown = latent_picture(picture)
    assert shown.shape == (64, 64, 3) and (shown[:32, :32] == picture[0, 0]).all()
    assert (shown[32:, 32:] == picture[1, 1]).all()
