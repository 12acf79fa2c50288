"""Images that Sound sampling speed: our loop against a naive one, in the same run, at identical output.

The naive loop is what a direct transcription of Eqs. 3–5 costs: four separate UNet calls per step (cond and uncond
for each model) and no warm-start skip (the inactive model is evaluated and multiplied by 0). Ours batches the two
branches of each model and skips inactive models. Both run the same modules, so the ratio measures the loop alone.

By default: tiny random components (the tests' own) on the CPU, single-threaded and timed in CPU seconds (steadier
on a shared machine), at two latent sizes: the tests' 4×32×16 and the paper's 4×32×128. Besides the loops, it
times one UNet call at batch 1 and batch 2, which explains the ratio: our loop's time is almost all UNet calls, so

    speed-up ≈ (4 · steps · t_batch1) / (active model-steps · t_batch2),

about 2.1 at 20 steps where a call costs the same at batch 1 and 2 (overhead-bound: launch or Python overhead
dominates) and about 1.05 where it costs twice as much (compute-bound). `--paper-size` builds Stable Diffusion
v1.5-sized random UNets (fp16 on a GPU). Prints a table and writes benchmarks/results/images_that_sound.json.

    python -m benchmarks.images_that_sound [--steps 20] [--repeats 5] [--threads 1] [--paper-size]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from pipelines.images_that_sound.pipeline_images_that_sound import Guidance, ImagesThatSoundPipeline

RESULTS = Path(__file__).resolve().parent / "results" / "images_that_sound.json"
TINY_SIZES = {"test-tiny": 16, "benchmark": 128}  # latent widths: the tests' 1.28 s and the paper's 10.24 s
GOAL = 1.8


def naive_denoise(pipe: ImagesThatSoundPipeline, models: list[Guidance], latents, steps: int):
    """Eqs. 3–5 transcribed: four UNet calls per step, every model evaluated at every step."""
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    for timestep in pipe.scheduler.timesteps:
        estimates, weights = [], []
        for model in models:
            uncond_embed, cond_embed = model.embeddings.chunk(2)
            uncond = model.unet(latents, timestep, encoder_hidden_states=uncond_embed).sample
            cond = model.unet(latents, timestep, encoder_hidden_states=cond_embed).sample
            estimates.append(uncond + model.scale * (cond - uncond))
            weights.append(1.0 if pipe.active(model.warm_start, timestep) else 0.0)
        noise = sum(w * e for w, e in zip(weights, estimates)) / sum(weights)
        latents = pipe.scheduler.step(noise, timestep, latents).prev_sample
    return latents


def build_pipe(paper_size: bool, device: str) -> ImagesThatSoundPipeline:
    from tests.factories import tiny_model_folder

    folder = Path(tempfile.mkdtemp())
    tiny_model_folder(folder / "image", seed=0)
    tiny_model_folder(folder / "audio", seed=1)
    pipe = ImagesThatSoundPipeline.from_pretrained(image_model=folder / "image", audio_model=folder / "audio")
    if paper_size:
        from diffusers import UNet2DConditionModel

        for name in ("image_unet", "audio_unet"):  # Stable Diffusion v1.5's UNet layout, random weights
            setattr(pipe, name, UNet2DConditionModel(cross_attention_dim=8))
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def timed(function) -> tuple[float, torch.Tensor]:
    """Seconds `function` took and its result: wall time on a GPU, this process's CPU time on the CPU (other jobs
    on a shared machine then slow it less: time waiting for a core is not counted)."""
    gpu = torch.cuda.is_available()
    clock = time.perf_counter if gpu else time.process_time
    if gpu:
        torch.cuda.synchronize()
    start = clock()
    result = function()
    if gpu:
        torch.cuda.synchronize()
    return clock() - start, result


def unet_call_seconds(model: Guidance, latents: torch.Tensor, batch: int, repeats: int) -> float:
    """Best time of one UNet call at batch 1 (one branch) or 2 (both CFG branches)."""
    inputs = torch.cat([latents] * batch)
    embeddings = model.embeddings[-batch:]
    return min(timed(lambda: model.unet(inputs, 500, encoder_hidden_states=embeddings))[0] for _ in range(repeats))


def model_steps(pipe: ImagesThatSoundPipeline, models: list[Guidance], steps: int) -> int:
    """How many (model, step) pairs our loop evaluates: inactive models are skipped."""
    pipe.scheduler.set_timesteps(steps)
    return sum(pipe.active(m.warm_start, t) for t in pipe.scheduler.timesteps.tolist() for m in models)


def measure(pipe: ImagesThatSoundPipeline, models: list[Guidance], width: int, steps: int, repeats: int) -> dict:
    noise = pipe.prepare_latents(1, width, torch.Generator().manual_seed(0), None)
    with torch.no_grad():
        timed(lambda: pipe.denoise(models, noise, 2, 0.0, None))  # warm-up
        batch_1 = unet_call_seconds(models[0], noise, 1, repeats)
        batch_2 = unet_call_seconds(models[0], noise, 2, repeats)
        naive_runs, ours_runs = [], []
        for _ in range(repeats):  # interleaved, best of each: robust to other load on the machine
            naive_runs.append(timed(lambda: naive_denoise(pipe, models, noise, steps)))
            ours_runs.append(timed(lambda: pipe.denoise(models, noise, steps, 0.0, None)))
    (naive_s, naive), (ours_s, ours) = min(naive_runs, key=lambda r: r[0]), min(ours_runs, key=lambda r: r[0])
    evaluations = model_steps(pipe, models, steps)
    return {
        "latent": [4, pipe.latent_height, width], "unet_batch1_s": batch_1, "unet_batch2_s": batch_2,
        "naive_s": naive_s, "ours_s": ours_s, "speedup": naive_s / ours_s,
        "predicted_speedup": 2 * len(models) * steps * batch_1 / (evaluations * batch_2),
        "ours_unet_share": evaluations * batch_2 / ours_s,
        "max_abs_latent_difference": (naive - ours).abs().max().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--paper-size", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = build_pipe(args.paper_size, device)
    models = [pipe.image_guidance("a castle", "", 1, 10.0, 0.9), pipe.audio_guidance("bell", "", 1, 10.0, 1.0)]
    sizes = {"paper (SD v1.5 UNets, random)": 128} if args.paper_size else TINY_SIZES
    results = {name: measure(pipe, models, width, args.steps, args.repeats) for name, width in sizes.items()}
    print(f"{'size':<12}{'latent':>12}{'UNet b1 ms':>12}{'b2 ms':>8}{'naive s':>9}{'ours s':>8}{'speed-up':>10}"
          f"{'predicted':>11}{'max diff':>10}")
    for name, r in results.items():
        print(f"{name:<12}{'×'.join(map(str, r['latent'])):>12}{r['unet_batch1_s'] * 1e3:>12.1f}"
              f"{r['unet_batch2_s'] * 1e3:>8.1f}{r['naive_s']:>9.3f}{r['ours_s']:>8.3f}{r['speedup']:>9.2f}x"
              f"{r['predicted_speedup']:>10.2f}x{r['max_abs_latent_difference']:>10.1e}")
    for name, r in results.items():
        print(f"{name}: goal >= {GOAL}x {'met' if r['speedup'] >= GOAL else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": date.today().isoformat(), "device": device, "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "components": "paper-size random UNets" if args.paper_size else "tiny random (tests/factories.py)",
        "steps": args.steps, "repeats": args.repeats, "goal_speedup": GOAL, "results": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
