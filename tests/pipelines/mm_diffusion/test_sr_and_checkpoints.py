"""MM-Diffusion's super-resolution sampling and the loading of the released checkpoints (joint-av.md §A4, §A12).

- SR pipeline: one noise image per clip shared by all its frames (checked on the drawn noise and with a model that
  ignores its input), every frame of every clip in one `(b f)` batch at one timestep, the low-resolution condition
  as `x / 127.5 − 1`, the official "ddim25" timesteps, equality with a hand-written DDIM loop on the scheduling code,
  seeded determinism, shapes, dtypes and input validation;
- checkpoints: tiny base and SR models saved as `.pt` and `.safetensors` load back with identical outputs; damaged,
  foreign and unsafe files each raise a plain ValueError; the `OFFICIAL_MODELS` flags rebuild every key and shape of
  the released files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipelines.mm_diffusion import MMDiffusionSuperResModel, MMDiffusionUNet
from pipelines.mm_diffusion.checkpoints import (
    OFFICIAL_MODELS,
    identify_official_model,
    load_official_checkpoint,
    official_shapes,
)
from pipelines.mm_diffusion.modeling_mm_diffusion_sr import OFFICIAL_SR_DIFFUSION_FLAGS
from pipelines.mm_diffusion.pipeline_mm_diffusion_sr import MMDiffusionSuperResPipeline
from pipelines.mm_diffusion.scheduling_mm_diffusion import DDIMSampler, DiffusionProcess, official_betas
from tests.factories import MM_DIFFUSION_GOLDEN as GOLDEN
from tests.factories import randomize_

TINY_SR_FLAGS = dict(large_size=64, small_size=16, sr_num_channels=32, sr_num_res_blocks=1,
                     sr_attention_resolutions="8")
JSON_NAMES = {"base": "mm_diffusion_base_64", "sr": "mm_diffusion_sr_64_256"}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clips(num_clips: int, num_frames: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 low-resolution clips `[N, F, size, size, 3]`."""
    return torch.randint(0, 256, (num_clips, num_frames, size, size, 3), generator=gen(seed), dtype=torch.uint8)


class IgnoringSR(torch.nn.Module):
    """Stands in for the SR U-Net: ignores its input (ε = 0) and records what the pipeline hands it."""

    def __init__(self, image_size: int = 32):
        super().__init__()
        self.config = {"image_size": image_size, "in_channels": 3, "out_channels": 6}
        self.diffusion_flags = dict(OFFICIAL_SR_DIFFUSION_FLAGS)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the pipeline a device
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), timesteps.clone(), low_res.clone()))
        return torch.zeros(x.shape[0], 6, *x.shape[2:])


class NotATensor:
    """A Python object in a pickle: `weights_only=True` must refuse it."""


@pytest.fixture(scope="module")
def sr_model() -> MMDiffusionSuperResModel:
    model = MMDiffusionSuperResModel.from_official_flags(**TINY_SR_FLAGS)
    return randomize_(model, seed=4, std=0.05).eval()


# ---------------------------------------------------------------------------------------------------------------
# Super-resolution sampling
# ---------------------------------------------------------------------------------------------------------------


def test_one_noise_image_is_shared_by_all_frames_of_a_clip():
    stub = IgnoringSR()
    out = MMDiffusionSuperResPipeline(stub)(clips(2, 3), num_inference_steps=3, generator=gen(7), output_type="pt")
    x_T = stub.calls[0][0].unflatten(0, (2, 3))  # what the model saw first, '(b f) c h w' back to clips
    drawn = torch.randn(2, 1, 3, 32, 32, generator=gen(7))  # one image per clip, drawn in clip order
    torch.testing.assert_close(x_T, drawn.expand(-1, 3, -1, -1, -1), atol=0, rtol=0)
    assert not torch.equal(x_T[0, 0], x_T[1, 0])  # clips differ
    # With a model that ignores its input, the frames of a clip stay identical to the end, whatever the low-res input
    assert torch.equal(out.video[:, 0], out.video[:, 1]) and torch.equal(out.video[:, 0], out.video[:, 2])


def test_frames_are_one_batch_at_one_timestep_conditioned_on_their_own_low_res_frame():
    stub = IgnoringSR()
    video = clips(2, 3)
    MMDiffusionSuperResPipeline(stub)(video, num_inference_steps=2, generator=gen(0))
    x, timesteps, low_res = stub.calls[0]
    assert x.shape == (6, 3, 32, 32) and low_res.shape == (6, 3, 16, 16)  # N·F frames in one batch
    assert timesteps.tolist() == [500] * 6
    expected = video.float().div(127.5).sub(1).permute(0, 1, 4, 2, 3).flatten(0, 1)  # official x / 127.5 − 1
    torch.testing.assert_close(low_res, expected, atol=0, rtol=0)
    # float input in [0, 1] is the same condition
    stub.calls.clear()
    MMDiffusionSuperResPipeline(stub)(video.float() / 255, num_inference_steps=2, generator=gen(0))
    torch.testing.assert_close(stub.calls[0][2], expected, atol=1e-6, rtol=0)


