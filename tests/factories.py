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


# MM-Diffusion (Sounding Video) ---------------------------------------------------------------------------------------
# The trainer's `tiny` network (4 frames of 8×8, 0.4 s of 2 kHz audio) without the random shift, so a batch equals its
# samples run alone; a 16 → 64 up-sampler.
MM_DIFFUSION_TINY_FLAGS = dict(
    video_size="4,3,8,8", audio_size="1,800", num_channels=32, channel_mult="1,2", num_res_blocks=1,
    cross_attention_resolutions="2", cross_attention_windows="1", cross_attention_shift=False,
    video_attention_resolutions="2", audio_attention_resolutions="-1", num_head_channels=32,
    use_scale_shift_norm=True, resblock_updown=True, learn_sigma=False)
MM_DIFFUSION_TINY_SR_FLAGS = dict(large_size=64, small_size=16, sr_num_channels=32, sr_num_res_blocks=1,
                                  sr_attention_resolutions="8")


def tiny_mm_diffusion(folder: Path | None = None):
    """A tiny `MMDiffusionPipeline` with random weights (every layer live) at 2 kHz, 10 fps."""
    from pipelines.mm_diffusion.modeling_mm_diffusion import MMDiffusionUNet
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline

    unet = randomize_(MMDiffusionUNet.from_official_flags(**MM_DIFFUSION_TINY_FLAGS), seed=0, std=0.05).eval()
    return MMDiffusionPipeline(unet, sample_rate=2000, fps=10, training_record={"data": "tests"})


def tiny_mm_diffusion_sr(folder: Path | None = None):
    """A tiny 16 → 64 `MMDiffusionSuperResPipeline` with random weights."""
    from pipelines.mm_diffusion.modeling_mm_diffusion_sr import MMDiffusionSuperResModel
    from pipelines.mm_diffusion.pipeline_mm_diffusion_sr import MMDiffusionSuperResPipeline

    model = MMDiffusionSuperResModel.from_official_flags(**MM_DIFFUSION_TINY_SR_FLAGS)
    return MMDiffusionSuperResPipeline(randomize_(model, seed=1, std=0.05).eval())


def low_resolution_clips(count: int) -> np.ndarray:
    """`count` copies of one uint8 clip of 2 frames of 16×16 (the up-sampler's input)."""
    clip = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    return np.repeat(clip[None], count, axis=0)


def seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def sounding_video_samples(output) -> np.ndarray:
    """Each sample's frames (scaled to [0, 1]) and sound, as one row."""
    video, audio = np.asarray(output[0]), np.asarray(output[1])
    return np.concatenate([video.reshape(len(video), -1) / 255.0, audio.reshape(len(audio), -1)], axis=1)


CONTRACT_CASES["mm_diffusion"] = ContractCase(
    build=tiny_mm_diffusion,
    call_kwargs=lambda seeds: dict(num_samples=len(seeds), generator=seeded_generators(seeds), sampler="ddim",
                                   num_inference_steps=3),
    samples=sounding_video_samples,
)
CONTRACT_CASES["mm_diffusion_sr"] = ContractCase(
    build=tiny_mm_diffusion_sr,
    call_kwargs=lambda seeds: dict(video=low_resolution_clips(len(seeds)), generator=seeded_generators(seeds),
                                   num_inference_steps=3),
    samples=lambda output: np.asarray(output[0]).reshape(len(output[0]), -1) / 255.0,
)


# Images that Sound ---------------------------------------------------------------------------------------------------
def tiny_images_that_sound_models(root: Path) -> Path:
    """Tiny random stand-ins for the paper's two models, each in its own diffusers layout: root/image_model (Stable
    Diffusion v1.5) and root/audio_model (Auffusion, with its HiFi-GAN in vocoder/). Returns `root`, which is then
    also a folder in the studio layout."""
    tiny_model_folder(root / "image_model", seed=0)
    tiny_model_folder(root / "audio_model", seed=1)
    write_auffusion_vocoder(root / "audio_model", TINY)
    return root


def tiny_images_that_sound(folder: Path):
    """A tiny `ImagesThatSoundPipeline` loaded as the paper's weights are: two models, the HiFi-GAN found in the
    audio model's vocoder/."""
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    root = tiny_images_that_sound_models(folder)
    pipe = ImagesThatSoundPipeline.from_pretrained(image_model=root / "image_model", audio_model=root / "audio_model")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images_that_sound_samples(output) -> np.ndarray:
    """Each sample's spectrogram and sound, as one row."""
    spectrograms, audio = np.asarray(output[0]), np.asarray(output[2])
    return np.concatenate([spectrograms.reshape(len(spectrograms), -1), audio], axis=1)


CONTRACT_CASES["images_that_sound"] = ContractCase(
    build=tiny_images_that_sound,
    call_kwargs=lambda seeds: dict(image_prompt="a castle with bell towers", audio_prompt="bell ringing",
                                   num_inference_steps=3, latent_width=8, num_samples=len(seeds),
                                   generator=seeded_generators(seeds)),
    samples=images_that_sound_samples,
)
# The Spectrogram Lab has no case: it plays one picture per call, so "a batch equals its samples run alone" cannot
# apply; tests/pipelines/spectrogram_lab checks the rest of the contract on it.


# Impact Sound (physics-driven diffusion) -----------------------------------------------------------------------------
IMPACT_CLASSES = ("metal", "glass", "wood")
IMPACT_BANK_SIZE = 6


