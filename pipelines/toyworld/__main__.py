"""Write a toy-world dataset folder.

    python -m pipelines.toyworld KIND --n N --seed S --out DIR [--video-format mp4|png] [options]

KIND is impact, sounding_video, image, sound or paired. Files are numbered 0000, 0001, … (more digits past 9,999); sample i
is the same whatever N is. Every folder also gets `toyworld.json`: {"kind", "n", "seed", "options"}, enough to
regenerate it. The files of each kind, with their sizes and rates, are listed by `--help` (`file_formats`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipelines.media import save_png, save_wav, write_video
from pipelines.toyworld import captioned, impacts, paired, videos
from pipelines.toyworld.api import KINDS, sample

CRF = 18  # H.264 quality of the clips: near-lossless, so readers see the rendered frames


def file_formats() -> str:
    """What each kind writes, with the sizes and rates of the toy world's own constants."""
    hit, hit_frames, hit_size = impacts.IMPACT, impacts.NUM_FRAMES, impacts.FRAME_SIZE
    clip, clip_frames, clip_size = videos.SPEC, videos.NUM_FRAMES, videos.FRAME_SIZE
    sound, height, width = captioned.AUFFUSION, captioned.HEIGHT, captioned.WIDTH
    return f"""
impact (Greatest Hits style: a silent video, its hit sound, and the hit annotation)
    NNNN.mp4   {hit_frames} frames, {hit_size} × {hit_size}, {impacts.FPS:g} fps, H.264, silent
               (with --video-format png: NNNN/00.png … NNNN/{hit_frames - 1:02d}.png)
    NNNN.wav   the impact sound: {hit.sample_rate} Hz mono 16-bit, {hit.clip_seconds:g} s, starting at the hit
               (modal part + residual)
    NNNN.json  ground truth: material, shape, size (plate scale 0.5–2), size_name, colour, colour_rgb, caption,
               fps, num_frames, hit_frame, hit_time_s (= hit_frame / fps, video time), sample_rate,
               audio_onset_s (hit time inside the wav), impact_speed, modes (the modal part's true modes, in the
               `Modes` JSON format of pipelines.impact_sound.modal), residual (`ResidualParams.to_dict`: gains,
               decay_s as T60s, for the 100-band fixed noise of pipelines.impact_sound.residual)

sounding_video (Landscape / AIST++ style: a folder of mp4 clips)
    NNNN.mp4   {clip_frames} frames, {clip_size} × {clip_size}, {videos.FPS:g} fps, H.264, with its \
{clip.clip_seconds:g} s of {clip.sample_rate} Hz audio muxed in as AAC
               (with --video-format png: NNNN/00.png … NNNN/{clip_frames - 1:02d}.png and the audio only in NNNN.wav)
    NNNN.wav   the same audio, lossless ({clip.sample_rate} Hz mono 16-bit): AAC is lossy and may shift it by a few ms
    NNNN.json  ground truth: scene, caption, fps, num_frames, sample_rate, objects, events (contacts with frame and
               time_s, rain ticks with time_s), curves (per-frame hum_hz or wind_envelope)
    A reader of real clips only needs the mp4 files; the wav and json are extras.

image (captioned images for Images that Sound)
    NNNN.png       grayscale 8-bit, --height × --width (default {height} × {width})
    captions.jsonl one line per image: {{"file": "NNNN.png", "caption": "...", "class": "towers"}}

sound (captioned sounds for Images that Sound)
    NNNN.wav       {sound.sample_rate} Hz mono 16-bit, --width · {sound.hop_length} samples \
({sound.samples_for(width) / sound.sample_rate:g} s for the default {width} frames)
    NNNN.png       its Auffusion spectrogram image, grayscale 8-bit, --height × --width ({sound.n_mels} rows: the
                   exact Auffusion image; fewer: mel rows box-averaged), low frequencies at the bottom
    captions.jsonl one line per sound: {{"file": "NNNN.wav", "image": "NNNN.png", "caption": "...", "class": "bells"}}

paired (a picture of sounding things and their sound, for Visual Echoes)
    NNNN.png       the picture, RGB 8-bit, {paired.PICTURE_SIZE} × {paired.PICTURE_SIZE}
    NNNN.wav       its sound, {paired.SAMPLE_RATE} Hz mono 16-bit, {paired.FRAMES * paired.HOP / paired.SAMPLE_RATE:.2f} s
    pairs.jsonl    one line per pair: {{"image": "NNNN.png", "audio": "NNNN.wav", "caption": "...", "kind": "bell",
                   "count": 2, "size": 0.4, ...ground truth (pitch_hz, onsets_s, colour)}}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.toyworld", description=__doc__ + file_formats(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="what to generate")
    parser.add_argument("--n", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="dataset folder to write (created if missing)")
    parser.add_argument("--video-format", choices=["mp4", "png"], default="mp4",
                        help="impact and sounding_video: mp4 files (default) or a folder of png frames per sample")
    parser.add_argument("--classes", help="image/sound: comma-separated classes (default: all)")
    parser.add_argument("--balanced", action="store_true", help="image/sound: sample i has class i mod #classes")
    parser.add_argument("--height", type=int, help=f"image/sound: picture height (default {captioned.HEIGHT})")
    parser.add_argument("--width", type=int,
                        help=f"image/sound: picture width = spectrogram frames (default {captioned.WIDTH})")
    parser.add_argument("--scenes", help="sounding_video: comma-separated scenes (default: all)")
    parser.add_argument("--materials", help="impact/sounding_video: comma-separated materials (default: all)")
    parser.add_argument("--frame-size", type=int,
                        help=f"impact/sounding_video: frame size in pixels (default {videos.FRAME_SIZE})")
    return parser


def options_for(args: argparse.Namespace) -> dict:
    """The sampler options the arguments ask for (only those given)."""
    wanted = {"impact": ("materials", "frame_size"), "sounding_video": ("scenes", "materials", "frame_size"),
              "image": ("classes", "height", "width", "balanced"), "sound": ("classes", "height", "width", "balanced"),
              "paired": ()}
    options = {}
    for name in wanted[args.kind]:
        value = getattr(args, name)
        if value is None or value is False:
            continue
        options[name] = tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_for(args)
    try:
        batch = sample(args.kind, args.n, args.seed, **options)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{i:0{max(4, len(str(max(args.n - 1, 0))))}d}" for i in range(args.n)]
    _WRITERS[args.kind](batch, names, out, args.video_format)
    manifest = {"kind": args.kind, "n": args.n, "seed": args.seed,
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
    (out / "toyworld.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    print(f"wrote {args.n} {args.kind} samples to {out}")
    return 0


# Writers ----------------------------------------------------------------------------------------------------------


def write_frames(frames: np.ndarray, folder: Path) -> Path:
    """Frames [T, H, W, 3] as folder/00.png, folder/01.png, …"""
    folder.mkdir(exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(frame, folder / f"{index:02d}.png")
    return folder


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")


def _write_impacts(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(tqdm(names, desc="impact clips")):
        if video_format == "mp4":
            write_video(out / f"{name}.mp4", batch.frames[index], batch.fps, crf=CRF)
        else:
            write_frames(batch.frames[index], out / name)
        save_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        _write_json(batch.record(index), out / f"{name}.json")


def _write_videos(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(tqdm(names, desc="sounding videos")):
        if video_format == "mp4":
            write_video(out / f"{name}.mp4", batch.frames[index], batch.fps, audio=batch.audio[index],
                        sample_rate=batch.sample_rate, crf=CRF)
        else:
            write_frames(batch.frames[index], out / name)
        save_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        _write_json(batch.record(index), out / f"{name}.json")


def _write_captions(lines: list[dict], out: Path) -> None:
    with open(out / "captions.jsonl", "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")


def _write_images(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(names):
        save_png(batch.images[index], out / f"{name}.png")
    _write_captions([{"file": f"{name}.png", "caption": caption, "class": label}
                     for name, caption, label in zip(names, batch.captions, batch.classes)], out)


def _write_sounds(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(names):
        save_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        save_png(batch.spectrograms[index], out / f"{name}.png")
    _write_captions([{"file": f"{name}.wav", "image": f"{name}.png", "caption": caption, "class": label}
                     for name, caption, label in zip(names, batch.captions, batch.classes)], out)


def _write_pairs(batch, names: list[str], out: Path, video_format: str) -> None:
    lines = []
    for index, name in enumerate(names):
        save_png(batch.images[index], out / f"{name}.png")
        save_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        lines.append({"image": f"{name}.png", "audio": f"{name}.wav", "caption": batch.captions[index],
                      "kind": batch.kinds[index], "count": batch.counts[index], "size": batch.sizes[index],
                      **(batch.params[index] if batch.params else {})})
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")


_WRITERS = {"impact": _write_impacts, "sounding_video": _write_videos, "image": _write_images,
            "sound": _write_sounds, "paired": _write_pairs}

if __name__ == "__main__":
    sys.exit(main())