def test_ddim_25_uses_the_official_ddim25_timesteps():
    stub = IgnoringSR(image_size=8)
    MMDiffusionSuperResPipeline(stub)(clips(1, 2, size=4), generator=gen(0))  # default: 25 DDIM steps
    seen = [int(t[0]) for _, t, _ in stub.calls]
    assert seen == list(range(0, 1000, 40))[::-1] == list(range(960, -1, -40))  # official "ddim25", noisiest first


def test_output_equals_a_hand_written_ddim_loop_on_the_scheduling_code(sr_model):
    video = clips(1, 2)
    out = MMDiffusionSuperResPipeline(sr_model)(video, num_inference_steps=2, generator=gen(3), output_type="pt",
                                                frame_batch_size=1)  # chunked model calls: same result
    sampler = DDIMSampler(DiffusionProcess(official_betas("linear", 1000), learn_sigma=True), "ddim2")
    x = torch.randn(1, 1, 3, 64, 64, generator=gen(3)).repeat(1, 2, 1, 1, 1)
    low_res = video.float().div(127.5).sub(1).permute(0, 1, 4, 2, 3)
    with torch.no_grad():
        for i in range(2):
            output = sr_model(x, sampler.model_timesteps[i].expand(1), low_res)  # [1, F, 6, 64, 64]
            x, _ = sampler.step(output[:, :, :3], output[:, :, 3:], i, x)  # DDIM: the ε half only
    assert out.video.shape == (1, 2, 64, 64, 3) and out.video.dtype == torch.float32
    torch.testing.assert_close(out.video, ((x + 1) / 2).clamp(0, 1).permute(0, 1, 3, 4, 2), atol=1e-5, rtol=0)
    assert not torch.equal(out.video[0, 0], out.video[0, 1])  # the real model does use each frame's condition


