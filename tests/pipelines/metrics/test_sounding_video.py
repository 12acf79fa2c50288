"""The Sounding Video coupling metric: contact and onset detectors with known answers, recovery of the toy world's
true contacts, ~1 on ground truth and clearly less on shuffled pairs, and the CLI end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.metrics.sounding_video import (
    Counts,
    coupling,
    detect_contacts,
    detect_onsets,
    evaluate,
    ground_truth_clips,
    match_count,
)
from pipelines.mm_diffusion import entries
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.registry import REGISTRY
from pipelines.toyworld.videos import FLOOR

STUDIO_FORMAT = ClipFormat(8, 16, 16, 3200, 10, 4000)
TINY_FORMAT = ClipFormat(4, 8, 8, 800, 10, 2000)  # pipelines.train's `tiny` preset


@pytest.fixture(scope="module")
def ground_truth():
    """60 unseen toy bounce clips in the studio model's format, with their true contact frames."""
    return ground_truth_clips(60, 424242, STUDIO_FORMAT, ("bounce",))


def falling_square(contact: int, frames: int = 8, size: int = 16) -> np.ndarray:
    """A white 3×3 square on grey that falls onto the floor (row 0.85·size) at frame `contact`, then rises."""
    video = np.full((frames, size, size, 3), 90, np.uint8)
    floor = int(FLOOR * size)
    for t in range(frames):
        bottom = floor - 2 * abs(t - contact)  # two rows a frame towards the floor, then away
        if bottom >= 3:
            video[t, bottom - 3 : bottom, 6:9] = 255
    return video


def clicks(frames: list[int], fmt: ClipFormat = STUDIO_FORMAT) -> np.ndarray:
    """Silence with a decaying 300 Hz knock starting on each given frame."""
    audio = np.zeros(fmt.audio_samples, np.float32)
    per_frame = fmt.audio_samples // fmt.frames
    knock = 0.5 * np.sin(np.arange(per_frame) * 2 * np.pi * 300 / fmt.sample_rate) * np.exp(-np.arange(per_frame) / 60)
    for frame in frames:
        audio[frame * per_frame : (frame + 1) * per_frame] += knock
    return audio


def test_contact_detector_known_answers():
    assert detect_contacts(falling_square(3), FLOOR).tolist() == [3]
    assert detect_contacts(falling_square(6), FLOOR).tolist() == [6]
    assert detect_contacts(falling_square(0), FLOOR).tolist() == []  # frame 0: no frame before it to compare
    still = np.repeat(falling_square(3)[3:4], 8, axis=0)  # resting on the floor all along: no contact
    assert detect_contacts(still, FLOOR).tolist() == []


def test_onset_detector_known_answers():
    assert detect_onsets(clicks([2, 5]), STUDIO_FORMAT).tolist() == [2, 5]
    assert detect_onsets(clicks([]), STUDIO_FORMAT).tolist() == []  # silence
    noise = np.random.default_rng(0).normal(0, 0.1, STUDIO_FORMAT.audio_samples).astype(np.float32)
    assert detect_onsets(noise, STUDIO_FORMAT).tolist() == []  # steady noise has no onset


def test_matching_and_scores_known_answers():
    assert match_count(np.array([2, 5]), np.array([3]), 1) == 1  # one onset serves one contact only
    assert match_count(np.array([2, 5]), np.array([3, 6]), 1) == 2
    assert match_count(np.array([2, 5]), np.array([4]), 0) == 0
    counts = Counts()
    counts.add(np.array([2, 5]), np.array([2, 6, 7]), 1)
    scores = counts.scores()
    assert (scores["hit_rate"], scores["precision"], scores["recall"]) == (1.0, 2 / 3, 1.0)
    assert scores["f1"] == pytest.approx(2 * 2 / 5) and scores["f1_exact"] == pytest.approx(2 * 1 / 5)
    result = coupling([np.array([2]), np.array([5])], [np.array([2]), np.array([5])], 1)
    assert result["paired"]["f1"] == 1.0 and result["shuffled"]["f1"] == 0.0


def test_detectors_recover_the_toy_worlds_true_contacts(ground_truth):
    frames, audio, truth = ground_truth
    result = evaluate(frames, audio, STUDIO_FORMAT, FLOOR, 1, truth)
    assert sum(len(t) for t in truth) > 80
    for detector in ("video_detector", "audio_detector"):
        assert result[detector]["precision_exact"] >= 0.95, result[detector]
        assert result[detector]["recall_exact"] >= 0.9, result[detector]


def test_metric_is_near_one_on_ground_truth_and_clearly_lower_on_shuffled_pairs(ground_truth):
    frames, audio, truth = ground_truth
    paired, shuffled = (evaluate(frames, audio, STUDIO_FORMAT, FLOOR, 1)["coupling"][k] for k in ("paired",
                                                                                                  "shuffled"))
    assert paired["hit_rate"] >= 0.95 and paired["f1"] >= 0.9 and paired["f1_exact"] >= 0.9
    assert shuffled["f1"] < paired["f1"] - 0.2 and shuffled["f1_exact"] < 0.5


def test_cli_scores_a_tiny_trained_model_and_writes_json(tmp_path, monkeypatch):
    from pipelines.metrics.__main__ import main as metrics_main
    from pipelines.train.__main__ import main as train_main

    model = tmp_path / "model"
    train_main(["mm_diffusion", "--data", "toyworld", "--scenes", "bounce,collide", "--size", "tiny", "--pool", "2",
                "--steps", "1", "--out", str(model)])
    monkeypatch.setattr(entries, "STUDIO_FOLDER", model)
    REGISTRY.forget("mm_diffusion_toyworld")
    try:
        out = tmp_path / "metric.json"
        report = metrics_main(["sounding_video", "--out", str(out), "--samples", "3", "--ground-truth", "6",
                               "--steps", "2", "--batch", "2"])
        v2a = metrics_main(["sounding_video", "--out", str(tmp_path / "v2a.json"), "--mode", "v2a", "--samples", "2",
                            "--ground-truth", "2", "--steps", "2"])
    finally:
        REGISTRY.forget("mm_diffusion_toyworld")
    saved = json.loads(out.read_text())
    assert saved["settings"]["clip_format"] == {"frames": 4, "height": 8, "width": 8, "audio_samples": 800,
                                                "fps": 10, "sample_rate": 2000}
    assert {"date", "machine", "seconds"} <= saved.keys() and report["results"]["generated (joint)"]["clips"] == 3
    assert saved["results"]["ground truth"]["clips"] == 6 and "video_detector" in saved["results"]["ground truth"]
    assert saved["settings"]["scenes"] == ["bounce", "collide"]  # the model's training scenes (its model.json)
    # video -> audio: the videos are held-out toy clips, so their contacts are the detected true ones
    scored = v2a["results"]["generated (v2a)"]
    frames, _, _ = ground_truth_clips(2, 2_000_003, TINY_FORMAT, ("bounce", "collide"))
    assert scored["contacts"] == [detect_contacts(f, FLOOR).tolist() for f in frames]
    assert v2a["settings"]["mode"] == "v2a" and scored["clips"] == 2
