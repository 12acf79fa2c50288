"""MM-LDM's adversarial loss (paper Eq. 2, following Sun et al. 2023a; the released `discriminator.py` and
`adversarial_loss.py`): a discriminator of ⟨audio image, frame_i, frame_j⟩ triplets with i < j.

- Real: ⟨a, v_i, v_j⟩. Fakes (the released code, which is the printed Eq. 2's fake set with the real audio in the real
  term): ⟨ā, v̄_i, v̄_j⟩, ⟨ā, v̄_i, v_j⟩, ⟨ā, v_i, v̄_j⟩ and the order-swapped ⟨ā, v̄_j, v̄_i⟩, which penalises
  temporally incoherent frames. ā and v̄ are the shared decoder's one-step predictions x̂_0, decoded by the KL-VAE.
- The autoencoder's term treats ⟨ā, v̄_i, v̄_j⟩ as real.
- Hinge losses, as the released code: D: mean relu(1 − D(real)) + mean over the fakes of mean relu(1 + D(fake));
  autoencoder: −mean D(⟨ā, v̄_i, v̄_j⟩).

The discriminator: a shared convolutional stem per image, a learnable embedding of each slot (audio, first frame,
second frame: so swapping the frames changes the score), then blocks of a residual convolution per image and full
self-attention across the tokens of all three images ("spatio-temporal modules with residual blocks and cross-modal
full attentions"), and a linear score of the pooled tokens. Its exact released layout (a 3-D `ImageDiscriminator`
with 32 channels) is not public in full; this is our own at that width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

Triplet = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TripletDiscriminator(nn.Module):
    """⟨audio image, frame_i, frame_j⟩, each [B, 3, H, W] in [-1, 1] -> a score per triplet [B] (real > 0 > fake).

    Args:
        channels: width (the released discriminator: 32); down: stride-2 convolutions of the stem; depth: blocks of
        (residual convolution, cross-image attention); head_dim: attention head width; norm_groups: GroupNorm groups.
    """

    def __init__(self, channels: int = 32, down: int = 3, depth: int = 2, head_dim: int = 32, norm_groups: int = 8):
        super().__init__()
        stem = [nn.Conv2d(3, channels, 3, padding=1)]
        for _ in range(down):
            stem += [nn.SiLU(), nn.Conv2d(channels, channels, 4, stride=2, padding=1)]
        self.stem = nn.Sequential(*stem)
        self.slots = nn.Parameter(torch.randn(3, channels) * 0.02)
        self.convs = nn.ModuleList(ResnetBlock2D(in_channels=channels, temb_channels=None, groups=norm_groups)
                                   for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(depth))
        self.attns = nn.ModuleList(Attention(channels, heads=max(channels // head_dim, 1),
                                             dim_head=min(head_dim, channels), bias=True) for _ in range(depth))
        self.score = nn.Linear(channels, 1)

    def forward(self, audio: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        batch = audio.shape[0]
        h = self.stem(torch.cat([audio, first, second]))  # [3B, C, h, w], slot-major
        h = h + self.slots.repeat_interleave(batch, 0)[:, :, None, None].to(h.dtype)
        for conv, norm, attn in zip(self.convs, self.norms, self.attns):
            h = conv(h, None)
            _, channels, height, width = h.shape
            tokens = h.reshape(3, batch, channels, height * width).permute(1, 0, 3, 2).reshape(batch, -1, channels)
            tokens = tokens + attn(norm(tokens))  # every token of the triplet attends to all three images
            h = tokens.reshape(batch, 3, height * width, channels).permute(1, 0, 3, 2).reshape(-1, channels, height,
                                                                                               width)
        pooled = h.mean(dim=(2, 3)).reshape(3, batch, -1).mean(0)
        return self.score(pooled).squeeze(-1)


def gan_triplets(audio: torch.Tensor, frame_i: torch.Tensor, frame_j: torch.Tensor, fake_audio: torch.Tensor,
                 fake_i: torch.Tensor, fake_j: torch.Tensor) -> tuple[Triplet, list[Triplet], Triplet]:
    """(real, the discriminator's fakes, the autoencoder's "real") from real and decoded audio images and frames."""
    real = (audio, frame_i, frame_j)
    fakes = [(fake_audio, fake_i, fake_j), (fake_audio, fake_i, frame_j), (fake_audio, frame_i, fake_j),
             (fake_audio, fake_j, fake_i)]
    return real, fakes, (fake_audio, fake_i, fake_j)


def hinge_discriminator_loss(real_scores: torch.Tensor, fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """mean relu(1 − D(real)) + the mean over the fakes of mean relu(1 + D(fake))."""
    fake = torch.stack([F.relu(1.0 + scores).mean() for scores in fake_scores]).mean()
    return F.relu(1.0 - real_scores).mean() + fake


def hinge_generator_loss(scores: torch.Tensor) -> torch.Tensor:
    """−mean D(⟨ā, v̄_i, v̄_j⟩): the autoencoder's adversarial term."""
    return -scores.mean()


__all__ = ["TripletDiscriminator", "gan_triplets", "hinge_discriminator_loss", "hinge_generator_loss"]
