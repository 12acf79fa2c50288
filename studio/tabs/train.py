"""Train: teach a generator the artist's own pictures, sounds or videos, and use the result in its tab.

Training runs as `python -m pipelines.train <generator> …` in a process of its own (`studio.training`): the loss
curve, the newest sample preview (a picture and its sound, `--preview-every`) and a status line stream in while it
runs, Stop ends it (its checkpoint stays), Resume continues it. A
finished run becomes a choice of weights in that generator's tab, under the artist's name, for this session
(`pipelines.registry.register_trained_weights`), and downloads as a zip. Runs live in the session's folder, so they
go when the session ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from pipelines.registry import available, register_trained_weights, trained_weights
from studio.compute import COMPUTE, get_pipeline
from studio.context import StudioContext
from studio.streaming import PreviewFiles
from studio.training import (
    IMAGE_SUFFIXES,
    RUNS,
    DataError,
    Preview,
    Run,
    RunBusy,
    latest_preview,
    plot_curve,
    progress,
    read_log,
    trainer_flags,
    unpack,
    write_captions,
)
from studio.validation import AUDIO_SUFFIXES, VIDEO_SUFFIXES, number_text, require_number, user_facing

log = logging.getLogger(__name__)

NAME = "train"
REQUIRES = ()  # needs no weights: it makes them
TITLE = "Train"
MODELS = ()
POLL_S = 1.5
MAX_NAME = 40
MAX_STEPS = 20_000
MAX_BATCH = 256
MAX_LORA_RANK = 64
LORA_GENERATORS = ("images_that_sound", "mm_diffusion")
PREVIEWS_PER_RUN = 4  # a preview every steps // 4 steps and one at the end: four or five a run, whatever its length
SCRATCH, STUDIO, PAPER = "scratch", "studio", "paper"
MY_FILES, TOY_WORLD = "My files", "The toy world (a demo, no files needed)"
QUICK, CAREFUL = "quick", "careful"


@dataclass(frozen=True)
class Preset:
    steps: int
    size: str
    batch: int


@dataclass(frozen=True)
class Trainable:
    """A generator the tab can train: how to call its trainer and where the result goes."""

    title: str
    entry: str  # the registry entry the result becomes a variant of
    sizes: tuple[str, ...]
    suffixes: tuple[str, ...]  # the files it learns from
    data_help: str
    stages: Callable[[int, bool], list[tuple[str, int]]]  # stage totals for (--steps, fine-tuning with --init)
    flags: Callable[[int, str, int], list[str]]  # (steps, size, batch) -> the trainer's own flags
    toy_flags: tuple[str, ...]  # with --data toyworld: how much toy data to draw
    presets: dict[tuple[str, bool], Preset]  # (preset, on a GPU) -> settings
    paper_start: bool = False  # whether `--init paper` means something for it


def _quarter(steps: int) -> int:
    return max(1, steps // 4)


TRAINABLES = {
    "images_that_sound": Trainable(
        "Images that Sound", "images_that_sound", ("tiny", "studio"), IMAGE_SUFFIXES + AUDIO_SUFFIXES + (".jsonl",),
        "pictures and/or sounds (png, jpg, wav, mp3, …), optionally with a captions.jsonl "
        '(`{"file": "bell.wav", "caption": "a bell ringing", "kind": "sound"}` per line)',
        lambda steps, fine_tune: ([] if fine_tune else [("vae", max(1, steps // 3))]) + [("unets", steps)],
        lambda steps, size, batch: ["--size", size, "--steps", str(steps), "--vae-steps", str(max(1, steps // 3)),
                                    "--batch-size", str(batch), "--vae-batch-size", str(max(2, batch // 2))],
        ("--pool", "256"),
        {(QUICK, False): Preset(40, "studio", 12), (CAREFUL, False): Preset(600, "studio", 32),
         (QUICK, True): Preset(1000, "studio", 64), (CAREFUL, True): Preset(5000, "studio", 64)},
        paper_start=True),
    "impact_sound": Trainable(
        "Impact Sound (diffusion)", "impact_diffusion", ("tiny", "studio", "paper"),
        VIDEO_SUFFIXES + AUDIO_SUFFIXES + (".jsonl",),
        'hit videos with a hits.jsonl (`{"video": "take.mp4", "time": 1.23, "material": "wood"}` per line)',
        lambda steps, fine_tune: [("residual", _quarter(steps)), ("visual", _quarter(steps)), ("diffusion", steps)],
        lambda steps, size, batch: ["--size", size, "--steps", str(steps), "--residual-steps", str(_quarter(steps)),
                                    "--visual-steps", str(_quarter(steps)), "--batch-size", str(batch),
                                    "--residual-batch-size", str(batch), "--visual-batch-size", str(batch)],
        ("--clips", "128"),
        {(QUICK, False): Preset(30, "studio", 8), (CAREFUL, False): Preset(1200, "studio", 16),
         (QUICK, True): Preset(1000, "studio", 16), (CAREFUL, True): Preset(5000, "paper", 16)}),
    "mm_diffusion": Trainable(
        "Sounding Video (MM-Diffusion)", "mm_diffusion_toyworld", ("tiny", "studio", "paper"), VIDEO_SUFFIXES,
        "videos with their sound (mp4, mov, …; several clips are cut from each long one)",
        lambda steps, fine_tune: [("train", steps)],
        lambda steps, size, batch: ["--size", size, "--steps", str(steps), "--batch-size", str(batch)],
        ("--pool", "64"),
        {(QUICK, False): Preset(20, "studio", 4), (CAREFUL, False): Preset(500, "studio", 8),
         (QUICK, True): Preset(1000, "studio", 16), (CAREFUL, True): Preset(5000, "paper", 4)}),
}


def on_space() -> bool:
    """Whether the studio runs on a Hugging Face Space (which sets SPACE_ID)."""
    return "SPACE_ID" in os.environ


def training_gpu(device: str, hardware: str) -> bool:
    """Whether a training subprocess gets a GPU: on a Space its hardware says (ZeroGPU lends one to requests, not to
    a separate process); elsewhere the studio's --device, or what torch finds."""
    if on_space():
        return not hardware.startswith(("cpu", "zero"))
    if device in ("cpu", "mps"):
        return False
    from pipelines.devices import choose_device

    return choose_device("auto") == "cuda"


