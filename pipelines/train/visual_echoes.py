"""Trainer for Visual Echoes (paper 002): the two VQGAN tokenizers, then the masked audio-visual token transformer.

Stages (`--stage tokenizers|transformer|all`; each resumable, checkpoints under OUT/checkpoints/<stage>/step-N):

1. `tokenizers`: one diffusers `VQModel` per modality (the picture and the SpecVQGAN log-mel spectrogram in [-1, 1])
   trained with L1 reconstruction (foreground-weighted with `--foreground-weight W`, see `foreground_weights`) + the
   VQ codebook/commitment loss (β = 0.25); codes unused for `--restart-every`
   steps are re-initialised from random encoder outputs (keeps small codebooks alive). `--gan-weight W` adds a hinge
   PatchGAN loss from step `--gan-start` (the VQGAN recipe); a perceptual (LPIPS) loss needs pretrained VGG weights
   and is not offered. The EMA weights are saved to OUT/audio_tokenizer and OUT/image_tokenizer.
2. `transformer`: the frozen tokenizers encode the data once; each step draws, per sample and per modality, a mask
   ratio from a truncated Gaussian on [0.2, 1] with mean 0.7 (`--mask-mean`; the standard deviation 0.25 is MAGE's,
   the paper does not give it), masks ⌈r·L⌉ tokens, drops ⌈0.5·L⌉ tokens from the encoder, and minimises the
   cross-entropy on the masked positions only (Eq. 1: the mean over each modality's masked tokens, the two
   modalities summed). AdamW (0.9, 0.95), weight decay 0.05, linear warm-up then cosine decay (MAGE's defaults: the
   paper gives no optimiser), EMA. Departure, off by default: `--task-share S` trains a share S of each batch on
   what the sampler shows the network (image → sound and sound → image with and without their condition, and
   co-generation: a modality is whole, partly masked as the cosine schedule leaves it, or masked whole; nothing
   dropped). The paper's masks never show the encoder more than half of a modality.

OUT is then written by `VisualEchoesPipeline.save_pretrained` (audio_tokenizer/, image_tokenizer/, transformer/,
visual_echoes.json), so `VisualEchoesPipeline.from_pretrained(OUT)` loads it as the registry loads the bundled
`assets/models/visual_echoes`.

Fine-tuning (`--init DIR`, `pipelines.train.init`): the three networks start from a folder `save_pretrained` wrote;
`--size` becomes the preset they match, the codebooks stay theirs. `--init studio` starts from the bundled
weights (assets/models/visual_echoes); the authors released none, so `--init paper` is refused with a message. The
optimiser starts fresh; visual_echoes.json records `"init"`. No LoRA here.

`--size studio|tiny|paper`: the paper size is taming's f16 VQGAN at 256×256, SpecVQGAN at 80×848 (10 s) and ViT-L +
8 × 1024 decoder (a GPU and VGGSound-scale data). Data: `--data toyworld` (paired toy pictures and sounds,
`pipelines.toyworld.paired`) or a folder with a `pairs.jsonl`, one line per pair: {"image": "frame.png", "audio":
"clip.wav"} (paths relative to the folder; any picture PIL reads, resized to the preset's square; any audio
`pipelines.audio.load_audio` reads, resampled to 22,050 Hz, cut or zero-padded to the preset's frames).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import VQModel

from pipelines.pipeline_utils import save_module
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
from pipelines.visual_echoes.modeling_visual_echoes import (
    MODALITIES,
    TOKENIZER_SIZES,
    TokenizerSize,
    build_tokenizer,
    build_transformer,
    encode_tokens,
)
from pipelines.visual_echoes.scheduling_visual_echoes import MASK_RATIO_MEAN, masked_cross_entropy, training_masks

STAGES = ("tokenizers", "transformer", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", default="all", choices=STAGES, help="which stage(s) to run (default all)")
    parser.add_argument("--size", default="studio", choices=tuple(TOKENIZER_SIZES), help="model size preset")
    parser.add_argument("--tokenizer-steps", type=int, default=1500)
    parser.add_argument("--tokenizer-batch-size", type=int, default=16)
    parser.add_argument("--tokenizer-lr", type=float, default=1e-3)
    parser.add_argument("--audio-crop-frames", type=int, default=0,
                        help="train the audio tokenizer on random time crops of this many frames, a multiple of its "
                             "down-sampling (default 0: whole clips; a tokenizer trained on crops reconstructs whole "
                             "clips badly, its GroupNorm statistics differ; only for tokenizers without attention)")
    parser.add_argument("--restart-every", type=int, default=100,
                        help="re-initialise codes unused for this many tokenizer steps (0: never)")
    parser.add_argument("--foreground-weight", type=float, default=0.0,
                        help="weight the L1 by 1 + W·|x − background| (0: plain L1; helps small objects and sparse "
                             "sounds against an empty ground)")
    parser.add_argument("--gan-weight", type=float, default=0.0, help="hinge PatchGAN loss weight (0: off)")
    parser.add_argument("--gan-start", type=int, default=500, help="tokenizer step from which the GAN loss is on")
    parser.add_argument("--tokenizers", nargs="+", default=list(MODALITIES), choices=MODALITIES,
                        help="the tokenizers the tokenizer stage trains (default both; one alone needs --init, "
                             "which gives the other)")
    parser.add_argument("--decoder-only", action="store_true",
                        help="with --init: the tokenizer stage trains only the decoders (encoder and codebook "
                             "frozen, so the codes and the starting transformer still fit) and exports the pipeline "
                             "with that transformer, as VQGAN's decoder fine-tune (e.g. sharper pictures with "
                             "--gan-weight)")
    parser.add_argument("--steps", type=int, default=3000, help="transformer training steps")
    parser.add_argument("--batch-size", type=int, default=64, help="transformer batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="transformer peak learning rate (AdamW)")
    parser.add_argument("--warmup", type=int, default=200, help="transformer warm-up steps")
    parser.add_argument("--mask-mean", type=float, default=MASK_RATIO_MEAN, help="mean of the mask-ratio Gaussian")
    parser.add_argument("--task-share", type=float, default=0.0, metavar="SHARE",
                        help="share of each batch trained on what the sampler shows the network: one modality "
                             "whole or masked whole, the other partly masked, or both partly (a departure; default "
                             "0, the paper's masks only)")
    parser.add_argument("--pool", type=int, default=4000, help="toy-world pairs generated")
    parser.add_argument("--codebook-size", type=int, default=None,
                        help="codes per tokenizer codebook (default: the preset's; fewer codes give the transformer "
                             "lower-entropy tokens)")
    add_preview_argument(parser)


# Data ---------------------------------------------------------------------------------------------------------------


def load_pairs(args: argparse.Namespace, sizes: dict[str, TokenizerSize]) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectrograms [N, 1, n_mels, frames], pictures [N, 3, S, S]), both in [-1, 1]."""
    if args.data == "toyworld":
        from pipelines.toyworld.paired import sample_paired

        key = f"{args.pool}-{args.seed}-{sizes['image'].width}-{sizes['audio'].width}"
        cache = Path(args.out) / "toyworld_pool.pt"  # a resumed run reuses the converted pool
        if cache.is_file():
            saved = torch.load(cache, weights_only=True)
            if saved["key"] == key:
                return saved["spectrograms"], saved["pictures"]
        batch = sample_paired(args.pool, args.seed, size=sizes["image"].width, frames=sizes["audio"].width)
        spectrograms, pictures = spectrogram_input(batch.audio, sizes["audio"].width), picture_input(batch.images)
        torch.save({"key": key, "spectrograms": spectrograms, "pictures": pictures}, cache)
        return spectrograms, pictures
    return folder_pairs(Path(args.data), sizes)


