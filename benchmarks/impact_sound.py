"""Impact Sound: estimation accuracy of the `paper` and `refined` extractors, synthesis speed, edit-to-sound latency.

1. Accuracy, both extractors on the same seeded synthetic impacts (4 isolated modes each, frequencies log-uniform in
   100 Hz–15 kHz at least 300 Hz apart, T60 log-uniform in 0.02–1 s, powers 0 to −20 dB, white noise at an SNR drawn
   in 20–60 dB against the loudest mode). For every true mode the estimated mode nearest in frequency is matched;
   reported: share of modes found within 5 Hz, median |Δf|, median |Δd| / d, median |Δp|.
2. Synthesis of 1025 modes (the paper's one mode per STFT bin) × 0.25 s at 44.1 kHz: seconds of sound per second of
   compute (real-time factor; goal ≥ 100×). Baseline in the same run: a direct per-mode loop of Eq. 4. Also a
   material preset (glass: what the tab plays after an edit).
3. Edit-to-sound: the Impact Sound tab's own `render` handler (slider edit → wav, the matplotlib picture of the
   spectrogram and modes, and JSON on disk) for a material preset; server time in ms (goal < 100 ms), median and
   max of repeated edits (the pitch slider moving), with the picture alone timed apart; also an edit of the
   sound's length (the picture's time axis is drawn again) and the first edit after start-up (matplotlib imported,
   its figure made).

Prints a table and writes benchmarks/results/impact_sound.json.

    python -m benchmarks.impact_sound [--clips 40] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from pipelines.impact_sound.materials import material_preset
from pipelines.impact_sound.modal import IMPACT, Modes, estimate_modes, synthesize

RESULTS = Path(__file__).resolve().parent / "results" / "impact_sound.json"
SR = IMPACT.sample_rate
MODES_PER_CLIP = 4
MATCH_HZ = 5.0
SYNTHESIS_GOAL = 100.0
EDIT_GOAL_MS = 100.0


def synthetic_clip(rng: np.random.Generator) -> tuple[np.ndarray, Modes]:
    """One noisy impact of MODES_PER_CLIP isolated modes and its true modes."""
    while True:
        frequencies = np.sort(np.exp(rng.uniform(np.log(100.0), np.log(15000.0), MODES_PER_CLIP)))
        if np.diff(frequencies).min() >= 300.0:
            break
    modes = Modes(frequencies, rng.uniform(-20.0, 0.0, MODES_PER_CLIP),
                  np.exp(rng.uniform(np.log(0.02), np.log(1.0), MODES_PER_CLIP)), sample_rate=SR)
    clean = synthesize(modes, ceiling=np.inf)
    snr_db = rng.uniform(20.0, 60.0)
    noise = rng.standard_normal(len(clean)) * np.abs(clean).max() * 10.0 ** (-snr_db / 20.0)
    return (clean + noise).astype(np.float32), modes


def match_errors(true: Modes, found: Modes) -> list[tuple[float, float, float]]:
    """(|Δf| Hz, |Δd|/d, |Δp| dB) of the nearest estimated mode for every true mode."""
    errors = []
    for f, p, d in zip(true.frequencies, true.powers, true.decays):
        k = int(np.argmin(np.abs(found.frequencies - f)))
        errors.append((abs(found.frequencies[k] - f), abs(found.decays[k] - d) / d, abs(found.powers[k] - p)))
    return errors


def accuracy(clips: int, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    data = [synthetic_clip(rng) for _ in range(clips)]
    table = {}
    for method in ("paper", "refined"):
        errors = np.array([e for audio, modes in data for e in match_errors(modes, estimate_modes(audio, SR, method))])
        found = errors[:, 0] <= MATCH_HZ
        table[method] = {"found_within_5hz": float(found.mean()),
                         "median_freq_error_hz": float(np.median(errors[:, 0])),
                         "median_decay_rel_error": float(np.median(errors[found, 1])),
                         "median_power_error_db": float(np.median(errors[found, 2]))}
    return table


def naive_synthesis(modes: Modes, samples: int) -> np.ndarray:
    """Eq. 4 one mode at a time (the baseline)."""
    t = np.arange(samples) / SR
    out = np.zeros(samples)
    for f, p, d in zip(modes.frequencies, modes.powers, modes.decays):
        out += 10.0 ** ((p - 60.0 / d * t) / 20.0) * np.sin(2 * np.pi * f * t)
    return out


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def synthesis_speed(repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    modes = Modes(np.linspace(0.0, SR / 2, 1025)[1:-1], rng.uniform(-80.0, 0.0, 1023),
                  rng.uniform(0.003, 0.26, 1023), sample_rate=SR)
    seconds = IMPACT.clip_seconds
    ours = best_of(lambda: synthesize(modes), repeats)
    naive = best_of(lambda: naive_synthesis(modes, IMPACT.clip_samples), max(3, repeats // 4))
    preset = material_preset("glass")
    preset_s = best_of(lambda: synthesize(preset), repeats)
    return {"modes": len(modes), "sound_seconds": seconds, "ours_s": ours, "naive_s": naive,
            "ours_realtime_factor": seconds / ours, "naive_realtime_factor": seconds / naive,
            "speedup_vs_naive": naive / ours, "preset_modes": len(preset), "preset_s": preset_s,
            "preset_realtime_factor": seconds / preset_s}


def milliseconds(function) -> float:
    start = time.perf_counter()
    function()
    return 1000 * (time.perf_counter() - start)


def summary(times_ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times_ms), "max_ms": max(times_ms)}


def edit_latency(repeats: int) -> dict:
    """The tab's `render` handler on a material preset: a slider edit, the picture alone, a change of length, and
    the first edit after start-up (see the module docstring)."""
    from studio.config import StudioConfig
    from studio.context import StudioContext
    from studio.sessions import SessionFiles
    from pipelines.impact_sound.pipeline_physics import MAX_SECONDS
    from studio.tabs.impact_sound import ImpactHandlers, modes_table

    class Request:
        session_hash = "benchmark"

    preset = material_preset("glass")
    table = modes_table(preset)

    def edit(pitch: float = 3.0, seconds: float = 0.25) -> None:  # length, pitch, damping, brightness, cuts
        handlers.render(table, "", seconds, pitch, 0.8, 2.0, 0.0, 0.0, 0.0, Request())

    with tempfile.TemporaryDirectory() as folder:
        handlers = ImpactHandlers(StudioContext(StudioConfig(), SessionFiles(Path(folder))), "auto")
        handlers.pipe.synthesize(preset)  # the registry's first load of the physics pipeline is not an edit
        first = milliseconds(edit)
        edits = [milliseconds(lambda: edit(pitch=0.5 * (k % 8))) for k in range(repeats)]
        lengths = [milliseconds(lambda: edit(seconds=0.26 + 0.01 * k)) for k in range(repeats)]  # each one new
        edit(seconds=MAX_SECONDS)  # the tab's default length, once to draw its time axis
        at_default = [milliseconds(lambda: edit(pitch=0.5 * (k % 8), seconds=MAX_SECONDS)) for k in range(repeats)]
    audio = handlers.pipe.synthesize(preset)
    pictures = [milliseconds(lambda: handlers.pipe.picture(audio, preset)) for _ in range(repeats)]
    return {"modes": len(table), **summary(edits), "picture": summary(pictures), "length_change": summary(lengths),
            "at_default_length": {"seconds": MAX_SECONDS, **summary(at_default)}, "first_edit_ms": first}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="synthetic impacts for the accuracy table")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats (best or median of them)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.system()}, "
              f"Python {platform.python_version()}", "settings": vars(args),
              "accuracy": accuracy(args.clips, args.seed), "synthesis": synthesis_speed(args.repeats),
              "edit_to_sound": edit_latency(args.repeats)}
    print(f"Estimation on {args.clips} synthetic impacts × {MODES_PER_CLIP} modes (SNR 20–60 dB)")
    print("| extractor | found within 5 Hz | median |Δf| (Hz) | median |Δd|/d | median |Δp| (dB) |")
    print("|---|---|---|---|---|")
    for method, row in result["accuracy"].items():
        print(f"| {method} | {row['found_within_5hz']:.2f} | {row['median_freq_error_hz']:.2f} | "
              f"{row['median_decay_rel_error']:.3f} | {row['median_power_error_db']:.2f} |")
    synth = result["synthesis"]
    print(f"\nSynthesis of {synth['modes']} modes × {synth['sound_seconds']} s: ours {1000 * synth['ours_s']:.1f} ms "
          f"({synth['ours_realtime_factor']:.0f}× real time, goal ≥ {SYNTHESIS_GOAL:g}×), per-mode loop "
          f"{1000 * synth['naive_s']:.1f} ms ({synth['naive_realtime_factor']:.0f}×): "
          f"{synth['speedup_vs_naive']:.1f}× faster; a {synth['preset_modes']}-mode preset: "
          f"{1000 * synth['preset_s']:.2f} ms ({synth['preset_realtime_factor']:.0f}× real time)")
    print_edit_latency(result["edit_to_sound"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    return result


def print_edit_latency(edit: dict) -> None:
    print(f"\nEdit to sound: the tab's render handler on {edit['modes']} modes, server time (goal < {EDIT_GOAL_MS:g} "
          "ms)")
    print("| step | median (ms) | max (ms) |")
    print("|---|---|---|")
    rows = [("slider edit → wav + picture + JSON", edit), ("of which the picture", edit["picture"]),
            ("edit to a new length (the picture's time axis drawn)", edit["length_change"]),
            (f"slider edit at the tab's default length ({edit['at_default_length']['seconds']:g} s)",
             edit["at_default_length"])]
    for name, row in rows:
        print(f"| {name} | {row['median_ms']:.1f} | {row['max_ms']:.1f} |")
    print(f"| first edit after start-up (matplotlib imported, figure made) | {edit['first_edit_ms']:.0f} | |")


if __name__ == "__main__":
    main()
