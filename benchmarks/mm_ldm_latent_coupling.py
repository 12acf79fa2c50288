"""Does MM-LDM's DiT couple the lamp's flicker? Each frame's lit state read from the perceptual latents, no decoding.

A toy lamp goes dark for a frame or two and its hum stops with it. That flicker can reach a generated stream by two
ways: the DiT (the generated latent carries it) or the shared decoder alone (it reads the other modality's semantic
tokens, and the studio video decoder reads them per frame). The coupling metric scores decoded clips, so it cannot
tell the two apart; this script reads the latents themselves.

Ridge probes, fitted on the true latents of `--fit` toy lamp clips, read every frame's lit state (the lamp's
brightness above 0.5) from z_a and from z_v (`LitProbe`). On `--clips` held-out clips (the coupling metric's seeds)
it reports, as the metric's flicker correlation (per clip, frame by frame, averaged):

- `probes`: each probe's held-out accuracy per frame, beside always guessing the commoner state (chance);
- `true latents`: probe_v(z_v) against probe_a(z_a) of the same clips (how far the two latents agree on the lamp),
  and against another clip's z_a (the shuffled baseline);
- `joint`: the same agreement between the two latents of joint DiT samples;
- `video -> audio`: the given video's brightness against probe_a of the z_a the DiT makes for it, beside the true
  z_a's and another clip's;
- `audio -> video`: the given audio's clip's brightness against probe_v of the z_v the DiT makes for it, beside the
  true z_v's (the most z_v shows) and another clip's.

Sampling takes the Sounding Video tab's defaults (`pipelines.metrics.sounding_video.mm_ldm_sampling`). Prints a
Markdown table and writes benchmarks/results/mm_ldm_latent_coupling.json.

    python -m benchmarks.mm_ldm_latent_coupling [--weights mm_ldm_toyworld | FOLDER] [--clips 64] [--fit 400]
                                                [--steps N]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from pipelines.metrics.images_that_sound import machine
from pipelines.metrics.sounding_video import (
    flicker_correlation,
    ground_truth_clips,
    lamp_brightness,
    load_model,
    mm_ldm_sampling,
)
from pipelines.weights import repo_relative

RESULTS = Path(__file__).resolve().parent / "results" / "mm_ldm_latent_coupling.json"
FIT_SEED = 21  # the probes' clips
HELD_OUT_SEED = 2_000_003  # the coupling metric's zero-shot clips (its seed 0)
RIDGE = 10.0  # on standardised features
LIT = 0.5  # brightness above which the lamp counts as lit


@dataclass
class LitProbe:
    """A ridge regression of every frame's lit state (0/1) on a flattened latent, features standardised on the fit
    set: `scores` are the per-frame predictions (above 0.5: lit)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    offset: np.ndarray

    @classmethod
    def fit(cls, latents: np.ndarray, lit: np.ndarray, ridge: float = RIDGE) -> LitProbe:
        """latents [N, D], lit [N, F] in {0, 1}."""
        features = latents.reshape(len(latents), -1).astype(np.float64)
        mean, scale = features.mean(0), features.std(0) + 1e-6
        standard = (features - mean) / scale
        offset = lit.mean(0)
        weights = np.linalg.solve(standard.T @ standard + ridge * np.eye(standard.shape[1]),
                                  standard.T @ (lit - offset))
        return cls(mean, scale, weights, offset)

    def scores(self, latents: np.ndarray) -> np.ndarray:
        return ((latents.reshape(len(latents), -1) - self.mean) / self.scale) @ self.weights + self.offset

    def accuracy(self, latents: np.ndarray, lit: np.ndarray) -> np.ndarray:
        """Per frame, the share of clips whose lit state the probe gets right."""
        return ((self.scores(latents) > 0.5) == lit.astype(bool)).mean(0)


def lit_states(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brightness [N, F], lit [N, F] as 0/1) of uint8 lamp clips [N, F, H, W, 3]."""
    brightness = np.stack([lamp_brightness(clip) for clip in frames])
    return brightness, (brightness > LIT).astype(np.float64)


@torch.no_grad()
def true_latents(pipe, clips, batch: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(z_a, z_v) of toy clips, as the pipeline encodes a given stream (× latent_scale)."""
    audio, video = [], []
    for first in range(0, len(clips.audio), batch):
        frames = clips.frames[first : first + batch]
        audio.append(pipe.encode_audio(clips.audio[first : first + batch]).float())
        video.append(pipe.encode_video(pipe.video_tensor(frames, len(frames))).float())
    return torch.cat(audio).numpy(), torch.cat(video).numpy()