def test_seeded_runs_repeat_and_outputs_are_uint8_frames(sr_model):
    pipe = MMDiffusionSuperResPipeline(sr_model)
    video = clips(1, 2)
    first = pipe(video, num_inference_steps=2, generator=gen(0)).video
    again = pipe(video, num_inference_steps=2, generator=gen(0)).video
    other = pipe(video, num_inference_steps=2, generator=gen(1), return_dict=False)[0]
    assert isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.shape == (1, 2, 64, 64, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_generator_list_gives_each_clip_its_own_noise_and_latents_are_shared_too():
    stub = IgnoringSR()
    pipe = MMDiffusionSuperResPipeline(stub)
    pipe(clips(2, 2), num_inference_steps=2, generator=[gen(5), gen(6)])
    batched = stub.calls[0][0].unflatten(0, (2, 2))  # x_T
    for clip, seed in enumerate((5, 6)):
        torch.testing.assert_close(batched[clip], torch.randn(1, 3, 32, 32, generator=gen(seed)).expand(2, -1, -1, -1))
    latents = torch.randn(2, 3, 32, 32)
    stub.calls.clear()
    pipe(clips(2, 2), num_inference_steps=2, latents=latents)
    torch.testing.assert_close(stub.calls[0][0].unflatten(0, (2, 2)), latents[:, None].expand(-1, 2, -1, -1, -1))


def test_callback_sees_every_step_with_a_uint8_preview_and_interrupt_stops():
    stub = IgnoringSR()
    pipe = MMDiffusionSuperResPipeline(stub)
    seen = []

    def callback(called, step, timestep, callback_kwargs):
        seen.append((step, timestep, sorted(callback_kwargs)))
        preview = callback_kwargs["preview"]
        assert preview.dtype == np.uint8 and preview.shape == (1, 2, 32, 32, 3)
        if step == 1:
            called._interrupt = True
        return {}

    pipe(clips(1, 2), num_inference_steps=5, generator=gen(0), callback_on_step_end=callback)
    assert [s[:2] for s in seen] == [(0, 800), (1, 600)] and seen[0][2] == ["denoised_video", "preview", "video"]
    assert len(stub.calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(video=torch.zeros(1, 2, 16, 16, 4, dtype=torch.uint8)), "low-resolution clips"),
        (dict(video=torch.zeros(1, 2, 16, 12, 3, dtype=torch.uint8)), "square"),
        (dict(video=torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8)), "at most the output size"),
        (dict(video=torch.full((1, 2, 16, 16, 3), 2.0)), r"in \[0, 1\]"),
        (dict(video=torch.full((1, 2, 16, 16, 3), float("nan"))), "finite"),
        (dict(video=torch.zeros(1, 2, 16, 16, 3, dtype=torch.int32)), "uint8"),
        (dict(video=torch.zeros(0, 2, 16, 16, 3, dtype=torch.uint8)), "low-resolution clips"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=600), "DDIM cannot take 600 steps"),
        (dict(eta=-1.0), "eta"),
        (dict(output_type="pil"), "output_type"),
        (dict(frame_batch_size=0), "frame_batch_size"),
        (dict(generator=[gen(0)] * 3), "one generator per clip"),
        (dict(latents=torch.zeros(1, 3, 16, 16)), "latents"),
        (dict(callback_on_step_end_tensor_inputs=["audio"]), "has \\['audio'\\]"),
    ],
)
def test_input_validation(kwargs, match):
    pipe = MMDiffusionSuperResPipeline(IgnoringSR())
    with pytest.raises(ValueError, match=match):
        pipe(**{"video": clips(1, 2), **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoints(golden, sr_model, tmp_path_factory):  # noqa: F811 (the golden fixture)
    """(kind -> (model, flags, inputs)) and a folder holding each state dict as `.pt` and `.safetensors`."""
    folder = tmp_path_factory.mktemp("checkpoints")
    flags, weights, io = golden
    base_flags = {**flags, "num_heads": 1}  # as tests/test_mm_diffusion_unet.golden_model
    base = MMDiffusionUNet.from_official_flags(**base_flags)
    base.load_official_state_dict(weights)
    frame = (torch.randn(1, 3, 64, 64, generator=gen(1)), torch.tensor([300]), torch.rand(1, 3, 16, 16) * 2 - 1)
    models = {"base": (base.eval(), base_flags, (io["video"], io["audio"], io["timesteps"])),
              "sr": (sr_model, TINY_SR_FLAGS, frame)}
    for kind, (model, _, _) in models.items():
        torch.save(model.state_dict(), folder / f"{kind}.pt")
        save_file(model.state_dict(), folder / f"{kind}.safetensors")
    return models, folder


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("kind", ["base", "sr"])
def test_saved_tiny_models_load_back_with_identical_outputs(tiny_checkpoints, kind, suffix):
    models, folder = tiny_checkpoints
    model, flags, inputs = models[kind]
    loaded = load_official_checkpoint(folder / f"{kind}{suffix}", kind=kind, flags=flags)
    assert type(loaded) is type(model) and not loaded.training and loaded.official_model == "custom"
    with torch.no_grad():
        expected, got = model(*inputs), loaded(*inputs)
    for a, b in zip(expected if kind == "base" else [expected], got if kind == "base" else [got]):
        torch.testing.assert_close(b, a, atol=0, rtol=0)  # bit-identical (safetensors' unaligned views are copied)
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)


def test_float16_load_is_the_official_mixed_precision(tiny_checkpoints):
    models, folder = tiny_checkpoints
    model, flags, inputs = models["base"]
    loaded = load_official_checkpoint(folder / "base.pt", kind="base", flags=flags, dtype=torch.float16)
    assert loaded.compute_dtype == torch.float16 and loaded.time_embed[0].weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs)[0].float(), model(*inputs)[0], atol=5e-2, rtol=0)
    with pytest.raises(ValueError, match="float16"):
        load_official_checkpoint(folder / "base.pt", kind="base", flags=flags, dtype=torch.bfloat16)


def write_damaged(folder, name: str, state: dict[str, torch.Tensor]):
    """Damaged and foreign files built from a good state dict."""
    good = folder / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    path = folder / name
    if name == "corrupt.pt":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)  # a zip signature, then garbage
    elif name == "truncated.pt":
        path.write_bytes(data[: len(data) // 2])
    elif name == "notes.pt":
        path.write_text("these are not weights\n")
    elif name == "page.pt":
        path.write_text("<!DOCTYPE html><html><body>Google Drive - quota exceeded</body></html>")
    elif name == "empty.pt":
        path.write_bytes(b"")
    elif name == "list.pt":
        torch.save([state["time_embed.0.weight"]], path)
    elif name == "truncated.safetensors":
        save_file(state, folder / "good.safetensors")
        path.write_bytes((folder / "good.safetensors").read_bytes()[:5000])
    elif name == "corrupt.safetensors":
        path.write_bytes(b"\xff" * 5000)
    return path


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("corrupt.pt", "corrupt.pt is truncated or corrupt"),
        ("truncated.pt", "truncated.pt is truncated or corrupt"),
        ("notes.pt", "notes.pt is not a PyTorch checkpoint: it is a text file"),
        ("page.pt", "not a PyTorch checkpoint: it is an HTML page"),
        ("empty.pt", "empty.pt is empty"),
        ("list.pt", "list.pt is not a state dict"),
        ("truncated.safetensors", "truncated.safetensors is truncated or corrupt"),
        ("corrupt.safetensors", "corrupt.safetensors is not a safetensors file: it starts with the bytes"),
        ("absent.pt", "No checkpoint file"),
    ],
)
def test_damaged_and_foreign_files_raise_a_plain_value_error(tiny_checkpoints, tmp_path, name, match):
    models, _ = tiny_checkpoints
    model, flags, _ = models["base"]
    path = write_damaged(tmp_path, name, model.state_dict())
    with pytest.raises(ValueError, match=match):
        load_official_checkpoint(path, kind="base", flags=flags)


