"""The paired toy world: determinism, shapes, and ground truth that is right (size sets pitch, count sets events)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.audio import SPECS, specvqgan_mel
from pipelines.metrics.visual_echoes import count_events, loudest_pitch_hz, per_kind_spearman
from pipelines.toyworld import sample
from pipelines.toyworld.paired import PAIRED_KINDS, pitch_hz, sample_paired


def test_seeded_prefix_stable_and_shaped():
    first, longer = sample_paired(3, 5), sample_paired(6, 5)
    np.testing.assert_array_equal(first.images, longer.images[:3])
    np.testing.assert_array_equal(first.audio, longer.audio[:3])
    assert first.images.shape == (3, 32, 32, 3) and first.audio.shape == (3, 128 * 256)
    assert first.sample_rate == SPECS["visual_echoes"].sample_rate == 22050
    assert len(PAIRED_KINDS) >= 8 and np.abs(first.audio).max() <= 0.9 + 1e-6
    assert sample("paired", 2, 0).kinds == sample_paired(2, 0).kinds


def test_bigger_is_lower_and_every_object_is_an_event():
    batch = sample_paired(64, 3, balanced=True)
    spec = SPECS["visual_echoes"]
    assert pitch_hz("bell", 1.0) < pitch_hz("bell", 0.0)
    counted = [count_events(specvqgan_mel(clip, spec)) for clip in batch.audio]
    assert np.mean([c == n for c, n in zip(counted, batch.counts)]) >= 0.9
    rows = [(loudest_pitch_hz(specvqgan_mel(a, spec)), size, kind)
            for a, size, kind in zip(batch.audio, batch.sizes, batch.kinds)]
    assert per_kind_spearman(rows) > 0.7  # ρ(size, −pitch) within each kind, averaged (0.80 on these 64)


def test_unknown_kind_is_a_plain_error():
    with pytest.raises(ValueError, match="unknown paired kind"):
        sample_paired(2, 0, kinds=("unicorn",))
