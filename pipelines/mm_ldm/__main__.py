"""MM-LDM from the command line: sounding videos, and a sample sheet to look at.

    python -m pipelines.mm_ldm joint --out DIR                  # video and sound together
    python -m pipelines.mm_ldm a2v sound.wav --out DIR          # a video for a sound
    python -m pipelines.mm_ldm v2a video.mp4 --out DIR          # a sound for a video

Options: --model FOLDER (default: the bundled studio weights), --steps N (the DiT's DDIM steps), --decoder-steps N (the
shared decoder's DDIM steps), --guidance φ (a2v and v2a: the cross-modal guidance), --reconstruction λ (a2v and v2a:
the reconstruction guidance, a departure from the paper; 0 = the paper's sampler), --resample-rounds U and
--resample-share S (the noisiest share S of the DiT's steps taken U times, a departure; 1 = the paper's sampler; the
studio model takes 2 for a2v),
--num-samples K, --seed S (-1: random); defaults: the studio model's (`pipelines.mm_ldm.entries`). A given sound or
video is fitted to the model's clip (rate, length, size) as the Sounding Video tab fits uploads. Writes sample-XXX.mp4
(frames enlarged to at least 64 pixels, with the sound), sample-XXX.wav (16 kHz), sheet.png (one row of frames per
sample with its spectrogram drawn under it, as `python -m pipelines.mm_diffusion` draws it) and run.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COMMANDS = ("joint", "a2v", "v2a")


def build_parser() -> argparse.ArgumentParser:
    from pipelines.mm_ldm.entries import (
        STUDIO_DECODER_STEPS,
        STUDIO_FOLDER,
        STUDIO_GUIDANCE,
        STUDIO_RECONSTRUCTION,
        STUDIO_RESAMPLE_ROUNDS,
        STUDIO_STEPS,
    )

    parser = argparse.ArgumentParser(prog="python -m pipelines.mm_ldm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("inputs", nargs="*", help="a2v: SOUND; v2a: VIDEO")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default=str(STUDIO_FOLDER), help="a folder MMLDMPipeline.save_pretrained wrote")
    parser.add_argument("--steps", type=int, default=STUDIO_STEPS, help="DDIM steps of the DiT")
    parser.add_argument("--decoder-steps", type=int, default=STUDIO_DECODER_STEPS,
                        help="DDIM steps of the shared decoder")
    parser.add_argument("--guidance", type=float, default=None,
                        help=f"a2v and v2a: φ of the cross-modal guidance (default {STUDIO_GUIDANCE:g})")
    parser.add_argument("--reconstruction", type=float, default=None,
                        help=f"a2v and v2a: λ of the reconstruction guidance (default a2v "
                             f"{STUDIO_RECONSTRUCTION['a2v']:g}, v2a {STUDIO_RECONSTRUCTION['v2a']:g}; 0 = the "
                             f"paper's sampler)")
    parser.add_argument("--resample-rounds", type=int, default=None,
                        help="times each resampled DiT step is taken (default, per command: " + ", ".join(
                            f"{command} {rounds}" for command, rounds in STUDIO_RESAMPLE_ROUNDS.items())
                        + "; 1 = the paper's sampler)")
    parser.add_argument("--resample-share", type=float, default=0.6,
                        help="share of the DiT's steps, from the noisiest, that are resampled")
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def check_arguments(args: argparse.Namespace) -> None:
    """Plain errors, in the CLI's own terms, for inputs and numbers it cannot use."""
    wanted = {"joint": 0, "a2v": 1, "v2a": 1}[args.command]
    if len(args.inputs) != wanted:
        raise ValueError(f"{args.command} takes {wanted} input file(s), got {len(args.inputs)}")
    if not 1 <= args.num_samples <= 64:
        raise ValueError(f"--num-samples must be 1 to 64, got {args.num_samples}")
    for flag, value in (("--steps", args.steps), ("--decoder-steps", args.decoder_steps)):
        if not 1 <= value <= 1000:
            raise ValueError(f"{flag} must be 1 to 1000, got {value}")
    if args.resample_rounds is not None and not 1 <= args.resample_rounds <= 10:
        raise ValueError(f"--resample-rounds must be 1 to 10, got {args.resample_rounds}")
    if not 0 <= args.resample_share <= 1:
        raise ValueError(f"--resample-share must be between 0 and 1, got {args.resample_share}")
    for flag, value in (("--guidance", args.guidance), ("--reconstruction", args.reconstruction)):
        if value is None:
            continue
        if args.command == "joint":
            raise ValueError(f"{flag} steers a2v and v2a towards the given stream; joint generation has none")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag} must be a number >= 0, got {value}")


def given_stream(command: str, inputs: list[str], pipe) -> dict[str, np.ndarray]:
    """The pipeline argument for a2v (`audio`: the sound at the model's rate, fitted to its clip) or v2a (`video`:
    the clip's frames at its size and frame rate); nothing for joint."""
    from pipelines.audio import AudioDecodeError, load_audio
    from pipelines.media import VideoDecodeError
    from pipelines.mm_diffusion.clips import fit_audio, read_video_clip

    if command == "a2v":
        try:
            sound = load_audio(inputs[0], pipe.spec).samples
        except AudioDecodeError as error:
            raise ValueError(f"{inputs[0]} could not be read as sound ({error})") from None
        return {"audio": fit_audio(sound, pipe.clip_format).value}
    if command == "v2a":
        try:
            return {"video": read_video_clip(inputs[0], pipe.clip_format).value}
        except VideoDecodeError as error:
            raise ValueError(f"{inputs[0]} could not be read as a video ({error})") from None
    return {}


def run(args: argparse.Namespace) -> int:
    from pipelines.devices import choose_device
    from pipelines.mm_diffusion.clips import write_samples
    from pipelines.mm_ldm.entries import STUDIO_GUIDANCE, STUDIO_RECONSTRUCTION, STUDIO_RESAMPLE_ROUNDS
    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
    from pipelines.seeds import generators_for

    check_arguments(args)
    pipe = MMLDMPipeline.from_pretrained(args.model).to(choose_device())
    given = given_stream(args.command, args.inputs, pipe)
    guidance = STUDIO_GUIDANCE if args.guidance is None else args.guidance
    reconstruction = STUDIO_RECONSTRUCTION[args.command] if args.reconstruction is None else args.reconstruction
    rounds = STUDIO_RESAMPLE_ROUNDS[args.command] if args.resample_rounds is None else args.resample_rounds
    generators, seed = generators_for(args.seed, args.num_samples)
    output = pipe(num_inference_steps=args.steps, guidance_scale=guidance, reconstruction_scale=reconstruction,
                  resample_rounds=rounds, resample_share=args.resample_share,
                  decoder_steps=args.decoder_steps, num_samples=args.num_samples, generator=generators, **given)
    folder = Path(args.out)
    write_samples(folder, output.video, output.audio, pipe.clip_format)
    record = {"command": args.command, "inputs": args.inputs, "model": args.model, "steps": args.steps,
              "decoder_steps": args.decoder_steps, "guidance": guidance if given else None,
              "reconstruction": reconstruction if given else None, "resample_rounds": rounds,
              "resample_share": args.resample_share, "num_samples": args.num_samples, "seed": seed}
    (folder / "run.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {args.num_samples} sample(s) and sheet.png to {folder} (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
