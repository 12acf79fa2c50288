"""CLI: `python -m pipelines.metrics <metric> --out results.json [options]` (see `<metric> --help`).

Each metric module `pipelines.metrics.<metric>` brings `add_arguments(parser)` and `main(args) -> dict`.
"""

from __future__ import annotations

import argparse
import importlib

METRICS = ("images_that_sound", "impact_sound", "sounding_video", "sounding_video_comparison", "visual_echoes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.metrics", description=__doc__)
    metrics = parser.add_subparsers(dest="metric", required=True, metavar="metric")
    for name in METRICS:
        module = importlib.import_module(f"pipelines.metrics.{name}")
        sub = metrics.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--out", required=True, help="JSON file to write")
        sub.add_argument("--seed", type=int, default=0)
        module.add_arguments(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    return importlib.import_module(f"pipelines.metrics.{args.metric}").main(args)


if __name__ == "__main__":
    main()
