"""One loading path for MM-Diffusion: `from_pretrained` takes a released checkpoint file (flags recognised from its
keys, or given in a JSON beside it) or a saved folder (model.safetensors + model.json, the trainer's and the bundled
studio model's layout); `save_pretrained` writes that folder, and loading it back gives the same seeded output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.mm_diffusion import MMDiffusionUNet
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.mm_diffusion.pipeline_mm_diffusion_sr import MMDiffusionSuperResPipeline
from tests.factories import (
    MM_DIFFUSION_TINY_FLAGS,
    MM_DIFFUSION_TINY_SR_FLAGS,
    ROOT,
    low_resolution_clips,
    tiny_mm_diffusion,
    tiny_mm_diffusion_sr,
)

BUNDLED = ROOT / "assets" / "models" / "mm_diffusion"


def generate(pipe: MMDiffusionPipeline, seed: int = 3):
    return pipe(sampler="ddim", num_inference_steps=3, generator=torch.Generator().manual_seed(seed))


def assert_same_output(first, second) -> None:
    np.testing.assert_array_equal(first.video, second.video)
    np.testing.assert_array_equal(first.audio, second.audio)


def test_the_bundled_studio_model_round_trips_with_the_same_seeded_output(tmp_path):
    bundled = MMDiffusionPipeline.from_pretrained(BUNDLED)
    assert bundled.clip_format == ClipFormat(8, 16, 16, 3200, 10, 4000)
    assert bundled.training_record["scenes"] == ["lamp"]
    folder = bundled.save_pretrained(tmp_path / "saved", dtype=torch.float16)  # as bundled: fp16 weights
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    assert json.loads((folder / "model.json").read_text()) == json.loads((BUNDLED / "model.json").read_text())
    saved, original = load_file(folder / "model.safetensors"), load_file(BUNDLED / "model.safetensors")
    assert saved.keys() == original.keys() and all(torch.equal(saved[k], original[k]) for k in original)
    assert_same_output(generate(MMDiffusionPipeline.from_pretrained(folder)), generate(bundled))


def test_a_checkpoint_file_with_its_flags_beside_it_loads_and_saves_as_a_folder(tmp_path):
    pipe = tiny_mm_diffusion()
    torch.save(pipe.unet.state_dict(), tmp_path / "Tiny.pt")
    (tmp_path / "Tiny.json").write_text(json.dumps({"flags": MM_DIFFUSION_TINY_FLAGS}))
    from_file = MMDiffusionPipeline.from_pretrained(tmp_path / "Tiny.pt")
    assert from_file.unet.official_model == "custom" and from_file.training_record == {}
    assert (from_file.sample_rate, from_file.fps) == (16000, 10)  # a checkpoint file has the released model's rates
    folder = from_file.save_pretrained(tmp_path / "folder")
    from_folder = MMDiffusionPipeline.from_pretrained(folder)
    assert from_folder.clip_format == from_file.clip_format == ClipFormat(4, 8, 8, 800, 10, 16000)
    assert_same_output(generate(from_folder), generate(from_file))
    assert_same_output(generate(from_file), generate(pipe))


def test_a_half_dtype_loads_the_official_mixed_precision(tmp_path):
    folder = tiny_mm_diffusion().save_pretrained(tmp_path / "tiny")
    for dtype in (torch.float16, torch.bfloat16):
        unet = MMDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype).unet
        assert unet.compute_dtype == torch.float16 and unet.time_embed[0].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="`torch_dtype` must be torch.float32 or a half dtype"):
        MMDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float64)


def test_the_up_sampler_loads_a_checkpoint_file_and_round_trips_a_folder(tmp_path):
    pipe = tiny_mm_diffusion_sr()
    torch.save(pipe.sr_model.state_dict(), tmp_path / "Tiny_SR.pt")
    (tmp_path / "Tiny_SR.json").write_text(json.dumps({"flags": MM_DIFFUSION_TINY_SR_FLAGS}))
    from_file = MMDiffusionSuperResPipeline.from_pretrained(tmp_path / "Tiny_SR.pt")
    from_folder = MMDiffusionSuperResPipeline.from_pretrained(from_file.save_pretrained(tmp_path / "folder"))

    def upsample(sr):
        return sr(low_resolution_clips(1), num_inference_steps=2, generator=torch.Generator().manual_seed(0)).video

    assert from_folder.image_size == 64
    np.testing.assert_array_equal(upsample(from_folder), upsample(pipe))
    np.testing.assert_array_equal(upsample(from_file), upsample(pipe))


def test_loading_problems_are_plain_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no model.json"):
        MMDiffusionPipeline.from_pretrained(tmp_path)
    (tmp_path / "model.json").write_text('{"clip_format": {}}')
    with pytest.raises(ValueError, match="model.json must hold"):
        MMDiffusionPipeline.from_pretrained(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json could not be read as JSON"):
        MMDiffusionPipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="No checkpoint file"):
        MMDiffusionPipeline.from_pretrained(tmp_path / "Landscape.pt")
    with torch.device("meta"):
        unflagged = MMDiffusionPipeline(MMDiffusionUNet())  # built from constructor arguments, not official flags
    with pytest.raises(ValueError, match="built from official flags"):
        unflagged.save_pretrained(tmp_path / "out")
