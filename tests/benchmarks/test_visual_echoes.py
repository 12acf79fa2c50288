"""The Visual Echoes speed benchmark runs (tiny size) and reports both decoders."""

from __future__ import annotations

from benchmarks.visual_echoes import run


def test_the_benchmark_times_masked_and_autoregressive_decoding():
    result = run(["tiny"], repeats=1, model=None)
    row = result["rows"][0]
    assert {"masked_s", "autoregressive_s"} <= row.keys() and row["how"] == "measured end to end"
