"""`python -m pipelines.train mm_diffusion`: the official objective, a tiny toy-world run that `MMDiffusionPipeline`
loads and samples, resume, an mp4-folder dataset, the presets; the registry's studio Sounding Video and the tab with
studio weights."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from pipelines.media import write_video
from pipelines.mm_diffusion import entries
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.registry import REGISTRY, available, get_pipeline
from pipelines.train.__main__ import main
from pipelines.train.common import LossLog, checkpoint_dirs
from pipelines.train.mm_diffusion import (
    PRESETS,
    JointDiffusionObjective,
    build_model,
    folder_footage,
    model_flags,
)
from tests.factories import ROOT, FakeRequest

TINY_FORMAT = ClipFormat(4, 8, 8, 800, 10, 2000)
TINY_RUN = ["mm_diffusion", "--data", "toyworld", "--size", "tiny", "--pool", "3", "--ema-decay", "0",
            "--checkpoint-every", "1", "--seed", "3"]
STUDIO = "mm_diffusion_toyworld"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 3-step toy-world run, EMA decay 0 (the exported weights are then the live ones)."""
    out = tmp_path_factory.mktemp("mm_train") / "run"
    main(TINY_RUN + ["--out", str(out), "--steps", "3"])  # one torch thread (conftest), as the resumed run
    return out


@pytest.fixture
def studio_folder(trained, monkeypatch):
    """The registry's studio Sounding Video pointed at the tiny run (and dropped again afterwards)."""
    monkeypatch.setattr(entries, "STUDIO_FOLDER", trained)
    REGISTRY.forget(STUDIO)
    yield trained
    REGISTRY.forget(STUDIO)


def tiny_args(**overrides):
    from argparse import Namespace

    return Namespace(**{"size": "tiny", "dropout": None, **overrides})


# The objective -----------------------------------------------------------------------------------------------------


def test_objective_noises_with_the_linear_schedule_and_sums_the_two_stream_losses():
    torch.manual_seed(0)
    objective = JointDiffusionObjective(build_model(model_flags(tiny_args(), TINY_FORMAT)))
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    assert objective.sqrt_alphas_cumprod[-1].item() ** 2 == pytest.approx(4.04e-5, rel=0.01)  # ᾱ_1000 (A2)
    x0, noise, t = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 500])
    expected = torch.from_numpy(np.sqrt(alpha_bar[[0, 500]]))[:, None].float() * x0 + \
        torch.from_numpy(np.sqrt(1 - alpha_bar[[0, 500]]))[:, None].float() * noise
    torch.testing.assert_close(objective.q_sample(x0, t, noise), expected)
    # A fresh MM-Diffusion U-Net outputs exactly 0 (zero-initialised heads): each loss is then the mean of ε².
    video, audio = torch.rand(2, 4, 3, 8, 8) * 2 - 1, torch.rand(2, 1, 800) * 2 - 1
    video_noise, audio_noise = torch.randn_like(video), torch.randn_like(audio)
    video_loss, audio_loss = objective(video, audio, torch.tensor([10, 900]), video_noise, audio_noise)
    torch.testing.assert_close(video_loss, video_noise.pow(2).mean())
    torch.testing.assert_close(audio_loss, audio_noise.pow(2).mean())


def test_presets_paper_is_the_released_network_on_the_paper_clip():
    from pipelines.train.mm_diffusion import clip_format_from_args

    args = tiny_args(size="paper", frames=None, frame_size=None, sample_rate=None, fps=10)
    fmt = clip_format_from_args(args)
    assert fmt == ClipFormat(16, 64, 64, 25600, 10, 16000)
    with torch.device("meta"):
        model = build_model(model_flags(args, fmt))
    assert sum(p.numel() for p in model.parameters()) == 133_675_524
    assert model.config["cross_attention_windows"] == (1, 4, 8) and PRESETS["paper"].flags["dropout"] == 0.1
    studio = clip_format_from_args(tiny_args(size="studio", frames=None, frame_size=None, sample_rate=None, fps=10))
    assert studio == ClipFormat(8, 16, 16, 3200, 10, 4000)


