"""MM-LDM's autoencoder ablation (the paper's Table 3, in small): held-out reconstruction with and without the
semantic cross-modal condition.

Two autoencoder stages trained alike on one KL-VAE, the second with `--no-cross-modal-condition` (its shared decoder
does not attend to the other modality's semantic tokens):

    python -m pipelines.train mm_ldm --stage autoencoder --data toyworld --size studio --pool 400 --vae VAE_OUT \\
        --steps 900 --out WITH
    python -m pipelines.train mm_ldm --stage autoencoder ... --no-cross-modal-condition --out WITHOUT
    python -m benchmarks.mm_ldm_autoencoder_ablation WITH WITHOUT

Each autoencoder reconstructs the same held-out toy clips (seeded apart from training): the posterior means of both
encoders, then the shared decoder (DDIM `--decoder-steps`, guidance 2.5, the same noise for both) and the KL-VAE.
Reported per autoencoder: frame PSNR, audio-image PSNR, the mean absolute log-mel error in dB, and the correlation of
the reconstructed hum's pitch with the true one (lamp clips: the audio's one number that depends on the picture).
Prints a Markdown table and writes benchmarks/results/mm_ldm_autoencoder_ablation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from argparse import Namespace
from datetime import date
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from pipelines.audio import audio_image_to_log_mel, audio_image_to_waveform
from pipelines.metrics.sounding_video import hum_pitch
from pipelines.mm_ldm.modeling_autoencoder import MultiModalAutoencoder
from pipelines.mm_ldm.modeling_dit import MMLDMTransformer
from pipelines.mm_ldm.pipeline_mm_ldm import DECODER_GUIDANCE_SCALE, GRIFFIN_LIM_ITERATIONS, MMLDMPipeline
from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler
from pipelines.train.mm_ldm import VAELatents, audio_pixels, perceptual_latents, pixels, toyworld_clips
from pipelines.weights import repo_relative

RESULTS = Path(__file__).resolve().parent / "results" / "mm_ldm_autoencoder_ablation.json"
HELD_OUT_SEED = 987_654  # toy-world seeds start here, far from the trainer's (0 onwards)


def decoding_pipeline(folder: Path) -> MMLDMPipeline:
    """The autoencoder stage's OUT (vae/, autoencoder/) as a pipeline for `decode_latents`: its DiT is a fresh
    one-block network that decoding never calls (a pipeline holds one)."""
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    autoencoder = MultiModalAutoencoder.from_pretrained(folder / "autoencoder", torch_dtype=torch.float32)
    audio_shape, video_shape = autoencoder.latent_shapes()
    unused = MMLDMTransformer(audio_latent_size=audio_shape, video_latent_size=video_shape, hidden_size=8, depth=1,
                              num_heads=1)
    size = vae.config.sample_size
    spec = "mm_ldm_studio" if size < 256 else "mm_ldm"
    return MMLDMPipeline(vae, autoencoder, unused, make_scheduler(), audio_spec=spec)


def psnr(error: float) -> float:
    return float(10 * np.log10(1.0 / error))


def reconstruct(pipe: MMLDMPipeline, clips, decoder_steps: int, batch: int = 8) -> dict:
    """Held-out reconstruction errors of one autoencoder (see the module docstring)."""
    ae = pipe.autoencoder
    with torch.no_grad():
        z_audio, z_video = perceptual_latents(ae, VAELatents.of(pipe.vae, clips), clips)
        generator = torch.Generator().manual_seed(0)
        frames, images = [], []
        for first in range(0, len(clips), batch):
            f, a = pipe.decode_latents(z_audio[first:first + batch], z_video[first:first + batch], decoder_steps,
                                       DECODER_GUIDANCE_SCALE, generator)
            frames.append(f.clamp(-1, 1)), images.append(a.clamp(-1, 1))
    frames, images = torch.cat(frames), torch.cat(images)
    true_frames = pixels(clips.frames[clips.frame_rows(np.arange(len(clips)))])
    true_images = audio_pixels(clips.audio_images)
    spec, mel_frames = pipe.spec, pipe.mel_frames
    mels = [audio_image_to_log_mel(x.numpy(), spec, mel_frames) for x in images]
    truth = [audio_image_to_log_mel(x.numpy(), spec, mel_frames) for x in true_images]
    mel_db = float(np.mean([np.abs(a - b).mean() for a, b in zip(mels, truth)]) * 20 / np.log(10))
    fmt = pipe.clip_format
    pitches = [hum_pitch(audio_image_to_waveform(x.numpy(), spec, mel_frames, GRIFFIN_LIM_ITERATIONS), fmt)
               for x in images]
    true_pitches = [hum_pitch(audio_image_to_waveform(x.numpy(), spec, mel_frames, GRIFFIN_LIM_ITERATIONS), fmt)
                    for x in true_images]
    heard = np.isfinite(pitches) & np.isfinite(true_pitches)
    return {"frame_psnr": psnr(float(((frames - true_frames) / 2).pow(2).mean())),
            "audio_image_psnr": psnr(float(((images - true_images) / 2).pow(2).mean())),
            "mel_error_db": mel_db,
            "pitch_correlation": float(np.corrcoef(np.log(np.asarray(pitches)[heard]),
                                                   np.log(np.asarray(true_pitches)[heard]))[0, 1]),
            "hum_heard": int(heard.sum())}


def held_out_clips(pipe: MMLDMPipeline, videos: int):
    """`videos` held-out toy lamp videos, two clip windows each, in the pipeline's format."""
    return toyworld_clips(Namespace(scenes="lamp", pool=videos, seed=HELD_OUT_SEED, clip_stride=8), pipe.clip_format,
                          pipe.spec)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("with_condition", type=Path, help="OUT of the autoencoder stage trained as the paper's")
    parser.add_argument("without_condition", type=Path, help="OUT of the one trained --no-cross-modal-condition")
    parser.add_argument("--videos", type=int, default=16, help="held-out toy videos (two clips each)")
    parser.add_argument("--decoder-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = {}
    for name, folder in (("with cross-modal condition", args.with_condition),
                         ("without", args.without_condition)):
        pipe = decoding_pipeline(folder)
        expected = name.startswith("with ")
        if pipe.autoencoder.config.cross_modal_condition != expected:
            raise SystemExit(f"{folder}: its autoencoder was trained with cross_modal_condition="
                             f"{pipe.autoencoder.config.cross_modal_condition}, expected {expected}")
        clips = held_out_clips(pipe, args.videos)
        started = time.time()
        rows[name] = {**reconstruct(pipe, clips, args.decoder_steps), "clips": len(clips),
                      "seconds": round(time.time() - started, 1), "folder": repo_relative(folder)}
    report = {"date": date.today().isoformat(),
              "machine": f"{platform.machine()}, CPU, 1 torch thread", "decoder_steps": args.decoder_steps,
              "results": rows}
    print("| autoencoder | frame PSNR (dB) | audio-image PSNR (dB) | log-mel error (dB) | pitch corr. |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['frame_psnr']:.2f} | {row['audio_image_psnr']:.2f} | {row['mel_error_db']:.2f} | "
              f"{row['pitch_correlation']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
