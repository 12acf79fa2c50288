"""The house's shared saving helper."""

from __future__ import annotations

import json

import torch
from diffusers import VQModel
from safetensors.torch import load_file

from pipelines.pipeline_utils import save_module


def test_a_saved_module_is_cast_put_back_and_carries_no_machine_path(tmp_path):
    VQModel(block_out_channels=(8,), norm_num_groups=4, num_vq_embeddings=8, vq_embed_dim=2,
            latent_channels=2).save_pretrained(tmp_path / "first")
    loaded = VQModel.from_pretrained(tmp_path / "first")  # diffusers records the folder as `_name_or_path`
    assert str(loaded.config._name_or_path) == str(tmp_path / "first")
    save_module(loaded, tmp_path / "second", torch.float16)
    assert loaded.dtype == torch.float32
    assert "_name_or_path" not in json.loads((tmp_path / "second" / "config.json").read_text())
    stored = load_file(str(tmp_path / "second" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
