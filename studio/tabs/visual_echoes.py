"""Visual Echoes: one masked token transformer turns a picture into its sound, a sound into its picture, makes both
at once, or regenerates part of a sound guided by a picture.

The tokens fill in live (the partly decoded spectrogram or picture, the positions still masked dimmed); every sample
is kept as png, the sounds also as wav and a playhead mp4. The examples are toy-world pictures and sounds, the world
the bundled studio weights were trained on.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from pipelines.audio import SPECS
from pipelines.media import save_playhead_video, save_png, save_wav, to_uint8
from pipelines.registry import describe
from studio.compute import get_pipeline
from studio.context import StudioContext
from studio.gpu import gpu_handler
from studio.streaming import PreviewFiles, every_steps, stream
from studio.validation import (
    checked_image_input,
    editor_files,
    editor_pixels,
    read_audio,
    read_picture,
    require_number,
    user_facing,
)

NAME = "visual_echoes"
REQUIRES = (NAME,)
SPEC = SPECS["visual_echoes"]
MAX_SAMPLES = 4
MAX_STEPS = 100
MAX_UPLOAD_MB = 50
MAX_UPLOAD_SECONDS = 60.0
PREVIEW_EVERY = 3
CLIP_SECONDS = 128 * SPEC.hop_length / SPEC.sample_rate  # the studio weights' clip; the handler uses the model's
BACKGROUND = 0.85  # undrawn canvas: the toy world's pale ground, not black
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "assets" / "models" / "visual_echoes" / "examples"

PICTURE_TO_SOUND, SOUND_TO_PICTURE, BOTH, INPAINT = ("Picture → sound", "Sound → picture", "Both at once",
                                                     "Inpaint part of a sound, guided by a picture")
TASKS = {PICTURE_TO_SOUND: "image_to_audio", SOUND_TO_PICTURE: "audio_to_image", BOTH: "co_generation",
         INPAINT: "inpaint_audio"}
# The toy world's kinds and their picture colours (for the brush).
BRUSH_COLOURS = ["#f2c726", "#cc261f", "#2e73d9", "#26a659", "#595959", "#8c5926", "#e0e0e0", "#1a1a8c"]

INTRO = """
Pictures that sound and sounds that draw (*Visual Echoes*, a masked token transformer over image and spectrogram
tokens). Draw or upload a picture and hear it; upload or record a sound and see it; make both at once; or pick a
time range of a sound and regenerate it guided by a picture. The bundled weights know a small toy world: **bells,
drums, birds, whistles, engines, dogs, clocks and rain**, drawn as simple shapes; a bigger object sounds lower and
each object drawn is one event heard.
"""


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    handlers = VisualEchoesHandlers(context, settings.variant)
    with gr.Tab("Visual Echoes", id=NAME):
        gr.Markdown(INTRO + f"\n*Weights: {describe(NAME, settings.variant)}*")
        task = gr.Radio(list(TASKS), value=PICTURE_TO_SOUND, label="What to make", elem_id="ve-task")
        with gr.Row(equal_height=False):
            with gr.Column():
                picture = checked_image_input(gr.ImageEditor(
                    label="Picture: upload one or draw (used by Picture → sound and Inpaint)", type="filepath",
                    format="png", image_mode="RGBA", sources=["upload", "clipboard"], canvas_size=(256, 256),
                    layers=False, brush=gr.Brush(colors=BRUSH_COLOURS, default_color=BRUSH_COLOURS[0]),
                    elem_id="ve-picture"))
                picture_examples = sorted(EXAMPLES.glob("*.png"))
                if picture_examples:
                    gr.Examples([[str(path)] for path in picture_examples], inputs=[picture],
                                label="Toy-world pictures", cache_examples=False)
            with gr.Column():
                sound = gr.Audio(label="Sound: upload or record (used by Sound → picture and Inpaint; the first "
                                       f"{CLIP_SECONDS:.2f} s are used)", type="filepath",
                                 sources=["upload", "microphone"], elem_id="ve-sound")
                sound_examples = sorted(EXAMPLES.glob("*.wav"))
                if sound_examples:
                    gr.Examples([[str(path)] for path in sound_examples], inputs=[sound], label="Toy-world sounds",
                                cache_examples=False)
                with gr.Row():
                    start = gr.Slider(0, CLIP_SECONDS, value=0.5, step=0.01, label="Inpaint from (s)")
                    end = gr.Slider(0, CLIP_SECONDS, value=1.0, step=0.01, label="Inpaint to (s)")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=30, step=1, label="Iterations N", elem_id="ve-steps",
                                  info="Decoding iterations (the paper's: 30).")
                temperature = gr.Slider(0, 20, value=9, step=0.5, label="Temperature T",
                                        info="Randomness in which tokens stay masked (the paper's: 9).")
                guidance = gr.Slider(0, 10, value=3, step=0.5, label="Guidance s",
                                     info="How strongly the given modality steers; 1 = off. The paper uses 3 for "
                                          "sounds from pictures and none for pictures; both at once is unguided.")
            with gr.Row():
                samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples")
                seed = gr.Number(value=-1, label="Seed (-1: random)")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="ve-generate")
            stop = gr.Button("Stop")
        preview = gr.Image(label="Tokens filling in…", type="numpy", elem_id="ve-preview")
        gallery = gr.Gallery(label="Samples", columns=4, height=280, elem_id="ve-gallery")
        with gr.Row():
            heard = gr.Audio(label="First sample as sound", type="filepath", elem_id="ve-audio")
            video = gr.Video(label="First sample with playhead")
        note = gr.Markdown(elem_id="ve-note")
        files = gr.File(label="Downloads", file_count="multiple")
        event = generate.click(
            gpu_handler(handlers.generate, settings.gpu_seconds),
            [task, picture, sound, start, end, steps, temperature, guidance, samples, seed],
            [preview, gallery, heard, video, note, files], concurrency_limit=settings.concurrency_limit,
            concurrency_id=NAME, api_name="visual_echoes")
        stop.click(None, None, None, cancels=[event])


def on_background(canvas):
    """The editor's composite (uint8 RGBA, from `editor_pixels`) with transparent pixels put on the toy world's pale
    ground, as a float RGB array; None stays None (read_picture says what is missing)."""
    if canvas is None:
        return None
    rgba = np.asarray(canvas, np.float32) / 255.0
    alpha = rgba[..., 3:]
    if not np.any(alpha):
        return np.zeros(rgba.shape[:2] + (3,), np.float32)  # nothing drawn: read_picture says so
    return rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)


class VisualEchoesHandlers:
    def __init__(self, context: StudioContext, variant: str):
        self.context, self.variant = context, variant

    @user_facing("making the picture and the sound")
    def generate(self, task_label, picture, sound, start, end, steps, temperature, guidance, samples, seed,
                 request: gr.Request):
        """Yields (preview, …) while the tokens fill in, then (None, gallery, wav, mp4, note, files)."""
        from pipelines.seeds import generators_for

        self.context.files.claim(request.session_hash, sound, *editor_files(picture))
        if task_label not in TASKS:
            raise gr.Error(f"Choose what to make: one of {', '.join(TASKS)}.")
        task = TASKS[task_label]
        arguments = {
            "task": task,
            "num_inference_steps": require_number(steps, "Iterations N", 1, MAX_STEPS, integer=True),
            "temperature": require_number(temperature, "Temperature T", 0, 20),
            "guidance_scale": require_number(guidance, "Guidance s", 0, 10),
            "num_samples": require_number(samples, "Samples", 1, MAX_SAMPLES, integer=True),
        }
        generators, seed_used = generators_for(require_number(seed, "Seed", -1, 2**31 - 1, integer=True),
                                               arguments["num_samples"])
        notes = []
        if task in ("image_to_audio", "inpaint_audio"):
            arguments["image"] = read_picture(on_background(editor_pixels(picture)))
        if task in ("audio_to_image", "inpaint_audio"):
            loaded = read_audio(sound, SPEC, max_mb=MAX_UPLOAD_MB, max_seconds=MAX_UPLOAD_SECONDS, label="sound")
            if not np.any(loaded.samples):
                raise gr.Error("The sound is silent (every sample is zero): upload or record a sound with something "
                               "in it.")
            samples = loaded.samples
            peak = float(np.abs(samples).max())
            if not np.isfinite(peak):
                raise gr.Error("The sound holds invalid (NaN or infinite) samples; export it again as a WAV file.")
            if peak > 1.0:
                samples = (samples * (0.95 / peak)).astype(np.float32)
                notes.append("The sound went past full scale, so it was turned down to fit.")
            arguments["audio"], arguments["audio_sample_rate"] = samples, SPEC.sample_rate
            notes += list(loaded.notes)
        pipe = get_pipeline(NAME, self.variant)
        if task == "inpaint_audio":
            first = require_number(start, "Inpaint from", 0, pipe.clip_seconds)
            last = require_number(end, "Inpaint to", 0, pipe.clip_seconds)
            if last <= first:
                raise gr.Error(f"Inpaint to ({last:.2f} s) must come after Inpaint from ({first:.2f} s).")
            arguments["inpaint_range_s"] = (first, last)
        if task == "audio_to_image" and "audio" in arguments and len(arguments["audio"]) > pipe.clip_samples:
            notes.append(f"The model hears {pipe.clip_seconds:.2f} s: only the start of the sound was used.")
        picture = PreviewFiles(self.context.files, request.session_hash)  # previews do not outlive the job
        output = yield from stream(
            lambda show: pipe(**arguments, generator=generators, callback_on_step_end=every_steps(show,
                                                                                                   PREVIEW_EVERY)),
            lambda previews: (picture(to_uint8(previews[0])),) + (gr.skip(),) * 5, picture)
        yield (None,) + self._save(output, task, seed_used, notes, request)

    def _save(self, output, task: str, seed_used: int, notes: list[str], request: gr.Request) -> tuple:
        session = request.session_hash
        gallery, paths, wavs = [], [], []
        for index in range(len(output.image_tokens)):
            stem = f"visual-echo-{seed_used + index}"
            caption = f"seed {seed_used + index}"
            if task in ("audio_to_image", "co_generation"):
                png = save_png(output.images[index], self.context.files.new_path(session, stem + "-picture", ".png"))
                gallery.append((str(png), caption + " · picture"))
                paths.append(str(png))
            if output.audios is not None:
                spectrogram = np.flipud(output.spectrograms[index])  # low frequencies at the bottom
                png = save_png(spectrogram, self.context.files.new_path(session, stem + "-spectrogram", ".png"))
                wav = save_wav(output.audios[index], output.sample_rate,
                               self.context.files.new_path(session, stem, ".wav"))
                gallery.append((str(png), caption + " · spectrogram"))
                paths += [str(png), str(wav)]
                wavs.append(str(wav))
        video = None
        if output.audios is not None:
            large = np.kron(np.flipud(output.spectrograms[0]), np.ones((3, 3)))  # 80 mels are small on screen
            video = str(save_playhead_video(large, output.audios[0], output.sample_rate,
                                            self.context.files.new_path(session, "visual-echo", ".mp4")))
            paths.append(video)
        count = len(output.image_tokens)
        note = " ".join(notes + [f"Seeds {seed_used}…{seed_used + count - 1} (sample *i* uses seed + *i*)."])
        if task == "audio_to_image":
            note += " Griffin-Lim makes no sound here: the sound was given."
        else:
            note += " Griffin-Lim made the sound from the generated spectrogram."
        return gallery, (wavs[0] if wavs else None), video, note, paths
