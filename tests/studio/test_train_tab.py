"""The Train tab: its handlers start a real tiny trainer (`python -m pipelines.train …`), stream its loss curve, stop
and resume it, and turn the result into a weights choice of the generator's tab; every bad input gets a plain
message. Also `studio.training`'s pieces: process groups, zips, the loss log being written."""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from pipelines.registry import forget_trained_weights, register_trained_weights, trained_weights
from studio.config import StudioConfig
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import train
from studio.tabs.train import MY_FILES, SCRATCH, STUDIO, TOY_WORLD, TrainHandlers, start_choices
from studio.training import (
    RUNS,
    DataError,
    Run,
    discard_unfinished_checkpoints,
    progress,
    read_log,
    trainer_flags,
    unpack,
)
from studio.weights import refresh
from tests.factories import EXAMPLES, FakeRequest


@pytest.fixture
def handlers(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "POLL_S", 0.2)
    # The trainers inherit it: a tiny model runs best on one thread, and two threads on a busy machine wait for each
    # other at every operation (measured 8.5 s a step instead of a fraction of one while another job trained).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield TrainHandlers(StudioContext(StudioConfig(device="cpu"), SessionFiles(tmp_path / "sessions")))
    for session in ("train-a", "train-b", "train-c", "train-d"):
        RUNS.end(session)
        forget_trained_weights(session)


def tiny(handlers, session: str, name: str, steps: int, uploads=None, source=MY_FILES, generator="images_that_sound"):
    """Start a tiny run of Images that Sound on a picture and a sound (the handler's generator of updates)."""
    files = [str(EXAMPLES / "rings.png"), str(EXAMPLES / "chirp.wav")] if uploads is None else uploads
    return handlers.start(generator, SCRATCH, source, files, "", name, steps, 2, "tiny", 0, FakeRequest(session))


def until(updates, predicate):
    """Read updates until one satisfies `predicate`; returns it."""
    for update in updates:
        if predicate(update):
            return update
    raise AssertionError("the run ended before that update came")


def test_a_tiny_run_streams_its_loss_stops_resumes_and_becomes_a_weights_choice_of_its_tab(handlers):
    updates = tiny(handlers, "train-a", "rings and chirps", 60)  # 20 VAE + 60 UNet steps, a checkpoint every 6
    until(updates, lambda update: "(unets)" in update[1] and steps_done(update[1]) > 20 + 6)  # a UNet checkpoint
    run = RUNS.latest("train-a")
    assert "**Stopped**" in handlers.stop(FakeRequest("train-a"))
    assert run.process.poll() is not None and not _group_alive(run.process.pid)
    assert list(run.out.glob("checkpoints/*/step-*"))
    assert "**Stopped**" in next(updates)[1] and next(updates, None) is None

    resumed = list(handlers.resume(FakeRequest("train-a")))
    assert "resumed from" in run.log.read_text()  # the trainer's own words: it continued from its checkpoint
    assert any(update[1].startswith("Step ") and " of 80 " in update[1] for update in resumed)
    curve, status, archive, sample, start_from, *_ = resumed[-1]
    assert status.startswith("**Finished** 'rings and chirps'") and Path(curve).is_file() and Path(sample).is_file()
    assert "--preview-every 15" in " ".join(run.command)  # a quarter of the UNet steps
    preview, preview_sound = [update[5:] for update in resumed if update[5] != gr.skip()][-1]  # each sent once
    assert Path(preview).name == "step-000060.png" and Path(preview_sound).name == "step-000060.wav"  # the last one
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
    assert "rings-and-chirps/audio_model/unet/config.json" in names and not any("/checkpoints/" in n for n in names)

    [weights] = trained_weights("images_that_sound", "train-a")
    assert weights.label == "rings and chirps" and trained_weights("images_that_sound", "train-b") == []
    shown = refresh([("studio weights", "studio")], "images_that_sound")(None, FakeRequest("train-a"))
    assert ("rings and chirps (trained here)", weights.variant) in shown["choices"]
    if "--init" in trainer_flags("images_that_sound"):  # a finished run is a starting point for the next one
        assert weights.variant in [value for _, value in start_from["choices"]]


