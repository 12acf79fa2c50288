"""Sounding Video: MM-Diffusion or MM-LDM makes a short video and its sound together, or one from the other.

Frames form live (previews of the clean estimate stream in while sampling, and Stop ends the sampling); every sample
is kept as an mp4 with its sound muxed in and as a wav. Weights: MM-Diffusion's released Landscape / AIST++ checkpoints
when configured (with their 64 → 256 up-samplers when those are configured too), MM-Diffusion's and MM-LDM's bundled
studio models trained on the toy world (shrunken clips: the loaded model shows its format), which work offline. Each
model family has its own settings (MM-Diffusion: sampler, guidance λ, resampling, super-resolution; MM-LDM: DiT and
decoder steps, cross-modal guidance φ, reconstruction guidance λ); seed and samples are shared.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import numpy as np

from pipelines.audio import SPECS
from pipelines.media import VideoDecodeError, save_wav, write_video
from pipelines.mm_diffusion.clips import (
    MIN_SHOWN_SIZE,
    PAPER_CLIP,
    SAMPLE_RATE,
    ClipFormat,
    enlarged,
    fit_audio,
    playable,
    read_video_clip,
)
from pipelines.mm_diffusion.entries import PAPER_ZERO_SHOT, Steering, studio_learnt_clean_condition, studio_steering
from pipelines.mm_ldm.entries import STUDIO_DECODER_STEPS as LDM_DECODER_STEPS
from pipelines.mm_ldm.entries import STUDIO_GUIDANCE as LDM_GUIDANCE
from pipelines.mm_ldm.entries import STUDIO_RECONSTRUCTION as LDM_RECONSTRUCTION
from pipelines.mm_ldm.entries import STUDIO_RESAMPLE_ROUNDS as LDM_RESAMPLE_ROUNDS
from pipelines.mm_ldm.entries import STUDIO_STEPS as LDM_STEPS
from pipelines.registry import available, describe
from studio.compute import get_pipeline
from studio.context import StudioContext
from studio.gpu import gpu_handler
from studio.streaming import PreviewFiles, every_steps, stream
from studio.validation import read_audio, require_number, require_video, user_facing, video_read_error
from studio.weights import chosen_variant_for, refresh

NAME = "sounding_video"
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
MM_DIFFUSION_WEIGHTS = {"mm_diffusion_landscape": "MM-Diffusion · Landscape (nature scenes)",
                        "mm_diffusion_aist": "MM-Diffusion · AIST++ (dance)",
                        "mm_diffusion_toyworld": "MM-Diffusion · studio (toy world)"}
MM_LDM_WEIGHTS = {"mm_ldm_toyworld": "MM-LDM · studio (toy world)"}
WEIGHTS = {**MM_DIFFUSION_WEIGHTS, **MM_LDM_WEIGHTS}  # released checkpoints first: the default when configured
SUPER_RESOLUTION = {"mm_diffusion_landscape": "mm_diffusion_landscape_sr",  # the registry's 64 → 256 up-sampler
                    "mm_diffusion_aist": "mm_diffusion_aist_sr"}  # for each released checkpoint
STUDIO_WEIGHTS = "mm_diffusion_toyworld"
REQUIRES = (tuple(WEIGHTS),)  # any one of them
TITLE = "Sounding Video"
MODELS = (*WEIGHTS, *SUPER_RESOLUTION.values())  # for About
PLAYBACK_RATE = SAMPLE_RATE  # mp4 and wav are written at this rate whatever the model's rate
# The small studio model wants DDPM (the paper's best "Ours*" sampler too): with DDIM 50 or DPM-Solver 25 some of its
# clips stay noisy or flat, and its lamp's height <-> pitch coupling is weaker (0.82 and 0.74 against 0.89 at DDPM 100).
STUDIO_SAMPLER = "DDPM"
JOINT, AUDIO_TO_VIDEO, VIDEO_TO_AUDIO = "Video and sound together", "Audio → video", "Video → audio"
MODES = (JOINT, AUDIO_TO_VIDEO, VIDEO_TO_AUDIO)
SAMPLERS = {"DPM-Solver": "dpm_solver", "DDIM": "ddim", "DDPM": "ddpm"}
DEFAULT_STEPS = {"DPM-Solver": 20, "DDIM": 25, "DDPM": 1000}  # the slider's start: the paper's step counts
FORMS = {"Paper (Eq. 12: √(1 − ᾱ))": "paper", "Released code (√ᾱ)": "code"}
MAX_SAMPLES = 4
MAX_STEPS = 1000
MAX_GUIDANCE = 1e9  # λ weighs the true gradient: the released scripts' λ = 3 acts as 3·2^20 (entries)
MAX_RESAMPLE_ROUNDS = 10
MAX_LDM_STEPS = 1000  # DDIM takes at most the 1000 steps of MM-LDM's training schedule
MAX_CROSS_MODAL_GUIDANCE = 20.0
MAX_RECONSTRUCTION = 1000.0
PREVIEW_EVERY = 5
PREVIEW_COLUMNS = 8
FRAMES_PREVIEW = "Frames forming"
LATENT_PREVIEW = "Video latent forming (first sample; its first three channels as colours)"
# MM-LDM's paper clip (§4.1): 16 frames of 256×256 at 10 fps with 1.6 s of 44.1 kHz sound.
MM_LDM_PAPER_CLIP = ClipFormat(16, 256, 256, SPECS["mm_ldm"].clip_samples, 10, SPECS["mm_ldm"].sample_rate)

INTRO = """
MM-Diffusion (Ruan et al., CVPR 2023) denoises a video and its sound **together** with one coupled U-Net, so what you
see and what you hear match. MM-LDM does the same in a small latent space that video and sound share, which is
faster (here most of all when it makes a video for your sound). Give either a sound and it makes a
video for it; give it a video and it makes the sound (the same model, steered by the clip you give). Each model
makes clips of one format (below); uploads are trimmed, resampled and resized to it, and the result says what was
changed.
"""


# DDPM respaced to 100 steps: 9 s of one CPU core for a plain joint sample, about 21 s with the studio model's 3
# resampling rounds (220 model calls; benchmarks.mm_diffusion_training_cost, 2026-12-06), where the full 1000-step
# chain takes 94 s.
STUDIO_STEPS = 100


def small(weights: str | None) -> bool:
    """MM-Diffusion's studio model, or weights trained in the Train tab (small models of its kind)."""
    return weights == STUDIO_WEIGHTS or (weights is not None and weights not in WEIGHTS)


