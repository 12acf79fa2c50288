"""Spectrogram Lab: play a picture as a spectrogram, see a sound as a picture, and hear/see each round trip."""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr

from pipelines.audio import SPECS
from pipelines.media import save_playhead_video, save_png, save_wav
from pipelines.registry import available
from pipelines.spectrogram_lab import MAX_SECONDS, MIN_SECONDS, round_trip_error
from studio.compute import COMPUTE, get_pipeline
from studio.context import StudioContext
from studio.gpu import gpu_handler
from studio.validation import (
    checked_image_input,
    editor_files,
    editor_pixels,
    read_audio,
    read_picture,
    require_number,
    user_facing,
)

NAME = "spectrogram_lab"
REQUIRES = (NAME,)
TITLE = "Spectrogram Lab"
MODELS = (NAME, "hifigan")  # for About
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
SPEC = SPECS["auffusion"]
MAX_ITERATIONS = 256
GRIFFIN_LIM, HIFIGAN = "Griffin-Lim", "HiFi-GAN (Auffusion)"

INTRO = f"""
Every picture here is a **log-mel spectrogram** in the convention Images that Sound composes in (Auffusion:
{SPEC.sample_rate // 1000} kHz, {SPEC.n_mels} mel bands up to {SPEC.fmax / 1000:g} kHz, hop {SPEC.hop_length}).
**White is loud, black is silence**; the bottom of the picture is the low end, the top the high end, and time runs
left to right. Sound is rebuilt from the picture with Griffin-Lim phase recovery.
"""


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    with gr.Tab("Spectrogram Lab", id=NAME):
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### Picture → sound")
                picture = checked_image_input(gr.ImageEditor(
                    label="Picture: upload one or draw (white strokes are loud)", type="filepath", format="png",
                    image_mode="RGBA",
                    sources=["upload", "clipboard"], canvas_size=(1024, 256), layers=False,
                    brush=gr.Brush(colors=["#ffffff", "#a0a0a0", "#505050"], default_color="#ffffff"),
                    elem_id="lab-picture",
                ))
                seconds = gr.Slider(MIN_SECONDS, MAX_SECONDS, value=5.12, step=0.01, label="Duration (s)")
                vocoders = [GRIFFIN_LIM] + ([HIFIGAN] if available("hifigan", settings.variant) else [])
                vocoder = gr.Radio(vocoders, value=GRIFFIN_LIM, label="Vocoder", visible=len(vocoders) > 1,
                                   info="HiFi-GAN is Auffusion's neural vocoder (the paper's default).")
                iterations = gr.Slider(8, MAX_ITERATIONS, value=32, step=1, label="Griffin-Lim iterations",
                                       info="More iterations give cleaner phase and take longer.")
                invert = gr.Checkbox(label="Invert: dark is loud (for dark drawings on a light ground)")
                play = gr.Button("Play the picture", variant="primary", elem_id="lab-play")
                gr.Examples([[str(EXAMPLES / "rings.png")]], inputs=[picture], label="Example picture",
                            cache_examples=False)
            with gr.Column():
                heard_audio = gr.Audio(label="The picture as sound", type="filepath", elem_id="lab-heard-audio")
                heard_video = gr.Video(label="Spectrogram with playhead (mp4)", elem_id="lab-heard-video")
                heard_image = gr.Image(label="The spectrogram as played (png)", type="filepath", format="png")
                heard_again = gr.Image(label="Round trip: the sound analysed again", type="filepath", format="png")
                heard_note = gr.Markdown(elem_id="lab-heard-note")
                heard_files = gr.File(label="Downloads", file_count="multiple", elem_id="lab-heard-files")
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### Sound → picture")
                sound = gr.Audio(label=f"Sound (up to {SPEC.clip_seconds:g} s are used)", type="filepath",
                                 sources=["upload", "microphone"], elem_id="lab-sound")
                draw = gr.Button("Draw the sound", variant="primary", elem_id="lab-draw")
                gr.Examples([[str(EXAMPLES / "chirp.wav")]], inputs=[sound], label="Example sound",
                            cache_examples=False)
            with gr.Column():
                seen_image = gr.Image(label="The sound as a picture (png)", type="filepath", format="png",
                                      elem_id="lab-seen-image")
                seen_video = gr.Video(label="Spectrogram with playhead (mp4)")
                seen_again = gr.Audio(label="Round trip: the picture played back (Griffin-Lim)", type="filepath")
                seen_note = gr.Markdown(elem_id="lab-seen-note")
                seen_files = gr.File(label="Downloads", file_count="multiple")

        handlers = LabHandlers(context, settings.variant)
        play.click(
            gpu_handler(handlers.play_picture, settings.gpu_seconds), [picture, seconds, iterations, invert, vocoder],
            [heard_audio, heard_video, heard_image, heard_again, heard_note, heard_files],
            concurrency_limit=settings.concurrency_limit, concurrency_id=NAME, api_name="picture_to_sound",
        )
        draw.click(
            gpu_handler(handlers.draw_sound, settings.gpu_seconds), [sound, iterations],
            [seen_image, seen_video, seen_again, seen_note, seen_files],
            concurrency_limit=settings.concurrency_limit, concurrency_id=NAME, api_name="sound_to_picture",
        )