def steps_done(status: str) -> int:
    match = re.match(r"Step (\d+) of", status)
    return int(match.group(1)) if match else 0


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_stop_ends_every_process_the_trainer_started(tmp_path):
    """A trainer's own workers (a data loader, accelerate's launcher) go too: Stop signals the process group."""
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); " \
            "time.sleep(120)"
    run = Run("train-c", "images_that_sound", "sleeper", tmp_path / "sleeper", [sys.executable, "-c", child],
              [("unets", 1)])
    RUNS.add(run)
    with pytest.raises(Exception, match="already going in this session"):
        RUNS.add(Run("train-c", "images_that_sound", "second", run.folder, [sys.executable, "-c", "pass"], []))
    RUNS.stop("train-c")
    assert run.poll() == "stopped" and not _group_alive(run.process.pid)
    RUNS.end("train-c")


@pytest.mark.parametrize("name, uploads, source, message", [
    ("x", [], MY_FILES, "There are no files to learn from"),
    ("  ", None, MY_FILES, "Give the result a name"),
    ("a/b", None, MY_FILES, "unusual characters"),
    ("x", ["notes.txt"], MY_FILES, "'notes.txt' cannot be used here"),
    ("x", [str(EXAMPLES / "chirp.wav")], MY_FILES, "from scratch needs pictures and sounds"),
])
def test_bad_inputs_get_plain_messages(handlers, tmp_path, name, uploads, source, message):
    if uploads == ["notes.txt"]:
        (tmp_path / "notes.txt").write_text("hello")
        uploads = [str(tmp_path / "notes.txt")]
    with pytest.raises(gr.Error, match=message):
        next(tiny(handlers, "train-d", name, 2, uploads, source))


def test_a_name_already_used_and_a_run_already_going_are_refused(handlers, tmp_path):
    folder = tmp_path / "earlier"
    folder.mkdir()
    register_trained_weights("images_that_sound", "Bells", folder, owner="train-d")
    with pytest.raises(gr.Error, match="'bells' is already used"):
        next(tiny(handlers, "train-d", "bells", 2))
    RUNS.add(Run("train-d", "images_that_sound", "busy", tmp_path / "busy", [sys.executable, "-c",
                                                                             "import time; time.sleep(120)"], []))
    with pytest.raises(gr.Error, match="already going"):
        next(tiny(handlers, "train-d", "another", 2))
    with pytest.raises(gr.Error, match="no stopped run to resume|still going"):
        next(handlers.resume(FakeRequest("train-d")))


def test_impact_sound_needs_its_hits_file_and_starting_points_follow_the_trainer(handlers):
    with pytest.raises(gr.Error, match="hits.jsonl"):
        next(tiny(handlers, "train-d", "hits", 2, [str(EXAMPLES / "glass-hit.mp4")], generator="impact_sound"))
    values = [value for _, value in start_choices("images_that_sound", "train-d")]
    assert (STUDIO in values) == ("--init" in trainer_flags("images_that_sound"))  # --init only where it exists
    if "--init" not in trainer_flags("images_that_sound"):
        with pytest.raises(gr.Error, match="only train from scratch"):
            next(handlers.start("images_that_sound", STUDIO, TOY_WORLD, None, "", "x", 2, 2, "tiny", 0,
                                FakeRequest("train-d")))


def test_zips_are_unpacked_and_files_of_other_kinds_left_out_with_a_note(tmp_path):
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(EXAMPLES / "chirp.wav", "sounds/chirp.wav")
        bundle.writestr("sounds/readme.txt", "hello")
        bundle.writestr("../escape.wav", "x")
        bundle.writestr("__MACOSX/sounds/._chirp.wav", "x")
    placed, notes = unpack([archive], tmp_path / "data", (".wav",))
    assert [p.relative_to(tmp_path / "data").as_posix() for p in placed] == ["sounds/chirp.wav"]
    assert not (tmp_path / "escape.wav").exists()
    assert notes == ["Left out of mine.zip: 'readme.txt' (not wav)."]
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="could not be opened as a zip"):
        unpack([tmp_path / "broken.zip"], tmp_path / "data", (".wav",))


