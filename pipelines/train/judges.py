"""Trainer for the toy-world judges (`pipelines.metrics.judges`): a picture-class CNN and a sound-class CNN.

Both train together (one optimizer over two disjoint parameter sets) on balanced toy pictures and toy Auffusion
spectrogram images (256 rows × `--width` columns), with light augmentation so they hold up on generated samples:
random column crops (48 columns to the full width), shifts of up to 4 rows and 8 columns, contrast and brightness,
Gaussian blur, additive noise. Held-out accuracy is measured on fresh toy samples from other seeds (clean) and
written to OUT/training_summary.json; the judges are saved as OUT/image.safetensors + image.json and
OUT/sound.safetensors + sound.json (what `load_judge` reads).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from pipelines.metrics.judges import JudgeCNN, JudgeConfig, default_classes, save_judge, to_input
from pipelines.train.common import (
    EMA, LossLog, TrainState, batch_indices, final_losses, make_accelerator, plot_losses, run_loop, update,
)

HELD_OUT_SEED = 10_000  # held-out toy samples: seeds HELD_OUT_SEED (pictures) and HELD_OUT_SEED + 1 (sounds)


def toy_data(kind: str, count: int, seed: int, width: int,
             classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` balanced toy samples of `kind` as ([N, 1, 256, W] tensor, class-index labels)."""
    from pipelines.toyworld import sample

    batch = sample(kind, count, seed, classes=classes, height=256, width=width, balanced=True)
    images = batch.images if kind == "image" else batch.spectrograms
    return to_input(images), torch.tensor([classes.index(c) for c in batch.classes])


def augment(x: torch.Tensor, generator: torch.Generator, min_width: int = 48) -> torch.Tensor:
    """Light, seeded augmentation of a [N, 1, H, W] batch in [0, 1] (see the module docstring)."""
    n, _, h, w = x.shape
    u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    keep = int(min_width + u(1).item() * (w - min_width + 1))
    start = int(u(1).item() * (w - keep + 1))
    x = x[..., start : start + keep]
    rows, cols = (u(2) * torch.tensor([9.0, 17.0])).long() - torch.tensor([4, 8])
    x = torch.roll(x, shifts=(int(rows), int(cols)), dims=(2, 3))
    x = (x - 0.5) * (0.6 + 0.8 * u(n, 1, 1, 1)) + 0.5 + 0.2 * (u(n, 1, 1, 1) - 0.5)
    sigma = 1.5 * u(1).item()
    if sigma > 0.3:
        radius = 3
        taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / sigma) ** 2)
        taps = (taps / taps.sum()).to(x.dtype)
        x = F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), (taps[:, None] * taps[None, :])[None, None])
    x = x + 0.08 * u(n, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0)


@torch.no_grad()
def accuracy(judge: JudgeCNN, x: torch.Tensor, labels: torch.Tensor) -> float:
    judge.eval()
    predicted = torch.cat([judge(x[i : i + 128]).argmax(dim=1) for i in range(0, len(x), 128)])
    judge.train()
    return float((predicted == labels).float().mean())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This trainer's options (the common ones come from `pipelines.train.__main__`)."""
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64, help="batch per judge")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    parser.add_argument("--width", type=int, default=64, help="spectrogram/picture columns; rows are always 256")
    parser.add_argument("--pool", type=int, default=1024, help="toy-world samples generated per kind")
    parser.add_argument("--classes", default="core", choices=("core", "all"), help="toy-world classes")
    parser.add_argument("--held-out", type=int, default=256, help="fresh toy samples per kind to test on")


def train(args: argparse.Namespace) -> Path:
    """Train both judges, save them in OUT, measure held-out accuracy, write the loss log, picture and summary."""
    if args.data != "toyworld":
        raise ValueError("the judges train on the toy world only (--data toyworld)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)
    started = time.time()
    classes = {kind: default_classes(kind, args.classes) for kind in ("image", "sound")}
    data = {kind: toy_data(kind, args.pool, args.seed + k, args.width, classes[kind])
            for k, kind in enumerate(("image", "sound"))}
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    torch.manual_seed(args.seed)
    judges = torch.nn.ModuleDict({kind: JudgeCNN(JudgeConfig(kind, classes[kind])) for kind in classes})
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(judges.parameters(), lr=args.lr, weight_decay=1e-4)
    judges, optimizer = accelerator.prepare(judges, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(judges), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        losses = {}
        for k, kind in enumerate(("image", "sound")):
            x, y = data[kind]
            chosen = batch_indices(args.seed + k, index, args.batch_size, len(y))
            logits = judges[kind](augment(x[chosen], generator).to(accelerator.device))
            losses[kind] = F.cross_entropy(logits, y[chosen].to(accelerator.device))
        update(accelerator, optimizer, losses["image"] + losses["sound"], [judges])
        ema.update(accelerator.unwrap_model(judges))
        return {kind: loss.item() for kind, loss in losses.items()}

    run_loop(accelerator, args, "judges", args.steps, state, step, log)
    model = accelerator.unwrap_model(judges).cpu()
    ema.copy_to(model)
    recalibrate(model, data, args.seed)
    dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32
    held_out = held_out_accuracy(model, args, classes, dtype, out)
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "final": final_losses(log.read()),
               "held_out_accuracy": held_out, "parameters": {k: sum(p.numel() for p in m.parameters())
                                                             for k, m in model.items()}, "args": vars(args)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.print(json.dumps({"held_out_accuracy": held_out}))
    return out


@torch.no_grad()
def recalibrate(judges: torch.nn.ModuleDict, data: dict, seed: int, batches: int = 20, size: int = 64) -> None:
    """Recompute the BatchNorm running statistics for the EMA weights on augmented training batches."""
    generator = torch.Generator().manual_seed(seed)
    for kind, judge in judges.items():
        for module in judge.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average
        judge.train()
        x = data[kind][0]
        for index in range(batches):
            judge(augment(x[batch_indices(seed, index, size, len(x))], generator))
        judge.eval()


def held_out_accuracy(judges: torch.nn.ModuleDict, args, classes: dict, dtype: torch.dtype, out: Path) -> dict:
    """Save each judge in `dtype`, reload it as saved, and measure it on fresh toy samples (other seeds)."""
    from pipelines.metrics.judges import load_judge

    result = {}
    for k, kind in enumerate(("image", "sound")):
        save_judge(judges[kind], out, dtype)
        x, y = toy_data(kind, args.held_out, HELD_OUT_SEED + k, args.width, classes[kind])
        result[kind] = accuracy(load_judge(kind, out), x, y)
    return result
