"""CLI: `python -m pipelines.metrics images_that_sound [--samples-per-pair N] [--steps 50] [--guidance 3] [--seed 0]
--out results.json` (see `pipelines.metrics.images_that_sound`)."""

from __future__ import annotations

import argparse

METRICS = ("images_that_sound",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.metrics", description=__doc__)
    parser.add_argument("metric", choices=METRICS)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--samples-per-pair", type=int, default=4, help="samples per (image, sound) class pair")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (imprint: per model)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance, both models")
    parser.add_argument("--warm-start", type=float, default=0.9, help="composed: image warm start t_v")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=None, help="only the first K of the 16 class pairs")
    parser.add_argument("--judges", default=None, help="judges folder (default: assets/models/judges)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from pipelines.metrics.images_that_sound import CORE_PAIRS, run

    return run(args.out, samples_per_pair=args.samples_per_pair, steps=args.steps, guidance=args.guidance,
               warm_start=args.warm_start, seed=args.seed, pairs=CORE_PAIRS[: args.pairs] if args.pairs else None,
               judges=args.judges)


if __name__ == "__main__":
    main()
