"""Trainer for MM-Diffusion (paper 000): the coupled U-Net on sounding videos, ε-prediction, one loss on both streams.

The objective is the official one: a linear β schedule with T = 1000, one timestep
t ~ Uniform{0..T-1} per clip shared by both modalities, independent noise for video and audio, and the loss
`mean_flat((ε_v − ε̂_v)²) + mean_flat((ε_a − ε̂_a)²)` (λ(t) = 1), optimised with AdamW without weight decay, an
EMA of the weights, and the RS-MMA random shift drawn on every call (seeded per step, so a resumed run is
identical). Mixed precision (`--mixed-precision fp16|bf16`) runs the U-Net under autocast on a GPU.

Sizes (`--size`): `paper` is the released Landscape/AIST++ network (the official flags: 128 channels, channel_mult
1,2,3,4, RS-MMA windows 1,4,8 at down-sampling 2,4,8; 133.7M parameters) on the paper's clip, 16 frames of 64×64 at
10 fps with 1.6 s of 16 kHz audio; lr 1e-4, dropout 0.1, batch 4 per device (the official script; 32 GPUs made it
128). `studio` and `tiny` are the same architecture made small for a CPU, on a SHRUNKEN CLIP (fewer and smaller
frames, a lower audio rate): studio 8 frames of 16×16 at 10 fps with 0.8 s of 4 kHz audio (64 channels,
channel_mult 1,1,1, RS-MMA windows 1,4 at down-sampling 2,4; 2.11M parameters); tiny 4 frames of 8×8 with 0.4 s of
2 kHz audio (32 channels, 0.97M parameters), for tests only: with 32 channels every GroupNorm group is one channel,
and such a network cannot see the mean of its input (see PRESETS).
`--frames`, `--frame-size`, `--sample-rate` and `--fps` override the preset's clip; the audio always covers the same
time as the frames (frames / fps seconds).

Data (`--data`):

- `toyworld`: `--pool` seeded toy-world sounding videos (`pipelines.toyworld.videos`, scenes `--scenes`; default
  `lamp`, the scene built so a small model on a CPU can learn its couplings: the lamp's height sets its hum's pitch,
  the hum follows its flicker; every toy scene has a coupling the metric scores): 16 frames of 64×64 at 10 fps with 16 kHz audio,
  shrunk to the clip format (area-averaged frames, resampled audio).
- a FOLDER in the Landscape / AIST++ layout: video files (.mp4, .mov, .mkv, .webm, .avi, .m4v; sub-folders are
  searched too), each with its audio track (a file without one is an error). Each file is decoded at `--fps` by
  `pipelines.media` and converted with `pipelines.mm_diffusion.clips` (frames centre-cropped square and resized, as
  uploads to the Sounding Video tab; audio mixed to mono at `--sample-rate`). A file longer than one clip gives
  several: every window of `--frames` consecutive frames, starting every `--clip-stride` frames (1, the official
  stride, by default), with its audio samples; a file shorter than a clip is padded (last frame held, silence).

Output (OUT): the pipeline's `save_pretrained` folder, `model.safetensors` (the EMA weights under the official key
names, in `--save-dtype`) and `model.json` ({"flags": the official flags, "clip_format":
frames/height/width/audio_samples/fps/sample_rate, and how it was trained}), which
`MMDiffusionPipeline.from_pretrained(OUT)` loads (the registry's studio Sounding Video); plus
`checkpoints/train/step-N` (resumable), `loss_log.jsonl`, `loss_curve.png` and `training_summary.json`.

Fine-tuning (`--init`, `pipelines.train.init`): `--init studio` starts from assets/models/mm_diffusion, `--init DIR`
from a folder `save_pretrained` (or this trainer) wrote, `--init PATH.pt` from a checkpoint file, and `--init paper
--init-checkpoint Landscape.pt` (or AIST++.pt) from a released base checkpoint (a local file: they are not on the
Hub). The network and its clip format come from those weights (--size, --frames, --frame-size, --sample-rate, --fps
and --dropout are ignored, with a message); the learning rate defaults to the paper's 1e-4; the optimiser starts
fresh; model.json records `"init"`. With `--lora-rank R` only a LoRA on the U-Net's attention projections trains
(`pipelines.mm_diffusion.lora.TARGETS`; lr default 1e-3) and OUT holds only the adapter (adapter.safetensors +
adapter.json naming the base), which `MMDiffusionPipeline.from_pretrained(OUT)` loads with its base.

Previews (`--preview-every N`): one clip sampled from the EMA weights (DDIM, PREVIEW_STEPS steps, seed `--seed`),
its frames side by side in OUT/previews/step-NNNNNN.png and its sound (at 16 kHz) in .wav.

Departures from the official training: studio/tiny use a higher learning rate (1e-3 instead of 1e-4), no
dropout and an EMA decay chosen for a short run (`--ema-decay`; the paper's 0.9999 needs 100k steps); horizontal
flips are drawn with probability `--flip` (0.5; the official `RandomHorizontalFlip(True)` flips every clip).
`--clean-condition S` (off by default; UniDiffuser's per-modality timesteps, Bao et al. 2023): in a share S of the
clips one stream, video or audio (half each), enters clean at step 0 through its own timestep embedding
(`MMDiffusionUNet(..., audio_timesteps=...)`) and has no loss, so the network also learns each stream's conditional
on the other, which `MMDiffusionPipeline(..., clean_condition=True)` samples; model.json records the share.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from PIL import Image

from pipelines.lora import add_lora, lora_state, save_adapter
from pipelines.media import VideoDecodeError, read_soundtrack, read_video
from pipelines.mm_diffusion import lora as mm_lora
from pipelines.mm_diffusion.checkpoints import BASE_FLAGS
from pipelines.mm_diffusion.clips import FPS, SAMPLE_RATE, ClipFormat, enlarged, fit_audio, fit_frames, playable
from pipelines.mm_diffusion.modeling_mm_diffusion import MMDiffusionUNet, parse_flag_string
from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
from pipelines.mm_diffusion.scheduling_mm_diffusion import DiffusionProcess
from pipelines.toyworld import videos as toy_videos
from pipelines.train.common import (
    EMA,
    LossLog,
    Preview,
    TrainState,
    add_preview_argument,
    as_exported,
    batch_indices,
    check_preview_every,
    final_losses,
    make_accelerator,
    plot_losses,
    run_loop,
    update,
)
from pipelines.train.data import report_skipped
from pipelines.train.init import announce, init_record, resolve_init

STAGE = "train"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass(frozen=True)
class Preset:
    """A model size: official flags (without the clip sizes), the clip it trains on, and its training defaults."""

    flags: dict
    frames: int
    frame_size: int
    sample_rate: int
    lr: float
    batch_size: int


SMALL_FLAGS = dict(num_res_blocks=1, cross_attention_shift=True, audio_attention_resolutions="-1",
                   num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True, learn_sigma=False,
                   dropout=0.0)
PRESETS = {
    # The released network (checkpoints.BASE_FLAGS) with Table A.1's dropout 0.1, on the paper's clip.
    "paper": Preset({**{k: v for k, v in parse_flag_string(BASE_FLAGS).items()
                        if k not in ("video_size", "audio_size")}, "dropout": 0.1}, 16, 64, SAMPLE_RATE, 1e-4, 4),
    # 64 channels, not 32: GroupNorm32 with one channel per group removes every channel's mean, so a 32-channel
    # network cannot follow the per-clip mean of the noise it must predict (measured: ε bias ~0.02-0.07 at high t,
    # samples locked to a flat colour and a DC audio offset); two channels per group keep it.
    "studio": Preset({**SMALL_FLAGS, "num_channels": 64, "channel_mult": "1,1,1", "cross_attention_resolutions": "2,4",
                      "cross_attention_windows": "1,4", "video_attention_resolutions": "2,4"}, 8, 16, 4000, 1e-3, 8),
    "tiny": Preset({**SMALL_FLAGS, "num_channels": 32, "channel_mult": "1,2", "cross_attention_resolutions": "2",
                    "cross_attention_windows": "1", "video_attention_resolutions": "2"}, 4, 8, 2000, 1e-3, 4),
}


# Clip format and model ---------------------------------------------------------------------------------------------


def clip_format_from_args(args: argparse.Namespace) -> ClipFormat:
    """The preset's clip with any of --frames/--frame-size/--sample-rate/--fps overriding it."""
    preset = PRESETS[args.size]
    frames = args.frames or preset.frames
    size = args.frame_size or preset.frame_size
    rate = args.sample_rate or preset.sample_rate
    fps = args.fps
    if rate % fps:
        raise ValueError(f"--sample-rate {rate} must be a whole number of samples per frame at --fps {fps}.")
    return ClipFormat(frames, size, size, frames * rate // fps, fps, rate)


def model_flags(args: argparse.Namespace, fmt: ClipFormat) -> dict:
    """The official flags of the network to train: the preset's, the clip's sizes, --dropout if given."""
    flags = {**PRESETS[args.size].flags, "video_size": f"{fmt.frames},3,{fmt.height},{fmt.width}",
             "audio_size": f"1,{fmt.audio_samples}"}
    if args.dropout is not None:
        flags["dropout"] = args.dropout
    return flags


def build_model(flags: dict) -> MMDiffusionUNet:
    """The U-Net for `flags`, checked against the clip it will see (a clear error when the sizes cannot fit)."""
    model = MMDiffusionUNet.from_official_flags(**flags)
    frames, channels, height, width = model.config["video_size"]
    try:
        model.check_inputs(torch.empty(1, frames, channels, height, width, device="meta"),
                           torch.empty(1, *model.config["audio_size"], device="meta"))
    except ValueError as error:
        raise ValueError(f"The clip format does not fit the network: {error} Change --frames, --frame-size or "
                         f"--sample-rate.") from None
    return model


# Data --------------------------------------------------------------------------------------------------------------


@dataclass
class Footage:
    """Decoded sounding videos in the model's format, and the clip windows cut from them.

    videos[k]: uint8 `[T_k, H, W, 3]`; audios[k]: float32 `[T_k · samples_per_frame]`; windows: `[M, 2]` rows
    (video index, first frame) of every training clip; skipped: the files that could not be used, with the reason.
    """

    videos: list[np.ndarray]
    audios: list[np.ndarray]
    windows: np.ndarray
    fmt: ClipFormat
    skipped: list[dict] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.windows)

    def clip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Window `index`: frames `[F, H, W, 3]` uint8 and audio `[L]` float32."""
        video, start = self.windows[index]
        per_frame = self.fmt.audio_samples // self.fmt.frames
        frames = self.videos[video][start : start + self.fmt.frames]
        audio = self.audios[video][start * per_frame : start * per_frame + self.fmt.audio_samples]
        return frames, audio

    def batch(self, picks: np.ndarray, flips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips as model input: video `[B, F, 3, H, W]` (official `x / 127.5 − 1`) and audio `[B, 1, L]`."""
        clips = [self.clip(int(i)) for i in picks]
        video = np.stack([c[0][:, :, ::-1] if flip else c[0] for c, flip in zip(clips, flips)])
        audio = np.stack([c[1] for c in clips])
        video = torch.from_numpy(video).float().div(127.5).sub(1.0).permute(0, 1, 4, 2, 3)
        return video, torch.from_numpy(audio).float()[:, None]


