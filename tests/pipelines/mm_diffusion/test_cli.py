"""`python -m pipelines.mm_diffusion`: joint, audio → video and video → audio files, the sample sheet, plain errors."""

from __future__ import annotations

import json

import numpy as np
import soundfile
from PIL import Image

from pipelines.audio import spectrogram_picture
from pipelines.media import read_soundtrack, video_info
from pipelines.mm_diffusion.__main__ import main
from pipelines.mm_diffusion.clips import sample_sheet
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.seeds import generators_for
from tests.factories import tiny_mm_diffusion, write_glass_video


def test_spectrogram_picture_puts_a_tone_in_its_row_and_silence_in_black():
    rate = 4000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)  # 1 kHz: half way to Nyquist
    picture = spectrogram_picture(tone, rate)
    assert picture.shape == (129, 1 + rate // 32)
    assert abs(int(np.argmax(picture[:, 60])) - 64) <= 1  # bottom row 0 Hz, top row 2 kHz
    assert picture[64, 60] > 0.9 and spectrogram_picture(np.zeros(rate), rate).max() == 0.0


def test_sample_sheet_draws_each_samples_frames_over_its_spectrogram():
    videos = np.zeros((2, 4, 8, 8, 3), np.uint8)
    videos[1] = 255
    sheet = sample_sheet(videos, np.zeros((2, 800), np.float32), 2000, gap=4)
    assert sheet.shape == (2 * (64 + 64) + 4, 4 * 64, 3)  # frames enlarged to 64 px, the spectrogram as high
    assert sheet[128 + 4 : 128 + 4 + 64].min() == 255 and sheet[:64].max() == 0


def test_cli_writes_joint_a2v_and_v2a_files(tmp_path):
    model = tmp_path / "model"
    tiny_mm_diffusion().save_pretrained(model)
    assert main(["joint", "--model", str(model), "--out", str(tmp_path / "joint"), "--steps", "2",
                 "--num-samples", "2", "--seed", "3"]) == 0
    joint = tmp_path / "joint"
    assert sorted(p.name for p in joint.iterdir()) == ["run.json", "sample-000.mp4", "sample-000.wav",
                                                      "sample-001.mp4", "sample-001.wav", "sheet.png"]
    assert json.loads((joint / "run.json").read_text())["seed"] == 3
    output = MMDiffusionPipeline.from_pretrained(model)(num_samples=2, generator=generators_for(3, 2)[0],
                                                         sampler="ddpm", num_inference_steps=2, resample_rounds=3)
    drawn = np.asarray(Image.open(joint / "sheet.png"))  # the uint8 sheet, written as it is
    assert np.array_equal(drawn, sample_sheet(output.video, output.audio, 2000))
    assert soundfile.info(str(joint / "sample-000.wav")).samplerate == 16000
    assert video_info(joint / "sample-000.mp4").size == (64, 64)  # 8×8 frames shown 8× larger

    sound = tmp_path / "sound.wav"
    soundfile.write(str(sound), 0.3 * np.sin(np.arange(16000) * 0.1), 16000)
    assert main(["a2v", str(sound), "--model", str(model), "--out", str(tmp_path / "a2v"), "--steps", "2",
                 "--num-samples", "1"]) == 0
    assert np.abs(read_soundtrack(tmp_path / "a2v" / "sample-000.mp4", 16000)).max() > 0.05  # the given sound
    record = json.loads((tmp_path / "a2v" / "run.json").read_text())
    assert (record["guidance"], record["guidance_form"], record["resample_rounds"]) == (0.0, "paper", 4)  # the tab's
    record = json.loads((joint / "run.json").read_text())
    assert (record["guidance"], record["resample_rounds"]) == (0.0, 3)  # the tab's: the rounds as a corrector

    video = tmp_path / "glass.mp4"
    write_glass_video(video)
    assert main(["v2a", str(video), "--model", str(model), "--out", str(tmp_path / "v2a"), "--steps", "2",
                 "--num-samples", "1"]) == 0
    assert (tmp_path / "v2a" / "sample-000.wav").exists()


def test_cli_refuses_bad_input_plainly(tmp_path, capsys):
    model = tmp_path / "model"
    tiny_mm_diffusion().save_pretrained(model)
    assert main(["a2v", "--model", str(model), "--out", str(tmp_path / "x")]) == 2
    assert "a2v takes 1 input file(s), got 0" in capsys.readouterr().err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["v2a", str(broken), "--model", str(model), "--out", str(tmp_path / "y")]) == 2
    assert "could not be read as a video" in capsys.readouterr().err
    sound = tmp_path / "sound.wav"
    soundfile.write(str(sound), 0.3 * np.sin(np.arange(16000) * 0.1), 16000)
    assert main(["a2v", str(sound), "--model", str(model), "--out", str(tmp_path / "z"), "--clean-condition"]) == 2
    assert "not trained with a clean condition" in capsys.readouterr().err


def test_cli_samples_weights_trained_with_a_clean_condition_from_their_conditional(tmp_path):
    model = tmp_path / "model"
    pipe = tiny_mm_diffusion()
    pipe.training_record["clean_condition"] = 0.5
    pipe.save_pretrained(model)
    sound = tmp_path / "sound.wav"
    soundfile.write(str(sound), 0.3 * np.sin(np.arange(16000) * 0.1), 16000)
    cases = (([], (True, 3)), (["--no-clean-condition"], (False, 3)), (["--resample-rounds", "1"], (True, 1)))
    for flags, expected in cases:  # a2v: the clean condition with 3 resampling rounds unless told otherwise
        out = tmp_path / f"a2v{len(flags)}"
        assert main(["a2v", str(sound), "--model", str(model), "--out", str(out), "--steps", "2",
                     "--num-samples", "1", *flags]) == 0
        record = json.loads((out / "run.json").read_text())
        assert (record["clean_condition"], record["resample_rounds"]) == expected