def hardware_note(gpu: bool, hardware: str) -> str:
    """What this machine allows, in plain words."""
    if on_space() and not gpu:
        return (f"**This Space runs on a CPU ({hardware})**: only *quick* runs fit here (a few minutes, small "
                "models, a few dozen steps: enough to nudge a model towards your material, not to teach it much). "
                "Bigger runs need a GPU: duplicate this Space onto GPU hardware, or run `python -m pipelines.train` "
                "on a machine with one.")
    if gpu:
        return "**A GPU is available**: *quick* runs take minutes, *careful* runs longer and learn more."
    return ("**No GPU here**: training runs on the CPU. *Quick* takes a few minutes at the studio size; *careful* "
            "can take an hour or more. A GPU makes both much faster.")


def preset_for(generator: str, preset: str, gpu: bool) -> Preset:
    trainable = TRAINABLES.get(generator, TRAINABLES["images_that_sound"])
    return trainable.presets[(preset if preset in (QUICK, CAREFUL) else QUICK, gpu)]


def presets_allowed(cpu_space: bool) -> list[str]:
    return [QUICK] if cpu_space else [QUICK, CAREFUL]


def build(context: StudioContext) -> None:
    handlers = TrainHandlers(context)
    first = next(iter(TRAINABLES))
    cpu_quick = preset_for(first, QUICK, False)
    with gr.Tab("Train", id=NAME) as tab:
        gr.Markdown("Teach a generator your own pictures, sounds or videos. Pick one, give it your files (or a zip), "
                    "press **Start** and watch the loss fall; when it ends, your model is a choice of **Weights** in "
                    "that generator's tab, under the name you gave it, and downloads as a zip.")
        hardware = gr.Markdown(hardware_note(handlers.gpu, context.config.hardware) if on_space() else "",
                               elem_id="train-hardware")  # elsewhere said on opening (finding a GPU imports torch)
        with gr.Row():
            generator = gr.Dropdown([(t.title, key) for key, t in TRAINABLES.items()], value=first,
                                    label="Generator", elem_id="train-generator")
            start_from = gr.Dropdown([("Nothing: train from scratch", SCRATCH)], value=SCRATCH, label="Start from",
                                     elem_id="train-start-from",
                                     info="Existing weights to fine-tune; a folder you trained earlier counts too.")
        source = gr.Radio([MY_FILES, TOY_WORLD], value=MY_FILES, label="Learn from", elem_id="train-source")
        data_help = gr.Markdown(f"*Give it {TRAINABLES[first].data_help}.*", elem_id="train-data-help")
        uploads = gr.File(label="Your files or a zip of them", file_count="multiple", type="filepath",
                          elem_id="train-uploads")
        with gr.Row():
            caption = gr.Textbox(label="Caption (optional)", max_lines=1, elem_id="train-caption",
                                 placeholder="my field recordings",
                                 info="Images that Sound: every file's caption when no captions.jsonl comes with "
                                      "them; empty: each file's name.")
            name = gr.Textbox(label="Name of the result", max_lines=1, elem_id="train-name",
                              placeholder="field recordings", info="How it appears among the weights.")
            preset = gr.Radio(presets_allowed(handlers.cpu_space), value=QUICK, label="Preset", elem_id="train-preset",
                              info="Quick: minutes. Careful: more steps, bigger batches.")
        with gr.Accordion("Settings", open=False), gr.Row():
            steps = gr.Slider(1, MAX_STEPS, value=cpu_quick.steps, step=1, label="Steps", elem_id="train-steps")
            batch = gr.Slider(1, MAX_BATCH, value=cpu_quick.batch, step=1, label="Batch size", elem_id="train-batch")
            size = gr.Radio(list(TRAINABLES[first].sizes), value=cpu_quick.size, label="Model size",
                            elem_id="train-size", info="Starting from weights uses their size.")
            lora_rank = gr.Slider(0, MAX_LORA_RANK, value=0, step=1, label="LoRA rank", elem_id="train-lora",
                                  info="Images that Sound and Sounding Video from existing weights: a small "
                                       "adapter of this rank instead of changing every weight (0: full "
                                       "fine-tuning).")
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="train-start")
            stop = gr.Button("Stop", elem_id="train-stop")
            resume = gr.Button("Resume", elem_id="train-resume")
        status = gr.Markdown(elem_id="train-status")
        with gr.Row():
            curve = gr.Image(label="Loss", type="filepath", interactive=False, elem_id="train-curve")
            with gr.Column():
                preview_picture = gr.Image(label="Latest preview (a sample while it trains)", type="filepath",
                                           interactive=False, elem_id="train-preview")
                preview_sound = gr.Audio(label="Its sound", type="filepath", interactive=False,
                                         elem_id="train-preview-sound")
            sample = gr.Image(label="A sample from the result", type="filepath", interactive=False,
                              elem_id="train-sample")
        result = gr.File(label="The trained model (zip)", elem_id="train-result")
        filled = gr.State(False)

        tab.select(handlers.open_tab, [generator, preset, filled], [hardware, steps, batch, size, filled], queue=False)
        tab.select(handlers.starting_points, [generator, start_from], start_from)
        choice_inputs = [generator, preset]
        generator.change(handlers.choose_generator, choice_inputs, [start_from, data_help, steps, batch, size])
        preset.change(handlers.choose_preset, choice_inputs, [steps, batch, size], queue=False)
        outputs = [curve, status, result, sample, start_from, preview_picture, preview_sound]
        start.click(handlers.start,
                    [generator, start_from, source, uploads, caption, name, steps, batch, size, lora_rank],
                    outputs, concurrency_limit=4, concurrency_id="train-start")
        resume.click(handlers.resume, None, outputs, concurrency_limit=4, concurrency_id="train-start")
        stop.click(handlers.stop, None, status, queue=False)


