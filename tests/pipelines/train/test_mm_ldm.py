"""`python -m pipelines.train mm_ldm --stage vae|autoencoder|dit`: tiny toy-world runs of the three stages, what each
writes, resume, `--init`, the exported pipeline loading and sampling, the clip data (windows, audio images, labels) and
a folder of videos with bad files skipped."""

from __future__ import annotations

import json
import shutil
from argparse import Namespace

import numpy as np
import pytest
import soundfile
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import load_file

from pipelines.audio import SPECS, audio_image
from pipelines.media import write_video
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.mm_ldm.modeling_autoencoder import MultiModalAutoencoder
from pipelines.mm_ldm.modeling_mm_ldm import PRESETS
from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
from pipelines.train.__main__ import main
from pipelines.train.common import LossLog, checkpoint_dirs
from pipelines.train.mm_ldm import (
    VAELatents,
    clip_format,
    folder_clips,
    make_clips,
    measured_scale,
    perceptual_latents,
    toyworld_clips,
    vae_scale,
)

TINY = ["mm_ldm", "--data", "toyworld", "--size", "tiny", "--pool", "2", "--steps", "2", "--ema-decay", "0",
        "--checkpoint-every", "1", "--seed", "3", "--save-dtype", "fp16"]
MODULES = {"vae": "vae", "autoencoder": "autoencoder", "dit": "transformer"}
TINY_FORMAT = ClipFormat(8, 16, 16, 12800, 10, 16000)


