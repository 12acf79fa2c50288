"""Audio-visual coupling of Sounding Video on the toy world: do the generated knocks land on the generated bounces?

MM-Diffusion's claim is that one coupled U-Net makes video and audio that belong together (paper §4, the MOS "A-V"
alignment of Table 5). The toy world makes that measurable: every bounce in a toy clip is a knock starting on the
contact frame. This metric

1. generates N samples with a Sounding Video model (`--weights`, default the bundled studio model): joint ones
   (`--mode joint`), or zero-shot ones from held-out ground-truth toy clips (replacement, Eq. 10): videos for their
   audio (`a2v`; the contacts are then generated, the onsets given) or audio for their videos (`v2a`);
2. finds the **contacts** in each video: an object arriving at the floor (where its fall reverses), from the
   lowest foreground pixel of each column, the foreground being what differs from the clip's median frame
   (`detect_contacts`);
3. finds the **onsets** in each audio: frames whose short-time energy jumps well above the preceding few
   milliseconds and that are not far below the clip's loudest moment (`detect_onsets`);
4. scores how well onsets line up with contacts, with a tolerance of ±`--tolerance` frames: the hit rate (the
   fraction of contacts with an onset within the tolerance) and a one-to-one matching's precision (onsets that
   match a contact), recall (contacts that match an onset) and F1, summed over all clips, and the F1 of exact
   (same-frame) matches;
5. repeats the scoring on shuffled pairs (the audio of clip i with the video of clip j ≠ i, all pairs), the
   baseline a model without coupling would reach, and on ground-truth toy clips in the same format (the upper
   bound, with its own shuffled baseline). The detectors are validated against the toy world's true contact
   frames (`contact_frames`) on the same clips and reported too.

Frame 0 of a clip is left out everywhere: the video detector needs the frame before a contact to see the motion
into it. Printed as a table and written to `--out` as JSON with date, machine and settings.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.mm_diffusion.clips import ClipFormat

FOREGROUND_THRESHOLD = 0.05  # |frame − background| (0..1) below which a pixel is backdrop
OBJECT_WEIGHT = 0.05  # foreground weight (summed over three columns) that makes a pixel part of an object
FLOOR_BAND = 0.1  # a contact's lowest object pixel lies within this fraction of the height above the floor
ONSET_RISE_DB = 9.0  # energy jump over the preceding windows that makes an onset
ONSET_RANGE_DB = 30.0  # onsets quieter than the clip's loudest window by more than this are ignored
ONSET_MIN_RMS = 0.01  # nor those below this absolute level (silence, noise floor)
WINDOWS_PER_FRAME = 8
MODES = ("joint", "a2v", "v2a")
DEFAULT_SCENES = ("bounce",)  # the scene whose contacts the detectors see, for a model that does not name its own


# Detectors ---------------------------------------------------------------------------------------------------------


def foreground(frames: np.ndarray) -> np.ndarray:
    """Per-pixel object weight `[F, H, W]` in [0, 1]: distance from the clip's median frame (the static backdrop),
    above `FOREGROUND_THRESHOLD`. frames: uint8 `[F, H, W, 3]` or float in [0, 1]."""
    frames = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)
    distance = np.abs(frames - np.median(frames, axis=0, keepdims=True)).max(axis=-1)
    return np.clip((distance - FOREGROUND_THRESHOLD) / (1.0 - FOREGROUND_THRESHOLD), 0.0, 1.0)


def detect_contacts(frames: np.ndarray, floor: float) -> np.ndarray:
    """Frames (≥ 1) where an object arrives at the floor: the fall's vertical-velocity reversal, seen as the lowest
    object pixel of a column entering the floor band.

    For every group of three adjacent columns, the lowest row whose foreground weight exceeds OBJECT_WEIGHT; a
    contact at t when, in some group, that row lies within FLOOR_BAND·H of the floor row `floor`·H at t but not at
    t − 1 (a ball resting on the floor, or rolling along it, makes no contact). frames: `[F, H, W, 3]`; floor: the
    floor's top edge, a fraction of H.
    """
    weight = foreground(frames)  # [F, H, W]
    height = weight.shape[1]
    columns = weight + np.pad(weight, ((0, 0), (0, 0), (1, 0)))[..., :-1] + np.pad(weight, ((0, 0), (0, 0), (0, 1)))[
        ..., 1:]  # each column with its two neighbours
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    lowest = np.where(columns > OBJECT_WEIGHT, rows, -1.0).max(axis=1)  # [F, W]; -1: no object in the column
    at_floor = lowest >= (floor - FLOOR_BAND) * height - 0.5
    return np.flatnonzero((at_floor[1:] & ~at_floor[:-1]).any(axis=1)) + 1


def detect_onsets(audio: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """Frames (≥ 1) in which a sound starts: the energy of a short window (1/8 frame) rises ONSET_RISE_DB above the
    loudest of the two windows before it, within ONSET_RANGE_DB of the clip's peak and above ONSET_MIN_RMS."""
    hop = fmt.audio_samples // fmt.frames // WINDOWS_PER_FRAME
    windows = np.asarray(audio, np.float64)[: hop * fmt.frames * WINDOWS_PER_FRAME].reshape(-1, hop)
    rms = np.sqrt((windows**2).mean(axis=1))
    level = 20.0 * np.log10(np.maximum(rms, 1e-8))
    before = np.maximum(np.concatenate([[-160.0], level[:-1]]), np.concatenate([[-160.0] * 2, level[:-2]]))
    onset = (level - before > ONSET_RISE_DB) & (level > level.max() - ONSET_RANGE_DB) & (rms > ONSET_MIN_RMS)
    frames = np.unique(np.flatnonzero(onset) // WINDOWS_PER_FRAME)
    return frames[frames >= 1]


# Scores ------------------------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """Summed over clips: contacts, onsets, contacts with an onset within the tolerance, one-to-one matches within
    the tolerance and exact (same frame) matches."""

    contacts: int = 0
    onsets: int = 0
    hits: int = 0
    matches: int = 0
    exact_matches: int = 0

    def add(self, contacts: np.ndarray, onsets: np.ndarray, tolerance: int) -> None:
        self.contacts += len(contacts)
        self.onsets += len(onsets)
        self.hits += sum(bool(np.any(np.abs(onsets - c) <= tolerance)) for c in contacts)
        self.matches += match_count(contacts, onsets, tolerance)
        self.exact_matches += len(np.intersect1d(contacts, onsets))

    def scores(self) -> dict:
        def ratio(a: int, b: int) -> float:
            return a / b if b else float("nan")

        both = self.onsets + self.contacts
        return {"hit_rate": ratio(self.hits, self.contacts), "precision": ratio(self.matches, self.onsets),
                "recall": ratio(self.matches, self.contacts), "f1": ratio(2 * self.matches, both),
                "f1_exact": ratio(2 * self.exact_matches, both), "contacts": self.contacts, "onsets": self.onsets,
                "matches": self.matches, "exact_matches": self.exact_matches}


def match_count(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> int:
    """One-to-one matches within ±tolerance frames, greedily in time order (both sorted, so greedy is optimal)."""
    used, matches = set(), 0
    for r in np.sort(reference):
        for j, d in enumerate(np.sort(detected)):
            if j not in used and abs(int(d) - int(r)) <= tolerance:
                used.add(j)
                matches += 1
                break
    return matches


def coupling(contacts: list[np.ndarray], onsets: list[np.ndarray], tolerance: int) -> dict:
    """Scores of the true pairs (video i with audio i) and of all shuffled pairs (video i with audio j ≠ i)."""
    paired, shuffled = Counts(), Counts()
    for i, video_contacts in enumerate(contacts):
        paired.add(video_contacts, onsets[i], tolerance)
        for j, audio_onsets in enumerate(onsets):
            if j != i:
                shuffled.add(video_contacts, audio_onsets, tolerance)
    return {"paired": paired.scores(), "shuffled": shuffled.scores()}


def detector_validation(truth: list[np.ndarray], detected: list[np.ndarray], tolerance: int) -> dict:
    """A detector against the true contact frames: precision and recall within ±tolerance and exact, and F1."""
    counts = Counts()
    for true_frames, found in zip(truth, detected):
        counts.add(true_frames, found, tolerance)  # "contacts" = the truth, "onsets" = the detections
    scores = counts.scores()
    return {**scores, "precision_exact": counts.exact_matches / max(counts.onsets, 1),
            "recall_exact": counts.exact_matches / max(counts.contacts, 1)}


# Data --------------------------------------------------------------------------------------------------------------


def ground_truth_clips(count: int, seed: int, fmt: ClipFormat, scenes: tuple[str, ...]):
    """`count` toy clips in `fmt` (a random window of each 16-frame toy video): frames, audio and true contacts."""
    from pipelines.train.mm_diffusion import toy_clips

    videos, audios, contacts = toy_clips(count, seed, fmt, scenes)
    per_frame = fmt.audio_samples // fmt.frames
    starts = np.random.default_rng(seed).integers(0, videos.shape[1] - fmt.frames + 1, count)
    frames = np.stack([v[s : s + fmt.frames] for v, s in zip(videos, starts)])
    audio = np.stack([a[s * per_frame : s * per_frame + fmt.audio_samples] for a, s in zip(audios, starts)])
    truth = [c[(c >= s + 1) & (c < s + fmt.frames)] - s for c, s in zip(contacts, starts)]  # frame 0 left out
    return frames, audio, truth


def generate(pipe, count: int, seed: int, sampler: str, steps: int, batch: int,
             **condition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`count` samples (uint8 video `[N, F, H, W, 3]`, audio `[N, L]`); sample i is seeded with seed + i. `condition`:
    `video` or `audio` of the `count` clips to generate the other modality for (zero-shot), none for joint samples."""
    import torch

    videos, audios = [], []
    for first in range(0, count, batch):
        generators = [torch.Generator().manual_seed(seed + i) for i in range(first, min(count, first + batch))]
        given = {name: value[first : first + len(generators)] for name, value in condition.items()}
        output = pipe(num_samples=len(generators), generator=generators, sampler=sampler, num_inference_steps=steps,
                      **given)
        videos.append(output.video)
        audios.append(output.audio)
    return np.concatenate(videos), np.concatenate(audios)


def generated_pairs(pipe, mode: str, fmt: ClipFormat, scenes: tuple[str, ...], samples: int, seed: int,
                    sampler: str, steps: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, audio) to score for `mode`: both generated (joint), or one generated for the other as given."""
    if mode == "joint":
        return generate(pipe, samples, seed, sampler, steps, batch)
    frames, audio, _ = ground_truth_clips(samples, seed + 2_000_003, fmt, scenes)  # held out from both other sets
    if mode == "a2v":
        return generate(pipe, samples, seed, sampler, steps, batch, audio=audio)[0], audio
    return frames, generate(pipe, samples, seed, sampler, steps, batch, video=frames)[1]


def evaluate(frames: np.ndarray, audio: np.ndarray, fmt: ClipFormat, floor: float, tolerance: int,
             truth: list[np.ndarray] | None = None) -> dict:
    """Detect contacts and onsets in every clip and score their coupling (and the detectors, given the truth)."""
    contacts = [detect_contacts(f, floor) for f in frames]
    onsets = [detect_onsets(a, fmt) for a in audio]
    result = {"coupling": coupling(contacts, onsets, tolerance), "clips": len(frames),
              "contacts": [c.tolist() for c in contacts], "onsets": [o.tolist() for o in onsets]}
    if truth is not None:
        result["video_detector"] = detector_validation(truth, contacts, tolerance)
        result["audio_detector"] = detector_validation(truth, onsets, tolerance)
        result["truth"] = [t.tolist() for t in truth]
    return result


def table(results: dict, tolerance: int) -> str:
    """Markdown: hit rate, precision, recall and F1 of paired and shuffled clips, per source."""
    lines = [f"| clips | pairs | contacts | onsets | hit rate (±{tolerance}) | precision (±{tolerance}) | "
             f"recall (±{tolerance}) | F1 (±{tolerance}) | F1 (exact) |", "|---|---|---|---|---|---|---|---|---|"]
    for source, result in results.items():
        for pairing in ("paired", "shuffled"):
            s = result["coupling"][pairing]
            lines.append(f"| {source} | {pairing} | {s['contacts']} | {s['onsets']} | {s['hit_rate']:.2f} | "
                         f"{s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['f1_exact']:.2f} |")
    return "\n".join(lines)


def detector_table(result: dict, tolerance: int) -> str:
    """Markdown: the video and audio detectors against the true contact frames of ground-truth clips."""
    lines = ["| detector vs true contacts | precision (exact) | recall (exact) | "
             f"precision (±{tolerance}) | recall (±{tolerance}) |", "|---|---|---|---|---|"]
    for name in ("video_detector", "audio_detector"):
        v = result[name]
        lines.append(f"| {name.replace('_', ' ')} | {v['precision_exact']:.2f} | {v['recall_exact']:.2f} | "
                     f"{v['precision']:.2f} | {v['recall']:.2f} |")
    return "\n".join(lines)


def run(out: str | Path, *, samples: int = 64, ground_truth: int = 200, seed: int = 0, sampler: str = "dpm_solver",
        steps: int = 20, tolerance: int = 1, weights: str = "mm_diffusion_toyworld", variant: str = "studio",
        scenes: tuple[str, ...] | None = None, mode: str = "joint", batch: int = 16, verbose: bool = True) -> dict:
    """Score ground-truth toy clips and `samples` generated ones; print the tables; write the JSON to `out`.
    `scenes`: of the ground-truth clips; by default those the model was trained on (its training record)."""
    from pipelines.metrics.images_that_sound import machine
    from pipelines.registry import get_pipeline
    from pipelines.toyworld.videos import FLOOR

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    started = time.time()
    pipe = get_pipeline(weights, variant)
    scenes = scenes or tuple(pipe.training_record.get("scenes", DEFAULT_SCENES))
    fmt = pipe.clip_format
    frames, audio, truth = ground_truth_clips(ground_truth, seed + 1_000_003, fmt, scenes)  # unseen toy seeds
    results = {"ground truth": evaluate(frames, audio, fmt, FLOOR, tolerance, truth)}
    generated = generated_pairs(pipe, mode, fmt, scenes, samples, seed, sampler, steps, batch)
    results[f"generated ({mode})"] = evaluate(*generated, fmt, FLOOR, tolerance)
    settings = dict(weights=weights, variant=variant, mode=mode, samples=samples, ground_truth=ground_truth,
                    seed=seed, sampler=sampler, steps=steps, tolerance=tolerance, scenes=list(scenes), floor=FLOOR,
                    clip_format=dataclasses.asdict(fmt))
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "seconds": round(time.time() - started, 1), "settings": settings,
              "results": results}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    if verbose:
        print(table(results, tolerance))
        print()
        print(detector_table(results["ground truth"], tolerance))
    return report


def add_arguments(parser) -> None:
    """Options of `python -m pipelines.metrics sounding_video` (`--out` and `--seed` are common)."""
    parser.add_argument("--samples", type=int, default=64, help="generated joint samples")
    parser.add_argument("--ground-truth", type=int, default=200, help="ground-truth toy clips")
    parser.add_argument("--sampler", default="dpm_solver", choices=("dpm_solver", "ddim", "ddpm"))
    parser.add_argument("--steps", type=int, default=20, help="sampler steps")
    parser.add_argument("--tolerance", type=int, default=1, help="frames an onset may be off its contact")
    parser.add_argument("--weights", default="mm_diffusion_toyworld", help="registry name of the Sounding Video model")
    parser.add_argument("--variant", default="studio", choices=("auto", "paper", "studio"))
    parser.add_argument("--batch", type=int, default=16, help="samples generated at once")
    parser.add_argument("--mode", default="joint", choices=MODES,
                        help="joint samples, or zero-shot video for given audio (a2v) or audio for given video (v2a)")
    parser.add_argument("--scenes", default=None, help="toy scenes of the ground-truth clips, comma-separated "
                        "(default: those the model was trained on)")


def main(args) -> dict:
    return run(args.out, samples=args.samples, ground_truth=args.ground_truth, seed=args.seed, sampler=args.sampler,
               steps=args.steps, tolerance=args.tolerance, weights=args.weights, variant=args.variant,
               batch=args.batch, mode=args.mode, scenes=tuple(args.scenes.split(",")) if args.scenes else None)