def test_the_loss_log_is_read_while_it_is_written(tmp_path):
    log = tmp_path / "loss_log.jsonl"
    log.write_text(json.dumps({"stage": "vae", "step": 2, "loss": 0.5}) + "\n"
                   + json.dumps({"stage": "unets", "step": 1, "image_loss": 0.9}) + "\n"
                   + json.dumps({"stage": "unets", "step": 1, "preview": ["previews/step-000001.png"]})
                   + '\n{"stage": "un')
    records = read_log(log)  # the losses: previews are `latest_preview`'s
    assert [r["stage"] for r in records] == ["vae", "unets"]
    assert progress(records, [("vae", 2), ("unets", 5)]) == (3, 7, {"image_loss": 0.9})


def test_the_trainer_flags_come_from_its_help():
    flags = trainer_flags("images_that_sound")
    assert {"--data", "--out", "--resume", "--checkpoint-every", "--steps", "--vae-steps", "--size"} <= flags
    assert "--frames" not in flags  # another trainer's


def test_generator_tabs_offer_and_load_only_their_sessions_trained_weights(tmp_path):
    from studio.tabs.sounding_video import STUDIO_WEIGHTS, SoundingVideoHandlers, default_sampler
    from studio.weights import chosen_variant_for
    from tests.factories import tiny_mm_diffusion

    tiny_mm_diffusion().save_pretrained(tmp_path / "bounces")
    variant = register_trained_weights(STUDIO_WEIGHTS, "bounces", tmp_path / "bounces", owner="train-d")
    try:
        handlers = SoundingVideoHandlers(StudioContext(StudioConfig(), SessionFiles(tmp_path / "s")), "auto")
        assert handlers.model(variant, "train-d") == (STUDIO_WEIGHTS, variant)
        assert handlers.model(STUDIO_WEIGHTS, "train-d") == (STUDIO_WEIGHTS, "auto")
        assert "2000 Hz" in handlers.describe_weights(variant, FakeRequest("train-d"))  # the trained clip format
        assert default_sampler(variant) == "DDPM"  # a small model, as the studio one
        with pytest.raises(gr.Error, match="not here any more"):
            handlers.model(variant, "train-b")
        assert chosen_variant_for("images_that_sound", None, "studio", "train-d") == "studio"
    finally:
        forget_trained_weights("train-d")


def test_a_cpu_space_says_what_it_allows_and_keeps_to_quick_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/synesthesia")
    handlers = TrainHandlers(StudioContext(StudioConfig(hardware="cpu-basic"), SessionFiles(tmp_path)))
    note, steps, *_ = handlers.open_tab("images_that_sound", "careful", False)
    assert "This Space runs on a CPU (cpu-basic)" in note and "need a GPU" in note and steps == 40
    assert train.presets_allowed(handlers.cpu_space) == ["quick"]
    with pytest.raises(gr.Error, match="quick runs only"):
        next(handlers.start("images_that_sound", SCRATCH, TOY_WORLD, None, "", "long", 41, 2, "tiny", 0,
                            FakeRequest("train-d")))


