"""Trainer for Impact Sound's physics-driven diffusion model (Su et al., CVPR 2023): residual predictor, visual
encoder, and the U-Net trained jointly with the physics encoder; exports an `ImpactDiffusionPipeline` folder.

Stages (each resumable, each with its own checkpoints under OUT/checkpoints/<stage>/step-N):

1. `residual`: the residual predictor (`ResidualPredictor`, 4-layer 4-head transformer) with the released code's
   STFT loss on peak_norm(modal resynthesis + predicted residual) vs the peak-normalised recording, AdamW
   (lr `--residual-lr`, weight decay 1e-4). The modal resynthesis is `modal.synthesize` of the clip's sparse
   `refined` modes (**departure**: the code resynthesises the paper extractor's 1025 per-bin modes; here the
   residual completes the sparse modes the app shows, plays and edits, so a retrieved entry's modes + residual
   sound like its clip).
2. `visual`: the visual encoder (`VisualEncoder`, a small per-frame CNN; **departure** from the paper's
   pretrained ResNet-50 + TSM) trained as a material classifier: cross-entropy of the frame-averaged logits, with
   random horizontal flips and brightness jitter.
3. `diffusion`: the spectrogram U-Net and the physics encoder trained jointly with the L1 ε loss (paper Eq. 8),
   t uniform over the T training steps of the cosine schedule; AdamW (lr `--lr`, 5e-4 in the paper, weight decay
   1e-4) with the code's decay lr · 0.1^(epoch / 50), here continuous in the epoch (step · batch / clips); EMA
   of the weights. The physics priors are computed once per clip (the paper extractor's 1025 per-bin modes and
   the frozen residual predictor's band gains and T60s), as are the spectrograms and ν (frozen visual encoder).
4. export: OUT holds the folder `ImpactDiffusionPipeline.from_pretrained(OUT)` loads (config.json,
   denoiser.safetensors, visual_encoder.safetensors, bank.safetensors/.json, residual/), with the retrieval bank
   built from the training clips: keys ν, values μ = physics encoder(priors) with the EMA weights, each clip's
   `refined` modes (≤ 64) and predicted residual, and its material. Also loss_log.jsonl, loss_curve.png and
   training_summary.json (final losses, visual accuracy, wall time).

Fine-tuning (`--init`, `pipelines.train.init`): `--init studio` (assets/models/impact_sound) or `--init DIR` (a
folder `save_pretrained` wrote) starts all three networks from those weights; the configuration (size, T, visual
classes) comes from them (--size and --timesteps are ignored), so the data's materials must be among its visual
classes. The studio knows no published weights for this model, so `--init paper` is refused. The optimiser starts
fresh; the bank is rebuilt from the new clips; training_summary.json records `"init"`. No LoRA here.

Data (`--data`):

- `toyworld`: `--clips` impact clips from `pipelines.toyworld.impacts.sample_impacts` (all materials), frames
  around the hit at 30 fps.
- a Greatest Hits-style FOLDER holding `hits.jsonl`, one JSON object per hit::

      {"video": "take1.mp4", "time": 1.23, "material": "wood"}
      {"video": "take1.mp4", "time": 2.71, "material": "wood", "audio": "take1_denoised.wav"}

  `video` and `audio` are relative to the folder; `time` is the hit in seconds. The frames are the video frames
  nearest to hit + (j − num_frames // 2) / fps_model (the model's frame rate: 30 fps for `studio` and `tiny`,
  29.97 for `paper`), resized to the model's frame size; the sound is 0.25 s from the hit, taken from `audio`
  (any file `pipelines.audio.load_audio` reads: resampled to 44.1 kHz, mixed to mono) or, without it, from the
  video's own soundtrack; zero-padded at the end of the file. The materials found become the visual classes (at
  least two are needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from pipelines.impact_sound.modal import Modes, estimate_modes, synthesize
from pipelines.impact_sound.modeling_impact_sound import (
    ImpactDenoiser,
    ImpactDiffusionConfig,
    PhysicsPriors,
    VisualEncoder,
)
from pipelines.impact_sound.modeling_residual import ResidualPredictor, ResidualPredictorConfig, residual_loss
from pipelines.impact_sound.pipeline_diffusion import (
    ImpactDiffusionPipeline,
    physics_priors_of,
    read_hit_windows,
    resize_frames,
    window_indices,
)
from pipelines.impact_sound.retrieval import RetrievalBank
from pipelines.impact_sound.scheduling_impact_sound import DiffusionSchedule, diffusion_loss
from pipelines.impact_sound.spectrogram import NUM_SAMPLES, SAMPLE_RATE, audio_to_spectrogram
from pipelines.pipeline_utils import load_weights, save_weights
from pipelines.train.common import (
    EMA,
    LossLog,
    Preview,
    TrainState,
    add_preview_argument,
    as_exported,
    batch_indices,
    check_preview_every,
    data_seed,
    final_losses,
    make_accelerator,
    plot_losses,
    run_loop,
    stage_done,
    update,
)
from pipelines.train.init import announce, init_record, refuse_lora, resolve_init

RESIDUAL_SIZES = {
    "paper": ResidualPredictorConfig(),
    "studio": ResidualPredictorConfig(d_model=64, n_layers=4, n_heads=4),
    "tiny": ResidualPredictorConfig(d_model=16, n_layers=1, n_heads=2),
}
WEIGHT_DECAY = 1e-4  # the code's AdamW weight decay
LR_DECADE_EPOCHS = 50.0  # the code's ExponentialLR: lr · 0.1^(epoch / 50)
HELD_OUT_SEED_OFFSET = 10_000


@dataclass
class ImpactClips:
    """Training clips: frames [N, num_frames, S, S, 3] uint8 around the hit; audio [N, 11025] float32 from the hit
    at 44.1 kHz; one material name each."""

    frames: np.ndarray
    audio: np.ndarray
    materials: list[str]

    def __len__(self) -> int:
        return len(self.materials)


# Data ---------------------------------------------------------------------------------------------------------------


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()


def toyworld_clips(count: int, seed: int, config: ImpactDiffusionConfig) -> ImpactClips:
    """Toy-world impacts (all materials), `num_frames` frames around each hit, resized to the model's size."""
    from pipelines.toyworld.impacts import sample_impacts

    batch = sample_impacts(count, seed, fps=config.fps)
    length = batch.frames.shape[1]
    index = np.stack([window_indices(h, config.num_frames, length) for h in batch.hit_frame])
    windows = torch.from_numpy(batch.frames[np.arange(count)[:, None], index])
    return ImpactClips(to_uint8(resize_frames(windows, config.frame_size)), batch.audio.astype(np.float32),
                       list(batch.materials))