def latent_model(weights: str | None) -> bool:
    """MM-LDM (its own settings and previews), not MM-Diffusion."""
    return weights in MM_LDM_WEIGHTS


def default_sampler(weights: str | None) -> str:
    return STUDIO_SAMPLER if small(weights) else "DPM-Solver"


def default_steps(weights: str | None) -> int:
    """Steps an artist can wait for: the paper's counts for the released checkpoints, fewer for the studio model."""
    return STUDIO_STEPS if small(weights) else DEFAULT_STEPS[default_sampler(weights)]


def mode_key(mode: str) -> str:
    """The tab's mode as the pipelines' defaults name it: "joint", "a2v" or "v2a"."""
    return {JOINT: "joint", AUDIO_TO_VIDEO: "a2v"}.get(mode, "v2a")


def default_steering(weights: str | None, mode: str) -> Steering:
    """A small model's steering (`entries.studio_steering`): joint samples and audio -> video resampled (220 model
    calls at 100 steps; 280 for audio -> video of weights without a clean condition), both directions from the
    conditional the bundled studio weights learnt (a clean condition) when they did, else video -> audio by
    replacement. The released checkpoints start from the paper's sampler and replacement (which DPM-Solver, their
    default sampler, can run)."""
    if not small(weights):
        return PAPER_ZERO_SHOT
    learnt = weights == STUDIO_WEIGHTS and studio_learnt_clean_condition()  # weights trained here may not have it
    return studio_steering(mode_key(mode), learnt)


def steering_controls(weights: str | None, mode: str) -> tuple:
    """The values of the guidance λ, guidance form, resampling and clean-condition controls for `weights` and
    `mode`."""
    steering = default_steering(weights, mode)
    form = next(label for label, value in FORMS.items() if value == steering.guidance_scale_form)
    return steering.guidance_scale, form, steering.resample_rounds, steering.clean_condition


