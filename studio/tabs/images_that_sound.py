"""Images that Sound: two prompts -> a spectrogram that looks like the picture and sounds like the sound.

The picture forms live (previews of the clean estimate stream in while sampling); every sample is kept as png,
wav and a playhead mp4. The paper's prompt pairs are examples, generated on first click and then served from a
store kept for this run. The best sample can be colorized: on DeepFloyd IF (the paper's way; gated) when a Hugging
Face token is set and its weights are at hand, otherwise on Stable Diffusion 1.5.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tempfile
from types import SimpleNamespace

import gradio as gr
import numpy as np

from pipelines.audio import SPECS
from pipelines.images_that_sound import LATENT_BLOCK, PIXELS_PER_LATENT
from pipelines.media import save_playhead_video, save_png, save_wav, to_uint8
from pipelines.registry import REGISTRY, WeightsUnavailableError, available, chosen_variant, describe
from studio.compute import COMPUTE, get_pipeline
from studio.context import StudioContext
from studio.gpu import gpu_handler
from studio.streaming import PreviewFiles, every_steps, stream
from studio.validation import require_number, require_prompt, user_facing
from studio.weights import chosen_variant_for, refresh

NAME = "images_that_sound"
REQUIRES = (NAME,)
TITLE = "Images that Sound"
MODELS = (NAME, "hifigan", "clip_scorer", "clap_scorer", "colorizer_if")  # for About
MAX_SAMPLES = 8
SPEC = SPECS["auffusion"]
# Lengths come in blocks of latent columns; one pixel column of the spectrogram is one hop.
SECONDS_PER_LATENT_BLOCK = LATENT_BLOCK * PIXELS_PER_LATENT * SPEC.hop_length / SPEC.sample_rate
MAX_SECONDS = SPEC.clip_seconds
PREVIEW_EVERY = 5
VOCODERS = [("Auto (HiFi-GAN when the weights have one)", "auto"), ("HiFi-GAN", "hifigan"),
            ("Griffin-Lim", "griffinlim")]
SOUND_MADE_BY = {"hifigan": "HiFi-GAN", "griffinlim": "Griffin-Lim"}
# Prompt pairs from the paper's figures and examples.
PAPER_PROMPTS = [
    ["a castle with bell towers, grayscale, lithograph style", "bell ringing"],
    ["tigers, grayscale, black background", "tiger growling"],
    ["a painting of corgis, grayscale, black background", "dog barking"],
    ["a painting of furry kittens, grayscale", "a kitten meowing for attention"],
    ["a pond full of water lilies, grayscale, lithograph style", "frog croaking"],
]
# Prompt pairs the studio weights can draw: their caption words only (pipelines/toyworld/captioned.py; the core
# classes they were trained on: towers, rings, stripes, dots pictures; bells, chirps, knocks, hums sounds).
STUDIO_PROMPTS = [
    ["a skyline of four towers", "church bells"],
    ["diagonal stripes", "chirps going up"],
    ["concentric rings", "a chiming bell"],
    ["rows of dots", "someone knocking"],
    ["tall towers in a row", "a steady drone"],
]
COMPOSED, IMPRINT, SDS = "Composed (the paper's method)", "Imprint baseline", "SDS baseline (slow)"
MAX_SDS_ITERATIONS = 5000
IF_COLORIZER, SD_COLORIZER = "DeepFloyd IF (paper)", "Stable Diffusion 1.5 (ungated)"
EXAMPLE_SEED = 0
EXAMPLES_REQUEST = SimpleNamespace(session_hash="paper-examples")  # stands in for gr.Request: one shared folder

INTRO = """
Spectrograms that are also pictures (Chen, Geng, Owens 2024): an image model and an audio model denoise **one**
latent together, so the result looks like the image prompt and, played as a spectrogram, sounds like the audio
prompt. Prompts such as *"grayscale, lithograph style"* or *"black background"* leave silent space and sound
better. Success varies with the seed: make several samples and keep the best.
"""


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    # The studio models were trained on 0.64 s spectrograms; the paper's on 10.24 s. Start where each is at home.
    on_studio = chosen_variant(NAME, settings.variant) == "studio"
    seconds_default, steps_default = (4 * SECONDS_PER_LATENT_BLOCK, 50) if on_studio else (MAX_SECONDS, 100)
    prompts = STUDIO_PROMPTS if on_studio else PAPER_PROMPTS  # what the loaded weights can draw
    handlers = ImagesThatSoundHandlers(context, settings.variant, steps_default, seconds_default)
    colour_paths, colour_reason = colorization_paths(settings.variant)
    with gr.Tab("Images that Sound", id=NAME) as tab:
        gr.Markdown(INTRO + f"\n*Weights: {describe(NAME, settings.variant)}*")
        usual = [(f"{chosen_variant(NAME, settings.variant) or settings.variant} weights", settings.variant)]
        weights = gr.Dropdown(usual, value=settings.variant, label="Weights", elem_id="its-weights",
                              info="Models you train in the Train tab appear here too.")
        tab.select(refresh(usual, NAME), weights, weights, queue=False)
        with gr.Row():
            image_prompt = gr.Textbox(label="Image prompt", value=prompts[0][0], max_lines=2,
                                      info="Tip: 'grayscale', 'lithograph style' or 'black background' help the "
                                           "picture leave silence, which makes the sound cleaner.")
            audio_prompt = gr.Textbox(label="Audio prompt", value=prompts[0][1], max_lines=2,
                                      info="Name one clear sound, e.g. 'bell ringing', 'dog barking'.")
        outputs = output_components()  # placed further down; the examples need them first
        paper_examples(handlers, [image_prompt, audio_prompt], outputs, settings.gpu_seconds, prompts)
        method = gr.Radio([COMPOSED, IMPRINT, SDS], value=COMPOSED, label="Method",
                          info="Baselines from the paper: imprint stamps an image onto a spectrogram; SDS optimises "
                               "one picture with both models' scores (slow: one sample, many iterations).")
        with gr.Accordion("Settings", open=False):
            negative_prompt = gr.Textbox(label="Negative prompt", value="")
            with gr.Row():
                steps = gr.Slider(1, 200, value=steps_default, step=1, label="Steps (DDIM)", elem_id="its-steps")
                image_scale = gr.Slider(0, 30, value=10, step=0.5, label="Image guidance γ_v")
                audio_scale = gr.Slider(0, 30, value=10, step=0.5, label="Audio guidance γ_a")
            with gr.Row():
                warm_image = gr.Slider(0, 1, value=0.9, step=0.01, label="Image model active for (t_v)",
                                       info="Fraction of the reverse process; 0.9 lets audio shape the first 10 %.")
                warm_audio = gr.Slider(0, 1, value=1.0, step=0.01, label="Audio model active for (t_a)")
            with gr.Row():
                seconds = gr.Slider(SECONDS_PER_LATENT_BLOCK, MAX_SECONDS, value=seconds_default,
                                    step=SECONDS_PER_LATENT_BLOCK, label="Length before cropping (s)",
                                    elem_id="its-seconds")
                samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples")
                seed = gr.Number(value=-1, label="Seed (-1: random)")
                vocoder = gr.Radio(VOCODERS, value="auto", label="Vocoder")
            sds_iterations = gr.Slider(10, MAX_SDS_ITERATIONS, value=500, step=10, label="SDS iterations",
                                       info=f"The paper runs 40,000 (about 2 h on a GPU); this tab allows up to "
                                            f"{MAX_SDS_ITERATIONS:,}.")
        with gr.Row():
            colour_prompt = gr.Textbox(label="Colorize (optional): describe the colours",
                                       placeholder="a colorful photo of a castle", scale=3,
                                       interactive=bool(colour_paths),
                                       info="Colours the best sample without changing its grayscale, so it still "
                                            "sounds the same.")
            colour_with = gr.Radio(colour_paths, value=colour_paths[0] if colour_paths else None,
                                   label="Colorize with", scale=2, visible=bool(colour_paths),
                                   elem_id="its-colour-with")
        gr.Markdown(colour_reason, elem_id="its-colour-note")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="its-generate")
            stop = gr.Button("Stop")
        preview, gallery, sound, video, note, files, coloured = outputs
        preview.render()
        gallery.render()
        coloured.render()
        with gr.Row():
            sound.render()
            video.render()
        note.render()
        files.render()

        event = generate.click(
            gpu_handler(handlers.generate, settings.gpu_seconds),
            [image_prompt, audio_prompt, negative_prompt, steps, image_scale, audio_scale, warm_image, warm_audio,
             seconds, samples, seed, vocoder, method, sds_iterations, colour_prompt, colour_with, weights],
            outputs, concurrency_limit=settings.concurrency_limit, concurrency_id=NAME, api_name="images_that_sound",
        )
        stop.click(None, None, None, cancels=[event])


def output_components() -> list:
    """preview, gallery, sound, video, note, files, colorized: created unrendered, `render()`ed where they go."""
    return [
        gr.Image(label="Forming…", type="numpy", elem_id="its-preview", render=False),
        gr.Gallery(label="Samples (spectrograms as seen)", columns=2, height=320, elem_id="its-gallery",
                   render=False),
        gr.Audio(label="Best sample as sound", type="filepath", render=False),
        gr.Video(label="Best sample with playhead", render=False),
        gr.Markdown(elem_id="its-note", render=False),
        gr.File(label="Downloads", file_count="multiple", render=False),
        gr.Image(label="Best sample, colorized", type="filepath", format="png", render=False),
    ]


def paper_examples(handlers: ImagesThatSoundHandlers, prompts: list, outputs: list, gpu_seconds: int,
                   pairs: list | None = None) -> gr.Examples:
    """Example prompt pairs (the paper's, or STUDIO_PROMPTS on the studio weights), generated at the tab's defaults on first click, then served from the store.

    `outputs`: the tab's outputs (`output_components`); the examples fill gallery, sound, video, note and files.

    The store is a folder for this run (removed at exit) unless GRADIO_EXAMPLES_CACHE names one: gradio's default,
    .gradio/cached_examples in the working directory, outlives the run and would keep serving results made with
    other weights after they change.
    """
    previous = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = previous or _run_folder()  # read once, by the constructor
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # gradio prints the store's folder; start-up stays quiet
            studio = pairs is STUDIO_PROMPTS
            return gr.Examples(pairs or PAPER_PROMPTS, inputs=prompts, outputs=outputs[1:6],
                               fn=gpu_handler(handlers.example, gpu_seconds), cache_examples=True,
                               cache_mode="lazy", label=("Prompt pairs the studio models know" if studio else
                                                        "The paper's prompt pairs") + " (made on first click at the "
                                                        "default settings, then shown at once)")
    finally:
        if previous is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE")


def _run_folder() -> str:
    folder = tempfile.mkdtemp(prefix="synesthesia-examples-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def colorization_paths(variant: str) -> tuple[list[str], str]:
    """The colorizers that can run now, best first, and a plain sentence saying which one is used and why."""
    paths, reasons = [], []
    if available("colorizer_if", variant):
        paths.append(IF_COLORIZER)
    else:
        reasons.append(f"{IF_COLORIZER} is off: {_unavailable_reason('colorizer_if', variant)}")
    if chosen_variant(NAME, variant) == "paper":
        paths.append(SD_COLORIZER)
    else:
        reasons.append(f"{SD_COLORIZER} is off: it needs the paper weights, and the studio's small models only draw "
                       f"in grayscale")
    if not paths:
        return paths, "Colorization is unavailable. " + " ".join(f"{reason}." for reason in reasons)
    if paths[0] == IF_COLORIZER:
        return paths, f"Colorization uses **{IF_COLORIZER}**: a Hugging Face token is set and its weights are at hand."
    return paths, f"Colorization uses **{paths[0]}**. {reasons[0]}."


def _unavailable_reason(name: str, variant: str) -> str:
    try:
        REGISTRY.resolve(name, variant)
    except WeightsUnavailableError as error:
        return str(error).split(": ", 1)[-1]  # without the lead "<title> has no usable weights"
    return "it became available just now"


class ImagesThatSoundHandlers:
    def __init__(self, context: StudioContext, variant: str, steps_default: int = 100,
                 seconds_default: float = MAX_SECONDS):
        self.context, self.variant = context, variant
        self.steps_default, self.seconds_default = steps_default, seconds_default

    def example(self, image_prompt, audio_prompt) -> tuple:
        """One of the paper's prompt pairs at the tab's default settings, one sample, a fixed seed (for gr.Examples):
        (gallery, sound, video, note, files).

        Takes no gr.Request (gradio passes none when it caches an example): the result is shared by all visitors,
        so its files go to one shared folder before gradio copies them into its store. The preview and colour
        images are left out: they are empty here, and gradio's store cannot give back an empty image.
        """
        *_, final = self.generate(image_prompt, audio_prompt, "", self.steps_default, 10.0, 10.0, 0.9, 1.0,
                                  self.seconds_default, 1, EXAMPLE_SEED, "auto", COMPOSED, 10, "", EXAMPLES_REQUEST)
        return final[1:6]

    @user_facing("composing the picture and the sound")
    def generate(self, image_prompt, audio_prompt, negative_prompt, steps, image_scale, audio_scale, warm_image,
                 warm_audio, seconds, samples, seed, vocoder, method, sds_iterations, colour_prompt,
                 request: gr.Request, colour_with: str | None = None, weights: str | None = None):
        """Yields (preview, …) while sampling, then the samples as files. `colour_with`: a colorizer from
        `colorization_paths` (None: the best available). `weights`: the tab's variant, or trained weights of this
        session's (None: the tab's)."""
        from pipelines.seeds import generators_for

        arguments = dict(
            image_prompt=require_prompt(image_prompt, "Image prompt"),
            audio_prompt=require_prompt(audio_prompt, "Audio prompt"),
            negative_prompt=require_prompt(negative_prompt, "Negative prompt", allow_empty=True),
            num_inference_steps=require_number(steps, "Steps", 1, 200, integer=True),
            image_guidance_scale=require_number(image_scale, "Image guidance", 0, 30),
            audio_guidance_scale=require_number(audio_scale, "Audio guidance", 0, 30),
            warm_start_image=require_number(warm_image, "Image model active for", 0, 1),
            warm_start_audio=require_number(warm_audio, "Audio model active for", 0, 1),
            latent_width=LATENT_BLOCK * round(require_number(seconds, "Length", SECONDS_PER_LATENT_BLOCK, MAX_SECONDS)
                                              / SECONDS_PER_LATENT_BLOCK),
            num_samples=require_number(samples, "Samples", 1, MAX_SAMPLES, integer=True),
            vocoder=vocoder,
        )
        generators, seed_used = generators_for(require_number(seed, "Seed", -1, 2**31 - 1, integer=True),
                                               arguments["num_samples"])
        pipe = get_pipeline(NAME, chosen_variant_for(NAME, weights, self.variant, request.session_hash))
        colour_prompt = require_prompt(colour_prompt, "Colorize prompt", allow_empty=True)
        if colour_prompt:
            colour_with = _require_colorizer(colour_with, self.variant)
        if method == SDS:
            arguments["iterations"] = require_number(sds_iterations, "SDS iterations", 1, MAX_SDS_ITERATIONS,
                                                     integer=True)
        work = {IMPRINT: _imprint, SDS: _score_distillation}.get(method, _sample)
        picture = PreviewFiles(self.context.files, request.session_hash)
        payload = yield from stream(lambda preview: work(pipe, arguments, generators, preview),
                                    lambda previews: (picture(to_uint8(previews[0])),) + (gr.skip(),) * 6, picture)
        saved, best = self._save(payload, seed_used, request, (arguments["image_prompt"], arguments["audio_prompt"]))
        if not colour_prompt:
            yield (None,) + saved + (None,)
            return
        yield (None,) + saved + (gr.skip(),)
        yield (gr.skip(),) * 7 + (COMPUTE.run(self._colorize, pipe, payload.spectrogram[best : best + 1],
                                              colour_prompt, colour_with, generators[best], request),)

    def _colorize(self, pipe, spectrogram, prompt: str, colorizer: str, generator, request: gr.Request) -> str:
        """The paper's IF colorizer (30 steps, guidance 10, restart at step 7) or the SD 1.5 one (30 steps)."""
        if colorizer == IF_COLORIZER:
            colour = get_pipeline("colorizer_if", self.variant)(spectrogram, prompt, generator=generator)[0]
        else:
            from pipelines.images_that_sound.colorization import colorize

            colour = colorize(pipe, spectrogram, prompt, generator=generator)[0]
        return str(save_png(colour, self.context.files.new_path(request.session_hash, "colorized", ".png")))

    def _save(self, output, seed_used: int, request: gr.Request, prompts: tuple[str, str]) -> tuple[tuple, int]:
        """Files for every sample, the gallery best-first with scores when the paper's scorers can be loaded;
        returns the outputs and the best sample's index."""
        session = request.session_hash
        scores, order = COMPUTE.run(self._scores, output, prompts)
        paths, images = [], []
        for index in order:
            png = self.context.files.new_path(session, f"image-that-sounds-{seed_used + index}", ".png")
            output.image[index].save(png)
            wav = save_wav(output.audio[index], output.sample_rate,
                           self.context.files.new_path(session, png.stem, ".wav"))
            caption = " · ".join([f"seed {seed_used + index}"] +
                                 [f"{name.upper()} {values[index]:.3f}" for name, values in scores.items()])
            images.append((str(png), caption))
            paths += [str(png), str(wav)]
        best = order[0]
        video = save_playhead_video(np.asarray(output.image[best]) / 255.0, output.audio[best], output.sample_rate,
                                    self.context.files.new_path(session, "image-that-sounds", ".mp4"))
        note = f"Seeds {seed_used}…{seed_used + len(images) - 1} (sample *i* uses seed + *i*)."
        if scores:
            note += f" Ranked best first by {' and '.join(name.upper() for name in scores)} (mean rank)."
        note += f" {SOUND_MADE_BY[output.vocoder]} made the sound."
        return (images, paths[1], str(video), note, paths + [str(video)]), best

    def _scores(self, output, prompts: tuple[str, str]) -> tuple[dict, list[int]]:
        """CLIP/CLAP scores of several samples and their order, best first (no scores: generation order)."""
        from pipelines.images_that_sound.ranking import rank

        scores = {}
        if len(output.audio) > 1 and available("clip_scorer", self.variant):
            scores["clip"] = get_pipeline("clip_scorer", self.variant)(prompts[0], output.spectrogram)
        if len(output.audio) > 1 and available("clap_scorer", self.variant):
            scores["clap"] = get_pipeline("clap_scorer", self.variant)(prompts[1], output.audio, output.sample_rate)
        return scores, (rank(scores).tolist() if scores else list(range(len(output.audio))))


