"""Visual Echoes on the paired toy world: image → sound, sound → image, co-generation, pitch and event count.

The paper's evaluation (FD/FAD/IS/CLIP scores on VGGSound) needs networks trained on real data; in the toy world the
truth is known, so toy judges score the samples instead (`python -m pipelines.metrics visual_echoes --out r.json`):

- **judges**: a sound judge (which kind a SpecVQGAN spectrogram holds: logistic regression on per-band mean and peak
  levels, so where in time a sound sits does not matter) and a picture judge (which kind a picture shows: logistic
  regression on a colour histogram, an 8 × 8 thumbnail and the colours of the foreground pixels, wherever the
  objects are), fitted on fresh ground-truth pairs, each as drawn and as
  the model's tokenizers give it back (so they judge what a tokenizer can express); their held-out accuracy on
  ground truth is reported as the ceiling;
- **image → sound accuracy**: the sound judge hears the pictured kind (chance 1/8); with it the mean probability the
  judge gives the pictured kind, a finer reading of the same (guidance raised the paper's classifier score, IS);
- **sound → image accuracy**: the picture judge sees the heard kind (chance 1/8);
- **co-generation agreement**: the judged kind of the picture equals that of the sound;
- **pitch–size rank correlation** (image → sound): Spearman's ρ between the drawn size and minus the generated pitch
  (bigger objects sound lower, so +1 is perfect), within each kind, averaged over kinds; pitch = the centre frequency
  of the loudest mel band, averaged over the loud frames;
- **event-count agreement** (image → sound): the number of events heard (rising edges of the frame loudness, the
  loudest band per frame, half way
  between its floor and its peak) equals the number of objects drawn;
- the paper's ablations on image → sound: guidance s = 1 against 3, N = 15 against 30, T = 4.5 against 9; guidance's
  gain is also given per sample, paired (same pictures, same seeds), with its standard error.

The judges hear spectrograms (the pipeline's `output_type="spectrogram"`, no Griffin-Lim).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from pipelines.audio import SPECS, mel_frequencies
from pipelines.toyworld.paired import PAIRED_KINDS
from pipelines.weights import repo_relative

SPEC = SPECS["visual_echoes"]
PER_SAMPLE = ("heard", "probabilities")  # kept out of the report
DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "assets" / "models" / "visual_echoes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a Visual Echoes model folder")
    parser.add_argument("--per-kind", type=int, default=8, help="conditions per kind and setting")
    parser.add_argument("--judge-pairs", type=int, default=1600, help="ground-truth pairs the judges are fitted on")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--temperature", type=float, default=9.0)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--no-ablations", action="store_true", help="skip the s, N and T ablations")


# Features and judges ------------------------------------------------------------------------------------------------


def sound_features(spectrograms: np.ndarray) -> np.ndarray:
    """[N, 80, F] in [0, 1] -> [N, 160]: per-band mean and per-band 95th-percentile level."""
    return np.concatenate([spectrograms.mean(axis=2), np.percentile(spectrograms, 95, axis=2)], axis=1)


def picture_features(pictures: np.ndarray) -> np.ndarray:
    """[N, S, S, 3] in [0, 1] -> colour histograms (8 bins per channel), an 8 × 8 thumbnail and the foreground's
    colours (`foreground_colours`)."""
    n, size = pictures.shape[0], pictures.shape[1]
    histograms = np.stack([np.stack([np.histogram(p[..., c], bins=8, range=(0, 1))[0] for c in range(3)]).ravel()
                           for p in pictures]) / (size * size)
    step = size // 8
    thumbs = pictures[:, : step * 8, : step * 8].reshape(n, 8, step, 8, step, 3).mean(axis=(2, 4)).reshape(n, -1)
    return np.concatenate([histograms, thumbs, foreground_colours(pictures)], axis=1)


FOREGROUND_DISTANCE = 0.12  # a pixel this far (in any channel) from its picture's median colour is foreground


def foreground_colours(pictures: np.ndarray) -> np.ndarray:
    """[N, S, S, 3] -> [N, 71]: the objects' colours wherever they are and however small: a 4 × 4 × 4 joint
    histogram of the foreground pixels (normalised to sum 1), their mean and standard deviation, and the share of the
    picture they cover. (Whole-picture histograms are dominated by the ground.)"""
    flat = pictures.reshape(len(pictures), -1, 3)
    ground = np.median(flat, axis=1, keepdims=True)
    foreground = np.abs(flat - ground).max(axis=-1) > FOREGROUND_DISTANCE
    rows = []
    for pixels, chosen in zip(flat, foreground):
        objects = pixels[chosen] if chosen.any() else pixels[:1]
        histogram = np.histogramdd(objects, bins=4, range=[(0, 1)] * 3)[0].ravel() / len(objects)
        rows.append(np.concatenate([histogram, objects.mean(axis=0), objects.std(axis=0), [chosen.mean()]]))
    return np.stack(rows)


class Judge:
    """A standardised multinomial logistic regression over fixed features."""

    def __init__(self, features) -> None:
        self.features = features

    def fit(self, x: np.ndarray, labels: list[str]) -> Judge:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        self.model.fit(self.features(x), labels)
        return self

    def predict(self, x: np.ndarray) -> list[str]:
        return list(self.model.predict(self.features(x)))

    def probability_of(self, x: np.ndarray, labels: list[str]) -> np.ndarray:
        """The probability the judge gives each sample's own label (a confidence, not a hit or miss)."""
        probabilities = self.model.predict_proba(self.features(x))
        columns = [list(self.model.classes_).index(label) for label in labels]
        return probabilities[np.arange(len(labels)), columns]