def test_a_checkpoint_cut_short_by_stop_is_not_resumed_from(tmp_path):
    """The trainer logs step N, then saves checkpoint N: one without a later logged step may be half written."""
    for stage, steps in (("vae", (18, 20)), ("unets", (6, 12))):
        for step in steps:
            (tmp_path / "checkpoints" / stage / f"step-{step}").mkdir(parents=True)
    (tmp_path / "checkpoints" / "vae" / "DONE").write_text("20")
    (tmp_path / "loss_log.jsonl").write_text("".join(json.dumps({"stage": stage, "step": step, "loss": 1.0}) + "\n"
                                                     for stage, last in (("vae", 20), ("unets", 12))
                                                     for step in range(1, last + 1)))
    for step in (6, 12):
        (tmp_path / "checkpoints" / "unets" / f"step-{step}" / "model.safetensors").write_bytes(b"")
    assert discard_unfinished_checkpoints(tmp_path) == [tmp_path / "checkpoints" / "unets" / "step-12"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*/step-*")) == ["step-18", "step-20", "step-6"]

    (tmp_path / "checkpoints" / "unets" / "step-12").mkdir()  # saved whole, then Stop cut short removing step-6
    (tmp_path / "checkpoints" / "unets" / "step-12" / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / "unets" / "step-6" / "model.safetensors").unlink()
    assert discard_unfinished_checkpoints(tmp_path) == [tmp_path / "checkpoints" / "unets" / "step-6"]


def test_a_lora_is_asked_for_only_where_it_can_train(handlers):
    with pytest.raises(gr.Error, match="adapts existing weights"):
        next(handlers.start("images_that_sound", SCRATCH, TOY_WORLD, None, "", "x", 2, 2, "tiny", 4,
                            FakeRequest("train-d")))
    with pytest.raises(gr.Error, match="adapts existing weights"):
        next(handlers.start("mm_diffusion", SCRATCH, TOY_WORLD, None, "", "x", 2, 2, "tiny", 4,
                            FakeRequest("train-d")))
    with pytest.raises(gr.Error, match="Images that Sound and Sounding Video .* only"):
        next(handlers.start("impact_sound", SCRATCH, TOY_WORLD, None, "", "x", 2, 2, "tiny", 4,
                            FakeRequest("train-d")))
    if "--lora-rank" in trainer_flags("images_that_sound"):
        assert train.lora_flags("images_that_sound", 4, ["--init", "studio"]) == ["--lora-rank", "4"]
    assert train.lora_flags("mm_diffusion", 0, []) == []
    assert train.lora_flags("mm_diffusion", 2, ["--init", "studio"]) == ["--lora-rank", "2"]


def test_the_polling_handler_shows_the_newest_preview_and_says_its_step(handlers, tmp_path):
    """The trainer logs each preview after writing its files; the handler shows the newest whole one, once."""
    run = Run("train-c", "mm_diffusion", "previews", tmp_path / "run", [sys.executable, "-c",
                                                                        "import time; time.sleep(120)"], [("train", 4)])
    RUNS.add(run)
    updates = handlers._watch(run, [])
    *_, picture, sound = next(updates)
    assert picture == gr.skip() and sound == gr.skip()  # nothing logged yet
    write_steps(run.out, [1, 2], previews=[2])
    update = next(updates)
    assert Path(update[5]) == run.out / "previews" / "step-000002.png" and Path(update[6]).suffix == ".wav"
    assert "Step 2 of 4 (train)" in update[1] and "preview from step 2 (train)" in update[1]
    assert next(updates)[5:] == (gr.skip(), gr.skip())  # the same preview is not sent again
    write_steps(run.out, [3, 4], previews=[4])
    with (run.out / "loss_log.jsonl").open("a") as log:  # a preview whose files are not there is not shown
        log.write(json.dumps({"stage": "train", "step": 4, "preview": ["previews/step-000009.png"]}) + "\n")
    update = next(updates)
    assert Path(update[5]).name == "step-000004.png" and "preview from step 4" in update[1]
    RUNS.stop("train-c")
    assert "**Stopped**" in next(updates)[1] and next(updates, None) is None


def write_steps(out: Path, steps: list[int], previews: list[int]) -> None:
    """What a trainer writes: a loss line per step and, at the preview steps, a picture and a wav, then their line."""
    from pipelines.media import save_png, save_wav

    (out / "previews").mkdir(parents=True, exist_ok=True)
    with (out / "loss_log.jsonl").open("a") as log:
        for step in steps:
            log.write(json.dumps({"stage": "train", "step": step, "loss": 1.0 / step}) + "\n")
            if step in previews:
                save_png(np.full((8, 8), step / 10), out / "previews" / f"step-{step:06d}.png")
                save_wav(np.sin(np.arange(1600) * step / 10), 16000, out / "previews" / f"step-{step:06d}.wav")
                files = [f"previews/step-{step:06d}.png", f"previews/step-{step:06d}.wav"]
                log.write(json.dumps({"stage": "train", "step": step, "preview": files}) + "\n")
