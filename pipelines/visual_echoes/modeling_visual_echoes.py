"""Visual Echoes' networks: one VQGAN tokenizer per modality (diffusers `VQModel`) and the masked token transformer.

Tokenizers (frozen while the transformer trains). The paper uses an ImageNet VQGAN (taming-transformers, f16, 1024
codes of dimension 256: a 256×256 picture -> 16×16 codes, 72.1 M parameters) and a SpecVQGAN (an 80×848 log-mel
spectrogram -> 5×53 codes, the same codebook size). Both grids are flattened row-major to one token sequence per
modality (L_v = 256, L_a = 265). `tokenizer_config(name)` gives the `VQModel` arguments of each preset;
`encode_tokens` / `decode_tokens` go between pictures or spectrograms and token grids.

The transformer (`VisualEchoesTransformer`), as the paper describes it:

- one embedding table per modality, E_a and E_v, of (C + 1) × D: the extra row C is that modality's [MASK];
- learnable positional embeddings and learnable modality embeddings, per modality, added before the encoder and
  (a second set) again before the decoder;
- the two sequences concatenated audio first, [f_a, f_v], under full bidirectional self-attention (a ViT without a
  [cls] token; attention by `scaled_dot_product_attention`);
- an encoder that runs only over the kept tokens (training drops 50 % of each modality's tokens, masked or not);
- a decoder whose input holds the encoder outputs at their positions and ONE learnable mask embedding m (shared by
  both modalities) at every dropped position and every masked position;
- a weight-tied output head per modality: logits = LN(GELU(Linear(h))) · Eᵀ + bias, with E detached (the embedding
  acts as the mapping layer without extra training), cut to the C real codes (the [MASK] row is never predicted).

The `paper` preset is ViT-L (24 layers, width 1024, 16 heads, MLP ratio 4) with an 8 × 1024 decoder of 16 heads
(the paper does not give the decoder; this is the MAGE-L decoder). The paper reports 424.4 M parameters for the
transformer; `paper_parameter_count()` builds it on the meta device (see the tests for the comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, VQModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

MODALITIES = ("audio", "image")


# Tokenizers --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSize:
    """One tokenizer preset: the `VQModel` arguments and the input it is made for.

    `channels`: 1 (a spectrogram in [0, 1]) or 3 (an RGB picture); `height`, `width`: the input in pixels (mel rows ×
    frames for audio); the token grid is (height, width) / 2^(len(block_out_channels) - 1).
    """

    channels: int
    height: int
    width: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int
    codebook_size: int
    code_dim: int
    norm_num_groups: int
    attention_at_lowest: bool  # taming / SpecVQGAN attend at the lowest resolution (16 and 53 in the paper)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // self.factor, self.width // self.factor

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


TOKENIZER_SIZES: dict[str, dict[str, TokenizerSize]] = {
    # taming-transformers vqgan_imagenet_f16_1024 (ch 128, ch_mult 1-1-2-2-4, 2 res blocks, attention at 16) and
    # SpecVQGAN (the same shape over one channel, attention at 53): the paper's tokenizers.
    "paper": {
        "image": TokenizerSize(3, 256, 256, (128, 128, 256, 256, 512), 2, 256, 1024, 256, 32, True),
        "audio": TokenizerSize(1, 80, 848, (128, 128, 256, 256, 512), 2, 256, 1024, 256, 32, True),
    },
    # The studio's: 32×32 pictures -> 8×8 codes (f4, not the paper's f16: at f8 the toy world's 5–10 pixel objects
    # were lost and only the ground came back), 80 mels × 128 frames (1.49 s) -> 5×8 codes (f16, as the paper); the
    # audio one is purely convolutional (no attention).
    "studio": {
        "image": TokenizerSize(3, 32, 32, (16, 32, 64), 1, 16, 256, 16, 8, True),
        "audio": TokenizerSize(1, 80, 128, (8, 16, 32, 48, 64), 1, 16, 256, 16, 8, False),
    },
    "tiny": {
        "image": TokenizerSize(3, 16, 16, (8, 8, 8), 1, 4, 16, 4, 4, False),
        "audio": TokenizerSize(1, 80, 32, (8, 8, 8, 8, 8), 1, 4, 16, 4, 4, False),
    },
}


def build_tokenizer(size: TokenizerSize) -> VQModel:
    """A diffusers `VQModel` of that preset (random weights)."""
    levels = len(size.block_out_channels)
    down = ["DownEncoderBlock2D"] * levels
    up = ["UpDecoderBlock2D"] * levels
    if size.attention_at_lowest:
        down[-1], up[0] = "AttnDownEncoderBlock2D", "AttnUpDecoderBlock2D"
    return VQModel(in_channels=size.channels, out_channels=size.channels, down_block_types=tuple(down),
                   up_block_types=tuple(up), block_out_channels=size.block_out_channels,
                   layers_per_block=size.layers_per_block, latent_channels=size.latent_channels,
                   num_vq_embeddings=size.codebook_size, vq_embed_dim=size.code_dim,
                   norm_num_groups=size.norm_num_groups, sample_size=max(size.height, size.width))


def tokenizer_grid(vq: VQModel, height: int, width: int) -> tuple[int, int]:
    """The token grid a `VQModel` gives for a height × width input."""
    factor = 2 ** (len(vq.config.block_out_channels) - 1)
    return height // factor, width // factor


def encode_tokens(vq: VQModel, x: torch.Tensor) -> torch.Tensor:
    """Input [B, C, H, W] in [-1, 1] -> token ids [B, h · w] (the h × w grid flattened row-major)."""
    latents = vq.encode(x.to(vq.device, vq.dtype)).latents
    _, _, (_, _, indices) = vq.quantize(latents)
    return indices.reshape(x.shape[0], -1).long()


def decode_tokens(vq: VQModel, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Token ids [B, h · w] (row-major) -> decoded input [B, C, H, W] (unclipped, nominally [-1, 1]). One sample at
    a time, so a sample decodes the same in any batch (batched convolutions differ by about 1e-6, which Griffin-Lim
    magnifies a hundredfold)."""
    shape = (1, *grid, vq.config.vq_embed_dim or vq.config.latent_channels)
    codes = [vq.quantize.get_codebook_entry(row.to(vq.device), shape) for row in tokens]
    return torch.cat([vq.decoder(vq.post_quant_conv(code.to(vq.dtype))) for code in codes])


