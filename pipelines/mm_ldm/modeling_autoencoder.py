"""MM-LDM's multi-modal autoencoder (paper §3.1, Fig. 3; the released
`autoencoder_vid_aud_v13.py`).

It works on pre-compressed inputs: the KL-VAE latents (`modeling_mm_ldm.kl_vae`, ×scaling_factor) of the audio image
and of the video frames.

- Audio encoder: the encoder half of a U-Net (residual blocks, spatial self-attention after each, down-sampling
  between levels; f_a = 4 with channel_mult (1, 2, 4)) -> a diagonal Gaussian over z_a.
- Video encoder: the same blocks over 4 uniformly spaced keyframes (0, 5, 10, 15 of 16) and a learnable content frame
  put in front of them along time; each spatial attention is followed by a temporal attention across the 5 frames at
  every position; the output at the content frame is the clip's one 2-D latent z_v (f_v = 2 with (1, 2)).
- Projectors map z_a, z_v to tokens s_a, s_v of a shared semantic space; a classification head (cross-entropy on the
  pair) and a symmetric contrastive head (Eq. 1; two learnable temperatures used as divisors, start 0.07; features
  L2-normalised; per-sample mean, so the loss at chance is ln B) shape that space.
- One shared diffusion decoder (a diffusers `UNet2DConditionModel`) denoises the KL-VAE latent of one frame or of
  the audio image. Its conditions: its own perceptual latent, by a small convolutional hint network whose features are
  added through zero-initialised 1×1 convolutions to the U-Net's skip features after every input block (diffusers'
  ControlNet residuals) and by the flattened latent through a zero-initialised MLP added to the timestep embedding;
  a frame-index embedding (video only); and, by cross-attention, [a learnable modality prompt, a class token (the label
  in training, the classification head's prediction at inference), the other modality's semantic tokens].
  Classifier-free guidance of the decoder: in training the context and the own latent are zeroed together with
  p = 0.1; at sampling ε = ε_u + 2.5(ε_c − ε_u) (the released configs; the same mix of v̂ for a decoder that
  predicts v).

Departures, chosen between the paper and the code:
- content frame (code), not the paper's temporal pooling before the final layer;
- the flattened latent through an MLP into the timestep embedding (code), not the paper's average pooling;
- the projectors read the latents detached (the code; its comment says the loss blows up otherwise), so the
  classification and contrastive losses train the projectors and heads but not the encoders
  (`detach_projector_inputs`);
- the number of semantic tokens is not given anywhere (the released projector pools to one vector, which does not fit
  its decoder): each projector pools its latent to a `semantic_grid` × `semantic_grid` grid of tokens;
- the audio encoder's learnable map concatenated on the channel axis (code only) is left out;
- options not in the paper or the code, for the studio weights, which follow a lamp's flicker with them: the decoder
  may predict v instead of ε (`decoder_prediction_type`, see `DECODER_PREDICTION_TYPES`), the video decoder may read
  the audio's semantic tokens per frame (`per_frame_audio_condition`) and its own latent per frame
  (`per_frame_latent_condition`), each keyframe may write into z_v by its own path (`keyframe_skips`, on in the
  studio weights), and training may decode several frames per clip, draw part of the rows' t from the noisiest
  steps and withhold the other modality's semantic tokens from part of the rows (`training_losses`'
  `frames_per_clip`, `high_noise_share`, `cross_modal_drop`);
- the adversarial loss (Eq. 2, `modeling_discriminator`) is on only when `training_losses` is given a discriminator;
  its real triplet is the KL-VAE's decoding of the input latents rather than the raw pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, ResnetBlock2D
from torch import nn

from .modeling_discriminator import gan_triplets, hinge_discriminator_loss, hinge_generator_loss

# Eq. 3's weights (paper §4.1; λ_kl is 1e-9 for Landscape, 1e-8 for AIST++) and the decoder's condition dropout.
LOSS_WEIGHTS = {"classification": 0.1, "contrastive": 0.1, "kl": 1e-9}
DECODER_DROP_PROBABILITY = 0.1
HIGH_NOISE_FRACTION = 0.15  # `decoder_timesteps`: the noisiest steps some rows may be drawn from
ADVERSARIAL_WEIGHT = 0.1  # λ_gan (paper §4.1)

# What the shared decoder predicts. "epsilon" is the released configs'. "v_prediction" (Salimans & Ho 2022; a
# departure) weighs the error of x̂_0 by 1 + SNR instead of SNR: at the noisiest steps, where a sample settles what is
# large and coarse (is the lamp lit in this frame?), ε-prediction's loss hardly cares what the conditions say, so the
# encoders and the conditioning paths learn little of it.
DECODER_PREDICTION_TYPES = ("epsilon", "v_prediction")

Modality = Literal["audio", "video"]
MODALITIES: tuple[Modality, Modality] = ("audio", "video")


@dataclass
class DecoderConditions:
    """What the shared decoder reads besides the noisy latent and t, for N rows: fixed while a sample is decoded."""

    context: torch.Tensor  # cross-attention tokens [N, S, dim]
    extra: torch.Tensor  # added to the timestep embedding [N, time_dim]
    skips: list[torch.Tensor]  # the hint network's residuals after every input block
    mid: torch.Tensor  # and after the middle block


def keyframe_indices(num_frames: int, count: int) -> tuple[int, ...]:
    """`count` uniformly spaced frames of `num_frames`, first and last included (16 frames, 4 keyframes: 0, 5, 10, 15,
    the released indices)."""
    if count > num_frames or count < 1:
        raise ValueError(f"cannot pick {count} keyframes from {num_frames} frames")
    return tuple(round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count))


def zero_module(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class TemporalAttention(nn.Module):
    """Self-attention across the frames at every spatial position (fixed sin-cos frame positions), residual."""

    def __init__(self, channels: int, head_dim: int, max_frames: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = Attention(query_dim=channels, heads=max(channels // head_dim, 1),
                              dim_head=min(head_dim, channels), bias=True)
        positions = get_1d_sincos_pos_embed_from_grid(channels, torch.arange(max_frames, dtype=torch.float64),
                                                      output_type="pt")
        self.register_buffer("positions", positions.float(), persistent=False)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: [B·T, C, H, W] with T = `frames` consecutive frames per clip."""
        bt, channels, height, width = x.shape
        seq = x.reshape(bt // frames, frames, channels, height * width).permute(0, 3, 1, 2)
        seq = seq.reshape(-1, frames, channels)  # [B·H·W, T, C]
        seq = seq + self.attn(self.norm(seq) + self.positions[:frames].to(seq.dtype))
        seq = seq.reshape(bt // frames, height * width, frames, channels).permute(0, 2, 3, 1)
        return seq.reshape(bt, channels, height, width)


class PerceptualEncoder(nn.Module):
    """The encoder half of a U-Net: per level `num_res_blocks` × (residual block, spatial attention[, temporal
    attention]), a down-sampling between levels, then GroupNorm-SiLU-conv to the Gaussian's 2 × `latent_channels`."""

    def __init__(self, in_channels: int, model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 head_dim: int, latent_channels: int, norm_groups: int, temporal_frames: int | None = None):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        self.layers = nn.ModuleList()
        channels = model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = model_channels * mult
                self.layers.append(ResnetBlock2D(in_channels=channels, out_channels=out, temb_channels=None,
                                                 groups=norm_groups))
                self.layers.append(Attention(out, heads=max(out // head_dim, 1), dim_head=min(head_dim, out),
                                             norm_num_groups=norm_groups, residual_connection=True, bias=True,
                                             upcast_softmax=True))
                if temporal_frames is not None:
                    self.layers.append(TemporalAttention(out, head_dim, temporal_frames))
                channels = out
            if level < len(channel_mult) - 1:
                self.layers.append(Downsample2D(channels, use_conv=True, padding=1, name="op"))
        self.norm_out = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.conv_out = nn.Conv2d(channels, 2 * latent_channels, 3, padding=1)

    def features(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        h = self.conv_in(x)
        for layer in self.layers:
            if isinstance(layer, ResnetBlock2D):
                h = layer(h, None)
            elif isinstance(layer, TemporalAttention):
                h = layer(h, frames)
            else:
                h = layer(h)
        return h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(h)))


class Projector(nn.Module):
    """Perceptual latent [B, C, h, w] -> semantic tokens [B, grid², dim] (conv, SiLU, conv, average pooling)."""

    def __init__(self, latent_channels: int, dim: int, grid: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(latent_channels, dim, 3, padding=1), nn.SiLU(), nn.Conv2d(dim, dim, 1))
        self.grid = grid

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.net(latent), self.grid).flatten(2).transpose(1, 2)


class ClassificationHead(nn.Module):
    """f_cl(s_a, s_v) -> class logits: the two token means, concatenated, through an MLP whose last layer starts at
    zero (so the initial cross-entropy is exactly ln K)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), zero_module(nn.Linear(dim, num_classes)))

    def forward(self, audio_semantic: torch.Tensor, video_semantic: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([audio_semantic.mean(1), video_semantic.mean(1)], dim=-1))


class ContrastiveHead(nn.Module):
    """f_co: each modality's token mean -> a linear map -> L2-normalised; Eq. 1 with dot-product similarity divided by
    two learnable temperatures (one per direction, start 0.07, the released heads)."""

    def __init__(self, dim: int, embed_dim: int, temperature: float = 0.07):
        super().__init__()
        self.audio_proj = nn.Linear(dim, embed_dim)
        self.video_proj = nn.Linear(dim, embed_dim)
        self.temperature_a2v = nn.Parameter(torch.tensor(temperature))
        self.temperature_v2a = nn.Parameter(torch.tensor(temperature))

    def forward(self, audio_semantic: torch.Tensor, video_semantic: torch.Tensor) -> torch.Tensor:
        """The symmetric loss (CE_a2v + CE_v2a) / 2, each a per-sample mean (≈ ln B when pairs are not told apart)."""
        a = F.normalize(self.audio_proj(audio_semantic.mean(1)), dim=-1)
        v = F.normalize(self.video_proj(video_semantic.mean(1)), dim=-1)
        target = torch.arange(a.shape[0], device=a.device)
        return (F.cross_entropy(a @ v.T / self.temperature_a2v, target)
                + F.cross_entropy(v @ a.T / self.temperature_v2a, target)) / 2


class HintNetwork(nn.Module):
    """The own latent (nearest-upsampled to the decoder's input size) -> one feature map per U-Net skip feature (and
    one for the middle block), each through a zero-initialised 1×1 convolution: diffusers' ControlNet residuals."""

    def __init__(self, latent_channels: int, block_out_channels: Sequence[int], layers_per_block: int):
        super().__init__()
        levels = len(block_out_channels)
        self.stages = nn.ModuleList()
        channels = latent_channels
        for level, out in enumerate(block_out_channels):
            stride = 1 if level == 0 else 2
            self.stages.append(nn.Sequential(nn.Conv2d(channels, out, 3, stride=stride, padding=1), nn.SiLU(),
                                             nn.Conv2d(out, out, 3, padding=1), nn.SiLU()))
            channels = out
        # (channels, level) of every skip feature of UNet2DConditionModel's down path: conv_in, then per block its
        # resnets and (but the last) its down-sampler, which already sits one level lower.
        skips = [(block_out_channels[0], 0)]
        for level, out in enumerate(block_out_channels):
            skips += [(out, level)] * layers_per_block
            if level < levels - 1:
                skips.append((out, level + 1))
        self.skip_levels = [level for _, level in skips]
        self.zero_convs = nn.ModuleList(zero_module(nn.Conv2d(block_out_channels[level], out, 1))
                                        for out, level in skips)
        self.mid_conv = zero_module(nn.Conv2d(block_out_channels[-1], block_out_channels[-1], 1))

    def forward(self, latent: torch.Tensor, size: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = F.interpolate(latent, size=size, mode="nearest")
        per_level = []
        for stage in self.stages:
            h = stage(h)
            per_level.append(h)
        skips = [conv(per_level[level]) for conv, level in zip(self.zero_convs, self.skip_levels)]
        return skips, self.mid_conv(per_level[-1])


class MultiModalAutoencoder(ModelMixin, ConfigMixin):
    """Encoders, projectors, heads and the shared diffusion decoder (see the module docstring).

    Args (sizes in KL-VAE latent units):
        vae_channels, vae_size: the KL-VAE latent of one frame / audio image (paper: 4 × 32 × 32).
        num_frames, num_keyframes: frames per clip and keyframes the video encoder reads (paper: 16, 4).
        latent_channels: C of z_a and z_v (paper: 16).
        encoder_channels, audio_channel_mult, video_channel_mult, num_res_blocks, head_dim, norm_groups: the encoders
            (released: 320, (1, 2, 4), (1, 2), 2, 64, 32).
        semantic_dim, semantic_grid: width and grid of the semantic tokens (released width 768 = the context width).
        num_classes: classes of the classification head (Landscape: 9).
        contrastive_dim: width of the contrastive head's embeddings.
        prompt_tokens: length of each learnable modality prompt (released: 77).
        decoder_channels, decoder_layers_per_block, decoder_attention_heads, decoder_norm_groups,
            decoder_cross_attention_blocks: the shared decoder U-Net (released: SD's 320, 640, 1280, 1280; 2; 8 heads;
            32 groups; cross-attention in the first three blocks).
        detach_projector_inputs: the released code's `latent.detach()` before the projectors.
        cross_modal_condition: the decoder attends to the other modality's semantic tokens (the paper's "semantic
            cross-modal feature"); False leaves them out of the context, for the ablation of the paper's Table 3.
        decoder_prediction_type: what the shared decoder predicts, "epsilon" (the released configs) or
            "v_prediction" (a departure, see `DECODER_PREDICTION_TYPES`).
        per_frame_audio_condition: a departure: the video decoder also reads the audio's semantic tokens through a
            zero-initialised MLP that gives one embedding per frame, the decoded frame's added to the timestep
            embedding (`frame_sound`), so a frame can follow what the sound does at its time; the cross-attention
            context has no time axis. Needs `cross_modal_condition`.
        per_frame_latent_condition: a departure: the video decoder also reads its own latent z_v through a
            zero-initialised MLP that gives one embedding per frame (`frame_latent`), a direct readout of what z_v
            holds about each frame (the content MLP's one embedding is the same for every frame).
        keyframe_skips: a departure: each keyframe's last encoder features also reach z_v's moments through its
            own zero-initialised 1 × 1 convolution (`keyframe_paths`), so z_v can keep what happens in every
            keyframe (the content frame's attention pools the keyframes, and what it pools is hard to tell apart);
            z_v keeps its shape.
    """

    @register_to_config
    def __init__(self, vae_channels: int = 4, vae_size: int = 32, num_frames: int = 16, num_keyframes: int = 4,
                 latent_channels: int = 16, encoder_channels: int = 320,
                 audio_channel_mult: tuple[int, ...] = (1, 2, 4),
                 video_channel_mult: tuple[int, ...] = (1, 2), num_res_blocks: int = 2, head_dim: int = 64,
                 norm_groups: int = 32, semantic_dim: int = 768, semantic_grid: int = 4, num_classes: int = 9,
                 contrastive_dim: int = 512, prompt_tokens: int = 77,
                 decoder_channels: tuple[int, ...] = (320, 640, 1280, 1280), decoder_layers_per_block: int = 2,
                 decoder_attention_heads: int = 8, decoder_norm_groups: int = 32,
                 decoder_cross_attention_blocks: int = 3, detach_projector_inputs: bool = True,
                 cross_modal_condition: bool = True, decoder_prediction_type: str = "epsilon",
                 per_frame_audio_condition: bool = False, per_frame_latent_condition: bool = False,
                 keyframe_skips: bool = False):
        super().__init__()
        if per_frame_audio_condition and not cross_modal_condition:
            raise ValueError("per_frame_audio_condition reads the audio's semantic tokens: it needs "
                             "cross_modal_condition")
        if decoder_prediction_type not in DECODER_PREDICTION_TYPES:
            raise ValueError(f"decoder_prediction_type must be one of {DECODER_PREDICTION_TYPES}, got "
                             f"{decoder_prediction_type!r}")
        encoder = {"in_channels": vae_channels, "model_channels": encoder_channels, "num_res_blocks": num_res_blocks,
                       "head_dim": head_dim, "latent_channels": latent_channels, "norm_groups": norm_groups}
        self.audio_encoder = PerceptualEncoder(channel_mult=audio_channel_mult, **encoder)
        self.video_encoder = PerceptualEncoder(channel_mult=video_channel_mult, temporal_frames=num_keyframes + 1,
                                               **encoder)
        self.content_frame = nn.Parameter(torch.randn(1, 1, vae_channels, vae_size, vae_size) * 0.02)
        if keyframe_skips:
            features = encoder_channels * video_channel_mult[-1]
            # not `self.keyframe_skips`: diffusers keeps the config flag under that name on the model
            self.keyframe_paths = nn.ModuleList(zero_module(nn.Conv2d(features, 2 * latent_channels, 1))
                                                for _ in range(num_keyframes))
        self.audio_projector = Projector(latent_channels, semantic_dim, semantic_grid)
        self.video_projector = Projector(latent_channels, semantic_dim, semantic_grid)
        self.classifier = ClassificationHead(semantic_dim, num_classes)
        self.contrastive = ContrastiveHead(semantic_dim, contrastive_dim)
        self.decoder = self.build_decoder_unet()
        time_dim = decoder_channels[0] * 4
        self.hint = HintNetwork(latent_channels, decoder_channels, decoder_layers_per_block)
        audio_size, video_size = self.latent_shapes()
        self.content_mlps = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(latent_channels * shape[1] * shape[2], time_dim), nn.SiLU(),
                                zero_module(nn.Linear(time_dim, time_dim)))
            for name, shape in zip(MODALITIES, (audio_size, video_size))})
        self.frame_embedding = nn.Embedding(num_frames, time_dim)
        nn.init.normal_(self.frame_embedding.weight, std=0.02)
        if per_frame_audio_condition:
            self.frame_sound = nn.Sequential(nn.Linear(semantic_grid**2 * semantic_dim, time_dim), nn.SiLU(),
                                             zero_module(nn.Linear(time_dim, num_frames * time_dim)))
        if per_frame_latent_condition:
            self.frame_latent = nn.Sequential(nn.Linear(latent_channels * video_size[1] * video_size[2], time_dim),
                                              nn.SiLU(), zero_module(nn.Linear(time_dim, num_frames * time_dim)))
        self.prompts = nn.ParameterDict({name: nn.Parameter(torch.randn(prompt_tokens, semantic_dim) * 0.02)
                                         for name in MODALITIES})
        self.class_embedding = nn.Embedding(num_classes, semantic_dim)
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    def build_decoder_unet(self) -> UNet2DConditionModel:
        c = self.config
        count = len(c.decoder_channels)
        attended = min(c.decoder_cross_attention_blocks, count)
        down = ["CrossAttnDownBlock2D"] * attended + ["DownBlock2D"] * (count - attended)
        return UNet2DConditionModel(
            sample_size=c.vae_size, in_channels=c.vae_channels, out_channels=c.vae_channels,
            down_block_types=tuple(down), up_block_types=tuple(t.replace("Down", "Up") for t in reversed(down)),
            block_out_channels=tuple(c.decoder_channels), layers_per_block=c.decoder_layers_per_block,
            cross_attention_dim=c.semantic_dim, attention_head_dim=c.decoder_attention_heads,
            norm_num_groups=c.decoder_norm_groups, class_embed_type="identity")

    # Shapes ----------------------------------------------------------------------------------------------------------
    def latent_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(C, H, W) of z_a and z_v: the VAE latent down-sampled once per level but the last (paper: 16×8×8 and
        16×16×16)."""
        c = self.config
        audio = c.vae_size // 2 ** (len(c.audio_channel_mult) - 1)
        video = c.vae_size // 2 ** (len(c.video_channel_mult) - 1)
        return (c.latent_channels, audio, audio), (c.latent_channels, video, video)

    @property
    def keyframes(self) -> tuple[int, ...]:
        return keyframe_indices(self.config.num_frames, self.config.num_keyframes)

    # Encoders --------------------------------------------------------------------------------------------------------
    def encode_audio(self, audio_latent: torch.Tensor) -> DiagonalGaussianDistribution:
        """KL-VAE latent of the audio image [B, 4, H, W] -> q(z_a)."""
        return DiagonalGaussianDistribution(self.audio_encoder.head(self.audio_encoder.features(audio_latent)))

    def encode_video(self, frame_latents: torch.Tensor) -> DiagonalGaussianDistribution:
        """KL-VAE latents of all frames [B, F, 4, H, W] -> q(z_v), from the keyframes and the content frame."""
        return self.encode_keyframes(frame_latents[:, list(self.keyframes)])

    def encode_keyframes(self, keyframes: torch.Tensor) -> DiagonalGaussianDistribution:
        """KL-VAE latents of the clip's `keyframes` only [B, K, 4, H, W] -> q(z_v): all the video encoder reads."""
        batch = keyframes.shape[0]
        x = torch.cat([self.content_frame.expand(batch, -1, -1, -1, -1).to(keyframes.dtype), keyframes], dim=1)
        frames = x.shape[1]
        h = self.video_encoder.features(x.flatten(0, 1), frames)
        h = h.reshape(batch, frames, *h.shape[1:])
        moments = self.video_encoder.head(h[:, 0])  # the content frame's output is the clip's latent
        if self.config.keyframe_skips:
            moments = moments + sum(skip(h[:, 1 + k]) for k, skip in enumerate(self.keyframe_paths))
        return DiagonalGaussianDistribution(moments)

    # Semantic space --------------------------------------------------------------------------------------------------
    def semantics(self, audio_latent: torch.Tensor, video_latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_a, s_v): semantic tokens [B, grid², dim] of z_a and z_v."""
        if self.config.detach_projector_inputs:
            audio_latent, video_latent = audio_latent.detach(), video_latent.detach()
        return self.audio_projector(audio_latent), self.video_projector(video_latent)

    def classify(self, audio_semantic: torch.Tensor, video_semantic: torch.Tensor) -> torch.Tensor:
        return self.classifier(audio_semantic, video_semantic)

    def classification_loss(self, audio_semantic: torch.Tensor, video_semantic: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
        """L_cl: cross-entropy of the pair's class (ln K at initialisation)."""
        return F.cross_entropy(self.classify(audio_semantic, video_semantic), labels)

    def contrastive_loss(self, audio_semantic: torch.Tensor, video_semantic: torch.Tensor) -> torch.Tensor:
        """L_co (Eq. 1), per-sample mean."""
        return self.contrastive(audio_semantic, video_semantic)

    # Shared decoder --------------------------------------------------------------------------------------------------
    def context(self, modality: Modality, class_labels: torch.Tensor, other_semantic: torch.Tensor) -> torch.Tensor:
        """Cross-attention tokens [B, prompt + 1 + grid², dim]: [modality prompt, class token, other's semantics]
        (without the last without `cross_modal_condition`)."""
        batch = other_semantic.shape[0]
        prompt = self.prompts[modality].to(other_semantic.dtype).expand(batch, -1, -1)
        token = self.class_embedding(class_labels).to(other_semantic.dtype)[:, None]
        tokens = [prompt, token, other_semantic] if self.config.cross_modal_condition else [prompt, token]
        return torch.cat(tokens, dim=1)

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, modality: Modality, latent: torch.Tensor,
                class_labels: torch.Tensor, other_semantic: torch.Tensor, frame_index: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """The shared decoder's ε̂ (or v̂, per `decoder_prediction_type`) for KL-VAE latents `noisy` [N, 4, H, W] of
        one modality (`decoder_conditions` gives the arguments after `timesteps`)."""
        conditions = self.decoder_conditions(modality, latent, class_labels, other_semantic, frame_index, drop)
        return self.denoise_with(noisy, timesteps, conditions)

    def denoise_with(self, noisy: torch.Tensor, timesteps: torch.Tensor,
                     conditions: DecoderConditions) -> torch.Tensor:
        """`denoise` with its conditions computed once (a sampler reuses them at every step)."""
        return self.decoder(noisy, timesteps, encoder_hidden_states=conditions.context, class_labels=conditions.extra,
                            down_block_additional_residuals=conditions.skips,
                            mid_block_additional_residual=conditions.mid).sample

    def decoder_conditions(self, modality: Modality, latent: torch.Tensor, class_labels: torch.Tensor,
                           other_semantic: torch.Tensor, frame_index: torch.Tensor | None = None,
                           drop: torch.Tensor | None = None) -> DecoderConditions:
        """The shared decoder's conditions for N rows of one modality.

        latent: the own perceptual latent of each row [N, C, h, w] (a clip's z_v repeated for its frames);
        class_labels [N]; other_semantic [N, S, dim]; frame_index [N] (video only); drop [N] bool: rows whose context
        and own latent are zeroed (decoder classifier-free guidance's unconditional rows).
        """
        if (frame_index is None) != (modality == "audio"):
            raise ValueError("`frame_index` is given for video rows and only for them")
        keep = None if drop is None else (~drop).to(latent.dtype)
        if keep is not None:
            other_semantic, latent = other_semantic * keep[:, None, None], latent * keep[:, None, None, None]
        context = self.context(modality, class_labels, other_semantic)
        if keep is not None:
            context = context * keep[:, None, None]  # the prompt and class token too
        extra = self.content_mlps[modality](latent.flatten(1))
        if frame_index is not None:
            extra = extra + self.frame_embedding(frame_index).to(extra.dtype)
            if self.config.per_frame_audio_condition:
                extra = extra + self.per_frame(self.frame_sound, other_semantic, frame_index)
            if self.config.per_frame_latent_condition:
                extra = extra + self.per_frame(self.frame_latent, latent, frame_index)
        skips, mid = self.hint(latent, (self.config.vae_size, self.config.vae_size))
        return DecoderConditions(context, extra, skips, mid)

    def per_frame(self, mlp: nn.Module, source: torch.Tensor, frame_index: torch.Tensor) -> torch.Tensor:
        """The embedding a per-frame path (`frame_sound`, `frame_latent`) gives each row's own frame [N, time_dim]."""
        embeddings = mlp(source.flatten(1)).unflatten(1, (self.config.num_frames, -1))
        return embeddings[torch.arange(len(frame_index), device=source.device), frame_index]

    # Training objective --------------------------------------------------------------------------------------------
    def training_losses(self, audio_latent: torch.Tensor, frame_latents: torch.Tensor, labels: torch.Tensor,
                        scheduler, generator: torch.Generator | None = None, weights: dict[str, float] | None = None,
                        vae: nn.Module | None = None, discriminator: nn.Module | None = None,
                        frames_per_clip: int = 1, high_noise_share: float = 0.0,
                        cross_modal_drop: float = 0.0) -> dict[str, torch.Tensor]:
        """Eq. 3: L_MSE + λ_cl L_cl + λ_co L_co + λ_kl (L_KL^a + L_KL^v) [+ λ_gan L_GAN^AE with a discriminator].

        audio_latent [B, 4, H, W] and frame_latents [B, F, 4, H, W] are scaled KL-VAE latents, labels [B] the classes.
        The latents are sampled from their posteriors; the decoder denoises the audio image and `frames_per_clip`
        distinct random frames per clip (the released code: one), each at its own random t (`decoder_timesteps`:
        uniform, or with `high_noise_share` of the rows among the noisiest steps), with context and latent dropped for
        `DECODER_DROP_PROBABILITY` of the rows. `cross_modal_drop` (a departure, 0 in the paper) of the rows hear no
        semantic tokens of the other modality but keep their own latent, so that latent must hold what it can of its
        clip. `generator` is a CPU generator.

        The adversarial loss is on when a `discriminator` (`TripletDiscriminator`) and the `vae` are given: two frames
        i < j are then decoded per clip; the one-step x̂_0 of the audio image and of both frames, decoded by the
        KL-VAE, make the fakes; the real triplet is the KL-VAE's decoding of the input latents (the fakes and the
        reals pass through the same VAE decoder). "adversarial" (the autoencoder's term, in "total") and
        "discriminator" (the discriminator's hinge loss on detached fakes, not in "total") are added: step the
        autoencoder on "total" and the discriminator on "discriminator", clearing the discriminator's gradients from
        the first before the second. Returns every term and "total".
        """
        weights = {**LOSS_WEIGHTS, "adversarial": ADVERSARIAL_WEIGHT, **(weights or {})}
        adversarial = discriminator is not None
        if adversarial and vae is None:
            raise ValueError("the adversarial loss needs the `vae` to decode its triplets")
        batch, frames = frame_latents.shape[:2]
        if not 0.0 <= cross_modal_drop <= 1.0:
            raise ValueError(f"cross_modal_drop must be between 0 and 1, got {cross_modal_drop!r}")
        if not 1 <= frames_per_clip <= frames:
            raise ValueError(f"frames_per_clip must be from 1 to the clip's {frames} frames, got {frames_per_clip!r}")
        device = audio_latent.device
        q_audio, q_video = self.encode_audio(audio_latent), self.encode_video(frame_latents)
        z_audio = q_audio.mean + q_audio.std * torch.randn(q_audio.mean.shape, generator=generator).to(q_audio.mean)
        z_video = q_video.mean + q_video.std * torch.randn(q_video.mean.shape, generator=generator).to(q_video.mean)
        s_audio, s_video = self.semantics(z_audio, z_video)
        if adversarial:
            picked = frame_pairs(batch, frames, generator)
        else:
            picked = torch.rand(batch, frames, generator=generator).argsort(dim=1)[:, :frames_per_clip]
        picked = picked.to(device)
        count = picked.shape[1]
        rows = torch.arange(batch, device=device).repeat_interleave(count)
        targets = {"audio": audio_latent, "video": frame_latents[rows, picked.flatten()]}
        conditions = {"audio": (z_audio, labels, s_video, None),
                      "video": (z_video[rows], labels[rows], s_audio[rows], picked.flatten())}
        mse, predictions = 0.0, {}
        for modality in MODALITIES:
            target = targets[modality]
            n = target.shape[0]
            noise = torch.randn(target.shape, generator=generator).to(target)
            timesteps = decoder_timesteps(n, scheduler.config.num_train_timesteps, high_noise_share, generator)
            timesteps = timesteps.to(device)
            drop = (torch.rand(n, generator=generator) < DECODER_DROP_PROBABILITY).to(device)
            latent, label, other, index = conditions[modality]
            if cross_modal_drop:
                deaf = (torch.rand(n, generator=generator) < cross_modal_drop).to(device)
                other = other * (~deaf).to(other.dtype)[:, None, None]
            noisy = scheduler.add_noise(target, noise, timesteps)
            output = self.denoise(noisy, timesteps, modality, latent, label, other, index, drop)
            mse = mse + F.mse_loss(output, self.decoder_target(scheduler, target, noise, timesteps))
            predictions[modality] = self.predicted_original(scheduler, noisy, output, timesteps)  # one-step x̂_0
        losses = {"mse": mse, "classification": self.classification_loss(s_audio, s_video, labels),
                  "contrastive": self.contrastive_loss(s_audio, s_video),
                  "kl": q_audio.kl().mean() + q_video.kl().mean()}
        names = list(LOSS_WEIGHTS)
        if adversarial:
            losses.update(self.adversarial_losses(vae, discriminator, targets, predictions, batch))
            names.append("adversarial")
        losses["total"] = losses["mse"] + sum(weights[name] * losses[name] for name in names)
        return losses

    def decoder_target(self, scheduler, clean: torch.Tensor, noise: torch.Tensor,
                       timesteps: torch.Tensor) -> torch.Tensor:
        """What the shared decoder learns to output: the noise, or v = √ᾱ ε − √(1 − ᾱ) x_0."""
        if self.config.decoder_prediction_type == "epsilon":
            return noise
        return scheduler.get_velocity(clean, noise, timesteps)

    def predicted_original(self, scheduler, noisy: torch.Tensor, output: torch.Tensor,
                           timesteps: torch.Tensor) -> torch.Tensor:
        """x̂_0 from the decoder's output at `timesteps` [N]."""
        alphas = scheduler.alphas_cumprod.to(noisy)[timesteps].reshape(-1, 1, 1, 1)
        if self.config.decoder_prediction_type == "epsilon":
            return (noisy - (1 - alphas).sqrt() * output) / alphas.sqrt()
        return alphas.sqrt() * noisy - (1 - alphas).sqrt() * output

    @staticmethod
    def adversarial_losses(vae: nn.Module, discriminator: nn.Module, targets: dict[str, torch.Tensor],
                           predictions: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """Decode real and predicted latents to pixels, build the triplets, and return both hinge losses."""
        def pixels(latents: torch.Tensor) -> torch.Tensor:
            return vae.decode(latents / vae.config.scaling_factor).sample

        with torch.no_grad():
            real_audio, real_frames = pixels(targets["audio"]), pixels(targets["video"])
        fake_audio, fake_frames = pixels(predictions["audio"]), pixels(predictions["video"])
        real_i, real_j = real_frames.reshape(batch, 2, *real_frames.shape[1:]).unbind(1)
        fake_i, fake_j = fake_frames.reshape(batch, 2, *fake_frames.shape[1:]).unbind(1)
        real, fakes, generated = gan_triplets(real_audio, real_i, real_j, fake_audio, fake_i, fake_j)
        detached = [tuple(image.detach() for image in triplet) for triplet in fakes]
        return {"adversarial": hinge_generator_loss(discriminator(*generated)),
                "discriminator": hinge_discriminator_loss(discriminator(*real),
                                                          [discriminator(*triplet) for triplet in detached])}


def decoder_timesteps(count: int, train_steps: int, high_noise_share: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """t of `count` decoder training rows: uniform over the schedule, but `high_noise_share` of the rows (a departure;
    the released code: none) uniform over the noisiest `HIGH_NOISE_FRACTION` of it, where a sample settles what the
    conditions decide (a lamp lit or not), so that those steps get more of the training."""
    if not 0.0 <= high_noise_share <= 1.0:
        raise ValueError(f"high_noise_share must be between 0 and 1, got {high_noise_share!r}")
    timesteps = torch.randint(0, train_steps, (count,), generator=generator)
    noisiest = torch.randint(round(train_steps * (1 - HIGH_NOISE_FRACTION)), train_steps, (count,), generator=generator)
    high = torch.rand(count, generator=generator) < high_noise_share
    return torch.where(high, noisiest, timesteps)


def frame_pairs(batch: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two frames i < j per clip, [B, 2], uniform over the pairs' first frame, then over the frames after it."""
    first = torch.randint(0, frames - 1, (batch,), generator=generator)
    after = (torch.rand(batch, generator=generator) * (frames - 1 - first)).long().clamp_max(frames - 2 - first)
    return torch.stack([first, first + 1 + after], dim=1)


__all__ = ["ADVERSARIAL_WEIGHT", "DECODER_DROP_PROBABILITY", "DECODER_PREDICTION_TYPES", "HIGH_NOISE_FRACTION",
           "LOSS_WEIGHTS", "ClassificationHead", "ContrastiveHead", "DecoderConditions", "HintNetwork",
           "MultiModalAutoencoder", "PerceptualEncoder", "Projector", "TemporalAttention", "decoder_timesteps",
           "frame_pairs", "keyframe_indices"]
