"""MM-Diffusion's golden tensors from the official code (tests/data/mm_diffusion), shared by its tests."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.factories import MM_DIFFUSION_GOLDEN as GOLDEN


@pytest.fixture(scope="module")
def golden():
    config = json.loads((GOLDEN / "mm_diffusion_tiny_golden_config.json").read_text())
    return (
        config["official_flags_equivalent"],
        load_file(GOLDEN / "mm_diffusion_tiny_golden_weights.safetensors"),
        load_file(GOLDEN / "mm_diffusion_tiny_golden_io.safetensors"),
    )
