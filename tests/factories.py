"""Tiny components and shared helpers for the tests, in one place (the diffusers `get_dummy_components` habit).

Every builder makes small random models in code, saved in the layouts the real weights use, so the same loading
code runs as for the `paper` and `studio` weights. Nothing here touches the network.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    IFPipeline,
    IFSuperResolutionPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from pipelines.images_that_sound import PAPER_IF_STAGE_I, PAPER_IF_STAGE_II
from pipelines.vocoders.hifigan import HiFiGAN, HiFiGANConfig

ROOT = Path(__file__).resolve().parent.parent


EXAMPLES = ROOT / "assets" / "examples"
MM_DIFFUSION_GOLDEN = ROOT / "tests" / "data" / "mm_diffusion"  # golden tensors from the official MM-Diffusion code


def cached_repo(cache: Path, repo_id: str) -> Path:
    """An entry for `repo_id` in the Hugging Face cache layout (refs/main -> snapshot); returns the empty snapshot."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


class FakeRequest:
    """Stands in for gr.Request when a handler is called without a server."""

    def __init__(self, session_hash: str = "test-session"):
        self.session_hash = session_hash


# Auffusion's layout (256 mels, hop 5·4·4·2 = 160) with tiny channel counts.
TINY = {"resblock": "1", "num_mels": 256, "upsample_rates": [5, 4, 4, 2], "upsample_kernel_sizes": [11, 8, 8, 4],
        "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5],
                                                                                                    [1, 3, 5]],
        "sampling_rate": 16000, "segment_size": 8192}


def weight_normed_reference(config: dict) -> HiFiGAN:
    """A HiFi-GAN whose convs carry torch's old-style weight norm (`weight_g`, `weight_v`), as in training."""
    torch.manual_seed(0)
    model = HiFiGAN(HiFiGANConfig.from_dict(config))
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            with torch.no_grad():  # random gains, so folding g·v/‖v‖ is really tested
                module.weight.mul_(torch.rand(module.weight.shape[0], *[1] * (module.weight.dim() - 1)) + 0.5)
            torch.nn.utils.weight_norm(module)
    return model.eval()


def write_auffusion_vocoder(folder, config: dict) -> HiFiGAN:
    """Save a reference model as Auffusion does: vocoder/config.json + vocoder/vocoder.pt {'generator': ...}."""
    reference = weight_normed_reference(config)
    vocoder = folder / "vocoder"
    vocoder.mkdir(parents=True)
    (vocoder / "config.json").write_text(json.dumps(config))
    state = reference.state_dict()
    assert any(key.endswith("weight_g") for key in state)
    torch.save({"generator": state}, vocoder / "vocoder.pt")
    return reference


WORDS = ["[PAD]", "[UNK]", "a", "castle", "with", "bell", "towers", "ringing", "dog", "barking", "tiger"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="[PAD]", unk_token="[UNK]",
                                   model_max_length=8)


def tiny_model_folder(folder, seed: int) -> None:
    """A Stable-Diffusion-layout folder of tiny random components (unet, vae, text encoder, tokenizer, scheduler)."""
    torch.manual_seed(seed)
    UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=4, attention_head_dim=2,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(  # four blocks: 8× down-sampling, as Stable Diffusion's VAE
        block_out_channels=(4, 4, 4, 4), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=2, layers_per_block=1,
    ).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                                 vocab_size=len(WORDS), max_position_embeddings=8)).save_pretrained(
        folder / "text_encoder")
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=8).save_pretrained(folder / "tokenizer")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")  # SD v1.5's config


def tiny_clip(folder) -> None:
    torch.manual_seed(0)
    text = dict(vocab_size=len(WORDS), hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                max_position_embeddings=8)
    vision = dict(image_size=32, patch_size=16, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                  num_hidden_layers=1)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def tiny_clap(folder) -> None:
    torch.manual_seed(0)
    audio = dict(depths=[1, 1], num_attention_heads=[1, 1], hidden_size=16, patch_embeds_hidden_size=8,
                 projection_dim=8)
    text = dict(vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                intermediate_size=16, projection_dim=8, max_position_embeddings=16)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(folder)


PIECES = ["<pad>", "</s>", "<unk>", "▁a", "▁colorful", "▁photo", "▁of", "▁castle", "▁kittens", "▁bell", "▁with"]


