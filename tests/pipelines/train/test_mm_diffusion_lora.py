"""MM-Diffusion's LoRA (`python -m pipelines.train mm_diffusion --init … --lora-rank R`): a small adapter on the
U-Net's attention projections that loads onto its base, changes the output, gives the base output exactly at scale 0
or unloaded, loads with its base from the run's folder, and resumes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from pipelines.mm_diffusion import lora as mm_lora
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.train.__main__ import main
from pipelines.train.common import checkpoint_dirs


def lora_run_args(start, out, *extra: str) -> list[str]:
    return ["mm_diffusion", "--data", "toyworld", "--init", str(start), "--lora-rank", "2", "--pool", "2",
            "--batch-size", "2", "--steps", "2", "--ema-decay", "0", "--checkpoint-every", "1", "--seed", "5",
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from tests.factories import tiny_mm_diffusion

    return tiny_mm_diffusion().save_pretrained(tmp_path_factory.mktemp("mm_base") / "base")


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    """A 2-step rank-2 LoRA fine-tune of the tiny base on the toy world (EMA 0: the live LoRA is exported)."""
    out = tmp_path_factory.mktemp("mm_lora") / "run"
    main(lora_run_args(base, out))
    return out


def sample(pipe: MMDiffusionPipeline) -> torch.Tensor:
    """One clip's float video and audio (no uint8 rounding), seeded."""
    output = pipe(sampler="ddim", num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(1))
    return torch.cat([output.video.flatten(), output.audio.flatten()])


def test_the_trainer_saves_only_a_small_adapter_on_the_attention_projections(adapter, base):
    assert sorted(p.name for p in adapter.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors")) == [
        "adapter.json", "adapter.safetensors", "training_summary.json"]
    config = json.loads((adapter / "adapter.json").read_text())
    assert config["model"] == "mm_diffusion" and config["rank"] == 2 and config["base"]["init"] == str(base.resolve())
    tensors = load_file(adapter / "adapter.safetensors")
    unet = MMDiffusionPipeline.from_pretrained(base).unet
    targeted = [name for name, module in unet.named_modules()
                if any(name == t or name.endswith("." + t) for t in mm_lora.TARGETS)]
    assert len(targeted) >= 8 and len(tensors) == 2 * len(targeted)  # lora_A and lora_B of each projection
    assert all(key.startswith("unet.") and ("lora_A" in key or "lora_B" in key) for key in tensors)
    assert config["base"]["unet_parameters"] == sum(p.numel() for p in unet.parameters())
    assert sum(t.numel() for t in tensors.values()) < 0.1 * config["base"]["unet_parameters"]


def test_a_lora_changes_the_output_and_scale_zero_or_unloading_gives_the_base_exactly(adapter, base):
    pipe = MMDiffusionPipeline.from_pretrained(base)
    plain = sample(pipe)
    config = pipe.load_lora_weights(adapter)
    assert config["rank"] == 2 and pipe.lora is config
    adapted = sample(pipe)
    assert not torch.equal(adapted, plain)
    pipe.set_lora_scale(0.0)
    assert torch.equal(sample(pipe), plain)
    pipe.set_lora_scale(1.0)
    assert torch.equal(sample(pipe), adapted)
    with pytest.raises(ValueError, match="unload_lora_weights"):
        pipe.save_pretrained(adapter / "not-here")
    pipe.unload_lora_weights()
    assert pipe.lora is None and torch.equal(sample(pipe), plain)
    assert not any("lora_" in name for name, _ in pipe.unet.named_parameters())


def test_a_lora_run_loads_as_its_base_with_the_adapter(adapter, base):
    pipe = MMDiffusionPipeline.from_pretrained(adapter)
    assert pipe.lora is not None and pipe.clip_format == MMDiffusionPipeline.from_pretrained(base).clip_format
    reference = MMDiffusionPipeline.from_pretrained(base)
    reference.load_lora_weights(adapter, scale=1.0)
    assert torch.equal(sample(pipe), sample(reference))


def test_a_lora_fine_tune_resumes(adapter, base, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(adapter, copy)
    shutil.rmtree(copy / "checkpoints" / "train" / "step-2")
    main(lora_run_args(base, copy, "--resume"))
    assert [p.name for p in checkpoint_dirs(copy / "checkpoints" / "train")] == ["step-1", "step-2"]
    straight, resumed = load_file(adapter / "adapter.safetensors"), load_file(copy / "adapter.safetensors")
    assert straight.keys() == resumed.keys()
    for key, tensor in straight.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=0, atol=0)


def test_a_lora_needs_existing_weights_that_are_a_whole_model(adapter, base, tmp_path):
    with pytest.raises(ValueError, match="A LoRA adapts existing weights"):
        main(["mm_diffusion", "--data", "toyworld", "--lora-rank", "2", "--out", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="is a LoRA run"):
        main(lora_run_args(adapter, tmp_path / "b"))
    with pytest.raises(ValueError, match="no LoRA adapter"):
        MMDiffusionPipeline.from_pretrained(base).load_lora_weights(tmp_path)
