"""Proof that fine-tuning learns (issue 16): the studio Images that Sound audio model learns a toy sound class it never
saw, from a folder of sounds, with a small LoRA, on this CPU.

1. An artist's folder: `--sounds` toy sounds of the new class (`--new-class`, default sirens: not among the core
   classes the studio models were trained on) as wav files, named `<class>_<i>.wav`, no captions.jsonl.
2. `python -m pipelines.train images_that_sound --init studio --models audio --lora-rank R --caption PROMPT ...`,
   timed (wall clock).
3. A sound judge over all 8 toy sound classes (the bundled one knows the 4 core classes only), trained here by
   `python -m pipelines.train judges --classes all --judges sound` unless `--judges DIR` gives one.
4. Judged (`pipelines.metrics.images_that_sound`, DDIM `--steps`, guidance 10, image warm start 0.9): audio-only
   samples of PROMPT before and after loading the adapter (how often the judge hears the new class), audio-only
   samples of a trained class with the adapter (is the old class kept), and composed samples of the 4 core pictures ×
   PROMPT with the adapter against the base model's composed samples on the 16 core pairs (joint success).

    python -m benchmarks.fine_tuning [--steps-train 1200] [--lr 4e-3] [--rank 8] [--samples 32] [--out WORK_DIR]

Works in WORK_DIR (the sounds, the adapter; default: a folder in the system's temp dir), writes the report (date,
machine, settings, timings, every measurement) to benchmarks/results/fine_tuning.json (`--results`) and prints a
table.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from pipelines.metrics import images_that_sound as its_metrics
from pipelines.toyworld.captioned import CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, SOUND_CLASSES

RESULTS = Path(__file__).resolve().parent / "results" / "fine_tuning.json"
PROMPTS = {"sirens": "a siren wailing", "rain": "rain falling", "wind": "wind blowing", "beeps": "electronic beeps"}


def write_sounds(folder: Path, name: str, count: int, seed: int, width: int) -> Path:
    """`count` toy sounds of class `name` as 16 kHz wav files (an artist's folder: no captions.jsonl)."""
    from pipelines.toyworld import sample

    folder.mkdir(parents=True, exist_ok=True)
    sounds = sample("sound", count, seed, classes=(name,), height=256, width=width)
    for index, audio in enumerate(sounds.audio):
        soundfile.write(folder / f"{name}_{index:03d}.wav", audio, sounds.sample_rate)
    return folder


def train_cli(arguments: list[str]) -> float:
    """Run `python -m pipelines.train ...` in a subprocess; returns its wall-clock seconds."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "pipelines.train", *arguments], check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def sound_judge_folder(args, out: Path) -> Path:
    if args.judges:
        return Path(args.judges)
    folder = out / "judges_all_sounds"
    if not (folder / "sound.json").is_file():
        train_cli(["judges", "--data", "toyworld", "--judges", "sound", "--classes", "all", "--steps", "500",
                   "--batch-size", "48", "--lr", "0.002", "--pool", "512", "--ema-decay", "0.99", "--out", str(folder)])
    return folder


def audio_only_hits(pipe, judge, prompt: str, target: str, args, seed: int) -> dict:
    """Audio-only samples of `prompt`: the fraction the judge hears as `target`, and its mean probability."""
    spectrograms = its_metrics.generate(pipe, "audio_only", its_metrics.IMAGE_PROMPTS["towers"], prompt,
                                        samples=args.samples, steps=args.steps, guidance=10.0, warm_start=0.9,
                                        seed=seed)
    probabilities = judge.probabilities(spectrograms)
    index = judge.config.classes.index(target)
    predicted = [judge.config.classes[k] for k in probabilities.argmax(axis=1)]
    return {"accuracy": float(np.mean(probabilities.argmax(axis=1) == index)),
            "probability": float(probabilities[:, index].mean()), "samples": len(spectrograms),
            "predicted": {name: predicted.count(name) for name in sorted(set(predicted))}}


def composed(pipe, image_judge, sound_judge, pairs, prompts: dict, samples: int, args, seed: int) -> dict:
    """Composed samples (the paper's method) of every (picture class, sound class) pair, judged."""
    def generate_fn(method: str, image_class: str, sound_class: str, pair_seed: int) -> np.ndarray:
        return its_metrics.generate(pipe, method, its_metrics.IMAGE_PROMPTS[image_class], prompts[sound_class],
                                    samples=samples, steps=args.steps, guidance=10.0, warm_start=0.9, seed=pair_seed)

    result = its_metrics.evaluate(generate_fn, image_judge.probabilities, sound_judge.probabilities,
                                  image_judge.config.classes, sound_judge.config.classes, pairs=pairs,
                                  methods=("composed",), seed=seed)
    return result["methods"]["composed"]


def measure(args, out: Path, adapter: Path, judges: Path) -> dict:
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline
    from pipelines.metrics.judges import load_judge

    pipe = ImagesThatSoundPipeline.from_pretrained(Path("assets/models/images_that_sound"))
    pipe.set_progress_bar_config(disable=True)
    image_judge, sound_judge = load_judge("image"), load_judge("sound", judges)
    prompt, new = PROMPTS[args.new_class], args.new_class
    prompts = {**its_metrics.SOUND_PROMPTS, new: prompt}
    result = {"audio_only_new_before": audio_only_hits(pipe, sound_judge, prompt, new, args, seed=1000)}
    trained_pairs = list(itertools.product(CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES))
    result["composed_trained_base"] = composed(pipe, image_judge, sound_judge, trained_pairs, prompts,
                                               max(1, args.samples // 8), args, seed=2000)
    pipe.load_lora_weights(adapter, model="audio")
    result["audio_only_new_after"] = audio_only_hits(pipe, sound_judge, prompt, new, args, seed=1000)
    result["audio_only_bells_after"] = audio_only_hits(pipe, sound_judge, its_metrics.SOUND_PROMPTS["bells"],
                                                       "bells", args, seed=3000)
    new_pairs = [(image_class, new) for image_class in CORE_IMAGE_CLASSES]
    result["composed_new_after"] = composed(pipe, image_judge, sound_judge, new_pairs, prompts,
                                            max(1, args.samples // 4), args, seed=2000)
    return result


def table(result: dict, new: str) -> str:
    rows = [("audio-only, new prompt, before", result["audio_only_new_before"], new),
            ("audio-only, new prompt, after (LoRA)", result["audio_only_new_after"], new),
            ("audio-only, 'a chiming bell', after (LoRA)", result["audio_only_bells_after"], "bells")]
    lines = ["| samples | judged as | accuracy | P(class) | n |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {target} | {r['accuracy']:.2f} | {r['probability']:.2f} | {r['samples']} |"
              for name, r, target in rows]
    lines += ["", "| composed | image acc. | sound acc. | joint | n |", "|---|---|---|---|---|"]
    for name, key in (("base model, 16 trained pairs", "composed_trained_base"),
                      (f"LoRA, 4 pictures × {new}", "composed_new_after")):
        m = result[key]
        lines.append(f"| {name} | {m['image_accuracy']:.2f} | {m['sound_accuracy']:.2f} | {m['joint_success']:.2f} "
                     f"| {m['samples']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fine_tuning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-class", default="sirens", choices=tuple(PROMPTS))
    parser.add_argument("--sounds", type=int, default=256, help="files in the artist's folder")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps-train", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the judged samples")
    parser.add_argument("--samples", type=int, default=32, help="audio-only samples per prompt")
    parser.add_argument("--judges", default=None, help="a folder with an 8-class sound judge (default: train one)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "synesthesia_fine_tuning"),
                        help="work folder: the artist's sounds, the adapter, a judge")
    parser.add_argument("--results", default=str(RESULTS), help="where the report goes")
    args = parser.parse_args(argv)
    assert args.new_class in SOUND_CLASSES and args.new_class not in CORE_SOUND_CLASSES
    out = Path(args.out)
    data = write_sounds(out / "artist_sounds", args.new_class, args.sounds, seed=7, width=64)
    adapter = out / "lora"
    seconds = train_cli(["images_that_sound", "--init", "studio", "--models", "audio", "--lora-rank", str(args.rank),
                         "--data", str(data), "--caption", PROMPTS[args.new_class], "--steps", str(args.steps_train),
                         "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--ema-decay", "0.99",
                         "--checkpoint-every", "200", "--out", str(adapter)])
    judges = sound_judge_folder(args, out)
    started = time.time()
    result = measure(args, out, adapter, judges)
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": its_metrics.machine(), "training_seconds": round(seconds, 1),
              "measuring_seconds": round(time.time() - started, 1),
              "adapter_bytes": (adapter / "audio_lora" / "adapter.safetensors").stat().st_size,
              "settings": {**vars(args), "prompt": PROMPTS[args.new_class]}, **result}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(report, indent=2) + "\n")
    print(f"training {seconds:.0f} s, adapter {report['adapter_bytes']} bytes")
    print(table(result, args.new_class))
    return report


if __name__ == "__main__":
    main()