def loudest_pitch_hz(spectrogram: np.ndarray) -> float:
    """Centre frequency of the loudest mel band, over the frames within 0.1 of the clip's peak loudness."""
    loudness = spectrogram.mean(axis=0)
    frames = loudness >= loudness.max() - 0.1
    band = int(np.argmax(spectrogram[:, frames].mean(axis=1)))
    return float(mel_frequencies(SPEC)[band])


def count_events(spectrogram: np.ndarray) -> int:
    """Rising edges of the frame loudness (the loudest band of each frame, 3-frame max filter) through half way
    between its floor and its peak."""
    loudness = spectrogram.max(axis=0)
    padded = np.pad(loudness, 1, mode="edge")
    smooth = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    threshold = smooth.min() + 0.5 * (smooth.max() - smooth.min())
    above = smooth > threshold
    return int(above[0]) + int(np.sum(above[1:] & ~above[:-1]))


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


# The run ----------------------------------------------------------------------------------------------------------


def fit_judges(pipe, pairs: int, seed: int) -> tuple[Judge, Judge, dict]:
    """Judges fitted on ground truth as drawn and as the tokenizers give it back; held-out accuracy as ceilings."""
    import torch

    from pipelines.toyworld.paired import sample_paired
    from pipelines.train.visual_echoes import picture_input, spectrogram_input

    batch = sample_paired(pairs, seed, size=pipe.picture_size, frames=pipe.audio_frames)
    spectrograms = (spectrogram_input(batch.audio, pipe.audio_frames)[:, 0].numpy() + 1) / 2
    pictures = batch.images
    with torch.no_grad():
        from pipelines.visual_echoes.modeling_visual_echoes import encode_tokens

        audio_tokens = torch.cat([encode_tokens(pipe.audio_tokenizer, chunk * 2 - 1)
                                  for chunk in torch.from_numpy(spectrograms[:, None]).split(128)])
        image_tokens = torch.cat([encode_tokens(pipe.image_tokenizer, chunk)
                                  for chunk in picture_input(pictures).split(128)])
        round_spectrograms = pipe.decode_spectrograms(audio_tokens)
        round_pictures = pipe.decode_pictures(image_tokens)
    half = pairs // 2
    kinds = batch.kinds
    sound = Judge(sound_features).fit(np.concatenate([spectrograms[:half], round_spectrograms[:half]]), kinds[:half] * 2)
    picture = Judge(picture_features).fit(np.concatenate([pictures[:half], round_pictures[:half]]), kinds[:half] * 2)
    held = kinds[half:]

    def accuracy(judge, x):
        return float(np.mean([a == b for a, b in zip(judge.predict(x), held)]))

    truth_pitch = [(loudest_pitch_hz(s), size, kind) for s, size, kind in
                   zip(spectrograms[half:], batch.sizes[half:], held)]
    ceilings = {
        "sound_judge_on_truth": accuracy(sound, spectrograms[half:]),
        "sound_judge_on_tokenized_truth": accuracy(sound, round_spectrograms[half:]),
        "picture_judge_on_truth": accuracy(picture, pictures[half:]),
        "picture_judge_on_tokenized_truth": accuracy(picture, round_pictures[half:]),
        "pitch_size_spearman_truth": per_kind_spearman(truth_pitch),
        "pitch_size_spearman_tokenized_truth": per_kind_spearman(
            [(loudest_pitch_hz(s), size, kind) for s, size, kind in
             zip(round_spectrograms[half:], batch.sizes[half:], held)]),
        "event_count_truth": float(np.mean([count_events(s) == c for s, c in
                                            zip(spectrograms[half:], batch.counts[half:])])),
        "event_count_tokenized_truth": float(np.mean([count_events(s) == c for s, c in
                                                      zip(round_spectrograms[half:], batch.counts[half:])])),
    }
    return sound, picture, ceilings


