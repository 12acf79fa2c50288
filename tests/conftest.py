"""Shared fixtures. No test touches the network: the Hub is forced offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"


@pytest.fixture
def tone():
    """A function making a sine tone: tone(freq_hz, seconds, sample_rate, amplitude=0.5)."""

    def make(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return make


class FakeRequest:
    """Stands in for gr.Request when a handler is called without a server."""

    def __init__(self, session_hash: str = "test-session"):
        self.session_hash = session_hash
