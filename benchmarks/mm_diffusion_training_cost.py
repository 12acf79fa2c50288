"""What an optimisation step and a sample of the studio MM-Diffusion cost, per clip and model choice.

The studio model must learn its coupling from as many optimisation steps as a 2-core CPU can give, so the clip and
the network were chosen by cost per step (this script) and by how soon a run learnt the coupling (the model card).
For every choice below, one training step of `pipelines.train.mm_diffusion` (the official objective: forward,
backward, AdamW) on random clips, best of `--repeats` after a warm-up, in CPU seconds of this process
(`time.process_time`, one torch thread: time spent waiting for a core is not counted), and the ratio to the studio
preset measured in the same process. Then one sample of the studio network per sampler and step count (the
Sounding Video tab's choices): joint, plain and with the tab's 3 resampling rounds of the noisiest 60 % of the steps
(`entries.STUDIO_JOINT`), and audio -> video with 4 rounds (`entries.STUDIO_A2V`, weights without a clean condition),
with the released scripts' gradient guidance and by plain replacement. Prints a Markdown table and writes
benchmarks/results/mm_diffusion_training_cost.json.

    python -m benchmarks.mm_diffusion_training_cost [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

from pipelines.mm_diffusion.entries import (
    PAPER_ZERO_SHOT,
    RELEASED_SCRIPTS_ZERO_SHOT,
    STUDIO_A2V,
    STUDIO_JOINT,
    Steering,
)
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.train.mm_diffusion import PRESETS, JointDiffusionObjective, build_model

RESULTS = Path(__file__).resolve().parent / "results" / "mm_diffusion_training_cost.json"


@dataclass(frozen=True)
class Choice:
    name: str
    frames: int = 8
    frame_size: int = 16
    sample_rate: int = 4000
    batch: int = 8
    channels: int = 64


CHOICES = (
    Choice("studio preset: 8 frames 16×16, 0.8 s at 4 kHz, 64 ch, batch 8"),
    Choice("4 frames (0.4 s)", frames=4),
    Choice("16 frames (1.6 s)", frames=16),
    Choice("audio at 3.2 kHz", sample_rate=3200),
    Choice("audio at 8 kHz", sample_rate=8000),
    Choice("frames 32×32", frame_size=32),
    Choice("96 channels", channels=96),
    Choice("batch 4", batch=4),
    Choice("batch 16", batch=16),
)
# (sampler, steps, mode, how it is steered: None for the paper's joint sampler)
SAMPLERS = (("ddpm", 1000, "joint", None), ("ddpm", 100, "joint", None), ("ddim", 50, "joint", None),
            ("ddim", 25, "joint", None), ("dpm_solver", 20, "joint", None), ("ddpm", 100, "joint", STUDIO_JOINT),
            ("ddpm", 100, "audio -> video", STUDIO_A2V), ("ddpm", 100, "audio -> video", RELEASED_SCRIPTS_ZERO_SHOT),
            ("ddpm", 100, "audio -> video", PAPER_ZERO_SHOT))


def network(choice: Choice) -> torch.nn.Module:
    samples = choice.frames * choice.sample_rate // 10
    flags = {**PRESETS["studio"].flags, "num_channels": choice.channels,
             "video_size": f"{choice.frames},3,{choice.frame_size},{choice.frame_size}", "audio_size": f"1,{samples}"}
    return build_model(flags)


def step_seconds(choice: Choice, repeats: int) -> tuple[float, int]:
    """Best CPU seconds of one training step, and the network's parameter count."""
    torch.manual_seed(0)
    objective = JointDiffusionObjective(network(choice))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    video = torch.randn(choice.batch, choice.frames, 3, choice.frame_size, choice.frame_size)
    audio = torch.randn(choice.batch, 1, choice.frames * choice.sample_rate // 10)
    times = []
    for _ in range(repeats + 1):
        started = time.process_time()
        t = torch.randint(0, 1000, (choice.batch,))
        video_loss, audio_loss = objective(video, audio, t, torch.randn_like(video), torch.randn_like(audio))
        (video_loss + audio_loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.process_time() - started)
    return min(times[1:]), sum(p.numel() for p in objective.parameters())


def sample_seconds(sampler: str, steps: int, mode: str = "joint", steering: Steering | None = None) -> float:
    """CPU seconds of one sample of the studio network (random weights: the cost does not depend on them): joint or
    audio -> video, steered by `steering`."""
    pipe = MMDiffusionPipeline(network(CHOICES[0]).eval(), sample_rate=4000, fps=10)
    given = {"audio": torch.full((3200,), 0.1)} if mode != "joint" else {}
    given.update(steering.arguments() if steering is not None else {})
    started = time.process_time()
    pipe(num_samples=1, generator=torch.Generator().manual_seed(0), sampler=sampler, num_inference_steps=steps,
         **given)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for choice in CHOICES:
        seconds, parameters = step_seconds(choice, args.repeats)
        rows.append({"choice": choice.name, "seconds_per_step": seconds, "ms_per_clip": 1000 * seconds / choice.batch,
                     "parameters": parameters})
    base = rows[0]["seconds_per_step"]
    print("| choice | parameters | s / step | ms / clip | × studio step |\n|---|---|---|---|---|")
    for row in rows:
        row["ratio"] = row["seconds_per_step"] / base
        print(f"| {row['choice']} | {row['parameters'] / 1e6:.2f}M | {row['seconds_per_step']:.3f} | "
              f"{row['ms_per_clip']:.0f} | {row['ratio']:.2f} |")
    sampling = [{"sampler": s, "steps": n, "mode": mode, "steering": None if z is None else z.arguments(),
                 "seconds": sample_seconds(s, n, mode, z)} for s, n, mode, z in SAMPLERS]
    print("\n| sampler | steps | mode | guidance λ (form), resampling rounds | s / sample |\n|---|---|---|---|---|")
    for row in sampling:
        z = row["steering"]
        steering = z and f"{z['guidance_scale']:g} ({z['guidance_scale_form']}), {z['resample_rounds']}"
        print(f"| {row['sampler']} | {row['steps']} | {row['mode']} | {steering or ''} | {row['seconds']:.2f} |")
    RESULTS.write_text(json.dumps({"date": date.today().isoformat(), "machine": f"{platform.machine()}, CPU, 1 torch "
                                   f"thread, torch {torch.__version__}", "steps": rows, "sampling": sampling},
                                  indent=2))


if __name__ == "__main__":
    main()