def read_hits_index(folder: Path) -> list[dict]:
    """The `hits.jsonl` lines (format in the module docstring), checked."""
    index = folder / "hits.jsonl"
    if not index.is_file():
        raise ValueError(f"{folder} has no hits.jsonl (one JSON line per hit: video, time, material)")
    hits = []
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"hits.jsonl line {number} is not valid JSON ({error.msg})") from error
        if not isinstance(entry, dict) or not {"video", "time", "material"} <= set(entry):
            raise ValueError(f"hits.jsonl line {number}: need video, time and material; got {entry}")
        if not isinstance(entry["time"], (int, float)) or not entry["time"] >= 0:
            raise ValueError(f"hits.jsonl line {number}: time must be a number of seconds ≥ 0, got {entry['time']}")
        if not (folder / entry["video"]).is_file():
            raise ValueError(f"hits.jsonl line {number}: video {entry['video']} is not in {folder}")
        hits.append(entry)
    if not hits:
        raise ValueError(f"{index} lists no hits")
    return hits


def clip_audio(samples: np.ndarray, start_s: float) -> np.ndarray:
    """0.25 s of 44.1 kHz mono samples from `start_s`, zero-padded at the end."""
    start = round(start_s * SAMPLE_RATE)
    out = np.zeros(NUM_SAMPLES, dtype=np.float32)
    piece = samples[start : start + NUM_SAMPLES]
    out[: len(piece)] = piece
    return out


def video_soundtrack(path: Path) -> np.ndarray:
    """A video's sound as 44.1 kHz mono float32 (ValueError when it has none)."""
    from pipelines.media import VideoDecodeError, read_soundtrack

    try:
        return read_soundtrack(path, SAMPLE_RATE)
    except VideoDecodeError as error:
        raise ValueError(f"{path.name} has no readable soundtrack ({error}): give an \"audio\" file in "
                         "hits.jsonl") from error


