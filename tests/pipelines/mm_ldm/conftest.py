"""Tiny MM-LDM components for the tests (the library's `tiny` preset, seeded)."""

from __future__ import annotations

import pytest
import torch

from pipelines.mm_ldm.modeling_mm_ldm import build_components
from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline


def tiny_pipeline(seed: int = 0) -> MMLDMPipeline:
    torch.manual_seed(seed)
    return MMLDMPipeline(**build_components("tiny"))


def randomize_zero_initialised(module: torch.nn.Module, seed: int = 1, std: float = 0.2) -> None:
    """Give every all-zero parameter random values, as training would (so conditional paths do something)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.is_floating_point() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture
def pipe() -> MMLDMPipeline:
    return tiny_pipeline()


@pytest.fixture
def trained_pipe() -> MMLDMPipeline:
    """The tiny pipeline with its zero-initialised layers randomised: conditional and unconditional paths differ."""
    pipe = tiny_pipeline()
    randomize_zero_initialised(pipe.transformer)
    randomize_zero_initialised(pipe.autoencoder, seed=2)
    return pipe
