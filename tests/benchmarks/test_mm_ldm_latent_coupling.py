"""The latent coupling probe: the ridge probe recovers a known lit state and stays at chance on an unrelated one;
the script reads a tiny pipeline's true and sampled latents end to end and writes what it printed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.mm_ldm_latent_coupling import LitProbe, main, other_clip


def synthetic_latents(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents [N, 4, 3, 3] whose first 8 features say, by their sign, whether each of 8 frames is lit (a wide margin),
    and noise elsewhere; and lit states unrelated to them."""
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(count, 4, 3, 3))
    lit = rng.random((count, 8)) < 0.7
    latents.reshape(count, -1)[:, :8] = np.where(lit, 2.0, -2.0) + 0.3 * rng.normal(size=(count, 8))
    return latents, lit.astype(np.float64), (rng.random((count, 8)) < 0.7).astype(np.float64)


def test_the_probe_reads_a_lit_state_the_latent_holds_and_not_one_it_does_not():
    fit_latents, fit_lit, fit_unrelated = synthetic_latents(300, 0)
    latents, lit, unrelated = synthetic_latents(200, 1)
    probe = LitProbe.fit(fit_latents, fit_lit)
    assert probe.accuracy(latents, lit).min() == 1.0
    blind = LitProbe.fit(fit_latents, fit_unrelated)
    chance = np.maximum(unrelated.mean(0), 1 - unrelated.mean(0))
    assert np.abs(blind.accuracy(latents, unrelated) - chance).max() < 0.1
    assert probe.scores(latents).shape == (200, 8)


def test_the_shuffled_baseline_pairs_each_clip_with_the_next():
    latents = np.arange(3)[:, None] * np.ones((3, 2))
    assert other_clip(latents)[:, 0].tolist() == [2, 0, 1]


def test_the_script_reads_a_tiny_pipelines_latents_and_writes_its_report(tmp_path):
    from tests.pipelines.mm_ldm.conftest import tiny_pipeline

    folder = tmp_path / "tiny"
    tiny_pipeline().save_pretrained(folder)
    out = tmp_path / "coupling.json"
    report = main(["--weights", str(folder), "--clips", "4", "--fit", "12", "--steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    results = report["results"]
    assert len(results["probes"]["z_a_accuracy"]) == len(results["probes"]["chance"]) == 8
    for name in ("true latents", "joint", "video -> audio", "audio -> video"):
        for value in results[name].values():
            assert math.isnan(value) or -1.0 <= value <= 1.0
    assert report["settings"]["sampling"]["steps"] == 2 and report["settings"]["clips"] == 4
    with pytest.raises(SystemExit):
        main(["--weights", str(folder), "--clips", "2", "--out", str(tmp_path / "few.json")])
