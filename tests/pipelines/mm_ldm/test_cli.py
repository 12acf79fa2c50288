"""`python -m pipelines.mm_ldm`: joint, audio → video and video → audio files from a tiny saved model, the sample
sheet, the given stream written as given, and plain errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from pipelines.audio import load_audio
from pipelines.media import read_soundtrack, video_info
from pipelines.mm_diffusion.clips import fit_audio, read_video_clip, sample_sheet
from pipelines.mm_ldm.__main__ import main
from pipelines.mm_ldm.entries import STUDIO_GUIDANCE, STUDIO_RECONSTRUCTION, STUDIO_RESAMPLE_ROUNDS
from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
from pipelines.seeds import generators_for
from tests.factories import write_glass_video
from tests.pipelines.mm_ldm.conftest import tiny_pipeline

FAST = ["--steps", "2", "--decoder-steps", "2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny MM-LDM (8 frames of 16², 0.8 s at 16 kHz) saved as the CLI's --model folder."""
    return tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("mm_ldm") / "model")


def test_joint_writes_samples_sheet_and_record(model, tmp_path):
    out = tmp_path / "joint"
    assert main(["joint", "--model", str(model), "--out", str(out), *FAST, "--num-samples", "2", "--seed", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "sample-000.mp4", "sample-000.wav",
                                                    "sample-001.mp4", "sample-001.wav", "sheet.png"]
    assert json.loads((out / "run.json").read_text()) == {
        "command": "joint", "inputs": [], "model": str(model), "steps": 2, "decoder_steps": 2, "guidance": None,
        "reconstruction": None, "resample_rounds": 1, "resample_share": 0.6, "num_samples": 2, "seed": 3}
    output = MMLDMPipeline.from_pretrained(model)(num_inference_steps=2, decoder_steps=2, num_samples=2,
                                                  generator=generators_for(3, 2)[0])
    assert np.array_equal(np.asarray(Image.open(out / "sheet.png")), sample_sheet(output.video, output.audio, 16000))
    assert soundfile.info(str(out / "sample-000.wav")).samplerate == 16000
    assert video_info(out / "sample-000.mp4").size == (64, 64)  # 16×16 frames shown 4× larger


def test_audio_to_video_keeps_the_given_sound_fitted_to_the_clip(model, tmp_path):
    sound = tmp_path / "hum.wav"
    soundfile.write(str(sound), 0.4 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000)  # 1 s at 8 kHz
    out = tmp_path / "a2v"
    assert main(["a2v", str(sound), "--model", str(model), "--out", str(out), *FAST, "--num-samples", "1"]) == 0
    pipe = MMLDMPipeline.from_pretrained(model)
    given = fit_audio(load_audio(sound, pipe.spec).samples, pipe.clip_format).value  # 16 kHz, its first 0.8 s
    written, rate = soundfile.read(str(out / "sample-000.wav"), dtype="float32")
    assert rate == 16000 and written.shape == (12800,)
    assert np.abs(written - given).max() < 2 / 2**15  # the given sound, as 16-bit PCM
    assert np.abs(read_soundtrack(out / "sample-000.mp4", 16000)).max() > 0.2  # and it is in the mp4
    record = json.loads((out / "run.json").read_text())
    assert (record["guidance"], record["reconstruction"], record["resample_rounds"]) == (
        STUDIO_GUIDANCE, STUDIO_RECONSTRUCTION["a2v"], STUDIO_RESAMPLE_ROUNDS["a2v"])  # the defaults


def test_video_to_audio_keeps_the_given_frames(model, tmp_path):
    video = tmp_path / "glass.mp4"
    write_glass_video(video)
    out = tmp_path / "v2a"
    assert main(["v2a", str(video), "--model", str(model), "--out", str(out), *FAST, "--guidance", "1.5",
                 "--reconstruction", "20", "--num-samples", "1"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert (record["guidance"], record["reconstruction"]) == (1.5, 20)
    frames = read_video_clip(video, MMLDMPipeline.from_pretrained(model).clip_format).value  # [8, 16, 16, 3]
    sheet = np.asarray(Image.open(out / "sheet.png"))
    assert np.array_equal(sheet[:64], np.concatenate(list(frames.repeat(4, 1).repeat(4, 2)), axis=1))
    assert soundfile.info(str(out / "sample-000.wav")).frames == 12800


@pytest.mark.parametrize(("argv", "message"), [
    (["a2v"], "a2v takes 1 input file(s), got 0"),
    (["joint", "--guidance", "2"], "--guidance steers a2v and v2a"),
    (["joint", "--steps", "0"], "--steps must be 1 to 1000, got 0"),
    (["joint", "--decoder-steps", "5000"], "--decoder-steps must be 1 to 1000, got 5000"),
    (["joint", "--num-samples", "0"], "--num-samples must be 1 to 64, got 0"),
    (["v2a", "clip.mp4", "--guidance", "nan"], "--guidance must be a number >= 0, got nan"),
    (["joint", "--reconstruction", "10"], "--reconstruction steers a2v and v2a"),
    (["a2v", "hum.wav", "--reconstruction", "-1"], "--reconstruction must be a number >= 0, got -1"),
    (["joint", "--resample-rounds", "0"], "--resample-rounds must be 1 to 10, got 0"),
    (["joint", "--resample-share", "1.5"], "--resample-share must be between 0 and 1, got 1.5"),
])
def test_bad_arguments_get_plain_errors(model, tmp_path, capsys, argv, message):
    assert main([*argv, "--model", str(model), "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_inputs_and_models_get_plain_errors(model, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["v2a", str(broken), "--model", str(model), "--out", str(tmp_path / "y")]) == 2
    assert "could not be read as a video" in capsys.readouterr().err
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF and nothing else")
    assert main(["a2v", str(noise), "--model", str(model), "--out", str(tmp_path / "z")]) == 2
    assert f"error: {noise} could not be read as sound" in capsys.readouterr().err
    assert main(["joint", "--model", str(tmp_path), "--out", str(tmp_path / "w")]) == 2
    assert "is not a saved MM-LDM pipeline" in capsys.readouterr().err


def test_resampling_rounds_reach_the_pipeline(model, tmp_path):
    out = tmp_path / "resampled"
    argv = ["joint", "--model", str(model), "--out", str(out), *FAST, "--num-samples", "1", "--seed", "4"]
    assert main([*argv, "--resample-rounds", "2", "--resample-share", "1"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert (record["resample_rounds"], record["resample_share"]) == (2, 1.0)
    output = MMLDMPipeline.from_pretrained(model)(num_inference_steps=2, decoder_steps=2, resample_rounds=2,
                                                  resample_share=1.0, generator=generators_for(4, 1)[0])
    assert np.array_equal(np.asarray(Image.open(out / "sheet.png")), sample_sheet(output.video, output.audio, 16000))
