"""MM-Diffusion from the command line: sounding videos, and a sample sheet to look at.

    python -m pipelines.mm_diffusion joint --out DIR                  # video and sound together
    python -m pipelines.mm_diffusion a2v sound.wav --out DIR          # a video for a sound
    python -m pipelines.mm_diffusion v2a video.mp4 --out DIR          # a sound for a video

Options: --model FOLDER or .pt (default: the bundled studio weights), --sampler ddim|dpm_solver|ddpm and --steps N
(default: DDPM 100, the Sounding Video tab's for the studio model), --num-samples K, --seed S (-1: random),
--resample-rounds U (RePaint resampling of the noisiest 60 % of the steps; 1 = the paper's sampler), and for a2v and
v2a --guidance λ (0 = replacement) with --guidance-form paper|code (Eq. 12's factor) and --clean-condition /
--no-clean-condition (the given stream clean at step 0, for weights trained with `--clean-condition`). Their defaults
(`entries.studio_steering`) are the tab's for the studio model: joint with 3 resampling rounds, a2v with 4, v2a by
replacement, and the learnt conditional for weights trained with a clean condition (a2v with 3 rounds on top).
Writes sample-XXX.mp4 (frames enlarged to at least 64 pixels, with the sound), sample-XXX.wav (16 kHz), sheet.png
(one row of frames per sample with its spectrogram drawn under it) and run.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COMMANDS = ("joint", "a2v", "v2a")


def build_parser() -> argparse.ArgumentParser:
    from pipelines.mm_diffusion.entries import STUDIO_FOLDER

    parser = argparse.ArgumentParser(prog="python -m pipelines.mm_diffusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("inputs", nargs="*", help="a2v: SOUND; v2a: VIDEO")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default=str(STUDIO_FOLDER))
    parser.add_argument("--sampler", default="ddpm", choices=("ddim", "dpm_solver", "ddpm"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None, help="zero-shot λ of Eq. 12 (0: replacement, "
                        "the default; the released scripts' λ = 3 acts as 3·2^20)")
    parser.add_argument("--guidance-form", default=None, choices=("paper", "code"), help="zero-shot: Eq. 12's "
                        "factor, the paper's √(1 − ᾱ) (default) or the released code's √ᾱ")
    parser.add_argument("--resample-rounds", type=int, default=None, help="times each of the noisiest 60 %% of "
                        "the steps is taken (1: the paper's sampler; default: the tab's, 3 for joint, 3 or 4 for "
                        "a2v, 1 for v2a)")
    parser.add_argument("--clean-condition", default=None, action=argparse.BooleanOptionalAction, help="a2v and "
                        "v2a: the given stream enters clean at step 0 (weights trained with --clean-condition; "
                        "their default) or noised as in the paper")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from pipelines.audio import SPECS, load_audio, resample
    from pipelines.media import VideoDecodeError
    from pipelines.mm_diffusion.clips import fit_audio, read_video_clip, write_samples
    from pipelines.mm_diffusion.entries import studio_steering
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
    from pipelines.seeds import generators_for

    wanted = {"joint": 0, "a2v": 1, "v2a": 1}[args.command]
    if len(args.inputs) != wanted:
        raise ValueError(f"{args.command} takes {wanted} input file(s), got {len(args.inputs)}")
    if not 1 <= args.num_samples <= 64 or not 1 <= args.steps <= 1000:
        raise ValueError("--num-samples must be 1 to 64 and --steps 1 to 1000")
    pipe = MMDiffusionPipeline.from_pretrained(args.model)
    fmt = pipe.clip_format
    given = {}
    if args.command == "a2v":
        sound = load_audio(args.inputs[0], SPECS["mm_diffusion"]).samples
        given["audio"] = fit_audio(resample(sound, SPECS["mm_diffusion"].sample_rate, fmt.sample_rate), fmt).value
    elif args.command == "v2a":
        try:
            given["video"] = read_video_clip(args.inputs[0], fmt).value
        except VideoDecodeError as error:
            raise ValueError(f"{args.inputs[0]} could not be read as a video ({error})") from None
    steering = studio_steering(args.command, pipe.learnt_clean_condition)
    steering = steering.overridden(resample_rounds=args.resample_rounds)
    if given:
        steering = steering.overridden(guidance_scale=args.guidance, guidance_scale_form=args.guidance_form,
                                       clean_condition=args.clean_condition)
    steering = steering.arguments()
    generators, seed = generators_for(args.seed, args.num_samples)
    output = pipe(num_samples=args.num_samples, generator=generators, sampler=args.sampler,
                  num_inference_steps=args.steps, **steering,
                  **{name: np.repeat(value[None], args.num_samples, 0) for name, value in given.items()})
    folder = Path(args.out)
    write_samples(folder, output.video, output.audio, fmt)
    record = {"command": args.command, "inputs": args.inputs, "model": args.model, "sampler": args.sampler,
              "steps": args.steps, "guidance": steering["guidance_scale"],
              "guidance_form": steering["guidance_scale_form"], "resample_rounds": steering["resample_rounds"],
              "clean_condition": steering["clean_condition"],
              "num_samples": args.num_samples, "seed": seed}
    (folder / "run.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {args.num_samples} sample(s) and sheet.png to {folder} (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
