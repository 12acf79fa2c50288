"""The training-cost benchmark: every clip choice builds a network that fits it, and a training step runs."""

from __future__ import annotations

from unittest import mock

from benchmarks.mm_diffusion_training_cost import CHOICES, Choice, network, sample_seconds, step_seconds
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline


def test_every_choice_builds_a_network_that_fits_its_clip():
    for choice in CHOICES:
        unet = network(choice)
        assert tuple(unet.config["video_size"]) == (choice.frames, 3, choice.frame_size, choice.frame_size), choice
        assert tuple(unet.config["audio_size"]) == (1, choice.frames * choice.sample_rate // 10), choice


def test_a_training_step_of_a_choice_runs_and_counts_its_parameters():
    _, parameters = step_seconds(Choice("small", frames=4, frame_size=16, batch=1), repeats=1)
    assert parameters == sum(p.numel() for p in network(CHOICES[0]).parameters())  # clip size does not change it


def test_a_sample_is_of_its_mode_with_its_steering():
    from pipelines.mm_diffusion.entries import RELEASED_SCRIPTS_ZERO_SHOT, STUDIO_JOINT, Steering

    with mock.patch.object(MMDiffusionPipeline, "__call__", autospec=True) as called:
        sample_seconds("ddpm", 3, "audio -> video", Steering(resample_rounds=4))
        sample_seconds("ddpm", 3, "audio -> video", RELEASED_SCRIPTS_ZERO_SHOT)
        sample_seconds("ddpm", 3)
        sample_seconds("ddpm", 3, "joint", STUDIO_JOINT)
    resampled, guided, joint, corrected = (call.kwargs for call in called.call_args_list)
    assert resampled["resample_rounds"] == 4 and tuple(resampled["audio"].shape) == (3200,)
    assert (guided["guidance_scale"], guided["guidance_scale_form"]) == (3 * 2**20, "code")
    assert "audio" not in joint and "resample_rounds" not in joint and "guidance_scale" not in joint
    assert "audio" not in corrected and corrected["resample_rounds"] == STUDIO_JOINT.resample_rounds
