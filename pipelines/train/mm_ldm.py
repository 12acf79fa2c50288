"""Trainer for MM-LDM (paper 001): the KL-VAE, the multi-modal autoencoder, then the latent DiT, one stage a run.

Stages (`--stage vae|autoencoder|dit`, run in this order into the same OUT; each resumable, checkpoints under
OUT/checkpoints/<stage>/step-N, `--steps` and `--batch-size` are the stage's):

1. `vae`: the pre-compression KL-VAE (diffusers `AutoencoderKL`) on video frames and audio images, half of each batch
   each. The paper fine-tunes the decoder of Stable Diffusion's pretrained KL-f8; with no hub here, the studio and
   tiny VAEs train from scratch (encoder and decoder): LDM's loss without its LPIPS and GAN terms, L1 reconstruction
   of a posterior sample + 1e-6 × KL (LDM's kl-f8 weights; the L1 is a per-pixel mean, so the KL sum is divided by
   the pixel count). At the end the latent scaling factor is set as LDM sets it, 1 / std of the (EMA) VAE's scaled
   latents of up to SCALE_SAMPLES training frames and as many audio images. With `--init DIR` only the decoder is
   fine-tuned (the paper's recipe: the encoder, hence the latents and their scale, stay as they were). Writes OUT/vae/.
2. `autoencoder`: `MultiModalAutoencoder.training_losses` (Eq. 3: the shared diffusion decoder's ε-MSE, λ_cl = λ_co =
   0.1 classification and contrastive losses, λ_kl = 1e-9 KL; `--adversarial` adds λ_gan = 0.1 × the triplet hinge
   loss with a `TripletDiscriminator` trained beside it, each step). The frozen VAE (`--vae DIR`, else OUT/vae/, else
   the `--init` pipeline's) encodes every frame and audio image once before training (the posterior mean × scale, as
   the pipeline encodes). Writes OUT/autoencoder/ (and OUT/vae/ when the VAE came from elsewhere). With `--init DIR
   --decoder-only` the encoders (and so the latent space a DiT was trained on) stay as they were and the rest trains
   on: the shared decoder, its conditioning paths, the projectors and heads; then `--stage dit --steps 0` with the
   same `--init` writes the starting pipeline with the new autoencoder, its DiT unchanged.
3. `dit`: `scheduling_mm_ldm.dit_training_loss` (MSE_a + MSE_v, one t per clip, each clean latent kept as the
   condition for 5 % of the samples, never both) on the autoencoder's latents (`--autoencoder DIR`, else OUT), which
   are computed once before training (the posterior means, as the pipeline encodes; the paper's MM-LDM* timing also
   pre-computes them). The DiT sees them × `latent_scale`, set like the VAE's factor: 1 / std of all training
   latents (kept from the starting pipeline with `--init`). Then OUT is written by `MMLDMPipeline.save_pretrained`
   (vae/, autoencoder/, transformer/, scheduler/, model.json with the training record and the class names), which
   `MMLDMPipeline.from_pretrained(OUT)` loads. `--preview-every N`: one joint sample (PREVIEW_STEPS DDIM steps for the
   DiT and for the decoder, seed `--seed`): its frames side by side in OUT/previews/step-NNNNNN.png, its sound in .wav.

Every stage keeps an EMA of its network (`--ema-decay`; the exported weights are the EMA's), logs its losses to
OUT/loss_log.jsonl (a fresh run of a stage drops that stage's old records and checkpoints; other stages' stay), draws
OUT/loss_curve.png and adds its entry to OUT/training_summary.json ({stage: {seconds, steps, final losses, ...}}).

Data (`--data`), at the preset's clip (`--size`: studio 8 frames of 32² at 10 fps with 0.8 s of 16 kHz audio; tiny
8 of 16²; paper 16 of 256² with 1.6 s at 44.1 kHz):

- `toyworld`: `--pool` seeded toy-world sounding videos (`pipelines.toyworld.videos`, scenes `--scenes`, default
  `lamp` as the MM-Diffusion trainer's), 16 frames each, shrunk to the clip's frame size (area-averaged) and resampled;
  every window of the clip's frames starting every `--clip-stride` frames is a training clip. The class label is the
  scene (its index in `--scenes`).
- a FOLDER of video files with sound (.mp4 .mov .mkv .webm .avi .m4v; Landscape / AIST++ layout): each decoded at
  the clip's fps, centre-cropped square and resized, its sound mixed to mono at the clip's rate, and cut into windows
  the same way (a file shorter than a clip is padded: last frame held, silence). The class is the file's first
  sub-folder under FOLDER (files at the top are one class named after FOLDER). Files that cannot be read or have no
  sound are skipped with their reasons (printed and written to OUT/skipped.json; an error only when none is usable).

The audio of a clip enters as its audio image (`pipelines.audio.audio_image`: the 80-band mel as a gray image resized
to the frame size). From scratch the classification head has one output per class found.

Fine-tuning (`--init studio|DIR`, `pipelines.train.init`): every network of the stage starts from the bundled studio
model or a folder `MMLDMPipeline.save_pretrained` (or this trainer's dit stage) wrote; its clip format is used (--size
ignored, with a message); the optimiser starts fresh; model.json records `"init"`. The authors released no weights, so
`--init paper` is refused with a message. No LoRA here.

Ablation (the paper's Table 3, in small): `--no-cross-modal-condition` trains a new autoencoder whose shared decoder
does not attend to the other modality's semantic tokens; `python -m benchmarks.mm_ldm_autoencoder_ablation` compares
held-out reconstructions with the paper's.

Departures (studio and tiny sizes): the VAE trains from scratch (above); no horizontal flips (the released AE config
flips video with p = 0.5); learning rates are larger than the released configs' (AE 1e-4, DiT 1e-5) for short CPU
runs: `--lr` sets them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKL

from pipelines.audio import AudioSpec, audio_image
from pipelines.mm_diffusion.clips import SAMPLE_RATE, ClipFormat, enlarged, playable
from pipelines.mm_ldm.modeling_autoencoder import (
    DECODER_PREDICTION_TYPES,
    HIGH_NOISE_FRACTION,
    MultiModalAutoencoder,
)
from pipelines.mm_ldm.modeling_discriminator import TripletDiscriminator
from pipelines.mm_ldm.modeling_dit import MMLDMTransformer
from pipelines.mm_ldm.modeling_mm_ldm import PRESETS, Preset, kl_vae
from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline
from pipelines.mm_ldm.scheduling_mm_ldm import dit_training_loss, make_scheduler
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
    update,
)
from pipelines.train.data import report_skipped
from pipelines.train.init import announce, init_record, refuse_lora, resolve_init
from pipelines.train.mm_diffusion import (
    clip_windows,
    read_sounding_file,
    resample_audio,
    shrink_frames,
    video_files,
)

STAGES = ("vae", "autoencoder", "dit")
VAE_KL_WEIGHT = 1e-6  # LDM's kl-f8 config (kl_weight 1e-6 on the KL sum, beside the L1 sum)
SCALE_SAMPLES = 512  # frames (and as many audio images) whose latents set a scaling factor
ENCODE_BATCH = 64


@dataclass(frozen=True)
class StageDefaults:
    """Per stage of a size: training steps, batch size and AdamW learning rate."""

    steps: int
    batch_size: int
    lr: float


DEFAULTS: dict[str, dict[str, StageDefaults]] = {
    # The released configs: AE lr 1e-4 and batch 20 a GPU, DiT lr 1e-5 and batch 28 a GPU; the KL-VAE decoder
    # fine-tune lr 1e-5.
    "paper": {"vae": StageDefaults(20_000, 4, 1e-5), "autoencoder": StageDefaults(100_000, 20, 1e-4),
              "dit": StageDefaults(400_000, 28, 1e-5)},
    "studio": {"vae": StageDefaults(1500, 16, 1e-3), "autoencoder": StageDefaults(3000, 8, 3e-4),
               "dit": StageDefaults(5000, 64, 3e-4)},
    "tiny": {"vae": StageDefaults(3, 4, 1e-3), "autoencoder": StageDefaults(3, 2, 3e-4),
             "dit": StageDefaults(3, 4, 3e-4)},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This trainer's options (the common ones come from `pipelines.train.__main__`)."""
    parser.add_argument("--stage", required=True, choices=STAGES, help="the stage to train (in the order vae, "
                        "autoencoder, dit, into the same --out)")
    parser.add_argument("--size", default="studio", choices=tuple(PRESETS), help="networks and clip preset")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the stage (default: the size's)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips (vae: images) a step (default: the "
                        "size's)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the size's)")
    parser.add_argument("--vae", default=None, metavar="DIR", help="autoencoder stage: the KL-VAE of a finished vae "
                        "stage (its OUT, or the vae/ folder); default: --out")
    parser.add_argument("--autoencoder", default=None, metavar="DIR", help="dit stage: the VAE and autoencoder of a "
                        "finished autoencoder stage (its OUT); default: --out")
    parser.add_argument("--adversarial", action="store_true", help="autoencoder stage: add the triplet GAN loss")
    parser.add_argument("--decoder-only", action="store_true", help="autoencoder stage, with --init: keep the "
                        "encoders (the latent space the starting DiT knows) and train the rest on")
    parser.add_argument("--no-cross-modal-condition", dest="cross_modal_condition", action="store_false",
                        help="autoencoder stage, from scratch: the shared decoder does not attend to the other "
                             "modality's semantic tokens (the ablation of the paper's Table 3)")
    parser.add_argument("--decoder-prediction", default=None, choices=DECODER_PREDICTION_TYPES,
                        help="autoencoder stage: what the shared decoder predicts (default: the size's, or with "
                             "--init the starting autoencoder's; switching it fine-tunes the decoder to the new "
                             "target)")
    parser.add_argument("--per-frame-audio-condition", action=argparse.BooleanOptionalAction, default=None,
                        help="autoencoder stage: the video decoder also reads the audio's semantic tokens per frame "
                             "(default: the size's, or with --init the starting autoencoder's; with --init it adds "
                             "the zero-initialised path)")
    parser.add_argument("--per-frame-latent-condition", action=argparse.BooleanOptionalAction, default=None,
                        help="autoencoder stage: the video decoder also reads its own latent z_v per frame (default: "
                             "the size's, or with --init the starting autoencoder's; with --init it adds the "
                             "zero-initialised path)")
    parser.add_argument("--keyframe-skips", action=argparse.BooleanOptionalAction, default=None,
                        help="autoencoder stage: each keyframe's encoder features also reach z_v by its own "
                             "zero-initialised path (default: the size's, or with --init the starting autoencoder's; "
                             "with --init it adds the paths; the latents change, so train the DiT again)")
    parser.add_argument("--cross-modal-drop", type=float, default=0.0, help="autoencoder stage: share of the "
                        "decoder's training rows that do not hear the other modality's semantic tokens but keep their "
                        "own latent, so the encoders must put what they can into it (the paper: 0)")
    parser.add_argument("--frames-per-clip", type=int, default=1, help="autoencoder stage: frames of each clip the "
                        "shared decoder learns a step (the released code: 1)")
    parser.add_argument("--high-noise-share", type=float, default=0.0, help="autoencoder stage: share of the "
                        f"decoder's training rows whose t is drawn from the noisiest {HIGH_NOISE_FRACTION * 100:g}%% "
                        "of the schedule (the released code: 0, every t uniform)")
    parser.add_argument("--clip-stride", type=int, default=1, help="frames between the starts of training clips")
    parser.add_argument("--pool", type=int, default=1000, help="toy-world videos generated")
    parser.add_argument("--scenes", default="lamp", help="toy-world scenes, comma-separated (the class labels)")
    add_preview_argument(parser)