def spectrogram_input(audio: np.ndarray, frames: int) -> torch.Tensor:
    """Waveforms [N, S] at 22,050 Hz -> SpecVQGAN spectrograms [N, 1, 80, frames] in [-1, 1] (trimmed or padded
    with silence to `frames`, as SpecVQGAN trims its spectrograms)."""
    from pipelines.audio import SPECS, specvqgan_mel

    mels = []
    for clip in audio:
        mel = specvqgan_mel(clip, SPECS["visual_echoes"])[:, :frames]
        mels.append(np.pad(mel, ((0, 0), (0, frames - mel.shape[1]))))
    return torch.from_numpy(np.stack(mels)).float().mul(2).sub(1).unsqueeze(1)


def picture_input(images: np.ndarray) -> torch.Tensor:
    """[N, S, S, 3] in [0, 1] -> [N, 3, S, S] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2).mul(2).sub(1)


def folder_pairs(folder: Path, sizes: dict[str, TokenizerSize]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    from pipelines.audio import SPECS, load_audio

    listing = folder / "pairs.jsonl"
    if not listing.is_file():
        raise ValueError(f"{folder} has no pairs.jsonl (one line per pair: {{\"image\": ..., \"audio\": ...}})")
    spec, frames, side = SPECS["visual_echoes"], sizes["audio"].width, sizes["image"].width
    pictures, clips = [], []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        picture = Image.open(folder / record["image"]).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        pictures.append(np.asarray(picture, dtype=np.float32) / 255.0)
        samples = load_audio(folder / record["audio"], spec).samples[: frames * spec.hop_length]
        clips.append(np.pad(samples, (0, frames * spec.hop_length - len(samples))))
    if not pictures:
        raise ValueError(f"{listing} lists no pairs")
    return spectrogram_input(np.stack(clips), frames), picture_input(np.stack(pictures))


# Stage 1: tokenizers -----------------------------------------------------------------------------------------------


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN (as the VQGAN recipe's): strided 4×4 convs with LeakyReLU -> a map of real/fake logits."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 4, 2, 1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width, 2 * width, 4, 2, 1), torch.nn.GroupNorm(8, 2 * width), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(2 * width, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def foreground_weights(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel L1 weights [B, 1, H, W] of mean 1 per sample: 1 + strength · |x − background|, the background being
    each sample's per-channel median (a picture's ground, a spectrogram's floor), so that small objects and sparse
    sounds are not outweighed by the empty ground (strength 0: plain L1)."""
    background = x.flatten(2).median(dim=2).values[..., None, None]
    weights = 1.0 + strength * (x - background).abs().mean(dim=1, keepdim=True)
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