def folder_clips(folder: str | Path, config: ImpactDiffusionConfig) -> ImpactClips:
    """Clips of a Greatest Hits-style folder (format in the module docstring), in `hits.jsonl` order."""
    from pipelines.audio import SPECS, load_audio

    folder = Path(folder)
    hits = read_hits_index(folder)
    by_video: dict[str, list[int]] = defaultdict(list)
    for number, hit in enumerate(hits):
        by_video[hit["video"]].append(number)
    frames: list[np.ndarray | None] = [None] * len(hits)
    audio: list[np.ndarray | None] = [None] * len(hits)
    sounds: dict[str, np.ndarray] = {}
    for video, numbers in by_video.items():
        windows, _ = read_hit_windows(folder / video, [hits[n]["time"] for n in numbers], config)
        for n, window in zip(numbers, windows):
            frames[n] = window
            source = hits[n].get("audio")
            key = source or f"video:{video}"
            if key not in sounds:
                sounds[key] = (load_audio(folder / source, SPECS["impact"]).samples if source
                               else video_soundtrack(folder / video))
            audio[n] = clip_audio(sounds[key], hits[n]["time"])
    return ImpactClips(np.stack(frames), np.stack(audio), [str(hit["material"]) for hit in hits])


def load_clips(args: argparse.Namespace, config: ImpactDiffusionConfig) -> ImpactClips:
    clips = toyworld_clips(args.clips, args.seed, config) if args.data == "toyworld" else folder_clips(args.data,
                                                                                                        config)
    silent = [i for i, clip in enumerate(clips.audio) if not np.any(clip)]
    if silent:
        raise ValueError(f"{len(silent)} clip(s) are silent from the hit on (first: #{silent[0]}): check the hit "
                         f"times and the sound")
    return clips


def model_config(args: argparse.Namespace, materials: list[str]) -> ImpactDiffusionConfig:
    """The size preset with the data's materials as visual classes (the toy world: all of its materials)."""
    if args.data == "toyworld":
        from pipelines.impact_sound import MATERIALS

        classes = tuple(MATERIALS)
    else:
        classes = tuple(sorted(set(materials)))
        if len(classes) < 2:
            raise ValueError(f"the data needs hits of at least two materials to train the visual encoder, got "
                             f"{list(classes)}")
    config = ImpactDiffusionConfig.preset(args.size, visual_classes=classes)
    return config if args.timesteps is None else dataclasses.replace(config, timesteps=args.timesteps)


def refined_modes(audio: np.ndarray) -> list[Modes]:
    """Each clip's sparse `refined` modes (≤ 64, θ = 0 as the app edits them), their powers shifted so that their
    synthesis peaks at exactly 1 (the code peak-normalises its modal resynthesis; the residual's gains are relative
    to that level)."""
    found = []
    for clip in audio:
        modes = estimate_modes(clip, SAMPLE_RATE, "refined", max_modes=64).replace(phases=None)
        found.append(modes.replace(powers=modes.powers - 20.0 * np.log10(modal_peak(modes))))
    return found


def modal_peak(modes: Modes) -> float:
    """The peak of the modes' 0.25 s synthesis (1.0 for no modes, which then stay silent)."""
    if not len(modes):
        return 1.0
    return float(np.max(np.abs(synthesize(modes, SAMPLE_RATE, NUM_SAMPLES / SAMPLE_RATE, ceiling=np.inf)))) or 1.0


# Arguments ----------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This trainer's options (the common ones come from `pipelines.train.__main__`)."""
    parser.add_argument("--size", default="studio", choices=("studio", "tiny", "paper"), help="model size preset")
    parser.add_argument("--clips", type=int, default=1024, help="toy-world clips to generate")
    parser.add_argument("--steps", type=int, default=1200, help="diffusion training steps")
    parser.add_argument("--batch-size", type=int, default=16, help="diffusion batch (the paper: 16)")
    parser.add_argument("--lr", type=float, default=5e-4, help="diffusion learning rate (AdamW; the paper: 5e-4)")
    parser.add_argument("--timesteps", type=int, default=None, help="diffusion steps T (default: the preset's)")
    parser.add_argument("--residual-steps", type=int, default=300)
    parser.add_argument("--residual-batch-size", type=int, default=16)
    parser.add_argument("--residual-lr", type=float, default=5e-4, help="the code's 5e-4")
    parser.add_argument("--visual-steps", type=int, default=200)
    parser.add_argument("--visual-batch-size", type=int, default=32)
    parser.add_argument("--visual-lr", type=float, default=1e-3)
    parser.add_argument("--retrieval-metric", default="l2", choices=("l2", "l1"),
                        help="nearest neighbour by L2 (the paper) or L1 (the code)")
    add_preview_argument(parser)


