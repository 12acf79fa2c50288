"""Command line for impact sounds: modal analysis and synthesis (no weights), and the diffusion model (`render`).

    python -m pipelines.impact_sound estimate hit.wav --out modes.json [--method paper|refined] [--seconds 0.25]
    python -m pipelines.impact_sound edit modes.json --pitch 2 --damping 0.5 --brightness 3 --out edited.json
    python -m pipelines.impact_sound synthesize modes.json --out hit.wav [--duration 0.25]
    python -m pipelines.impact_sound preset metal --out metal.json
    python -m pipelines.impact_sound soundtrack silent.mp4 --preset glass --out scored.mp4 [--hits 0.4 1.3]
    python -m pipelines.impact_sound render silent.mp4 --out scored.mp4 [--hits 0.4 1.3] [--modes modes.json]
        [--model assets/models/impact_sound] [--steps 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.audio import SPECS, load_audio, write_wav
from pipelines.impact_sound import edits
from pipelines.impact_sound.materials import MATERIALS, material_preset
from pipelines.impact_sound.modal import Modes, estimate_modes, synthesize
from pipelines.impact_sound.pipeline_physics import ImpactPhysicsPipeline

IMPACT = SPECS["impact"]
MAX_VIDEO_SECONDS = 600.0
STUDIO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "impact_sound"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.impact_sound", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    estimate = commands.add_parser("estimate", help="estimate modes from a recorded impact sound")
    estimate.add_argument("audio", help="sound file, starting at the hit (any rate; resampled to 44.1 kHz)")
    estimate.add_argument("--out", required=True, help="modes JSON file to write")
    estimate.add_argument("--method", choices=["paper", "refined"], default="paper",
                          help="paper: the published extractor (1025 modes); refined: sparse, fitted decays")
    estimate.add_argument("--seconds", type=float, default=IMPACT.clip_seconds,
                          help=f"analyse at most this much of the file (default {IMPACT.clip_seconds})")
    estimate.add_argument("--max-modes", type=int, default=64, help="refined only: most modes to keep")

    edit = commands.add_parser("edit", help="edit modes; applied in the order morph, pitch, damping, brightness, "
                                            "bands")
    edit.add_argument("modes", help="modes JSON file")
    edit.add_argument("--out", required=True, help="edited modes JSON file to write")
    edit.add_argument("--morph", metavar="OTHER.json", help="morph towards another sound's modes")
    edit.add_argument("--amount", type=float, default=0.5, help="morph amount, 0 (this) to 1 (other)")
    edit.add_argument("--pitch", type=float, default=0.0, help="transpose by this many semitones")
    edit.add_argument("--damping", type=float, default=1.0,
                      help="multiply decay rates (0.5 rings twice as long, 2 half as long)")
    edit.add_argument("--rayleigh", type=float, nargs=2, metavar=("ALPHA", "BETA"),
                      help="set all decays by Rayleigh damping: rate (alpha + beta*omega^2)/2")
    edit.add_argument("--brightness", type=float, default=0.0, help="tilt in dB per octave around 1 kHz")
    edit.add_argument("--remove-band", type=float, nargs=2, action="append", default=[], metavar=("LOW", "HIGH"),
                      help="delete the modes between LOW and HIGH Hz (repeatable)")
    edit.add_argument("--keep-band", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help="keep only the modes between LOW and HIGH Hz")

    synth = commands.add_parser("synthesize", help="render modes to a wav file")
    synth.add_argument("modes", help="modes JSON file")
    synth.add_argument("--out", required=True, help="wav file to write (16-bit, at the modes' sample rate)")
    synth.add_argument("--duration", type=float, default=IMPACT.clip_seconds, help="seconds (default 0.25)")

    preset = commands.add_parser("preset", help="write a physics-derived material preset (struck plate)")
    preset.add_argument("material", choices=sorted(MATERIALS))
    preset.add_argument("--out", required=True, help="modes JSON file to write")

    track = commands.add_parser("soundtrack", help="give a silent video one impact per hit (detected or given)")
    track.add_argument("video", help="video file (its own sound, if any, is replaced)")
    track.add_argument("--out", required=True, help="mp4 file to write (the video with the new soundtrack)")
    sound = track.add_mutually_exclusive_group(required=True)
    sound.add_argument("--modes", help="modes JSON file to synthesize at every hit")
    sound.add_argument("--preset", choices=sorted(MATERIALS), help="a material preset to synthesize at every hit")
    track.add_argument("--hits", type=float, nargs="+", metavar="SECONDS",
                       help="hit times in seconds (default: found from the video's motion)")
    track.add_argument("--sensitivity", type=float, default=0.5, help="hit detection, 0 (few) to 1 (many)")
    track.add_argument("--duration", type=float, default=IMPACT.clip_seconds, help="seconds of each impact")
    track.add_argument("--wav", help="also write the soundtrack alone to this wav file")

    render = commands.add_parser("render", help="score a silent video with the physics-driven diffusion model")
    render.add_argument("video", help="video file (its own sound, if any, is replaced)")
    render.add_argument("--out", required=True, help="mp4 file to write (the video with the new soundtrack)")
    render.add_argument("--hits", type=float, nargs="+", metavar="SECONDS",
                        help="hit times in seconds (default: found from the video's motion)")
    render.add_argument("--sensitivity", type=float, default=0.5, help="hit detection, 0 (few) to 1 (many)")
    render.add_argument("--modes", help="modes JSON file to use as the physics (default: retrieved, as the paper)")
    render.add_argument("--model", default=str(STUDIO_MODEL), help="model folder (pipelines.train impact_sound)")
    render.add_argument("--steps", type=int, default=50, help="sampler steps (the paper: all 1000)")
    render.add_argument("--seed", type=int, default=0, help="hit i is sampled with seed + i")
    render.add_argument("--wav", help="also write the soundtrack alone to this wav file")
    return parser


def run_estimate(args: argparse.Namespace) -> str:
    loaded = load_audio(args.audio, IMPACT, max_seconds=args.seconds)
    for note in loaded.notes:
        print(note, file=sys.stderr)
    modes = estimate_modes(loaded.samples, loaded.sample_rate, args.method, max_modes=args.max_modes)
    modes.save(args.out)
    return f"{len(modes)} modes ({args.method}) -> {args.out}"


def apply_edits(modes: Modes, args: argparse.Namespace) -> Modes:
    if args.morph:
        modes = edits.morph(modes, Modes.load(args.morph), args.amount)
    if args.pitch:
        modes = edits.shift_pitch(modes, args.pitch)
    if args.damping != 1.0:
        modes = edits.scale_damping(modes, args.damping)
    if args.rayleigh:
        modes = edits.set_rayleigh_damping(modes, *args.rayleigh)
    if args.brightness:
        modes = edits.tilt_brightness(modes, args.brightness)
    for low, high in args.remove_band:
        modes = edits.remove_band(modes, low, high)
    if args.keep_band:
        modes = edits.keep_band(modes, *args.keep_band)
    return modes


def run_edit(args: argparse.Namespace) -> str:
    modes = apply_edits(Modes.load(args.modes), args)
    modes.save(args.out)
    return f"{len(modes)} modes -> {args.out}"


def run_synthesize(args: argparse.Namespace) -> str:
    modes = Modes.load(args.modes)
    write_wav(args.out, synthesize(modes, duration=args.duration), modes.sample_rate)
    return f"{args.duration:g} s at {modes.sample_rate} Hz -> {args.out}"


def run_preset(args: argparse.Namespace) -> str:
    modes = material_preset(args.material)
    modes.save(args.out)
    return f"{len(modes)} modes of {MATERIALS[args.material].name} -> {args.out}"


def run_soundtrack(args: argparse.Namespace) -> str:
    physics = ImpactPhysicsPipeline()
    modes = physics.preset(args.preset) if args.preset else physics.load_modes(args.modes)
    times, seconds = hit_times(physics, args)
    track = physics.soundtrack(times, physics.synthesize(modes, args.duration), seconds)
    if args.wav:
        write_wav(args.wav, track, physics.sample_rate)
    physics.mux(args.video, track, args.out)
    return f"{len(times)} hits ({', '.join(f'{t:.2f}' for t in times) or 'none found'} s) -> {args.out}"


def run_render(args: argparse.Namespace) -> str:
    from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline
    from pipelines.seeds import generators_for

    physics = ImpactPhysicsPipeline()
    model = ImpactDiffusionPipeline.from_pretrained(args.model)
    times, seconds = hit_times(physics, args)
    modes = physics.load_modes(args.modes) if args.modes else None
    out = model.render_video(args.video, times, duration_s=seconds, modes=modes, num_inference_steps=args.steps,
                             generator=generators_for(args.seed, len(times))[0])
    if args.wav:
        write_wav(args.wav, out.soundtrack, out.sample_rate)
    physics.mux(args.video, out.soundtrack, args.out)
    source = "the given modes" if modes is not None else \
        "retrieved clips of " + ", ".join(sorted({model.bank.labels[i] for i in out.retrieved})) \
        if model.bank.labels else "retrieved clips"
    return f"{len(times)} hits ({', '.join(f'{t:.2f}' for t in times)} s), physics from {source} -> {args.out}"


def hit_times(physics: ImpactPhysicsPipeline, args: argparse.Namespace) -> tuple[list[float], float]:
    """The hit times given on the command line, or found in the video; and the video's length."""
    if args.hits:
        return sorted(args.hits), physics.video_seconds(args.video)
    hits = physics.detect_hits(args.video, max_seconds=MAX_VIDEO_SECONDS, sensitivity=args.sensitivity)
    for note in hits.notes:
        print(note, file=sys.stderr)
    return list(hits.times), hits.seconds


COMMANDS = {"estimate": run_estimate, "edit": run_edit, "synthesize": run_synthesize, "preset": run_preset,
            "soundtrack": run_soundtrack, "render": run_render}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(COMMANDS[args.command](args))
    except (ValueError, OSError) as error:  # bad input or unreadable file: say so plainly, no traceback
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