class TokenizerObjective(torch.nn.Module):
    """One forward = (L1 reconstruction, VQ loss, code ids, encoder outputs, reconstruction) of a `VQModel`; the L1 is
    foreground-weighted with `foreground_weight` > 0 (`foreground_weights`)."""

    def __init__(self, vq: VQModel, foreground_weight: float = 0.0) -> None:
        super().__init__()
        self.vq = vq
        self.foreground_weight = foreground_weight

    def forward(self, x: torch.Tensor):
        latents = self.vq.encode(x).latents
        quantized, vq_loss, (_, _, ids) = self.vq.quantize(latents)
        reconstruction = self.vq.decoder(self.vq.post_quant_conv(quantized))
        error = (reconstruction.float() - x).abs()
        if self.foreground_weight > 0:
            error = error * foreground_weights(x, self.foreground_weight)
        return error.mean(), vq_loss.mean(), ids, latents, reconstruction


@torch.no_grad()
def restart_dead_codes(vq: VQModel, usage: torch.Tensor, latents: torch.Tensor, generator: torch.Generator,
                       ema: EMA | None = None) -> int:
    """Codes with zero usage get a random encoder output (plus a little noise), in the live weights and in the EMA
    shadow alike; returns how many were restarted."""
    dead = torch.nonzero(usage == 0)[:, 0]
    if len(dead) == 0:
        return 0
    flat = latents.detach().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).float()
    picks = torch.randint(0, len(flat), (len(dead),), generator=generator)
    fresh = flat[picks] + 0.01 * torch.randn(len(dead), flat.shape[1], generator=generator)
    weight = vq.quantize.embedding.weight
    weight[dead] = fresh.to(weight)
    if ema is not None:
        shadow = ema.shadow["quantize.embedding.weight"]
        shadow[dead] = fresh.to(shadow)
    return len(dead)


