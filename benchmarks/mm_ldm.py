"""MM-LDM's Table 1 in small: a training step and a sample of MM-LDM against MM-Diffusion, at one clip, one process.

The paper (Table 1, one V100, batch 2, DDIM 50) finds MM-LDM about 6× faster than MM-Diffusion per training step and
10× per sample. Here both models are built with random weights (the cost does not depend on them) at MM-LDM's studio
clip, 8 frames of 32² at 10 fps with 0.8 s of 16 kHz audio (`MMLDMPipeline.clip_format` of the studio preset):
MM-LDM's studio networks (`build_components("studio")`) and MM-Diffusion's studio U-Net (`pipelines.train.mm_diffusion`
preset `studio`) sized for that clip (8 × 3 × 32 × 32 video, 12,800 audio samples).

Training: one optimisation step (forward, backward, AdamW) at batch `--batch` (the paper's 2), each model in train mode:
- MM-Diffusion: `JointDiffusionObjective` (the official ε-MSE of both streams) on pixels and waveforms;
- MM-LDM*: `scheduling_mm_ldm.dit_training_loss` on precomputed perceptual latents z_a, z_v (the paper's MM-LDM*, and
  what `pipelines.train.mm_ldm --stage dit` does);
- MM-LDM, two readings of the paper's non-* row, the DiT step with frozen encoders run in the step (no gradients, as
  `MMLDMPipeline` encodes): the autoencoder's audio and video encoders on precomputed KL-VAE latents; and the KL-VAE
  encoder on every frame and on the audio image, then the autoencoder's encoders. The audio image itself (mel +
  resize) is data preparation, precomputed as the trainer's clips hold it;
- the multi-modal autoencoder's step, `MultiModalAutoencoder.training_losses` (Eq. 3) on KL-VAE latents, without the
  optional adversarial loss (stage 2 of the trainer; not in the paper's table, reported for planning).
Sampling: one sample (`num_samples=1`) with each pipeline's default output: MM-Diffusion DDPM 100 (the Sounding Video
tab's studio default) and DDIM 50 (the paper's sampler); MM-LDM's DDIM 50 DiT + the shared decoder (DDIM 50 with
decoder guidance, KL-VAE decoding, Griffin-Lim: `pipelines.mm_ldm.entries` defaults), and the DiT alone
(`output_type="latent"`, the paper's MM-LDM* sample); then audio → video for a 440 Hz hum with each model's studio
defaults (MM-Diffusion DDPM 100 with 4 resampling rounds, `entries.STUDIO_A2V`; MM-LDM with φ, reconstruction
guidance and 2 resampling rounds, `entries.STUDIO_RESAMPLE_ROUNDS`), compared with each other.

Each is run once as a warm-up, then `--repeats` times; the median of CPU seconds of this process is kept
(`time.process_time`, one torch thread: time spent waiting for a core on a loaded machine is not counted). Speed-ups
are MM-Diffusion's time over the row's time (> 1: faster than MM-Diffusion), measured in the same process; the
paper's own (Table 1, against MM-Diffusion at 64² and at 128², the headline) are printed beside them. Training rows
also get their FLOPs (torch's FlopCounterMode: matrix products, convolutions, attention, forward + backward of the
trained network and the forward of the encoders it runs) at the timed size and at the paper size, both counted on the
meta device (shapes only), where MM-Diffusion is the released network on its own paper's clip (16 frames of 64²,
25,600 samples) and MM-LDM its paper preset (256²): a paper-size step is minutes on a CPU, so it is counted, not timed.
Parameter counts of the timed and of the paper-size networks close the report.

    python -m benchmarks.mm_ldm [--repeats 3] [--batch 2] [--quick] [--out PATH]

`--quick` (for tests): the `tiny` presets at the tiny MM-LDM clip (8 frames of 16²), 2 sampling steps, one timed run after the warm-up.
Prints Markdown tables and writes benchmarks/results/mm_ldm.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.mm_diffusion.clips import FPS, ClipFormat
from pipelines.mm_diffusion.entries import STUDIO_A2V
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.mm_ldm.entries import (
    STUDIO_DECODER_STEPS,
    STUDIO_GUIDANCE,
    STUDIO_RECONSTRUCTION,
    STUDIO_RESAMPLE_ROUNDS,
    STUDIO_STEPS,
)
from pipelines.mm_ldm.modeling_mm_ldm import build_components, get_preset
from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
from pipelines.train.mm_diffusion import JointDiffusionObjective, build_model, clip_format_from_args, model_flags
from pipelines.train.mm_ldm import AutoencoderObjective, DiTObjective

RESULTS = Path(__file__).resolve().parent / "results" / "mm_ldm.json"
MM_DIFFUSION_STUDIO_DDPM_STEPS = 100  # the Sounding Video tab's default for the studio MM-Diffusion
PAPER_DDIM_STEPS = 50  # Table 1's sampler, for both models
# Table 1 of the paper (V100, batch 2, DDIM 50): seconds per training step and per sample.
PAPER_TABLE_1 = {"mm_diffusion_64": (1.70, 33.1), "mm_diffusion_128": (2.36, 90.0), "mm_ldm": (0.46, 70.7),
                 "mm_ldm_precomputed": (0.38, 8.7)}


@dataclass(frozen=True)
class Setup:
    """What one run measures: the presets of both models, the batch, repeats and the sampling step counts."""

    mm_ldm: str
    mm_diffusion: str
    batch: int
    repeats: int
    sampler_steps: dict[str, int]  # "ddpm", "ddim" (MM-Diffusion), "dit", "decoder" (MM-LDM)


def make_setup(quick: bool, batch: int, repeats: int) -> Setup:
    if quick:
        return Setup("tiny", "tiny", batch, 1, {"ddpm": 2, "ddim": 2, "dit": 2, "decoder": 2})
    return Setup("studio", "studio", batch, repeats,
                 {"ddpm": MM_DIFFUSION_STUDIO_DDPM_STEPS, "ddim": PAPER_DDIM_STEPS, "dit": STUDIO_STEPS,
                  "decoder": STUDIO_DECODER_STEPS})


# Models ------------------------------------------------------------------------------------------------------------


def mm_ldm_pipeline(preset: str) -> MMLDMPipeline:
    """MM-LDM's four components at `preset` with seeded random weights, as one pipeline."""
    torch.manual_seed(0)
    spec = get_preset(preset)
    return MMLDMPipeline(**build_components(preset), fps=spec.fps, audio_spec=spec.audio_spec)


