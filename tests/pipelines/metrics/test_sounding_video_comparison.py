"""Two models' coupling scores compared: a paired bootstrap cancels what the clips share, a model compared with itself
is not told apart, a coupled model is told from an uncoupled one, and runs that cannot be compared are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.metrics.sounding_video import Clips, evaluate, ground_truth_clips
from pipelines.metrics.sounding_video_comparison import compare, difference_interval, load_run
from pipelines.mm_diffusion.clips import ClipFormat

STUDIO_FORMAT = ClipFormat(8, 16, 16, 3200, 10, 4000)


def same(video: list, audio: list) -> float:
    return float(np.mean([v == a for v, a in zip(video, audio)]))


def test_a_paired_bootstrap_cancels_what_both_models_share():
    half = list(range(400)), [i if i % 2 else -1 for i in range(400)]  # every other clip's pair matches: 0.5
    assert difference_interval(same, half, half, paired=True, draws=500, seed=0) == [0.0, 0.0]
    low, high = difference_interval(same, half, half, paired=False, draws=2000, seed=0)
    spread = 1.96 * np.sqrt(2 * 0.25 / 400)  # two independent means of 400 fair coins
    assert low == pytest.approx(-spread, abs=0.012) and high == pytest.approx(spread, abs=0.012)
    matched = list(range(400)), list(range(400))  # 1.0 on every draw: the difference is the half's spread
    low, high = difference_interval(same, matched, half, paired=True, draws=2000, seed=0)
    one_mean = spread / np.sqrt(2)
    assert low == pytest.approx(0.5 - one_mean, abs=0.01) and high == pytest.approx(0.5 + one_mean, abs=0.01)


def lamp_run(clips: Clips, seed: int = 0) -> dict:
    """A metric run's JSON, as `sounding_video.run` writes it, with the given clips as its v2a and joint samples."""
    scored = evaluate(clips, STUDIO_FORMAT, 1, permutations=20, keep_measurements=True)
    return {"date": "2026-12-07T00:00:00+00:00",
            "settings": {"weights": "test", "tolerance": 1, "seed": seed, "samples": len(clips.scenes)},
            "results": {"generated (joint)": scored, "generated (v2a)": scored}}


@pytest.fixture(scope="module")
def lamps() -> Clips:
    return ground_truth_clips(40, 5, STUDIO_FORMAT, ("lamp",))


def test_kept_measurements_give_back_the_scores(lamps):
    from pipelines.metrics.sounding_video import flicker_correlation, pitch_correlation

    kept = evaluate(lamps, STUDIO_FORMAT, 1, permutations=20, keep_measurements=True)["couplings"]
    assert kept["lamp_pitch"]["measurements"]["clips"] == list(range(40))
    measured = kept["lamp_pitch"]["measurements"]
    assert pitch_correlation(measured["video"], measured["audio"]) == pytest.approx(kept["lamp_pitch"]["paired"])
    measured = json.loads(json.dumps(kept["lamp_flicker"]["measurements"]))  # through JSON, as the comparison reads
    assert np.shape(measured["video"]) == (40, 8)
    assert flicker_correlation(measured["video"], measured["audio"]) == pytest.approx(kept["lamp_flicker"]["paired"])
    assert "measurements" not in evaluate(lamps, STUDIO_FORMAT, 1, permutations=20)["couplings"]["lamp_pitch"]


def test_a_model_is_not_told_apart_from_itself_and_a_coupled_one_is_told_from_an_uncoupled_one(lamps):
    rows = {(r["mode"], r["coupling"]): r for r in compare(lamp_run(lamps), lamp_run(lamps), draws=300)["rows"]}
    assert set(rows) == {(mode, name) for mode in ("joint", "v2a") for name in ("lamp_pitch", "lamp_flicker")}
    for (mode, _), row in rows.items():
        assert row["paired"] == (mode == "v2a") and row["difference"] == 0.0
        assert row["verdict"] == "not told apart"
        assert row["interval"] == [0.0, 0.0] if mode == "v2a" else row["interval"][0] < 0 < row["interval"][1]
    # the same lamps with each hum moved to the next clip: nothing coupled any more
    uncoupled = Clips(lamps.frames, np.roll(lamps.audio, 1, axis=0), lamps.scenes)
    rows = compare(lamp_run(lamps), lamp_run(uncoupled), draws=300)["rows"]
    assert [r["verdict"] for r in rows] == ["first more coupled"] * 4
    assert all(r["difference"] > 0.7 for r in rows)
    rows = compare(lamp_run(uncoupled), lamp_run(lamps, seed=1), draws=300)["rows"]  # other clips: never paired
    assert [(r["paired"], r["verdict"]) for r in rows] == [(False, "second more coupled")] * 4
    fewer = Clips(lamps.frames[:30], lamps.audio[:30], lamps.scenes[:30])  # another --samples draws other clips
    assert not any(r["paired"] for r in compare(lamp_run(lamps), lamp_run(fewer), draws=50)["rows"])


def test_runs_that_cannot_be_compared_are_refused_in_plain_words(lamps, tmp_path, capsys):
    from pipelines.metrics.__main__ import main as metrics_main

    run = lamp_run(lamps)
    first, second, old = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "old.json"
    first.write_text(json.dumps(run))
    second.write_text(json.dumps(lamp_run(Clips(lamps.frames, lamps.audio[::-1], lamps.scenes))))
    for coupling in run["results"]["generated (v2a)"]["couplings"].values():
        del coupling["measurements"]
    old.write_text(json.dumps(run))
    with pytest.raises(ValueError, match="run the metric again"):
        load_run(old)
    with pytest.raises(ValueError, match="not a file"):
        load_run(tmp_path / "missing.json")
    with pytest.raises(SystemExit) as stop:
        metrics_main(["sounding_video_comparison", str(first), str(old), "--out", str(tmp_path / "c.json")])
    assert stop.value.code == 2 and "written before 2026-12-07" in capsys.readouterr().err
    report = metrics_main(["sounding_video_comparison", str(first), str(second), "--out", str(tmp_path / "c.json"),
                           "--draws", "100"])
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"])) and saved["draws"] == 100
    assert [r["file"] for r in saved["runs"]] == ["first.json", "second.json"]
    assert "| v2a | lamp_pitch: height ↔ pitch correlation | 40 paired |" in capsys.readouterr().out
