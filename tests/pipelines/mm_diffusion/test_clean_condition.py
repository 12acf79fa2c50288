"""A stream given clean (a departure, UniDiffuser's per-modality timesteps): the U-Net takes the audio stream's own
step and is the paper's network when both steps are equal; the trainer's `--clean-condition` gives one stream
clean at step 0 with no loss on it; the pipeline feeds a given modality clean, at step 0, to weights trained so."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.mm_diffusion import MMDiffusionUNet
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.mm_diffusion.entries import Steering
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.train.__main__ import main
from pipelines.train.mm_diffusion import (
    GIVEN_AUDIO,
    GIVEN_NONE,
    GIVEN_VIDEO,
    JointDiffusionObjective,
    build_model,
    given_streams,
    model_flags,
    step_noise,
)
from tests.factories import MM_DIFFUSION_GOLDEN as DATA


@pytest.fixture(scope="module")
def unet() -> MMDiffusionUNet:
    """The tiny golden-config U-Net (8 frames 16x16, 2048 audio samples, no random shift) with its golden weights."""
    flags = json.loads((DATA / "mm_diffusion_tiny_golden_config.json").read_text())["official_flags_equivalent"]
    model = MMDiffusionUNet.from_official_flags(**flags, num_heads=1)
    model.load_official_state_dict(load_file(DATA / "mm_diffusion_tiny_golden_weights.safetensors"))
    return model.eval()


def clip(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 8, 3, 16, 16, generator=generator), torch.randn(1, 1, 2048, generator=generator)


# The U-Net ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_equal_audio_steps_are_the_papers_shared_step_and_other_steps_reach_both_streams(unet):
    video, audio = clip(0)
    shared = unet(video, audio, torch.tensor([400.0]))
    equal = unet(video, audio, torch.tensor([400.0]), audio_timesteps=torch.tensor([400.0]))
    for a, b in zip(shared, equal):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    clean_audio = unet(video, audio, torch.tensor([400.0]), audio_timesteps=torch.tensor([0.0]))
    for a, b in zip(shared, clean_audio):  # the audio's step modulates the audio, which the video attends to
        assert (a - b).abs().max() > 1e-4


# The trainer --------------------------------------------------------------------------------------------------------


def test_given_streams_split_the_share_between_video_and_audio():
    draws = torch.tensor([0.05, 0.2, 0.3, 0.45, 0.5, 0.9])
    assert given_streams(draws, 0.5).tolist() == [GIVEN_VIDEO, GIVEN_VIDEO, GIVEN_AUDIO, GIVEN_AUDIO, GIVEN_NONE,
                                                  GIVEN_NONE]
    assert (given_streams(draws, 0.0) == GIVEN_NONE).all()


def test_a_share_of_clean_streams_leaves_the_steps_other_draws_unchanged():
    plain = step_noise(3, 7, (4, 2, 3, 8, 8), (4, 1, 800), 1000)
    clean = step_noise(3, 7, (4, 2, 3, 8, 8), (4, 1, 800), 1000, clean_share=0.5)
    for a, b in zip(plain[:4], clean[:4]):
        assert torch.equal(a, b)
    assert plain[4].initial_seed() == clean[4].initial_seed()
    assert (plain[5] == GIVEN_NONE).all()


def test_a_stream_given_clean_enters_at_step_0_and_has_no_loss():
    from argparse import Namespace

    torch.manual_seed(0)
    fmt = ClipFormat(4, 8, 8, 800, 10, 2000)
    objective = JointDiffusionObjective(build_model(model_flags(Namespace(size="tiny", dropout=None), fmt)))
    seen = []
    objective.unet.register_forward_hook(lambda module, args, kwargs, out: seen.append((args, kwargs)),
                                         with_kwargs=True)
    video, audio = torch.rand(3, 4, 3, 8, 8) * 2 - 1, torch.rand(3, 1, 800) * 2 - 1
    video_noise, audio_noise = torch.randn_like(video), torch.randn_like(audio)
    given = torch.tensor([GIVEN_VIDEO, GIVEN_AUDIO, GIVEN_NONE])
    video_loss, audio_loss = objective(video, audio, torch.tensor([300, 600, 900]), video_noise, audio_noise,
                                       given=given)
    (video_in, audio_in, video_t), kwargs = seen[0]
    assert torch.equal(video_in[0], video[0]) and torch.equal(audio_in[1], audio[1])  # given as they are
    torch.testing.assert_close(video_in[1:], objective.q_sample(video[1:], torch.tensor([600, 900]), video_noise[1:]))
    assert video_t.tolist() == [0.0, 600.0, 900.0] and kwargs["audio_timesteps"].tolist() == [300.0, 0.0, 900.0]
    # A fresh U-Net outputs 0: each stream's loss is the mean of ε² over the clips where it was noised, over 3.
    torch.testing.assert_close(video_loss, video_noise[1:].pow(2).flatten(1).mean(1).sum() / 3)
    torch.testing.assert_close(audio_loss, audio_noise[[0, 2]].pow(2).flatten(1).mean(1).sum() / 3)


def test_a_clean_condition_run_records_it_for_the_pipeline(tmp_path):
    out = tmp_path / "run"
    main(["mm_diffusion", "--data", "toyworld", "--size", "tiny", "--pool", "3", "--ema-decay", "0", "--seed", "3",
          "--steps", "1", "--clean-condition", "0.5", "--out", str(out)])
    pipe = MMDiffusionPipeline.from_pretrained(out)
    assert pipe.training_record["clean_condition"] == 0.5 and pipe.learnt_clean_condition
    with pytest.raises(ValueError, match="probability"):
        main(["mm_diffusion", "--data", "toyworld", "--size", "tiny", "--clean-condition", "1.5", "--out",
              str(tmp_path / "bad")])
    with pytest.raises(ValueError, match="--conditional-weight-cap must be at least 1"):
        main(["mm_diffusion", "--data", "toyworld", "--size", "tiny", "--conditional-weight-cap", "0.5", "--out",
              str(tmp_path / "bad")])


# The pipeline -------------------------------------------------------------------------------------------------------


@contextmanager
def recorded_calls(unet: MMDiffusionUNet):
    """The U-Net's inputs (args, kwargs) of every call inside the block."""
    calls = []
    handle = unet.register_forward_hook(lambda module, args, kwargs, out: calls.append((args, kwargs)),
                                        with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver"])
def test_a_given_modality_enters_every_call_clean_at_step_0(unet, sampler):
    pipe = MMDiffusionPipeline(unet, training_record={"clean_condition": 0.5})
    audio = (torch.rand(2048, generator=torch.Generator().manual_seed(2)) * 2 - 1).numpy()
    with recorded_calls(unet) as calls:
        out = pipe(audio=audio, sampler=sampler, num_inference_steps=4, clean_condition=True,
                   generator=torch.Generator().manual_seed(0))
    assert np.array_equal(out.audio[0], audio) and len(calls) == 4
    for (video_in, audio_in, video_t), kwargs in calls:
        assert torch.equal(audio_in[0, 0], torch.from_numpy(audio)) and kwargs["audio_timesteps"].tolist() == [0.0]
    video_steps = [args[2].item() for args, _ in calls]  # the schedule's, noisiest first
    assert video_steps[0] > 0 and video_steps == sorted(video_steps, reverse=True)
    frames = torch.from_numpy(out.video)
    with recorded_calls(unet) as calls:
        pipe(video=frames[0], sampler=sampler, num_inference_steps=4, clean_condition=True)
    for step, ((video_in, _, video_t), kwargs) in zip(video_steps, calls):
        assert video_t.tolist() == [0.0] and torch.equal(kwargs["audio_timesteps"], torch.tensor([step]))
        assert torch.equal(video_in[0], frames[0].permute(0, 3, 1, 2).float() / 127.5 - 1)


def test_without_a_clean_condition_the_paper_sampler_is_unchanged(unet):
    pipe = MMDiffusionPipeline(unet, training_record={"clean_condition": 0.5})
    audio = (torch.rand(2048, generator=torch.Generator().manual_seed(2)) * 2 - 1).numpy()
    with recorded_calls(unet) as calls:
        pipe(audio=audio, sampler="ddim", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 3 and all(kwargs["audio_timesteps"] is None for _, kwargs in calls)


@pytest.mark.parametrize(("record", "kwargs", "match"), [
    ({}, {"audio": np.zeros(2048, np.float32)}, "not trained with a clean condition"),
    ({"clean_condition": 0.5}, {}, "give `video` or `audio`"),
    ({"clean_condition": 0.5}, {"audio": np.zeros(2048, np.float32), "guidance_scale": 1.0}, "set guidance_scale=0"),
])
def test_clean_condition_refusals_are_plain(unet, record, kwargs, match):
    pipe = MMDiffusionPipeline(unet, training_record=record)
    with pytest.raises(ValueError, match=match):
        pipe(clean_condition=True, sampler="ddim", num_inference_steps=2, **kwargs)


def test_zero_shot_steering_carries_the_clean_condition():
    assert Steering(clean_condition=True).arguments()["clean_condition"] is True
    assert Steering().overridden(clean_condition=None).clean_condition is False


def test_the_conditional_weight_is_the_x0_weighting_kept_within_its_cap():
    from argparse import Namespace

    torch.manual_seed(0)
    fmt = ClipFormat(4, 8, 8, 800, 10, 2000)
    objective = JointDiffusionObjective(build_model(model_flags(Namespace(size="tiny", dropout=None), fmt)), 100.0)
    alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    t = torch.tensor([50, 450, 900])
    expected = np.clip((1 - alpha_bar[t]) / alpha_bar[t], 1, 100)
    assert expected[0] == 1 and 1 < expected[1] < 100 and expected[2] == 100  # x̂_0 weight: below, within, capped
    video, audio = torch.rand(3, 4, 3, 8, 8) * 2 - 1, torch.rand(3, 1, 800) * 2 - 1
    video_noise, audio_noise = torch.randn_like(video), torch.randn_like(audio)
    video_loss, audio_loss = objective(video, audio, t, video_noise, audio_noise,
                                       given=torch.tensor([GIVEN_AUDIO, GIVEN_AUDIO, GIVEN_VIDEO]))
    per_clip = video_noise.pow(2).flatten(1).mean(1)  # a fresh U-Net outputs 0
    torch.testing.assert_close(video_loss, (per_clip[:2] * torch.from_numpy(expected[:2]).float()).sum() / 3)
    torch.testing.assert_close(audio_loss, audio_noise[2].pow(2).mean() * 100 / 3)