def sampler_steps(sampler: str, weights: str | None) -> int:
    """The steps to start from when the sampler changes: the studio model's own default with its own sampler."""
    if small(weights) and sampler == STUDIO_SAMPLER:
        return STUDIO_STEPS
    return DEFAULT_STEPS.get(sampler, DEFAULT_STEPS["DPM-Solver"])


def has_super_resolution(weights: str | None, variant: str) -> bool:
    return weights in SUPER_RESOLUTION and available(SUPER_RESOLUTION[weights], variant)


def settings_shown(weights: str | None, mode: str, variant: str) -> tuple:
    """On a change of weights: the chosen family's settings shown at that model's defaults, the other family's hidden
    (and left as they are), and the preview's caption. Outputs: MM-Diffusion's settings, MM-LDM's settings, sampler,
    steps, guidance λ, guidance form, resampling rounds, clean condition, super-resolution, DiT steps, decoder steps,
    φ, reconstruction λ, MM-LDM's resampling rounds, preview."""
    if latent_model(weights):
        return (gr.update(visible=False), gr.update(visible=True), *(gr.skip(),) * 6, gr.update(visible=False),
                LDM_STEPS, LDM_DECODER_STEPS, LDM_GUIDANCE, latent_reconstruction(mode), latent_resample_rounds(mode),
                gr.update(label=LATENT_PREVIEW))
    return (gr.update(visible=True), gr.update(visible=False), default_sampler(weights), default_steps(weights),
            *steering_controls(weights, mode), gr.update(visible=has_super_resolution(weights, variant)),
            *(gr.skip(),) * 5, gr.update(label=FRAMES_PREVIEW))


def latent_resample_rounds(mode: str) -> int:
    """MM-LDM's resampling rounds for `mode`: the studio model's (2 for audio → video, else the paper's 1)."""
    return LDM_RESAMPLE_ROUNDS[mode_key(mode)]


def latent_reconstruction(mode: str) -> float:
    """MM-LDM's reconstruction guidance λ for `mode`: the studio model's (0 for joint clips: nothing is given)."""
    return LDM_RECONSTRUCTION[mode_key(mode)]


def describe_model(pipe, paper_clip: ClipFormat = PAPER_CLIP) -> str:
    """The clip a loaded model makes (against its paper's, `paper_clip`), and what it was trained on when it says."""
    fmt: ClipFormat = pipe.clip_format
    text = (f"**Clip format:** {fmt.frames} frames of {fmt.width}×{fmt.height} at {fmt.fps} fps "
            f"({fmt.video_seconds:g} s) with {fmt.audio_seconds:g} s of sound at {fmt.sample_rate} Hz.")
    if fmt != paper_clip:
        text += (f" This model is smaller than the paper's, so its clip is shrunk from the paper's "
                 f"{paper_clip.frames} frames of {paper_clip.width}×{paper_clip.height} with "
                 f"{paper_clip.sample_rate / 1000:g} kHz sound.")
    return text + trained_on(pipe.training_record)


