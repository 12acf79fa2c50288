"""`python -m pipelines.train impact_sound`: the four stages on the toy world and on a Greatest Hits-style folder
(mp4 + hits.jsonl built here), resume, and the exported folder loaded by `ImpactDiffusionPipeline`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile
import torch

from pipelines.impact_sound.modal import Modes, synthesize
from pipelines.impact_sound.modeling_impact_sound import ImpactDiffusionConfig
from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline
from pipelines.impact_sound.spectrogram import NUM_SAMPLES, SAMPLE_RATE
from pipelines.media import write_video
from pipelines.train.__main__ import main
from pipelines.train.common import LossLog, checkpoint_dirs
from pipelines.train.impact_sound import clip_audio, folder_clips, read_hits_index, toyworld_clips, video_soundtrack

TINY_RUN = ["impact_sound", "--data", "toyworld", "--size", "tiny", "--clips", "8", "--batch-size", "4",
            "--residual-steps", "2", "--residual-batch-size", "2", "--visual-steps", "3", "--visual-batch-size", "4",
            "--checkpoint-every", "2", "--seed", "1"]
COLOURS = {"wood": (0.55, 0.35, 0.15), "glass": (0.7, 0.85, 1.0)}


def stage_steps(out, stage: str) -> list[int]:
    return [r["step"] for r in LossLog(out / "loss_log.jsonl").read() if r["stage"] == stage]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("impact") / "run"
    main(TINY_RUN + ["--out", str(out), "--steps", "4"])
    return out


def test_toyworld_run_writes_every_stage_and_a_loadable_folder(trained):
    for stage, steps in (("residual", [1, 2]), ("visual", [1, 2, 3]), ("diffusion", [1, 2, 3, 4])):
        assert stage_steps(trained, stage) == steps
        assert (trained / "checkpoints" / stage / "DONE").is_file()
    assert [p.name for p in checkpoint_dirs(trained / "checkpoints" / "diffusion")] == ["step-2", "step-4"]
    summary = json.loads((trained / "training_summary.json").read_text())
    assert summary["clips"] == 8 and set(summary["visual_accuracy"]) == {"train", "held_out"}
    assert (trained / "loss_curve.png").stat().st_size > 1000
    exported = {str(p.relative_to(trained)) for p in trained.rglob("*") if "checkpoints" not in p.parts}
    assert exported >= {"config.json", "denoiser.safetensors", "visual_encoder.safetensors", "bank.json",
                        "bank.safetensors", "residual/config.json", "residual/model.safetensors"}  # save_pretrained's
    pipeline = ImpactDiffusionPipeline.from_pretrained(trained)
    assert pipeline.model_config.visual_classes == ("metal", "aluminium", "glass", "ceramic", "wood", "plastic")
    assert len(pipeline.bank) == 8 and pipeline.bank.labels is not None
    out = pipeline(np.random.default_rng(0).random((2, 6, 20, 20, 3)), num_inference_steps=3,
                   generator=torch.Generator().manual_seed(0))
    assert out.audio.shape == (2, NUM_SAMPLES) and np.isfinite(out.audio).all()


def test_the_bank_holds_the_training_clips_under_their_own_visual_features(trained):
    """Re-encoding the training clips' frames with the loaded visual encoder retrieves each clip's own entry."""
    pipeline = ImpactDiffusionPipeline.from_pretrained(trained)
    clips = toyworld_clips(8, 1, pipeline.model_config)
    features = pipeline.visual_features(clips.frames, hit_frame=pipeline.model_config.num_frames // 2)
    entries = pipeline.retrieve(features)
    assert [e.index for e in entries] == list(range(8))
    assert [e.label for e in entries] == clips.materials
    assert all(len(e.modes) >= 1 and len(e.residual) == 100 for e in entries)


def test_resume_continues_the_diffusion_stage(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    (copy / "checkpoints" / "diffusion" / "DONE").unlink()  # as if stopped after its last checkpoint
    main(TINY_RUN + ["--out", str(copy), "--steps", "6", "--resume"])
    assert stage_steps(copy, "diffusion") == [1, 2, 3, 4, 5, 6]
    assert stage_steps(copy, "residual") == [1, 2]  # finished stages are not run again
    ImpactDiffusionPipeline.from_pretrained(copy)


# --- a Greatest Hits-style folder ---------------------------------------------------------------------------------


def write_hits_video(path, colour, hit_times, seconds=1.5, fps=30, with_sound=True) -> np.ndarray:
    """An mp4 of a square of `colour` that jumps at each hit, with a modal hit in its sound at each hit time (the
    sound is returned, and muxed in when `with_sound`)."""
    frames = []
    for index in range(round(seconds * fps)):
        frame = np.full((48, 48, 3), 40, dtype=np.uint8)
        lifted = any(0 <= hit - index / fps < 0.15 for hit in hit_times)
        top = 8 if lifted else 24
        frame[top : top + 16, 16:32] = (np.array(colour) * 255).astype(np.uint8)
        frames.append(frame)
    sound = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
    hit = synthesize(Modes([800.0, 2100.0], [-3.0, -9.0], [0.3, 0.1]))
    for time in hit_times:
        start = round(time * SAMPLE_RATE)
        sound[start : start + NUM_SAMPLES] += hit[: len(sound) - start]
    write_video(path, frames, fps, audio=sound if with_sound else None, sample_rate=SAMPLE_RATE)
    return sound


@pytest.fixture(scope="module")
def hits_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("greatest_hits")
    write_hits_video(folder / "wood.mp4", COLOURS["wood"], [0.3, 0.9])
    sound = write_hits_video(folder / "glass.mp4", COLOURS["glass"], [0.4, 1.0], with_sound=False)
    soundfile.write(str(folder / "glass.wav"), sound, SAMPLE_RATE, subtype="FLOAT")
    lines = [{"video": "wood.mp4", "time": 0.3, "material": "wood"},
             {"video": "glass.mp4", "time": 0.4, "material": "glass", "audio": "glass.wav"},
             {"video": "wood.mp4", "time": 0.9, "material": "wood"},
             {"video": "glass.mp4", "time": 1.0, "material": "glass", "audio": "glass.wav"}]
    (folder / "hits.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return folder, sound


def test_folder_clips_take_frames_around_the_hit_and_the_sound_from_the_hit(hits_folder):
    folder, glass_sound = hits_folder
    config = ImpactDiffusionConfig.preset("tiny", visual_classes=("glass", "wood"))
    clips = folder_clips(folder, config)
    assert clips.materials == ["wood", "glass", "wood", "glass"]
    assert clips.frames.shape == (4, config.num_frames, config.frame_size, config.frame_size, 3)
    assert clips.frames.dtype == np.uint8 and clips.audio.shape == (4, NUM_SAMPLES)
    np.testing.assert_allclose(clips.audio[1], clip_audio(glass_sound, 0.4), atol=1e-6)  # the wav, exactly
    # The wood clip's sound comes from the video's own (AAC) soundtrack and starts with the hit.
    onset = int(np.argmax(np.abs(clips.audio[0]) > 0.1 * np.abs(clips.audio[0]).max()))
    assert onset < 0.03 * SAMPLE_RATE and np.abs(clips.audio[0]).max() > 0.2
    # Wood frames are brown, glass frames pale blue: the colour of the square survives.
    assert clips.frames[0, ..., 0].max() > clips.frames[0, ..., 2].max()
    assert clips.frames[1, ..., 2].max() > clips.frames[1, ..., 0].max()


def test_a_video_without_sound_needs_an_audio_file(hits_folder):
    folder, _ = hits_folder
    assert np.abs(video_soundtrack(folder / "wood.mp4")).max() > 0.2
    with pytest.raises(ValueError, match="glass.mp4 has no readable soundtrack .*give an \"audio\" file"):
        video_soundtrack(folder / "glass.mp4")


def test_a_greatest_hits_style_folder_trains_and_loads(hits_folder, tmp_path):
    folder, _ = hits_folder
    out = tmp_path / "run"
    main(["impact_sound", "--data", str(folder), "--out", str(out), "--size", "tiny", "--steps", "2",
          "--batch-size", "2", "--residual-steps", "1", "--residual-batch-size", "2", "--visual-steps", "1",
          "--visual-batch-size", "2", "--checkpoint-every", "5"])
    pipeline = ImpactDiffusionPipeline.from_pretrained(out)
    assert pipeline.model_config.visual_classes == ("glass", "wood") and pipeline.bank.labels == ["wood", "glass"] * 2
    hits = pipeline.render_hits(np.random.default_rng(0).random((30, 24, 24, 3)), 30.0, [0.2, 0.7],
                                num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert hits.audio.shape == (2, NUM_SAMPLES) and hits.soundtrack.shape == (SAMPLE_RATE,)


@pytest.mark.parametrize("lines, message", [
    (None, "no hits.jsonl"),
    (["{not json"], "not valid JSON"),
    ([json.dumps({"video": "wood.mp4", "material": "wood"})], "need video, time and material"),
    ([json.dumps({"video": "missing.mp4", "time": 0.1, "material": "wood"})], "is not in"),
    ([json.dumps({"video": "wood.mp4", "time": -1, "material": "wood"})], "time must be"),
    ([], "lists no hits"),
])
def test_bad_hit_lists_get_clear_messages(hits_folder, tmp_path, lines, message):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(hits_folder[0] / "wood.mp4", folder / "wood.mp4")
    if lines is not None:
        (folder / "hits.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=message):
        read_hits_index(folder)


def test_one_material_is_not_enough(hits_folder, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(hits_folder[0] / "wood.mp4", folder / "wood.mp4")
    (folder / "hits.jsonl").write_text(json.dumps({"video": "wood.mp4", "time": 0.3, "material": "wood"}))
    with pytest.raises(ValueError, match="at least two materials"):
        main(["impact_sound", "--data", str(folder), "--out", str(tmp_path / "run"), "--size", "tiny"])
