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

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"


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


def cached_repo(cache: Path, repo_id: str) -> Path:
    """An entry for `repo_id` in the Hugging Face cache layout (refs/main -> snapshot); returns the empty snapshot."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


class FakeRequest:
    """Stands in for gr.Request when a handler is called without a server."""

    def __init__(self, session_hash: str = "test-session"):
        self.session_hash = session_hash
