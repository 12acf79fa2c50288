"""Trainer for Images that Sound's `studio` weights: a shared VAE, a frozen text encoder and two small UNets.

Stages (each resumable, each with its own checkpoints under OUT/checkpoints/<stage>/step-N):

1. `vae`: an `AutoencoderKL` with 8× down-sampling (256 rows → 32 latent rows), trained on pictures AND spectrogram
   images together (the shared latent space), L1 reconstruction + a small KL. Its `scaling_factor` is set to
   1 / std of the latents of the training data, then it is saved to OUT/audio_model/vae (where the pipeline reads it).
2. `unets`: the image UNet (pictures) and the audio UNet (spectrograms), `UNet2DConditionModel`s trained together
   (one optimizer over two disjoint parameter sets: the same as two separate trainings), ε-prediction on the
   Stable Diffusion v1.5 noise schedule, 10 % caption dropout (the empty caption) for classifier-free guidance.
   The data is encoded once by the frozen VAE (posterior mean and std; a fresh latent is drawn every step).

OUT is then written by `ImagesThatSoundPipeline.save_pretrained`, so `ImagesThatSoundPipeline.from_pretrained(OUT)`
loads it as it loads the bundled `assets/models/images_that_sound`.

Fine-tuning (`--init paper|studio|DIR`, `pipelines.train.init`): the starting `ImagesThatSoundPipeline` is
`paper` = Stable Diffusion v1.5 + Auffusion (with its HiFi-GAN) from the local Hugging Face cache (offline; the Hub
when online), `studio` = assets/models/images_that_sound, or a folder `save_pretrained` wrote. Its architecture is
kept (--size is ignored, with a message) and so are its VAE and text encoders (the two models share the VAE's
latents: changing it would break the other model). Only the UNets `--models` names are trained (`audio` alone: a
folder of sounds is enough), stage `unets` only, optimiser fresh. Words of the new captions that a word-level
tokenizer lacks (the studio's) are added with fresh random embeddings (`pipelines.images_that_sound.lora`).
- full fine-tuning (no `--lora-rank`): OUT is the whole pipeline folder, as from scratch;
- `--lora-rank R`: a LoRA (peft) on each trained UNet's attention projections (to_q, to_k, to_v, to_out.0), and
  with `--lora-text-encoder` on its text encoder's (q/k/v/out_proj); OUT holds only `<model>_lora/` (adapter
  safetensors + json naming the base), which `ImagesThatSoundPipeline.load_lora_weights(OUT, model=...)` loads.
`training_summary.json` records "init" (scratch, paper, studio or the path) and the models trained.

The text encoder is a tiny `CLIPTextModel` with RANDOM, FROZEN weights (it is never trained: a fixed embedding of
each word and its position, which the UNets' cross-attention learns to read) and a word-level tokenizer over the
toy captions' vocabulary (`caption_vocabulary()`, plus the words of a folder's captions).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from pipelines.images_that_sound import lora
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
from pipelines.train.data import CaptionedPool, check_enough, read_data, toyworld_pools, write_skipped
from pipelines.train.init import InitSource, announce, init_record, resolve_init

CAPTION_DROPOUT = 0.1
KL_WEIGHT = 1e-5
MAX_TOKENS = 16
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


@dataclass(frozen=True)
class Sizes:
    """Model widths of one preset."""

    vae_channels: tuple[int, ...]
    vae_groups: int
    unet_channels: tuple[int, ...]
    unet_groups: int
    head_dim: int
    text_width: int
    text_layers: int


PRESETS = {
    "studio": Sizes((8, 16, 32, 32), 8, (32, 64), 8, 8, 64, 2),
    "tiny": Sizes((4, 4, 4, 4), 2, (8, 16), 4, 4, 8, 1),
}


# Components ---------------------------------------------------------------------------------------------------------


def build_vae(sizes: Sizes) -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=sizes.vae_channels,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         latent_channels=4, norm_num_groups=sizes.vae_groups, layers_per_block=1, sample_size=256)


def build_unet(sizes: Sizes) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=sizes.unet_channels, layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=sizes.text_width, norm_num_groups=sizes.unet_groups, attention_head_dim=sizes.head_dim)


def build_tokenizer(words: list[str]):
    """Word-level, lower-cased `PreTrainedTokenizerFast`: [PAD]=0, [UNK]=1, then the words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(sorted(set(words)))}
    word_level = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    word_level.normalizer = normalizers.Lowercase()
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="[PAD]", unk_token="[UNK]",
                                   model_max_length=MAX_TOKENS)


