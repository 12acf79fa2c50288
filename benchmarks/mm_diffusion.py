"""MM-Diffusion speed and memory: our attention (SDPA, batched RS-MMA) against the official-style attention path.

Both paths run the SAME model instance with the same random weights:
`mm_diffusion_official_attention.official_attention` swaps the forward of every attention block for the released
code's computation (einsum `QKVAttention`, RS-MMA through cached index tables and a per-frame loop) and restores ours
afterwards; the RS-MMA shifts R come from the same seeded generator on both paths. Everything else in the U-Net
(convolutions, norms, sampler) is shared, so the ratios measure the attention, diluted by the rest of the network.

Measured, per size, in one process, the two paths interleaved and the best of `--repeats` kept:
1. one U-Net forward (= one sampling step) at batch `--batch`;
2. one full joint sample, DPM-Solver 20 steps (the official unconditional sampler), through `MMDiffusionPipeline`;
3. the attention alone: every attention block of one step, re-run on the inputs it saw in that step.
Before timing, the two paths' U-Net outputs are compared (same inputs, same seed): the run stops if they differ by
more than 1e-4 in float32. Timings are CPU seconds of this process on the CPU (`time.process_time`: time spent
waiting for a core is not counted) and synchronised wall time on CUDA.

Peak memory: on the CPU, each path runs in a fresh Python process (`python -c`) with glibc told to return freed
blocks to the system at once (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_), so resident memory follows the
memory in use; after one warm-up call (torch's one-time set-up is not counted) the kernel's peak-RSS counter is reset
(`/proc/self/clear_refs`) and the reported number is VmHWM after the measured call minus VmRSS before it. On CUDA,
after a warm-up, `torch.cuda.max_memory_allocated()` minus the memory allocated before the call.

Sizes (random weights):
- `studio`: the studio model (`pipelines.train.mm_diffusion` preset `studio`: 64 channels, 2.1M parameters) on its
  clip, 8 frames of 16×16 and 3,200 audio samples; step, sample and attention;
- `paper-clip`: the released layout shrunk to 32 channels (num_head_channels 16, so 4/6/8 RS-MMA heads as
  released; 8.4M parameters) on the paper's clip, 16×3×64×64 and 25,600 samples; step and attention only (a
  20-step sample is minutes per run on a CPU);
- `--official-size`: the released Landscape network (checkpoints.OFFICIAL_MODELS, 133.7M parameters) in the
  official fp16 (convolutions in float16), on CUDA; exits with an error when there is no CUDA device.

Prints a Markdown table and writes benchmarks/results/mm_diffusion.json. Final numbers: pin to one core, e.g.

    taskset -c 1 python -m benchmarks.mm_diffusion [--repeats 5] [--threads 1] [--sizes studio,paper-clip]
    python -m benchmarks.mm_diffusion --official-size   # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

from benchmarks.mm_diffusion_official_attention import official_attention
from pipelines.mm_diffusion.attention import RSMMABlock, SelfAttention
from pipelines.mm_diffusion.checkpoints import BASE_FLAGS
from pipelines.mm_diffusion.modeling_mm_diffusion import MMDiffusionUNet, parse_flag_string
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mm_diffusion.json"
GOAL = 1.5
TOLERANCE_FP32 = 1e-4
SAMPLE_STEPS = 20
TIMESTEP = 999  # the first DPM-Solver evaluation
PATHS = ("official", "ours")
# glibc: serve blocks >= 128 KiB with mmap and give freed memory back at once (fixed thresholds switch off the
# dynamic ones), so the RSS of the probe process follows the memory in use and a warm-up's freed blocks are not
# silently reused by the measured call.
MALLOC_RETURNS_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
ATTENTION_LABELS = {"self_attention": "video/audio self-attention", "rs_mma": "RS-MMA", "all": "all"}


@dataclass(frozen=True)
class Size:
    """A benchmarked network: official flags (clip size included), whether the full sample is timed, a label."""

    flags: dict
    sample: bool
    label: str


def studio_flags() -> dict:
    """The flags `pipelines.train mm_diffusion --size studio` trains with (the bundled studio model's)."""
    from pipelines.mm_diffusion.clips import FPS
    from pipelines.train.mm_diffusion import clip_format_from_args, model_flags

    args = argparse.Namespace(size="studio", frames=None, frame_size=None, sample_rate=None, fps=FPS, dropout=None)
    return model_flags(args, clip_format_from_args(args))


def sizes() -> dict[str, Size]:
    return {
        "studio": Size(studio_flags(), True, "studio model, its clip"),
        "paper-clip": Size({**parse_flag_string(BASE_FLAGS), "num_channels": "32", "num_head_channels": "16"},
                           False, "released layout at 32 channels, the paper's clip"),
        "official": Size({**parse_flag_string(BASE_FLAGS), "use_fp16": "True"}, True,
                         "released Landscape network, fp16"),
    }


# Model and inputs ---------------------------------------------------------------------------------------------------


def randomize_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights everywhere, zero-initialised output layers included (otherwise every attention output
    is multiplied by 0 and the two paths agree trivially): weights ~ N(0, 1/fan_in), GroupNorm scales
    ~ 1 + N(0, 0.1²), biases and shifts ~ N(0, 0.02²)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.dim() >= 2:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif "GroupNorm.weight" in name:
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.02 * noise)
    return model


