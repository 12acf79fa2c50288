"""Visual Echoes from the command line; writes the files the tab offers.

    python -m pipelines.visual_echoes i2a picture.png --out DIR       # picture -> sound
    python -m pipelines.visual_echoes a2i sound.wav --out DIR         # sound -> picture
    python -m pipelines.visual_echoes cogen --out DIR                 # both at once
    python -m pipelines.visual_echoes inpaint sound.wav picture.png --start 0.2 --end 0.7 --out DIR

Options: --model FOLDER (default: the bundled studio weights), --steps N (30), --temperature T (9), --guidance s
(default: 3 for sounds made from a picture, else 1), --num-samples K, --seed S (-1: random). Writes sample-XXX.wav,
sample-XXX.png (the picture, or the spectrogram for image → sound), sample-XXX-spectrogram.png and, for sounds,
sample-XXX.mp4 (the spectrogram with a moving playhead and the sound), and run.json (settings, seed used).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COMMANDS = {"i2a": "image_to_audio", "a2i": "audio_to_image", "cogen": "co_generation", "inpaint": "inpaint_audio"}


def build_parser() -> argparse.ArgumentParser:
    from pipelines.visual_echoes.entries import STUDIO_FOLDER

    parser = argparse.ArgumentParser(prog="python -m pipelines.visual_echoes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=tuple(COMMANDS))
    parser.add_argument("inputs", nargs="*", help="i2a: PICTURE; a2i: SOUND; inpaint: SOUND PICTURE")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default=str(STUDIO_FOLDER))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--temperature", type=float, default=9.0)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=float, help="inpaint: start of the range to regenerate (s)")
    parser.add_argument("--end", type=float, help="inpaint: end of the range to regenerate (s)")
    parser.add_argument("--no-video", action="store_true", help="skip the playhead mp4")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from pipelines.audio import SPECS, load_audio, write_wav
    from pipelines.media import save_png
    from pipelines.seeds import generators_for
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    task = COMMANDS[args.command]
    wanted = {"image_to_audio": 1, "audio_to_image": 1, "co_generation": 0, "inpaint_audio": 2}[task]
    if len(args.inputs) != wanted:
        raise ValueError(f"{args.command} takes {wanted} input file(s), got {len(args.inputs)}")
    image = audio = None
    spec = SPECS["visual_echoes"]
    if task in ("image_to_audio", "inpaint_audio"):
        path = Path(args.inputs[-1])
        try:
            image = Image.open(path).convert("RGB")
        except Exception as error:  # noqa: BLE001 - any unreadable picture means the same to the user
            raise ValueError(f"{path} is not a picture PIL can read ({type(error).__name__})") from None
    if task in ("audio_to_image", "inpaint_audio"):
        audio = load_audio(args.inputs[0], spec).samples
    inpaint = (args.start, args.end) if task == "inpaint_audio" else None
    if task == "inpaint_audio" and (args.start is None or args.end is None):
        raise ValueError("inpaint needs --start and --end (seconds)")
    pipe = VisualEchoesPipeline.from_pretrained(args.model)
    generators, seed = generators_for(args.seed, args.num_samples)
    out = pipe(image, audio, task=task, inpaint_range_s=inpaint, num_inference_steps=args.steps,
               temperature=args.temperature, guidance_scale=args.guidance, num_samples=args.num_samples,
               generator=generators)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(args.num_samples):
        stem = folder / f"sample-{index:03d}"
        if out.spectrograms is not None:
            save_png(np.flipud(out.spectrograms[index]), Path(f"{stem}-spectrogram.png"))
        if task in ("audio_to_image", "co_generation"):
            save_png(out.images[index], Path(f"{stem}.png"))
        if out.audios is not None:
            write_wav(Path(f"{stem}.wav"), out.audios[index], out.sample_rate)
            if not args.no_video:
                write_playhead_video(np.flipud(out.spectrograms[index]), out.audios[index], out.sample_rate,
                                     Path(f"{stem}.mp4"))
    record = {"task": task, "inputs": args.inputs, "model": args.model, "steps": args.steps,
              "temperature": args.temperature, "guidance": args.guidance, "num_samples": args.num_samples,
              "seed": seed, "inpaint_range_s": inpaint}
    (folder / "run.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {args.num_samples} sample(s) to {folder} (seed {seed})")
    return 0


def write_playhead_video(picture: np.ndarray, audio: np.ndarray, sample_rate: int, path: Path, fps: int = 20) -> Path:
    """The spectrogram picture [H, W] in [0, 1], 3× larger, with a red playhead moving across it, and the sound."""
    from pipelines.media import write_video

    seconds = len(audio) / sample_rate
    base = np.repeat(np.kron(picture, np.ones((3, 3)))[..., None], 3, axis=-1).astype(np.float32)

    def frame_at(t: float) -> np.ndarray:
        frame = base.copy()
        frame[:, min(frame.shape[1] - 1, int(t / seconds * frame.shape[1]))] = (1.0, 0.1, 0.1)
        return frame

    return write_video(path, frame_at, fps, audio=audio, sample_rate=sample_rate, seconds=seconds)

if __name__ == "__main__":
    sys.exit(main())