def build_text_encoder(sizes: Sizes, vocab_size: int):
    """Tiny random `CLIPTextModel`, frozen (eval mode, no gradients)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=sizes.text_width, intermediate_size=2 * sizes.text_width,
                            num_attention_heads=max(1, sizes.text_width // 16), num_hidden_layers=sizes.text_layers,
                            vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS, pad_token_id=0,
                            bos_token_id=0, eos_token_id=0)
    return CLIPTextModel(config).eval().requires_grad_(False)


def caption_words(pools: tuple[CaptionedPool, ...]) -> list[str]:
    from pipelines.toyworld.captioned import caption_vocabulary

    words = {w.lower() for w in caption_vocabulary()}
    for pool in pools:
        words.update(w.lower() for caption in pool.captions for w in caption.split())
    return sorted(words)


@torch.no_grad()
def embed_captions(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """[N, MAX_TOKENS, width], tokenized exactly as the pipeline does (pad to max length, no attention mask)."""
    tokens = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    return text_encoder(tokens.input_ids)[0]


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """[N, H, W] in [0, 1] -> [N, 3, H, W] in [-1, 1] (grayscale repeated on RGB, as the pipeline decodes)."""
    return torch.from_numpy(images).float().mul(2).sub(1).unsqueeze(1).repeat(1, 3, 1, 1)


def crop_rows(x: torch.Tensor, rows: int, seed: int, step: int) -> torch.Tensor:
    """A random band of `rows` rows (one offset per step; the VAE is convolutional, so it trains on bands)."""
    if not rows or rows >= x.shape[-2]:
        return x
    top = int(torch.randint(0, x.shape[-2] - rows + 1, (1,), generator=torch.Generator().manual_seed(seed + step)))
    return x[..., top : top + rows, :]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This trainer's options (the common ones come from `pipelines.train.__main__`)."""
    parser.add_argument("--size", default="studio", choices=("studio", "tiny"),
                        help="model size preset (ignored with --init: the starting weights fix the architecture)")
    parser.add_argument("--steps", type=int, default=1000, help="UNet training steps")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default: --steps)")
    parser.add_argument("--batch-size", type=int, default=64, help="UNet batch (per model)")
    parser.add_argument("--vae-batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="UNet (or LoRA) learning rate (AdamW)")
    parser.add_argument("--vae-crop-rows", type=int, default=128,
                        help="the VAE trains on random bands of this many rows (0: whole 256-row images)")
    parser.add_argument("--vae-lr", type=float, default=5e-4)
    parser.add_argument("--width", type=int, default=64, help="pixel columns (multiple of 64); rows are always 256")
    parser.add_argument("--pool", type=int, default=1024, help="toy-world samples generated per kind")
    parser.add_argument("--classes", default="core", choices=("core", "all"), help="toy-world classes")
    parser.add_argument("--models", default="image,audio",
                        help="which UNets train: image,audio (from scratch: always both), image, or audio (with "
                             "--init: a folder of sounds alone fine-tunes the audio model)")
    parser.add_argument("--caption", default=None,
                        help="one caption for every file of a folder without captions.jsonl (default: file names)")
    parser.add_argument("--lora-text-encoder", action="store_true",
                        help="with --lora-rank: also a LoRA on the trained models' text encoders")
    add_preview_argument(parser)


# Training -----------------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Path:
    """From scratch: every stage, then the loadable pipeline folder. With --init: fine-tune the chosen UNets of the
    starting weights (fully, or a LoRA), then the pipeline folder or the adapters. Plus the loss log and picture."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models, init = check_arguments(args)
    set_seed(args.seed)
    pictures, sounds = load_pools(args, models)
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    started = time.time()
    if init is None:
        train_from_scratch(args, pictures, sounds, log)
    else:
        fine_tune(args, init, models, {"image": pictures, "audio": sounds}, log)
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "init": init_record(args), "models": list(models),
               "lora_rank": args.lora_rank, "final": final_losses(log.read()), "args": vars(args)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return out


def check_arguments(args: argparse.Namespace) -> tuple[tuple[str, ...], InitSource | None]:
    """(the models to train, the starting point), or a ValueError for a combination that makes no sense."""
    if args.width % 64 or args.width < 64:
        raise ValueError(f"--width must be a positive multiple of 64 pixels, got {args.width}")
    models = tuple(m for m in ("image", "audio") if m in {part.strip() for part in args.models.split(",")})
    if not models or set(args.models.replace(" ", "").split(",")) - {"image", "audio"}:
        raise ValueError(f"--models must be image,audio, image or audio; got {args.models!r}")
    init = resolve_init(args, "images_that_sound")
    if args.lora_rank < 0:
        raise ValueError(f"--lora-rank must be 0 (full fine-tuning) or a positive rank, got {args.lora_rank}")
    if init is None and (models != ("image", "audio") or args.lora_rank):
        raise ValueError("training from scratch makes both models in full (their VAE learns pictures and sounds "
                         "together): give --init paper|studio|DIR to fine-tune one model or to train a LoRA")
    if args.lora_text_encoder and not args.lora_rank:
        raise ValueError("--lora-text-encoder needs --lora-rank R (a LoRA on the text encoder)")
    check_preview_every(args)
    return models, init


def load_pools(args: argparse.Namespace, models: tuple[str, ...]) -> tuple[CaptionedPool, CaptionedPool]:
    """The toy world, or a folder / zip (bad files skipped and listed in OUT/skipped.json; too little data for a
    model to train is a ValueError saying how much is needed)."""
    if args.data == "toyworld":
        return toyworld_pools(args.pool, args.seed, args.width, args.classes)
    data = read_data(args.data, args.width, args.caption)
    write_skipped(data, Path(args.out))
    check_enough(data, tuple("image" if m == "image" else "sound" for m in models))
    return data.pictures, data.sounds


def train_from_scratch(args, pictures: CaptionedPool, sounds: CaptionedPool, log: LossLog) -> None:
    """Stage 1 (the VAE), stage 2 (both UNets, frozen random text encoder), then the pipeline folder."""
    sizes = PRESETS[args.size]
    tokenizer = build_tokenizer(caption_words((pictures, sounds)))
    torch.manual_seed(args.seed)
    text_encoder = build_text_encoder(sizes, len(tokenizer))
    vae = train_vae(args, sizes, pictures, sounds, log)
    scale = vae.config.scaling_factor
    empty = embed_captions(tokenizer, text_encoder, [""])[0]
    torch.manual_seed(args.seed + 1)
    trainees = [Trainee(name, build_unet(sizes), tuple(x * scale for x in encode_all(vae, to_model_input(pool.images))),
                        embed_captions(tokenizer, text_encoder, pool.captions), empty)
                for name, pool in (("image", pictures), ("audio", sounds))]
    def pipeline():
        return assemble(vae, text_encoder, tokenizer, (trainees[0].unet, trainees[1].unet))

    sample = PreviewSample(pipeline, preview_prompts(pictures, sounds), ("image", "audio"), args)
    image_unet, audio_unet = train_unets(args, trainees, log, sample)
    export(Path(args.out), args, vae, text_encoder, tokenizer, (image_unet, audio_unet))


def train_vae(args, sizes: Sizes, pictures: CaptionedPool, sounds: CaptionedPool, log: LossLog) -> AutoencoderKL:
    """Stage 1: the shared autoencoder on pictures and spectrograms (half of each batch from each)."""
    out = Path(args.out)
    if args.resume and stage_done(out, "vae"):
        return AutoencoderKL.from_pretrained(out / "audio_model" / "vae", torch_dtype=torch.float32)
    torch.manual_seed(args.seed)
    vae = VAEObjective(build_vae(sizes))
    data = to_model_input(np.concatenate([pictures.images, sounds.images]))
    owner = np.concatenate([np.zeros(len(pictures)), np.ones(len(sounds))])
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    vae, optimizer = accelerator.prepare(vae, optimizer)
    state, ema = TrainState(), EMA(accelerator.unwrap_model(vae).vae, args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)
    pools = [np.flatnonzero(owner == 0), np.flatnonzero(owner == 1)]
    half = max(1, args.vae_batch_size // 2)

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        chosen = [pool[batch_indices(seed + k, index, half, len(pool)).numpy()] for k, pool in enumerate(pools)]
        x = crop_rows(data[np.concatenate(chosen)], args.vae_crop_rows, seed, index).to(accelerator.device)
        with accelerator.autocast():
            reconstruction, kl = vae(x)
        loss = reconstruction + KL_WEIGHT * kl
        update(accelerator, optimizer, loss, [vae])
        ema.update(accelerator.unwrap_model(vae).vae)
        return {"loss": loss.item(), "l1": reconstruction.item(), "kl": kl.item()}

    run_loop(accelerator, args, "vae", args.vae_steps or args.steps, state, step, log)
    model = accelerator.unwrap_model(vae).vae
    ema.copy_to(model)
    model.register_to_config(scaling_factor=latent_scale(model, data))
    save_module(model, out / "audio_model" / "vae")
    return model.eval().requires_grad_(False)


class VAEObjective(torch.nn.Module):
    """Wraps the VAE so one forward (the thing `accelerate` wraps for DDP) returns (L1 reconstruction, KL)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample
        return F.l1_loss(reconstruction.float(), x), posterior.kl().mean() / x[0].numel()



@torch.no_grad()
def encode_all(vae: AutoencoderKL, data: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every item, unscaled."""
    means, stds = [], []
    for chunk in data.split(batch):
        posterior = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def latent_scale(vae: AutoencoderKL, data: torch.Tensor) -> float:
    """1 / std of the training latents (Stable Diffusion's 0.18215 is this number for its own VAE)."""
    mean, std = encode_all(vae.eval(), data)
    return float(1.0 / torch.sqrt(mean.var() + std.pow(2).mean()))


@dataclass
class Trainee:
    """One UNet to train and its data: latents (mean, std; scaled), caption inputs (text embeddings [N, L, D], or
    token ids [N, L] when its text encoder trains too), the empty caption's, and that text encoder."""

    name: str
    unet: UNet2DConditionModel
    latents: tuple[torch.Tensor, torch.Tensor]
    texts: torch.Tensor
    empty: torch.Tensor
    text_encoder: torch.nn.Module | None = None


class UNetObjective(torch.nn.Module):
    """The UNets being trained (`image_unet`, `audio_unet`, and a `<name>_text_encoder` that trains) in one module:
    ε-prediction MSE of each on its own batch."""

    def __init__(self, trainees: list[Trainee]) -> None:
        super().__init__()
        self.names = [t.name for t in trainees]
        for trainee in trainees:
            self.add_module(f"{trainee.name}_unet", trainee.unet)
            if trainee.text_encoder is not None:
                self.add_module(f"{trainee.name}_text_encoder", trainee.text_encoder)

    def forward(self, batches: dict[str, tuple]) -> dict[str, torch.Tensor]:
        losses = {}
        for name, (noisy, t, text, noise) in batches.items():
            if not text.is_floating_point():  # token ids: the text encoder trains (LoRA)
                text = getattr(self, f"{name}_text_encoder")(text)[0]
            unet = getattr(self, f"{name}_unet")
            losses[name] = F.mse_loss(unet(noisy, t, encoder_hidden_states=text).sample.float(), noise)
        return losses


def noisy_batch(latents: tuple[torch.Tensor, torch.Tensor], texts: torch.Tensor, empty: torch.Tensor,
                scheduler: DDPMScheduler, seed: int, step: int, size: int, device) -> tuple:
    """(noisy latents, timesteps, captions with 10 % dropped to the empty caption, noise) for one step."""
    mean, std = latents
    picked = batch_indices(seed, step, size, len(mean))
    generator = torch.Generator().manual_seed(seed * 7919 + step)
    clean = mean[picked] + std[picked] * torch.randn(mean[picked].shape, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator)
    drop = torch.rand(size, generator=generator) < CAPTION_DROPOUT
    text = torch.where(drop.view(-1, *[1] * (texts.dim() - 1)), empty, texts[picked])
    noisy = scheduler.add_noise(clean, noise, t)
    return tuple(v.to(device) for v in (noisy, t, text, noise))


def train_unets(args, trainees: list[Trainee], log: LossLog, sample: PreviewSample | None = None
                ) -> list[UNet2DConditionModel]:
    """Stage `unets`: every trainee's UNet (its trainable parameters: all, or its LoRA) on its own data, one
    optimizer; previews (`--preview-every`) from `sample` with the EMA weights; the EMA weights are copied in at the
    end."""
    scheduler = DDPMScheduler(**{k: v for k, v in SD_SCHEDULE.items() if k != "set_alpha_to_one"})
    model = UNetObjective(trainees)
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)
    state = TrainState()
    tracked = [getattr(inner, f"{t.name}_{part}") for t in trainees for part in ("unet", "text_encoder")
               if hasattr(inner, f"{t.name}_{part}")]
    emas = [EMA(module, args.ema_decay) for module in tracked]
    accelerator.register_for_checkpointing(state, *emas)
    data_offsets = {"image": 10, "audio": 20}  # the batch seeds of the original two-model trainer

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        batches = {t.name: noisy_batch(t.latents, t.texts, t.empty, scheduler, seed + data_offsets[t.name], index,
                                       args.batch_size, accelerator.device) for t in trainees}
        with accelerator.autocast():
            losses = model(batches)
        update(accelerator, optimizer, sum(losses.values()), [model])
        for ema, module in zip(emas, tracked):
            ema.update(module)
        return {f"{name}_loss": loss.item() for name, loss in losses.items()}

    def preview() -> Preview:
        with as_exported(list(zip(tracked, emas))):
            return sample()

    run_loop(accelerator, args, "unets", args.steps, state, step, log, preview=preview if sample else None)
    for ema, module in zip(emas, tracked):
        ema.copy_to(module)
    return [getattr(inner, f"{t.name}_unet").eval() for t in trainees]


def export(out: Path, args, vae, text_encoder, tokenizer, unets) -> None:
    """The trained parts as one `ImagesThatSoundPipeline`, saved by its `save_pretrained`: OUT is then exactly the
    folder `ImagesThatSoundPipeline.from_pretrained(OUT)` loads (weights in `--save-dtype`; no vocoder: the toy
    models use Griffin-Lim). Casts the trained modules: call it last."""
    save_pipeline(assemble(vae, text_encoder, tokenizer, unets), out, args)


def assemble(vae, text_encoder, tokenizer, unets):
    """The trained parts as one `ImagesThatSoundPipeline` (one text encoder and tokenizer for both models)."""
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    image_unet, audio_unet = unets
    return ImagesThatSoundPipeline(vae=vae, image_unet=image_unet, image_text_encoder=text_encoder,
                                   image_tokenizer=tokenizer, audio_unet=audio_unet, audio_text_encoder=text_encoder,
                                   audio_tokenizer=tokenizer, scheduler=DDIMScheduler(**SD_SCHEDULE))


def save_pipeline(pipe, out: Path, args) -> None:
    pipe.to(dtype=torch.float16 if args.save_dtype == "fp16" else torch.float32).save_pretrained(out)


# Fine-tuning (--init) -------------------------------------------------------------------------------------------------


def load_start(init: InitSource):
    """The starting `ImagesThatSoundPipeline` (float32, CPU): `paper` = Stable Diffusion v1.5 + Auffusion (+ its
    HiFi-GAN) from the local Hugging Face cache (the Hub when online); `studio` or a folder: its own layout."""
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    if init.kind == "paper":
        from pipelines import images_that_sound as its
        from pipelines.hub import weights_missing

        why = (weights_missing(its.PAPER_IMAGE_MODEL, its.PAPER_IMAGE_FILES, offline=False)
               or weights_missing(its.PAPER_AUDIO_MODEL, its.PAPER_AUDIO_FILES, offline=False))
        if why:
            raise ValueError(f"--init paper: the paper's weights {why}")
        return ImagesThatSoundPipeline.from_pretrained(image_model=its.PAPER_IMAGE_MODEL,
                                                       audio_model=its.PAPER_AUDIO_MODEL)
    return ImagesThatSoundPipeline.from_pretrained(init.path)


@dataclass
class Base:
    """What an adapter applies to (recorded in adapter.json): the start, the UNet's size, the vocabulary's size."""

    init: str
    unet_parameters: int
    vocab_size: int
    added_words: list[str]
    added_embeddings: torch.Tensor | None


def fine_tune(args, init: InitSource, models: tuple[str, ...], pools: dict[str, CaptionedPool], log: LossLog) -> None:
    """Train the chosen models of the starting pipeline (the VAE stays: the other model shares its latents), then
    write the pipeline folder (full fine-tuning) or `OUT/<model>_lora/` adapters (--lora-rank)."""
    announce(init)
    start = load_start(init)
    start.vae.eval().requires_grad_(False)
    for module in start.networks():
        module.requires_grad_(False)
    bases, trainees = {}, []
    for name in models:
        bases[name] = prepare_model(args, start, name, pools[name])
        trainees.append(make_trainee(args, start, name, pools[name]))
    sample = PreviewSample(lambda: start, preview_prompts(pools["image"], pools["audio"]), models, args)
    train_unets(args, trainees, log, sample)
    out = Path(args.out)
    if args.lora_rank:
        for trainee in trainees:
            save_trained_adapter(out, args, trainee, bases[trainee.name])
    else:
        save_pipeline(start, out, args)


def prepare_model(args, start, name: str, pool: CaptionedPool) -> Base:
    """Add the captions' new words (word-level tokenizers), then a LoRA or make the UNet trainable."""
    unet, _, tokenizer = start.model_parts(name)
    text_encoder = start.own_text_encoder(name)
    base = Base(init_record(args), sum(p.numel() for p in unet.parameters()), len(tokenizer), [], None)
    words = lora.unknown_words(tokenizer, pool.captions)
    if words:
        rows = lora.new_embeddings(text_encoder, len(words), seed=args.seed + len(tokenizer))
        setattr(start, f"{name}_tokenizer", lora.grown_tokenizer(tokenizer, words))
        lora.append_embeddings(text_encoder, rows)
        base.added_words, base.added_embeddings = words, rows
        print(f"[init] {name} model: new words {words} added to its vocabulary")
    text_encoder.requires_grad_(False)
    if args.lora_rank:
        lora.add_lora(unet, args.lora_rank, lora.UNET_TARGETS)
        if args.lora_text_encoder:
            lora.add_lora(text_encoder, args.lora_rank, lora.TEXT_TARGETS)
    else:
        unet.requires_grad_(True)
    unet.train()
    return base


def make_trainee(args, start, name: str, pool: CaptionedPool) -> Trainee:
    """The model's data as the starting VAE encodes it, and its captions (ids when its text encoder trains)."""
    unet, text_encoder, tokenizer = start.model_parts(name)
    scale = start.vae.config.scaling_factor
    latents = tuple(x * scale for x in encode_all(start.vae, to_model_input(pool.images)))
    if args.lora_text_encoder:
        ids = caption_ids(tokenizer, pool.captions)
        return Trainee(name, unet, latents, ids, caption_ids(tokenizer, [""])[0], text_encoder)
    texts = embed_captions(tokenizer, text_encoder, pool.captions)
    return Trainee(name, unet, latents, texts, embed_captions(tokenizer, text_encoder, [""])[0])


def caption_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids [N, L], as the pipeline tokenizes (pad to max length)."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def save_trained_adapter(out: Path, args, trainee: Trainee, base: Base) -> Path:
    """OUT/<model>_lora/: the LoRA matrices, the added words' embeddings, and what they apply to."""
    tensors = {f"unet.{k}": v for k, v in lora.lora_state(trainee.unet).items()}
    if trainee.text_encoder is not None:
        tensors |= {f"text_encoder.{k}": v for k, v in lora.lora_state(trainee.text_encoder).items()}
    if base.added_embeddings is not None:
        tensors["added_embeddings"] = base.added_embeddings.float()
    if args.save_dtype == "fp16":
        tensors = {k: v.half() for k, v in tensors.items()}
    config = {"model": trainee.name, "rank": args.lora_rank, "alpha": args.lora_rank,
              "unet_targets": list(lora.UNET_TARGETS),
              "text_encoder_targets": list(lora.TEXT_TARGETS) if trainee.text_encoder is not None else [],
              "added_words": base.added_words,
              "base": {"init": base.init, "unet_parameters": base.unet_parameters, "vocab_size": base.vocab_size}}
    return lora.save_adapter(out / f"{trainee.name}_lora", config, tensors)


# Previews (--preview-every) -------------------------------------------------------------------------------------------

PREVIEW_STEPS = 10  # DDIM steps of a training preview (the tab's finished-run sample uses as many)


def preview_prompts(pictures: CaptionedPool, sounds: CaptionedPool) -> tuple[str, str]:
    """(image prompt, audio prompt) of the previews: the first picture's and the first sound's captions (the other's
    when a fine-tune has only one kind)."""
    image = pictures.captions[0] if len(pictures) else ""
    audio = sounds.captions[0] if len(sounds) else image
    return image or audio, audio


@dataclass
class PreviewSample:
    """One preview of the models being trained: a sample of the pipeline `pipeline()` returns, PREVIEW_STEPS DDIM
    steps, seed `--seed`, Griffin-Lim, at the training width. Both models trained: a composed sample (the paper's
    warm starts); one model: that model alone (the other's warm start 0). The picture is the spectrogram image."""

    pipeline: Callable[[], object]
    prompts: tuple[str, str]
    models: tuple[str, ...]
    args: argparse.Namespace

    def __call__(self) -> Preview:
        warm = {"image": 0.9 if "audio" in self.models else 1.0, "audio": 1.0}
        warm = {name: value if name in self.models else 0.0 for name, value in warm.items()}
        pipe = self.pipeline()
        pipe.to(next(getattr(pipe, f"{self.models[0]}_unet").parameters()).device)  # where accelerate put the UNets
        pipe.set_progress_bar_config(disable=True)  # the run's own bar is the one to read
        output = pipe(image_prompt=self.prompts[0], audio_prompt=self.prompts[1],
                      num_inference_steps=PREVIEW_STEPS, warm_start_image=warm["image"],
                      warm_start_audio=warm["audio"], latent_width=self.args.width // 8,
                      generator=torch.Generator().manual_seed(self.args.seed), vocoder="griffinlim")
        return Preview(np.asarray(output.image[0]), output.audio[0], output.sample_rate)
