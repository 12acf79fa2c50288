"""The Visual Echoes toy metric end to end on a tiny random pipeline: the report's shape, its date and chance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.metrics.__main__ import main
from pipelines.metrics.visual_echoes import picture_features, sound_features


def test_the_metric_writes_every_measure_with_its_date(tmp_path):
    from tests.factories import tiny_visual_echoes

    model = tiny_visual_echoes().save_pretrained(tmp_path / "model")
    out = tmp_path / "metrics.json"
    main(["visual_echoes", "--model", str(model), "--out", str(out), "--per-kind", "1", "--judge-pairs", "48",
          "--steps", "2", "--no-ablations"])
    report = json.loads(out.read_text())
    assert report["date"].endswith("+00:00") and "torch" in report["machine"]
    assert report["chance"] == 1 / 8 and report["per_kind"] == 1 and report["judge_pairs"] == 48
    assert set(report["image_to_sound"]) == {"default"}
    for value in (report["image_to_sound"]["default"]["accuracy"], report["sound_to_image"]["accuracy"],
                  report["image_to_sound"]["default"]["pictured_kind_probability"],
                  report["co_generation"]["agreement"], report["judges"]["sound_judge_on_tokenized_truth"]):
        assert 0.0 <= value <= 1.0
    assert sum(report["co_generation"]["kinds_seen"].values()) == 8
    import torch

    assert torch.is_grad_enabled()  # the metric turns autograd off for itself only, not for the process


def test_features_have_their_documented_sizes():
    assert sound_features(np.zeros((2, 80, 32))).shape == (2, 160)
    assert picture_features(np.zeros((2, 16, 16, 3))).shape == (2, 3 * 8 + 8 * 8 * 3 + 4 ** 3 + 3 + 3 + 1)


def test_the_foreground_colours_are_the_objects_alone():
    from pipelines.metrics.visual_echoes import foreground_colours

    picture = np.full((1, 16, 16, 3), 0.8)
    picture[0, 3:5, 9:11] = (0.9, 0.1, 0.1)  # a 2 × 2 red object on a pale ground
    histogram, mean, std, share = np.split(foreground_colours(picture)[0], [64, 67, 70])
    red_bin = 3 * 16 + 0 * 4 + 0  # bins of 0.25: red 0.9 -> 3, green and blue 0.1 -> 0
    assert histogram[red_bin] == 1.0 and histogram.sum() == 1.0
    np.testing.assert_allclose(mean, (0.9, 0.1, 0.1))
    np.testing.assert_allclose(std, 0.0, atol=1e-12)
    assert share == 4 / 256


def test_results_name_the_bundled_model_relative_to_the_repository(tmp_path):
    from pipelines.metrics.visual_echoes import DEFAULT_MODEL
    from pipelines.weights import repo_relative

    assert repo_relative(DEFAULT_MODEL) == "assets/models/visual_echoes"
    assert repo_relative(tmp_path / "model") == str(tmp_path / "model")  # outside the repository: as given


def test_the_judge_gives_each_sample_the_probability_of_its_own_label():
    from pipelines.metrics.visual_echoes import Judge

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.3, (20, 2)), rng.normal(3, 0.3, (20, 2))])
    judge = Judge(lambda a: a).fit(x, ["low"] * 20 + ["high"] * 20)
    probabilities = judge.model.predict_proba(x[[0, 20]])  # columns in the model's (sorted) class order
    high = list(judge.model.classes_).index("high")
    np.testing.assert_allclose(judge.probability_of(x[[0, 20]], ["high", "high"]), probabilities[:, high])
    np.testing.assert_allclose(judge.probability_of(x[[0, 20]], ["low", "high"]), [1 - probabilities[0, high],
                                                                                  probabilities[1, high]])
    assert judge.probability_of(x[[0]], ["low"])[0] > 0.9


def test_the_guidance_gain_is_the_mean_paired_difference_with_its_standard_error():
    from pipelines.metrics.visual_echoes import paired_gain

    gain = paired_gain(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.8, 0.8, 0.5, 0.6]))  # differences 0.1, 0, 0.2, 0
    assert gain["pictured_kind_probability"] == pytest.approx(0.075)
    assert gain["standard_error"] == pytest.approx(np.std([0.1, 0, 0.2, 0], ddof=1) / 2)  # 0.0957 / √4
