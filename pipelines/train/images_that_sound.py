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

The text encoder is a tiny `CLIPTextModel` with RANDOM, FROZEN weights (it is never trained: a fixed embedding of
each word and its position, which the UNets' cross-attention learns to read) and a word-level tokenizer over the
toy captions' vocabulary (`caption_vocabulary()`, plus the words of a folder's captions).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from pipelines.train.common import (
    EMA, LossLog, TrainState, batch_indices, data_seed, final_losses, make_accelerator, plot_losses, run_loop,
    stage_done, update,
)
from pipelines.train.data import CaptionedPool, folder_pools, toyworld_pools

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
    parser.add_argument("--size", default="studio", choices=("studio", "tiny"), help="model size preset")
    parser.add_argument("--steps", type=int, default=1000, help="UNet training steps")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default: --steps)")
    parser.add_argument("--batch-size", type=int, default=64, help="UNet batch (per model)")
    parser.add_argument("--vae-batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="UNet learning rate (AdamW)")
    parser.add_argument("--vae-crop-rows", type=int, default=128,
                        help="the VAE trains on random bands of this many rows (0: whole 256-row images)")
    parser.add_argument("--vae-lr", type=float, default=5e-4)
    parser.add_argument("--width", type=int, default=64, help="pixel columns (multiple of 64); rows are always 256")
    parser.add_argument("--pool", type=int, default=1024, help="toy-world samples generated per kind")
    parser.add_argument("--classes", default="core", choices=("core", "all"), help="toy-world classes")


# Training -----------------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Path:
    """Run every stage, then write the two loadable model folders and the loss log and picture."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.width % 64 or args.width < 64:
        raise ValueError(f"--width must be a positive multiple of 64 pixels, got {args.width}")
    sizes = PRESETS[args.size]
    set_seed(args.seed)
    pictures, sounds = load_pools(args)
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    tokenizer = build_tokenizer(caption_words((pictures, sounds)))
    torch.manual_seed(args.seed)
    text_encoder = build_text_encoder(sizes, len(tokenizer))
    started = time.time()
    vae = train_vae(args, sizes, pictures, sounds, log)
    unets = train_unets(args, sizes, vae, tokenizer, text_encoder, pictures, sounds, log)
    export(out, args, vae, text_encoder, tokenizer, unets)
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "final": final_losses(log.read()), "args": vars(args)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return out


def load_pools(args: argparse.Namespace) -> tuple[CaptionedPool, CaptionedPool]:
    if args.data == "toyworld":
        return toyworld_pools(args.pool, args.seed, args.width, args.classes)
    return folder_pools(args.data, args.width)





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
    model.save_pretrained(out / "audio_model" / "vae", safe_serialization=True)
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


class UNetObjective(torch.nn.Module):
    """Both UNets in one module: ε-prediction MSE of each on its own batch."""

    def __init__(self, image_unet: UNet2DConditionModel, audio_unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.image_unet, self.audio_unet = image_unet, audio_unet

    def forward(self, image_batch: tuple, audio_batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(F.mse_loss(unet(noisy, t, encoder_hidden_states=text).sample.float(), noise)
                     for unet, (noisy, t, text, noise) in ((self.image_unet, image_batch),
                                                           (self.audio_unet, audio_batch)))


def noisy_batch(latents: tuple[torch.Tensor, torch.Tensor], texts: torch.Tensor, empty: torch.Tensor,
                scheduler: DDPMScheduler, seed: int, step: int, size: int, device) -> tuple:
    """(noisy latents, timesteps, text embeddings with 10 % dropped to the empty caption, noise) for one step."""
    mean, std = latents
    picked = batch_indices(seed, step, size, len(mean))
    generator = torch.Generator().manual_seed(seed * 7919 + step)
    clean = mean[picked] + std[picked] * torch.randn(mean[picked].shape, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator)
    drop = torch.rand(size, generator=generator) < CAPTION_DROPOUT
    text = torch.where(drop[:, None, None], empty, texts[picked])
    noisy = scheduler.add_noise(clean, noise, t)
    return tuple(v.to(device) for v in (noisy, t, text, noise))


def train_unets(args, sizes: Sizes, vae: AutoencoderKL, tokenizer, text_encoder, pictures: CaptionedPool,
                sounds: CaptionedPool, log: LossLog) -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    """Stage 2: the image and the audio UNet on the frozen VAE's latents of their own data."""
    scale = vae.config.scaling_factor
    latents = [tuple(x * scale for x in encode_all(vae, to_model_input(pool.images))) for pool in (pictures, sounds)]
    texts = [embed_captions(tokenizer, text_encoder, pool.captions) for pool in (pictures, sounds)]
    empty = embed_captions(tokenizer, text_encoder, [""])[0]
    scheduler = DDPMScheduler(**{k: v for k, v in SD_SCHEDULE.items() if k != "set_alpha_to_one"})
    torch.manual_seed(args.seed + 1)
    model = UNetObjective(build_unet(sizes), build_unet(sizes))
    accelerator = make_accelerator(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)
    state = TrainState()
    emas = [EMA(inner.image_unet, args.ema_decay), EMA(inner.audio_unet, args.ema_decay)]
    accelerator.register_for_checkpointing(state, *emas)

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        batches = [noisy_batch(latents[k], texts[k], empty, scheduler, seed + 10 * (k + 1), index,
                               args.batch_size, accelerator.device) for k in (0, 1)]
        with accelerator.autocast():
            image_loss, audio_loss = model(*batches)
        update(accelerator, optimizer, image_loss + audio_loss, [model])
        emas[0].update(inner.image_unet)
        emas[1].update(inner.audio_unet)
        return {"image_loss": image_loss.item(), "audio_loss": audio_loss.item()}

    run_loop(accelerator, args, "unets", args.steps, state, step, log)
    emas[0].copy_to(inner.image_unet)
    emas[1].copy_to(inner.audio_unet)
    return inner.image_unet, inner.audio_unet


def export(out: Path, args, vae, text_encoder, tokenizer, unets) -> None:
    """The trained parts as one `ImagesThatSoundPipeline`, saved by its `save_pretrained`: OUT is then exactly the
    folder `ImagesThatSoundPipeline.from_pretrained(OUT)` loads (weights in `--save-dtype`; no vocoder: the toy
    models use Griffin-Lim). Casts the trained modules: call it last."""
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    image_unet, audio_unet = unets
    pipe = ImagesThatSoundPipeline(vae=vae, image_unet=image_unet, image_text_encoder=text_encoder,
                                   image_tokenizer=tokenizer, audio_unet=audio_unet, audio_text_encoder=text_encoder,
                                   audio_tokenizer=tokenizer, scheduler=DDIMScheduler(**SD_SCHEDULE))
    pipe.to(dtype=torch.float16 if args.save_dtype == "fp16" else torch.float32).save_pretrained(out)