def build_model(size: Size, seed: int, device: str) -> MMDiffusionUNet:
    """The size's U-Net with seeded random weights, in eval mode, on `device` (`use_fp16`: fp16 convolutions)."""
    model = MMDiffusionUNet.from_official_flags(**size.flags)
    return randomize_weights(model, seed).eval().to(device)


def make_inputs(model: MMDiffusionUNet, batch: int, seed: int, device: str) -> tuple[torch.Tensor, ...]:
    """Noisy video `[N, F, C, H, W]`, audio `[N, C, L]` and the timestep, at the model's training size."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, *model.config["video_size"], generator=generator).to(device)
    audio = torch.randn(batch, *model.config["audio_size"], generator=generator).to(device)
    return video, audio, torch.full((batch,), TIMESTEP, device=device)


def unet_step(model: MMDiffusionUNet, inputs: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """One U-Net forward; the RS-MMA shifts come from a generator seeded with `seed` (the same R on both paths)."""
    with torch.no_grad():
        return model(*inputs, generator=torch.Generator().manual_seed(seed))


def full_sample(model: MMDiffusionUNet, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """One joint sample, DPM-Solver 20 steps, seeded (noise and shifts)."""
    pipe = MMDiffusionPipeline(model, sampler="dpm_solver")
    out = pipe(num_inference_steps=SAMPLE_STEPS, num_samples=batch, generator=torch.Generator().manual_seed(seed),
               output_type="pt")
    return out.video, out.audio


def on_path(path: str, model: MMDiffusionUNet, function: Callable[[], object]) -> object:
    """Run `function` with our attention ("ours") or the official-style one ("official")."""
    if path not in PATHS:
        raise ValueError(f"`path` must be one of {PATHS}, got {path!r}.")
    if path == "ours":
        return function()
    with official_attention(model):
        return function()


# Equal outputs ------------------------------------------------------------------------------------------------------


def max_difference(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def step_difference(model: MMDiffusionUNet, inputs: tuple[torch.Tensor, ...], seed: int) -> dict[str, float]:
    """Max |official − ours| over both U-Net outputs for the same inputs and seed, and the outputs' max |value|."""
    outputs = {path: on_path(path, model, lambda: unet_step(model, inputs, seed)) for path in PATHS}
    scale = max(t.float().abs().max().item() for t in outputs["ours"])
    return {"max_abs_difference": max_difference(outputs["official"], outputs["ours"]), "max_abs_output": scale}


def check_equal_outputs(difference: dict[str, float], dtype: torch.dtype) -> None:
    """Stop the benchmark when the two paths disagree (float32 only; fp16 differences are reported)."""
    if dtype == torch.float32 and not difference["max_abs_difference"] <= TOLERANCE_FP32:
        raise AssertionError(f"The official-style and our attention give different U-Net outputs: max |diff| "
                             f"{difference['max_abs_difference']:.2e} > {TOLERANCE_FP32:g}.")


# Timing -------------------------------------------------------------------------------------------------------------


def timed(function: Callable[[], object], device: str) -> float:
    """CPU seconds of this process on the CPU; synchronised wall seconds on CUDA."""
    cuda = device == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    if cuda:
        torch.cuda.synchronize()
    start = clock()
    function()
    if cuda:
        torch.cuda.synchronize()
    return clock() - start


def interleaved_best(model: MMDiffusionUNet, function: Callable[[], object], repeats: int, device: str
                     ) -> dict[str, float]:
    """Best time of each path over `repeats` alternating runs, after one warm-up run of each."""
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    for repeat in range(repeats + 1):
        for path in PATHS:
            seconds = on_path(path, model, lambda: timed(function, device))
            if repeat:
                times[path].append(seconds)
    return {path: min(runs) for path, runs in times.items()}


