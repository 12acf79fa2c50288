"""The autoencoder ablation (Table 3 in small) on two tiny autoencoder stages trained alike, one without the
cross-modal condition: both reconstruct the same held-out clips and the report names which is which."""

from __future__ import annotations

import json

import pytest

from benchmarks.mm_ldm_autoencoder_ablation import main
from pipelines.train.__main__ import main as train

TINY = ["mm_ldm", "--data", "toyworld", "--size", "tiny", "--pool", "2", "--steps", "1", "--ema-decay", "0",
        "--seed", "3"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    train(TINY + ["--stage", "vae", "--out", str(root / "with")])
    train(TINY + ["--stage", "autoencoder", "--out", str(root / "with")])
    train(TINY + ["--stage", "autoencoder", "--vae", str(root / "with"), "--out", str(root / "without"),
                  "--no-cross-modal-condition"])
    return root / "with", root / "without"


def test_both_autoencoders_reconstruct_the_same_held_out_clips(stages, tmp_path):
    out = tmp_path / "ablation.json"
    report = main([str(stages[0]), str(stages[1]), "--videos", "1", "--decoder-steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    rows = report["results"]
    assert list(rows) == ["with cross-modal condition", "without"]
    for row in rows.values():
        assert row["clips"] == 2  # one held-out video, two windows
        assert {"frame_psnr", "audio_image_psnr", "mel_error_db", "pitch_correlation", "hum_heard"} <= row.keys()
    assert rows["with cross-modal condition"]["frame_psnr"] != rows["without"]["frame_psnr"]


def test_the_folders_must_be_given_in_order(stages, tmp_path):
    with pytest.raises(SystemExit, match="expected True"):
        main([str(stages[1]), str(stages[0]), "--videos", "1", "--decoder-steps", "2",
              "--out", str(tmp_path / "a.json")])
