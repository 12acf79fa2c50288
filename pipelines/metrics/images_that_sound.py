"""Table 1 of Images that Sound at toy scale: do generated spectrograms look like the image prompt's class and
sound like the audio prompt's class, as judged by the toy-world judges (`pipelines.metrics.judges`)?

For every (picture class, sound class) pair of the core classes and four methods — image-only (the image model
alone: `warm_start_audio=0`), audio-only (`warm_start_image=0`), imprint (`pipe.imprint`) and composed (the paper's
method, image warm start 0.9) — N samples are drawn in one batch and judged: the image judge reads the spectrogram
as a picture, the sound judge as a spectrogram. Reported per method (means over all samples of all pairs):
image accuracy (argmax = the image prompt's class), sound accuracy, joint success (both), and the mean
probabilities of the prompted classes (the toy stand-ins for the paper's CLIP and CLAP scores).
"""

from __future__ import annotations

import datetime
import itertools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipelines.toyworld.captioned import CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES
from pipelines.weights import repo_relative

METHODS = ("image_only", "audio_only", "imprint", "composed")
TITLES = {"image_only": "image-only", "audio_only": "audio-only", "imprint": "imprint", "composed": "composed"}
# One training caption per class (exact toy captions the studio models saw), used as the prompts.
IMAGE_PROMPTS = {"towers": "tall towers in a row", "rings": "concentric rings", "stripes": "diagonal stripes",
                 "dots": "a grid of dots"}
SOUND_PROMPTS = {"bells": "a chiming bell", "chirps": "a bird chirping", "knocks": "someone knocking",
                 "hums": "an engine humming"}
ProbabilityFn = Callable[[np.ndarray], np.ndarray]  # spectrograms [N, H, W] -> class probabilities [N, classes]


def generate(pipe, method: str, image_prompt: str, audio_prompt: str, *, samples: int, steps: int,
             guidance: float, warm_start: float, seed: int, latent_width: int = 8) -> np.ndarray:
    """`samples` spectrograms [N, 256, W] in [0, 1] of one method for one prompt pair (one seeded batch)."""
    generator = torch.Generator("cpu").manual_seed(seed)
    common = dict(image_guidance_scale=guidance, audio_guidance_scale=guidance, generator=generator,
                  num_samples=samples, latent_width=latent_width, vocoder="griffinlim", griffin_lim_iterations=1)
    if method == "imprint":
        return pipe.imprint(image_prompt, audio_prompt, image_steps=steps, audio_steps=steps, **common).spectrogram
    warm = {"image_only": (1.0, 0.0), "audio_only": (0.0, 1.0), "composed": (warm_start, 1.0)}[method]
    return pipe(image_prompt, audio_prompt, num_inference_steps=steps, warm_start_image=warm[0],
                warm_start_audio=warm[1], **common).spectrogram


def judge_pair(image_probs: np.ndarray, sound_probs: np.ndarray, image_index: int, sound_index: int) -> dict:
    """Per-sample judgements of one pair: correct flags and the prompted classes' probabilities."""
    image_ok = image_probs.argmax(axis=1) == image_index
    sound_ok = sound_probs.argmax(axis=1) == sound_index
    return {"image_correct": image_ok.tolist(), "sound_correct": sound_ok.tolist(),
            "joint": (image_ok & sound_ok).tolist(), "image_prob": image_probs[:, image_index].tolist(),
            "sound_prob": sound_probs[:, sound_index].tolist()}


def summarise(pairs: list[dict]) -> dict:
    """Means over every sample of every pair: accuracies, joint success, mean prompted-class probabilities."""
    def mean(key: str) -> float:
        values = [v for pair in pairs for v in pair[key]]
        return float(np.mean(values)) if values else float("nan")

    return {"image_accuracy": mean("image_correct"), "sound_accuracy": mean("sound_correct"),
            "joint_success": mean("joint"), "image_prob": mean("image_prob"), "sound_prob": mean("sound_prob"),
            "samples": sum(len(pair["joint"]) for pair in pairs)}


