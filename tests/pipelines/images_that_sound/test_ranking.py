"""Scoring and re-ranking (the authors' CLIP windows and CLAP), and the command-line tool writing its files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from pipelines.images_that_sound.__main__ import main
from pipelines.images_that_sound.ranking import (
    ClapScorer,
    ClipWindowScorer,
    authors_selection,
    rank,
    spectrogram_windows,
)
from tests.factories import TINY, tiny_clap, tiny_clip, tiny_model_folder, write_auffusion_vocoder


@pytest.fixture(scope="module")
def scorer_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    tiny_clip(root / "clip")
    tiny_clap(root / "clap")
    return root


def test_windows_follow_the_authors_stride():
    assert len(spectrogram_windows(np.zeros((256, 1024)))) == 25
    assert len(spectrogram_windows(np.zeros((256, 992)))) == 24
    assert [w.size for w in spectrogram_windows(np.zeros((256, 100)))] == [(100, 256)]


def test_clip_score_is_the_mean_clamped_cosine_over_windows(scorer_folders):
    scorer = ClipWindowScorer.from_pretrained(str(scorer_folders / "clip"))
    spectrograms = np.random.default_rng(0).random((2, 32, 96)).astype(np.float32)
    scores = scorer("a castle", spectrograms)
    with torch.no_grad():
        text = scorer.model.get_text_features(**scorer.tokenizer(["a castle"], return_tensors="pt")).pooler_output
        pixels = scorer.image_processor(images=spectrogram_windows(spectrograms[1]), return_tensors="pt").pixel_values
        image = scorer.model.get_image_features(pixel_values=pixels).pooler_output
    cosines = torch.nn.functional.cosine_similarity(image, text)
    assert len(pixels) == 17 and scores[1] == pytest.approx(cosines.clamp(min=0).mean().item(), abs=1e-5)


def test_clap_scores_each_sound(scorer_folders):
    scorer = ClapScorer.from_pretrained(str(scorer_folders / "clap"))
    scores = scorer("bell ringing", np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32), 16000)
    assert scores.shape == (3,) and (scores >= 0).all() and (scores <= 1).all()


def test_rank_and_the_authors_selection():
    clip = np.array([0.3, 0.9, 0.1, 0.5, 0.8])
    clap = np.array([0.9, 0.7, 0.2, 0.1, 0.8])
    assert rank({"clip": clip, "clap": clap}).tolist() == [1, 4, 0, 3, 2]
    assert rank({"clip": clip}).tolist() == [1, 4, 3, 0, 2]
    assert authors_selection(clip, clap, top_fraction=0.4).tolist() == [4]  # top 2 by each: {1, 4} ∩ {0, 4}
    with pytest.raises(ValueError):
        rank({})


def test_cli_writes_samples_and_scores(tmp_path, scorer_folders):
    tiny_model_folder(tmp_path / "image", seed=0)
    tiny_model_folder(tmp_path / "audio", seed=1)
    write_auffusion_vocoder(tmp_path / "audio", TINY)
    out = tmp_path / "out"
    main(["--image-prompt", "a castle", "--audio-prompt", "bell ringing", "--num-samples", "3", "--batch-size", "2",
          "--steps", "2", "--latent-width", "8", "--seed", "10", "--image-model", str(tmp_path / "image"),
          "--audio-model", str(tmp_path / "audio"), "--clip-model", str(scorer_folders / "clip"),
          "--clap-model", str(scorer_folders / "clap"), "--colorize", "a colorful castle", "--device", "cpu",
          "--out", str(out)])
    report = json.loads((out / "scores.json").read_text())
    assert [s["seed"] for s in report["samples"]] == [10, 11, 12] and report["scorers"] == ["clap", "clip"]
    assert sorted(report["ranking"]) == [0, 1, 2] and isinstance(report["authors_selection"], list)
    for sample in report["samples"]:
        assert 0 <= sample["clip"] <= 1 and 0 <= sample["clap"] <= 1
        for name in sample["files"]:
            assert (out / name).stat().st_size > 0
    assert soundfile.info(out / "sample-000.wav").frames == 62 * 160
    assert report["samples"][2]["files"][-1] == "sample-002-color.png"


def test_cli_sds_writes_one_optimised_sample_per_seed(tmp_path):
    tiny_model_folder(tmp_path / "image", seed=0)
    tiny_model_folder(tmp_path / "audio", seed=1)
    out = tmp_path / "out"
    main(["--image-prompt", "a castle", "--audio-prompt", "bell", "--method", "sds", "--sds-iterations", "2",
          "--num-samples", "2", "--latent-width", "8", "--vocoder", "griffinlim", "--image-model",
          str(tmp_path / "image"), "--audio-model", str(tmp_path / "audio"), "--clip-model", "none",
          "--clap-model", "none", "--device", "cpu", "--out", str(out)])
    report = json.loads((out / "scores.json").read_text())
    assert [s["seed"] for s in report["samples"]] == [2024, 2025] and report["ranking"] is None
    assert (out / "sample-001.mp4").exists()
