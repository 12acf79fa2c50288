"""Shared fixtures. No test touches the network: the Hub is forced offline."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# No test touches the network or the developer's own model cache: the Hub is offline and the cache is a fresh,
# empty folder (set before anything imports huggingface_hub, which reads these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="synesthesia-test-hub-")



@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread for the whole run: the test models are tiny, so a second thread only adds OpenMP
    spin-waiting (several times slower on a shared 2-core machine, measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tone():
    """A function making a sine tone: tone(freq_hz, seconds, sample_rate, amplitude=0.5)."""

    def make(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return make


@pytest.fixture
def hub_cache():
    """The test session's Hugging Face cache folder; emptied, and loaded pipelines dropped, after the test."""
    from pipelines.registry import REGISTRY

    cache = Path(os.environ["HF_HUB_CACHE"])
    yield cache
    for entry in cache.iterdir():
        shutil.rmtree(entry, ignore_errors=True)
    REGISTRY.clear()




