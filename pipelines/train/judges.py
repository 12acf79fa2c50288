"""Trainer for the toy-world judges (`pipelines.metrics.judges`): picture class, sound class, impact material.

`--judges` picks which (default all three). The picture and sound judges train together (one optimizer over two
disjoint parameter sets) on balanced toy pictures and toy Auffusion spectrogram images (256 rows × `--width`
columns), with light augmentation so they hold up on generated samples: random column crops (48 columns to the
full width), shifts of up to 4 rows and 8 columns, contrast and brightness, Gaussian blur, additive noise.
Held-out accuracy is measured on fresh toy samples from other seeds (clean) and written to
OUT/training_summary.json; the judges are saved as OUT/image.safetensors + image.json and OUT/sound.safetensors +
sound.json (what `load_judge` reads).

The material judge trains on its own (stage "material", own optimizer) on balanced toy impact clips
(`--pool` clips per material), read through `impact_spectrogram_images`, with augmentation that makes it hold up
on generated sounds (`material_pool`, `augment_impacts`): each clip also comes as a variant with its true modes'
frequencies scaled by 0.94–1.06 and decays by 0.8–1.25 (resynthesised, same residual) and as a Griffin-Lim
resynthesis of its own magnitude (8–32 iterations, momentum 0.99, magnitudes jittered by up to 0.5 neper and,
half the time, blurred along frequency, as a diffusion model's decoded spectrogram is); every batch adds white
noise (half the clips, −70 to −30 dB re peak) and small onset delays (≤ 5 ms). Gain needs no augmentation: the
input is relative to the clip's peak. Held-out accuracy (fresh impacts, clean and Griffin-Lim-resynthesised) and
the confusion matrix go to OUT/material_training_summary.json; the log and curve to OUT/material_loss_log.jsonl
and OUT/material_loss_curve.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from pipelines.audio import SPECS, griffin_lim_torch, stft_magnitude
from pipelines.metrics.judges import (
    KINDS, JudgeCNN, JudgeConfig, default_classes, impact_spectrogram_tensor, save_judge, to_input,
)
from pipelines.train.common import (
    EMA, LossLog, TrainState, batch_indices, data_seed, final_losses, make_accelerator, plot_losses, run_loop, update,
)

HELD_OUT_SEED = 10_000  # held-out toy samples: seeds HELD_OUT_SEED (pictures), + 1 (sounds), + 2 (impacts)
PICTURE_KINDS = ("image", "sound")  # trained together; their index sets their data seed (seed + index)
MATERIAL_BANDS = 16  # row bands of the material judge (16 × 1.4 kHz): where the modes sit matters
IMPACT = SPECS["impact"]  # 44.1 kHz, 0.25 s, STFT 2048/256


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
    parser.add_argument("--judges", default=",".join(KINDS),
                        help=f"comma-separated judges to train, of {', '.join(KINDS)} (default: all)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64, help="batch per judge")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    parser.add_argument("--width", type=int, default=64, help="spectrogram/picture columns; rows are always 256")
    parser.add_argument("--pool", type=int, default=1024,
                        help="toy-world samples generated per kind (material: impact clips per material)")
    parser.add_argument("--classes", default="core", choices=("core", "all"), help="toy-world classes")
    parser.add_argument("--held-out", type=int, default=256,
                        help="fresh toy samples per kind to test on (material: impact clips per material)")


def chosen_judges(text: str) -> tuple[str, ...]:
    """`--judges` as a tuple in KINDS order; ValueError on unknown or no names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(KINDS))
    if unknown or not names:
        raise ValueError(f"--judges takes a comma-separated list of {', '.join(KINDS)}; got {text!r}")
    return tuple(kind for kind in KINDS if kind in names)


def train(args: argparse.Namespace) -> Path:
    """Train the chosen judges (`--judges`) and save them, with held-out accuracies, loss logs and pictures, in OUT."""
    if args.data != "toyworld":
        raise ValueError("the judges train on the toy world only (--data toyworld)")
    kinds = chosen_judges(args.judges)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if any(kind in PICTURE_KINDS for kind in kinds):
        train_class_judges(args, tuple(kind for kind in PICTURE_KINDS if kind in kinds), out)
    if "material" in kinds:
        train_material_judge(args, out)
    return out


