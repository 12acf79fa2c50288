"""The Sounding Video coupling metric: bounce and lamp detectors with known answers, recovery of the toy world's
true contacts, ~1 on ground truth and ~0 on shuffled pairs with a permutation p-value, the scene judge, each model's
sampling options, and the CLI end to end on a tiny MM-Diffusion and a tiny MM-LDM."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipelines.metrics import sounding_video
from pipelines.metrics.sounding_video import (
    MODES,
    Counts,
    bootstrap_interval,
    coupling,
    detect_contacts,
    detect_onsets,
    evaluate,
    flicker_correlation,
    frame_loudness,
    ground_truth_clips,
    hum_pitch,
    lamp_brightness,
    lamp_height,
    match_count,
    permutation_test,
    pitch_correlation,
    sampling_for,
    stream_change,
    train_scene_judge,
)
from pipelines.mm_diffusion import entries
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.registry import REGISTRY
from pipelines.toyworld.videos import FLOOR, lamp_frequency

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


def lamp_clip(top_row: int, lit: list[int], hz: float, fmt: ClipFormat = STUDIO_FORMAT):
    """A 4×4 lamp whose top row is `top_row` on a dark room, bright on the `lit` frames, and a hum at `hz` sounding on
    exactly those frames."""
    frames = np.full((fmt.frames, fmt.height, fmt.width, 3), 15, np.uint8)
    for t in range(fmt.frames):
        frames[t, top_row : top_row + 4, 6:10] = 250 if lit[t] else 80
    per_frame = fmt.audio_samples // fmt.frames
    hum = 0.4 * np.sin(2 * np.pi * hz * np.arange(fmt.audio_samples) / fmt.sample_rate)
    return frames, (hum * np.repeat(np.asarray(lit, float), per_frame)).astype(np.float32)


def test_lamp_and_hum_detectors_known_answers():
    lit = [1, 1, 0, 1, 1, 1, 0, 1]
    frames, audio = lamp_clip(4, lit, 440.0)
    assert lamp_height(frames) == pytest.approx(6 / 16)  # rows 4..7: centre 6
    assert lamp_brightness(frames).round(3).tolist() == pytest.approx(
        [(250 if on else 80) * 0.299 / 255 + (250 if on else 80) * 0.701 / 255 for on in lit], abs=1e-3)
    assert hum_pitch(audio, STUDIO_FORMAT) == pytest.approx(440.0, abs=1.0)
    assert np.argsort(frame_loudness(audio, STUDIO_FORMAT))[:2].tolist() in ([2, 6], [6, 2])
    assert np.isnan(hum_pitch(np.zeros(3200), STUDIO_FORMAT)) and np.isnan(lamp_height(frames[:, :, :, :] * 0))


def test_lamp_scores_known_answers():
    heights = [0.2, 0.3, 0.4, 0.5]  # evenly spaced: reversed, the log pitches fall on a line of slope −1
    assert pitch_correlation(heights, lamp_frequency(np.array(heights)) * 1.3) == pytest.approx(1.0)  # a shift is ok
    assert pitch_correlation(heights, lamp_frequency(np.array(heights[::-1]))) == pytest.approx(-1.0)
    on, off = np.array([1.0, 0.2, 1.0, 0.2]), np.array([0.2, 1.0, 0.2, 1.0])
    assert flicker_correlation([on, on], [on, off]) == pytest.approx(0.0)
    assert flicker_correlation([on, np.ones(4)], [on * 3, off]) == pytest.approx(1.0)  # a steady lamp says nothing


def test_permutation_test_known_answers():
    same = lambda video, audio: float(np.mean([v == a for v, a in zip(video, audio)]))
    result = permutation_test(same, list(range(40)), list(range(40)), 500, seed=0)
    assert result["paired"] == 1.0 and result["p_value"] == pytest.approx(1 / 501)
    assert result["shuffled"] == pytest.approx(1 / 40, abs=0.01)  # one fixed point per permutation on average
    unrelated = permutation_test(same, list(range(40)), list(range(40))[::-1], 500, seed=0)
    assert unrelated["p_value"] > 0.5


def test_bootstrap_interval_known_answers():
    same = lambda video, audio: float(np.mean([v == a for v, a in zip(video, audio)]))
    half = list(range(400)), [i if i % 2 else -1 for i in range(400)]  # every other clip's pair matches: 0.5
    low, high = bootstrap_interval(same, *half, 2000, seed=0)
    spread = 1.96 * np.sqrt(0.25 / 400)  # the normal approximation of a mean of 400 fair coins
    assert low == pytest.approx(0.5 - spread, abs=0.01) and high == pytest.approx(0.5 + spread, abs=0.01)
    assert bootstrap_interval(same, list(range(40)), list(range(40)), 200, seed=0) == [1.0, 1.0]


def test_detectors_recover_the_toy_worlds_true_contacts(ground_truth):
    result = evaluate(ground_truth, STUDIO_FORMAT, 1)
    assert sum(len(t) for t in ground_truth.contacts) > 80
    for detector in ("video_detector", "audio_detector"):
        assert result[detector]["precision_exact"] >= 0.95, result[detector]
        assert result[detector]["recall_exact"] >= 0.9, result[detector]


def test_metric_is_near_one_on_ground_truth_and_clearly_lower_on_shuffled_pairs(ground_truth):
    result = evaluate(ground_truth, STUDIO_FORMAT, 1, permutations=200)
    detail, onsets = result["bounce_detail"], result["couplings"]["bounce_onsets"]
    assert detail["paired"]["hit_rate"] >= 0.95 and detail["paired"]["f1"] >= 0.9
    assert detail["paired"]["f1_exact"] >= 0.9
    assert detail["shuffled"]["f1"] < detail["paired"]["f1"] - 0.2 and detail["shuffled"]["f1_exact"] < 0.5
    assert onsets["paired"] == pytest.approx(detail["paired"]["f1"]) and onsets["margin"] > 0.2
    assert onsets["p_value"] == pytest.approx(1 / 201)


def test_lamp_couplings_are_one_on_ground_truth_and_none_on_shuffled_pairs():
    clips = ground_truth_clips(48, 7, STUDIO_FORMAT, ("lamp",))
    couplings = evaluate(clips, STUDIO_FORMAT, 1, permutations=300)["couplings"]
    assert set(couplings) == {"lamp_pitch", "lamp_flicker"}
    for name in couplings:
        assert couplings[name]["paired"] >= 0.97, couplings[name]
        assert abs(couplings[name]["shuffled"]) < 0.1 and couplings[name]["p_value"] == pytest.approx(1 / 301)


def test_scene_judge_tells_the_scenes_apart_from_real_frames():
    judge, accuracy = train_scene_judge(STUDIO_FORMAT, seed=3, clips_per_scene=12, steps=150)
    assert accuracy >= 0.8
    lamps = ground_truth_clips(6, 11, STUDIO_FORMAT, ("lamp",))
    assert judge(lamps.frames).count("lamp") >= 5


def test_cli_scores_a_tiny_trained_model_and_writes_json(tmp_path, monkeypatch):
    from pipelines.metrics.__main__ import main as metrics_main
    from pipelines.train.__main__ import main as train_main

    model = tmp_path / "model"
    train_main(["mm_diffusion", "--data", "toyworld", "--scenes", "bounce,lamp", "--size", "tiny", "--pool", "2",
                "--steps", "1", "--out", str(model)])
    monkeypatch.setattr(entries, "STUDIO_FOLDER", model)
    REGISTRY.forget("mm_diffusion_toyworld")
    try:
        out = tmp_path / "metric.json"
        report = metrics_main(["sounding_video", "--out", str(out), "--mode", "all", "--samples", "4",
                               "--ground-truth", "8", "--steps", "2", "--batch", "2", "--permutations", "20",
                               "--judge-clips", "4", "--resample-rounds", "2"])
    finally:
        REGISTRY.forget("mm_diffusion_toyworld")
    saved = json.loads(out.read_text())
    assert saved["settings"]["clip_format"] == {"frames": 4, "height": 8, "width": 8, "audio_samples": 800,
                                                "fps": 10, "sample_rate": 2000}
    assert {"date", "machine", "seconds", "scene_judge"} <= saved.keys()
    assert saved["settings"]["a2v_steering"] == {"guidance_scale": 0.0, "guidance_scale_form": "paper",
                                                 "resample_rounds": 2, "clean_condition": False, "resample_share": 0.6}
    assert saved["settings"]["v2a_steering"] == {"clean_condition": False}
    assert (saved["settings"]["sampler"], saved["settings"]["steps"]) == ("ddpm", 2)  # the tab's sampler
    assert saved["settings"]["model"] == "mm_diffusion" and saved["settings"]["variant"] == "studio"
    for mode, modality in (("a2v", "audio"), ("v2a", "video")):  # returned as given
        assert saved["results"][f"generated ({mode})"]["given_stream"] == {"modality": modality, "max_abs_change": 0.0}
    assert saved["settings"]["scenes"] == ["bounce", "lamp"]  # the model's training scenes (its model.json)
    assert set(saved["results"]) == {"ground truth", "generated (joint)", "generated (a2v)", "generated (v2a)"}
    assert saved["results"]["ground truth"]["clips"] == 8 and report["results"]["generated (joint)"]["clips"] == 4
    assert set(saved["scene_judge"]["recognised_as_a_training_scene"]) == {"real", "joint", "a2v"}
    # video -> audio: the videos are held-out toy clips of the model's scenes, scored under their true scenes
    given = ground_truth_clips(4, 2_000_003, TINY_FORMAT, ("bounce", "lamp"))
    assert saved["results"]["generated (v2a)"]["scenes"] == {s: given.scenes.count(s) for s in set(given.scenes)}


def test_each_model_gets_its_own_sampling_defaults_and_refuses_the_others_options():
    from pipelines.mm_diffusion.entries import LEARNT_A2V, STUDIO_A2V, STUDIO_JOINT
    from pipelines.mm_ldm.entries import (
        STUDIO_DECODER_STEPS,
        STUDIO_GUIDANCE,
        STUDIO_RECONSTRUCTION,
        STUDIO_RESAMPLE_ROUNDS,
        STUDIO_STEPS,
    )

    ldm = sampling_for("mm_ldm", steps=None, decoder_steps=None, guidance=None, sampler=None, reconstruction=None)
    assert ldm.settings == {"steps": STUDIO_STEPS, "decoder_steps": STUDIO_DECODER_STEPS, "decoder_guidance": 2.5,
                            "guidance": STUDIO_GUIDANCE, "reconstruction": {"a2v": 300.0, "v2a": 0.0},
                            "resample_rounds": STUDIO_RESAMPLE_ROUNDS, "resample_share": 0.6}
    assert "guidance_scale" not in ldm.arguments["joint"]  # φ and λ steer a given stream only
    assert "reconstruction_scale" not in ldm.arguments["joint"]
    assert STUDIO_RESAMPLE_ROUNDS == {"joint": 1, "a2v": 2, "v2a": 1}  # only audio -> video gains from resampling
    assert (STUDIO_RECONSTRUCTION["a2v"], STUDIO_RECONSTRUCTION["v2a"]) == (300.0, 0.0)  # λ per mode
    guided = {**ldm.arguments["joint"], "guidance_scale": STUDIO_GUIDANCE}
    assert ldm.arguments["v2a"] == {**guided, "reconstruction_scale": 0.0}
    assert ldm.arguments["a2v"] == {**guided, "reconstruction_scale": 300.0, "resample_rounds": 2}
    given = sampling_for("mm_ldm", reconstruction=30.0)
    assert given.arguments["a2v"]["reconstruction_scale"] == given.arguments["v2a"]["reconstruction_scale"] == 30.0
    rounds = sampling_for("mm_ldm", joint_resample_rounds=4, resample_rounds=2, resample_share=0.5).arguments
    assert (rounds["joint"]["resample_rounds"], rounds["v2a"]["resample_rounds"]) == (4, 2)
    assert rounds["joint"]["resample_share"] == rounds["a2v"]["resample_share"] == 0.5
    diffusion = sampling_for("mm_diffusion", steps=20, sampler=None, resample_rounds=None, resample_share=None)
    plain = {"sampler": "ddpm", "num_inference_steps": 20}
    corrected = {**plain, "resample_rounds": STUDIO_JOINT.resample_rounds, "resample_share": 0.6}
    assert diffusion.arguments["joint"] == corrected and diffusion.arguments["v2a"] == {**plain,
                                                                                        "clean_condition": False}
    assert diffusion.settings["joint_resample_rounds"] == STUDIO_JOINT.resample_rounds > 1
    assert sampling_for("mm_diffusion", joint_resample_rounds=1).arguments["joint"]["resample_rounds"] == 1
    assert diffusion.arguments["a2v"] == {**plain, **STUDIO_A2V.arguments(), "resample_share": 0.6}
    learnt = sampling_for("mm_diffusion", True, steps=20)  # weights trained with --clean-condition
    assert learnt.arguments["a2v"] == {**plain, **LEARNT_A2V.arguments(), "resample_share": 0.6}
    assert learnt.arguments["v2a"] == {**plain, "clean_condition": True}
    paper = sampling_for("mm_diffusion", True, clean_condition=False)
    assert not paper.arguments["a2v"]["clean_condition"] and not paper.arguments["v2a"]["clean_condition"]
    replacement = sampling_for("mm_diffusion", gradient_guidance=0.0, guidance_form="paper", resample_rounds=3)
    assert {k: replacement.arguments["a2v"][k] for k in ("guidance_scale", "guidance_scale_form", "resample_rounds")} \
        == {"guidance_scale": 0.0, "guidance_scale_form": "paper", "resample_rounds": 3}
    with pytest.raises(ValueError, match="--gradient-guidance does not apply to MM-LDM"):
        sampling_for("mm_ldm", gradient_guidance=3.0)
    with pytest.raises(ValueError, match="--sampler, --clean-condition do not apply to MM-LDM, whose sampling "
                                         "options are --steps, --decoder-steps, --guidance, --reconstruction, "
                                         "--joint-resample-rounds, --resample-rounds, --resample-share"):
        sampling_for("mm_ldm", sampler="ddim", clean_condition=True, steps=None)
    with pytest.raises(ValueError, match="--guidance does not apply to MM-Diffusion"):
        sampling_for("mm_diffusion", guidance=1.0, decoder_steps=None)


def test_stream_change_is_zero_for_a_stream_returned_as_given():
    frames = np.random.default_rng(0).integers(0, 200, (2, 4, 8, 8, 3)).astype(np.uint8)
    assert stream_change("video", frames, frames.copy()) == {"modality": "video", "max_abs_change": 0.0}
    moved = frames.copy()
    moved[1, 2, 3, 4, 0] += 7
    assert stream_change("video", frames, moved)["max_abs_change"] == 7.0  # in uint8 levels
    audio = np.zeros((2, 800), np.float32)
    assert stream_change("audio", audio, audio + np.eye(2, 800, 5, dtype=np.float32) * 0.25)["max_abs_change"] == 0.25


TINY_MM_LDM_FORMAT = {"frames": 8, "height": 16, "width": 16, "audio_samples": 12800, "fps": 10, "sample_rate": 16000}


@pytest.fixture(scope="module")
def tiny_mm_ldm(tmp_path_factory):
    """A tiny MM-LDM (8 frames of 16², 0.8 s at 16 kHz) saved with a toy-world record of two scenes (its classes)."""
    import torch

    from pipelines.mm_ldm.modeling_mm_ldm import build_components
    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline

    torch.manual_seed(0)
    pipe = MMLDMPipeline(**build_components("tiny"), training_record={"data": "toyworld",
                                                                       "classes": ["bounce", "lamp"]})
    return pipe.save_pretrained(tmp_path_factory.mktemp("mm_ldm") / "model")


def test_cli_scores_a_tiny_mm_ldm_folder_in_every_mode(tiny_mm_ldm, tmp_path, monkeypatch):
    from pipelines.metrics.__main__ import main as metrics_main

    formats = []  # every clip format the ground truth and the scene judge were made in
    original_clips, original_judge = sounding_video.ground_truth_clips, sounding_video.train_scene_judge
    monkeypatch.setattr(sounding_video, "ground_truth_clips",
                        lambda count, seed, fmt, scenes: formats.append(fmt) or original_clips(count, seed, fmt, scenes))
    monkeypatch.setattr(sounding_video, "train_scene_judge",  # a short training: the judge's size is what is checked
                        lambda fmt, seed, clips: formats.append(fmt) or original_judge(fmt, seed, clips, steps=20))
    out = tmp_path / "metric.json"
    metrics_main(["sounding_video", "--out", str(out), "--weights", str(tiny_mm_ldm), "--mode", "all",
                  "--samples", "3", "--ground-truth", "6", "--steps", "2", "--decoder-steps", "2", "--guidance", "2",
                  "--batch", "2", "--permutations", "10", "--judge-clips", "2"])
    saved = json.loads(out.read_text())
    settings = saved["settings"]
    assert (settings["model"], settings["steps"], settings["decoder_steps"], settings["guidance"]) == ("mm_ldm", 2, 2,
                                                                                                        2.0)
    assert not {"sampler", "a2v_steering"} & settings.keys() and settings["variant"] is None  # a folder
    assert settings["clip_format"] == TINY_MM_LDM_FORMAT and settings["scenes"] == ["bounce", "lamp"]
    assert {dataclasses.asdict(fmt) == TINY_MM_LDM_FORMAT for fmt in formats} == {True}  # truth and judge alike
    assert set(saved["results"]) == {"ground truth", "generated (joint)", "generated (a2v)", "generated (v2a)"}
    assert [saved["results"][f"generated ({mode})"]["clips"] for mode in MODES] == [3, 3, 3]
    assert set(saved["scene_judge"]["recognised_as_a_training_scene"]) == {"real", "joint", "a2v"}
    # the given stream comes back from MM-LDM unchanged, and the given clips are scored under their true scenes
    assert "given_stream" not in saved["results"]["generated (joint)"]
    assert saved["results"]["generated (a2v)"]["given_stream"] == {"modality": "audio", "max_abs_change": 0.0}
    assert saved["results"]["generated (v2a)"]["given_stream"] == {"modality": "video", "max_abs_change": 0.0}
    given = original_clips(3, 2_000_003, ClipFormat(**TINY_MM_LDM_FORMAT), ("bounce", "lamp"))
    for mode in ("a2v", "v2a"):
        assert saved["results"][f"generated ({mode})"]["scenes"] == {s: given.scenes.count(s) for s in
                                                                     set(given.scenes)}


def test_reconstructed_scores_held_out_clips_through_mm_ldms_autoencoder(tiny_mm_ldm, tmp_path, monkeypatch):
    """--mode reconstructed: the v2a/a2v held-out clips, each passed through the autoencoder alone with its decoder
    noise seeded as the metric seeds samples; MM-Diffusion, which has no autoencoder, is refused."""
    import torch

    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
    from tests.factories import tiny_mm_diffusion

    original_judge = sounding_video.train_scene_judge  # a short training: the judge is not what is checked here
    monkeypatch.setattr(sounding_video, "train_scene_judge",
                        lambda fmt, seed, clips: original_judge(fmt, seed, clips, steps=20))
    report = sounding_video.run(tmp_path / "r.json", samples=3, ground_truth=4, decoder_steps=2,
                                weights=str(tiny_mm_ldm), modes=("reconstructed",), batch=2, permutations=10,
                                judge_clips=2, verbose=False)
    assert report["settings"]["modes"] == ["reconstructed"]
    assert report["results"]["generated (reconstructed)"]["clips"] == 3
    given_format = ClipFormat(**TINY_MM_LDM_FORMAT)
    given = sounding_video.ground_truth_clips(3, 2_000_003, given_format, ("bounce", "lamp"))
    pipe = MMLDMPipeline.from_pretrained(tiny_mm_ldm)
    expected = pipe.reconstruct(given.frames[:1], given.audio[:1], decoder_steps=2,
                                generator=[torch.Generator().manual_seed(0)])
    clips = sounding_video.generated_clips(pipe, "reconstructed", given_format, ("bounce", "lamp"), 3, 0, 2, None,
                                           {"decoder_steps": 2, "decoder_guidance_scale": 2.5})
    frames, audio = clips.frames, clips.audio
    assert np.array_equal(frames[:1], expected.video)  # a batch of 2 against one clip: Griffin-Lim magnifies the
    assert np.allclose(audio[:1], expected.audio, atol=3e-3)  # batch's rounding differences (test_pipeline)
    diffusion = tmp_path / "mm_diffusion"
    tiny_mm_diffusion().save_pretrained(diffusion)
    with pytest.raises(ValueError, match="MM-Diffusion has none"):
        sounding_video.run(tmp_path / "x.json", samples=2, ground_truth=4, weights=str(diffusion),
                           modes=("reconstructed",), verbose=False)


def test_cli_refuses_another_models_options_and_unknown_weights(tiny_mm_ldm, tmp_path, monkeypatch, capsys):
    from pipelines.metrics.__main__ import main as metrics_main
    from pipelines.mm_ldm import entries as mm_ldm_entries

    monkeypatch.setattr(mm_ldm_entries, "STUDIO_FOLDER", tiny_mm_ldm)  # the registry entry, on the tiny model
    REGISTRY.forget("mm_ldm_toyworld")
    try:
        with pytest.raises(SystemExit) as exit_status:
            metrics_main(["sounding_video", "--out", str(tmp_path / "x.json"), "--weights", "mm_ldm_toyworld",
                          "--sampler", "ddim"])
    finally:
        REGISTRY.forget("mm_ldm_toyworld")
    assert exit_status.value.code == 2
    assert "error: --sampler does not apply to MM-LDM" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        metrics_main(["sounding_video", "--out", str(tmp_path / "y.json"), "--weights", "no_such_model"])
    assert "error: --weights 'no_such_model' is neither a registry name nor a model folder" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
