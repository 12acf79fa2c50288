"""Impact Sound: hear a hit's physics, edit it mode by mode or all at once, and score a silent video.

Start from a recorded hit (modes estimated with the paper's extractor or the refined one), a material preset, or a
modes JSON file. The modes fill an editable table; global edits (pitch, damping, brightness, low cut, band
removal) apply on top of it, and every edit plays the new sound at once (modal synthesis, no model). A silent
video gets one impact per detected (and editable) hit, muxed into an mp4: synthesised from the table, or rendered
by the paper's physics-driven diffusion model from the frames around each hit, with the physics retrieved from
its training clips (the paper's rule) or taken from the table; the model's spectrograms form live and Stop stops
it. The model's retrieved physics can also be pulled into the table to hear and edit.

Both generators come from the registry: "impact_sound" (the physics pipeline, no weights) and "impact_diffusion".
Their own input checks reach the artist as they are (`user_facing`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from pipelines.audio import SPECS
from pipelines.impact_sound.pipeline_physics import MATERIAL_CHOICES, MAX_MODES, MAX_SECONDS, MIN_SECONDS, GlobalEdits
from pipelines.media import VideoDecodeError, save_png, save_wav, to_uint8
from pipelines.registry import available, chosen_variant, describe
from studio.compute import get_pipeline
from studio.context import StudioContext
from studio.streaming import PreviewFiles, every_steps, stream
from studio.validation import (
    read_audio,
    require_file,
    require_mode_table,
    require_number,
    require_times,
    require_video,
    user_facing,
    video_read_error,
)
from studio.weights import chosen_variant_for, refresh

NAME = "impact_sound"
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
DIFFUSION = "impact_diffusion"
TITLE = "Impact Sound"
MODELS = (NAME, DIFFUSION)  # for About
REQUIRES = (NAME,)
SPEC = SPECS["impact"]
NYQUIST = SPEC.sample_rate / 2.0
COLUMNS = ["frequency (Hz)", "power (dB)", "decay (s)"]
MAX_REFERENCE_SECONDS = 10.0
MAX_VIDEO_SECONDS = 60.0
MAX_HITS = 240
MAX_MODES_FILE_MB = 5.0
MAX_SEED = 2**31 - 1
METHOD_CHOICES = [("Refined: a few clean modes with fitted decays", "refined"),
                  ("Paper: the published extractor (one mode per spectrogram bin)", "paper")]
EDIT_DEFAULTS = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # pitch, damping, brightness, low cut, band from, band to
SOUND_SOURCES = [("The modes above (modal synthesis)", "modes"),
                 ("Diffusion model, physics retrieved from the video (the paper)", "retrieved"),
                 ("Diffusion model, with the modes above as its physics", "diffusion_modes")]
PREVIEW_EVERY = 5  # diffusion steps between two pictures of the spectrograms forming
PREVIEW_CLIPS = 8  # hits shown forming side by side

INTRO = f"""
An impact sound is a sum of ringing **modes** (Su et al., CVPR 2023): each has a frequency, a starting power and a
decay time (how long it takes to fade by 60 dB). Estimate them from a recorded hit or start from a material, then
edit the table or the sliders: every change plays the new sound at once ({SPEC.sample_rate / 1000:g} kHz,
modal synthesis, no model). A silent video can also be scored by the paper's diffusion model, which hears each hit
from the frames around it.
"""


@dataclass
class SoundPanel:
    """Sections 1 and 2: where the modes come from, the global edits, and what the edited sound gives."""

    reference: gr.Audio
    method: gr.Radio
    estimate: gr.Button
    material: gr.Dropdown
    modes_file: gr.File
    edits: list[gr.Slider]  # length, pitch, damping, brightness, low cut, band from, band to
    reset: gr.Button
    sound: gr.Audio
    picture: gr.Image
    note: gr.Markdown
    table: gr.Dataframe
    downloads: gr.File


@dataclass
class VideoPanel:
    """Section 3: a silent video, its hits, how each hit sounds, and the scored video."""

    video: gr.Video
    sensitivity: gr.Slider
    find: gr.Button
    hits: gr.Textbox
    sound_source: gr.Radio
    weights: gr.Dropdown
    steps: gr.Slider
    seed: gr.Number
    retrieve: gr.Button
    score: gr.Button
    stop: gr.Button
    forming: gr.Image
    scored_video: gr.Video
    scored_audio: gr.Audio
    note: gr.Markdown


def build(context: StudioContext) -> None:
    settings = context.config.tab(NAME)
    handlers = ImpactHandlers(context, settings.variant)
    with gr.Tab("Impact Sound", id=NAME) as tab:
        gr.Markdown(INTRO)
        source = gr.State("")
        sound = sound_panel()
        gr.Markdown("### 3. Score a silent video")
        video = video_panel(handlers)
        tab.select(refresh(handlers.usual_weights, DIFFUSION), video.weights, video.weights, queue=False)
        then_render = wire_sound(handlers, sound, source, settings.concurrency_limit)
        wire_video(handlers, sound, video, source, then_render, settings.concurrency_limit)


# Layout -------------------------------------------------------------------------------------------------------------


def sound_panel() -> SoundPanel:
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown("### 1. Start from a sound")
            reference = gr.Audio(label="A reference hit: upload or record one knock, tap or clang", type="filepath",
                                 sources=["upload", "microphone"], elem_id="impact-reference")
            gr.Examples([[str(EXAMPLES / "glass-ring.wav")]], inputs=[reference], cache_examples=False,
                        label="Example: a struck glass (rings for about 4 s)")
            method = gr.Radio(METHOD_CHOICES, value="refined", label="How to find the modes")
            estimate = gr.Button("Estimate physics", variant="primary", elem_id="impact-estimate")
            material = gr.Dropdown(MATERIAL_CHOICES, value=None, elem_id="impact-material",
                                   label="…or start from a material (a struck plate)")
            modes_file = gr.File(label="…or load modes (JSON)", file_types=[".json"], type="filepath", height=120,
                                 elem_id="impact-modes-file")
            gr.Markdown("### 2. Shape it")
            edits, reset = edit_sliders()
        with gr.Column():
            sound = gr.Audio(label="The sound (plays after every edit)", type="filepath", autoplay=True,
                             interactive=False, elem_id="impact-sound")
            picture = gr.Image(label="Spectrogram and modes", type="filepath", format="png", interactive=False,
                               elem_id="impact-picture")
            note = gr.Markdown(elem_id="impact-note")
            table = gr.Dataframe(headers=COLUMNS, datatype=["number"] * 3, column_count=3, interactive=True,
                                 label="Modes, before the sliders: edit any number, add or delete rows",
                                 max_height=420, elem_id="impact-modes")
            downloads = gr.File(label="Downloads: the sound (wav) and its modes (JSON)", file_count="multiple",
                                elem_id="impact-downloads")
    return SoundPanel(reference, method, estimate, material, modes_file, edits, reset, sound, picture, note, table,
                      downloads)


def edit_sliders() -> tuple[list[gr.Slider], gr.Button]:
    """The length and the global edits (in `read_edits` order), and the button that resets the edits."""
    seconds = gr.Slider(MIN_SECONDS, MAX_SECONDS, value=MAX_SECONDS, step=0.05, label="Length of the sound (s)",
                        info="The paper's clips last 0.25 s; 2 s lets glass or a bell ring out.")
    pitch = gr.Slider(-24, 24, value=0, step=0.5, label="Pitch (semitones)",
                      info="+12 is an octave up: every mode's frequency doubles.")
    damping = gr.Slider(0.1, 5, value=1, step=0.05, label="Damping (× decay rate)",
                        info="Below 1 rings longer (metal-like), above 1 dies sooner (wood-like).")
    brightness = gr.Slider(-12, 12, value=0, step=0.5, label="Brightness (dB per octave)",
                           info="Tilts the powers around 1 kHz: positive is brighter, negative duller.")
    low_cut = gr.Slider(0, 5000, value=0, step=10, label="Remove modes below (Hz)")
    with gr.Row():
        band_low = gr.Slider(0, NYQUIST, value=0, step=10, label="Remove a band: from (Hz)")
        band_high = gr.Slider(0, NYQUIST, value=0, step=10, label="to (Hz)",
                              info="Off while 'to' is not above 'from'.")
    reset = gr.Button("Reset the sliders", size="sm")
    return [seconds, pitch, damping, brightness, low_cut, band_low, band_high], reset


def video_panel(handlers: ImpactHandlers) -> VideoPanel:
    with gr.Row(equal_height=False):
        with gr.Column():
            video = gr.Video(label="A silent video with hits in it", sources=["upload"], elem_id="impact-video")
            gr.Examples([[str(EXAMPLES / "glass-hit.mp4")]], inputs=[video], cache_examples=False,
                        label="Example: a toy glass falling to the floor")
            sensitivity = gr.Slider(0, 1, value=0.5, step=0.05, label="Hit detection sensitivity",
                                    info="Higher finds gentler hits (and more false ones).")
            find = gr.Button("Find the hits", elem_id="impact-find")
            hits = gr.Textbox(label="Hit times (s): one impact each; edit freely", lines=2,
                              placeholder="e.g. 0.5, 1.25, 3", elem_id="impact-hits")
            with gr.Group(visible=handlers.has_diffusion):
                sound_source = gr.Radio(SOUND_SOURCES, value="modes", label="Sound of each hit",
                                        elem_id="impact-sound-source")
                weights = gr.Dropdown(handlers.usual_weights, value=handlers.variant, label="Diffusion model weights",
                                      elem_id="impact-weights",
                                      info="Models you train in the Train tab appear here too.")
                with gr.Row():
                    steps = gr.Slider(10, 200, value=50, step=10, label="Diffusion steps",
                                      info="The paper samples all 1000; fewer is faster.")
                    seed = gr.Number(value=0, label="Seed", minimum=0, maximum=MAX_SEED,
                                     info="Hit i is sampled with seed + i.")
                gr.Markdown(handlers.diffusion_note)
                retrieve = gr.Button("Put the physics the model retrieves for the first hit in the table", size="sm",
                                     elem_id="impact-retrieve")
            with gr.Row():
                score = gr.Button("Make the soundtrack", variant="primary", elem_id="impact-score")
                stop = gr.Button("Stop", elem_id="impact-stop")
        with gr.Column():
            forming = gr.Image(label="The model's spectrograms forming (low frequencies at the bottom)",
                               interactive=False, visible=handlers.has_diffusion, elem_id="impact-forming")
            scored_video = gr.Video(label="The video with its impact soundtrack (mp4)", elem_id="impact-scored")
            scored_audio = gr.Audio(label="The soundtrack alone (wav)", type="filepath", interactive=False)
            note = gr.Markdown(elem_id="impact-video-note")
    return VideoPanel(video, sensitivity, find, hits, sound_source, weights, steps, seed, retrieve, score, stop, forming,
                      scored_video, scored_audio, note)


# Events -------------------------------------------------------------------------------------------------------------


def wire_sound(handlers: ImpactHandlers, panel: SoundPanel, source: gr.State,
               concurrency_limit: int) -> Callable[[Any], None]:
    """Every way to fill the table, then play it; every edit plays it again. Returns `then_render(event)`, which
    plays the table after another event that fills it."""
    render_inputs = [panel.table, source, *panel.edits]
    render_outputs = [panel.sound, panel.picture, panel.note, panel.downloads]
    options = {"concurrency_limit": concurrency_limit, "concurrency_id": f"{NAME}-edit"}

    def then_render(event) -> None:
        event.success(handlers.render, render_inputs, render_outputs, api_visibility="private", **options)

    then_render(panel.estimate.click(handlers.estimate, [panel.reference, panel.method], [panel.table, source],
                                     api_name="impact_estimate", **options))
    then_render(panel.material.input(handlers.load_preset, [panel.material], [panel.table, source],
                                     api_name="impact_preset", **options))
    then_render(panel.modes_file.upload(handlers.load_modes, [panel.modes_file], [panel.table, source],
                                        api_name="impact_load_modes", **options))
    gr.on([panel.table.input] + [slider.release for slider in panel.edits], handlers.render, render_inputs,
          render_outputs, api_name="impact_render", trigger_mode="always_last", **options)
    then_render(panel.reset.click(lambda: EDIT_DEFAULTS, None, panel.edits[1:], api_visibility="private"))
    return then_render


def wire_video(handlers: ImpactHandlers, sound: SoundPanel, panel: VideoPanel, source: gr.State,
               then_render: Callable[[Any], None], concurrency_limit: int) -> None:
    """Hit detection, the soundtrack (Stop cancels it), and the retrieved physics into the table."""
    options = {"concurrency_limit": concurrency_limit, "concurrency_id": f"{NAME}-video"}
    panel.find.click(handlers.find_hits, [panel.video, panel.sensitivity], [panel.hits, panel.note],
                     api_name="impact_find_hits", **options)
    scoring = panel.score.click(
        handlers.score_video, [panel.video, panel.hits, sound.table, *sound.edits, panel.sound_source, panel.steps,
                               panel.seed, panel.weights],
        [panel.forming, panel.scored_video, panel.scored_audio, panel.note], api_name="impact_soundtrack", **options)
    panel.stop.click(None, None, None, cancels=[scoring])
    then_render(panel.retrieve.click(handlers.retrieve_physics, [panel.video, panel.hits, panel.weights],
                                     [sound.table, source],
                                     api_name="impact_retrieve_physics", **options))


# Handlers -----------------------------------------------------------------------------------------------------------


class ImpactHandlers:
    """The tab's event handlers (plain methods, so tests can call them without a browser)."""

    def __init__(self, context: StudioContext, variant: str):
        self.context, self.variant = context, variant

    @property
    def pipe(self):
        return get_pipeline(NAME, self.variant)

    @property
    def has_diffusion(self) -> bool:
        return available(DIFFUSION, self.variant)

    @property
    def diffusion_note(self) -> str:
        return f"Diffusion model: {describe(DIFFUSION, self.variant)}"

    @property
    def usual_weights(self) -> list[tuple[str, str]]:
        """The weights dropdown's first choice: the tab's own weights."""
        return [(f"{chosen_variant(DIFFUSION, self.variant) or self.variant} weights", self.variant)]

    def diffusion(self, weights: str | None = None, session: str | None = None):
        """The diffusion model: the tab's weights, or `weights` this session trained."""
        if not self.has_diffusion:
            raise gr.Error(f"The diffusion model is not available here ({describe(DIFFUSION, self.variant)}). "
                           "Use the modes above instead.")
        return get_pipeline(DIFFUSION, chosen_variant_for(DIFFUSION, weights, self.variant, session))

    @user_facing("estimating the physics")
    def estimate(self, path, method, request: gr.Request = None) -> tuple[pd.DataFrame, str]:
        """Modes of a recorded hit -> (the mode table, a note on where they came from)."""
        self.context.files.claim(getattr(request, "session_hash", None), path)
        loaded = read_audio(path, SPEC, max_mb=self.context.config.max_upload_mb, max_seconds=MAX_REFERENCE_SECONDS,
                            label="reference hit")
        estimate = self.pipe.estimate(loaded.samples, loaded.sample_rate, method)
        notes = loaded.notes + estimate.notes
        return modes_table(estimate.modes), " ".join([f"{len(estimate.modes)} modes estimated ({method})."] + notes)

    @user_facing("loading the material")
    def load_preset(self, material) -> tuple[pd.DataFrame, str]:
        modes = self.pipe.preset(material)
        name = {key: label for label, key in MATERIAL_CHOICES}[material].lower()
        return modes_table(modes), f"{len(modes)} modes of a struck {name} plate (20 × 15 cm, 5 mm)."

    @user_facing("loading the modes file")
    def load_modes(self, path, request: gr.Request = None) -> tuple[pd.DataFrame, str]:
        self.context.files.claim(getattr(request, "session_hash", None), path)
        path = require_file(path, "modes", suffixes=(".json",), max_mb=MAX_MODES_FILE_MB)
        modes = self.pipe.load_modes(path)
        if not len(modes):
            raise gr.Error(f"'{path.name}' holds no audible modes.")
        if len(modes) > MAX_MODES:
            raise gr.Error(f"'{path.name}' holds {len(modes)} modes; the table holds at most {MAX_MODES}.")
        return modes_table(modes), f"{len(modes)} modes loaded from {path.name}."

    @user_facing("playing the edit")
    def render(self, table, source, seconds, pitch, damping, brightness, low_cut, band_low, band_high,
               request: gr.Request) -> tuple[str, str, str, list[str]]:
        """The edited sound: (wav, picture png, note, [wav, modes json])."""
        seconds = require_seconds(seconds)
        edits = read_edits(pitch, damping, brightness, low_cut, band_low, band_high)
        pipe = self.pipe
        base = pipe.modes(*require_mode_table(table, nyquist=NYQUIST, max_rows=MAX_MODES))
        modes = pipe.edit(base, edits)
        audio = pipe.synthesize(modes, float(seconds))
        files, session = self.context.files, request.session_hash
        wav = save_wav(audio, SPEC.sample_rate, files.new_path(session, "impact", ".wav"))
        png = save_png(pipe.picture(audio, modes) / 255.0, files.new_path(session, "impact-modes", ".png"))
        json = modes.save(files.new_path(session, "impact-modes", ".json"))
        return str(wav), str(png), render_note(source, base, modes, edits, float(seconds)), [str(wav), str(json)]

    @user_facing("finding the hits")
    def find_hits(self, video, sensitivity, request: gr.Request = None) -> tuple[str, str]:
        """Hit times in a silent video -> (the times as editable text, a note)."""
        self.context.files.claim(getattr(request, "session_hash", None), video)
        path = self.video_upload(video)
        with readable_video(path):
            found = self.pipe.detect_hits(path, max_seconds=MAX_VIDEO_SECONDS,
                                          sensitivity=require_number(sensitivity, "Hit detection sensitivity", 0, 1))
        times = found.times[:MAX_HITS]
        words = f"{len(times)} hit{'s' if len(times) != 1 else ''} found in {found.seconds:.2f} s of video " \
                f"({found.fps:g} frames per second)."
        if not len(times):
            words += " Raise the sensitivity, or type the times in yourself."
        return ", ".join(f"{t:.3f}" for t in times), " ".join([words] + found.notes)

    @user_facing("making the soundtrack")
    def score_video(self, video, hit_text, table, seconds, pitch, damping, brightness, low_cut, band_low, band_high,
                    sound_source="modes", steps=50, seed=0, request: gr.Request = None,
                    weights: str | None = None) -> Iterator[tuple]:
        """One impact per hit, muxed into the video. Yields (spectrograms forming, mp4, soundtrack wav, note): the
        pictures while the diffusion model samples, then the files. The impacts come from the table (modal
        synthesis) or from the diffusion model (physics retrieved, or the table's)."""
        self.context.files.claim(getattr(request, "session_hash", None), video)
        path = self.video_upload(video)
        seconds = require_seconds(seconds)
        if sound_source not in dict((value, label) for label, value in SOUND_SOURCES):
            raise gr.Error(f"Unknown sound source {sound_source!r}: pick one from the list.")
        pipe = self.pipe
        modes = None  # physics retrieved from the video: the table is not used (and may be empty)
        if sound_source != "retrieved":
            edits = read_edits(pitch, damping, brightness, low_cut, band_low, band_high)
            modes = pipe.edit(pipe.modes(*require_mode_table(table, nyquist=NYQUIST, max_rows=MAX_MODES)), edits)
        length, full_length, times = self.video_hits(path, hit_text)
        with readable_video(path):
            if sound_source == "modes":
                soundtrack, words = pipe.soundtrack(times, pipe.synthesize(modes, float(seconds)), length), ""
            else:
                soundtrack, words = yield from self.diffusion_soundtrack(path, times, length, modes, steps, seed,
                                                                          request, weights)
            files, session = self.context.files, request.session_hash
            wav = save_wav(soundtrack, SPEC.sample_rate, files.new_path(session, "soundtrack", ".wav"))
            mp4 = pipe.mux(path, soundtrack, files.new_path(session, "soundtrack", ".mp4"))
        note = f"{len(times)} impacts in {length:.2f} s of video.{words}"
        if length < full_length:
            note += f" Only the first {MAX_VIDEO_SECONDS:g} s were scored."
        yield gr.skip(), str(mp4), str(wav), note

    def video_upload(self, video) -> Path:
        return require_video(video, max_mb=self.context.config.max_upload_mb)

    def video_hits(self, path: Path, hit_text) -> tuple[float, float, list[float]]:
        """(seconds scored, the video's length, the checked hit times) of an uploaded video."""
        with readable_video(path):
            full_length = self.pipe.video_seconds(path)
        length = min(full_length, MAX_VIDEO_SECONDS)
        times = require_times(hit_text, "hit times", maximum=length, max_count=MAX_HITS)
        if not times:
            raise gr.Error("There are no hit times: click 'Find the hits' or type times in seconds, like 0.5, 1.2.")
        return length, full_length, times

    def diffusion_soundtrack(self, path: Path, times: list[float], length: float, modes, steps,
                             seed, request: gr.Request | None = None,
                             weights: str | None = None) -> Generator[tuple, None, tuple[np.ndarray, str]]:
        """Stream the diffusion model's impacts forming; returns (them placed at the hits, a sentence on where their
        physics came from). Stop closes the stream, which ends the sampling at its next preview."""
        from pipelines.seeds import generators_for

        model = self.diffusion(weights, getattr(request, "session_hash", None))
        steps = require_number(steps, "Diffusion steps", 1, 200, integer=True)
        generators, _ = generators_for(require_number(seed, "Seed", 0, MAX_SEED, integer=True), len(times))

        def work(preview):
            return model.render_video(path, times, duration_s=length, modes=modes, num_inference_steps=steps,
                                      generator=generators, callback_on_step_end=every_steps(preview, PREVIEW_EVERY))

        picture = PreviewFiles(self.context.files, getattr(request, "session_hash", None))
        out = yield from stream(work, lambda pictures: (picture(forming_picture(pictures)), gr.skip(), gr.skip(),
                                                        "Sampling the impacts…"), picture)
        if out.retrieved is None:
            return out.soundtrack, f" Diffusion model ({steps} steps), with the table's modes as its physics."
        labels = model.bank.labels
        found = sorted({labels[i] for i in out.retrieved}) if labels else []
        materials = f": physics retrieved from training clips of {', '.join(found)}" if found else ""
        return out.soundtrack, f" Diffusion model ({steps} steps){materials}."

    @user_facing("retrieving the physics")
    def retrieve_physics(self, video, hit_text, weights: str | None = None,
                         request: gr.Request = None) -> tuple[pd.DataFrame, str]:
        """The physics the diffusion model retrieves for the first hit -> (the mode table, a note)."""
        self.context.files.claim(getattr(request, "session_hash", None), video)
        path = self.video_upload(video)
        model = self.diffusion(weights, getattr(request, "session_hash", None))
        _, _, times = self.video_hits(path, hit_text)
        with readable_video(path):
            entry = model.retrieve_video(path, times[:1])[0]
        modes = self.pipe.modes(entry.modes.frequencies, entry.modes.powers, entry.modes.decays)
        kind = f" (a {entry.label} clip)" if entry.label else ""
        return modes_table(modes), (f"{len(modes)} modes of training clip {entry.index}{kind}, retrieved for the hit "
                                    f"at {times[0]:.2f} s by its look.")