def tiny_if_unet(super_resolution: bool) -> UNet2DConditionModel:
    """IF's UNet layout at toy size: stage I (3 -> 6 channels) or the stage II up-sampler (6 -> 6, noise level)."""
    torch.manual_seed(1 if super_resolution else 0)
    up_sampler = dict(class_embed_type="timestep", mid_block_scale_factor=1.414, time_embedding_act_fn="gelu",
                      time_embedding_dim=16) if super_resolution else {}
    plain = 2 if super_resolution else 1  # attention only at the lowest resolution, as in IF's up-sampler
    return UNet2DConditionModel(
        sample_size=16, layers_per_block=1, block_out_channels=(8,) * plain + (16,), norm_num_groups=4,
        down_block_types=("ResnetDownsampleBlock2D",) * plain + ("SimpleCrossAttnDownBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D",) + ("ResnetUpsampleBlock2D",) * plain,
        in_channels=6 if super_resolution else 3, out_channels=6, cross_attention_dim=32, encoder_hid_dim=32,
        attention_head_dim=4, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu", **up_sampler)


def if_scheduler() -> DDPMScheduler:
    """IF's sampling scheduler: cosine betas, epsilon with learned-range variance, dynamic thresholding."""
    return DDPMScheduler(beta_schedule="squaredcos_cap_v2", thresholding=True, dynamic_thresholding_ratio=0.95,
                         sample_max_value=1.5, prediction_type="epsilon", variance_type="learned_range")


def tiny_if_folders(stage_1, stage_2) -> None:
    """Save tiny IF stage I and stage II pipelines (fp16 variant files, as on the Hub) into two folders."""
    tokenizer = T5Tokenizer(vocab=[(piece, -float(i)) for i, piece in enumerate(PIECES)], extra_ids=0)
    torch.manual_seed(2)
    encoder = T5EncoderModel(T5Config(vocab_size=len(PIECES), d_model=32, d_kv=8, d_ff=16, num_layers=1, num_heads=2,
                                      relative_attention_num_buckets=8))
    unused = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    IFPipeline(tokenizer=tokenizer, text_encoder=encoder, unet=tiny_if_unet(False), scheduler=if_scheduler(),
               **unused).to(torch.float16).save_pretrained(stage_1, variant="fp16")
    IFSuperResolutionPipeline(tokenizer=None, text_encoder=None, unet=tiny_if_unet(True), scheduler=if_scheduler(),
                              image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
                              **unused).to(torch.float16).save_pretrained(stage_2, variant="fp16")


def place_in_cache(hub_cache, if_folders) -> None:
    for repo_id, folder in zip((PAPER_IF_STAGE_I, PAPER_IF_STAGE_II), if_folders):
        shutil.copytree(folder, cached_repo(hub_cache, repo_id), dirs_exist_ok=True)


def write_glass_video(path: Path) -> float:
    """A toy-world glass object hitting the floor, written as an mp4 (30 fps); returns the time of the hit."""
    from moviepy import ImageSequenceClip

    from pipelines.toyworld import sample

    clip = sample("impact", 1, seed=123, materials=("glass",))
    frames = [(frame * 255).astype(np.uint8) for frame in clip.frames[0]]
    ImageSequenceClip(frames, fps=clip.fps).write_videofile(str(path), codec="libx264", audio=False, logger=None,
                                                            preset="ultrafast", ffmpeg_params=["-pix_fmt", "yuv420p"])
    return float(clip.hit_time_s[0])


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter (zero-initialised output layers included) a random value, so every path is live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


# The shared pipeline contract (tests/pipelines/test_contract.py) ------------------------------------------------------
@dataclass(frozen=True)
class ContractCase:
    """How the contract test drives one generator's pipeline on tiny components.

    `build(folder)`: a tiny pipeline; `call_kwargs(seeds)`: `__call__` keyword arguments making one sample per seed
    (one CPU generator each, few steps, no callback); `samples(output)`: the output as one float array whose first
    axis is the sample.
    """

    build: Callable[[Path], Any]
    call_kwargs: Callable[[list[int]], dict]
    samples: Callable[[Any], np.ndarray]


CONTRACT_CASES: dict[str, ContractCase] = {}