def mm_diffusion_unet(preset: str, fmt: ClipFormat) -> torch.nn.Module:
    """MM-Diffusion's U-Net at a trainer preset, sized for the clip `fmt` (seeded random weights)."""
    torch.manual_seed(0)
    return build_model(model_flags(argparse.Namespace(size=preset, dropout=None), fmt))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(unet: torch.nn.Module, pipe: MMLDMPipeline) -> dict[str, int]:
    """Parameters of every network the timed rows train or run."""
    ae = pipe.autoencoder
    return {"mm_diffusion_unet": count(unet), "dit": count(pipe.transformer), "autoencoder": count(ae),
            "autoencoder_encoders": count(ae.audio_encoder) + count(ae.video_encoder) + ae.content_frame.numel(),
            "kl_vae": count(pipe.vae), "kl_vae_encoder": count(pipe.vae.encoder) + count(pipe.vae.quant_conv)}


def meta_models(mm_diffusion: str, mm_ldm: str) -> tuple[torch.nn.Module, MMLDMPipeline]:
    """Both models on the meta device (shapes only: no memory, no time). MM-Diffusion is sized for MM-LDM's clip,
    except at the paper size, where each model has its own paper's clip (MM-Diffusion: 16 frames of 64², 25,600
    samples, the released network)."""
    paper_clip = argparse.Namespace(size="paper", frames=None, frame_size=None, sample_rate=None, fps=FPS)
    with torch.device("meta"):
        pipe = mm_ldm_pipeline(mm_ldm)
        fmt = clip_format_from_args(paper_clip) if mm_diffusion == "paper" else pipe.clip_format
        return mm_diffusion_unet(mm_diffusion, fmt), pipe