class TrainHandlers:
    def __init__(self, context: StudioContext):
        self.context = context

    @property
    def gpu(self) -> bool:
        return training_gpu(self.context.config.device, self.context.config.hardware)

    @property
    def cpu_space(self) -> bool:
        """A Space without a GPU for training (known from its hardware; torch is not imported for it)."""
        return on_space() and not self.gpu

    def open_tab(self, generator, preset, filled):
        """On first opening: what the hardware allows, and the preset's settings for it."""
        note = hardware_note(self.gpu, self.context.config.hardware)
        if filled:
            return note, gr.skip(), gr.skip(), gr.skip(), True
        chosen = preset_for(generator, preset if preset in presets_allowed(self.cpu_space) else QUICK, self.gpu)
        return note, chosen.steps, chosen.batch, chosen.size, True

    def choose_preset(self, generator, preset):
        chosen = preset_for(generator, preset, self.gpu)
        return chosen.steps, chosen.batch, chosen.size

    @user_facing("reading what the trainer can do")
    def starting_points(self, generator, current, request: gr.Request):
        """The starting points for this generator now (the current one kept when it still is one)."""
        _trainable(generator)
        choices = start_choices(generator, request.session_hash)
        return gr.update(choices=choices, value=current if current in [v for _, v in choices] else SCRATCH)

    @user_facing("reading what the trainer can do")
    def choose_generator(self, generator, preset, request: gr.Request):
        trainable = _trainable(generator)
        chosen = preset_for(generator, preset, self.gpu)
        return (gr.update(choices=start_choices(generator, request.session_hash), value=SCRATCH),
                f"*Give it {trainable.data_help}.*", chosen.steps, chosen.batch,
                gr.update(choices=list(trainable.sizes), value=chosen.size))

    @user_facing("training")
    def start(self, generator, start_from, source, uploads, caption, name, steps, batch, size, lora_rank,
              request: gr.Request):
        """Check everything, start the trainer, then stream its progress until it ends."""
        session = request.session_hash
        self.context.files.claim(session, uploads)
        trainable = _trainable(generator)
        label = self._require_name(name, session)
        steps, batch = self._require_sizes(generator, steps, batch)
        size = self._require_size(trainable, start_from, size, session)
        init = self._init_flags(generator, start_from, session)
        init += lora_flags(generator, require_number(lora_rank, "LoRA rank", 0, MAX_LORA_RANK, integer=True), init)
        if not uploads and source != TOY_WORLD:
            raise gr.Error(f"There are no files to learn from: give {trainable.data_help} — or a zip of them — or "
                           "choose the toy world.")
        folder = self.context.files.new_path(session, "train", "")
        data, notes = self._data(generator, trainable, source, uploads, caption, folder / "data", bool(init))
        init += learning_models(generator, data, init)
        command = [sys.executable, "-m", "pipelines.train", generator, "--data", data, "--out", str(folder / "out"),
                   "--checkpoint-every", str(max(1, steps // 10)), *trainable.flags(steps, size, batch), *init,
                   *preview_flags(generator, steps)]
        if data == "toyworld":
            command += list(trainable.toy_flags)
        run = Run(session, generator, label, folder, command, trainable.stages(steps, bool(init)),
                  {"size": size, "caption": (caption or "").strip() or first_caption(data)})
        try:
            RUNS.add(run)
        except RunBusy as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise gr.Error(str(error)) from None
        yield from self._watch(run, notes)

    @user_facing("resuming the training")
    def resume(self, request: gr.Request):
        """Continue the session's last stopped (or failed) run from its latest checkpoint."""
        run = RUNS.latest(request.session_hash)
        if run is None or run.poll() in ("new", "finished"):
            raise gr.Error("There is no stopped run to resume: start one first.")
        if run.poll() == "running":
            raise gr.Error("The run is still going: there is nothing to resume.")
        try:
            RUNS.add(run, resume=True)
        except RunBusy as error:
            raise gr.Error(str(error)) from None
        yield from self._watch(run, ["Resumed from its latest checkpoint."])

    def stop(self, request: gr.Request) -> str:
        """End the session's run (the checkpoint stays)."""
        run = RUNS.stop(request.session_hash)
        if run is None:
            return "No run is going."
        return stopped_text(run)

    # Checks ----------------------------------------------------------------------------------------------------

    def _require_name(self, name, session: str) -> str:
        label = re.sub(r"\s+", " ", str(name or "")).strip()
        if not label:
            raise gr.Error("Give the result a name (e.g. 'field recordings'): it is how the weights appear in the "
                           "generator's tab.")
        if len(label) > MAX_NAME or not re.fullmatch(r"[\w .,'()+-]+", label):
            raise gr.Error(f"The name '{label[:60]}' is too long or has unusual characters: use at most {MAX_NAME} "
                           "letters, digits, spaces, dashes or dots.")
        if label.casefold() in used_names(session):
            raise gr.Error(f"The name '{label}' is already used in this session: choose another one.")
        return label

    def _require_sizes(self, generator: str, steps, batch) -> tuple[int, int]:
        """Steps and batch size; a CPU Space allows the quick preset's steps at most."""
        cpu_space = self.cpu_space
        most = preset_for(generator, QUICK, False).steps if cpu_space else MAX_STEPS
        steps = require_number(steps, "Steps (this CPU Space allows quick runs only)" if cpu_space else "Steps", 1,
                               most, integer=True)
        return steps, require_number(batch, "Batch size", 1, MAX_BATCH, integer=True)

    def _require_size(self, trainable: Trainable, start_from, size, session: str) -> str:
        """The model size: the starting weights' own when starting from weights."""
        if start_from in (STUDIO, PAPER):
            return start_from if start_from in trainable.sizes else "studio"
        earlier = _earlier_run(start_from, session)
        if earlier is not None:
            return earlier.settings.get("size", "studio")
        if size not in trainable.sizes:
            raise gr.Error(f"Choose a model size: {', '.join(trainable.sizes)}.")
        if size == "paper" and not self.gpu:
            raise gr.Error("The paper size needs a GPU; choose studio or tiny here.")
        return size

    def _init_flags(self, generator: str, start_from, session: str) -> list[str]:
        """`--init …` for the starting point, when the trainer can start from weights."""
        if start_from in (None, SCRATCH):
            return []
        if "--init" not in trainer_flags(generator):
            raise gr.Error("This studio's trainer can only train from scratch so far: choose 'Nothing'.")
        if start_from in (STUDIO, PAPER):
            if start_from not in [value for _, value in start_choices(generator, session)]:
                raise gr.Error(f"The {start_from} weights are not available here: choose another starting point.")
            return ["--init", start_from]
        earlier = _earlier_run(start_from, session)
        if earlier is None:
            raise gr.Error("That earlier run is gone (its session folder was cleared): choose another starting point.")
        return ["--init", str(earlier.out)]

    def _data(self, generator: str, trainable: Trainable, source, uploads, caption, folder: Path,
              fine_tune: bool) -> tuple[str, list]:
        """`--data` for the trainer ("toyworld" or the folder of the artist's files) and notes on the files."""
        if source == TOY_WORLD:
            return "toyworld", ["Learning from the toy world."]
        paths = [Path(getattr(upload, "name", upload)) for upload in uploads]
        try:
            placed, notes = unpack(paths, folder, trainable.suffixes)
        except DataError as error:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise gr.Error(str(error)) from None
        media = [path for path in placed if path.suffix.lower() != ".jsonl"]
        if not media:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise gr.Error(f"None of the files can be learnt from: give {trainable.data_help}.")
        root = data_root(folder)
        if generator == "impact_sound" and not (root / "hits.jsonl").is_file():
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise gr.Error("Impact Sound learns from hit videos listed in a hits.jsonl (one line per hit: video, "
                           "time, material): add one beside the videos.")
        if generator == "images_that_sound" and not (root / "captions.jsonl").is_file():
            if not fine_tune and not all(any(p.suffix.lower() in kind for p in media)
                                         for kind in (IMAGE_SUFFIXES, AUDIO_SUFFIXES)):
                shutil.rmtree(folder.parent, ignore_errors=True)
                raise gr.Error("Training Images that Sound from scratch needs pictures and sounds (its image model "
                               "learns from the one, its audio model from the other). With only one kind, start from "
                               "existing weights: then only the matching model learns.")
            write_captions(root, [p for p in media if p.is_relative_to(root)], (caption or "").strip())
        return str(root), notes + [f"{len(media)} file{'s' if len(media) != 1 else ''} to learn from."]

    # Watching --------------------------------------------------------------------------------------------------

    def _watch(self, run: Run, notes: list[str]):
        """Yield the loss curve, the newest sample preview and the status while the run goes; then its result, or
        why it stopped. Each update: (curve, status, zip, sample, start-from, preview picture, preview sound)."""
        pictures = PreviewFiles(self.context.files, run.session)
        shown, shown_preview, intro = -1, None, " ".join(notes)
        try:
            while run.poll() == "running":
                records = read_log(run.out / "loss_log.jsonl")
                picture = gr.skip()
                if len(records) != shown:
                    shown, picture = len(records), pictures(plot_curve(records, run.name))
                preview = latest_preview(run.out)
                self.context.files.folder(run.session)  # keeps the session's folder from ageing out meanwhile
                yield (picture, status_text(run, records, intro, preview), gr.skip(), gr.skip(), gr.skip(),
                       *preview_update(preview, shown_preview))
                shown_preview = preview
                time.sleep(POLL_S)
        finally:
            if run.poll() == "running":  # the page went away: no training goes on unseen
                run.stop()
            pictures.prune(1)
        records = read_log(run.out / "loss_log.jsonl")
        picture = pictures(plot_curve(records, run.name)) if records else gr.skip()
        pictures.prune(1)
        preview = preview_update(latest_preview(run.out), shown_preview)
        if run.poll() == "stopped":
            yield (picture, stopped_text(run), gr.skip(), gr.skip(), gr.skip(), *preview)
            return
        if run.poll() == "failed":
            raise gr.Error(f"The training stopped with an error: {run.error_line()}")
        yield (picture,) + self._finish(run, records) + preview

    def _finish(self, run: Run, records: list[dict]) -> tuple:
        """Register the result as weights, zip it, draw a sample -> (status, zip, sample, start-from update)."""
        trainable = TRAINABLES[run.generator]
        variant = register_trained_weights(trainable.entry, run.name, run.out, owner=run.session)
        run.settings["variant"] = variant
        archive = zip_result(run, self.context.files.new_path(run.session, _slug(run.name), ".zip"))
        done, _, losses = progress(records, run.stages)
        text = (f"**Finished** '{run.name}': {number_text(done)} steps in {_duration(run.elapsed())}"
                f"{_loss_text(losses)}. It is now a choice of **Weights** in the {trainable.title} tab (this "
                "session only), and downloads below.")
        try:
            picture, about = COMPUTE.run(draw_sample, run.generator, trainable.entry, variant,
                                         run.settings.get("caption"))
        except Exception:
            log.exception("drawing a sample from %s", run.out)
            picture, about = None, "No sample could be drawn here; try the model in its tab."
        text += f" {about}"
        sample = str(_save_sample(picture, self.context.files, run.session)) if picture is not None else None
        choices = start_choices(run.generator, run.session)
        return text, str(archive), sample, gr.update(choices=choices)


def first_caption(data: str) -> str:
    """The first caption of the data's captions.jsonl ("" for the toy world or without one): what to sample."""
    index = Path(data) / "captions.jsonl"
    if data == "toyworld" or not index.is_file():
        return ""
    for line in index.read_text(errors="replace").splitlines():
        try:
            return str(json.loads(line).get("caption", "")).strip()
        except (json.JSONDecodeError, AttributeError):
            continue
    return ""


def _trainable(generator) -> Trainable:
    if generator not in TRAINABLES:
        raise gr.Error(f"Choose what to train: {', '.join(t.title for t in TRAINABLES.values())}.")
    return TRAINABLES[generator]


def lora_flags(generator: str, rank: int, init: list[str]) -> list[str]:
    """`--lora-rank R` for a LoRA (rank > 0): Images that Sound and MM-Diffusion, from existing weights, where the
    trainer takes it."""
    if rank == 0:
        return []
    if generator not in LORA_GENERATORS or "--lora-rank" not in trainer_flags(generator):
        raise gr.Error(f"A LoRA trains here for {' and '.join(TRAINABLES[g].title for g in LORA_GENERATORS)} only; "
                       f"set the LoRA rank to 0 for {_trainable(generator).title}.")
    if not init:
        raise gr.Error("A LoRA adapts existing weights: choose a starting point (e.g. the studio's weights), or set "
                       "the LoRA rank to 0 to train from scratch.")
    return ["--lora-rank", str(rank)]


def preview_flags(generator: str, steps: int) -> list[str]:
    """`--preview-every N`: PREVIEWS_PER_RUN previews while the generating stage (`steps` long) trains, one at its
    end (where the trainer takes the flag)."""
    if "--preview-every" not in trainer_flags(generator):
        return []
    return ["--preview-every", str(max(1, steps // PREVIEWS_PER_RUN))]


def preview_update(preview: Preview | None, shown: Preview | None) -> tuple:
    """(picture, sound) updates for the newest preview: skipped while it is the one shown (or there is none)."""
    if preview is None or preview == shown:
        return gr.skip(), gr.skip()
    return (str(preview.picture) if preview.picture else None), (str(preview.sound) if preview.sound else None)


def learning_models(generator: str, data: str, init: list[str]) -> list[str]:
    """Images that Sound fine-tuned on pictures alone or sounds alone: `--models image|audio`, so only the model
    that has something to learn trains (where the trainer takes `--models`)."""
    if generator != "images_that_sound" or not init or data == "toyworld" or "--models" not in trainer_flags(generator):
        return []
    suffixes = {path.suffix.lower() for path in Path(data).rglob("*") if path.is_file()}
    kinds = [kind for kind, known in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES)) if suffixes & set(known)]
    return ["--models", ",".join(kinds)] if kinds else []


def start_choices(generator: str, session: str | None) -> list[tuple[str, str]]:
    """Where a run can start: from scratch, and, when the trainer takes `--init`, the studio's or the paper's
    weights (where they load here) and the session's own finished runs of this generator."""
    choices = [("Nothing: train from scratch", SCRATCH)]
    if "--init" not in trainer_flags(generator):
        return choices
    trainable = TRAINABLES[generator]
    if available(trainable.entry, STUDIO):
        choices.append(("The studio's weights", STUDIO))
    if trainable.paper_start and available(trainable.entry, PAPER):
        choices.append(("The paper's weights", PAPER))
    for run in RUNS.of(session or ""):
        if run.generator == generator and run.settings.get("variant"):
            choices.append((f"{run.name} (trained earlier)", run.settings["variant"]))
    return choices


def _earlier_run(variant, session: str) -> Run | None:
    return next((run for run in RUNS.of(session) if variant and run.settings.get("variant") == variant
                 and run.out.is_dir()), None)


def used_names(session: str) -> set[str]:
    """Names this session already gave: to its runs, and to weights it registered."""
    names = {run.name.casefold() for run in RUNS.of(session) if run.poll() != "failed"}
    for trainable in TRAINABLES.values():
        names.update(weights.label.casefold() for weights in trained_weights(trainable.entry, session)
                     if weights.owner == session)
    return names


def data_root(folder: Path) -> Path:
    """The folder the data is in: a zip of one folder unpacks into that folder."""
    entries = list(folder.iterdir())
    return data_root(entries[0]) if len(entries) == 1 and entries[0].is_dir() else folder


def status_text(run: Run, records: list[dict], intro: str = "", preview: Preview | None = None) -> str:
    done, total, losses = progress(records, run.stages)
    stage = f" ({records[-1]['stage']})" if records else ""
    line = (f"Step {number_text(done)} of {number_text(total)}{stage} · {_duration(run.elapsed())}"
            f"{_loss_text(losses)}" if records else f"Preparing the data and the model… {_duration(run.elapsed())}")
    if preview is not None:
        line += f" · preview from step {number_text(preview.step)} ({preview.stage})"
    return f"{line}\n\n{intro}" if intro else line


def stopped_text(run: Run) -> str:
    done, total, _ = progress(read_log(run.out / "loss_log.jsonl"), run.stages)
    return (f"**Stopped** at step {number_text(done)} of {number_text(total)}. Its latest checkpoint is kept: press "
            "**Resume** to continue from it.")


def _loss_text(losses: dict) -> str:
    if not losses:
        return ""
    keys = ["loss"] if "loss" in losses else list(losses)
    return " · " + ", ".join(f"{key.replace('_', ' ')} {float(losses[key]):.4g}" for key in keys)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _slug(name: str) -> str:
    return re.sub(r"[^\w-]+", "-", name).strip("-") or "trained"


def zip_result(run: Run, path: Path) -> Path:
    """The loadable folder as a zip (the checkpoints for resuming are left out)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(run.out.rglob("*")):
            relative = file.relative_to(run.out)
            if file.is_file() and relative.parts[0] != "checkpoints":
                archive.write(file, Path(_slug(run.name)) / relative)
    return path


def draw_sample(generator: str, entry: str, variant: str, caption: str | None):
    """A picture of what the trained model makes (a few sampling steps), and a note; (None, note) when the
    generator needs more than a prompt to sample."""
    from pipelines.seeds import generators_for

    if generator == "images_that_sound":
        pipe = get_pipeline(entry, variant)
        prompt = caption or "church bells"
        output = pipe(image_prompt=prompt, audio_prompt=prompt, num_inference_steps=10, latent_width=8,
                      generator=generators_for(0, 1)[0], vocoder="griffinlim")
        return output.image[0], f"The sample above: '{prompt}', 10 steps."
    if generator == "mm_diffusion":
        from studio.tabs.sounding_video import preview_grid

        pipe = get_pipeline(entry, variant)
        output = pipe(num_inference_steps=10, sampler="ddim", generator=generators_for(0, 1)[0])
        return preview_grid(output.video[0]), "The sample above: the frames of one clip, 10 DDIM steps."
    return None, "Try it on a video of hits in the Impact Sound tab."


def _save_sample(picture, files, session: str) -> Path:
    from pipelines.media import save_png

    return save_png(picture, files.new_path(session, "sample", ".png"))