def _imprint(pipe, arguments: dict, generators, preview) -> object:
    """The imprint baseline with the paper's step counts (image model 50, audio model 100 at the default 100),
    previews of the image model's sample forming, then the audio model's."""
    steps = arguments["num_inference_steps"]
    return pipe.imprint(
        arguments["image_prompt"], arguments["audio_prompt"], arguments["negative_prompt"],
        image_steps=max(1, steps // 2), audio_steps=steps, image_guidance_scale=arguments["image_guidance_scale"],
        audio_guidance_scale=arguments["audio_guidance_scale"], generator=generators,
        num_samples=arguments["num_samples"], latent_width=arguments["latent_width"], vocoder=arguments["vocoder"],
        callback_on_step_end=every_steps(preview, PREVIEW_EVERY),
    )


def _score_distillation(pipe, arguments: dict, generators, preview) -> object:
    """The SDS baseline: one picture, optimised for the chosen number of iterations, with about 20 previews."""
    from pipelines.images_that_sound.sds import score_distillation

    return score_distillation(
        pipe, arguments["image_prompt"], arguments["audio_prompt"], negative_prompt=arguments["negative_prompt"],
        iterations=arguments["iterations"], latent_width=arguments["latent_width"], generator=generators[0],
        vocoder=arguments["vocoder"], callback_on_step_end=every_steps(preview, max(1, arguments["iterations"] // 20)),
    )


def _sample(pipe, arguments: dict, generators, preview) -> object:
    """The paper's composed sampling, a preview of the spectrograms forming every PREVIEW_EVERY steps."""
    return pipe(**arguments, generator=generators, callback_on_step_end=every_steps(preview, PREVIEW_EVERY))


def _require_colorizer(choice: str | None, variant: str) -> str:
    """The chosen colorizer if it can run now (None: the best that can); otherwise a plain error saying why not."""
    paths, reason = colorization_paths(variant)
    if not paths:
        raise gr.Error(reason.replace("**", ""))
    if choice is None:
        return paths[0]
    if choice not in paths:
        raise gr.Error(f"{choice} cannot colorize now. {reason.replace('**', '')}")
    return choice