class LabHandlers:
    """The tab's event handlers (plain methods, so tests can call them without a browser)."""

    def __init__(self, context: StudioContext, variant: str):
        self.context, self.variant = context, variant

    @user_facing("playing the picture")
    def play_picture(self, image, duration, n_iter, dark_is_loud, vocoder_name, request: gr.Request,
                     progress=gr.Progress()):
        self.context.files.claim(request.session_hash, *editor_files(image))
        pixels = read_picture(editor_pixels(image))
        duration = require_number(duration, "Duration", MIN_SECONDS, MAX_SECONDS)
        n_iter = require_number(n_iter, "Griffin-Lim iterations", 1, MAX_ITERATIONS, integer=True)
        if vocoder_name not in (GRIFFIN_LIM, HIFIGAN):
            raise gr.Error(f"Unknown vocoder {vocoder_name!r}: choose {GRIFFIN_LIM} or {HIFIGAN}.")
        lab = get_pipeline(NAME, self.variant)
        vocoder = get_pipeline("hifigan", self.variant) if vocoder_name == HIFIGAN else None
        progress(0.1, desc=f"Turning the picture into sound ({vocoder_name})")
        result = COMPUTE.run(lab, pixels, seconds=duration, invert=bool(dark_is_loud), griffin_lim_iterations=n_iter,
                             vocoder=vocoder)
        progress(0.6, desc="Analysing the sound again")
        again = COMPUTE.run(lab.heard_again, result)
        progress(0.75, desc="Writing files")
        files = _write_outputs(self.context, request, "picture", result.image, result.audio, result.sample_rate)
        again_png = save_png(again, self.context.files.new_path(request.session_hash, "round-trip", ".png"))
        note = (f"{result.seconds:.2f} s at {result.sample_rate} Hz. Round-trip difference: "
                f"{round_trip_error(result.image, again):.3f} (mean absolute, in image units: 0 is identical).")
        if result.gain < 1.0:
            note += f" The picture is loud: the sound was turned down {-20 * math.log10(result.gain):.1f} dB to " \
                    "avoid clipping."
        return files["wav"], files["mp4"], files["png"], str(again_png), note, list(files.values())

    @user_facing("drawing the sound")
    def draw_sound(self, path, n_iter, request: gr.Request, progress=gr.Progress()):
        self.context.files.claim(request.session_hash, path)
        loaded = read_audio(path, SPEC, max_mb=self.context.config.max_upload_mb, max_seconds=SPEC.clip_seconds)
        n_iter = require_number(n_iter, "Griffin-Lim iterations", 1, MAX_ITERATIONS, integer=True)
        lab = get_pipeline(NAME, self.variant)
        progress(0.1, desc="Computing the spectrogram")
        result = COMPUTE.run(lab.sound_to_picture, loaded.samples)
        progress(0.3, desc="Playing the picture back (Griffin-Lim)")
        back = COMPUTE.run(lab, result.image, seconds=_playable_seconds(result.seconds), griffin_lim_iterations=n_iter)
        progress(0.7, desc="Writing files")
        files = _write_outputs(self.context, request, "sound", result.image, result.audio, result.sample_rate)
        back_wav = save_wav(back.audio, back.sample_rate,
                            self.context.files.new_path(request.session_hash, "round-trip", ".wav"))
        notes = loaded.notes + [f"{loaded.seconds:.2f} s at {loaded.sample_rate} Hz."]
        return files["png"], files["mp4"], str(back_wav), " ".join(notes), list(files.values())


def _playable_seconds(seconds: float) -> float:
    return min(max(seconds, MIN_SECONDS), MAX_SECONDS)


def _write_outputs(context: StudioContext, request: gr.Request, stem: str, image, audio, sample_rate) -> dict:
    """wav + png + playhead mp4 in the session's folder; returns their paths as strings by extension."""
    session = request.session_hash
    wav = save_wav(audio, sample_rate, context.files.new_path(session, stem, ".wav"))
    png = save_png(image, context.files.new_path(session, stem, ".png"))
    mp4 = save_playhead_video(image, audio, sample_rate, context.files.new_path(session, stem, ".mp4"))
    return {"wav": str(wav), "png": str(png), "mp4": str(mp4)}