def trained_on(record: dict) -> str:
    """What the weights were trained on, from their training record: toy-world scenes (MM-Diffusion's `scenes`; MM-LDM's
    `classes` with `data: toyworld`, where the scene is the class) or the classes of an artist's own clips."""
    scenes = record.get("scenes") or (record.get("classes") if record.get("data") == "toyworld" else None)
    if scenes:
        return f" It was trained on the toy world's {', '.join(scenes)} scenes."
    classes = record.get("classes")
    if classes:
        return f" It was trained on clips of {', '.join(classes)}."
    return ""


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    choices = [(label, name) for name, label in WEIGHTS.items() if available(name, settings.variant)]
    first = choices[0][1] if choices else None
    handlers = SoundingVideoHandlers(context, settings.variant)
    with gr.Tab("Sounding Video", id=NAME) as tab:
        gr.Markdown(INTRO + "\n" + "\n".join(f"*{label}: {describe(name, settings.variant)}*"
                                             for label, name in choices))
        with gr.Row():
            weights = gr.Dropdown(choices, value=first, label="Weights", elem_id="sv-weights",
                                  info="Which model: each makes the kind of clips it was trained on (models you "
                                       "train in the Train tab appear here too).")
            tab.select(refresh(choices, STUDIO_WEIGHTS), weights, weights, queue=False)
            mode = gr.Radio(list(MODES), value=JOINT, label="Make")
        format_note = gr.Markdown(elem_id="sv-format")
        with gr.Row():
            audio_in = gr.Audio(type="filepath", label="Sound to make a video for", visible=False)
            video_in = gr.Video(label="Video to make a sound for", visible=False, sources=["upload"])
        gr.Examples([[AUDIO_TO_VIDEO, str(EXAMPLES / "lamp-high.wav"), None],
                     [VIDEO_TO_AUDIO, None, str(EXAMPLES / "lamp-low.mp4")],
                     [AUDIO_TO_VIDEO, str(EXAMPLES / "bounce.wav"), None],
                     [VIDEO_TO_AUDIO, None, str(EXAMPLES / "bounce.mp4")]], inputs=[mode, audio_in, video_in],
                    label="Examples from the toy world: the hum of a lamp hanging high (the studio model should hang "
                          "its lamp high), a lamp hanging low (it should hum low), a bounce", cache_examples=False)
        with gr.Accordion("Settings", open=False):
            with gr.Column(visible=not latent_model(first)) as diffusion_settings:  # MM-Diffusion's
                with gr.Row():
                    sampler = gr.Radio(list(SAMPLERS), value=default_sampler(first), label="Sampler",
                                       info="DPM-Solver: 20 steps is the paper's fast default. DDPM is the slowest "
                                            "and the best; the studio model starts at 100 DDPM steps (about 10 s on "
                                            "one CPU core): with fewer-step samplers some of its clips stay noisy.")
                    steps = gr.Slider(1, MAX_STEPS, value=default_steps(first), step=1, label="Steps",
                                      elem_id="sv-steps")
                with gr.Row():
                    first_guidance, first_form, first_rounds, first_clean = steering_controls(first, JOINT)
                    guidance = gr.Number(first_guidance, minimum=0, maximum=MAX_GUIDANCE, elem_id="sv-guidance",
                                         label="Guidance λ (audio → video, video → audio)",
                                         info="0 = replacement (works with every sampler); above 0 = gradient "
                                              "guidance (Eq. 12), which needs DDIM or DDPM. λ weighs the true "
                                              "gradient: the released scripts' λ = 3 acts as 3·2^20 = 3145728.")
                    form = gr.Radio(list(FORMS), value=first_form, label="Guidance form")
                    resample = gr.Slider(1, MAX_RESAMPLE_ROUNDS, value=first_rounds, step=1,
                                         label="Resampling rounds",
                                         info="Each of the noisiest 60 % of the steps is taken this many times, so "
                                              "what is made settles on what you gave, and a joint clip on a clean "
                                              "scene (RePaint; not in the paper). 1 = the paper's sampler. Needs DDPM "
                                              "or DDIM; costs time in proportion.")
                    clean = gr.Checkbox(first_clean, label="Give it clean (audio → video, video → audio)",
                                        elem_id="sv-clean-condition",
                                        info="For weights trained with a clean condition (the studio model): what "
                                             "you give enters the network as it is, and the network's learnt "
                                             "conditional makes the rest (not in the paper). Off = the paper's "
                                             "zero-shot steering, which the settings beside it shape.")
            with gr.Row(visible=latent_model(first)) as latent_settings:  # MM-LDM's
                latent_steps = gr.Slider(1, MAX_LDM_STEPS, value=LDM_STEPS, step=1, label="DiT steps (DDIM)",
                                         elem_id="sv-ldm-steps",
                                         info=f"Steps of the latent transformer; the paper samples {LDM_STEPS}.")
                decoder_steps = gr.Slider(1, MAX_LDM_STEPS, value=LDM_DECODER_STEPS, step=1,
                                          label="Decoder steps (DDIM)", elem_id="sv-decoder-steps",
                                          info="Steps of the shared decoder that turns the latents into frames and "
                                               "sound.")
                cross_guidance = gr.Slider(0, MAX_CROSS_MODAL_GUIDANCE, value=LDM_GUIDANCE, step=0.5,
                                           label="Cross-modal guidance φ", elem_id="sv-phi",
                                           info="Used only for audio → video and video → audio: 1 = the conditional "
                                                "prediction alone, 0 = unconditional (ignores what you gave), above 1 "
                                                "pushes further from the unconditional one (with reconstruction "
                                                "guidance on, the studio model is best at 1).")
                reconstruction = gr.Slider(0, MAX_RECONSTRUCTION, value=latent_reconstruction(JOINT), step=10,
                                           label="Reconstruction guidance λ", elem_id="sv-reconstruction",
                                           info="Used only for audio → video and video → audio: steers what is made "
                                                "until the model would reconstruct what you gave from it (not in the "
                                                "paper; 0 = the paper's sampler). Without it the studio model's "
                                                "video does not follow a sound (it takes "
                                                f"{latent_reconstruction(AUDIO_TO_VIDEO):g} there, "
                                                f"{latent_reconstruction(VIDEO_TO_AUDIO):g} for a sound for a "
                                                "video); too high breaks the picture.")
                latent_resample = gr.Slider(1, MAX_RESAMPLE_ROUNDS, value=latent_resample_rounds(JOINT), step=1,
                                            label="Resampling rounds", elem_id="sv-ldm-resample",
                                            info="Each of the noisiest 60 % of the DiT's steps is taken this many "
                                                 "times (RePaint; not in the paper; 1 = its sampler). The studio "
                                                 "model's video settles on a given sound with 2; its joint clips and "
                                                 "sounds for a video do not gain. Costs time in proportion.")
            with gr.Row():
                seed = gr.Number(-1, label="Seed", info="-1 picks a random one (shown with the result).")
                samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples")
                super_res = gr.Checkbox(False, label="Super-resolution to 256×256",
                                        visible=has_super_resolution(first, settings.variant),
                                        info="Up-samples the generated frames with the released SR model (slow).")
        with gr.Row():
            run = gr.Button("Generate", variant="primary", elem_id="sv-generate")
            stop = gr.Button("Stop")
        preview = gr.Image(label=LATENT_PREVIEW if latent_model(first) else FRAMES_PREVIEW, interactive=False)
        with gr.Row():
            video_out = gr.Video(label="Sounding video (first sample)", autoplay=False, elem_id="sv-video")
            audio_out = gr.Audio(label=f"Its sound (wav, {PLAYBACK_RATE / 1000:g} kHz)", type="filepath")
        note = gr.Markdown(elem_id="sv-note")
        files = gr.File(label="All samples (mp4 + wav)", file_count="multiple", elem_id="sv-files")
        gr.on(None, handlers.describe_weights, weights, format_note)  # on page load and on every change of weights
        weights.change(lambda w, m: settings_shown(w, m, settings.variant), [weights, mode],
                       [diffusion_settings, latent_settings, sampler, steps, guidance, form, resample, clean,
                        super_res, latent_steps, decoder_steps, cross_guidance, reconstruction, latent_resample,
                        preview], queue=False)
        mode.change(lambda m, w: (gr.update(visible=m == AUDIO_TO_VIDEO), gr.update(visible=m == VIDEO_TO_AUDIO),
                                  *steering_controls(w, m), latent_reconstruction(m), latent_resample_rounds(m)),
                    [mode, weights], [audio_in, video_in, guidance, form, resample, clean, reconstruction,
                                      latent_resample],
                    queue=False)
        sampler.change(sampler_steps, [sampler, weights], steps, queue=False)
        event = run.click(
            gpu_handler(handlers.generate, settings.gpu_seconds),
            [weights, mode, audio_in, video_in, sampler, steps, guidance, form, resample, seed, samples, super_res,
             latent_steps, decoder_steps, cross_guidance, reconstruction, clean, latent_resample],
            [preview, video_out, audio_out, files, note],
            concurrency_limit=settings.concurrency_limit, concurrency_id=NAME, api_name="sounding_video",
        )
        stop.click(None, None, None, cancels=[event])


