"""Images that Sound sampling speed: our loop against a naive one, in the same run, at identical output.

The naive loop is what a direct transcription of Eqs. 3–5 costs: four separate UNet calls per step (cond and uncond
for each model) and no warm-start skip (the inactive model is evaluated and multiplied by 0). Ours batches the two
branches of each model and skips inactive models. Tiny random components on the CPU by default; `--paper-size`
builds Stable Diffusion v1.5-sized random UNets (fp16 on a GPU). Prints a table and writes
benchmarks/results/images_that_sound.json.

    python -m benchmarks.images_that_sound [--steps 20] [--paper-size]
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
    from tests.test_images_that_sound import tiny_model_folder

    folder = Path(tempfile.mkdtemp())
    tiny_model_folder(folder / "image", seed=0)
    tiny_model_folder(folder / "audio", seed=1)
    pipe = ImagesThatSoundPipeline.from_pretrained(str(folder / "image"), str(folder / "audio"))
    if paper_size:
        from diffusers import UNet2DConditionModel

        for name in ("image_unet", "audio_unet"):  # Stable Diffusion v1.5's UNet layout, random weights
            setattr(pipe, name, UNet2DConditionModel(cross_attention_dim=8))
    dtype = torch.float16 if device == "cuda" else torch.float32
    return pipe.to(device, dtype)


def timed(function) -> tuple[float, torch.Tensor]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--paper-size", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = build_pipe(args.paper_size, device)
    models = [
        Guidance(pipe.image_unet, pipe.encode_prompt(pipe.image_text_encoder, pipe.image_tokenizer, "a castle", "", 1),
                 10.0, 0.9),
        Guidance(pipe.audio_unet, pipe.encode_prompt(pipe.audio_text_encoder, pipe.audio_tokenizer, "bell", "", 1),
                 10.0, 1.0),
    ]
    noise = pipe.prepare_latents(1, 128, torch.Generator().manual_seed(0), None)
    naive_runs, ours_runs = [], []
    with torch.no_grad():
        timed(lambda: pipe.denoise(models, noise, 2, 0.0, None))  # warm-up
        for _ in range(args.repeats):  # interleaved, best of each: robust to other load on the machine
            naive_runs.append(timed(lambda: naive_denoise(pipe, models, noise, args.steps)))
            ours_runs.append(timed(lambda: pipe.denoise(models, noise, args.steps, 0.0, None)))
    (naive_s, naive), (ours_s, ours) = min(naive_runs, key=lambda r: r[0]), min(ours_runs, key=lambda r: r[0])
    difference = (naive - ours).abs().max().item()
    print(f"{'loop':<10}{'s/sample':>10}{'s/step':>10}")
    print(f"{'naive':<10}{naive_s:>10.3f}{naive_s / args.steps:>10.4f}")
    print(f"{'ours':<10}{ours_s:>10.3f}{ours_s / args.steps:>10.4f}")
    print(f"speed-up {naive_s / ours_s:.2f}x; max |latent difference| {difference:.2e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": date.today().isoformat(), "device": device, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "size": "paper (SD v1.5 UNets, random)" if args.paper_size else "tiny", "steps": args.steps, "repeats": args.repeats,
        "naive_s": naive_s, "ours_s": ours_s, "speedup": naive_s / ours_s, "max_abs_latent_difference": difference,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