def per_kind_spearman(rows: list[tuple[float, float, str]]) -> float:
    """Mean over kinds of Spearman's ρ between size and minus pitch."""
    values = []
    for kind in PAIRED_KINDS:
        chosen = [(pitch, size) for pitch, size, k in rows if k == kind]
        rho = spearman([size for _, size in chosen], [-pitch for pitch, _ in chosen])
        if np.isfinite(rho):
            values.append(rho)
    return float(np.mean(values)) if values else float("nan")


def image_to_sound(pipe, batch, sound_judge: Judge, steps: int, temperature: float, guidance: float, seed: int) -> dict:
    from pipelines.seeds import generators_for

    spectrograms = []
    for index, picture in enumerate(batch.images):
        generators, _ = generators_for(seed + index, 1)
        out = pipe(picture, task="image_to_audio", num_inference_steps=steps, temperature=temperature,
                   guidance_scale=guidance, generator=generators, output_type="spectrogram")
        spectrograms.append(out.spectrograms[0])
    spectrograms = np.stack(spectrograms)
    heard = sound_judge.predict(spectrograms)
    probabilities = sound_judge.probability_of(spectrograms, list(batch.kinds))
    rows = [(loudest_pitch_hz(s), size, kind) for s, size, kind in zip(spectrograms, batch.sizes, batch.kinds)]
    return {"accuracy": float(np.mean([h == k for h, k in zip(heard, batch.kinds)])),
            "pictured_kind_probability": float(probabilities.mean()), "probabilities": probabilities,
            "pitch_size_spearman": per_kind_spearman(rows),
            "event_count_agreement": float(np.mean([count_events(s) == c for s, c in zip(spectrograms, batch.counts)])),
            "heard": heard}


def sound_to_image(pipe, batch, picture_judge: Judge, steps: int, temperature: float, seed: int) -> dict:
    from pipelines.seeds import generators_for

    pictures = []
    for index, clip in enumerate(batch.audio):
        generators, _ = generators_for(seed + index, 1)
        out = pipe(audio=clip, task="audio_to_image", num_inference_steps=steps, temperature=temperature,
                   generator=generators, output_type="spectrogram")
        pictures.append(out.images[0])
    seen = picture_judge.predict(np.stack(pictures))
    return {"accuracy": float(np.mean([s == k for s, k in zip(seen, batch.kinds)])), "seen": seen}


def co_generation(pipe, count: int, sound_judge: Judge, picture_judge: Judge, steps: int, temperature: float,
                  seed: int) -> dict:
    from pipelines.seeds import generators_for
    from pipelines.visual_echoes.pipeline_visual_echoes import MAX_SAMPLES

    generators, _ = generators_for(seed, count)
    heard, seen = [], []
    for first in range(0, count, MAX_SAMPLES):  # the pipeline's most samples per call
        chunk = generators[first: first + MAX_SAMPLES]
        out = pipe(task="co_generation", num_inference_steps=steps, temperature=temperature, num_samples=len(chunk),
                   generator=chunk, output_type="spectrogram")
        heard += sound_judge.predict(out.spectrograms)
        seen += picture_judge.predict(out.images)
    return {"agreement": float(np.mean([h == s for h, s in zip(heard, seen)])),
            "kinds_seen": {k: seen.count(k) for k in PAIRED_KINDS}}