def clip_windows(lengths: list[int], frames: int, stride: int) -> np.ndarray:
    """(video, first frame) of every `frames`-long window starting every `stride` frames."""
    rows = [(k, start) for k, length in enumerate(lengths) for start in range(0, length - frames + 1, stride)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def shrink_frames(frames: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """Square frames `[T, S, S, 3]` (float in [0, 1] or uint8) -> uint8 `[T, H, W, 3]`, area-averaged."""
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((fmt.width, fmt.height), Image.Resampling.BOX))
                     for f in frames])


def resample_audio(audio: np.ndarray, from_rate: int, fmt: ClipFormat) -> np.ndarray:
    from pipelines.audio import resample

    return audio.astype(np.float32) if from_rate == fmt.sample_rate else resample(audio, from_rate, fmt.sample_rate)


def toy_clips(count: int, seed: int, fmt: ClipFormat, scenes: tuple[str, ...], chunk: int = 100):
    """`count` toy sounding videos (16 frames each) in `fmt` (all frames, all audio) and their toy batches' ground
    truth: (videos uint8 [N, 16, H, W, 3], audios [N, 16 · samples_per_frame], contact frames per video)."""
    if fmt.fps != toy_videos.FPS:  # the toy world's contacts fall on its own frame times
        raise ValueError(f"Toy-world videos are {toy_videos.FPS:g} fps; got --fps {fmt.fps}.")
    if fmt.frames > toy_videos.NUM_FRAMES:
        raise ValueError(f"Toy-world videos have {toy_videos.NUM_FRAMES} frames; a clip of {fmt.frames} does not fit.")
    videos, audios, contacts = [], [], []
    for first in range(0, count, chunk):
        batch = toy_videos.sample_videos(min(chunk, count - first), seed + first, scenes=scenes)
        for index in range(len(batch)):
            videos.append(shrink_frames(batch.frames[index], fmt))
            audios.append(resample_audio(batch.audio[index], batch.sample_rate, fmt))
            contacts.append(batch.contact_frames(index))
    return np.stack(videos), np.stack(audios), contacts


