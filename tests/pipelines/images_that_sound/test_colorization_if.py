"""The paper's colorization on DeepFloyd IF, with tiny random IF-format components built here (no download).

Stage I: a UNet with IF's layout (simple cross-attention blocks, text addition embedding, 6 output channels: noise
and learned variance); stage II: the up-sampler layout (6 input channels, noise level as a timestep class
embedding); a tiny T5 encoder with a locally built T5 tokenizer; IF's DDPM schedulers. They are saved as fp16
variants, placed in the Hugging Face cache under the DeepFloyd ids and loaded through the registry's own code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from pipelines.images_that_sound import PAPER_IF_STAGE_I
from pipelines.images_that_sound.colorization_if import IFColorizationPipeline
from pipelines.registry import REGISTRY, WeightsUnavailableError, available, get_pipeline
from tests.factories import place_in_cache, tiny_if_folders

WIDTH = 60  # not a multiple of the UNets' size step: exercises the padding and the crop
HEIGHT = 64  # a quarter of Auffusion's 256 mel rows keeps these tests fast; the registry test uses all 256








@pytest.fixture(scope="module")
def if_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("if")
    tiny_if_folders(root / "stage_1", root / "stage_2")
    return root / "stage_1", root / "stage_2"


@pytest.fixture(scope="module")
def colorizer(if_folders):
    return IFColorizationPipeline.from_pretrained(str(if_folders[0]), str(if_folders[1]))


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No Hugging Face token anywhere: not in the environment, not in the stored-token file."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def token(no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")




def spectrograms(count: int = 2, seed: int = 0, height: int = HEIGHT) -> np.ndarray:
    """Spectrogram-like images [N, height, WIDTH] in [0, 1]: smooth bands plus noise."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[None, :, None]
    return np.clip(0.5 + 0.4 * np.sin(8 * rows + rng.uniform(0, 6, (count, 1, 1))) +
                   0.05 * rng.standard_normal((count, height, WIDTH)), 0, 1).astype(np.float32)


def colour(pipe, grays, seed=0, **kwargs):
    arguments = dict(num_inference_steps=4, start_step=1, generator=torch.Generator().manual_seed(seed))
    return pipe(grays, "a colorful photo of a castle", **(arguments | kwargs))


def test_the_gate_says_why_it_is_closed(hub_cache, if_folders, no_token, monkeypatch):
    def reason() -> str:  # the gate reads the token and the cache each time it is asked
        assert not available("colorizer_if")
        return str(pytest.raises(WeightsUnavailableError, REGISTRY.resolve, "colorizer_if").value)

    assert "need a Hugging Face token" in reason()
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert f"({PAPER_IF_STAGE_I}) are not in the local cache and the studio is offline" in reason()
    place_in_cache(hub_cache, if_folders)
    assert available("colorizer_if") and REGISTRY.resolve("colorizer_if")[0] == "paper"
    monkeypatch.delenv("HF_TOKEN")
    assert "need a Hugging Face token" in reason()  # cached weights alone do not open the gate


def test_registry_loads_the_cached_if_weights_and_the_grayscale_is_the_spectrogram(hub_cache, if_folders, token):
    place_in_cache(hub_cache, if_folders)
    pipe = get_pipeline("colorizer_if")
    assert isinstance(pipe, IFColorizationPipeline) and pipe.unet.dtype == torch.float32  # fp16 files, fp32 on CPU
    assert [r.variant for r in REGISTRY.reports() if r.name == "colorizer_if"] == ["paper"]
    grays = spectrograms(height=256)
    result = colour(pipe, grays)
    assert result.shape == (2, 256, WIDTH, 3) and result.dtype == np.float32
    np.testing.assert_allclose(result.mean(axis=-1), grays, atol=1e-5)
    assert result.min() >= -1e-6 and result.max() <= 1 + 1e-6
    assert np.abs(result - result.mean(axis=-1, keepdims=True)).max() > 1e-3  # it does carry colour


def capture_unet_inputs(pipe, monkeypatch) -> dict[str, list]:
    """Record (input, timestep, class labels) of every UNet call of both stages."""
    calls = {"unet": [], "super_resolution_unet": []}
    for name in calls:
        unet = getattr(pipe, name)
        original = unet.forward

        def record(sample, timestep, *args, _original=original, _name=name, **kwargs):
            calls[_name].append((sample.clone(), int(timestep), kwargs.get("class_labels")))
            return _original(sample, timestep, *args, **kwargs)

        monkeypatch.setattr(unet, "forward", record)
    return calls


