"""Pieces every trainer shares: the accelerate loop, step counter, EMA, checkpoints, loss log and loss-curve picture,
and sample previews.

Previews (`--preview-every N`, 0 = off): every N steps of a trainer's generating stage, and at its end, the trainer
samples its current model as it would export it (the EMA weights, eval mode) with a few sampling steps and a fixed
seed, writes `OUT/previews/step-NNNNNN.png` (a picture, a spectrogram picture for sound, a strip of frames for video)
and `.wav` for sound, and then one line in `loss_log.jsonl`: {"stage", "step", "preview": [the files, relative to
OUT], "seconds": its cost}. The line comes after the files, so a reader that sees it finds them whole. Sampling runs
in a forked RNG, so previews leave the training itself unchanged.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm


class TrainState:
    """The step counter, checkpointed with `accelerator.register_for_checkpointing`."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


class EMA:
    """Exponential moving average of a model's parameters: shadow ← d·shadow + (1 − d)·param.

    The decay warms up as in diffusers' `EMAModel`: d_n = min(decay, (1 + n) / (10 + n)) at update n, so early
    random weights fade fast. `decay=0` keeps the shadow equal to the live weights. Only the trainable parameters
    (`requires_grad`, e.g. a LoRA's) are tracked: frozen ones never change.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay, self.updates = decay, 0
        self.shadow = {name: p.detach().clone().float() for name, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(d).add_(p.detach().float(), alpha=1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name].to(p.dtype))

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """`model` with the EMA weights while the block runs; its live weights come back after."""
        with torch.no_grad():
            live = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in live:
                        p.copy_(live[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.shadow = {name: tensor.clone().float() for name, tensor in state["shadow"].items()}


# Checkpoints -------------------------------------------------------------------------------------------------------


def checkpoint_dirs(root: Path) -> list[Path]:
    """`root/step-N` folders, oldest first."""
    found = [p for p in root.glob("step-*") if p.is_dir() and re.fullmatch(r"step-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator, root: Path, step: int, keep: int = 2) -> Path:
    """`accelerator.save_state` into `root/step-N`; keeps the newest `keep` checkpoints."""
    folder = root / f"step-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def resume_latest(accelerator, root: Path) -> Path | None:
    """Load the newest checkpoint under `root` (if any) with `accelerator.load_state`."""
    found = checkpoint_dirs(root)
    if not found:
        return None
    accelerator.load_state(str(found[-1]))
    return found[-1]


# Loss log and picture ----------------------------------------------------------------------------------------------


class LossLog:
    """Append-only JSONL of {"stage", "step", <losses>} and of preview records {"stage", "step", "preview": [files],
    "seconds"}; on resume, entries after the resumed step are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate(self, stage: str, step: int) -> None:
        kept = [r for r in self.records() if not (r["stage"] == stage and r["step"] > step)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, stage: str, step: int, losses: dict[str, float]) -> None:
        self.append({"stage": stage, "step": step, **losses})

    def write_preview(self, stage: str, step: int, files: list[str], seconds: float) -> None:
        self.append({"stage": stage, "step": step, "preview": files, "seconds": round(seconds, 3)})

    def append(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        """Every record, losses and previews, in order."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def read(self) -> list[dict]:
        """The loss records."""
        return [r for r in self.records() if "preview" not in r]

    def previews(self) -> list[dict]:
        """The preview records."""
        return [r for r in self.records() if "preview" in r]


def series(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{"stage/loss": [(step, value), ...]} from log records."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key not in ("stage", "step"):
                out.setdefault(f"{record['stage']}/{key}", []).append((record["step"], float(value)))
    return out


def smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value - (values[index - window] if index >= window else 0.0)
        out.append(total / min(index + 1, window))
    return out


def plot_losses(records: list[dict], path: Path) -> Path:
    """One panel per loss against the training step, log y-axis: raw values in light grey, a moving average in blue,
    with labelled axes and the last value in the title (matplotlib, Agg: no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curves = sorted(series(records).items())
    figure, axes = plt.subplots(max(1, len(curves)), 1, figsize=(6.0, 2.4 * max(1, len(curves))), squeeze=False)
    for axis, (name, points) in zip(axes[:, 0], curves):
        steps = [step for step, _ in points]
        values = [max(value, 1e-8) for _, value in points]
        axis.plot(steps, values, color="0.78", linewidth=0.8, label="logged")
        axis.plot(steps, smooth(values, max(1, len(values) // 30)), color="tab:blue", linewidth=1.6,
                  label="moving average")
        axis.set_yscale("log")
        axis.set_title(f"{name} (last {points[-1][1]:.4g} at step {steps[-1]})", fontsize=9)
        axis.set_xlabel("training step")
        axis.set_ylabel("loss")
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


# The loop ----------------------------------------------------------------------------------------------------------


def batch_indices(seed: int, step: int, size: int, count: int) -> torch.Tensor:
    """The batch of step `step`: a function of (seed, step) only, so a resumed run sees the same data."""
    return torch.randint(0, count, (size,), generator=torch.Generator().manual_seed(seed * 1_000_003 + step))


def data_seed(accelerator: Accelerator, seed: int) -> int:
    """The seed of this process's batches: `seed` on one process; under `accelerate launch` every process draws
    different batches (process k adds 7919·k), so N processes see N times the data per step."""
    return seed + 7919 * accelerator.process_index


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    return Accelerator(mixed_precision=args.mixed_precision, project_dir=args.out)


def stage_done(out: Path, stage: str) -> bool:
    return (out / "checkpoints" / stage / "DONE").is_file()


def run_loop(accelerator: Accelerator, args: argparse.Namespace, stage: str, total: int, state: TrainState,
             step_fn, log: LossLog, preview: Callable[[], Preview] | None = None) -> None:
    """The shared loop: resume, step, log, a preview every `--preview-every` steps and at the end (when the stage
    has a `preview` sampler), checkpoint every K steps and at the end, mark the stage done."""
    root = Path(args.out) / "checkpoints" / stage
    if args.resume and (resumed := resume_latest(accelerator, root)) is not None:
        accelerator.print(f"[{stage}] resumed from {resumed} at step {state.step}")
        log.truncate(stage, state.step)
    every = args.preview_every if preview is not None else 0
    bar = tqdm(total=total, initial=state.step, desc=stage, disable=not accelerator.is_main_process)
    while state.step < total:
        losses = step_fn(state.step)
        state.step += 1
        if accelerator.is_main_process:
            log.write(stage, state.step, losses)
            if preview_due(state.step, total, every):
                write_preview(Path(args.out), log, stage, state.step, preview)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
        if state.step % args.checkpoint_every == 0 or state.step == total:
            save_checkpoint(accelerator, root, state.step)
    bar.close()
    root.mkdir(parents=True, exist_ok=True)  # a 0-step run (e.g. a fine-tune's starting point) saved nothing
    (root / "DONE").write_text(str(state.step))


def update(accelerator: Accelerator, optimizer, loss: torch.Tensor, models: list[torch.nn.Module]) -> None:
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        accelerator.clip_grad_norm_([p for m in models for p in m.parameters()], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def final_losses(records: list[dict], window: int = 50) -> dict[str, float]:
    """Mean of the last `window` logged values of every loss."""
    return {name: float(np.mean([v for _, v in points[-window:]])) for name, points in series(records).items()}


# Sample previews (module docstring) ---------------------------------------------------------------------------------

PREVIEW_FOLDER = "previews"


@dataclass
class Preview:
    """One preview sample: a picture (grayscale or RGB, uint8 or float in [0, 1]) and, for sound, its waveform."""

    picture: np.ndarray
    audio: np.ndarray | None = None
    sample_rate: int | None = None


def add_preview_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preview-every", type=int, default=0, metavar="N",
                        help="sample the current model (EMA weights, a few steps, a fixed seed) every N steps and at "
                             "the end of the generating stage into OUT/previews/ (0: off)")


def check_preview_every(args: argparse.Namespace) -> None:
    if args.preview_every < 0:
        raise ValueError(f"--preview-every must be 0 (off) or a number of steps, got {args.preview_every}")


def preview_due(step: int, total: int, every: int) -> bool:
    """Every `every` steps and at the last step (never with `every` 0)."""
    return every > 0 and (step % every == 0 or step == total)


def preview_paths(out: Path, step: int) -> tuple[Path, Path]:
    """OUT/previews/step-NNNNNN.png and .wav."""
    stem = Path(out) / PREVIEW_FOLDER / f"step-{step:06d}"
    return stem.with_suffix(".png"), stem.with_suffix(".wav")


def write_preview(out: Path, log: LossLog, stage: str, step: int, sample: Callable[[], Preview]) -> None:
    """Sample (in a forked RNG), write the picture (and sound), then log them (paths relative to OUT)."""
    from pipelines.media import save_png, save_wav

    started = time.perf_counter()
    with torch.random.fork_rng():
        preview = sample()
    picture_path, sound_path = preview_paths(out, step)
    picture_path.parent.mkdir(parents=True, exist_ok=True)
    written = [save_png(preview.picture, picture_path)]
    if preview.audio is not None:
        written.append(save_wav(preview.audio, preview.sample_rate, sound_path))
    log.write_preview(stage, step, [path.relative_to(out).as_posix() for path in written], time.perf_counter() - started)


@contextmanager
def as_exported(pairs: Sequence[tuple[torch.nn.Module, EMA | None]]) -> Iterator[None]:
    """The modules as the trainer exports them while the block runs: EMA weights (where an EMA is given), eval mode,
    no gradients; afterwards their live weights, modes and `requires_grad` flags come back (a pipeline built around
    them may freeze them)."""
    modules = [module for module, _ in pairs]
    modes = [{m: m.training for m in module.modules()} for module in modules]
    grads = [{p: p.requires_grad for p in module.parameters()} for module in modules]
    with ExitStack() as stack:
        for module, ema in pairs:
            if ema is not None:
                stack.enter_context(ema.applied(module))
            module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for saved_modes, saved_grads in zip(modes, grads):
                for m, training in saved_modes.items():
                    m.training = training
                for p, flag in saved_grads.items():
                    p.requires_grad_(flag)