def toyworld_footage(args: argparse.Namespace, fmt: ClipFormat) -> Footage:
    videos, audios, _ = toy_clips(args.pool, args.seed, fmt, tuple(args.scenes.split(",")))
    return Footage(list(videos), list(audios), clip_windows([len(v) for v in videos], fmt.frames, args.clip_stride),
                   fmt)


def read_sounding_file(path: Path, fmt: ClipFormat, learner: str = "MM-Diffusion") -> tuple[np.ndarray, np.ndarray]:
    """A whole file in the model's format: frames `[T, H, W, 3]` (T ≥ one clip) and audio `[T · samples/frame]`;
    a ValueError naming the file when it cannot be read or has no sound (`learner`: the model, for the message)."""
    try:
        video = read_video(path, fps=fmt.fps)
        soundtrack = read_soundtrack(path, fmt.sample_rate)
    except VideoDecodeError as error:
        raise ValueError(f"{path.name} could not be read as a video with sound ({error}): {learner} learns each "
                         f"video together with its sound.") from None
    total = max(fmt.frames, len(video.frames))
    whole = dataclasses.replace(fmt, frames=total, audio_samples=total * (fmt.audio_samples // fmt.frames))
    return fit_frames(video, whole).value, fit_audio(soundtrack, whole).value


def video_files(folder: Path) -> list[Path]:
    """Every video file under `folder`, sorted; a ValueError when it is not a folder or holds none."""
    if not folder.is_dir():
        raise ValueError(f"--data {folder} is neither 'toyworld' nor a folder of videos with sound.")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{folder} holds no video files ({', '.join(VIDEO_SUFFIXES)}).")
    return paths


def folder_footage(folder: str | Path, fmt: ClipFormat, stride: int) -> Footage:
    """Every video file under `folder` (Landscape / AIST++ layout, module docstring), cut into clip windows; a file
    that cannot be read, or has no sound, is skipped with its reason (an error only when none can be used)."""
    folder = Path(folder)
    paths = video_files(folder)
    videos, audios, skipped = [], [], []
    for path in paths:
        try:
            frames, audio = read_sounding_file(path, fmt)
        except ValueError as error:
            skipped.append({"file": str(path.relative_to(folder)), "reason": str(error)})
            continue
        videos.append(frames)
        audios.append(audio)
    if not videos:
        raise ValueError(f"None of the {len(paths)} video file(s) in {folder} could be used: at least one video with "
                         f"sound is needed. " + " ".join(item["reason"] for item in skipped[:3]))
    return Footage(videos, audios, clip_windows([len(v) for v in videos], fmt.frames, stride), fmt, skipped)


# The objective -----------------------------------------------------------------------------------------------------


class JointDiffusionObjective(torch.nn.Module):
    """Eq. 7 for both streams (official `training_losses`): per-clip mean squared ε error of video and of audio.

    One forward is what `accelerate` wraps for DDP: (video_loss, audio_loss), each averaged over the batch; the
    training loss is their sum (the official `mean_flat(v) + mean_flat(a)`, then the batch mean).
    """

    def __init__(self, unet: MMDiffusionUNet, conditional_weight_cap: float = 1.0) -> None:
        super().__init__()
        self.unet = unet
        process = DiffusionProcess.from_flags(unet.diffusion_flags)
        alphas_cumprod = torch.from_numpy(process.alphas_cumprod)
        # A clip with a clean stream weighs the other stream's ε error by 1/SNR(t) = (1 − ᾱ_t)/ᾱ_t, its x̂_0 error,
        # kept in [1, cap] (`--conditional-weight-cap`; cap 1 is the plain ε loss).
        inverse_snr = ((1 - alphas_cumprod) / alphas_cumprod).float()
        self.register_buffer("conditional_weights", inverse_snr.clamp(1.0, conditional_weight_cap), persistent=False)
        self.register_buffer("sqrt_alphas_cumprod", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1 - alphas_cumprod).sqrt().float(), persistent=False)
        self.process = process

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Eq. 2 in closed form)."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return self.sqrt_alphas_cumprod[t].view(shape) * x0 + self.sqrt_one_minus_alphas_cumprod[t].view(shape) * noise

    def forward(self, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, video_noise: torch.Tensor,
                audio_noise: torch.Tensor, shift_generator: torch.Generator | None = None,
                given: torch.Tensor | None = None):
        """(video loss, audio loss), batch means. `given` ([N] of GIVEN_NONE/GIVEN_VIDEO/GIVEN_AUDIO,
        `--clean-condition`) marks clips whose video or audio enters clean, at step 0: that stream is not noised and
        has no loss, and the other one's is weighed by `conditional_weights`."""
        model_t = self.process.model_time(t.cpu()).to(video.device)
        noisy_video, noisy_audio = self.q_sample(video, t, video_noise), self.q_sample(audio, t, audio_noise)
        if given is None or not given.any():
            eps_video, eps_audio = self.unet(noisy_video, noisy_audio, model_t, generator=shift_generator)
            video_kept = audio_kept = torch.ones_like(t, dtype=torch.float32)
        else:
            video_given, audio_given = given == GIVEN_VIDEO, given == GIVEN_AUDIO
            clean_t = torch.zeros_like(model_t)  # step 0, also in the U-Net's (possibly rescaled) time
            eps_video, eps_audio = self.unet(
                torch.where(video_given.view(-1, 1, 1, 1, 1), video, noisy_video),
                torch.where(audio_given.view(-1, 1, 1), audio, noisy_audio),
                torch.where(video_given, clean_t, model_t), audio_timesteps=torch.where(audio_given, clean_t, model_t),
                generator=shift_generator)
            weight = self.conditional_weights[t]
            video_kept = torch.where(video_given, 0.0, torch.where(audio_given, weight, 1.0))
            audio_kept = torch.where(audio_given, 0.0, torch.where(video_given, weight, 1.0))
        video_loss = (eps_video.float() - video_noise).pow(2).flatten(1).mean(1) * video_kept
        audio_loss = (eps_audio.float() - audio_noise).pow(2).flatten(1).mean(1) * audio_kept
        return video_loss.mean(), audio_loss.mean()