def train_tokenizer(args, name: str, size: TokenizerSize, data: torch.Tensor, log: LossLog, start=None) -> VQModel:
    out = Path(args.out)
    stage = f"{name}_tokenizer"
    folder = out / f"{name}_tokenizer"
    if args.resume and stage_done(out, stage) and (folder / "config.json").is_file():
        return VQModel.from_pretrained(folder).eval().requires_grad_(False)
    torch.manual_seed(args.seed)
    vq = trainable(getattr(start, f"{name}_tokenizer")) if start is not None else build_tokenizer(size)
    if args.decoder_only:
        for part in (vq.encoder, vq.quant_conv, vq.quantize):
            part.requires_grad_(False)
    objective = TokenizerObjective(vq, args.foreground_weight)
    discriminator = PatchDiscriminator(size.channels)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=args.tokenizer_lr,
                                  betas=(0.5, 0.9), weight_decay=0.0)
    d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=args.tokenizer_lr, betas=(0.5, 0.9))
    objective, discriminator, optimizer, d_optimizer = accelerator.prepare(objective, discriminator, optimizer,
                                                                           d_optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(objective).vq, args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)
    usage = torch.zeros(size.codebook_size)
    restart_generator = torch.Generator().manual_seed(args.seed + 17)

    crop = args.audio_crop_frames if name == "audio" and not size.attention_at_lowest else 0
    if crop and (crop % size.factor or crop > size.width):
        raise ValueError(f"--audio-crop-frames must be a multiple of {size.factor} up to {size.width}, got {crop}")

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        x = data[batch_indices(seed, index, args.tokenizer_batch_size, len(data))]
        if crop:  # a random time crop on the token grid (the tokenizer is convolutional)
            start = size.factor * int(torch.randint(0, (size.width - crop) // size.factor + 1, (1,),
                                                    generator=torch.Generator().manual_seed(seed + 31 * index)))
            x = x[..., start : start + crop]
        x = x.to(accelerator.device)
        with accelerator.autocast():
            l1, vq_loss, ids, latents, reconstruction = objective(x)
        loss = l1 + vq_loss
        gan_on = args.gan_weight > 0 and index >= args.gan_start
        if gan_on:
            loss = loss - args.gan_weight * discriminator(reconstruction).mean()
        update(accelerator, optimizer, loss, [objective])
        losses = {"l1": l1.item(), "vq": vq_loss.item()}
        if gan_on:
            real, fake = discriminator(x), discriminator(reconstruction.detach())
            d_loss = F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
            update(accelerator, d_optimizer, d_loss, [discriminator])
            losses["discriminator"] = d_loss.item()
        vq = accelerator.unwrap_model(objective).vq
        usage.add_(torch.bincount(ids.detach().cpu(), minlength=size.codebook_size).float())
        if args.restart_every and not args.decoder_only and (index + 1) % args.restart_every == 0:
            if index < 0.8 * args.tokenizer_steps:  # the last fifth lets the codebook settle
                losses["restarted"] = float(restart_dead_codes(vq, usage, latents, restart_generator, ema))
            usage.zero_()
        ema.update(vq)
        return losses

    run_loop(accelerator, args, stage, args.tokenizer_steps, state, step, log)
    vq = accelerator.unwrap_model(objective).vq
    ema.copy_to(vq)
    save_module(vq, folder)
    return vq.eval().requires_grad_(False)


# Stage 2: transformer ----------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_all(vq: VQModel, data: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([encode_tokens(vq, chunk).cpu() for chunk in data.split(batch)])


