"""CLI: `python -m pipelines.train <generator> --data toyworld|FOLDER --out DIR [options]` (see `--help`)."""

from __future__ import annotations

import argparse
import importlib

from pipelines.train import GENERATORS


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every trainer has: data, output, seed, resuming, starting weights, LoRA rank, precision, EMA,
    checkpoints, saved dtype."""
    parser.add_argument("--data", required=True, help="'toyworld' or a folder in the generator's documented format")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, logs, loadable model folders)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--init", default=None, metavar="paper|studio|DIR",
                        help="start from existing weights (fine-tuning): the paper's, the bundled studio weights, or "
                             "a folder save_pretrained wrote; default: random initialisation (pipelines.train.init)")
    parser.add_argument("--lora-rank", type=int, default=0,
                        help="LoRA rank on the U-Nets' attention projections (0: full fine-tuning; images_that_sound "
                             "and mm_diffusion)")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--ema-decay", type=float, default=0.999, help="0 saves the live weights")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="save_state every K steps (and at the end)")
    parser.add_argument("--save-dtype", default="fp32", choices=("fp32", "fp16"), help="dtype of exported weights")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__)
    generators = parser.add_subparsers(dest="generator", required=True, metavar="generator")
    for name in GENERATORS:
        module = importlib.import_module(f"pipelines.train.{name}")
        sub = generators.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_arguments(sub)
        module.add_arguments(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    importlib.import_module(f"pipelines.train.{args.generator}").train(args)


if __name__ == "__main__":
    main()