GIVEN_NONE, GIVEN_VIDEO, GIVEN_AUDIO = 0, 1, 2  # per clip: both streams noised, or one given clean


def given_streams(draws: torch.Tensor, clean_share: float) -> torch.Tensor:
    """Per clip, from uniform draws: the video given clean (draw < share / 2), the audio (share / 2 <= draw < share),
    or neither."""
    given = torch.full(draws.shape, GIVEN_NONE, dtype=torch.long)
    given[draws < clean_share] = GIVEN_AUDIO
    given[draws < clean_share / 2] = GIVEN_VIDEO
    return given


def step_noise(seed: int, step: int, video_shape, audio_shape, num_timesteps: int, clean_share: float = 0.0):
    """(t, video noise, audio noise, flip draws, RS-MMA shift generator, given streams) of one step: a function of
    (seed, step)."""
    generator = torch.Generator().manual_seed(seed * 7919 + step)
    t = torch.randint(0, num_timesteps, (video_shape[0],), generator=generator)  # uniform, shared by both streams
    video_noise = torch.randn(video_shape, generator=generator)
    audio_noise = torch.randn(audio_shape, generator=generator)  # independent of the video noise (Eq. 5)
    flips = torch.rand(video_shape[0], generator=generator)
    shifts = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    given = given_streams(torch.rand(video_shape[0], generator=generator), clean_share)  # drawn last: the draws
    return t, video_noise, audio_noise, flips, shifts, given  # before it are those of a run without clean streams


