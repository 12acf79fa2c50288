"""Toy-world judges (bundled weights), their ranking scorers, and the Images that Sound metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.metrics.images_that_sound import METHODS, evaluate, table
from pipelines.metrics.judges import JudgeImageScorer, JudgeSoundScorer, class_of_prompt, load_judge
from pipelines.toyworld import sample
from pipelines.toyworld.captioned import CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES

FRESH_SEED = 777  # the judges trained on seeds 0/1 and were tested on 10000/10001


@pytest.fixture(scope="module")
def pictures():
    return sample("image", 32, FRESH_SEED, classes=CORE_IMAGE_CLASSES, height=256, width=64, balanced=True)


@pytest.fixture(scope="module")
def sounds():
    return sample("sound", 16, FRESH_SEED + 1, classes=CORE_SOUND_CLASSES, height=256, width=64, balanced=True)


def test_judges_load_from_bundled_weights_and_classify_fresh_toy_samples(pictures, sounds):
    image_judge, sound_judge = load_judge("image"), load_judge("sound")
    assert image_judge.config.classes == CORE_IMAGE_CLASSES and sound_judge.config.classes == CORE_SOUND_CLASSES
    assert sum(p.numel() for p in image_judge.parameters()) < 150_000
    assert np.mean(np.array(image_judge.predict(pictures.images)) == pictures.classes) >= 0.9
    assert np.mean(np.array(sound_judge.predict(sounds.spectrograms)) == sounds.classes) >= 0.9
    # the pipeline crops 2 of 64 columns: the judges take any width
    assert np.mean(np.array(sound_judge.predict(sounds.spectrograms[..., :62])) == sounds.classes) >= 0.9


@pytest.mark.parametrize("prompt, kind, expected", [
    ("concentric rings", "image", "rings"), ("circles inside circles", "image", "rings"),
    ("a grid of dots", "image", "dots"), ("a skyline of seven towers", "image", "towers"),
    ("Stripes slanting up!", "image", "stripes"), ("a big tower", "image", "towers"),
    ("a chiming bell", "sound", "bells"), ("a bell struck three times", "sound", "bells"),
    ("two rising chirps", "sound", "chirps"), ("knocking on a wood door", "sound", "knocks"),
    ("a humming fridge", "sound", "hums"), ("church bells", "sound", "bells"),
])
def test_prompts_map_to_toy_classes(prompt, kind, expected):
    assert class_of_prompt(prompt, kind) == expected


def test_unknown_ambiguous_or_foreign_prompts_are_refused():
    for prompt, kind in (("a cat", "image"), ("rings and towers", "image")):
        with pytest.raises(ValueError):
            class_of_prompt(prompt, kind)
    with pytest.raises(ValueError, match="does not know"):
        class_of_prompt("wind blowing", "sound", CORE_SOUND_CLASSES)


def test_scorers_give_the_prompted_class_probability(pictures, sounds):
    image_scorer, sound_scorer = JudgeImageScorer.from_pretrained(), JudgeSoundScorer.from_pretrained()
    rings = np.array(pictures.classes) == "rings"
    scores = image_scorer("concentric rings", pictures.images)
    assert scores.shape == (32,) and scores[rings].min() > 0.5 and scores[~rings].max() < 0.5
    bells = np.array(sounds.classes) == "bells"
    scores = sound_scorer("a chiming bell", sounds.audio, sounds.sample_rate)  # from audio, via the spectrogram
    assert scores.shape == (16,) and scores[bells].min() > 0.5 and scores[~bells].max() < 0.5


def coded(image_codes: list[int], sound_codes: list[int]) -> np.ndarray:
    """Stub 'spectrograms' carrying the class each stub judge will see: [N, 1, 2]."""
    return np.stack([[[i, s]] for i, s in zip(image_codes, sound_codes)]).astype(np.float32)


def stub_judge(column: int):
    def probabilities(spectrograms: np.ndarray) -> np.ndarray:
        probs = np.full((len(spectrograms), 4), 0.1)
        probs[np.arange(len(spectrograms)), spectrograms[:, 0, column].astype(int)] = 0.7
        return probs
    return probabilities


def test_evaluate_computes_known_accuracies_from_stub_judges():
    def generate(method, image_class, sound_class, seed):
        i, s = CORE_IMAGE_CLASSES.index(image_class), CORE_SOUND_CLASSES.index(sound_class)
        wrong_i, wrong_s = (i + 1) % 4, (s + 1) % 4
        if method == "image_only":  # image always right, sound right in 1 of 4
            return coded([i] * 4, [s, wrong_s, wrong_s, wrong_s])
        if method == "audio_only":  # sound always right, image never
            return coded([wrong_i] * 4, [s] * 4)
        return coded([i, i, wrong_i, wrong_i], [s, wrong_s, s, wrong_s])  # joint in 1 of 4

    pairs = [("towers", "bells"), ("dots", "hums")]
    result = evaluate(generate, stub_judge(0), stub_judge(1), CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, pairs=pairs)
    m = result["methods"]
    assert m["image_only"] == pytest.approx(dict(image_accuracy=1.0, sound_accuracy=0.25, joint_success=0.25,
                                                 image_prob=0.7, sound_prob=0.25, samples=8))
    assert m["audio_only"] == pytest.approx(dict(image_accuracy=0.0, sound_accuracy=1.0, joint_success=0.0,
                                                 image_prob=0.1, sound_prob=0.7, samples=8))
    assert m["composed"]["joint_success"] == pytest.approx(0.25) and m["imprint"]["image_accuracy"] == 0.5
    assert set(result["pairs"]["composed"]) == {"towers|bells", "dots|hums"}
    assert "| image-only | 1.00 | 0.25 | 0.25 | 0.70 | 0.25 | 8 |" in table(m)


def test_tiny_end_to_end_run_writes_the_json(tmp_path):
    from pipelines.metrics.__main__ import main

    out = tmp_path / "results.json"
    main(["images_that_sound", "--samples-per-pair", "1", "--steps", "2", "--pairs", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert {"date", "machine", "seconds", "settings", "methods", "pairs"} <= set(report)
    assert report["settings"]["steps"] == 2 and report["settings"]["samples_per_pair"] == 1
    assert set(report["methods"]) == set(METHODS)
    for summary in report["methods"].values():
        assert summary["samples"] == 2
        for key in ("image_accuracy", "sound_accuracy", "joint_success", "image_prob", "sound_prob"):
            assert 0.0 <= summary[key] <= 1.0
    assert set(report["pairs"]["composed"]) == {"towers|bells", "towers|chirps"}
