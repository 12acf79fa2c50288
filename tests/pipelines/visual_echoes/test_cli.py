"""The command line writes the tab's files (tiny model, no video)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pipelines.audio import write_wav
from pipelines.visual_echoes.__main__ import main
from tests.factories import tiny_visual_echoes, toy_picture


def test_each_command_writes_its_files(tmp_path):
    model = tiny_visual_echoes().save_pretrained(tmp_path / "model")
    picture = tmp_path / "picture.png"
    Image.fromarray((toy_picture() * 255).astype(np.uint8)).save(picture)
    sound = write_wav(tmp_path / "sound.wav", 0.5 * np.sin(np.arange(8000) / 5.0).astype(np.float32), 22050)
    common = ["--model", str(model), "--steps", "2", "--no-video"]
    assert main(["i2a", str(picture), "--out", str(tmp_path / "i2a"), *common]) == 0
    assert (tmp_path / "i2a" / "sample-000.wav").is_file() and (tmp_path / "i2a" / "sample-000-spectrogram.png").is_file()
    assert main(["a2i", str(sound), "--out", str(tmp_path / "a2i"), *common]) == 0
    assert (tmp_path / "a2i" / "sample-000.png").is_file()
    assert main(["cogen", "--out", str(tmp_path / "cogen"), "--num-samples", "2", *common]) == 0
    assert json.loads((tmp_path / "cogen" / "run.json").read_text())["num_samples"] == 2
    assert main(["inpaint", str(sound), str(picture), "--start", "0.0", "--end", "0.1",
                 "--out", str(tmp_path / "inpaint"), *common]) == 0


def test_bad_files_get_a_plain_error(tmp_path, capsys):
    model = tiny_visual_echoes().save_pretrained(tmp_path / "model")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert main(["i2a", str(text), "--out", str(tmp_path / "out"), "--model", str(model)]) == 2
    assert "not a picture" in capsys.readouterr().err