# Training ----------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This trainer's options (the common ones come from `pipelines.train.__main__`)."""
    parser.add_argument("--size", default="studio", choices=tuple(PRESETS), help="model size and clip preset")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the preset's)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the preset's)")
    parser.add_argument("--dropout", type=float, default=None, help="default: the preset's (paper 0.1)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the preset's)")
    parser.add_argument("--frame-size", type=int, default=None, help="square frame side in pixels")
    parser.add_argument("--sample-rate", type=int, default=None, help="audio samples per second")
    parser.add_argument("--fps", type=int, default=FPS, help=f"frames per second (default {FPS}: the paper's, and "
                        f"the toy world's)")
    parser.add_argument("--clip-stride", type=int, default=1, help="frames between the starts of training clips")
    parser.add_argument("--flip", type=float, default=0.5, help="probability of a horizontal flip")
    parser.add_argument("--pool", type=int, default=2000, help="toy-world videos generated")
    parser.add_argument("--scenes", default="lamp", help="toy-world scenes, comma-separated")
    parser.add_argument("--clean-condition", type=float, default=0.0, metavar="SHARE",
                        help="share of the clips trained with one stream given clean at step 0 (half video, half "
                             "audio; no loss on it), so audio -> video and video -> audio can be sampled from the "
                             "conditional the network learnt (a departure; default 0, the paper's training)")
    parser.add_argument("--conditional-weight-cap", type=float, default=1.0, metavar="W",
                        help="with --clean-condition: a clip with a clean stream weighs the other stream's ε error by "
                             "1/SNR(t) (its x̂_0 error), kept in [1, W], so the layout decided at high noise is "
                             "learnt from the condition (default 1: the plain ε loss)")
    parser.add_argument("--init-checkpoint", default=None, metavar="PATH.pt",
                        help="with --init paper: the released base checkpoint file (Landscape.pt or AIST++.pt)")
    add_preview_argument(parser)