# Training -----------------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Path:
    """Run every stage and export the pipeline folder into OUT (see the module docstring)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_arguments(args)
    set_seed(args.seed)
    started = time.time()
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    materials = [] if args.data == "toyworld" else [str(h["material"]) for h in read_hits_index(Path(args.data))]
    start = starting_pipeline(args, materials)
    config = start.model_config if start is not None else model_config(args, materials)
    clips = load_clips(args, config)
    modes = refined_modes(clips.audio)
    predictor = train_residual(args, clips, modes, log, start)
    visual, accuracy = train_visual(args, config, clips, log, start)
    priors, residuals = physics_priors_of(clips.audio, predictor)
    nu = encode_frames(visual, clips.frames)
    sample = PreviewSample(visual, predictor, priors, nu, modes, residuals, args.seed)
    denoiser = train_diffusion(args, config, clips, priors, nu, log, start, sample)
    with torch.no_grad():
        mu = denoiser.eval().physics(priors)
    bank = RetrievalBank.build(nu, mu, modes, residuals, list(clips.materials))
    pipeline = ImpactDiffusionPipeline(denoiser, visual, predictor, bank, retrieval_metric=args.retrieval_metric)
    pipeline.save_pretrained(out, torch.float16 if args.save_dtype == "fp16" else torch.float32)
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "init": init_record(args), "final": final_losses(log.read()),
               "visual_accuracy": accuracy, "clips": len(clips), "materials": sorted(set(clips.materials)),
               "parameters": parameter_counts(denoiser, visual, predictor), "args": vars(args)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return out


def starting_pipeline(args: argparse.Namespace, materials: list[str]) -> ImpactDiffusionPipeline | None:
    """The pipeline `--init` names (studio: assets/models/impact_sound, or a folder `save_pretrained` wrote), or
    None. Its visual classes must cover the data's materials (the visual encoder classifies them)."""
    init = resolve_init(args, "impact_sound")
    if init is None:
        return None
    if init.kind == "paper":
        raise ValueError("--init paper: the studio knows no published weights of Impact Sound's diffusion model; use "
                         "--init studio or --init DIR")
    announce(init, "--size and --timesteps")
    start = ImpactDiffusionPipeline.from_pretrained(init.path)
    if args.data == "toyworld":
        from pipelines.impact_sound import MATERIALS

        materials = list(MATERIALS)
    unknown = sorted(set(materials) - set(start.model_config.visual_classes))
    if unknown:
        raise ValueError(f"--init {init.label}: its visual encoder knows the materials "
                         f"{list(start.model_config.visual_classes)}, not {unknown}; train from scratch for new ones")
    return start


def trainable(module: torch.nn.Module) -> torch.nn.Module:
    """A starting network in float32, training mode, with gradients (the pipeline keeps them frozen)."""
    return module.float().train().requires_grad_(True)


def check_arguments(args: argparse.Namespace) -> None:
    refuse_lora(args, "impact_sound")
    positive = {"--steps": args.steps, "--batch-size": args.batch_size, "--residual-batch-size":
                args.residual_batch_size, "--visual-batch-size": args.visual_batch_size, "--clips": args.clips}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if args.residual_steps < 0 or args.visual_steps < 0:
        raise ValueError("--residual-steps and --visual-steps must be ≥ 0")
    if args.timesteps is not None and args.timesteps < 2:
        raise ValueError(f"--timesteps must be at least 2, got {args.timesteps}")
    check_preview_every(args)


def parameter_counts(*modules: torch.nn.Module) -> dict[str, int]:
    names = ("denoiser_unet", "physics_encoder", "visual_encoder", "residual_predictor")
    counts = [sum(p.numel() for p in modules[0].unet.parameters()),
              sum(p.numel() for p in modules[0].physics.parameters())]
    counts += [sum(p.numel() for p in module.parameters()) for module in modules[1:]]
    return dict(zip(names, counts))


def stage_model_path(out: Path, stage: str) -> Path:
    return out / "checkpoints" / stage / "model"


