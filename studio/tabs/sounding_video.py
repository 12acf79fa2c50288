"""Sounding Video: MM-Diffusion makes a short video and its sound together, or one from the other (zero-shot).

Frames form live (previews of the clean estimate stream in while sampling); every sample is kept as an mp4 with its
sound muxed in and as a wav. Weights: the released Landscape / AIST++ checkpoints when configured, and the bundled
studio model trained on toy-world bounces (a shrunken clip: its format is shown), which works offline.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gradio as gr

from pipelines import registry
from pipelines.audio import SPECS, resample
from pipelines.media import VideoDecodeError, save_wav
from pipelines.registry import available, describe, get_pipeline
from pipelines.sounding_video import (
    ClipFormat, fit_audio, preview_grid, read_video_clip, save_sounding_video,
)
from studio.context import StudioContext
from studio.gpu import gpu_handler
from studio.streaming import stream
from studio.validation import VIDEO_SUFFIXES, read_audio, require_file, require_number, user_facing

NAME = "sounding_video"
WEIGHTS = {"mm_diffusion_landscape": "Landscape (nature scenes)", "mm_diffusion_aist": "AIST++ (dance)",
           "mm_diffusion_toyworld": "Studio (toy world)"}  # released checkpoints first: the default when configured
STUDIO_WEIGHTS = "mm_diffusion_toyworld"
REQUIRES = (tuple(WEIGHTS),)  # any one of them
RELEASED_FORMAT = ClipFormat(16, 64, 64, 25600)  # paper §4.1: 16 frames of 64×64 at 10 fps, 1.6 s at 16 kHz
PLAYBACK_RATE = SPECS["mm_diffusion"].sample_rate  # mp4 and wav are written at 16 kHz whatever the model's rate
MIN_MP4_SIZE = 64  # smaller frames (the studio model's 16×16) are enlarged, pixel for pixel, in the mp4
# The small studio model needs the full 1000-step DDPM chain (the paper's best "Ours*" sampler too): with DPM-Solver-20
# or DDIM its frames drift to flat colours and its sound has no knocks (measured on the bundled model).
STUDIO_SAMPLER = "DDPM"
JOINT, AUDIO_TO_VIDEO, VIDEO_TO_AUDIO = "Video and sound together", "Audio → video", "Video → audio"
SAMPLERS = {"DPM-Solver": "dpm_solver", "DDIM": "ddim", "DDPM": "ddpm"}
DEFAULT_STEPS = {"DPM-Solver": 20, "DDIM": 25, "DDPM": 1000}  # as pipeline_mm_diffusion.DEFAULT_STEPS
FORMS = {"Paper (Eq. 12: √(1 − ᾱ))": "paper", "Released code (√ᾱ)": "code"}
MAX_SAMPLES = 4
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
PREVIEW_EVERY = 2

INTRO = """
MM-Diffusion (Ruan et al., CVPR 2023) denoises a video and its sound **together** with one coupled U-Net, so what you
see and what you hear match. Give it a sound and it makes a video for it; give it a video and it makes the sound
(zero-shot: the same model, steered by the clip you give). Each model makes clips of one format (below); uploads
are trimmed, resampled and resized to it, and the result says what was changed.
"""


def clip_format(weights: str) -> ClipFormat:
    """The clip a weights choice makes (the studio model's from its model.json; nothing is loaded)."""
    if weights != STUDIO_WEIGHTS:
        return RELEASED_FORMAT
    config = Path(__file__).resolve().parents[2] / registry.STUDIO_MM_DIFFUSION / "model.json"
    return ClipFormat(**json.loads(config.read_text())["clip_format"])


def default_sampler(weights: str | None) -> str:
    return STUDIO_SAMPLER if weights == STUDIO_WEIGHTS else "DPM-Solver"


def describe_format(weights: str | None) -> str:
    if weights is None:
        return ""
    fmt = clip_format(weights)
    text = (f"**Clip format:** {fmt.frames} frames of {fmt.width}×{fmt.height} at {fmt.fps} fps "
            f"({fmt.video_seconds:g} s) with {fmt.audio_seconds:g} s of sound at {fmt.sample_rate} Hz.")
    if weights == STUDIO_WEIGHTS:
        text += (" The studio model is small and trained on toy-world bounces on a CPU, so its clip is shrunk from "
                 f"the paper's {RELEASED_FORMAT.frames} frames of {RELEASED_FORMAT.width}×{RELEASED_FORMAT.height} "
                 f"with {RELEASED_FORMAT.sample_rate // 1000} kHz sound.")
    return text


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    choices = [(label, name) for name, label in WEIGHTS.items() if available(name, settings.variant)]
    has_sr = any(key.endswith("_sr") for key in context.config.checkpoints.get("mm_diffusion", {}))
    handlers = SoundingVideoHandlers(context, settings.variant)
    with gr.Tab("Sounding Video", id=NAME):
        gr.Markdown(INTRO + "\n" + "\n".join(f"*{label}: {describe(name, settings.variant)}*"
                                             for label, name in choices))
        with gr.Row():
            weights = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Weights",
                                  info="Which model: each makes the kind of clips it was trained on.")
            mode = gr.Radio([JOINT, AUDIO_TO_VIDEO, VIDEO_TO_AUDIO], value=JOINT, label="Make")
        format_note = gr.Markdown(describe_format(choices[0][1] if choices else None))
        with gr.Row():
            audio_in = gr.Audio(type="filepath", label="Sound to make a video for", visible=False)
            video_in = gr.Video(label="Video to make a sound for", visible=False, sources=["upload"])
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                first_sampler = default_sampler(choices[0][1] if choices else None)
                sampler = gr.Radio(list(SAMPLERS), value=first_sampler, label="Sampler",
                                   info="DPM-Solver: 20 steps is the paper's fast default. DDPM is the slowest and "
                                        "the best (the studio model needs its 1000 steps).")
                steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS[first_sampler], step=1, label="Steps",
                                  elem_id="sv-steps")
            with gr.Row():
                guidance = gr.Slider(0, MAX_GUIDANCE, value=0, step=0.5, label="Guidance λ (audio → video, "
                                     "video → audio)", info="0 = replacement (works with every sampler); above 0 "
                                     "= gradient guidance, which needs DDIM or DDPM. The released scripts use 3.")
                form = gr.Radio(list(FORMS), value=next(iter(FORMS)), label="Guidance form")
            with gr.Row():
                seed = gr.Number(-1, precision=0, label="Seed", info="-1 picks a random one (shown with the result).")
                samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples")
                super_res = gr.Checkbox(False, label="Super-resolution to 256×256", visible=has_sr,
                                        info="Up-samples the frames with the released SR model (slow).")
        with gr.Row():
            run = gr.Button("Generate", variant="primary", elem_id="sv-generate")
            stop = gr.Button("Stop")
        preview = gr.Image(label="Frames forming", interactive=False)
        with gr.Row():
            video_out = gr.Video(label="Sounding video (first sample)", autoplay=False, elem_id="sv-video")
            audio_out = gr.Audio(label="Its sound (wav, 16 kHz)", type="filepath")
        note = gr.Markdown(elem_id="sv-note")
        files = gr.File(label="All samples (mp4 + wav)", file_count="multiple", elem_id="sv-files")
        weights.change(lambda w: (describe_format(w), default_sampler(w), DEFAULT_STEPS[default_sampler(w)]),
                       weights, [format_note, sampler, steps], queue=False)
        mode.change(lambda m: (gr.update(visible=m == AUDIO_TO_VIDEO), gr.update(visible=m == VIDEO_TO_AUDIO)),
                    mode, [audio_in, video_in], queue=False)
        sampler.change(lambda s: DEFAULT_STEPS.get(s, 20), sampler, steps, queue=False)
        event = run.click(
            gpu_handler(handlers.generate, settings.gpu_seconds),
            [weights, mode, audio_in, video_in, sampler, steps, guidance, form, seed, samples, super_res],
            [preview, video_out, audio_out, files, note],
            concurrency_limit=settings.concurrency_limit, concurrency_id=NAME, api_name="sounding_video",
        )
        stop.click(None, None, None, cancels=[event])