def run(out, stage: str, *extra: str) -> None:
    main(TINY + ["--out", str(out), "--stage", stage, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The three stages, 2 steps each, EMA decay 0, exported in fp16, into one folder."""
    out = tmp_path_factory.mktemp("mm_ldm_train") / "run"
    for stage in ("vae", "autoencoder", "dit"):
        run(out, stage)
    return out


def weights(folder, module: str) -> dict[str, torch.Tensor]:
    return load_file(folder / module / "diffusion_pytorch_model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, tensor in a.items():
        torch.testing.assert_close(tensor, b[key], rtol=0, atol=0)


# The clip data -------------------------------------------------------------------------------------------------------


def test_clips_are_windows_with_their_frames_audio_images_and_labels():
    spec = SPECS["mm_ldm_studio"]
    ramp = [np.full((10, 16, 16, 3), 10 * k, np.uint8) + np.arange(10, dtype=np.uint8)[:, None, None, None]
            for k in (1, 2)]
    audios = [np.sin(np.arange(10 * 1600) * 2 * np.pi * f / 16000).astype(np.float32) * 0.5 for f in (300, 900)]
    clips = make_clips(ramp, audios, [1, 0], ["a", "b"], TINY_FORMAT, spec, stride=1)
    assert len(clips) == 3 + 3 and clips.labels.tolist() == [1, 1, 1, 0, 0, 0]  # 10 frames hold 3 windows of 8
    rows = clips.frame_rows(np.array([1, 5]))
    np.testing.assert_array_equal(clips.frames[rows][..., 0, 0, 0], [np.arange(1, 9) + 10, np.arange(2, 10) + 20])
    expected = audio_image(audios[1][2 * 1600 : 2 * 1600 + 12800], spec, 16, 16)
    np.testing.assert_array_equal(clips.audio_images[5], expected[0])
    np.testing.assert_array_equal(expected[0], expected[2])  # gray: one channel stored


def test_toyworld_labels_are_the_scenes():
    from pipelines.toyworld.videos import sample_videos

    args = Namespace(scenes="lamp,spin", pool=4, seed=5, clip_stride=8)
    clips = toyworld_clips(args, TINY_FORMAT, SPECS["mm_ldm_studio"])
    scenes = sample_videos(4, 5, scenes=("lamp", "spin")).scenes
    assert clips.classes == ["lamp", "spin"] and len(clips) == 4 * 2  # 16 frames: windows at 0 and 8
    assert [clips.classes[label] for label in clips.labels] == [s for s in scenes for _ in range(2)]
    assert clips.frames.shape == (4 * 16, 16, 16, 3) and clip_format(PRESETS["tiny"]) == TINY_FORMAT


def test_measured_scale_gives_unit_spread():
    latents = torch.randn(100, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 7 + 1
    assert float((latents * measured_scale(latents)).std()) == pytest.approx(1.0, abs=1e-6)


# The three stages ----------------------------------------------------------------------------------------------------


def test_each_stage_writes_its_checkpoints_log_and_networks(trained):
    records = LossLog(trained / "loss_log.jsonl").read()
    assert [(r["stage"], r["step"]) for r in records] == [(s, k) for s in ("vae", "autoencoder", "dit")
                                                          for k in (1, 2)]
    assert {"l1", "kl"} <= records[0].keys()
    assert {"mse", "classification", "contrastive", "kl", "total"} <= records[2].keys()
    assert records[3]["classification"] == 0.0  # one class (the lamp): its cross-entropy is ln 1
    for stage in ("vae", "autoencoder", "dit"):
        assert [p.name for p in checkpoint_dirs(trained / "checkpoints" / stage)] == ["step-1", "step-2"]
        assert all(t.dtype == torch.float16 for t in weights(trained, MODULES[stage]).values())
    summary = json.loads((trained / "training_summary.json").read_text())
    assert list(summary) == ["vae", "autoencoder", "dit"] and summary["dit"]["steps"] == 2
    assert summary["vae"]["clips"] == 2 * 9  # two 16-frame toy videos, windows of 8 every frame
    assert (trained / "loss_curve.png").is_file()


def test_vae_scale_and_latent_scale_give_unit_spread(trained):
    pipe = MMLDMPipeline.from_pretrained(trained)
    args = Namespace(scenes="lamp", pool=2, seed=3, clip_stride=1)
    clips = toyworld_clips(args, TINY_FORMAT, SPECS["mm_ldm_studio"])
    exported = pipe.vae.config.scaling_factor
    assert exported == pytest.approx(vae_scale(pipe.vae, clips, 3), rel=1e-2)  # fp16 export: weights rounded
    pipe.vae.register_to_config(scaling_factor=exported)
    with torch.no_grad():
        z_audio, z_video = perceptual_latents(pipe.autoencoder, VAELatents.of(pipe.vae, clips), clips)
    spread = torch.cat([z_audio.flatten(), z_video.flatten()]).std() * pipe.latent_scale
    assert float(spread) == pytest.approx(1.0, abs=1e-4)


def test_exported_folder_loads_and_samples(trained):
    pipe = MMLDMPipeline.from_pretrained(trained)
    assert pipe.training_record["classes"] == ["lamp"] and pipe.training_record["steps"] == {
        "vae": 2, "autoencoder": 2, "dit": 2}
    generator = torch.Generator().manual_seed(0)
    output = pipe(num_inference_steps=2, decoder_steps=2, num_samples=2, generator=generator)
    assert output.video.shape == (2, 8, 16, 16, 3) and output.video.dtype == np.uint8
    assert output.audio.shape == (2, 12800) and np.isfinite(output.audio).all()
    a2v = pipe(audio=output.audio[0], num_inference_steps=2, decoder_steps=2, generator=generator)
    assert a2v.video.shape == (1, 8, 16, 16, 3)


def test_ema_decay_zero_exports_the_live_weights(trained):
    live = load_file(trained / "checkpoints" / "dit" / "step-2" / "model.safetensors")
    exported = weights(trained, "transformer")
    assert {f"transformer.{k}" for k in exported} == live.keys()
    for key, tensor in exported.items():
        torch.testing.assert_close(tensor, live[f"transformer.{key}"].half(), rtol=0, atol=0)


@pytest.mark.parametrize("stage", ["vae", "autoencoder", "dit"])
def test_resume_from_step_one_reproduces_step_two(trained, tmp_path, stage):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    shutil.rmtree(copy / "checkpoints" / stage / "step-2")
    run(copy, stage, "--resume")
    assert [p.name for p in checkpoint_dirs(copy / "checkpoints" / stage)] == ["step-1", "step-2"]
    resumed, straight = (LossLog(folder / "loss_log.jsonl").read() for folder in (copy, trained))
    assert [r for r in resumed if r["stage"] == stage] == [r for r in straight if r["stage"] == stage]
    assert sorted(map(json.dumps, resumed)) == sorted(map(json.dumps, straight))  # other stages' records kept
    assert_same_weights(weights(copy, MODULES[stage]), weights(trained, MODULES[stage]))


def test_dit_previews_are_joint_samples_of_the_exported_model(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    run(copy, "dit", "--preview-every", "2")
    records = LossLog(copy / "loss_log.jsonl").previews()
    assert [(r["stage"], r["step"], r["preview"]) for r in records] == [
        ("dit", 2, ["previews/step-000002.png", "previews/step-000002.wav"])]
    assert np.asarray(Image.open(copy / "previews" / "step-000002.png")).shape == (64, 8 * 64, 3)  # 16² shown at 64²
    audio, rate = soundfile.read(copy / "previews" / "step-000002.wav")
    assert rate == 16000 and len(audio) == 12800
    assert_same_weights(weights(copy, "transformer"), weights(trained, "transformer"))  # previews change nothing


def test_init_reproduces_the_starting_weights_before_the_first_step(trained, tmp_path):
    out = tmp_path / "fine"
    for stage in ("vae", "autoencoder", "dit"):
        main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", stage, "--init", str(trained), "--steps", "0",
              "--out", str(out)])
    for module in MODULES.values():
        assert_same_weights(weights(out, module), {k: v.float() for k, v in weights(trained, module).items()})
    started = MMLDMPipeline.from_pretrained(out)
    assert started.latent_scale == MMLDMPipeline.from_pretrained(trained).latent_scale
    assert started.training_record["init"] == str(trained) and started.training_record["size"] == "init"


def test_init_vae_fine_tunes_the_decoder_only(trained, tmp_path):
    out = tmp_path / "fine"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "vae", "--init", str(trained), "--steps", "1",
          "--ema-decay", "0", "--out", str(out)])
    before, after = weights(trained, "vae"), weights(out, "vae")
    changed = {key for key in before if not torch.equal(before[key].float(), after[key])}
    assert changed and all(key.startswith(("decoder.", "post_quant_conv.")) for key in changed)
    assert AutoencoderKL.from_pretrained(out / "vae").config.scaling_factor == \
        AutoencoderKL.from_pretrained(trained / "vae").config.scaling_factor


def test_decoder_only_keeps_the_latent_space_and_the_dit(trained, tmp_path):
    out = tmp_path / "decoder"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "autoencoder", "--init", str(trained),
          "--decoder-only", "--frames-per-clip", "3", "--high-noise-share", "0.5", "--steps", "1", "--ema-decay", "0",
          "--out", str(out)])
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "dit", "--init", str(trained), "--steps", "0",
          "--out", str(out)])
    before, after = weights(trained, "autoencoder"), weights(out, "autoencoder")
    changed = {key for key in before if not torch.equal(before[key].float(), after[key])}
    assert changed and any(key.startswith("decoder.") for key in changed)
    assert not any(key.startswith(("audio_encoder.", "video_encoder.", "content_frame")) for key in changed)
    assert_same_weights(weights(out, "transformer"), {k: v.float() for k, v in weights(trained, "transformer").items()})
    summary = json.loads((out / "training_summary.json").read_text())["autoencoder"]
    assert summary["decoder_only"] is True and (summary["frames_per_clip"], summary["high_noise_share"]) == (3, 0.5)
    started, fine = MMLDMPipeline.from_pretrained(trained), MMLDMPipeline.from_pretrained(out)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (1, fine.num_frames, fine.frame_size, fine.frame_size, 3), dtype=np.uint8)
    audio = (0.5 * np.sin(np.arange(fine.spec.clip_samples) * 0.1)).astype(np.float32)[None]
    for a, b in zip((started.encode_video(started.video_tensor(video, 1)), started.encode_audio(audio)),
                    (fine.encode_video(fine.video_tensor(video, 1)), fine.encode_audio(audio))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_more_frames_per_clip_than_a_clip_has_is_a_plain_error(trained, tmp_path):
    with pytest.raises(ValueError, match="a clip has only 8 frames"):
        main(TINY + ["--out", str(tmp_path / "run"), "--stage", "autoencoder", "--vae", str(trained / "vae"),
                     "--frames-per-clip", "9"])


def test_init_can_switch_the_decoder_to_v_and_add_the_per_frame_paths(trained, tmp_path):
    older = tmp_path / "older"  # saved before these settings existed: its config leaves them to their defaults
    shutil.copytree(trained, older)
    config_file = older / "autoencoder" / "config.json"
    config = json.loads(config_file.read_text())
    for name in ("decoder_prediction_type", "per_frame_audio_condition", "per_frame_latent_condition"):
        del config[name]
    config_file.write_text(json.dumps(config))
    out = tmp_path / "switched"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "autoencoder", "--init", str(older),
          "--decoder-only", "--decoder-prediction", "v_prediction", "--per-frame-audio-condition",
          "--per-frame-latent-condition", "--cross-modal-drop", "0.3", "--steps", "0", "--out", str(out)])
    switched = MultiModalAutoencoder.from_pretrained(out / "autoencoder")
    assert switched.config.decoder_prediction_type == "v_prediction" and switched.config.per_frame_audio_condition
    assert switched.config.per_frame_latent_condition
    before, after = weights(trained, "autoencoder"), weights(out, "autoencoder")
    added = {key for key in after if key.startswith(("frame_sound.", "frame_latent."))}
    assert {key for key in after if key not in before} == added
    assert_same_weights({key: after[key] for key in before}, {key: value.float() for key, value in before.items()})
    assert not after["frame_sound.2.weight"].any() and not after["frame_latent.2.weight"].any()  # they start at zero
    summary = json.loads((out / "training_summary.json").read_text())["autoencoder"]
    assert summary["decoder_prediction_type"] == "v_prediction" and summary["per_frame_audio_condition"] is True
    assert summary["per_frame_latent_condition"] is True and summary["cross_modal_drop"] == 0.3


def test_init_can_add_the_keyframe_paths_which_decoder_only_training_keeps_frozen(trained, tmp_path):
    out = tmp_path / "keyframes"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "autoencoder", "--init", str(trained),
          "--keyframe-skips", "--steps", "0", "--out", str(out)])
    assert MultiModalAutoencoder.from_pretrained(out / "autoencoder").config.keyframe_skips
    before, after = weights(trained, "autoencoder"), weights(out, "autoencoder")
    assert {key for key in after if key not in before} == {key for key in after if key.startswith("keyframe_paths.")}
    assert not any(after[key].any() for key in after if key.startswith("keyframe_paths."))  # they start at zero
    assert json.loads((out / "training_summary.json").read_text())["autoencoder"]["keyframe_skips"] is True
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "dit", "--init", str(trained), "--autoencoder",
          str(out), "--steps", "0", "--out", str(out)])  # the whole pipeline, to start from
    frozen = tmp_path / "frozen"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "autoencoder", "--init", str(out),
          "--decoder-only", "--steps", "2", "--lr", "1e-2", "--ema-decay", "0", "--out", str(frozen)])
    moved = weights(frozen, "autoencoder")
    assert not any(moved[key].any() for key in moved if key.startswith("keyframe_paths."))  # the latents stay
    with pytest.raises(ValueError, match="sets the autoencoder's video encoder"):
        main(TINY + ["--out", str(tmp_path / "dit"), "--stage", "dit", "--keyframe-skips"])


def test_adversarial_autoencoder_stage_trains_a_discriminator(trained, tmp_path):
    out = tmp_path / "gan"
    main(TINY + ["--out", str(out), "--stage", "autoencoder", "--vae", str(trained / "vae"), "--steps", "1",
                 "--adversarial"])
    record = LossLog(out / "loss_log.jsonl").read()[0]
    assert {"adversarial", "discriminator"} <= record.keys()
    assert record["total"] == pytest.approx(record["mse"] + 0.1 * (record["classification"] + record["contrastive"])
                                            + 1e-9 * record["kl"] + 0.1 * record["adversarial"], rel=1e-5)
    assert MultiModalAutoencoder.from_pretrained(out / "autoencoder").config.num_classes == 1
    assert (out / "vae" / "config.json").is_file()  # OUT holds every network the pipeline needs


def test_the_ablated_autoencoder_leaves_the_other_modalitys_semantics_out(trained, tmp_path):
    out = tmp_path / "ablated"
    main(TINY + ["--out", str(out), "--stage", "autoencoder", "--vae", str(trained / "vae"), "--steps", "1",
                 "--no-cross-modal-condition"])
    ablated = MultiModalAutoencoder.from_pretrained(out / "autoencoder")
    paper = MultiModalAutoencoder.from_pretrained(trained / "autoencoder")
    assert (ablated.config.cross_modal_condition, paper.config.cross_modal_condition) == (False, True)
    assert json.loads((out / "training_summary.json").read_text())["autoencoder"]["cross_modal_condition"] is False
    labels, semantics = torch.zeros(2, dtype=torch.long), torch.randn(2, 4, ablated.config.semantic_dim)
    prompt = ablated.config.prompt_tokens
    assert ablated.context("audio", labels, semantics).shape[1] == prompt + 1
    assert paper.context("audio", labels, semantics).shape[1] == prompt + 1 + 4


def test_init_studio_starts_from_the_bundled_model(tmp_path):
    from pipelines.mm_ldm.entries import STUDIO_FOLDER

    out = tmp_path / "fine"
    main(["mm_ldm", "--data", "toyworld", "--pool", "2", "--stage", "dit", "--init", "studio", "--steps", "0",
          "--save-dtype", "fp16", "--out", str(out)])
    assert_same_weights(weights(out, "transformer"), weights(STUDIO_FOLDER, "transformer"))
    assert json.loads((out / "model.json").read_text())["init"] == "studio"


@pytest.mark.parametrize("extra, message", [
    (["--stage", "dit"], "needs a trained vae"),
    (["--stage", "autoencoder", "--vae", "nowhere"], "needs a trained vae: none in nowhere"),
    (["--stage", "vae", "--adversarial"], "--adversarial is a loss of the autoencoder stage"),
    (["--stage", "vae", "--init", "paper"], "released no weights"),
    (["--stage", "dit", "--no-cross-modal-condition"], "--no-cross-modal-condition builds a new autoencoder"),
    (["--stage", "autoencoder", "--decoder-only"], "--decoder-only fine-tunes a finished autoencoder"),
    (["--stage", "dit", "--decoder-prediction", "v_prediction"], "--decoder-prediction sets the autoencoder's"),
    (["--stage", "vae", "--per-frame-audio-condition"], "--per-frame-audio-condition sets the autoencoder's"),
    (["--stage", "autoencoder", "--frames-per-clip", "0"], "--frames-per-clip must be at least 1"),
    (["--stage", "autoencoder", "--high-noise-share", "1.5"], "--high-noise-share must be between 0 and 1"),
    (["--stage", "autoencoder", "--cross-modal-drop", "-0.1"], "--cross-modal-drop must be between 0 and 1"),
    (["--stage", "dit", "--cross-modal-drop", "0.2"], "train the autoencoder's shared decoder"),
    (["--stage", "vae", "--per-frame-latent-condition"], "--per-frame-latent-condition sets the autoencoder's"),
    (["--stage", "dit", "--frames-per-clip", "2"], "train the autoencoder's shared decoder"),
    (["--stage", "vae", "--lora-rank", "4"], "--lora-rank is offered for"),
    (["--stage", "vae", "--batch-size", "1"], "at least 2 for the vae stage"),
])
def test_bad_options_are_plain_errors(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        main(TINY + ["--out", str(tmp_path / "run"), *extra])


# A folder of videos --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """birds/a.mp4 (12 frames, a tone), rain/b.mp4 (8 frames, noise), rain/broken.mp4 (not a video), top.mp4 (no
    sound)."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name, frames, audio in (("birds/a.mp4", 12, np.sin(np.arange(19200) * 0.2) * 0.5),
                                ("rain/b.mp4", 8, rng.uniform(-0.3, 0.3, 12800))):
        (folder / name).parent.mkdir(exist_ok=True)
        write_video(folder / name, rng.uniform(0, 1, (frames, 24, 32, 3)), 10, audio=audio.astype(np.float32),
                    sample_rate=16000)
    (folder / "rain" / "broken.mp4").write_bytes(b"not a video")
    write_video(folder / "top.mp4", np.zeros((8, 16, 16, 3), np.float32), 10)
    return folder


def test_folder_classes_are_subfolders_and_bad_files_are_skipped(video_folder, tmp_path):
    clips = folder_clips(video_folder, TINY_FORMAT, SPECS["mm_ldm_studio"], stride=2)
    assert clips.classes == ["birds", "rain"] and clips.labels.tolist() == [0, 0, 0, 1]  # 12 frames: starts 0, 2, 4
    assert [item["file"] for item in clips.skipped] == ["rain/broken.mp4", "top.mp4"]
    out = tmp_path / "run"
    main(["mm_ldm", "--data", str(video_folder), "--size", "tiny", "--stage", "vae", "--steps", "1", "--clip-stride",
          "2", "--out", str(out)])
    skipped = json.loads((out / "skipped.json").read_text())
    assert [item["file"] for item in skipped] == ["rain/broken.mp4", "top.mp4"]
    assert "could not be read" in skipped[0]["reason"] and "no sound" in skipped[1]["reason"]
    assert json.loads((out / "training_summary.json").read_text())["vae"]["classes"] == ["birds", "rain"]


def test_a_folder_without_usable_videos_is_a_plain_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"nothing")
    with pytest.raises(ValueError, match=r"None of the 1 video file\(s\).*broken.mp4 could not be read"):
        folder_clips(tmp_path, TINY_FORMAT, SPECS["mm_ldm_studio"], stride=1)