def test_every_step_of_both_stages_replaces_the_grayscale_component(colorizer, monkeypatch):
    # Same seed, two spectrograms: every noise draw is the same, so at each step the gray components of the UNet
    # inputs differ by exactly sqrt(alpha_bar_t) * (g1 - g2), g in [-1, 1], resized to the stage's size.
    first, second = spectrograms(1, seed=1), spectrograms(1, seed=2)
    runs = []
    for grays in (first, second):
        calls = capture_unet_inputs(colorizer, monkeypatch)
        colour(colorizer, grays, num_inference_steps=5, start_step=2)
        runs.append(calls)
        monkeypatch.undo()
    difference = torch.zeros(1, HEIGHT, 64)
    difference[..., :WIDTH] = torch.from_numpy(2 * (first - second))
    sizes = {"unet": (HEIGHT // 4, 16), "super_resolution_unet": (HEIGHT, 64)}
    alphas = DDPMScheduler.from_config(colorizer.scheduler.config).alphas_cumprod
    for name, size in sizes.items():
        expected_gray = F.interpolate(difference[:, None], size, mode="bilinear", align_corners=False)[:, 0]
        for (one, timestep, _), (other, _, _) in zip(runs[0][name], runs[1][name], strict=True):
            gray_difference = one[:, :3].mean(dim=1) - other[:, :3].mean(dim=1)
            for branch in gray_difference:  # unconditional and conditional halves of the CFG batch
                torch.testing.assert_close(branch, alphas[timestep].sqrt() * expected_gray[0], atol=2e-5, rtol=0)


def test_stage_one_restarts_at_start_step_and_stage_two_is_conditioned_on_the_noise_level(colorizer, monkeypatch):
    calls = capture_unet_inputs(colorizer, monkeypatch)
    colour(colorizer, spectrograms(2), num_inference_steps=6, start_step=4, noise_level=50)
    scheduler = DDPMScheduler.from_config(colorizer.scheduler.config)
    scheduler.set_timesteps(6)
    assert [t for _, t, _ in calls["unet"]] == scheduler.timesteps[4:].tolist()  # steps before the restart skipped
    assert [t for _, t, _ in calls["super_resolution_unet"]] == scheduler.timesteps.tolist()
    assert {tuple(sample.shape) for sample, _, _ in calls["unet"]} == {(4, 3, HEIGHT // 4, 16)}  # CFG batch 2 x 2
    assert {tuple(sample.shape) for sample, _, _ in calls["super_resolution_unet"]} == {(4, 6, HEIGHT, 64)}
    assert all(labels.tolist() == [50] * 4 for _, _, labels in calls["super_resolution_unet"])


def test_results_reproduce_from_the_seed_and_differ_between_seeds(colorizer):
    grays = spectrograms(1)
    np.testing.assert_array_equal(colour(colorizer, grays, seed=3), colour(colorizer, grays, seed=3))
    assert np.abs(colour(colorizer, grays, seed=3) - colour(colorizer, grays, seed=4)).max() > 1e-4


def test_the_authors_two_views_reduce_to_one_plain_estimate():
    # Their views with one prompt: mean(2·G(ε), 2·C(ε)) on the noise channels, variance channels averaged unchanged.
    estimate = torch.randn(1, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    gray = estimate.clone()
    gray[:, :3] = 2 * estimate[:, :3].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    colour_view = estimate.clone()
    colour_view[:, :3] = 2 * (estimate[:, :3] - estimate[:, :3].mean(dim=1, keepdim=True))
    torch.testing.assert_close((gray + colour_view) / 2, estimate)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps"), ({"start_step": 4}, "start_step"),
    ({"guidance_scale": float("nan")}, "guidance_scale"), ({"noise_level": 1000}, "noise_level"),
])
def test_bad_settings_are_refused_with_the_rule(colorizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        colour(colorizer, spectrograms(1), **kwargs)


@pytest.mark.parametrize("grays, message", [
    (np.full((1, 256, 8), 2.0, np.float32), "in \\[0, 1\\]"), (np.full((1, 256, 8), np.nan, np.float32), "finite"),
    (np.zeros((256, 8), np.float32), "\\[N, height, width\\]"), (np.zeros((1, 60, 8), np.float32), "multiple of 8"),
])
def test_bad_spectrograms_are_refused(colorizer, grays, message):
    with pytest.raises(ValueError, match=message):
        colour(colorizer, grays)


def cli_arguments(tmp_path, *extra: str) -> list[str]:
    from tests.factories import tiny_model_folder

    tiny_model_folder(tmp_path / "image", seed=0)
    tiny_model_folder(tmp_path / "audio", seed=1)
    return ["--image-prompt", "a castle", "--audio-prompt", "bell", "--steps", "2", "--latent-width", "8",
            "--vocoder", "griffinlim", "--image-model", str(tmp_path / "image"), "--audio-model",
            str(tmp_path / "audio"), "--clip-model", "none", "--clap-model", "none", "--device", "cpu",
            "--colorize", "a colorful photo of a castle", "--colorize-steps", "3", "--out", str(tmp_path / "out"),
            *extra]


def test_cli_colorizes_on_deepfloyd_if_when_asked_and_says_why_it_cannot(tmp_path, hub_cache, if_folders, no_token,
                                                                         monkeypatch):
    import json

    from pipelines.images_that_sound.__main__ import main

    with pytest.raises(SystemExit, match="need a Hugging Face token"):
        main(cli_arguments(tmp_path, "--colorizer", "deepfloyd-if"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    place_in_cache(hub_cache, if_folders)
    main(cli_arguments(tmp_path, "--colorizer", "deepfloyd-if"))
    report = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert report["colorizer"] == "DeepFloyd IF" and report["samples"][0]["files"][-1] == "sample-000-color.png"
    assert (tmp_path / "out" / "sample-000-color.png").stat().st_size > 0