class SoundingVideoHandlers:
    def __init__(self, context: StudioContext, variant: str):
        self.context, self.variant = context, variant

    @user_facing("making the sounding video")
    def generate(self, weights, mode, audio_file, video_file, sampler, steps, guidance, form, seed, samples,
                 super_res, request: gr.Request):
        """Yields (preview, …) while sampling, then the samples as files."""
        from pipelines.seeds import generators_for

        if weights not in WEIGHTS or not available(weights, self.variant):
            raise gr.Error("Choose the weights to use: no MM-Diffusion checkpoint is available for that choice.")
        if mode not in (JOINT, AUDIO_TO_VIDEO, VIDEO_TO_AUDIO):
            raise gr.Error(f"Choose what to make: {JOINT}, {AUDIO_TO_VIDEO} or {VIDEO_TO_AUDIO}.")
        arguments = self._settings(mode, sampler, steps, guidance, form, samples)
        generators, seed_used = generators_for(require_number(seed, "Seed", -1, 2**31 - 1, integer=True),
                                               arguments["num_samples"])
        models = get_pipeline(weights, self.variant)
        fmt = models.clip_format()
        notes = self._condition(mode, audio_file, video_file, fmt, arguments)
        output, upsampled = yield from stream(
            lambda preview: _sample(models, arguments, generators, bool(super_res), preview),
            lambda grid: (grid,) + (gr.skip(),) * 4)
        if super_res and models.super_resolution is None:
            notes.append("No super-resolution checkpoint is configured for these weights: frames stay "
                         f"{fmt.width}×{fmt.height}.")
        yield (None,) + self._save(output, upsampled, seed_used, notes, request)

    def _settings(self, mode: str, sampler, steps, guidance, form, samples) -> dict:
        if sampler not in SAMPLERS:
            raise gr.Error(f"Choose a sampler: {', '.join(SAMPLERS)}.")
        scale = require_number(guidance, "Guidance λ", 0, MAX_GUIDANCE) if mode != JOINT else 0.0
        if scale > 0 and sampler == "DPM-Solver":
            raise gr.Error("Gradient guidance (λ above 0) needs the DDIM or DDPM sampler. Choose one of those, or "
                           "set λ to 0 to use replacement with DPM-Solver.")
        return dict(
            sampler=SAMPLERS[sampler], num_inference_steps=require_number(steps, "Steps", 1, MAX_STEPS, integer=True),
            guidance_scale=scale, guidance_scale_form=FORMS.get(form, "paper"),
            num_samples=require_number(samples, "Samples", 1, MAX_SAMPLES, integer=True),
        )

    def _condition(self, mode: str, audio_file, video_file, fmt: ClipFormat, arguments: dict) -> list[str]:
        """Read and convert the upload into `arguments` ("audio" or "video"); returns notes on what was changed."""
        max_mb = self.context.config.max_upload_mb
        if mode == AUDIO_TO_VIDEO:
            if not audio_file:
                raise gr.Error("Audio → video needs a sound: upload or record one first.")
            spec = dataclasses.replace(SPECS["mm_diffusion"], sample_rate=fmt.sample_rate,
                                       clip_seconds=fmt.audio_seconds)
            loaded = read_audio(audio_file, spec, max_mb=max_mb, max_seconds=fmt.audio_seconds, label="sound")
            fitted = fit_audio(loaded.samples, fmt)
            arguments["audio"] = fitted.value
            return list(loaded.notes) + [n for n in fitted.notes if not n.startswith("Used the first")]
        if mode == VIDEO_TO_AUDIO:
            if not video_file:
                raise gr.Error("Video → audio needs a video: upload one first.")
            path = require_file(video_file, "video", suffixes=VIDEO_SUFFIXES, max_mb=max_mb)
            try:
                converted = read_video_clip(path, fmt)
            except VideoDecodeError as error:
                raise gr.Error(f"We could not read '{path.name}' as a video: {error}. Try an MP4 file.") from None
            arguments["video"] = converted.value
            return converted.notes
        return []

    def _save(self, output, upsampled, seed_used: int, notes: list[str], request: gr.Request) -> tuple:
        """An mp4 (frames with their sound) and a wav per sample."""
        session = request.session_hash
        videos = upsampled if upsampled is not None else output.video
        sounds = [playable(audio, output.sample_rate) for audio in output.audio]
        paths = []
        for index, sound in enumerate(sounds):
            stem = f"sounding-video-{seed_used + index}"
            mp4 = save_sounding_video(enlarged(videos[index]), sound, PLAYBACK_RATE, output.fps,
                                      self.context.files.new_path(session, stem, ".mp4"))
            wav = save_wav(sound, PLAYBACK_RATE, self.context.files.new_path(session, stem, ".wav"))
            paths += [str(mp4), str(wav)]
        count = len(output.audio)
        text = f"Seed {seed_used}" if count == 1 else f"Seeds {seed_used}…{seed_used + count - 1} (sample *i* uses " \
                                                       "seed + *i*)"
        text += f" · {videos.shape[1]} frames of {videos.shape[3]}×{videos.shape[2]} at {output.fps} fps, " \
                f"{len(output.audio[0]) / output.sample_rate:g} s of sound at {output.sample_rate} Hz."
        if output.sample_rate != PLAYBACK_RATE:
            text += f" The sound was resampled to {PLAYBACK_RATE} Hz for the mp4 and the wav."
        if enlarged(videos[0]).shape != videos[0].shape:
            text += f" The mp4 shows the frames enlarged {enlarged(videos[0]).shape[1] // videos.shape[2]}× (nearest)."
        if notes:
            text += "\n\n**Your upload was converted:** " + " ".join(notes)
        return paths[0], paths[1], paths, text


def enlarged(frames):
    """Frames [F, H, W, 3] repeated pixel for pixel until they are at least MIN_MP4_SIZE high."""
    scale = -(-MIN_MP4_SIZE // frames.shape[1])
    return frames if scale <= 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


def playable(audio, sample_rate: int):
    """The model's sound at the 16 kHz every player and AAC encoder takes (the studio model makes 4 kHz)."""
    return audio if sample_rate == PLAYBACK_RATE else resample(audio, sample_rate, PLAYBACK_RATE)


def _sample(models, arguments: dict, generators, super_res: bool, preview) -> tuple:
    """Sampling (and up-sampling), a grid of the frames forming every PREVIEW_EVERY steps -> (output, upsampled)."""

    def show_frames(step: int, timestep: int, tensors: dict) -> None:
        frames = ((tensors["denoised_video"][0].permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).byte().cpu().numpy()
        preview(preview_grid(frames))

    output = models.base(**arguments, generator=generators, callback=show_frames, callback_steps=PREVIEW_EVERY)
    upsampled = None
    if super_res and models.super_resolution is not None and "video" not in arguments:
        upsampled = models.super_resolution(output.video, generator=generators).video
    return output, upsampled
