"""Images that Sound from the command line: N samples as png, wav and playhead mp4, scored and ranked.

    python -m pipelines.images_that_sound --image-prompt "a castle with bell towers, grayscale, lithograph style" \\
        --audio-prompt "bell ringing" --num-samples 8 --out results/castle

Writes `sample-XXX.{png,wav,mp4}` and `scores.json` (per-sample seed, CLIP and CLAP scores when those models can be
loaded, the combined ranking and the authors' top-20 % selection). Models are Hub ids or local diffusers folders;
`--weights` takes one folder in the studio layout instead (e.g. assets/models/images_that_sound).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipelines.images_that_sound import CLAP_MODEL, CLIP_MODEL, PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.images_that_sound.ranking import authors_selection, rank


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.images_that_sound", description=__doc__.splitlines()[0])
    parser.add_argument("--image-prompt", required=True)
    parser.add_argument("--audio-prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--method", choices=("composed", "imprint", "sds"), default="composed")
    parser.add_argument("--colorize", default="", metavar="PROMPT",
                        help="also write sample-XXX-color.png, coloured by this prompt with the spectrogram kept as "
                             "its grayscale (e.g. 'a colorful photo of a castle')")
    parser.add_argument("--colorizer", choices=("auto", "deepfloyd-if", "sd"), default="auto",
                        help="deepfloyd-if: the paper's (gated: needs a Hugging Face token and DeepFloyd IF-I/II-M "
                             "cached or reachable; meant for a GPU); sd: Stable Diffusion 1.5, ungated; "
                             "auto (default): deepfloyd-if when it can load, else sd")
    parser.add_argument("--colorize-steps", type=int, default=30,
                        help="colorization steps (paper: 30; DeepFloyd IF's stage I restarts from the noisy "
                             "spectrogram at 7/30 of them)")
    parser.add_argument("--sds-iterations", type=int, default=2000, help="SDS optimisation steps (paper: 40000)")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4, help="samples generated at once")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--image-guidance", type=float, default=10.0)
    parser.add_argument("--audio-guidance", type=float, default=10.0)
    parser.add_argument("--warm-start-image", type=float, default=0.9, help="t_v: fraction the image model is active")
    parser.add_argument("--warm-start-audio", type=float, default=1.0, help="t_a: fraction the audio model is active")
    parser.add_argument("--latent-width", type=int, default=128, help="latent columns (multiple of 8; 128 = 10.24 s)")
    parser.add_argument("--seed", type=int, default=2024, help="sample i uses seed + i; -1 draws a random seed")
    parser.add_argument("--vocoder", choices=("auto", "hifigan", "griffinlim"), default="auto",
                        help="auto (default): the HiFi-GAN when the weights have one, else Griffin-Lim")
    parser.add_argument("--image-model", default=PAPER_IMAGE_MODEL)
    parser.add_argument("--audio-model", default=PAPER_AUDIO_MODEL)
    parser.add_argument("--weights", type=Path, default=None,
                        help="a folder in the studio layout (image_model/, audio_model/), instead of the two models")
    parser.add_argument("--vocoder-model", default=None,
                        help="folder or id holding vocoder/ (default: the audio model's own, when it has one)")
    parser.add_argument("--clip-model", default=CLIP_MODEL, help="CLIP for scoring; 'none' to skip")
    parser.add_argument("--clap-model", default=CLAP_MODEL, help="CLAP for scoring; 'none' to skip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, type=Path)
    return parser


def load_scorers(args: argparse.Namespace) -> dict:
    """CLIP and CLAP scorers that can be loaded here; a missing one is reported and skipped."""
    from pipelines.images_that_sound.ranking import ClapScorer, ClipWindowScorer

    scorers = {}
    for name, source, cls in (("clip", args.clip_model, ClipWindowScorer), ("clap", args.clap_model, ClapScorer)):
        if source == "none":
            continue
        try:
            scorers[name] = cls.from_pretrained(source)
        except (OSError, ValueError) as error:
            print(f"{name.upper()} scorer unavailable ({source}): {error.__class__.__name__}; not scoring by it.",
                  file=sys.stderr)
    return scorers


def generate(pipe, args: argparse.Namespace, seed: int):
    """All samples, batch by batch; yields (first index, output)."""
    from pipelines.seeds import generators_for

    generators, _ = generators_for(seed, args.num_samples)
    if args.method == "sds":  # one optimisation per sample
        from pipelines.images_that_sound.sds import score_distillation

        for index, generator in enumerate(generators):
            yield index, score_distillation(pipe, args.image_prompt, args.audio_prompt,
                                            negative_prompt=args.negative_prompt, iterations=args.sds_iterations,
                                            latent_width=args.latent_width, generator=generator, vocoder=args.vocoder)
        return
    for start in range(0, args.num_samples, args.batch_size):
        batch = generators[start : start + args.batch_size]
        common = dict(generator=batch, num_samples=len(batch), latent_width=args.latent_width, vocoder=args.vocoder)
        if args.method == "imprint":
            output = pipe.imprint(args.image_prompt, args.audio_prompt, args.negative_prompt,
                                  image_steps=max(1, args.steps // 2), audio_steps=args.steps,
                                  image_guidance_scale=args.image_guidance, audio_guidance_scale=args.audio_guidance,
                                  **common)
        else:
            output = pipe(args.image_prompt, args.audio_prompt, args.negative_prompt, num_inference_steps=args.steps,
                          image_guidance_scale=args.image_guidance, audio_guidance_scale=args.audio_guidance,
                          warm_start_image=args.warm_start_image, warm_start_audio=args.warm_start_audio, **common)
        yield start, output


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_samples < 1 or args.batch_size < 1:
        raise SystemExit("error: --num-samples and --batch-size must be at least 1")
    from pipelines.devices import choose_device, choose_dtype
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline
    from pipelines.media import save_playhead_video, save_png, save_wav
    from pipelines.seeds import generators_for

    device = choose_device(args.device)
    sources = {"folder": args.weights} if args.weights else {"image_model": args.image_model,
                                                              "audio_model": args.audio_model}
    pipe = ImagesThatSoundPipeline.from_pretrained(**sources, vocoder=vocoder_choice(args),
                                                   torch_dtype=choose_dtype(device)).to(device)
    seed = generators_for(args.seed, 1)[1]
    colorizer, colorize = load_colorizer(args, pipe, device) if args.colorize else (None, None)
    args.out.mkdir(parents=True, exist_ok=True)
    samples, spectrograms, sounds, sample_rate = [], [], [], None
    for start, output in generate(pipe, args, seed):
        sample_rate = output.sample_rate
        for offset, (picture, audio) in enumerate(zip(output.image, output.audio)):
            index = start + offset
            stem = args.out / f"sample-{index:03d}"
            picture.save(stem.with_suffix(".png"))
            save_wav(audio, output.sample_rate, stem.with_suffix(".wav"))
            save_playhead_video(np.asarray(picture) / 255.0, audio, output.sample_rate, stem.with_suffix(".mp4"))
            samples.append({"index": index, "seed": seed + index, "files": [f"{stem.name}.png", f"{stem.name}.wav",
                                                                             f"{stem.name}.mp4"]})
            if args.colorize:
                colour = colorize(output.spectrogram[offset : offset + 1], generators_for(seed + index, 1)[0])[0]
                save_png(colour, args.out / f"{stem.name}-color.png")
                samples[-1]["files"].append(f"{stem.name}-color.png")
        spectrograms.append(output.spectrogram)
        sounds.append(output.audio)
    report = score_report(args, load_scorers(args), samples, np.concatenate(spectrograms), np.concatenate(sounds),
                          sample_rate) | {"colorizer": colorizer}
    (args.out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {len(samples)} samples and scores.json to {args.out}")
    return 0


def vocoder_choice(args: argparse.Namespace):
    """What `from_pretrained` loads as the HiFi-GAN: none for Griffin-Lim, the one in `--vocoder-model`, or the
    weights' own ("auto")."""
    if args.vocoder == "griffinlim":
        return None
    if args.vocoder_model is None:
        return "auto"
    from pipelines.audio import SPECS
    from pipelines.vocoders import load_hifigan

    return load_hifigan(args.vocoder_model, SPECS["auffusion"]).model