@torch.no_grad()
def sampled_latents(pipe, count: int, arguments: dict, batch: int = 16, **given: np.ndarray) -> tuple[np.ndarray, ...]:
    """(z_a, z_v) of `count` DiT samples (sample i seeded with i), joint or for the `given` clips' stream."""
    audio, video = [], []
    for first in range(0, count, batch):
        generators = [torch.Generator().manual_seed(i) for i in range(first, min(count, first + batch))]
        part = {name: value[first : first + len(generators)] for name, value in given.items()}
        output = pipe(num_samples=len(generators), generator=generators, output_type="latent", **part, **arguments)
        audio.append(output.audio.float()), video.append(output.video.float())
    return torch.cat(audio).numpy(), torch.cat(video).numpy()


def other_clip(latents: np.ndarray) -> np.ndarray:
    """Each clip paired with the next one's latent: the shuffled baseline."""
    return np.roll(latents, 1, axis=0)


def measure(pipe, clips: int, fit: int, arguments: dict[str, dict]) -> dict:
    """The report's `probes` and couplings (module docstring); `arguments`: the sampling arguments per mode."""
    fmt = pipe.clip_format
    fitting = ground_truth_clips(fit, FIT_SEED, fmt, ("lamp",))
    _, fit_lit = lit_states(fitting.frames)
    fit_audio, fit_video = true_latents(pipe, fitting)
    probe_a, probe_v = LitProbe.fit(fit_audio, fit_lit), LitProbe.fit(fit_video, fit_lit)
    held = ground_truth_clips(clips, HELD_OUT_SEED, fmt, ("lamp",))
    brightness, lit = lit_states(held.frames)
    z_audio, z_video = true_latents(pipe, held)
    chance = np.maximum(lit.mean(0), 1 - lit.mean(0))

    def agree(video_latents: np.ndarray, audio_latents: np.ndarray) -> float:
        return flicker_correlation(list(probe_v.scores(video_latents)), list(probe_a.scores(audio_latents)))

    def follows(probe: LitProbe, latents: np.ndarray) -> float:
        return flicker_correlation(list(brightness), list(probe.scores(latents)))

    joint_audio, joint_video = sampled_latents(pipe, clips, arguments["joint"])
    v2a_audio, _ = sampled_latents(pipe, clips, arguments["v2a"], video=held.frames)
    _, a2v_video = sampled_latents(pipe, clips, arguments["a2v"], audio=held.audio)
    return {
        "probes": {"z_a_accuracy": probe_a.accuracy(z_audio, lit).round(3).tolist(),
                   "z_v_accuracy": probe_v.accuracy(z_video, lit).round(3).tolist(),
                   "chance": chance.round(3).tolist()},
        "true latents": {"paired": agree(z_video, z_audio), "shuffled": agree(z_video, other_clip(z_audio))},
        "joint": {"paired": agree(joint_video, joint_audio), "shuffled": agree(joint_video, other_clip(joint_audio))},
        "video -> audio": {"generated": follows(probe_a, v2a_audio), "true": follows(probe_a, z_audio),
                           "shuffled": follows(probe_a, other_clip(z_audio))},
        "audio -> video": {"generated": follows(probe_v, a2v_video), "true": follows(probe_v, z_video),
                           "shuffled": follows(probe_v, other_clip(z_video))},
    }


def table(results: dict) -> str:
    rows = ["| what the lit state is read from | generated | true latents | shuffled |", "|---|---|---|---|"]
    true, joint = results["true latents"], results["joint"]
    rows.append(f"| z_v against z_a (joint samples) | {joint['paired']:.2f} | {true['paired']:.2f} | "
                f"{joint['shuffled']:.2f} (true: {true['shuffled']:.2f}) |")
    for mode, latent in (("video -> audio", "z_a"), ("audio -> video", "z_v")):
        row = results[mode]
        rows.append(f"| {latent} made for the given stream ({mode}) against its brightness | {row['generated']:.2f} | "
                    f"{row['true']:.2f} | {row['shuffled']:.2f} |")
    probes = results["probes"]
    rows.append("")
    rows.append("probe accuracy per frame, z_a / z_v / chance: " + ", ".join(
        f"{a:.2f}/{v:.2f}/{c:.2f}" for a, v, c in zip(probes["z_a_accuracy"], probes["z_v_accuracy"],
                                                       probes["chance"])))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mm_ldm_toyworld", help="registry entry (studio variant) or folder")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips, and DiT samples per mode")
    parser.add_argument("--fit", type=int, default=400, help="clips the probes are fitted on")
    parser.add_argument("--steps", type=int, default=None, help="the DiT's DDIM steps (default: the tab's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.clips < 3 or args.fit < 3:
        parser.error("--clips and --fit need at least 3 clips each")
    started = time.time()
    pipe = load_model(args.weights, "studio")
    sampling = mm_ldm_sampling(args.steps, None, None, None, None, None, None)
    results = measure(pipe, args.clips, args.fit, sampling.arguments)
    weights = repo_relative(args.weights) if Path(args.weights).exists() else args.weights
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "seconds": round(time.time() - started, 1),
              "settings": {"weights": weights, "clips": args.clips, "fit": args.fit, "ridge": RIDGE, "lit": LIT,
                           "sampling": sampling.settings},
              "results": results}
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
