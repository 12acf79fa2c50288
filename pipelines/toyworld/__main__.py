"""Write a toy-world dataset folder.

    python -m pipelines.toyworld KIND --n N --seed S --out DIR [--video-format mp4|png] [options]

KIND is impact, sounding_video, image or sound. Files are numbered 0000, 0001, … (more digits past 9,999); sample i
is the same whatever N is. Every folder also gets `toyworld.json`: {"kind", "n", "seed", "options"}, enough to
regenerate it.

impact (Greatest Hits style: a silent video, its hit sound, and the hit annotation)
    NNNN.mp4   16 frames, 64 × 64, 30 fps, H.264, silent (with --video-format png: NNNN/00.png … NNNN/15.png)
    NNNN.wav   the impact sound: 44.1 kHz mono 16-bit, 0.25 s, starting at the hit (modal part + residual)
    NNNN.json  ground truth: material, shape, size (plate scale 0.5–2), size_name, colour, colour_rgb, caption,
               fps, num_frames, hit_frame, hit_time_s (= hit_frame / fps, video time), sample_rate,
               audio_onset_s (hit time inside the wav), impact_speed, modes (the modal part's true modes, in the
               `Modes` JSON format of pipelines.impact_sound.modal), residual (`ResidualParams.to_dict`: gains,
               decay_s as T60s, for the 100-band fixed noise of pipelines.impact_sound.residual)

sounding_video (Landscape / AIST++ style: a folder of mp4 clips)
    NNNN.mp4   16 frames, 64 × 64, 10 fps, H.264, with its 1.6 s of 16 kHz audio muxed in as AAC
               (with --video-format png: NNNN/00.png … NNNN/15.png and the audio only in NNNN.wav)
    NNNN.wav   the same audio, lossless (16 kHz mono 16-bit): AAC is lossy and may shift it by a few ms
    NNNN.json  ground truth: scene, caption, fps, num_frames, sample_rate, objects, events (contacts with frame and
               time_s, rain ticks with time_s), curves (per-frame hum_hz or wind_envelope)
    A reader of real clips only needs the mp4 files; the wav and json are extras.

image (captioned images for Images that Sound)
    NNNN.png       grayscale 8-bit, --height × --width (default 16 × 64)
    captions.jsonl one line per image: {"file": "NNNN.png", "caption": "...", "class": "towers"}

sound (captioned sounds for Images that Sound)
    NNNN.wav       16 kHz mono 16-bit, --width · 160 samples (0.64 s for the default 64 frames)
    NNNN.png       its Auffusion spectrogram image, grayscale 8-bit, --height × --width (256 rows: the exact
                   Auffusion image; fewer: mel rows box-averaged), low frequencies at the bottom
    captions.jsonl one line per sound: {"file": "NNNN.wav", "image": "NNNN.png", "caption": "...", "class": "bells"}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipelines.media import save_png, to_uint8
from pipelines.toyworld.api import KINDS, sample


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.toyworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="what to generate")
    parser.add_argument("--n", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="dataset folder to write (created if missing)")
    parser.add_argument("--video-format", choices=["mp4", "png"], default="mp4",
                        help="impact and sounding_video: mp4 files (default) or a folder of png frames per sample")
    parser.add_argument("--classes", help="image/sound: comma-separated classes (default: all)")
    parser.add_argument("--balanced", action="store_true", help="image/sound: sample i has class i mod #classes")
    parser.add_argument("--height", type=int, help="image/sound: picture height (default 16)")
    parser.add_argument("--width", type=int, help="image/sound: picture width = spectrogram frames (default 64)")
    parser.add_argument("--scenes", help="sounding_video: comma-separated scenes (default: all)")
    parser.add_argument("--materials", help="impact/sounding_video: comma-separated materials (default: all)")
    parser.add_argument("--frame-size", type=int, help="impact/sounding_video: frame size in pixels (default 64)")
    return parser


def options_for(args: argparse.Namespace) -> dict:
    """The sampler options the arguments ask for (only those given)."""
    wanted = {"impact": ("materials", "frame_size"), "sounding_video": ("scenes", "materials", "frame_size"),
              "image": ("classes", "height", "width", "balanced"), "sound": ("classes", "height", "width", "balanced")}
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


def write_video(frames: np.ndarray, fps: float, path: Path, audio: np.ndarray | None = None,
                sample_rate: int | None = None) -> Path:
    """Frames [T, H, W, 3] in [0, 1] as an H.264 mp4 (even sizes), with mono `audio` muxed as AAC if given."""
    from moviepy import AudioArrayClip, ImageSequenceClip

    pictures = [_even(to_uint8(frame)) for frame in frames]
    clip = ImageSequenceClip(pictures, fps=fps)
    if audio is not None:
        stereo = np.repeat(np.clip(audio, -1.0, 1.0).astype(np.float32)[:, None], 2, axis=1)
        clip = clip.with_audio(AudioArrayClip(stereo, fps=sample_rate))
    clip.write_videofile(str(path), fps=fps, codec="libx264", audio=audio is not None, audio_codec="aac",
                         audio_fps=sample_rate or 44100, preset="veryfast", logger=None,
                         ffmpeg_params=["-pix_fmt", "yuv420p", "-crf", "18"])
    clip.close()
    return path


def _even(picture: np.ndarray) -> np.ndarray:
    return np.pad(picture, ((0, picture.shape[0] % 2), (0, picture.shape[1] % 2), (0, 0)), mode="edge")


def write_frames(frames: np.ndarray, folder: Path) -> Path:
    """Frames [T, H, W, 3] as folder/00.png, folder/01.png, …"""
    folder.mkdir(exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(frame, folder / f"{index:02d}.png")
    return folder


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")


def _write_wav(audio: np.ndarray, sample_rate: int, path: Path) -> None:
    from pipelines.media import save_wav

    save_wav(audio, sample_rate, path)


def _write_impacts(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(tqdm(names, desc="impact clips")):
        if video_format == "mp4":
            write_video(batch.frames[index], batch.fps, out / f"{name}.mp4")
        else:
            write_frames(batch.frames[index], out / name)
        _write_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        _write_json(batch.record(index), out / f"{name}.json")


def _write_videos(batch, names: list[str], out: Path, video_format: str) -> None:
    for index, name in enumerate(tqdm(names, desc="sounding videos")):
        if video_format == "mp4":
            write_video(batch.frames[index], batch.fps, out / f"{name}.mp4", batch.audio[index], batch.sample_rate)
        else:
            write_frames(batch.frames[index], out / name)
        _write_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
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
        _write_wav(batch.audio[index], batch.sample_rate, out / f"{name}.wav")
        save_png(batch.spectrograms[index], out / f"{name}.png")
    _write_captions([{"file": f"{name}.wav", "image": f"{name}.png", "caption": caption, "class": label}
                     for name, caption, label in zip(names, batch.captions, batch.classes)], out)


_WRITERS = {"impact": _write_impacts, "sounding_video": _write_videos, "image": _write_images,
            "sound": _write_sounds}

if __name__ == "__main__":
    sys.exit(main())