def check_arguments(args: argparse.Namespace) -> None:
    refuse_lora(args, "mm_ldm")
    check_preview_every(args)
    for name in ("clip_stride", "pool"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be 0 or more, got {args.steps}.")
    if args.batch_size is not None and args.batch_size < (2 if args.stage == "vae" else 1):
        raise ValueError(f"--batch-size must be at least {2 if args.stage == 'vae' else 1} for the {args.stage} stage "
                         f"(the vae stage takes half frames, half audio images), got {args.batch_size}.")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be a positive number, got {args.lr}.")
    if args.adversarial and args.stage != "autoencoder":
        raise ValueError("--adversarial is a loss of the autoencoder stage; leave it out for the "
                         f"{args.stage} stage.")
    if args.decoder_only and (args.stage != "autoencoder" or args.init is None):
        raise ValueError("--decoder-only fine-tunes a finished autoencoder: use it for the autoencoder stage with "
                         "--init DIR (or studio).")
    if args.frames_per_clip < 1:
        raise ValueError(f"--frames-per-clip must be at least 1, got {args.frames_per_clip}.")
    for name in ("high_noise_share", "cross_modal_drop"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(args, name)}.")
    if (args.frames_per_clip != 1 or args.high_noise_share or args.cross_modal_drop) and args.stage != "autoencoder":
        raise ValueError("--frames-per-clip, --high-noise-share and --cross-modal-drop train the autoencoder's shared "
                         f"decoder; leave them out for the {args.stage} stage.")
    for name in ("decoder_prediction", "per_frame_audio_condition", "per_frame_latent_condition", "keyframe_skips"):
        if getattr(args, name) is not None and args.stage != "autoencoder":
            part = "video encoder" if name == "keyframe_skips" else "shared decoder"
            raise ValueError(f"--{name.replace('_', '-')} sets the autoencoder's {part}; leave it out for the "
                             f"{args.stage} stage.")
    if not args.cross_modal_condition and (args.stage != "autoencoder" or args.init is not None):
        raise ValueError("--no-cross-modal-condition builds a new autoencoder: use it for the autoencoder stage "
                         "without --init (a starting autoencoder keeps its own setting).")


# Data ----------------------------------------------------------------------------------------------------------------


def clip_format(preset: Preset) -> ClipFormat:
    """The preset's clip: its frames, frame size and fps, with its audio spec's clip of samples."""
    spec = preset.spec
    return ClipFormat(preset.num_frames, preset.frame_size, preset.frame_size, spec.clip_samples, preset.fps,
                      spec.sample_rate)


@dataclass
class SoundingClips:
    """Training clips: every video's frames one after another, and per clip window its audio image and class.

    frames: uint8 `[N_frames, H, W, 3]`; offsets[k]: the first row of video k in `frames`; windows: `[M, 2]` rows
    (video, first frame); audio_images: float32 `[M, H, W]` in [-1, 1] (the audio image's one gray channel);
    labels: int64 `[M]`, indices into `classes`; skipped: files that could not be used, with the reason.
    """

    frames: np.ndarray
    offsets: np.ndarray
    windows: np.ndarray
    audio_images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    fmt: ClipFormat
    skipped: list[dict] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.windows)

    def frame_rows(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """Rows of `frames` of each clip's frames: `[len(clips), F]`."""
        video, start = self.windows[np.asarray(clips)].T
        return (self.offsets[video] + start)[:, None] + np.arange(self.fmt.frames)


def make_clips(videos: list[np.ndarray], audios: list[np.ndarray], video_labels: list[int], classes: list[str],
               fmt: ClipFormat, spec: AudioSpec, stride: int, skipped: list[dict] | None = None) -> SoundingClips:
    """Cut whole videos (uint8 `[T_k, H, W, 3]`, audio `[T_k · samples a frame]`) into clip windows with their audio
    images (`spec`'s mel) and labels."""
    windows = clip_windows([len(v) for v in videos], fmt.frames, stride)
    per_frame = fmt.audio_samples // fmt.frames
    images = np.stack([audio_image(audios[video][start * per_frame : start * per_frame + fmt.audio_samples], spec,
                                   fmt.height, fmt.width)[0] for video, start in windows]).astype(np.float32)
    offsets = np.cumsum([0] + [len(v) for v in videos[:-1]]).astype(np.int64)
    labels = np.asarray([video_labels[video] for video, _ in windows], dtype=np.int64)
    return SoundingClips(np.concatenate(videos), offsets, windows, images, labels, classes, fmt, skipped or [])


def toyworld_clips(args: argparse.Namespace, fmt: ClipFormat, spec: AudioSpec, chunk: int = 100) -> SoundingClips:
    """`--pool` toy sounding videos of `--scenes` in the clip's format, labelled by their scene."""
    from pipelines.toyworld import videos as toy_videos

    if fmt.fps != toy_videos.FPS or fmt.frames > toy_videos.NUM_FRAMES:
        raise ValueError(f"Toy-world videos are {toy_videos.NUM_FRAMES} frames at {toy_videos.FPS:g} fps; a clip of "
                         f"{fmt.frames} frames at {fmt.fps} fps does not fit.")
    scenes = [scene.strip() for scene in args.scenes.split(",") if scene.strip()]
    videos, audios, labels = [], [], []
    for first in range(0, args.pool, chunk):
        batch = toy_videos.sample_videos(min(chunk, args.pool - first), args.seed + first, scenes=tuple(scenes))
        for index in range(len(batch)):
            videos.append(shrink_frames(batch.frames[index], fmt))
            audios.append(resample_audio(batch.audio[index], batch.sample_rate, fmt))
            labels.append(scenes.index(batch.scenes[index]))
    return make_clips(videos, audios, labels, scenes, fmt, spec, args.clip_stride)


def folder_clips(folder: str | Path, fmt: ClipFormat, spec: AudioSpec, stride: int) -> SoundingClips:
    """Every video file under `folder` with its class (module docstring); unusable files are skipped with reasons."""
    folder = Path(folder)
    paths = video_files(folder)
    videos, audios, names, skipped = [], [], [], []
    for path in paths:
        relative = path.relative_to(folder)
        try:
            frames, audio = read_sounding_file(path, fmt, "MM-LDM")
        except ValueError as error:
            skipped.append({"file": str(relative), "reason": str(error)})
            continue
        videos.append(frames)
        audios.append(audio)
        names.append(relative.parts[0] if len(relative.parts) > 1 else folder.name)
    if not videos:
        raise ValueError(f"None of the {len(paths)} video file(s) in {folder} could be used: at least one video with "
                         f"sound is needed. " + " ".join(item["reason"] for item in skipped[:3]))
    classes = sorted(set(names))
    return make_clips(videos, audios, [classes.index(n) for n in names], classes, fmt, spec, stride, skipped)


def load_clips(args: argparse.Namespace, preset: Preset, out: Path) -> SoundingClips:
    """The training clips of `--data` at the preset's clip; skipped files are reported (OUT/skipped.json)."""
    fmt = clip_format(preset)
    clips = (toyworld_clips(args, fmt, preset.spec) if args.data == "toyworld"
             else folder_clips(args.data, fmt, preset.spec, args.clip_stride))
    if clips.skipped:
        report_skipped(clips.skipped, out)
    if not len(clips):
        raise ValueError(f"No training clip of {fmt.frames} frames could be cut from the data.")
    return clips


def pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[..., H, W, 3]` -> float `[..., 3, H, W]` in [-1, 1] (the pipeline's `x / 127.5 − 1`)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0).movedim(-1, -3)


def audio_pixels(images: np.ndarray) -> torch.Tensor:
    """Gray audio images `[N, H, W]` -> `[N, 3, H, W]` (the gray value in all three channels, as PIL's RGB)."""
    return torch.from_numpy(np.ascontiguousarray(images))[:, None].expand(-1, 3, -1, -1).contiguous()


# Where a stage's networks come from -----------------------------------------------------------------------------------


def starting_pipeline(args: argparse.Namespace) -> MMLDMPipeline | None:
    """The pipeline `--init studio|DIR` names (the bundled weights or a folder save_pretrained wrote), or None."""
    init = resolve_init(args, "mm_ldm")
    if init is None:
        return None
    if init.kind == "paper":
        raise ValueError("--init paper: the MM-LDM authors released no weights; use --init DIR, a folder a previous "
                         "run wrote")
    announce(init)
    return MMLDMPipeline.from_pretrained(init.path)


def preset_for(args: argparse.Namespace, start: MMLDMPipeline | None) -> Preset:
    """The size preset, or (with --init) one with the starting pipeline's clip."""
    preset = PRESETS[args.size]
    if start is None:
        return preset
    return dataclasses.replace(preset, num_frames=start.num_frames, frame_size=start.frame_size, fps=start.fps,
                               audio_spec=start.audio_spec)


def module_folder(folder: str | Path, name: str) -> Path | None:
    """`folder/name` when it holds a saved module, else `folder` itself when it does (the module's own folder)."""
    folder = Path(folder)
    for candidate in (folder / name, folder):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def stage_input(args, name: str, option: str | None, start: MMLDMPipeline | None, kind, needed_by: str):
    """A finished stage's network (`vae` or `autoencoder`) for a later stage: from the option's folder, else OUT, else
    the starting pipeline; frozen, float32, eval mode."""
    source = option or args.out
    folder = module_folder(source, name)
    if folder is not None:
        module = kind.from_pretrained(folder)
    elif start is not None and option is None:
        module = getattr(start, name)
    else:
        raise ValueError(f"The {needed_by} stage needs a trained {name}: none in {source}. Run --stage {name} into "
                         f"that folder first (or give --init DIR).")
    return module.float().eval().requires_grad_(False)


def trainable(module: torch.nn.Module) -> torch.nn.Module:
    return module.float().train().requires_grad_(True)


# Stage 1: the KL-VAE ------------------------------------------------------------------------------------------------


class VAEObjective(torch.nn.Module):
    """One forward = (L1 of the reconstruction of a posterior sample, KL per sample) of an `AutoencoderKL`, both
    averaged over the batch."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
        reconstruction = self.vae.decode(posterior.mean + posterior.std * noise).sample
        return (reconstruction.float() - x).abs().mean(), posterior.kl().mean()


def vae_batch(clips: SoundingClips, seed: int, step: int, size: int) -> torch.Tensor:
    """`size // 2` frames and `size − size // 2` audio images of step `step`, `[size, 3, H, W]` in [-1, 1]."""
    frames = pixels(clips.frames[batch_indices(seed, step, size // 2, len(clips.frames)).numpy()])
    images = audio_pixels(clips.audio_images[batch_indices(seed + 1, step, size - size // 2, len(clips)).numpy()])
    return torch.cat([frames, images])


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: np.ndarray, to_pixels=pixels, batch: int = ENCODE_BATCH) -> torch.Tensor:
    """Images (uint8 frames for `pixels`, gray audio images for `audio_pixels`) -> the KL-VAE's posterior means ×
    scaling factor `[N, C, h, w]`, as the pipeline encodes."""
    device = next(vae.parameters()).device
    latents = [vae.encode(to_pixels(images[first : first + batch]).to(device)).latent_dist.mode().cpu()
               for first in range(0, len(images), batch)]
    return torch.cat(latents) * vae.config.scaling_factor


def measured_scale(latents: torch.Tensor) -> float:
    """LDM's scaling factor: 1 / the standard deviation of every latent value (scaled latents then have std 1)."""
    return float(1.0 / latents.float().std())


def vae_scale(vae: AutoencoderKL, clips: SoundingClips, seed: int) -> float:
    """The scaling factor of a freshly trained VAE, from up to SCALE_SAMPLES frames and as many audio images (a
    seeded draw)."""
    generator = np.random.default_rng(seed)
    frames = np.sort(generator.permutation(len(clips.frames))[:SCALE_SAMPLES])
    images = np.sort(generator.permutation(len(clips))[:SCALE_SAMPLES])
    vae.register_to_config(scaling_factor=1.0)
    return measured_scale(torch.cat([encode_images(vae, clips.frames[frames]),
                                     encode_images(vae, clips.audio_images[images], audio_pixels)]))


def prepare_stage(accelerator, objective, optimizer, network: str, ema_decay: float):
    """Accelerate's objective and optimizer, the trained network inside (`objective.<network>`), and the step
    counter and EMA registered for checkpointing."""
    objective, optimizer = accelerator.prepare(objective, optimizer)
    inner = getattr(accelerator.unwrap_model(objective), network)
    state, ema = TrainState(), EMA(inner, ema_decay)
    accelerator.register_for_checkpointing(state, ema)
    return objective, optimizer, inner, state, ema


def train_vae(args, clips: SoundingClips, preset: Preset, start: MMLDMPipeline | None, log: LossLog,
              defaults: StageDefaults) -> AutoencoderKL:
    torch.manual_seed(args.seed)
    if start is not None:  # the paper's recipe: fine-tune the decoder, keep the encoder (and so the latents' scale)
        vae = start.vae.float().train().requires_grad_(False)
        for part in (vae.decoder, vae.post_quant_conv):
            part.requires_grad_(True)
    else:
        vae = kl_vae(sample_size=preset.frame_size, **preset.vae).train()
    accelerator = make_accelerator(args)
    objective = VAEObjective(vae)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=args.lr or defaults.lr,
                                  betas=(0.5, 0.9), weight_decay=0.0)  # LDM's autoencoder Adam betas
    objective, optimizer, inner, state, ema = prepare_stage(accelerator, objective, optimizer, "vae", args.ema_decay)
    batch_size = args.batch_size or defaults.batch_size

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        x = vae_batch(clips, seed, index, batch_size).to(accelerator.device)
        generator = torch.Generator().manual_seed(seed * 7919 + index)
        with accelerator.autocast():
            l1, kl = objective(x, generator)
        update(accelerator, optimizer, l1 + VAE_KL_WEIGHT * kl / x[0].numel(), [objective])
        ema.update(inner)
        return {"l1": l1.item(), "kl": kl.item()}

    run_loop(accelerator, args, "vae", stage_steps(args, defaults), state, step, log)
    ema.copy_to(inner)
    vae = inner.eval().requires_grad_(False)
    if start is None:
        vae.register_to_config(scaling_factor=vae_scale(vae, clips, args.seed))
    return vae


# Stage 2: the multi-modal autoencoder -------------------------------------------------------------------------------


@dataclass
class VAELatents:
    """The scaled KL-VAE latents of every training frame `[N_frames, C, h, w]` and audio image `[M, C, h, w]`."""

    frames: torch.Tensor
    audio: torch.Tensor

    @classmethod
    def of(cls, vae: AutoencoderKL, clips: SoundingClips) -> VAELatents:
        return cls(encode_images(vae, clips.frames), encode_images(vae, clips.audio_images, audio_pixels))

    def batch(self, clips: SoundingClips, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio-image latents `[B, C, h, w]`, frame latents `[B, F, C, h, w]`) of clip windows `rows`."""
        return self.audio[rows], self.frames[torch.from_numpy(clips.frame_rows(rows))]


class AutoencoderObjective(torch.nn.Module):
    """One forward = `MultiModalAutoencoder.training_losses` (Eq. 3) on the shared schedule."""

    def __init__(self, autoencoder: MultiModalAutoencoder, frames_per_clip: int = 1, high_noise_share: float = 0.0,
                 cross_modal_drop: float = 0.0) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.scheduler = make_scheduler()
        self.rows = {"frames_per_clip": frames_per_clip, "high_noise_share": high_noise_share,
                     "cross_modal_drop": cross_modal_drop}

    def forward(self, audio: torch.Tensor, frames: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                vae: AutoencoderKL | None = None, discriminator: TripletDiscriminator | None = None) -> dict:
        return self.autoencoder.training_losses(audio, frames, labels, self.scheduler, generator, vae=vae,
                                                discriminator=discriminator, **self.rows)


def decoder_options(args: argparse.Namespace) -> dict:
    """The autoencoder's settings the command line gives: the shared decoder's and the keyframe paths (the rest come
    from the size or the --init model)."""
    options = {"decoder_prediction_type": args.decoder_prediction,
               "per_frame_audio_condition": args.per_frame_audio_condition,
               "per_frame_latent_condition": args.per_frame_latent_condition, "keyframe_skips": args.keyframe_skips}
    return {name: value for name, value in options.items() if value is not None}


def new_autoencoder(preset: Preset, vae: AutoencoderKL, num_classes: int, cross_modal_condition: bool = True,
                    **options) -> MultiModalAutoencoder:
    """The preset's autoencoder on `vae`'s latents, with one class output per class of the data (`options` override
    the preset's)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return MultiModalAutoencoder(vae_channels=vae.config.latent_channels, vae_size=preset.frame_size // factor,
                                 num_frames=preset.num_frames, **{**preset.autoencoder, "num_classes": num_classes,
                                                                  "cross_modal_condition": cross_modal_condition,
                                                                  **options})


def starting_autoencoder(start: MMLDMPipeline, vae: AutoencoderKL, clips: SoundingClips,
                         **options) -> MultiModalAutoencoder:
    """The --init autoencoder, with the decoder settings `options` changed: a path they add starts at zero, so the
    model begins as it was."""
    autoencoder = trainable(start.autoencoder)
    if any(autoencoder.config[name] != value for name, value in options.items()):
        settings = {name: value for name, value in autoencoder.config.items() if not name.startswith("_")}
        changed = MultiModalAutoencoder(**{**settings, **options})  # not from_config: it resets defaulted keys
        missing, unexpected = changed.load_state_dict(autoencoder.state_dict(), strict=False)
        added = ("frame_sound.", "frame_latent.", "keyframe_paths.")
        if unexpected or any(not name.startswith(added) for name in missing):
            raise ValueError("--init: the starting autoencoder's weights do not fit these decoder settings.")
        autoencoder = trainable(changed)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if (autoencoder.config.vae_channels, autoencoder.config.vae_size) != (vae.config.latent_channels,
                                                                           clips.fmt.height // factor):
        raise ValueError("--init: the starting autoencoder does not read this VAE's latents (its vae_channels or "
                         "vae_size differ): train the autoencoder from scratch, or use the starting pipeline's VAE.")
    if autoencoder.config.num_classes < len(clips.classes):
        raise ValueError(f"--init: the starting autoencoder knows {autoencoder.config.num_classes} classes; the data "
                         f"has {len(clips.classes)} ({', '.join(clips.classes)}).")
    return autoencoder


def keep_encoders(autoencoder: MultiModalAutoencoder) -> None:
    """Freeze what maps a clip to its latents (the audio and video encoders, the content frame, the keyframe paths),
    so the latent space and a DiT trained on it stay valid while the decoder trains on."""
    for part in (autoencoder.audio_encoder, autoencoder.video_encoder):
        part.requires_grad_(False)
    if autoencoder.config.keyframe_skips:
        autoencoder.keyframe_paths.requires_grad_(False)
    autoencoder.content_frame.requires_grad_(False)


def train_autoencoder(args, clips: SoundingClips, vae: AutoencoderKL, preset: Preset, start: MMLDMPipeline | None,
                      log: LossLog, defaults: StageDefaults) -> MultiModalAutoencoder:
    if args.frames_per_clip > clips.fmt.frames:
        raise ValueError(f"--frames-per-clip {args.frames_per_clip}: a clip has only {clips.fmt.frames} frames.")
    latents = VAELatents.of(vae, clips)
    torch.manual_seed(args.seed)
    if start is None:
        autoencoder = new_autoencoder(preset, vae, len(clips.classes), args.cross_modal_condition,
                                      **decoder_options(args)).train()
    else:
        autoencoder = starting_autoencoder(start, vae, clips, **decoder_options(args))
    if args.decoder_only:
        keep_encoders(autoencoder)
    accelerator = make_accelerator(args)
    objective = AutoencoderObjective(autoencoder, args.frames_per_clip, args.high_noise_share, args.cross_modal_drop)
    optimizer = torch.optim.AdamW([p for p in autoencoder.parameters() if p.requires_grad], lr=args.lr or defaults.lr,
                                  weight_decay=0.0)
    objective, optimizer, inner, state, ema = prepare_stage(accelerator, objective, optimizer, "autoencoder",
                                                            args.ema_decay)
    discriminator = d_optimizer = None
    if args.adversarial:
        discriminator = TripletDiscriminator()
        d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=args.lr or defaults.lr, betas=(0.5, 0.9))
        discriminator, d_optimizer = accelerator.prepare(discriminator, d_optimizer)
        vae.to(accelerator.device)
    batch_size = args.batch_size or defaults.batch_size

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        rows = batch_indices(seed, index, batch_size, len(clips)).numpy()
        audio, frames = (t.to(accelerator.device) for t in latents.batch(clips, rows))
        labels = torch.from_numpy(clips.labels[rows]).to(accelerator.device)
        generator = torch.Generator().manual_seed(seed * 7919 + index)
        with accelerator.autocast():
            losses = objective(audio, frames, labels, generator, vae if discriminator is not None else None,
                               discriminator)
        update(accelerator, optimizer, losses["total"], [objective])
        if discriminator is not None:
            d_optimizer.zero_grad(set_to_none=True)  # the autoencoder's adversarial term reached it too
            update(accelerator, d_optimizer, losses["discriminator"], [discriminator])
        ema.update(inner)
        return {name: value.item() for name, value in losses.items()}

    run_loop(accelerator, args, "autoencoder", stage_steps(args, defaults), state, step, log)
    ema.copy_to(inner)
    vae.cpu()
    return inner.eval().requires_grad_(False)


# Stage 3: the latent DiT --------------------------------------------------------------------------------------------


@torch.no_grad()
def perceptual_latents(autoencoder: MultiModalAutoencoder, latents: VAELatents, clips: SoundingClips,
                       batch: int = ENCODE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_a `[M, C, h_a, w_a]`, z_v `[M, C, h_v, w_v]`) of every clip window: the posterior means, as the pipeline
    encodes its conditions."""
    audio, video = [], []
    for first in range(0, len(clips), batch):
        a, v = latents.batch(clips, np.arange(first, min(first + batch, len(clips))))
        audio.append(autoencoder.encode_audio(a).mode())
        video.append(autoencoder.encode_video(v).mode())
    return torch.cat(audio), torch.cat(video)


class DiTObjective(torch.nn.Module):
    """One forward = `scheduling_mm_ldm.dit_training_loss` (MSE_a + MSE_v with 5 % kept conditions each)."""

    def __init__(self, transformer: MMLDMTransformer) -> None:
        super().__init__()
        self.transformer = transformer
        self.scheduler = make_scheduler()

    def forward(self, audio: torch.Tensor, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return dit_training_loss(self.transformer, self.scheduler, audio, video, generator)


PREVIEW_STEPS = 10  # DDIM steps of the DiT and of the decoder in a training preview


def train_dit(args, clips: SoundingClips, vae: AutoencoderKL, autoencoder: MultiModalAutoencoder, preset: Preset,
              start: MMLDMPipeline | None, log: LossLog, defaults: StageDefaults) -> tuple[MMLDMTransformer, float]:
    """The trained DiT (EMA weights) and the latent scale it was trained with."""
    z_audio, z_video = perceptual_latents(autoencoder, VAELatents.of(vae, clips), clips)
    scale = start.latent_scale if start is not None else measured_scale(torch.cat([z_audio.flatten(),
                                                                                   z_video.flatten()]))
    z_audio, z_video = z_audio * scale, z_video * scale
    torch.manual_seed(args.seed)
    if start is not None:
        transformer = trainable(start.transformer)
    else:
        audio_shape, video_shape = autoencoder.latent_shapes()
        transformer = MMLDMTransformer(audio_latent_size=audio_shape, video_latent_size=video_shape,
                                       **preset.transformer)
    accelerator = make_accelerator(args)
    objective = DiTObjective(transformer)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.lr or defaults.lr, weight_decay=0.0)
    objective, optimizer, inner, state, ema = prepare_stage(accelerator, objective, optimizer, "transformer", args.ema_decay)
    batch_size = args.batch_size or defaults.batch_size

    def step(index: int) -> dict[str, float]:
        seed = data_seed(accelerator, args.seed)
        rows = batch_indices(seed, index, batch_size, len(clips))
        generator = torch.Generator().manual_seed(seed * 7919 + index)
        with accelerator.autocast():
            loss = objective(z_audio[rows].to(accelerator.device), z_video[rows].to(accelerator.device), generator)
        update(accelerator, optimizer, loss, [objective])
        ema.update(inner)
        return {"loss": loss.item()}

    def preview() -> Preview:
        with as_exported([(inner, ema), (autoencoder, None), (vae, None)]):
            pipe = MMLDMPipeline(vae, autoencoder, inner, make_scheduler(), fps=preset.fps,
                                 audio_spec=preset.audio_spec, latent_scale=scale).to(accelerator.device)
            output = pipe(num_inference_steps=PREVIEW_STEPS, decoder_steps=PREVIEW_STEPS,
                          generator=torch.Generator().manual_seed(args.seed))
        strip = np.concatenate(list(enlarged(output.video[0])), axis=1)
        return Preview(strip, playable(output.audio[0], output.sample_rate), SAMPLE_RATE)

    vae.to(accelerator.device)
    autoencoder.to(accelerator.device)
    run_loop(accelerator, args, "dit", stage_steps(args, defaults), state, step, log, preview=preview)
    ema.copy_to(inner)
    vae.cpu()
    autoencoder.cpu()
    return inner.cpu().eval().requires_grad_(False), scale


# Entry ---------------------------------------------------------------------------------------------------------------


def stage_steps(args: argparse.Namespace, defaults: StageDefaults) -> int:
    return args.steps if args.steps is not None else defaults.steps


def fresh_stage(out: Path, stage: str, log: LossLog) -> None:
    """A stage run without --resume starts over: its old checkpoints and log records go (other stages' stay)."""
    shutil.rmtree(out / "checkpoints" / stage, ignore_errors=True)
    if log.path.exists():
        log.truncate(stage, 0)


def read_summary(out: Path) -> dict:
    path = out / "training_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def train(args: argparse.Namespace) -> Path:
    """Run one stage into OUT (module docstring)."""
    check_arguments(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = starting_pipeline(args)
    preset = preset_for(args, start)
    defaults = DEFAULTS[args.size][args.stage]
    set_seed(args.seed)
    log = LossLog(out / "loss_log.jsonl")
    if not args.resume:
        fresh_stage(out, args.stage, log)
    started = time.time()
    clips = load_clips(args, preset, out)
    dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32
    entry = {"init": init_record(args), "data": args.data, "clips": len(clips), "classes": clips.classes,
             "steps": stage_steps(args, defaults), "batch_size": args.batch_size or defaults.batch_size,
             "lr": args.lr or defaults.lr}
    if args.stage == "vae":
        vae = train_vae(args, clips, preset, start, log, defaults)
        save_module(vae, out / "vae", dtype)
        entry["scaling_factor"] = vae.config.scaling_factor
    elif args.stage == "autoencoder":
        vae = stage_input(args, "vae", args.vae, start, AutoencoderKL, "autoencoder")
        autoencoder = train_autoencoder(args, clips, vae, preset, start, log, defaults)
        if module_folder(out, "vae") is None or args.vae is not None:
            save_module(vae, out / "vae", dtype)  # OUT holds every network the pipeline needs
        save_module(autoencoder, out / "autoencoder", dtype)
        entry["adversarial"] = args.adversarial
        entry["decoder_only"] = args.decoder_only
        entry["cross_modal_condition"] = autoencoder.config.cross_modal_condition
        entry["decoder_prediction_type"] = autoencoder.config.decoder_prediction_type
        entry["per_frame_audio_condition"] = autoencoder.config.per_frame_audio_condition
        entry["per_frame_latent_condition"] = autoencoder.config.per_frame_latent_condition
        entry["keyframe_skips"] = autoencoder.config.keyframe_skips
        entry["frames_per_clip"] = args.frames_per_clip
        entry["high_noise_share"] = args.high_noise_share
        entry["cross_modal_drop"] = args.cross_modal_drop
    else:
        vae = stage_input(args, "vae", args.autoencoder, start, AutoencoderKL, "dit")
        autoencoder = stage_input(args, "autoencoder", args.autoencoder, start, MultiModalAutoencoder, "dit")
        transformer, scale = train_dit(args, clips, vae, autoencoder, preset, start, log, defaults)
        summary = read_summary(out)
        record = {"size": args.size if start is None else "init", "init": init_record(args), "data": args.data,
                  "classes": summary.get("autoencoder", {}).get("classes", clips.classes), "seed": args.seed,
                  "steps": {**{name: summary[name]["steps"] for name in STAGES if name in summary},
                            "dit": entry["steps"]}}
        pipe = MMLDMPipeline(vae, autoencoder, transformer, make_scheduler(), fps=preset.fps,
                             audio_spec=preset.audio_spec, latent_scale=scale, training_record=record)
        pipe.save_pretrained(out, dtype=dtype if dtype != torch.float32 else None)
        entry["latent_scale"] = scale
    records = log.read()
    plot_losses(records, out / "loss_curve.png")
    entry["final"] = {name: value for name, value in final_losses(records).items()
                      if name.startswith(f"{args.stage}/")}
    entry["seconds"] = round(time.time() - started, 1)
    entry["args"] = vars(args)
    summary = read_summary(out)
    summary[args.stage] = entry
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return out