def edited_checkpoint(tmp_path, state: dict[str, torch.Tensor], edit) -> str:
    state = dict(state)
    edit(state)
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    return path


def test_missing_keys_wrong_shapes_nan_and_another_models_keys_are_named(tiny_checkpoints, tmp_path):
    models, folder = tiny_checkpoints
    model, flags, _ = models["base"]
    state = model.state_dict()
    path = edited_checkpoint(tmp_path, state, lambda s: s.pop("video_out.2.video_conv.bias"))
    with pytest.raises(ValueError, match=r"edited.pt does not match .*1 missing keys, e.g. "
                                         r"\['video_out.2.video_conv.bias'\]"):
        load_official_checkpoint(path, kind="base", flags=flags)
    path = edited_checkpoint(tmp_path, state, lambda s: s.update({"time_embed.0.weight": torch.zeros(32, 31)}))
    with pytest.raises(ValueError, match=r"1 keys with wrong shapes, e.g. time_embed.0.weight: \[32, 31\] in the "
                                         r"file, \[32, 32\] in the model"):
        load_official_checkpoint(path, kind="base", flags=flags)
    path = edited_checkpoint(tmp_path, state, lambda s: s.update({"time_embed.0.bias": torch.full((32,), np.nan)}))
    with pytest.raises(ValueError, match="time_embed.0.bias` holds NaN"):
        load_official_checkpoint(path, kind="base", flags=flags)
    with pytest.raises(ValueError, match="sr.pt holds the keys of another model"):
        load_official_checkpoint(folder / "sr.pt", kind="base", flags=flags)
    with pytest.raises(ValueError, match="base.pt .* the released base model.*Pass `flags=`"):
        load_official_checkpoint(folder / "base.pt", kind="base")  # a tiny model is no released one


def test_pickled_python_objects_are_refused_in_plain_language(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"time_embed.0.weight": torch.zeros(2), "extra": NotATensor()}, path)
    with pytest.raises(ValueError) as error:
        load_official_checkpoint(path, kind="base")
    message = str(error.value)
    assert message.startswith("Refused to load unsafe.pt: it contains Python objects (")
    assert "NotATensor" in message and "could run arbitrary code" in message
    assert "weights_only" not in message and "\n" not in message  # no torch internals, no multi-line advice


@pytest.mark.parametrize("kind", ["base", "sr"])
def test_official_models_table_builds_the_released_keys_and_shapes(kind):
    reference = json.loads((GOLDEN / "mm_diffusion_official_state_dict_shapes.json").read_text())[JSON_NAMES[kind]]
    entries = [m for m in OFFICIAL_MODELS if m.kind == kind]
    assert len(entries) == 2  # Landscape and AIST++
    for entry in entries:
        shapes = official_shapes(entry.kind, entry.flags)
        assert {key: list(shape) for key, shape in shapes.items()} == reference["keys"]
        assert sum(np.prod(s, dtype=np.int64) for s in shapes.values()) == entry.num_params == reference["num_params"]


def test_released_checkpoints_are_recognised_from_keys_and_shapes():
    reference = json.loads((GOLDEN / "mm_diffusion_official_state_dict_shapes.json").read_text())
    base = {k: torch.empty(s, device="meta") for k, s in reference["mm_diffusion_base_64"]["keys"].items()}
    sr = {k: torch.empty(s, device="meta") for k, s in reference["mm_diffusion_sr_64_256"]["keys"].items()}
    assert [m.name for m in identify_official_model(base, "base")] == ["Landscape", "AIST++"]  # same flags
    assert [m.name for m in identify_official_model(sr, "sr")] == ["Landscape_SR", "AIST++_SR"]
    with pytest.raises(ValueError, match="AIST\\+\\+_SR.pt is a released 'sr' checkpoint .* load it with kind='sr'"):
        identify_official_model(sr, "base", "AIST++_SR.pt")
    with pytest.raises(ValueError, match="1 keys with wrong shapes, e.g. out.2.weight: \\[3, 192, 3, 3\\]"):
        identify_official_model({**sr, "out.2.weight": torch.empty(3, 192, 3, 3, device="meta")}, "sr")