def learning_rate(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0 (MAGE's schedule)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def transformer_loss(transformer, audio_ids: torch.Tensor, image_ids: torch.Tensor, generator: torch.Generator,
                     mask_mean: float = MASK_RATIO_MEAN,
                     task_share: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 1 on one batch: independent mask ratios per modality, 50 % dropping, CE on the masked positions only (the
    mean over each modality's masked tokens of the whole batch, the two modalities summed). The last `task_share` of
    the rows see what the sampler shows the network instead (`task_masks`)."""
    batch = audio_ids.shape[0]
    task_rows = round(task_share * batch)
    paper_rows = batch - task_rows
    lengths = (audio_ids.shape[1], image_ids.shape[1])
    groups = []
    if paper_rows:
        groups.append((slice(0, paper_rows), paper_masks(paper_rows, *lengths, generator, mask_mean)))
    if task_rows:
        masks = task_masks(task_rows, *lengths, generator)
        groups.append((slice(paper_rows, batch), (masks, [torch.zeros_like(m) for m in masks])))
    sums, counts, hits = [audio_ids.new_zeros((), dtype=torch.float32)] * 2, [0.0, 0.0], [0.0, 0.0]
    for rows, (masks, drops) in groups:
        ids = (audio_ids[rows], image_ids[rows])
        masks, drops = [m.to(audio_ids.device) for m in masks], [d.to(audio_ids.device) for d in drops]
        inputs = [torch.where(m, torch.full_like(i, mask_id), i)
                  for i, m, mask_id in zip(ids, masks, transformer.mask_ids)]
        logits = transformer(inputs[0], inputs[1], drops[0], drops[1])
        for modality, (lg, target, m) in enumerate(zip(logits, ids, masks)):
            sums[modality] = sums[modality] + masked_cross_entropy(lg, target, m) * m.sum()
            counts[modality] += float(m.sum())
            hits[modality] += float(((lg.argmax(-1) == target) & m).sum())
    losses = [total / max(count, 1.0) for total, count in zip(sums, counts)]
    accuracy = {f"{name}_accuracy": hit / max(count, 1.0) for name, hit, count in zip(MODALITIES, hits, counts)}
    total = losses[0] + losses[1]
    return total, {"loss": total.item(), "audio_ce": losses[0].item(), "image_ce": losses[1].item(), **accuracy}


def paper_masks(batch: int, audio_length: int, image_length: int, generator: torch.Generator,
                mask_mean: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """([audio, image] masked, [audio, image] dropped) of the paper's training for `batch` rows."""
    audio = training_masks(batch, audio_length, generator, mask_mean)
    image = training_masks(batch, image_length, generator, mask_mean)
    return [audio[0], image[0]], [audio[1], image[1]]


# What the sampler shows the network, per modality (audio, image): "given" whole and unmasked, "partly" masked as
# some iteration of the cosine schedule leaves it, "hidden" masked whole (guidance's unconditional pass).
SAMPLER_STATES = (("partly", "given"),  # image -> sound (and inpainting)
                  ("given", "partly"),  # sound -> image
                  ("partly", "hidden"),  # image -> sound, unconditional
                  ("hidden", "partly"),  # sound -> image, unconditional
                  ("partly", "partly"))  # co-generation


def task_masks(batch: int, audio_length: int, image_length: int,
               generator: torch.Generator) -> list[torch.Tensor]:
    """`--task-share` (a departure): [audio, image] masks of `batch` rows in the sampler's states, row i in
    `SAMPLER_STATES[i % 5]`; a "partly" modality has ⌈cos(π/2 · u) · L⌉ random tokens masked, u ~ U(0, 1). Nothing
    is dropped: the sampler shows the encoder every token, [MASK] or not, while the paper's masks never show it more
    than half of a modality, so the whole picture or sound that image -> sound and sound -> image condition on is
    otherwise never seen in training."""
    masks = []
    for modality, length in enumerate((audio_length, image_length)):
        states = [SAMPLER_STATES[row % len(SAMPLER_STATES)][modality] for row in range(batch)]
        ratios = torch.cos(math.pi / 2 * torch.rand(batch, generator=generator))
        counts = torch.ceil(ratios * length).long().clamp(1, length)
        counts = torch.tensor([{"given": 0, "hidden": length}.get(state, int(count))
                               for state, count in zip(states, counts)])
        rank = torch.argsort(torch.argsort(torch.rand(batch, length, generator=generator), dim=1), dim=1)
        masks.append(rank < counts[:, None])
    return masks


def train_transformer(args, audio_vq: VQModel, image_vq: VQModel, spectrograms: torch.Tensor,
                      pictures: torch.Tensor, log: LossLog, start=None):
    audio_ids, image_ids = encode_all(audio_vq, spectrograms), encode_all(image_vq, pictures)
    torch.manual_seed(args.seed)
    if start is not None:
        transformer = trainable(start.transformer)
    else:
        transformer = build_transformer(args.size, audio_ids.shape[1], image_ids.shape[1],
                                        audio_vq.config.num_vq_embeddings, image_vq.config.num_vq_embeddings)
    decay, no_decay = [], []
    for name, parameter in transformer.named_parameters():
        (no_decay if parameter.ndim < 2 or "position" in name or "modality" in name or "mask" in name
         else decay).append(parameter)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(transformer), args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        rows = batch_indices(seed, index, args.batch_size, len(audio_ids))
        generator = torch.Generator().manual_seed(seed * 7_368_787 + index)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(index, args.steps, args.warmup, args.lr)
        with accelerator.autocast():
            loss, losses = transformer_loss(transformer, audio_ids[rows].to(accelerator.device),
                                            image_ids[rows].to(accelerator.device), generator, args.mask_mean,
                                            args.task_share)
        update(accelerator, optimizer, loss, [transformer])
        ema.update(accelerator.unwrap_model(transformer))
        return losses

    def preview() -> Preview:
        inner = accelerator.unwrap_model(transformer)
        with as_exported([(inner, ema), (audio_vq, None), (image_vq, None)]):
            return preview_sample(audio_vq, image_vq, inner, args.seed)

    run_loop(accelerator, args, "transformer", args.steps, state, step, log, preview=preview)
    model = accelerator.unwrap_model(transformer)
    ema.copy_to(model)
    return model.eval().requires_grad_(False)


PREVIEW_STEPS = 8  # decoding iterations of a training preview (the paper's 30 at full length)


def preview_sample(audio_vq: VQModel, image_vq: VQModel, transformer, seed: int) -> Preview:
    """`--preview-every`: one picture and its sound generated together (co-generation), PREVIEW_STEPS iterations,
    seed `seed`; the picture is written, the sound (Griffin-Lim) beside it."""
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    pipe = VisualEchoesPipeline(audio_vq, image_vq, transformer).to(next(transformer.parameters()).device)
    output = pipe(task="co_generation", num_inference_steps=PREVIEW_STEPS, generator=torch.Generator().manual_seed(seed))
    return Preview(output.images[0], output.audios[0], output.sample_rate)


# Entry ---------------------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    refuse_lora(args, "visual_echoes")
    check_preview_every(args)
    if not 0.0 <= args.task_share <= 1.0:
        raise ValueError(f"--task-share is a share of each batch in [0, 1], got {args.task_share}")
    start = starting_pipeline(args)
    if start is None and (args.decoder_only or set(args.tokenizers) != set(MODALITIES)):
        raise ValueError("--decoder-only and --tokenizers with one tokenizer fine-tune a trained model: add --init")
    sizes = preset_sizes(args, start)
    set_seed(args.seed)
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and args.stage in ("tokenizers", "all") and log.path.exists():
        log.path.unlink()
    started = time.time()
    spectrograms, pictures = load_pairs(args, sizes)
    data = {"audio": spectrograms, "image": pictures}
    audio_vq, image_vq = (train_tokenizer(args, name, sizes[name], data[name], log, start)
                          if args.stage in ("tokenizers", "all") and name in args.tokenizers
                          else saved_tokenizer(out, name, start) for name in MODALITIES)
    if args.stage in ("transformer", "all"):
        transformer = train_transformer(args, audio_vq, image_vq, spectrograms, pictures, log, start)
        export(out, args, audio_vq, image_vq, transformer)
    elif args.decoder_only:  # the codes did not change: the starting transformer fits the new decoders
        export(out, args, audio_vq, image_vq, start.transformer.float())
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "init": init_record(args), "final": final_losses(log.read()),
               "args": vars(args)}
    (out / f"training_summary_{args.stage}.json").write_text(json.dumps(summary, indent=2))
    return out


def preset_sizes(args: argparse.Namespace, start=None) -> dict[str, TokenizerSize]:
    """The `--size` preset's tokenizer sizes, both codebooks set to `--codebook-size` when given (not with `--init`:
    the starting tokenizers keep their codebooks)."""
    sizes = TOKENIZER_SIZES[args.size]
    if start is not None:
        if args.codebook_size is not None:
            raise ValueError("--codebook-size cannot be combined with --init: the starting tokenizers keep their "
                             "codebooks")
        return {name: replace(size, codebook_size=getattr(start, f"{name}_tokenizer").config.num_vq_embeddings)
                for name, size in sizes.items()}
    if args.codebook_size is None:
        return sizes
    if args.codebook_size < 2:
        raise ValueError(f"--codebook-size must be at least 2, got {args.codebook_size}")
    return {name: replace(size, codebook_size=args.codebook_size) for name, size in sizes.items()}


def saved_tokenizer(out: Path, name: str, start=None) -> VQModel:
    """`--stage transformer`: the tokenizer trained into OUT, else the starting pipeline's."""
    if (out / f"{name}_tokenizer" / "config.json").is_file():
        return VQModel.from_pretrained(out / f"{name}_tokenizer").eval().requires_grad_(False)
    if start is not None:
        return getattr(start, f"{name}_tokenizer").float().eval().requires_grad_(False)
    raise ValueError(f"--stage transformer needs trained tokenizers in {out}; run --stage tokenizers first")


# Starting weights (--init) -----------------------------------------------------------------------------------------


def starting_pipeline(args: argparse.Namespace):
    """The `VisualEchoesPipeline` `--init DIR` names (a folder save_pretrained wrote), or None. Sets `args.size` to
    the preset its networks match (the data is converted at that preset's sizes)."""
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    init = resolve_init(args, "visual_echoes")
    if init is None:
        return None
    if init.kind == "paper":
        raise ValueError("--init paper: the Visual Echoes authors released no weights; use --init DIR")
    announce(init)
    start = VisualEchoesPipeline.from_pretrained(init.path)
    args.size = preset_of(start)
    return start


def preset_of(start) -> str:
    """The `--size` preset whose tokenizers and clip the starting pipeline has, whatever its codebook sizes
    (`--codebook-size`); a ValueError when none fits."""
    for name, sizes in TOKENIZER_SIZES.items():
        fits = all(tuple(getattr(start, f"{m}_tokenizer").config.block_out_channels) == sizes[m].block_out_channels
                   for m in MODALITIES)
        if fits and sizes["image"].width == start.picture_size and sizes["audio"].width == start.audio_frames:
            return name
    raise ValueError("--init: the starting Visual Echoes networks match no --size preset "
                     f"({', '.join(TOKENIZER_SIZES)}), so its data format is unknown")


def trainable(module: torch.nn.Module) -> torch.nn.Module:
    """A starting network in float32, training mode, with gradients."""
    return module.float().train().requires_grad_(True)


def export(out: Path, args, audio_vq: VQModel, image_vq: VQModel, transformer) -> Path:
    """The three networks as one `VisualEchoesPipeline` folder (what the registry and the CLI load)."""
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    pipe = VisualEchoesPipeline(audio_vq, image_vq, transformer,
                                training_record={"size": args.size, "init": init_record(args), "data": args.data,
                                                 "steps": args.steps,
                                                 "tokenizer_steps": args.tokenizer_steps, "seed": args.seed})
    dtype = torch.float16 if args.save_dtype == "fp16" else None
    return pipe.save_pretrained(out, dtype=dtype)
