"""The Spectrogram Lab: pictures played as spectrograms, and sounds drawn as pictures.

`pipeline_spectrogram_lab.SpectrogramLabPipeline` does the work; this package's top level stays light (no torch
import), so the tab can read the lab's limits at start-up.
"""

from __future__ import annotations

import numpy as np

MIN_SECONDS, MAX_SECONDS = 0.5, 10.24
FULL_SCALE = 0.99  # loud pictures are scaled down to this peak instead of clipping


def round_trip_error(original: np.ndarray, again: np.ndarray) -> float:
    """Mean absolute difference between two spectrogram images, in image units (0 = same, 1 = opposite)."""
    columns = min(original.shape[1], again.shape[1])
    return float(np.abs(original[:, :columns] - again[:, :columns]).mean())
