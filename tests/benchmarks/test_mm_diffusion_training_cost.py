"""The training-cost benchmark: every clip choice builds a network that fits it, and a training step runs."""

from __future__ import annotations

from benchmarks.mm_diffusion_training_cost import CHOICES, Choice, network, step_seconds


def test_every_choice_builds_a_network_that_fits_its_clip():
    for choice in CHOICES:
        unet = network(choice)
        assert tuple(unet.config["video_size"]) == (choice.frames, 3, choice.frame_size, choice.frame_size), choice
        assert tuple(unet.config["audio_size"]) == (1, choice.frames * choice.sample_rate // 10), choice


def test_a_training_step_of_a_choice_runs_and_counts_its_parameters():
    _, parameters = step_seconds(Choice("small", frames=4, frame_size=16, batch=1), repeats=1)
    assert parameters == sum(p.numel() for p in network(CHOICES[0]).parameters())  # clip size does not change it