def tiny_impact_diffusion(folder: Path | None = None, seed: int = 0):
    """A tiny `ImpactDiffusionPipeline`: the `tiny` preset at T = 20 with freshly initialised networks, a one-layer
    residual predictor, and a bank of six random entries (ν keys, μ values, four modes and a residual each)."""
    from dataclasses import replace

    from pipelines.impact_sound.modal import Modes
    from pipelines.impact_sound.modeling_impact_sound import ImpactDenoiser, ImpactDiffusionConfig, VisualEncoder
    from pipelines.impact_sound.modeling_residual import ResidualPredictor, ResidualPredictorConfig
    from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline
    from pipelines.impact_sound.residual import ResidualParams
    from pipelines.impact_sound.retrieval import RetrievalBank

    config = replace(ImpactDiffusionConfig.preset("tiny", visual_classes=IMPACT_CLASSES), timesteps=20)
    rng = np.random.default_rng(seed)
    modes = [Modes(rng.uniform(200.0, 9000.0, 4), rng.uniform(-30.0, 0.0, 4), rng.uniform(0.02, 0.5, 4))
             for _ in range(IMPACT_BANK_SIZE)]
    residuals = [ResidualParams(rng.uniform(0.0, 0.1, config.n_bands), rng.uniform(0.01, 0.3, config.n_bands))
                 for _ in range(IMPACT_BANK_SIZE)]
    bank = RetrievalBank.build(torch.from_numpy(rng.normal(size=(IMPACT_BANK_SIZE, config.visual_dim))),
                               torch.from_numpy(rng.uniform(-1.0, 1.0, (IMPACT_BANK_SIZE, 256))), modes, residuals,
                               [IMPACT_CLASSES[k % len(IMPACT_CLASSES)] for k in range(IMPACT_BANK_SIZE)])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        networks = (ImpactDenoiser(config), VisualEncoder(config),
                    ResidualPredictor(ResidualPredictorConfig(d_model=16, n_layers=1, n_heads=2)))
    return ImpactDiffusionPipeline(*networks, bank)


def tiny_impact_frames(seed: int) -> np.ndarray:
    """One clip's frames for the tiny impact model: [4, 16, 16, 3] in [0, 1], a function of `seed`."""
    return np.random.default_rng(seed).random((4, 16, 16, 3), dtype=np.float32)


CONTRACT_CASES["impact_diffusion"] = ContractCase(
    build=tiny_impact_diffusion,
    call_kwargs=lambda seeds: dict(frames=np.stack([tiny_impact_frames(seed) for seed in seeds]),
                                   generator=seeded_generators(seeds), num_inference_steps=3),
    # The sampled spectrograms: a batch equals its clips alone to ~1e-6 there, but Griffin-Lim's 32 iterations can
    # amplify that float rounding to ~1e-2 in the waveform of an untrained model.
    samples=lambda output: np.asarray(output[1]).reshape(len(output[1]), -1),
)


# Visual Echoes --------------------------------------------------------------------------------------------------------
# The `tiny` preset: 80 mels × 32 frames -> 5 × 2 audio tokens, 16 × 16 pictures -> 4 × 4 image tokens, 16 codes each.
def tiny_visual_echoes(folder: Path | None = None):
    """A tiny `VisualEchoesPipeline` with random weights (the transformer's randomised so every path is live)."""
    from pipelines.visual_echoes.modeling_visual_echoes import build_preset
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    torch.manual_seed(0)
    audio, image, transformer = build_preset("tiny")
    randomize_(transformer, seed=3, std=0.3)
    return VisualEchoesPipeline(audio, image, transformer, training_record={"data": "tests"})


def toy_picture(seed: int = 0, size: int = 16) -> np.ndarray:
    """One paired toy-world picture [size, size, 3] in [0, 1]."""
    from pipelines.toyworld.paired import sample_paired

    return sample_paired(1, seed, size=size, frames=32).images[0]


def visual_echoes_samples(output) -> np.ndarray:
    """Each sample's spectrogram and sound, as one row."""
    return np.concatenate([output.spectrograms.reshape(len(output.spectrograms), -1), output.audios], axis=1)


CONTRACT_CASES["visual_echoes"] = ContractCase(
    build=tiny_visual_echoes,
    call_kwargs=lambda seeds: dict(image=toy_picture(), task="image_to_audio", num_inference_steps=3,
                                   num_samples=len(seeds), generator=seeded_generators(seeds)),
    samples=lambda output: visual_echoes_samples(output if hasattr(output, "audios") else _ve_output(output)),
)


def _ve_output(values: tuple):
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipelineOutput

    return VisualEchoesPipelineOutput(*values)


def editor_value(folder, pixels: np.ndarray, name: str = "composite.png") -> dict:
    """What a `gr.ImageEditor(type="filepath")` hands its handler: the picture saved as a file, its background and
    composite (no layers drawn)."""
    from PIL import Image

    path = Path(folder) / name
    Image.fromarray(pixels).save(path)
    return {"background": str(path), "layers": [], "composite": str(path)}


# MM-LDM (Sounding Video's second model) --------------------------------------------------------------------------------
def tiny_mm_ldm(folder: Path | None = None):
    """The `tiny` preset (8 frames of 16², 0.8 s at 16 kHz), seeded."""
    from pipelines.mm_ldm.modeling_mm_ldm import build_components
    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline

    torch.manual_seed(0)
    return MMLDMPipeline(**build_components("tiny"))


CONTRACT_CASES["mm_ldm"] = ContractCase(
    build=tiny_mm_ldm,
    call_kwargs=lambda seeds: dict(num_samples=len(seeds), generator=seeded_generators(seeds), num_inference_steps=3,
                                   decoder_steps=2),
    # The decoded frames: Griffin-Lim's iterations can amplify float rounding between a batch and its samples alone
    # to ~1e-3 in an untrained model's waveform (as for Impact Sound).
    samples=lambda output: np.asarray(output[0]).reshape(len(output[0]), -1) / 255.0,
)