class JudgeSet(torch.nn.ModuleDict):
    """The class judges as one module whose forward runs each on its own batch: one call, so that under
    `accelerate launch` the wrapped (DDP) module sees it and averages every judge's gradients."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {kind: self[kind](x) for kind, x in inputs.items()}


def train_class_judges(args: argparse.Namespace, kinds: tuple[str, ...], out: Path) -> Path:
    """Train the picture and/or sound judge together; save them, measure held-out accuracy, write log and summary."""
    set_seed(args.seed)
    started = time.time()
    classes = {kind: default_classes(kind, args.classes) for kind in kinds}
    data = {kind: toy_data(kind, args.pool, args.seed + PICTURE_KINDS.index(kind), args.width, classes[kind])
            for kind in kinds}
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    torch.manual_seed(args.seed)
    judges = JudgeSet({kind: JudgeCNN(JudgeConfig(kind, classes[kind])) for kind in classes})
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(judges.parameters(), lr=args.lr, weight_decay=1e-4)
    judges, optimizer = accelerator.prepare(judges, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(judges), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        chosen = {kind: batch_indices(seed + PICTURE_KINDS.index(kind), index, args.batch_size, len(data[kind][1]))
                  for kind in kinds}
        inputs = {kind: augment(data[kind][0][chosen[kind]], generator).to(accelerator.device) for kind in kinds}
        logits = judges(inputs)
        losses = {kind: F.cross_entropy(logits[kind], data[kind][1][chosen[kind]].to(accelerator.device))
                  for kind in kinds}
        update(accelerator, optimizer, sum(losses.values()), [judges])
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
    for kind in classes:
        save_judge(judges[kind], out, dtype)
        x, y = toy_data(kind, args.held_out, HELD_OUT_SEED + PICTURE_KINDS.index(kind), args.width, classes[kind])
        result[kind] = accuracy(load_judge(kind, out), x, y)
    return result


# The material judge -------------------------------------------------------------------------------------------------


def decoded_like(audio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Clips [B, S] re-made the way a spectrogram model's output is heard: their |STFT 2048/256| with log-normal
    jitter (σ up to 0.5 neper per bin), half of the batches blurred along frequency (down to 128-512 rows and back),
    then Griffin-Lim with 8-32 iterations (one count per call)."""
    u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    magnitude = stft_magnitude(audio, IMPACT)
    magnitude = magnitude * torch.exp(0.5 * u(len(audio), 1, 1) * torch.randn(magnitude.shape, generator=generator))
    if u(1).item() < 0.5:
        rows = (128, 256, 512)[int(u(1).item() * 3)]
        small = F.interpolate(magnitude[:, None], size=(rows, magnitude.shape[-1]), mode="area")
        magnitude = F.interpolate(small, size=magnitude.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return griffin_lim_torch(magnitude, IMPACT, 8 + int(u(1).item() * 25), generator, length=audio.shape[-1])


def perturbed_physics(batch, rng: np.random.Generator) -> np.ndarray:
    """Each clip re-synthesised from its true modes with frequencies × U(0.94, 1.06) and T60s × 0.8-1.25
    (log-uniform), plus its own residual: [N, S] float32."""
    from pipelines.impact_sound import synthesize

    out = []
    for modes, residual in zip(batch.modes, batch.residual_audio):
        pitch, damping = rng.uniform(0.94, 1.06), float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        changed = modes.replace(frequencies=modes.frequencies * pitch, decays=modes.decays * damping)
        out.append(synthesize(changed, duration=len(residual) / IMPACT.sample_rate, ceiling=float("inf")) + residual)
    return np.stack(out).astype(np.float32)


def material_pool(per_material: int, seed: int, classes: tuple[str, ...],
                  chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced toy impacts as three variants [3, N, S] (clean, perturbed physics, decoded-like resynthesis of one
    of the two) and their material labels [N]."""
    from pipelines.metrics.impact_sound import balanced_impacts

    batch = balanced_impacts(per_material, seed, materials=classes, keep_frames=False)
    clean = torch.as_tensor(batch.audio)
    perturbed = torch.as_tensor(perturbed_physics(batch, np.random.default_rng(seed)))
    generator = torch.Generator().manual_seed(seed)
    sources = torch.where(torch.rand(len(clean), 1, generator=generator) < 0.5, clean, perturbed)
    decoded = torch.cat([decoded_like(sources[i : i + chunk], generator) for i in range(0, len(clean), chunk)])
    labels = torch.tensor([classes.index(m) for m in batch.materials])
    return torch.stack([clean, perturbed, decoded]), labels


def augment_impacts(variants: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A training batch of judge inputs [B, 1, 256, 44] from pool clips `chosen`: a random variant of each (clean
    30 %, perturbed physics 30 %, decoded-like 40 %), white noise on half of them (−70 to −30 dB re peak), an onset
    delay of up to 5 ms on 30 %."""
    u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    which = torch.bucketize(u(len(chosen)), torch.tensor([0.3, 0.6]))
    audio = variants[which, chosen].clone()
    peak = audio.abs().amax(dim=1, keepdim=True)
    level = peak * 10.0 ** (-(30.0 + 40.0 * u(len(audio), 1)) / 20.0) * (u(len(audio), 1) < 0.5)
    audio = audio + level * torch.randn(audio.shape, generator=generator)
    for row in torch.nonzero(u(len(audio)) < 0.3).flatten().tolist():
        delay = int(u(1).item() * 0.005 * IMPACT.sample_rate)
        audio[row] = torch.cat([audio.new_zeros(delay), audio[row, : audio.shape[1] - delay]])
    return impact_spectrogram_tensor(audio)[:, None]


def train_material_judge(args: argparse.Namespace, out: Path) -> Path:
    """Train the material judge alone (stage "material"); save it in OUT with its held-out accuracy and confusion."""
    set_seed(args.seed)
    started = time.time()
    classes = default_classes("material")
    variants, labels = material_pool(args.pool, args.seed, classes)
    log = LossLog(out / "material_loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    torch.manual_seed(args.seed)
    judge = JudgeCNN(JudgeConfig("material", classes, bands=MATERIAL_BANDS, extra={
        "input": "impact_spectrogram_images: |STFT 2048/256| of the peak-normalised 0.25 s clip at 44.1 kHz, dB re "
                 "max floored at -80, 4-bin max-pooled to 256 rows x 44 frames, in [0, 1]"}))
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=args.lr, weight_decay=1e-4)
    judge, optimizer = accelerator.prepare(judge, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(judge), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        chosen = batch_indices(seed + len(PICTURE_KINDS), index, args.batch_size, len(labels))
        logits = judge(augment_impacts(variants, chosen, generator).to(accelerator.device))
        loss = F.cross_entropy(logits, labels[chosen].to(accelerator.device))
        update(accelerator, optimizer, loss, [judge])
        ema.update(accelerator.unwrap_model(judge))
        return {"material": loss.item()}

    run_loop(accelerator, args, "material", args.steps, state, step, log)
    model = accelerator.unwrap_model(judge).cpu()
    ema.copy_to(model)
    recalibrate_material(model, variants, args.seed)
    save_judge(model, out, torch.float16 if args.save_dtype == "fp16" else torch.float32)
    held_out = material_held_out(out, args.held_out, classes)
    plot_losses(log.read(), out / "material_loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "final": final_losses(log.read()), **held_out,
               "parameters": sum(p.numel() for p in model.parameters()), "args": vars(args)}
    (out / "material_training_summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.print(json.dumps({k: held_out[k] for k in ("held_out_accuracy", "held_out_accuracy_griffin_lim")}))
    return out


@torch.no_grad()
def recalibrate_material(judge: JudgeCNN, variants: torch.Tensor, seed: int, batches: int = 20,
                         size: int = 64) -> None:
    """Recompute the BatchNorm running statistics for the EMA weights on augmented training batches (of at most as
    many clips as the pool holds)."""
    generator = torch.Generator().manual_seed(seed)
    for module in judge.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    judge.train()
    size = min(size, variants.shape[1])
    for index in range(batches):
        judge(augment_impacts(variants, batch_indices(seed, index, size, variants.shape[1]), generator))
    judge.eval()


def material_held_out(folder: Path, per_material: int, classes: tuple[str, ...]) -> dict:
    """The saved material judge (reloaded as saved) on fresh balanced toy impacts: accuracy on the clean clips and
    on 32-iteration Griffin-Lim resyntheses of their own magnitudes, and the clean confusion matrix (rows: truth)."""
    from pipelines.metrics.impact_sound import balanced_impacts
    from pipelines.metrics.judges import load_judge

    judge = load_judge("material", folder)
    batch = balanced_impacts(per_material, HELD_OUT_SEED + 2, materials=classes, keep_frames=False)
    labels = np.array([classes.index(m) for m in batch.materials])
    audio = torch.as_tensor(batch.audio)
    magnitude = stft_magnitude(audio, IMPACT)
    resynthesised = griffin_lim_torch(magnitude, IMPACT, 32, torch.Generator().manual_seed(0), audio.shape[-1])
    clean = judge.probabilities(impact_spectrogram_tensor(audio).numpy()).argmax(axis=1)
    decoded = judge.probabilities(impact_spectrogram_tensor(resynthesised).numpy()).argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, clean), 1)
    return {"held_out_accuracy": float(np.mean(clean == labels)),
            "held_out_accuracy_griffin_lim": float(np.mean(decoded == labels)),
            "held_out_clips": len(labels), "classes": list(classes), "confusion": confusion.tolist()}