def check_arguments(args: argparse.Namespace) -> None:
    for name in ("steps", "clip_stride", "pool"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be a positive number, got {args.lr}.")
    if not args.conditional_weight_cap >= 1.0:
        raise ValueError(f"--conditional-weight-cap must be at least 1 (1 = the plain ε loss), got "
                         f"{args.conditional_weight_cap}.")
    for name in ("flip", "clean_condition"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} is a probability in [0, 1], got {getattr(args, name)}.")
    if args.fps < 1:
        raise ValueError(f"--fps must be at least 1, got {args.fps}.")
    check_preview_every(args)
    if args.lora_rank < 0:
        raise ValueError(f"--lora-rank must be 0 (every weight trains) or a positive rank, got {args.lora_rank}.")
    if args.lora_rank and not args.init:
        raise ValueError("A LoRA adapts existing weights: give --init studio|DIR|PATH.pt (or paper) with --lora-rank, "
                         "or leave --lora-rank out to train from scratch.")


def train(args: argparse.Namespace) -> Path:
    """Train, then write the loadable model (OUT/model.safetensors + OUT/model.json), the loss log and picture."""
    check_arguments(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = PRESETS[args.size]
    start = starting_pipeline(args)
    fmt = start.clip_format if start is not None else clip_format_from_args(args)
    set_seed(args.seed)
    objective = JointDiffusionObjective(starting_unet(start, args.lora_rank) if start is not None
                                        else build_model(model_flags(args, fmt)), args.conditional_weight_cap)
    started = time.time()
    footage = toyworld_footage(args, fmt) if args.data == "toyworld" else folder_footage(args.data, fmt,
                                                                                         args.clip_stride)
    if not len(footage):
        raise ValueError(f"No training clip of {fmt.frames} frames could be cut from the data.")
    if footage.skipped:
        report_skipped(footage.skipped, out)
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume and log.path.exists():
        log.path.unlink()
    default_lr = LORA_LR if args.lora_rank else FINE_TUNE_LR if start is not None else preset.lr
    ema = run_training(args, objective, footage, log, batch_size=args.batch_size or preset.batch_size,
                       lr=args.lr or default_lr)
    ema.copy_to(objective.unet)
    if args.lora_rank:
        export_adapter(out, objective.unet, args)
    else:
        export(out, objective.unet, fmt, args)
    plot_losses(log.read(), out / "loss_curve.png")
    summary = {"seconds": round(time.time() - started, 1), "init": init_record(args), "final": final_losses(log.read()),
               "clips": len(footage), "lora_rank": args.lora_rank,
               "parameters": sum(p.numel() for p in objective.unet.parameters()),
               "trained_parameters": sum(p.numel() for p in objective.unet.parameters() if p.requires_grad),
               "args": vars(args)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return out


def run_training(args, objective: JointDiffusionObjective, footage: Footage, log: LossLog, *, batch_size: int,
                 lr: float) -> EMA:
    accelerator = make_accelerator(args)
    trained = [p for p in objective.parameters() if p.requires_grad]  # all, or the LoRA's
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)  # Table A.1: no weight decay
    model, optimizer = accelerator.prepare(objective, optimizer)
    inner = accelerator.unwrap_model(model)
    state, ema = TrainState(), EMA(inner.unet, args.ema_decay)
    accelerator.register_for_checkpointing(state, ema)
    fmt = footage.fmt
    video_shape = (batch_size, fmt.frames, 3, fmt.height, fmt.width)
    audio_shape = (batch_size, 1, fmt.audio_samples)

    def step(index: int) -> dict[str, float]:
        picks = batch_indices(args.seed, index, batch_size, len(footage)).numpy()
        t, video_noise, audio_noise, flips, shifts, given = step_noise(
            args.seed, index, video_shape, audio_shape, inner.process.num_timesteps, args.clean_condition)
        video, audio = footage.batch(picks, (flips < args.flip).numpy())
        device = accelerator.device
        with accelerator.autocast():
            video_loss, audio_loss = model(video.to(device), audio.to(device), t.to(device), video_noise.to(device),
                                           audio_noise.to(device), shifts, given.to(device))
        update(accelerator, optimizer, video_loss + audio_loss, [model])
        ema.update(inner.unet)
        return {"loss": video_loss.item() + audio_loss.item(), "video_loss": video_loss.item(),
                "audio_loss": audio_loss.item()}

    run_loop(accelerator, args, STAGE, args.steps, state, step, log,
             preview=lambda: preview_sample(inner.unet, ema, fmt, args.seed))
    return ema


PREVIEW_STEPS = 10  # DDIM steps of a training preview (the tab's finished-run sample uses as many)


def preview_sample(unet: MMDiffusionUNet, ema: EMA, fmt: ClipFormat, seed: int) -> Preview:
    """One clip from the U-Net as it would be exported (EMA weights), DDIM with PREVIEW_STEPS steps and a fixed seed:
    its frames side by side (enlarged as the studio shows them) and its sound at 16 kHz."""
    with as_exported([(unet, ema)]):
        pipe = MMDiffusionPipeline(unet, sample_rate=fmt.sample_rate, fps=fmt.fps)
        output = pipe(num_inference_steps=PREVIEW_STEPS, sampler="ddim", generator=torch.Generator().manual_seed(seed))
    strip = np.concatenate(list(enlarged(output.video[0])), axis=1)
    return Preview(strip, playable(output.audio[0], fmt.sample_rate), SAMPLE_RATE)


# Starting weights (--init) -----------------------------------------------------------------------------------------

FINE_TUNE_LR = 1e-4  # the paper's learning rate: the default when starting from existing weights
LORA_LR = 1e-3  # a LoRA's default (its B starts at zero and it has few weights: a larger step than full fine-tuning)


def starting_pipeline(args: argparse.Namespace) -> MMDiffusionPipeline | None:
    """The pipeline `--init` names: `studio` (assets/models/mm_diffusion), `paper` (the released base checkpoint
    given by --init-checkpoint: it is not on the Hub), or a path (a folder save_pretrained wrote, or a checkpoint
    file such as Landscape.pt); None without --init."""
    init = resolve_init(args, "mm_diffusion")
    if init is None:
        return None
    path = init.path
    if init.kind == "paper":
        if not args.init_checkpoint or not Path(args.init_checkpoint).is_file():
            raise ValueError("--init paper needs --init-checkpoint PATH, the released Landscape.pt or AIST++.pt (the "
                             "checkpoints are not on the Hub)")
        path = Path(args.init_checkpoint)
    announce(init, "--size, --frames, --frame-size, --sample-rate, --fps and --dropout")
    start = MMDiffusionPipeline.from_pretrained(path)
    if start.lora is not None:
        raise ValueError(f"--init {init.label} is a LoRA run (an adapter on {start.lora['base']['init']}), not a whole "
                         f"model: start from its base, or from a model folder.")
    return start


def starting_unet(start: MMDiffusionPipeline, lora_rank: int = 0) -> MMDiffusionUNet:
    """The starting pipeline's U-Net in float32 and training mode: every weight trainable, or (lora_rank > 0) a
    fresh LoRA on its attention projections (`pipelines.mm_diffusion.lora.TARGETS`) and nothing else."""
    unet = start.unet.float().train()
    if lora_rank:
        add_lora(unet, lora_rank, mm_lora.TARGETS)
        return unet
    return unet.requires_grad_(True)


# The exported model ------------------------------------------------------------------------------------------------


def export(out: Path, unet: MMDiffusionUNet, fmt: ClipFormat, args: argparse.Namespace) -> Path:
    """OUT as the pipeline's `save_pretrained` folder: model.safetensors + model.json (flags, clip format, and how it
    was trained)."""
    record = {"size": args.size if not args.init else "init", "init": init_record(args), "data": args.data,
              "steps": args.steps, "seed": args.seed}
    if args.clean_condition:
        record["clean_condition"] = args.clean_condition  # the pipeline may sample from the learnt conditional
        record["conditional_weight_cap"] = args.conditional_weight_cap
    if args.data == "toyworld":
        record["scenes"] = args.scenes.split(",")  # what the coupling metric compares it with
    pipe = MMDiffusionPipeline(unet, sample_rate=fmt.sample_rate, fps=fmt.fps, training_record=record)
    return pipe.save_pretrained(out, dtype=torch.float16 if args.save_dtype == "fp16" else None)


def export_adapter(out: Path, unet: MMDiffusionUNet, args: argparse.Namespace) -> Path:
    """`--lora-rank`: OUT holds the adapter (adapter.safetensors + adapter.json naming its base,
    `pipelines.mm_diffusion.lora`), which `MMDiffusionPipeline.from_pretrained(OUT)` loads with its base."""
    tensors = {f"unet.{key}": value for key, value in lora_state(unet).items()}
    if args.save_dtype == "fp16":
        tensors = {key: value.half() for key, value in tensors.items()}
    base = {"init": args.init if args.init in ("studio", "paper") else str(Path(args.init).resolve()),
            "unet_parameters": mm_lora.base_parameter_count(unet)}
    if args.init == "paper":
        base["checkpoint"] = str(Path(args.init_checkpoint).resolve())
    config = {"model": mm_lora.MODEL, "rank": args.lora_rank, "alpha": args.lora_rank,
              "targets": list(mm_lora.TARGETS), "base": base, "data": args.data, "steps": args.steps,
              "seed": args.seed}
    return save_adapter(out, config, tensors)