@pytest.mark.parametrize("size, sees_the_mean", [("tiny", False), ("studio", True)])
def test_only_networks_with_two_channels_per_norm_group_see_their_inputs_mean(size, sees_the_mean):
    """Why the studio preset has 64 channels: GroupNorm32 over 32 channels removes every channel's mean, so the
    output of a 32-channel network ignores a constant added to its input (it cannot predict the noise's mean)."""
    from pipelines.train.mm_diffusion import clip_format_from_args

    args = tiny_args(size=size, frames=None, frame_size=None, sample_rate=None, fps=10)
    fmt = clip_format_from_args(args)
    torch.manual_seed(0)
    model = build_model({**model_flags(args, fmt), "cross_attention_shift": False}).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():  # the zero-initialised output layers: random, so the output depends on the input
                p.normal_(0, 0.05)
        video, audio = torch.randn(1, fmt.frames, 3, fmt.height, fmt.width), torch.randn(1, 1, fmt.audio_samples)
        shift = [model(video + c, audio + c, torch.tensor([999.0]))[1].mean() for c in (0.0, 0.1)]
    assert (abs(shift[1] - shift[0]) > 1e-3) == sees_the_mean


@pytest.mark.parametrize("extra, message", [
    (["--sample-rate", "3000", "--size", "studio"], "does not fit the network"),
    (["--sample-rate", "2005"], "whole number of samples per frame"),
    (["--flip", "2"], "probability"),
    (["--fps", "5"], "Toy-world videos are 10 fps"),
])
def test_bad_options_are_plain_errors(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        main(TINY_RUN + ["--out", str(tmp_path / "run"), "--steps", "1"] + extra)


# The tiny run: output, loading, sampling, resume ---------------------------------------------------------------------


def test_run_writes_a_loadable_model_that_samples(trained):
    config = json.loads((trained / "model.json").read_text())
    assert config["flags"]["video_size"] == "4,3,8,8" and config["flags"]["audio_size"] == "1,800"
    assert config["scenes"] == ["lamp"] and config["size"] == "tiny"
    assert [r["step"] for r in LossLog(trained / "loss_log.jsonl").read()] == [1, 2, 3]
    assert (trained / "loss_curve.png").is_file() and (trained / "training_summary.json").is_file()
    pipe = MMDiffusionPipeline.from_pretrained(trained)
    assert pipe.clip_format == TINY_FORMAT and pipe.training_record["scenes"] == ["lamp"]
    output = pipe(num_samples=2, sampler="ddim", num_inference_steps=2,
                  generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert output.video.shape == (2, 4, 8, 8, 3) and output.video.dtype == np.uint8
    assert output.audio.shape == (2, 800) and np.isfinite(output.audio).all()
    assert (output.sample_rate, output.fps) == (2000, 10)
    # The weights file alone loads the same network (its flags from the model.json beside it).
    from_file = MMDiffusionPipeline.from_pretrained(trained / "model.safetensors")
    for key, tensor in from_file.unet.state_dict().items():
        torch.testing.assert_close(tensor, pipe.unet.state_dict()[key], rtol=0, atol=0)


def test_ema_decay_zero_exports_the_live_weights(trained):
    live = load_file(trained / "checkpoints" / "train" / "step-3" / "model.safetensors")
    exported = load_file(trained / "model.safetensors")
    assert exported.keys() == {k.removeprefix("unet.") for k in live}
    for key, tensor in exported.items():
        torch.testing.assert_close(tensor, live[f"unet.{key}"], rtol=0, atol=0)


def test_resume_from_step_two_reproduces_step_three(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    shutil.rmtree(copy / "checkpoints" / "train" / "step-3")
    main(TINY_RUN + ["--out", str(copy), "--steps", "3", "--resume"])
    assert [p.name for p in checkpoint_dirs(copy / "checkpoints" / "train")] == ["step-2", "step-3"]
    assert LossLog(copy / "loss_log.jsonl").read() == LossLog(trained / "loss_log.jsonl").read()
    resumed, straight = load_file(copy / "model.safetensors"), load_file(trained / "model.safetensors")
    for key, tensor in straight.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=0, atol=0)


# An mp4 folder (Landscape / AIST++ layout) ---------------------------------------------------------------------------


def grey_ramp(frames: int) -> np.ndarray:
    """Frames whose grey level tells their index: frame k is 20 + 12·k everywhere."""
    return np.repeat((20 + 12 * np.arange(frames, dtype=np.uint8))[:, None, None, None], 3, axis=3) * \
        np.ones((1, 32, 48, 1), np.uint8)


@pytest.fixture(scope="module")
def mp4_folder(tmp_path_factory):
    """clips/long.mp4: 16 frames with a knock at frame 6; clips/sub/short.mp4: 3 frames (shorter than a clip)."""
    folder = tmp_path_factory.mktemp("clips")
    audio = np.zeros(25600, np.float32)
    audio[6 * 1600 : 6 * 1600 + 400] = 0.8 * np.sin(np.arange(400) * 2 * np.pi * 300 / 16000)
    write_video(folder / "long.mp4", grey_ramp(16), 10, audio=audio, sample_rate=16000)
    (folder / "sub").mkdir()
    write_video(folder / "sub" / "short.mp4", grey_ramp(3), 10, audio=np.zeros(4800, np.float32), sample_rate=16000)
    return folder


def test_mp4_folder_is_cut_into_clip_windows_with_their_sound(mp4_folder):
    footage = folder_footage(mp4_folder, TINY_FORMAT, stride=1)
    assert len(footage) == 13 + 1  # windows of 4 frames in 16, and one padded clip of the 3-frame file
    frames, audio = footage.clip(5)  # long.mp4, frames 5..8
    assert frames.shape == (4, 8, 8, 3)
    np.testing.assert_allclose(frames.reshape(4, -1).mean(axis=1), 20 + 12 * np.arange(5, 9), atol=3)
    envelope = np.abs(audio).reshape(4, -1).max(axis=1)  # 200 samples a frame at 2 kHz
    assert envelope[1] > 0.3 and envelope[0] < 0.05 and envelope[3] < 0.05  # the knock is in frame 6 = window 1
    short_frames, short_audio = footage.clip(13)
    np.testing.assert_allclose(short_frames.reshape(4, -1).mean(axis=1), [20, 32, 44, 44], atol=3)  # last held


def test_mp4_folder_trains(mp4_folder, tmp_path):
    out = tmp_path / "run"
    main(["mm_diffusion", "--data", str(mp4_folder), "--size", "tiny", "--steps", "1", "--clip-stride", "2",
          "--out", str(out)])
    assert json.loads((out / "training_summary.json").read_text())["clips"] == 7 + 1
    assert MMDiffusionPipeline.from_pretrained(out).clip_format == TINY_FORMAT


def test_folder_errors_are_plain(tmp_path):
    with pytest.raises(ValueError, match="holds no video files"):
        folder_footage(tmp_path, TINY_FORMAT, 1)
    write_video(tmp_path / "silent.mp4", np.zeros((8, 16, 16, 3), np.float32), 10)
    with pytest.raises(ValueError, match=r"None of the 1 video file\(s\).*silent.mp4 could not be read as a video "
                                         r"with sound \(it has no sound"):
        folder_footage(tmp_path, TINY_FORMAT, 1)


def test_bad_files_in_a_folder_are_skipped_with_their_reasons(mp4_folder, tmp_path):
    folder = tmp_path / "clips"
    shutil.copytree(mp4_folder, folder)
    (folder / "broken.mp4").write_bytes(b"not a video")
    write_video(folder / "silent.mp4", np.zeros((8, 16, 16, 3), np.float32), 10)
    out = tmp_path / "run"
    main(["mm_diffusion", "--data", str(folder), "--size", "tiny", "--steps", "1", "--clip-stride", "2",
          "--out", str(out)])
    skipped = json.loads((out / "skipped.json").read_text())
    assert [item["file"] for item in skipped] == ["broken.mp4", "silent.mp4"]
    assert "could not be read" in skipped[0]["reason"] and "no sound" in skipped[1]["reason"]
    assert json.loads((out / "training_summary.json").read_text())["clips"] == 7 + 1  # the good files' clips


# The registry's studio variant and the tab ---------------------------------------------------------------------------


def test_registry_studio_variant_loads_the_trained_folder(studio_folder):
    assert available(STUDIO, "studio") and not available(STUDIO, "paper")
    pipe = get_pipeline(STUDIO, "studio")
    assert isinstance(pipe, MMDiffusionPipeline) and pipe.clip_format == TINY_FORMAT


def test_bundled_studio_model_is_the_studio_preset():
    assert available(STUDIO, "studio")
    folder = ROOT / "assets" / "models" / "mm_diffusion"
    assert MMDiffusionPipeline.from_pretrained(folder).clip_format == ClipFormat(8, 16, 16, 3200, 10, 4000)
    assert json.loads((folder / "model.json").read_text())["flags"] == model_flags(
        tiny_args(size="studio"), ClipFormat(8, 16, 16, 3200, 10, 4000))
    assert load_file(folder / "model.safetensors")["time_embed.0.weight"].dtype == torch.float16
    assert entries.studio_learnt_clean_condition()  # fine-tuned with a clean condition: the tab gives it by default
    assert MMDiffusionPipeline.from_pretrained(folder).learnt_clean_condition


def ffmpeg_streams(path: str) -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    return subprocess.run([get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True).stderr


@pytest.fixture
def studio_handlers(tmp_path, studio_folder):
    from studio.app import working_tabs
    from studio.config import build_config
    from studio.context import StudioContext
    from studio.sessions import SessionFiles
    from studio.tabs import sounding_video

    space = tmp_path / "space.yaml"
    space.write_text((ROOT / "space.yaml").read_text().split("checkpoints:")[0] + "tabs: {}\n")
    context = StudioContext(build_config(models="studio", space_file=space), SessionFiles(tmp_path / "files"))
    assert sounding_video in working_tabs(context)  # no released checkpoint configured: the studio weights
    return sounding_video.SoundingVideoHandlers(context, "studio")


def test_studio_tab_builds_with_the_ddpm_sampler_and_shows_the_loaded_models_format(studio_handlers):
    import gradio as gr

    from studio.app import build_studio
    from studio.tabs.sounding_video import STUDIO_WEIGHTS

    demo = build_studio(studio_handlers.context)
    radios = {b.label: b.value for b in demo.blocks.values() if isinstance(b, gr.Radio)}
    assert radios["Sampler"] == "DDPM"
    note = studio_handlers.describe_weights(STUDIO_WEIGHTS)  # on page load and when the weights change
    assert "**Clip format:** 4 frames of 8×8 at 10 fps (0.4 s) with 0.4 s of sound at 2000 Hz" in note
    assert "shrunk from the paper's 16 frames of 64×64 with 16 kHz sound" in note and "lamp scenes" in note


def test_tab_with_studio_weights_makes_16_khz_mp4_and_wav(studio_handlers):
    from studio.tabs.sounding_video import JOINT, PREVIEW_EVERY, STUDIO_WEIGHTS

    *previews, (_, mp4, wav, files, note) = list(studio_handlers.generate(
        STUDIO_WEIGHTS, JOINT, None, None, "DDIM", PREVIEW_EVERY, 0, "Paper (Eq. 12: √(1 − ᾱ))", 1, 4, 1, False,
        FakeRequest()))
    assert previews and previews[-1][0].endswith(".png")  # previews stream as files; the last one stays
    from PIL import Image

    assert np.asarray(Image.open(previews[-1][0])).dtype == np.uint8
    assert "Audio: aac" in ffmpeg_streams(mp4) and "16000 Hz" in ffmpeg_streams(mp4)
    assert soundfile.info(wav).samplerate == 16000 and soundfile.info(wav).frames == 6400  # 0.4 s
    assert "4 frames of 8×8" in note and "2000 Hz" in note and "resampled to 16000 Hz" in note
    assert "enlarged 8×" in note and "64x64" in ffmpeg_streams(mp4)


def test_tab_audio_to_video_with_studio_weights_reads_the_upload_at_the_models_rate(studio_handlers, tmp_path, tone):
    from studio.tabs.sounding_video import AUDIO_TO_VIDEO, STUDIO_WEIGHTS

    source = tmp_path / "sound.wav"
    soundfile.write(source, tone(300, 1.0, 44100), 44100)
    *_, (_, mp4, wav, _, note) = list(studio_handlers.generate(
        STUDIO_WEIGHTS, AUDIO_TO_VIDEO, str(source), None, "DDIM", 2, 1.0, "Paper (Eq. 12: √(1 − ᾱ))", 2, 4, 1,
        False, FakeRequest()))
    assert "Resampled from 44100 Hz to 2000 Hz" in note and "Kept the first 0.4 s" in note
    returned, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000 and len(returned) == 6400
    spectrum = np.abs(np.fft.rfft(returned))
    assert abs(np.argmax(spectrum) * 16000 / len(returned) - 300) < 10  # the given tone comes back


def test_tab_refuses_a_clean_condition_the_weights_did_not_learn(studio_handlers, tmp_path, tone):
    import gradio as gr

    from studio.tabs.sounding_video import AUDIO_TO_VIDEO, STUDIO_WEIGHTS

    source = tmp_path / "sound.wav"
    soundfile.write(source, tone(300, 1.0, 2000), 2000)
    with pytest.raises(gr.Error, match="did not learn a clean condition.*untick “Give it clean”"):
        list(studio_handlers.generate(STUDIO_WEIGHTS, AUDIO_TO_VIDEO, str(source), None, "DDIM", 2, 0,
                                      "Paper (Eq. 12: √(1 − ᾱ))", 1, 4, 1, False, FakeRequest(), clean=True))