def attention_calls(model: MMDiffusionUNet, inputs: tuple[torch.Tensor, ...], seed: int) -> list[tuple]:
    """(block, args) of every attention block call in one U-Net step, captured with forward pre-hooks."""
    calls: list[tuple] = []
    blocks = [m for m in model.modules() if isinstance(m, (SelfAttention, RSMMABlock))]
    handles = [b.register_forward_pre_hook(lambda block, args: calls.append((block, args))) for b in blocks]
    try:
        unet_step(model, inputs, seed)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def attention_only(model: MMDiffusionUNet, inputs: tuple[torch.Tensor, ...], seed: int, repeats: int, device: str
                   ) -> dict[str, dict[str, float]]:
    """Best time of all self-attention calls, of all RS-MMA calls, and of both, of one step, per path."""
    calls = attention_calls(model, inputs, seed)
    result = {}
    for kind, classes in (("self_attention", SelfAttention), ("rs_mma", RSMMABlock),
                          ("all", (SelfAttention, RSMMABlock))):
        chosen = [(block, args) for block, args in calls if isinstance(block, classes)]

        def run(chosen=chosen):
            with torch.no_grad():
                for block, args in chosen:
                    block(*args)

        if chosen:
            result[kind] = with_speedup({"calls": len(chosen), **interleaved_best(model, run, repeats, device)})
    return result


def with_speedup(times: dict) -> dict:
    return {**times, "speedup": times["official"] / times["ours"]}


# Memory -------------------------------------------------------------------------------------------------------------


def read_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_extra_rss(function: Callable[[], object]) -> int:
    """Peak resident memory (bytes) `function` adds to this process: VmHWM after it, minus VmRSS before it, with the
    peak counter reset first (Linux `/proc/self/clear_refs`)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = read_kib("VmRSS")
    function()
    return 1024 * (read_kib("VmHWM") - before)


def peak_extra_cuda(function: Callable[[], object]) -> int:
    """Peak CUDA memory (bytes) `function` allocates beyond what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def workload(what: str, model: MMDiffusionUNet, inputs: tuple[torch.Tensor, ...], batch: int, seed: int
             ) -> Callable[[], object]:
    if what == "step":
        return lambda: unet_step(model, inputs, seed)
    if what == "sample":
        return lambda: full_sample(model, batch, seed)
    raise ValueError(f"`what` must be 'step' or 'sample', got {what!r}.")


def memory_probe(size_name: str, path: str, what: str, batch: int, seed: int, threads: int) -> int:
    """In a fresh process: build the size's model, run one warm-up call on `path` (torch's one-time set-up is not
    counted), then return the peak extra RSS of one step or sample on `path`."""
    torch.set_num_threads(threads)
    model = build_model(sizes()[size_name], seed, "cpu")
    inputs = make_inputs(model, batch, seed, "cpu")
    function = workload(what, model, inputs, batch, seed)
    on_path(path, model, function)
    return peak_extra_rss(lambda: on_path(path, model, function))


def cpu_peak_memory(size_name: str, path: str, what: str, batch: int, seed: int, threads: int) -> int:
    """`memory_probe` run in a fresh Python process (so neither path inherits the other's allocations)."""
    code = (f"from benchmarks.mm_diffusion import memory_probe; "
            f"print(memory_probe({size_name!r}, {path!r}, {what!r}, {batch}, {seed}, {threads}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           **MALLOC_RETURNS_MEMORY}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"The memory probe ({size_name}, {path}, {what}) failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1])


def peak_memory(size_name: str, model: MMDiffusionUNet, inputs, what: str, args, device: str) -> dict[str, int]:
    if device == "cpu":
        return {path: cpu_peak_memory(size_name, path, what, args.batch, args.seed, args.threads) for path in PATHS}
    function = workload(what, model, inputs, args.batch, args.seed)
    result = {}
    for path in PATHS:
        on_path(path, model, function)  # warm-up: kernels, cached index tables
        result[path] = on_path(path, model, lambda: peak_extra_cuda(function))
    return result


# Benchmark ----------------------------------------------------------------------------------------------------------