def counted_flops(run: Callable[[], object]) -> int:
    """Floating-point operations of `run` as torch's FlopCounterMode counts them (matrix products, convolutions,
    attention; element-wise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def step_flops(unet: torch.nn.Module, pipe: MMLDMPipeline, batch: int) -> dict[str, int]:
    """FLOPs of one training step of each training row, forward + backward of the trained network (plus the
    encoders' forward for MM-LDM), for models on the meta device. The noising, the loss arithmetic and AdamW are
    left out (element-wise)."""
    meta = {"device": "meta"}  # inputs made here, outside `torch.device("meta")`: RS-MMA draws its shifts on the CPU
    ae = pipe.autoencoder
    video, audio = torch.zeros(batch, *unet.config["video_size"], **meta), torch.zeros(batch, *unet.config[
        "audio_size"], **meta)
    audio_shape, video_shape = ae.latent_shapes()
    z_audio, z_video = torch.zeros(batch, *audio_shape, **meta), torch.zeros(batch, *video_shape, **meta)
    frames = torch.zeros(batch, pipe.num_frames, 3, pipe.frame_size, pipe.frame_size, **meta)
    audio_images = torch.zeros(batch, 3, pipe.frame_size, pipe.frame_size, **meta)
    vae_latent = (ae.config.vae_channels, ae.config.vae_size, ae.config.vae_size)
    audio_latents = torch.zeros(batch, *vae_latent, **meta)
    frame_latents = torch.zeros(batch, pipe.num_frames, *vae_latent, **meta)
    labels = torch.zeros(batch, dtype=torch.long, **meta)

    def mm_diffusion() -> None:
        eps_video, eps_audio = unet(video, audio, torch.full((batch,), 500.0, **meta))
        (eps_video.square().mean() + eps_audio.square().mean()).backward()

    def dit() -> None:
        eps_audio, eps_video = pipe.transformer(z_audio, z_video, torch.full((batch,), 500, **meta), z_audio, z_video)
        (eps_audio.square().mean() + eps_video.square().mean()).backward()

    def autoencoder() -> None:
        AutoencoderObjective(ae)(audio_latents, frame_latents, labels, torch.Generator().manual_seed(0))[
            "total"].backward()

    flops = {"mm_diffusion": counted_flops(mm_diffusion), "mm_ldm_precomputed": counted_flops(dit)}
    flops["mm_ldm_vae_precomputed"] = flops["mm_ldm_precomputed"] + counted_flops(
        lambda: perceptual_latents(pipe, audio_latents, frame_latents))
    flops["mm_ldm"] = flops["mm_ldm_vae_precomputed"] + counted_flops(lambda: kl_vae_latents(pipe, frames,
                                                                                              audio_images))
    flops["mm_ldm_autoencoder"] = counted_flops(autoencoder)
    return flops


# Timing ------------------------------------------------------------------------------------------------------------


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of `run` over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times)


def optimisation_step(parameters, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One AdamW step on `loss()` (forward, backward, update, gradients cleared)."""
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)

    def step() -> None:
        loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def mm_diffusion_step(unet: torch.nn.Module, fmt: ClipFormat, batch: int) -> Callable[[], None]:
    """MM-Diffusion's training step on random pixels and waveforms."""
    objective = JointDiffusionObjective(unet).train()
    video = torch.randn(batch, fmt.frames, 3, fmt.height, fmt.width)
    audio = torch.randn(batch, 1, fmt.audio_samples)

    def loss() -> torch.Tensor:
        t = torch.randint(0, objective.process.num_timesteps, (batch,))
        video_loss, audio_loss = objective(video, audio, t, torch.randn_like(video), torch.randn_like(audio))
        return video_loss + audio_loss

    return optimisation_step(objective.parameters(), loss)