def load_colorizer(args: argparse.Namespace, pipe, device: str):
    """(name, colorize(spectrograms [N, H, W], generator) -> colour [N, H, W, 3]) for `--colorize`, as `--colorizer`
    asks; with auto, DeepFloyd IF when its gate opens, else Stable Diffusion 1.5 (saying why on stderr)."""
    from pipelines.devices import choose_dtype
    from pipelines.images_that_sound.entries import colorizer_entry

    if args.colorizer != "sd":
        deepfloyd = colorizer_entry().variants["paper"]  # the gate the studio uses: a token and the weights at hand
        missing = deepfloyd.missing(False)
        if missing is None:
            colorizer = deepfloyd.load(device, choose_dtype(device))
            return "DeepFloyd IF", lambda spectrograms, generator: colorizer(
                spectrograms, args.colorize, num_inference_steps=args.colorize_steps,
                start_step=round(7 / 30 * args.colorize_steps), generator=generator)  # the paper: 7 of 30
        if args.colorizer == "deepfloyd-if":
            raise SystemExit(f"error: DeepFloyd IF weights {missing}")
        print(f"Colorizing with Stable Diffusion 1.5 instead of DeepFloyd IF: its weights {missing}", file=sys.stderr)
    from pipelines.images_that_sound.colorization import colorize

    return "Stable Diffusion 1.5", lambda spectrograms, generator: colorize(
        pipe, spectrograms, args.colorize, num_inference_steps=args.colorize_steps, generator=generator)


def score_report(args, scorers: dict, samples: list[dict], spectrograms, audio, sample_rate: int) -> dict:
    scores = {}
    if "clip" in scorers:
        scores["clip"] = scorers["clip"](args.image_prompt, spectrograms)
    if "clap" in scorers:
        scores["clap"] = scorers["clap"](args.audio_prompt, audio, sample_rate)
    for sample in samples:
        sample.update({name: float(values[sample["index"]]) for name, values in scores.items()})
    both = "clip" in scores and "clap" in scores
    return {
        "image_prompt": args.image_prompt, "audio_prompt": args.audio_prompt, "method": args.method,
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "scorers": sorted(scores), "samples": samples,
        "ranking": rank(scores).tolist() if scores else None,
        "authors_selection": authors_selection(scores["clip"], scores["clap"]).tolist() if both else None,
    }


if __name__ == "__main__":
    sys.exit(main())
