"""CLI: `python -m pipelines.train images_that_sound|judges --data toyworld --out DIR [options]` (see `--help`)."""

from __future__ import annotations

import argparse

from pipelines.train import GENERATORS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__)
    parser.add_argument("generator", choices=GENERATORS)
    parser.add_argument("--data", required=True, help="'toyworld' or a folder with captions.jsonl")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, logs, loadable model folders)")
    parser.add_argument("--size", default="studio", choices=("studio", "tiny"), help="model size preset")
    parser.add_argument("--steps", type=int, default=1000, help="UNet training steps")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default: --steps)")
    parser.add_argument("--batch-size", type=int, default=64, help="UNet batch (per model)")
    parser.add_argument("--vae-batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="UNet learning rate (AdamW)")
    parser.add_argument("--vae-crop-rows", type=int, default=128,
                        help="the VAE trains on random bands of this many rows (0: whole 256-row images)")
    parser.add_argument("--vae-lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--ema-decay", type=float, default=0.999, help="0 saves the live weights")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="save_state every K steps (and at the end)")
    parser.add_argument("--width", type=int, default=64, help="pixel columns (multiple of 64); rows are always 256")
    parser.add_argument("--pool", type=int, default=1024, help="toy-world samples generated per kind")
    parser.add_argument("--classes", default="core", choices=("core", "all"), help="toy-world classes")
    parser.add_argument("--held-out", type=int, default=256, help="judges: fresh toy samples per kind to test on")
    parser.add_argument("--save-dtype", default="fp32", choices=("fp32", "fp16"), help="dtype of exported weights")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.generator == "images_that_sound":
        from pipelines.train.images_that_sound import train

        train(args)
    elif args.generator == "judges":
        from pipelines.train.judges import train as train_judges

        train_judges(args)


if __name__ == "__main__":
    main()