class SoundingVideoHandlers:
    def __init__(self, context: StudioContext, variant: str):
        self.context, self.variant = context, variant

    def model(self, weights: str | None, session: str | None) -> tuple[str, str]:
        """(registry entry, variant) of the dropdown's choice: a released or studio entry with the tab's variant,
        or weights this session trained (a variant of the studio entry)."""
        if weights in WEIGHTS:
            return weights, self.variant
        return STUDIO_WEIGHTS, chosen_variant_for(STUDIO_WEIGHTS, weights, self.variant, session)

    @user_facing("loading the model")
    def describe_weights(self, weights: str | None, request: gr.Request = None) -> str:
        """The chosen model's clip format (it is loaded, as the next generation needs it anyway)."""
        if weights is None or (weights in WEIGHTS and not available(weights, self.variant)):
            return ""
        pipe = get_pipeline(*self.model(weights, getattr(request, "session_hash", None)))
        return describe_model(pipe, MM_LDM_PAPER_CLIP if latent_model(weights) else PAPER_CLIP)

    @user_facing("making the sounding video")
    def generate(self, weights, mode, audio_file, video_file, sampler, steps, guidance, form, resample, seed, samples,
                 super_res, request: gr.Request, latent_steps=LDM_STEPS, decoder_steps=LDM_DECODER_STEPS,
                 cross_guidance=LDM_GUIDANCE, reconstruction=None, clean=None, latent_resample=None):
        """Yields (preview, …) while sampling, then the samples as files. MM-LDM's settings and MM-Diffusion's clean
        condition come last, after the request (which gradio fills in by its type wherever it stands), so that
        callers can leave them out (`reconstruction`, `clean`, `latent_resample` None: the weights' default for the
        mode); each family reads only its own settings."""
        from pipelines.seeds import generators_for

        self.context.files.claim(request.session_hash, audio_file, video_file)
        if weights is None or (weights in WEIGHTS and not available(weights, self.variant)):
            raise gr.Error("Choose the weights to use: no model is available for that choice.")
        if mode not in MODES:
            raise gr.Error(f"Choose what to make: {JOINT}, {AUDIO_TO_VIDEO} or {VIDEO_TO_AUDIO}.")
        if latent_model(weights):
            rounds = latent_resample_rounds(mode) if latent_resample is None else latent_resample
            pull = latent_reconstruction(mode) if reconstruction is None else reconstruction
            arguments = self._latent_settings(mode, latent_steps, decoder_steps, cross_guidance, pull, samples, rounds)
        else:
            clean = default_steering(weights, mode).clean_condition if clean is None else bool(clean)
            arguments = self._settings(mode, sampler, steps, guidance, form, resample, clean, samples)
        generators, seed_used = generators_for(require_number(seed, "Seed", -1, 2**31 - 1, integer=True),
                                               arguments["num_samples"])
        pipe = get_pipeline(*self.model(weights, request.session_hash))
        if arguments.get("clean_condition") and not pipe.learnt_clean_condition:
            raise gr.Error("These weights did not learn a clean condition (they were trained without it): untick "
                           "“Give it clean” to use the paper's zero-shot steering.")
        notes = self._condition(mode, audio_file, video_file, pipe.clip_format, arguments)
        upsampler = self._upsampler(weights, bool(super_res), "video" in arguments, pipe.clip_format, notes)
        picture = PreviewFiles(self.context.files, request.session_hash)
        shown = latent_picture if latent_model(weights) else preview_grid
        output, frames = yield from stream(lambda preview: sample(pipe, upsampler, arguments, generators, preview),
                                           lambda previews: (picture(shown(previews[0])),) + (gr.skip(),) * 4,
                                           picture)
        yield (None,) + self._save(output, frames, seed_used, notes, request)

    def _latent_settings(self, mode: str, steps, decoder_steps, cross_guidance, reconstruction, samples,
                         resample_rounds) -> dict:
        """MM-LDM's arguments from its controls; φ and λ only where something is given to guide by."""
        arguments = dict(
            num_inference_steps=require_number(steps, "DiT steps (DDIM)", 1, MAX_LDM_STEPS, integer=True),
            decoder_steps=require_number(decoder_steps, "Decoder steps (DDIM)", 1, MAX_LDM_STEPS, integer=True),
            resample_rounds=require_number(resample_rounds, "Resampling rounds", 1, MAX_RESAMPLE_ROUNDS, integer=True),
            num_samples=require_number(samples, "Samples", 1, MAX_SAMPLES, integer=True),
        )
        if mode != JOINT:
            arguments["guidance_scale"] = require_number(cross_guidance, "Cross-modal guidance φ", 0,
                                                         MAX_CROSS_MODAL_GUIDANCE)
            arguments["reconstruction_scale"] = require_number(reconstruction, "Reconstruction guidance λ", 0,
                                                               MAX_RECONSTRUCTION)
        return arguments

    def _settings(self, mode: str, sampler, steps, guidance, form, resample, clean: bool, samples) -> dict:
        """MM-Diffusion's arguments from its controls (the pipeline checks how they combine)."""
        if sampler not in SAMPLERS:
            raise gr.Error(f"Choose a sampler: {', '.join(SAMPLERS)}.")
        return dict(
            sampler=SAMPLERS[sampler], num_inference_steps=require_number(steps, "Steps", 1, MAX_STEPS, integer=True),
            guidance_scale=require_number(guidance, "Guidance λ", 0, MAX_GUIDANCE) if mode != JOINT else 0.0,
            guidance_scale_form=FORMS.get(form, "paper"),
            resample_rounds=require_number(resample, "Resampling rounds", 1, MAX_RESAMPLE_ROUNDS, integer=True),
            clean_condition=clean and mode != JOINT,
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
            path = require_video(video_file, max_mb=max_mb)
            try:
                converted = read_video_clip(path, fmt)
            except VideoDecodeError as error:
                raise video_read_error(path, error) from None
            arguments["video"] = converted.value
            return converted.notes
        return []

    def _upsampler(self, weights: str, wanted: bool, video_given: bool, fmt: ClipFormat, notes: list[str]):
        """The up-sampler to run after sampling, or None (with a note when one was asked for but cannot run)."""
        if not wanted:
            return None
        if video_given:
            notes.append("Super-resolution up-samples generated frames only: your video is returned as given.")
            return None
        if not has_super_resolution(weights, self.variant):
            notes.append(f"No super-resolution checkpoint is configured for these weights: frames stay "
                         f"{fmt.width}×{fmt.height}.")
            return None
        return get_pipeline(SUPER_RESOLUTION[weights], self.variant)

    def _save(self, output, videos: np.ndarray, seed_used: int, notes: list[str], request: gr.Request) -> tuple:
        """An mp4 (frames with their sound) and a wav per sample."""
        session = request.session_hash
        sounds = [playable(audio, output.sample_rate) for audio in output.audio]
        paths = []
        for index, sound in enumerate(sounds):
            stem = f"sounding-video-{seed_used + index}"
            mp4 = write_video(self.context.files.new_path(session, stem, ".mp4"), enlarged(videos[index]),
                              output.fps, audio=sound, sample_rate=PLAYBACK_RATE)
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


def sample(pipe, upsampler, arguments: dict, generators, preview) -> tuple:
    """Sample (and up-sample), handing the frames forming to `preview` every PREVIEW_EVERY steps of either loop
    -> (the pipeline's output, the frames to save)."""
    show = every_steps(preview, PREVIEW_EVERY)
    output = pipe(**arguments, generator=generators, callback_on_step_end=show,
                  callback_on_step_end_tensor_inputs=["preview"])
    if upsampler is None:
        return output, output.video
    upsampled = upsampler(output.video, generator=generators, callback_on_step_end=show,
                          callback_on_step_end_tensor_inputs=["preview"])
    return output, upsampled.video


def latent_picture(picture: np.ndarray) -> np.ndarray:
    """MM-LDM's preview of one sample, a picture of its video latent [h, w, 3] (uint8), enlarged pixel for pixel to at
    least MIN_SHOWN_SIZE high."""
    return enlarged(picture[None])[0]


def preview_grid(video: np.ndarray, columns: int = PREVIEW_COLUMNS) -> np.ndarray:
    """Frames [F, H, W, 3] (uint8) as one image, `columns` frames per row, each enlarged to at least 64 pixels."""
    frames, height, width = video.shape[:3]
    rows = -(-frames // columns)
    padded = np.concatenate([video, np.zeros((rows * columns - frames, height, width, 3), video.dtype)])
    grid = padded.reshape(rows, columns, height, width, 3).transpose(0, 2, 1, 3, 4).reshape(rows * height,
                                                                                            columns * width, 3)
    scale = max(1, MIN_SHOWN_SIZE // max(height, 1))
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)

