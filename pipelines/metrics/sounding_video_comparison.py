"""Two Sounding Video models compared on the coupling metric: each score's difference with a 95 % bootstrap interval.

`python -m pipelines.metrics sounding_video_comparison FIRST.json SECOND.json --out comparison.json` reads two runs of
`python -m pipelines.metrics sounding_video` (which keep every generated clip's measurements) and, for every mode and
coupling both scored, gives the first model's score minus the second's. Zero-shot modes (a2v, v2a, reconstructed)
give both models the same held-out toy clips when the runs share their seed and sample count (clip i is the same
scene, each in its model's own format), so the clips both scored are resampled together, a paired bootstrap in which
what a clip asks of both models cancels out; joint samples have nothing in common, so each model's clips are
resampled on their own.
An interval above 0 says the first model is the more coupled, one below 0 the second, one that holds 0 that these
clips do not tell the two apart.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np

from pipelines.metrics.sounding_video import couplings, percentile_interval

PAIRED_MODES = ("a2v", "v2a", "reconstructed")  # the given stream comes from the same held-out clips
DRAWS = 2000


def load_run(path: str | Path) -> dict:
    """A sounding_video metric JSON whose generated clips keep their measurements (ValueError saying what to do)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file: give the JSON written by `python -m pipelines.metrics "
                         "sounding_video`")
    run = json.loads(path.read_text())
    generated = {source: result for source, result in run.get("results", {}).items()
                 if source.startswith("generated (")}
    if not generated:
        raise ValueError(f"{path} holds no generated clips' scores: is it a sounding_video metric JSON?")
    if any("measurements" not in c for result in generated.values() for c in result["couplings"].values()):
        raise ValueError(f"{path} does not keep its clips' measurements (written before 2026-12-07): run the metric "
                         "again to compare it")
    return run


def difference_interval(score, first: tuple[list, list], second: tuple[list, list], paired: bool, draws: int,
                        seed: int, level: float = 0.95) -> list[float]:
    """The `level` percentile interval of score(first) − score(second) over `draws` resamplings of the clips with
    replacement: the same picks for both when `paired` (clip i of one is clip i of the other), else each on its own.
    first, second: (video features, audio features) of the clips, one entry per clip."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(draws):
        pick_first = rng.integers(0, len(first[0]), len(first[0]))
        pick_second = pick_first if paired else rng.integers(0, len(second[0]), len(second[0]))
        differences.append(score(*(_picked(part, pick_first) for part in first))
                           - score(*(_picked(part, pick_second) for part in second)))
    return percentile_interval(differences, level)


def _picked(features: list, picks: np.ndarray) -> list:
    return [features[i] for i in picks]


def _features(measurements: dict, clips: list[int] | None = None) -> tuple[list, list]:
    """(video, audio) features as arrays, of the given clip indices (in that order) or of all."""
    index = {clip: i for i, clip in enumerate(measurements["clips"])}
    rows = range(len(index)) if clips is None else [index[clip] for clip in clips]
    return ([np.asarray(measurements["video"][i], np.float64) for i in rows],
            [np.asarray(measurements["audio"][i], np.float64) for i in rows])


def verdict(interval: list[float]) -> str:
    low, high = interval
    if low > 0:
        return "first more coupled"
    if high < 0:
        return "second more coupled"
    return "not told apart"


def compare(first: dict, second: dict, draws: int = DRAWS, seed: int = 0) -> dict:
    """Every (mode, coupling) both runs scored: both scores, their difference (first − second), its interval,
    whether the clips were paired, and the verdict."""
    tolerance = first["settings"]["tolerance"]
    if second["settings"]["tolerance"] != tolerance:
        raise ValueError("the two runs matched bounce onsets with different --tolerance: their onset scores differ "
                         "in kind; run them with the same tolerance")
    scores = {link.name: link.score for link in couplings(tolerance)}
    same_clips = all(first["settings"][key] == second["settings"][key] for key in ("seed", "samples"))
    rows = []
    for source, result in first["results"].items():
        other = second["results"].get(source)
        if not source.startswith("generated (") or other is None:
            continue
        mode = source[len("generated (") : -1]
        for name, ours in result["couplings"].items():
            theirs = other["couplings"].get(name)
            if theirs is None:
                continue
            common = sorted(set(ours["measurements"]["clips"]) & set(theirs["measurements"]["clips"]))
            paired = same_clips and mode in PAIRED_MODES and len(common) >= 3
            parts = [_features(m["measurements"], common if paired else None) for m in (ours, theirs)]
            interval = difference_interval(scores[name], *parts, paired=paired, draws=draws, seed=seed)
            first_score, second_score = scores[name](*parts[0]), scores[name](*parts[1])
            rows.append({"mode": mode, "coupling": name, "description": ours["description"], "paired": paired,
                         "clips": [len(parts[0][0]), len(parts[1][0])], "first": first_score,
                         "second": second_score, "difference": first_score - second_score, "interval": interval,
                         "verdict": verdict(interval)})
    if not rows:
        raise ValueError("the two runs share no mode and coupling: run both with the same --mode")
    return {"rows": rows}


def table(comparison: dict) -> str:
    """Markdown: one row per mode and coupling."""
    lines = ["| mode | coupling | clips | first | second | first − second [95 % interval] | verdict |",
             "|---|---|---|---|---|---|---|"]
    for row in comparison["rows"]:
        low, high = row["interval"]
        clips = f"{row['clips'][0]} paired" if row["paired"] else f"{row['clips'][0]} / {row['clips'][1]}"
        lines.append(f"| {row['mode']} | {row['coupling']}: {row['description']} | {clips} | {row['first']:.2f} | "
                     f"{row['second']:.2f} | {row['difference']:+.2f} [{low:+.2f}, {high:+.2f}] | {row['verdict']} |")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """Options of `python -m pipelines.metrics sounding_video_comparison` (`--out`, `--seed` are common)."""
    parser.add_argument("first", help="a sounding_video metric JSON (the first model)")
    parser.add_argument("second", help="another one (the second model); run with the same --seed and --samples, their "
                        "zero-shot clips are paired")
    parser.add_argument("--draws", type=int, default=DRAWS, help="bootstrap resamplings of the clips")


def main(args) -> dict:
    """Compare the two runs, print the table, write the JSON; a bad input ends it with `error: …` and status 2."""
    try:
        runs = [load_run(args.first), load_run(args.second)]
        comparison = compare(*runs, draws=args.draws, seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "runs": [{"file": Path(path).name, "weights": run["settings"]["weights"], "date": run["date"]}
                       for path, run in zip((args.first, args.second), runs)],
              "draws": args.draws, "seed": args.seed, **comparison}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(table(comparison))
    return report