def main(args: argparse.Namespace) -> dict:
    import torch

    with torch.no_grad():  # only here: a caller's autograd state is left as it was
        return measure(args)


def measure(args: argparse.Namespace) -> dict:
    from pipelines.metrics.images_that_sound import machine
    from pipelines.toyworld.paired import sample_paired
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    started = time.time()
    pipe = VisualEchoesPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    sound_judge, picture_judge, ceilings = fit_judges(pipe, args.judge_pairs, 50_000 + args.seed)
    test = sample_paired(args.per_kind * len(PAIRED_KINDS), 90_000 + args.seed, size=pipe.picture_size,
                         frames=pipe.audio_frames, balanced=True)
    settings = {"default": (args.steps, args.temperature, args.guidance)}
    if not args.no_ablations:
        settings |= {"s=1": (args.steps, args.temperature, 1.0), "N=15": (15, args.temperature, args.guidance),
                     "T=4.5": (args.steps, 4.5, args.guidance)}
    results = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": machine(), "model": repo_relative(args.model), "per_kind": args.per_kind,
               "judge_pairs": args.judge_pairs, "seed": args.seed, "chance": 1 / len(PAIRED_KINDS),
               "judges": ceilings, "image_to_sound": {}}
    probabilities = {}
    for name, (steps, temperature, guidance) in settings.items():
        result = image_to_sound(pipe, test, sound_judge, steps, temperature, guidance, args.seed)
        results["image_to_sound"][name] = {"steps": steps, "temperature": temperature, "guidance": guidance,
                                           **{k: v for k, v in result.items() if k not in PER_SAMPLE}}
        probabilities[name] = result["probabilities"]
    if "s=1" in probabilities:
        results["guidance_gain"] = paired_gain(probabilities["default"], probabilities["s=1"])
    results["sound_to_image"] = {k: v for k, v in sound_to_image(pipe, test, picture_judge, args.steps,
                                                                  args.temperature, args.seed).items() if k != "seen"}
    results["co_generation"] = co_generation(pipe, len(test), sound_judge, picture_judge, args.steps,
                                             args.temperature, args.seed)
    results["seconds"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(format_table(results))
    return results


def paired_gain(guided: np.ndarray, unguided: np.ndarray) -> dict:
    """The default setting against s = 1 on the same pictures and seeds: the mean per-sample gain in the judge's
    probability of the pictured kind, with its standard error (the spread of the paired differences / √n)."""
    differences = np.asarray(guided) - np.asarray(unguided)
    return {"pictured_kind_probability": float(differences.mean()),
            "standard_error": float(differences.std(ddof=1) / np.sqrt(len(differences)))}


def format_table(results: dict) -> str:
    lines = ["| measure | value |", "|---|---|"]
    for name, row in results["image_to_sound"].items():
        setting = f"{name}: N={row['steps']}, T={row['temperature']}, s={row['guidance']}"
        lines += [f"| image → sound accuracy ({setting}) | {row['accuracy']:.2f} |",
                  (f"| image → sound, the judge's probability of the pictured kind ({setting}) | "
                   f"{row['pictured_kind_probability']:.2f} |")]
    default = results["image_to_sound"]["default"]
    if "guidance_gain" in results:
        gain = results["guidance_gain"]
        lines.append(f"| guidance gain, default − s=1, the judge's probability per sample (paired) | "
                     f"{gain['pictured_kind_probability']:+.3f} ± {gain['standard_error']:.3f} |")
    lines += [f"| pitch–size Spearman ρ (default) | {default['pitch_size_spearman']:.2f} |",
              f"| event-count agreement (default) | {default['event_count_agreement']:.2f} |",
              f"| sound → image accuracy | {results['sound_to_image']['accuracy']:.2f} |",
              f"| co-generation agreement | {results['co_generation']['agreement']:.2f} |",
              f"| chance | {results['chance']:.3f} |"]
    lines += [f"| judge ceiling: {k} | {v:.2f} |" for k, v in results["judges"].items()]
    return "\n".join(lines)
