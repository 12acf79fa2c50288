"""The Visual Echoes toy metric end to end on a tiny random pipeline: the report's shape, its date and chance."""

from __future__ import annotations

import json

import numpy as np

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
                  report["co_generation"]["agreement"], report["judges"]["sound_judge_on_tokenized_truth"]):
        assert 0.0 <= value <= 1.0
    assert sum(report["co_generation"]["kinds_seen"].values()) == 8
    import torch

    assert torch.is_grad_enabled()  # the metric turns autograd off for itself only, not for the process


def test_features_have_their_documented_sizes():
    assert sound_features(np.zeros((2, 80, 32))).shape == (2, 160)
    assert picture_features(np.zeros((2, 16, 16, 3))).shape == (2, 3 * 8 + 8 * 8 * 3)