def evaluate(generate_fn: Callable[[str, str, str, int], np.ndarray], image_judge: ProbabilityFn,
             sound_judge: ProbabilityFn, image_classes: tuple[str, ...], sound_classes: tuple[str, ...], *,
             pairs: list[tuple[str, str]] | None = None, methods: tuple[str, ...] = METHODS, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> dict:
    """Judge `generate_fn(method, image_class, sound_class, seed)` for every pair and method.

    `image_judge`/`sound_judge` map spectrograms to probabilities over `image_classes`/`sound_classes`.
    Returns {"methods": {method: summary}, "pairs": {method: {"image|sound": per-sample judgements}}}.
    """
    pairs = pairs or list(itertools.product(image_classes, sound_classes))
    result: dict = {"methods": {}, "pairs": {}}
    for method in methods:
        judged = {}
        for k, (image_class, sound_class) in enumerate(pairs):
            spectrograms = generate_fn(method, image_class, sound_class, seed + k)
            judged[f"{image_class}|{sound_class}"] = judge_pair(
                image_judge(spectrograms), sound_judge(spectrograms),
                image_classes.index(image_class), sound_classes.index(sound_class))
            if progress:
                j = judged[f"{image_class}|{sound_class}"]
                progress(f"{method} {image_class}+{sound_class}: image {sum(j['image_correct'])}, sound "
                         f"{sum(j['sound_correct'])}, joint {sum(j['joint'])} of {len(j['joint'])}")
        result["methods"][method] = summarise(list(judged.values()))
        result["pairs"][method] = judged
    return result


def table(methods: dict) -> str:
    """A Markdown table like the paper's Table 1 (accuracies and mean class probabilities per method)."""
    lines = ["| method | image acc. | sound acc. | joint | P(image class) | P(sound class) | samples |",
             "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        lines.append(f"| {TITLES.get(name, name)} | {m['image_accuracy']:.2f} | {m['sound_accuracy']:.2f} | "
                     f"{m['joint_success']:.2f} | {m['image_prob']:.2f} | {m['sound_prob']:.2f} | {m['samples']} |")
    return "\n".join(lines)


def machine() -> str:
    """A short description of where this ran."""
    import os

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores visible, "
            f"{torch.get_num_threads()} torch threads, {device}), torch {torch.__version__}")


def run(out: str | Path, *, samples_per_pair: int = 4, steps: int = 50, guidance: float = 10.0,
        warm_start: float = 0.9, seed: int = 0, pairs: list[tuple[str, str]] | None = None,
        methods: tuple[str, ...] = METHODS, variant: str = "studio", judges: str | Path | None = None,
        verbose: bool = True) -> dict:
    """Generate with the registry's Images that Sound (`variant`), judge with the judges in `judges` (default: the
    bundled ones), print the table and write everything to `out` (JSON with date, machine and settings)."""
    from pipelines.metrics.judges import STUDIO_JUDGES, load_judge
    from pipelines.registry import get_pipeline

    pipe = get_pipeline("images_that_sound", variant)
    pipe.set_progress_bar_config(disable=True)
    folder = judges or STUDIO_JUDGES
    image_judge, sound_judge = load_judge("image", folder), load_judge("sound", folder)
    settings = dict(samples_per_pair=samples_per_pair, steps=steps, guidance=guidance, warm_start=warm_start,
                    seed=seed, variant=variant, latent_width=8, image_prompts=IMAGE_PROMPTS,
                    sound_prompts=SOUND_PROMPTS, imprint_rho=0.5, judges=repo_relative(folder))

    def generate_fn(method: str, image_class: str, sound_class: str, pair_seed: int) -> np.ndarray:
        return generate(pipe, method, IMAGE_PROMPTS[image_class], SOUND_PROMPTS[sound_class],
                        samples=samples_per_pair, steps=steps, guidance=guidance, warm_start=warm_start,
                        seed=pair_seed)

    started = time.time()
    result = evaluate(generate_fn, image_judge.probabilities, sound_judge.probabilities,
                      image_judge.config.classes, sound_judge.config.classes, pairs=pairs, methods=methods,
                      seed=seed, progress=print if verbose else None)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "seconds": round(time.time() - started, 1), "settings": settings, **result}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    if verbose:
        print(table(result["methods"]))
    return report


CORE_PAIRS = list(itertools.product(CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES))


def add_arguments(parser) -> None:
    """Options of `python -m pipelines.metrics images_that_sound` (`--out` and `--seed` are common)."""
    parser.add_argument("--samples-per-pair", type=int, default=4, help="samples per (image, sound) class pair")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (imprint: per model)")
    parser.add_argument("--guidance", type=float, default=10.0, help="classifier-free guidance, both models "
                        "(the paper's γ_v = γ_a = 10)")
    parser.add_argument("--warm-start", type=float, default=0.9, help="composed: image warm start t_v")
    parser.add_argument("--pairs", type=int, default=None, help="only the first K of the 16 class pairs")
    parser.add_argument("--judges", default=None, help="judges folder (default: assets/models/judges)")


def main(args) -> dict:
    return run(args.out, samples_per_pair=args.samples_per_pair, steps=args.steps, guidance=args.guidance,
               warm_start=args.warm_start, seed=args.seed, pairs=CORE_PAIRS[: args.pairs] if args.pairs else None,
               judges=args.judges)