def train_residual(args, clips: ImpactClips, modes: list[Modes], log: LossLog,
                   start: ImpactDiffusionPipeline | None = None) -> ResidualPredictor:
    """Stage 1: the residual predictor against each clip's refined-mode resynthesis."""
    out = Path(args.out)
    if args.resume and stage_done(out, "residual"):
        return ResidualPredictor.from_pretrained(stage_model_path(out, "residual"))
    torch.manual_seed(args.seed)
    model = trainable(start.residual_predictor) if start is not None else ResidualPredictor(RESIDUAL_SIZES[args.size])
    audio = torch.from_numpy(clips.audio)
    modal = torch.from_numpy(np.stack([synthesize(m, SAMPLE_RATE, NUM_SAMPLES / SAMPLE_RATE, ceiling=np.inf)
                                       for m in modes]))  # peak 1 (see `refined_modes`)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.residual_lr, weight_decay=WEIGHT_DECAY)
    model, optimizer = accelerator.prepare(model, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(model), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        chosen = batch_indices(data_seed(accelerator, args.seed) + 1, index, args.residual_batch_size, len(clips))
        with accelerator.autocast():
            loss = residual_loss(model, audio[chosen].to(accelerator.device), modal[chosen].to(accelerator.device))
        update(accelerator, optimizer, loss, [model])
        ema.update(accelerator.unwrap_model(model))
        return {"stft_loss": loss.item()}

    run_loop(accelerator, args, "residual", args.residual_steps, state, step, log)
    predictor = accelerator.unwrap_model(model).cpu()
    ema.copy_to(predictor)
    predictor.save_pretrained(stage_model_path(out, "residual"))
    return predictor.eval()


def augment_frames(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and brightness jitter (±10 %) per clip of [N, T, S, S, 3] in [0, 1]."""
    n = frames.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    frames = torch.where(flip[:, None, None, None, None], frames.flip(dims=(3,)), frames)
    gain = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, 1, generator=generator)
    return (frames * gain).clamp(0.0, 1.0)


def frames_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float() / 255.0


def train_visual(args, config: ImpactDiffusionConfig, clips: ImpactClips, log: LossLog,
                 start: ImpactDiffusionPipeline | None = None) -> tuple[VisualEncoder, dict[str, float]]:
    """Stage 2: the visual encoder as a material classifier of the frame-averaged logits."""
    out = Path(args.out)
    labels = torch.tensor([config.visual_classes.index(m) for m in clips.materials])
    path = stage_model_path(out, "visual").with_suffix(".safetensors")
    if args.resume and stage_done(out, "visual"):
        model = load_weights(VisualEncoder(config), path)
        return model.eval(), visual_accuracy(model, args, config, clips, labels)
    torch.manual_seed(args.seed + 2)
    model = trainable(start.visual_encoder) if start is not None else VisualEncoder(config)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.visual_lr, weight_decay=WEIGHT_DECAY)
    model, optimizer = accelerator.prepare(model, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(model), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        chosen = batch_indices(data_seed(accelerator, args.seed) + 2, index, args.visual_batch_size, len(clips))
        generator = torch.Generator().manual_seed(data_seed(accelerator, args.seed) * 1_000_003 + index)
        frames = augment_frames(frames_tensor(clips.frames[chosen.numpy()]), generator)
        with accelerator.autocast():
            loss = F.cross_entropy(model(frames.to(accelerator.device)), labels[chosen].to(accelerator.device))
        update(accelerator, optimizer, loss, [model])
        ema.update(accelerator.unwrap_model(model))
        return {"material_ce": loss.item()}

    run_loop(accelerator, args, "visual", args.visual_steps, state, step, log)
    encoder = accelerator.unwrap_model(model).cpu()
    ema.copy_to(encoder)
    save_weights(encoder, path)
    return encoder.eval(), visual_accuracy(encoder, args, config, clips, labels)


@torch.no_grad()
def encode_frames(visual: VisualEncoder, frames: np.ndarray, batch: int = 128) -> torch.Tensor:
    """ν [N, classes] of uint8 frame windows, in eval mode."""
    visual.eval()
    return torch.cat([visual(frames_tensor(frames[i : i + batch])) for i in range(0, len(frames), batch)])


def visual_accuracy(visual: VisualEncoder, args, config: ImpactDiffusionConfig, clips: ImpactClips,
                    labels: torch.Tensor) -> dict[str, float]:
    """Material accuracy on the training clips and, for the toy world, on fresh clips from another seed."""
    result = {"train": float((encode_frames(visual, clips.frames).argmax(1) == labels).float().mean())}
    if args.data == "toyworld":
        fresh = toyworld_clips(min(128, args.clips), args.seed + HELD_OUT_SEED_OFFSET, config)
        truth = torch.tensor([config.visual_classes.index(m) for m in fresh.materials])
        result["held_out"] = float((encode_frames(visual, fresh.frames).argmax(1) == truth).float().mean())
    return result


class DiffusionObjective(torch.nn.Module):
    """The denoiser and the physics encoder in one forward (the module accelerate wraps): the L1 ε loss."""

    def __init__(self, denoiser: ImpactDenoiser, schedule: DiffusionSchedule) -> None:
        super().__init__()
        self.denoiser, self.schedule = denoiser, schedule

    def forward(self, x0: torch.Tensor, priors: PhysicsPriors, nu: torch.Tensor, t: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        mu = self.denoiser.physics(priors)
        return diffusion_loss(self.denoiser, self.schedule, x0, mu, nu, t=t, noise=noise)


def train_diffusion(args, config: ImpactDiffusionConfig, clips: ImpactClips, priors: PhysicsPriors,
                    nu: torch.Tensor, log: LossLog, start: ImpactDiffusionPipeline | None = None,
                    sample: PreviewSample | None = None) -> ImpactDenoiser:
    """Stage 3: the U-Net and the physics encoder, jointly, on precomputed spectrograms, priors and ν; previews
    (`--preview-every`) from `sample` with the EMA weights."""
    out = Path(args.out)
    path = stage_model_path(out, "diffusion").with_suffix(".safetensors")
    if args.resume and stage_done(out, "diffusion"):
        return load_weights(ImpactDenoiser(config), path)
    spectrograms = audio_to_spectrogram(clips.audio, config.freq_bins)[:, None]  # [N, 1, F, 44]
    schedule = DiffusionSchedule.from_config(config)
    torch.manual_seed(args.seed + 3)
    denoiser = trainable(start.denoiser) if start is not None else ImpactDenoiser(config)
    objective = DiffusionObjective(denoiser, schedule)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    epochs_per_step = args.batch_size / len(clips)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 ** (step * epochs_per_step / LR_DECADE_EPOCHS))
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    inner = accelerator.unwrap_model(objective).denoiser
    state, ema = TrainState(), EMA(inner, args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        chosen = batch_indices(data_seed(accelerator, args.seed) + 3, index, args.batch_size, len(clips))
        generator = torch.Generator().manual_seed(data_seed(accelerator, args.seed) * 7919 + index)
        t = torch.randint(0, len(schedule), (len(chosen),), generator=generator)
        noise = torch.randn((len(chosen), *spectrograms.shape[1:]), generator=generator)
        device = accelerator.device
        with accelerator.autocast():
            loss = objective(spectrograms[chosen].to(device), priors.select(chosen).to(device),
                             nu[chosen].to(device), t.to(device), noise.to(device))
        update(accelerator, optimizer, loss, [objective])
        scheduler.step()
        ema.update(inner)
        return {"l1_eps": loss.item(), "lr": scheduler.get_last_lr()[0]}

    def preview() -> Preview:
        with as_exported([(inner, ema), (sample.visual, None), (sample.predictor, None)]):
            return sample(inner)

    run_loop(accelerator, args, "diffusion", args.steps, state, step, log, preview=preview if sample else None)
    denoiser = inner.cpu()
    ema.copy_to(denoiser)
    save_weights(denoiser, path)
    return denoiser


# Previews (--preview-every) -------------------------------------------------------------------------------------------

PREVIEW_STEPS = 10  # sampler steps of a training preview, respaced from the model's T


@dataclass
class PreviewSample:
    """One preview of the denoiser being trained: the first training clip's impact, made from its own ν and μ (the
    physics encoder's current μ of its priors, as retrieval would give it), PREVIEW_STEPS steps, seed `seed`,
    Griffin-Lim; the picture is the sound's spectrogram (`pipelines.audio.spectrogram_picture`)."""

    visual: VisualEncoder
    predictor: ResidualPredictor
    priors: PhysicsPriors
    nu: torch.Tensor
    modes: list[Modes]
    residuals: list
    seed: int

    def __call__(self, denoiser: ImpactDenoiser) -> Preview:
        from pipelines.audio import spectrogram_picture

        device = next(denoiser.parameters()).device
        first = torch.tensor([0])
        mu = denoiser.physics(self.priors.select(first).to(device)).float().cpu()
        bank = RetrievalBank.build(self.nu[first], mu, self.modes[:1], self.residuals[:1])
        pipe = ImpactDiffusionPipeline(denoiser, self.visual, self.predictor, bank)
        schedule = pipe.schedule.respaced(min(PREVIEW_STEPS, len(pipe.schedule)))
        spectrogram = pipe.sample_spectrograms(mu, self.nu[first], schedule, torch.Generator().manual_seed(self.seed),
                                               None, None)
        audio = pipe.decode(spectrogram)[0]
        return Preview(spectrogram_picture(audio, pipe.sample_rate), audio, pipe.sample_rate)