def random_media(pipe: MMLDMPipeline, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames `[B, F, 3, H, W]` and audio images `[B, 3, H, W]` in [-1, 1], at the pipeline's clip."""
    size = pipe.frame_size
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(batch, pipe.num_frames, 3, size, size, generator=generator) * 2 - 1
    return frames, torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


@torch.no_grad()
def kl_vae_latents(pipe: MMLDMPipeline, frames: torch.Tensor,
                   audio_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The audio image's KL-VAE latent `[B, c, h, w]` and every frame's `[B, F, c, h, w]`, as the pipeline encodes."""
    return pipe.vae_encode(audio_images), pipe.vae_encode(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])


@torch.no_grad()
def perceptual_latents(pipe: MMLDMPipeline, audio_latent: torch.Tensor,
                       frame_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_a, z_v) from KL-VAE latents, as the pipeline encodes: the autoencoder's posterior means × latent_scale."""
    ae = pipe.autoencoder
    return (ae.encode_audio(audio_latent).mode() * pipe.latent_scale,
            ae.encode_video(frame_latents).mode() * pipe.latent_scale)


def dit_step(pipe: MMLDMPipeline, batch: int, encoders: str) -> Callable[[], None]:
    """MM-LDM's DiT training step. `encoders`: "none" (MM-LDM*, z_a and z_v precomputed), "autoencoder" (KL-VAE
    latents precomputed, the autoencoder's encoders run in the step) or "all" (KL-VAE and autoencoder encoders run in
    the step), without gradients."""
    objective = DiTObjective(pipe.transformer.train())
    pipe.vae.eval()
    pipe.autoencoder.eval()  # frozen, as the trainer's dit stage holds them
    media = random_media(pipe, batch)
    vae_latents = kl_vae_latents(pipe, *media)
    latents = perceptual_latents(pipe, *vae_latents)
    generator = torch.Generator().manual_seed(2)

    def loss() -> torch.Tensor:
        if encoders == "all":
            audio, video = perceptual_latents(pipe, *kl_vae_latents(pipe, *media))
        else:
            audio, video = perceptual_latents(pipe, *vae_latents) if encoders == "autoencoder" else latents
        return objective(audio, video, generator)

    return optimisation_step(pipe.transformer.parameters(), loss)


def autoencoder_step(pipe: MMLDMPipeline, batch: int) -> Callable[[], None]:
    """The multi-modal autoencoder's training step (Eq. 3, no adversarial loss) on KL-VAE latents."""
    ae = pipe.autoencoder.train()
    objective = AutoencoderObjective(ae)
    audio, frame_latents = kl_vae_latents(pipe, *random_media(pipe, batch))
    labels = torch.arange(batch) % ae.config.num_classes
    generator = torch.Generator().manual_seed(3)
    return optimisation_step(ae.parameters(), lambda: objective(audio, frame_latents, labels, generator)["total"])


def paper_speedups(paper_key: str | None, column: int) -> dict[str, float] | None:
    """Table 1's speed-ups of a row (column 0: training step, 1: sample) against MM-Diffusion at 64² and 128²."""
    if paper_key is None:
        return None
    return {f"vs_mm_diffusion_{size}": PAPER_TABLE_1[f"mm_diffusion_{size}"][column] / PAPER_TABLE_1[paper_key][column]
            for size in (64, 128)}


def training_rows(setup: Setup, unet: torch.nn.Module, pipe: MMLDMPipeline, fmt: ClipFormat) -> list[dict]:
    steps = [("mm_diffusion", "MM-Diffusion (pixels + waveform)", None,
              lambda: mm_diffusion_step(unet, fmt, setup.batch)),
             ("mm_ldm_precomputed", "MM-LDM* (DiT on precomputed latents)", "mm_ldm_precomputed",
              lambda: dit_step(pipe, setup.batch, "none")),
             ("mm_ldm_vae_precomputed", "MM-LDM (DiT + autoencoder encoders; KL-VAE latents precomputed)", "mm_ldm",
              lambda: dit_step(pipe, setup.batch, "autoencoder")),
             ("mm_ldm", "MM-LDM (DiT + KL-VAE and autoencoder encoders each step)", "mm_ldm",
              lambda: dit_step(pipe, setup.batch, "all")),
             ("mm_ldm_autoencoder", "MM-LDM autoencoder (stage 2)", None, lambda: autoencoder_step(pipe, setup.batch))]
    flops = {size: step_flops(*meta_models(*presets), setup.batch) for size, presets in
             (("timed", (setup.mm_diffusion, setup.mm_ldm)), ("paper", ("paper", "paper")))}
    rows = []
    for key, label, paper_key, make_step in steps:
        torch.manual_seed(0)
        rows.append({"key": key, "label": label, "seconds": median_seconds(make_step(), setup.repeats),
                     "paper_speedup": paper_speedups(paper_key, 0),
                     "flops": flops["timed"][key], "paper_size_flops": flops["paper"][key]})
    add_ratios(rows, rows[0], "seconds", "speedup_vs_mm_diffusion")
    add_ratios(rows, rows[0], "flops", "flop_ratio_vs_mm_diffusion")
    add_ratios(rows, rows[0], "paper_size_flops", "paper_size_flop_ratio_vs_mm_diffusion")
    return rows


def sampling_rows(setup: Setup, unet: torch.nn.Module, pipe: MMLDMPipeline, fmt: ClipFormat) -> list[dict]:
    diffusion = MMDiffusionPipeline(unet.eval(), sample_rate=fmt.sample_rate, fps=fmt.fps)
    pipe.transformer.eval()
    pipe.autoencoder.eval()
    steps = setup.sampler_steps

    hum = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(fmt.audio_samples) / fmt.sample_rate)

    def mm_diffusion(sampler: str, **given) -> Callable[[], object]:
        return lambda: diffusion(num_samples=1, sampler=sampler, num_inference_steps=steps[sampler],
                                 generator=torch.Generator().manual_seed(0), **given)

    def mm_ldm(output_type: str, **given) -> Callable[[], object]:
        return lambda: pipe(num_inference_steps=steps["dit"], decoder_steps=steps["decoder"],
                            guidance_scale=STUDIO_GUIDANCE, reconstruction_scale=STUDIO_RECONSTRUCTION["a2v"],
                            num_samples=1, output_type=output_type, generator=torch.Generator().manual_seed(0),
                            **given)

    samples = [("mm_diffusion_ddpm", f"MM-Diffusion DDPM {steps['ddpm']} (studio tab)", None, mm_diffusion("ddpm")),
               ("mm_diffusion_ddim", f"MM-Diffusion DDIM {steps['ddim']} (paper's sampler)", None,
                mm_diffusion("ddim")),
               ("mm_ldm", f"MM-LDM DiT DDIM {steps['dit']} + decoder DDIM {steps['decoder']} + Griffin-Lim", "mm_ldm",
                mm_ldm("np")),
               ("mm_ldm_precomputed", f"MM-LDM* DiT DDIM {steps['dit']} alone (latents)", "mm_ldm_precomputed",
                mm_ldm("latent")),
               ("mm_diffusion_a2v", f"audio → video: MM-Diffusion DDPM {steps['ddpm']}, the tab's resampling",
                None, mm_diffusion("ddpm", audio=hum, **STUDIO_A2V.arguments())),
               ("mm_ldm_a2v", (f"audio → video: MM-LDM as above, reconstruction guidance λ = "
                               f"{STUDIO_RECONSTRUCTION['a2v']:g}, "
                               f"{STUDIO_RESAMPLE_ROUNDS['a2v']} resampling rounds"), None,
                mm_ldm("np", audio=hum.numpy(), resample_rounds=STUDIO_RESAMPLE_ROUNDS["a2v"]))]
    rows = []
    for key, label, paper_key, sample in samples:  # not under inference_mode: zero-shot guidance takes gradients
        rows.append({"key": key, "label": label, "seconds": median_seconds(sample, setup.repeats),
                     "paper_speedup": paper_speedups(paper_key, 1)})
    add_ratios(rows, rows[0], "seconds", "speedup_vs_ddpm")
    add_ratios(rows, rows[1], "seconds", "speedup_vs_ddim")
    add_ratios(rows, rows[4], "seconds", "speedup_vs_mm_diffusion_a2v")
    return rows


def add_ratios(rows: list[dict], baseline: dict, field: str, name: str) -> None:
    """row[name] = baseline[field] / row[field] for every row (> 1: the row needs less than the baseline)."""
    for row in rows:
        row[name] = baseline[field] / row[field]


# Report ------------------------------------------------------------------------------------------------------------


def paper_cell(speedups: dict[str, float] | None) -> str:
    return "–" if speedups is None else " / ".join(f"{value:.1f}×" for value in speedups.values())


def print_report(result: dict) -> None:
    print(f"\nClip: {result['clip']['description']}; batch {result['batch']} for training, 1 sample; median of "
          f"{result['repeats']} after a warm-up; CPU seconds, 1 torch thread.\n")
    print("| training step | s / step | × faster than MM-Diffusion | GFLOP / step | × fewer FLOPs | paper size: "
          "× fewer FLOPs | paper, V100: × faster vs 64² / 128² |\n|---|---|---|---|---|---|---|")
    for row in result["training"]:
        print(f"| {row['label']} | {row['seconds']:.3f} | {row['speedup_vs_mm_diffusion']:.2f} | "
              f"{row['flops'] / 1e9:.2f} | {row['flop_ratio_vs_mm_diffusion']:.1f} | "
              f"{row['paper_size_flop_ratio_vs_mm_diffusion']:.2f} | {paper_cell(row['paper_speedup'])} |")
    print("\n| one sample | s / sample | × vs MM-Diffusion DDPM | × vs MM-Diffusion DDIM | × vs MM-Diffusion audio → "
          "video | paper, V100: × vs 64² / 128² |\n|---|---|---|---|---|---|")
    for row in result["sampling"]:
        print(f"| {row['label']} | {row['seconds']:.2f} | {row['speedup_vs_ddpm']:.2f} | {row['speedup_vs_ddim']:.2f} "
              f"| {row['speedup_vs_mm_diffusion_a2v']:.2f} | {paper_cell(row['paper_speedup'])} |")
    studio, paper = result["parameters"]["timed"], result["parameters"]["paper"]
    print("\n| network | parameters (timed) | parameters (paper size) |\n|---|---|---|")
    for name in studio:
        print(f"| {name} | {studio[name] / 1e6:.2f}M | {paper[name] / 1e6:.1f}M |")


def run(setup: Setup) -> dict:
    """Every measurement of `setup`, as the JSON record."""
    torch.set_num_threads(1)
    load = [round(value, 2) for value in os.getloadavg()]  # a shared machine: how busy it was at the start
    pipe = mm_ldm_pipeline(setup.mm_ldm)
    fmt = pipe.clip_format
    unet = mm_diffusion_unet(setup.mm_diffusion, fmt)
    clip = {"frames": fmt.frames, "height": fmt.height, "width": fmt.width, "fps": fmt.fps,
            "audio_samples": fmt.audio_samples, "sample_rate": fmt.sample_rate,
            "description": f"{fmt.frames} frames of {fmt.height}×{fmt.width} at {fmt.fps} fps, "
                           f"{fmt.audio_samples / fmt.sample_rate:g} s of {fmt.sample_rate} Hz audio"}
    return {"date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, 1 torch thread, torch {torch.__version__}",
            "load_average_1_5_15_min": load,
            "timer": "median CPU seconds of the process (time.process_time) after one warm-up",
            "presets": {"mm_ldm": setup.mm_ldm, "mm_diffusion": setup.mm_diffusion}, "clip": clip,
            "batch": setup.batch, "repeats": setup.repeats, "sampler_steps": setup.sampler_steps,
            "training": training_rows(setup, unet, pipe, fmt), "sampling": sampling_rows(setup, unet, pipe, fmt),
            "parameters": {"timed": parameter_counts(unet, pipe), "paper": parameter_counts(*meta_models("paper",
                                                                                                      "paper"))},
            "paper_table_1": {key: {"seconds_per_step": step, "seconds_per_sample": sample}
                              for key, (step, sample) in PAPER_TABLE_1.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median kept)")
    parser.add_argument("--batch", type=int, default=2, help="clips per training step (the paper's 2)")
    parser.add_argument("--quick", action="store_true", help="tiny presets, 2 sampling steps, 1 repeat (tests)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be at least 1")
    result = run(make_setup(args.quick, args.batch, args.repeats))
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