@contextmanager
def readable_video(path: Path) -> Iterator[None]:
    """A decoder's failure on the uploaded video as a message naming the file."""
    try:
        yield
    except VideoDecodeError as error:
        raise video_read_error(path, error) from None


def forming_picture(pictures: np.ndarray) -> np.ndarray:
    """The first PREVIEW_CLIPS spectrogram pictures [N, rows, frames] in [0, 1] side by side, 2-pixel gaps, uint8."""
    shown = list(pictures[:PREVIEW_CLIPS])
    gap = np.ones((shown[0].shape[0], 2), dtype=np.float32)
    return to_uint8(np.concatenate([part for picture in shown for part in (picture, gap)][:-1], axis=1))


def modes_table(modes) -> pd.DataFrame:
    """The mode table as shown: one row per mode, rounded to 0.01 Hz, 0.01 dB and 0.1 ms."""
    return pd.DataFrame({COLUMNS[0]: modes.frequencies.round(2), COLUMNS[1]: modes.powers.round(2),
                         COLUMNS[2]: modes.decays.round(4)})


def require_seconds(seconds) -> float:
    """The length of one impact, checked (never clamped): a plain message outside MIN_SECONDS…MAX_SECONDS."""
    return require_number(seconds, "Length of the sound (s)", MIN_SECONDS, MAX_SECONDS)


def read_edits(pitch, damping, brightness, low_cut, band_low, band_high) -> GlobalEdits:
    """Checked slider values as GlobalEdits (the band is off while its upper edge is not above its lower one)."""
    band_low = require_number(band_low, "Band 'from'", 0.0, NYQUIST)
    band_high = require_number(band_high, "Band 'to'", 0.0, NYQUIST)
    return GlobalEdits(
        pitch_semitones=require_number(pitch, "Pitch", -48.0, 48.0),
        damping=require_number(damping, "Damping", 0.01, 100.0),
        brightness_db_per_octave=require_number(brightness, "Brightness", -48.0, 48.0),
        low_cut_hz=require_number(low_cut, "Low cut", 0.0, NYQUIST),
        band_hz=(band_low, band_high) if band_high > band_low else None,
    )


def render_note(source: str, base, modes, edits: GlobalEdits, seconds: float) -> str:
    words = [source] if source else []
    words.append(f"Playing {len(modes)} of {len(base)} modes for {seconds:g} s at {SPEC.sample_rate} Hz.")
    if edits.describe():
        words.append("Edits: " + ", ".join(edits.describe()) + ".")
    if not len(modes):
        words.append("Every mode was removed by the edits, so the sound is silent.")
    return " ".join(words)