def measure(size_name: str, args: argparse.Namespace, device: str) -> dict:
    size = sizes()[size_name]
    model = build_model(size, args.seed, device)
    inputs = make_inputs(model, args.batch, args.seed, device)
    difference = step_difference(model, inputs, args.seed)
    check_equal_outputs(difference, model.compute_dtype)
    result = {
        "label": size.label, "flags": size.flags, "dtype": str(model.compute_dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "video": [args.batch, *model.config["video_size"]], "audio": [args.batch, *model.config["audio_size"]],
        "step_output_difference": difference,
        "step": with_speedup(interleaved_best(model, lambda: unet_step(model, inputs, args.seed), args.repeats,
                                              device)),
        "attention_only": attention_only(model, inputs, args.seed, args.repeats, device),
        "step_peak_memory_bytes": peak_memory(size_name, model, inputs, "step", args, device),
    }
    if size.sample:
        samples = {path: on_path(path, model, lambda: full_sample(model, args.batch, args.seed)) for path in PATHS}
        result["sample_output_difference"] = max_difference(samples["official"], samples["ours"])
        result["sample"] = with_speedup(interleaved_best(model, lambda: full_sample(model, args.batch, args.seed),
                                                         args.sample_repeats, device))
        result["sample_peak_memory_bytes"] = peak_memory(size_name, model, inputs, "sample", args, device)
    result["ours_attention_share_of_step"] = result["attention_only"]["all"]["ours"] / result["step"]["ours"]
    return result


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def print_table(results: dict[str, dict], device: str) -> None:
    unit = "s" if device == "cuda" else "CPU s"
    print(f"| size | clip (video; audio) | params | measure | official-style ({unit}) | ours ({unit}) | speed-up | "
          f"peak extra MiB, official / ours | max \\|diff\\| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        clip = f"{'×'.join(map(str, r['video'][1:]))}; {r['audio'][-1]}"
        rows = [("one step (U-Net forward)", r["step"], r.get("step_peak_memory_bytes"),
                 f"{r['step_output_difference']['max_abs_difference']:.1e}")]
        if "sample" in r:
            rows.append((f"DPM-Solver {SAMPLE_STEPS}-step sample", r["sample"], r.get("sample_peak_memory_bytes"),
                         f"{r['sample_output_difference']:.1e}"))
        for kind, attention in r["attention_only"].items():
            rows.append((f"attention only: {ATTENTION_LABELS[kind]} ({attention['calls']} calls)", attention, None,
                         ""))
        for measure_name, t, memory, diff in rows:
            memory_text = f"{mib(memory['official'])} / {mib(memory['ours'])}" if memory else ""
            print(f"| {name} | {clip} | {r['parameters'] / 1e6:.2f}M | {measure_name} | {t['official']:.4f} | "
                  f"{t['ours']:.4f} | **{t['speedup']:.2f}×** | {memory_text} | {diff} |")
    for name, r in results.items():
        verdicts = [f"{key} {r[key]['speedup']:.2f}× ({'met' if r[key]['speedup'] >= GOAL else 'NOT met'})"
                    for key in ("step", "sample") if key in r]
        print(f"{name}: goal >= {GOAL}x: {', '.join(verdicts)}; attention alone "
              f"{r['attention_only']['all']['speedup']:.2f}×, "
              f"{100 * r['ours_attention_share_of_step']:.0f} % of our step")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="studio,paper-clip", help="CPU sizes, comma-separated: studio, paper-clip")
    parser.add_argument("--official-size", action="store_true", help="the released network, fp16, on CUDA")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs of a step (best kept)")
    parser.add_argument("--sample-repeats", type=int, default=3, help="interleaved timed runs of a full sample")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: steadier timings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    names = ["official"] if args.official_size else [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(names) - {"studio", "paper-clip", "official"})
    if unknown or not names:
        parser.error(f"--sizes takes studio and/or paper-clip, got {args.sizes!r}.")
    if min(args.repeats, args.sample_repeats, args.batch, args.threads) < 1:
        parser.error("--repeats, --sample-repeats, --batch and --threads must be at least 1.")
    args.size_names = names
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.official_size and not torch.cuda.is_available():
        sys.exit("--official-size needs a CUDA GPU (the released network in fp16); none is available here. "
                 "Run the CPU sizes without --official-size.")
    device = "cuda" if args.official_size else "cpu"
    torch.set_num_threads(args.threads)
    results = {name: measure(name, args, device) for name in args.size_names}
    print_table(results, device)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine = (torch.cuda.get_device_name() if device == "cuda" else
               f"{platform.machine()}, {os.cpu_count()} cores, pinned to {affinity}, load average "
               f"{os.getloadavg()[0]:.1f}")
    report = {
        "date": date.today().isoformat(), "device": device, "machine": machine,
        "software": f"Python {platform.python_version()}, torch {torch.__version__}",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "size_names")},
        "timing": "CPU seconds of the process (time.process_time)" if device == "cpu" else
                  "wall seconds, CUDA synchronised",
        "memory": "peak extra RSS of one call after a warm-up call, in a fresh process, glibc returning freed memory "
                  "at once (VmHWM after clear_refs minus VmRSS before)" if device == "cpu" else
                  "torch.cuda.max_memory_allocated minus allocated before the call, after a warm-up call",
        "goal_speedup": GOAL, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