# The transformer ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerSize:
    width: int
    encoder_layers: int
    encoder_heads: int
    decoder_width: int
    decoder_layers: int
    decoder_heads: int
    mlp_ratio: float = 4.0


TRANSFORMER_SIZES = {
    "paper": TransformerSize(1024, 24, 16, 1024, 8, 16),
    "studio": TransformerSize(128, 4, 4, 128, 2, 4),
    "tiny": TransformerSize(16, 1, 2, 16, 1, 2),
}


class Block(nn.Module):
    """Pre-norm ViT block: x + Attn(LN(x)), then x + MLP(LN(x)) with GELU; attention by SDPA."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, width / heads], full attention
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class TiedHead(nn.Module):
    """MAGE's MLM layer: LN(GELU(Linear(h))) · Eᵀ + bias over the C + 1 rows of the (detached) embedding E."""

    def __init__(self, in_width: int, embed_width: int, vocabulary: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_width, embed_width)
        self.norm = nn.LayerNorm(embed_width, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocabulary))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.fc(h))) @ embedding.detach().t() + self.bias


class VisualEchoesTransformer(ModelMixin, ConfigMixin):
    """The masked audio-visual token transformer (module docstring).

    Args:
        audio_tokens, image_tokens: L_a and L_v (paper: 265 = 5 × 53 and 256 = 16 × 16).
        audio_codebook_size, image_codebook_size: C per modality (paper: 1024 each); token id C is [MASK].
        width, encoder_layers, encoder_heads: the encoder (paper: ViT-L, 1024, 24, 16); also the embedding width D.
        decoder_width, decoder_layers, decoder_heads: the decoder (paper: not given; MAGE-L's 1024, 8, 16).
        mlp_ratio: hidden width of each MLP over its block width (4).
    """

    @register_to_config
    def __init__(self, *, audio_tokens: int = 265, image_tokens: int = 256, audio_codebook_size: int = 1024,
                 image_codebook_size: int = 1024, width: int = 1024, encoder_layers: int = 24, encoder_heads: int = 16,
                 decoder_width: int = 1024, decoder_layers: int = 8, decoder_heads: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        lengths = (audio_tokens, image_tokens)
        self.embeddings = nn.ModuleList([nn.Embedding(audio_codebook_size + 1, width),
                                         nn.Embedding(image_codebook_size + 1, width)])
        # Two sets of learnable positional and modality embeddings: before the encoder and before the decoder.
        self.encoder_positions = nn.ParameterList([nn.Parameter(torch.zeros(1, n, width)) for n in lengths])
        self.encoder_modality = nn.Parameter(torch.zeros(2, width))
        self.encoder = nn.ModuleList([Block(width, encoder_heads, mlp_ratio) for _ in range(encoder_layers)])
        self.encoder_norm = nn.LayerNorm(width, eps=1e-6)
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.mask_embedding = nn.Parameter(torch.zeros(1, 1, decoder_width))  # m, shared by both modalities
        self.decoder_positions = nn.ParameterList([nn.Parameter(torch.zeros(1, n, decoder_width)) for n in lengths])
        self.decoder_modality = nn.Parameter(torch.zeros(2, decoder_width))
        self.decoder = nn.ModuleList([Block(decoder_width, decoder_heads, mlp_ratio) for _ in range(decoder_layers)])
        self.decoder_norm = nn.LayerNorm(decoder_width, eps=1e-6)
        self.heads = nn.ModuleList([TiedHead(decoder_width, width, audio_codebook_size + 1),
                                    TiedHead(decoder_width, width, image_codebook_size + 1)])
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE/MAGE's initialisation: N(0, 0.02) embeddings, Xavier-uniform linear layers with zero bias."""
        for parameter in [*self.encoder_positions, *self.decoder_positions, self.encoder_modality,
                          self.decoder_modality, self.mask_embedding]:
            nn.init.normal_(parameter, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def lengths(self) -> tuple[int, int]:
        return self.config.audio_tokens, self.config.image_tokens

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        return self.config.audio_codebook_size, self.config.image_codebook_size

    @property
    def mask_ids(self) -> tuple[int, int]:
        """The [MASK] token id of each modality: its codebook size C."""
        return self.codebook_sizes

    def forward(self, audio_tokens: torch.Tensor, image_tokens: torch.Tensor, audio_dropped: torch.Tensor | None = None,
                image_dropped: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (C = [MASK]) [B, L_a], [B, L_v] -> logits over the C real codes [B, L_a, C_a], [B, L_v, C_v].

        `audio_dropped`, `image_dropped`: bool [B, L] (training): tokens left out of the encoder. Every sample must
        drop the same number of tokens (training drops ⌈0.5·L⌉ per modality); None keeps all (inference).
        """
        tokens = (audio_tokens, image_tokens)
        for index, (ids, length, size) in enumerate(zip(tokens, self.lengths, self.codebook_sizes)):
            if ids.dim() != 2 or ids.shape[1] != length:
                raise ValueError(f"{MODALITIES[index]} tokens must have shape [B, {length}], got {tuple(ids.shape)}")
        batch = audio_tokens.shape[0]
        # 1. Embeddings with the encoder's positions and modality, audio first: [B, L_a + L_v, D]
        x = torch.cat([self.embeddings[i](tokens[i]) + self.encoder_positions[i] + self.encoder_modality[i]
                       for i in range(2)], dim=1)
        masked = torch.cat([tokens[i] == self.mask_ids[i] for i in range(2)], dim=1)  # [B, L]
        dropped = torch.cat([d if d is not None else torch.zeros_like(t, dtype=torch.bool)
                             for d, t in zip((audio_dropped, image_dropped), tokens)], dim=1)
        # 2. The encoder over the kept tokens only (the same count in every sample)
        kept_counts = (~dropped).sum(dim=1)
        if bool((kept_counts != kept_counts[0]).any()):
            raise ValueError("every sample must drop the same number of tokens")
        kept = kept_counts[0].item()
        order = torch.argsort(dropped.to(torch.int8), dim=1, stable=True)[:, :kept]  # kept positions, in order
        h = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
        for block in self.encoder:
            h = block(h)
        h = self.decoder_embed(self.encoder_norm(h))
        # 3. The decoder input: encoder outputs in place; m at dropped and at masked positions
        full = self.mask_embedding.to(h.dtype).expand(batch, masked.shape[1], -1).clone()
        full = full.scatter(1, order[..., None].expand(-1, -1, h.shape[-1]), h)
        full = torch.where(masked[..., None], self.mask_embedding.to(h.dtype), full)
        length_a = self.lengths[0]
        positions = torch.cat([self.decoder_positions[i] + self.decoder_modality[i] for i in range(2)], dim=1)
        h = full + positions
        for block in self.decoder:
            h = block(h)
        h = self.decoder_norm(h)
        # 4. Weight-tied heads, logits cut to the C real codes
        parts = (h[:, :length_a], h[:, length_a:])
        return tuple(self.heads[i](parts[i], self.embeddings[i].weight)[..., : self.codebook_sizes[i]]
                     for i in range(2))


def build_transformer(preset: str, audio_tokens: int, image_tokens: int, audio_codebook_size: int,
                      image_codebook_size: int) -> VisualEchoesTransformer:
    if preset not in TRANSFORMER_SIZES:
        raise ValueError(f"Unknown transformer size {preset!r}; choose one of {', '.join(TRANSFORMER_SIZES)}")
    size = TRANSFORMER_SIZES[preset]
    return VisualEchoesTransformer(audio_tokens=audio_tokens, image_tokens=image_tokens,
                                   audio_codebook_size=audio_codebook_size, image_codebook_size=image_codebook_size,
                                   width=size.width, encoder_layers=size.encoder_layers,
                                   encoder_heads=size.encoder_heads, decoder_width=size.decoder_width,
                                   decoder_layers=size.decoder_layers, decoder_heads=size.decoder_heads,
                                   mlp_ratio=size.mlp_ratio)


def build_preset(preset: str) -> tuple[VQModel, VQModel, VisualEchoesTransformer]:
    """(audio tokenizer, image tokenizer, transformer) of a preset, random weights, sized to each other."""
    if preset not in TOKENIZER_SIZES:
        raise ValueError(f"Unknown size {preset!r}; choose one of {', '.join(TOKENIZER_SIZES)}")
    sizes = TOKENIZER_SIZES[preset]
    audio, image = build_tokenizer(sizes["audio"]), build_tokenizer(sizes["image"])
    transformer = build_transformer(preset, sizes["audio"].num_tokens, sizes["image"].num_tokens,
                                    sizes["audio"].codebook_size, sizes["image"].codebook_size)
    return audio, image, transformer


def paper_parameter_count() -> int:
    """Parameters of the paper-size transformer, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_transformer("paper", 265, 256, 1024, 1024)
    return sum(p.numel() for p in model.parameters())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MODALITIES",
    "TOKENIZER_SIZES",
    "TRANSFORMER_SIZES",
    "Block",
    "TiedHead",
    "TokenizerSize",
    "TransformerSize",
    "VisualEchoesTransformer",
    "build_preset",
    "build_tokenizer",
    "build_transformer",
    "count_parameters",
    "decode_tokens",
    "encode_tokens",
    "math",
    "paper_parameter_count",
    "tokenizer_grid",
]
