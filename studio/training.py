"""Training runs for the Train tab: `python -m pipelines.train …` as a subprocess, its loss log and its data.

A run is a folder in its session's folder (`data/` the artist's files, `out/` what the trainer writes, `run.log`
its output). The trainer runs in its own process group, so the server stays responsive and Stop ends it and every
process it started; its checkpoints stay, and resuming is the same command with `--resume`. Progress comes from the
trainer's `loss_log.jsonl` (one JSON object a line: stage, step and losses), and so do its sample previews (`--preview-
every`: a line {"stage", "step", "preview": [files relative to OUT]} once the files are written).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_ZIP_FILES = 2000
MAX_ZIP_BYTES = 2 * 1024**3  # unpacked
STOP_GRACE_S = 10.0


class RunBusy(Exception):
    """A run is already going (this session's, or another one where only one may run at a time)."""


class DataError(ValueError):
    """The artist's files cannot be used for training; the message says why and what to do."""


_FLAGS_LOCK = threading.Lock()


def trainer_flags(generator: str) -> frozenset[str]:
    """The options `python -m pipelines.train <generator>` accepts, read from its `--help` once (so a flag is passed
    only to a trainer that has it); callers at the same moment wait for the one reading."""
    with _FLAGS_LOCK:
        return _read_flags(generator)


@functools.cache
def _read_flags(generator: str) -> frozenset[str]:
    result = subprocess.run([sys.executable, "-m", "pipelines.train", generator, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"python -m pipelines.train {generator} --help failed: {result.stderr[-500:]}")
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))


# The artist's files -------------------------------------------------------------------------------------------------


def unpack(uploads: list[Path], folder: Path, allowed: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Copy the uploads into `folder`, unpacking zips (paths inside kept, hidden and system files dropped).

    Returns the files placed and notes on what was left out. A direct upload of a type not in `allowed` (nor .zip)
    raises DataError naming it; inside a zip such files are left out with a note."""
    folder.mkdir(parents=True, exist_ok=True)
    wrong = [path.name for path in uploads if path.suffix.lower() not in allowed + (".zip",)]
    if wrong:
        raise DataError(f"{_names(wrong)} cannot be used here: give {describe_suffixes(allowed)}, or a .zip of them.")
    placed, notes = [], []
    for path in uploads:
        if path.suffix.lower() == ".zip":
            kept, skipped = _unzip(path, folder, allowed)
            placed += kept
            if skipped:
                notes.append(f"Left out of {path.name}: {_names(skipped)} (not {describe_suffixes(allowed)}).")
        else:
            target = _free_name(folder / path.name)
            target.write_bytes(path.read_bytes())
            placed.append(target)
    return placed, notes


def _unzip(archive: Path, folder: Path, allowed: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir() and not _hidden(m.filename)]
            if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise DataError(f"{archive.name} holds more than {MAX_ZIP_FILES} files or 2 GB; send a smaller one.")
            kept, skipped = [], []
            for member in members:
                relative = Path(*[part for part in Path(member.filename).parts if part not in ("..", "/", "\\")])
                if relative.suffix.lower() not in allowed:
                    skipped.append(relative.name)
                    continue
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(member))
                kept.append(target)
            return kept, skipped
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{archive.name} could not be opened as a zip ({error}); pack the files again.") from None


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


def _free_name(path: Path) -> Path:
    """`path`, or `stem-2.suffix`, `stem-3.suffix`… when taken (two uploads may share a name)."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _names(names: list[str], shown: int = 5) -> str:
    quoted = ", ".join(f"'{name}'" for name in names[:shown])
    return quoted + (f" and {len(names) - shown} more" if len(names) > shown else "")


def describe_suffixes(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffix.lstrip(".") for suffix in suffixes)


def write_captions(folder: Path, files: list[Path], caption: str) -> Path:
    """`captions.jsonl` for Images that Sound's trainer: every picture and sound with `caption`, or its file name
    (`rain_on_roof.wav` → "rain on roof") when the caption is empty."""
    lines = []
    for path in sorted(files):
        kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "sound" if path.suffix.lower() != ".jsonl" else ""
        if kind:
            text = caption or re.sub(r"[_\-.]+", " ", path.stem).strip() or kind
            lines.append(json.dumps({"file": path.relative_to(folder).as_posix(), "caption": text, "kind": kind}))
    index = folder / "captions.jsonl"
    index.write_text("\n".join(lines) + "\n")
    return index


# The loss log -------------------------------------------------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    """The loss records of a `loss_log.jsonl` being written: a line not yet complete is skipped, and so are the
    preview records (`latest_preview`)."""
    return [record for record in _records(path) if "preview" not in record]


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "stage" in record and "step" in record:
            records.append(record)
    return records


@dataclass(frozen=True)
class Preview:
    """A sample the trainer drew from its model at `step` of `stage`: a picture and, for sound, a wav (or None)."""

    stage: str
    step: int
    picture: Path | None
    sound: Path | None


def latest_preview(out: Path) -> Preview | None:
    """The newest preview the trainer logged in OUT/loss_log.jsonl whose files are there (None before the first)."""
    for record in reversed(_records(out / "loss_log.jsonl")):
        files = record.get("preview")
        if not isinstance(files, list):
            continue
        paths = [out / str(name) for name in files]
        if paths and all(path.is_file() and path.resolve().is_relative_to(out.resolve()) for path in paths):
            picture = next((path for path in paths if path.suffix.lower() == ".png"), None)
            sound = next((path for path in paths if path.suffix.lower() == ".wav"), None)
            return Preview(str(record["stage"]), int(record["step"]), picture, sound)
    return None


def progress(records: list[dict], stages: list[tuple[str, int]]) -> tuple[int, int, dict]:
    """(steps done over all stages, steps in all stages, the last record's losses)."""
    done = {stage: 0 for stage, _ in stages}
    for record in records:
        if record["stage"] in done:
            done[record["stage"]] = max(done[record["stage"]], int(record["step"]))
    last = {key: value for key, value in records[-1].items() if key not in ("stage", "step")} if records else {}
    return sum(min(done[stage], total) for stage, total in stages), sum(total for _, total in stages), last


def plot_curve(records: list[dict], title: str):
    """Every loss against its stage's step, one panel per stage, as an RGB uint8 picture (matplotlib, no screen
    needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    stages = list(dict.fromkeys(record["stage"] for record in records)) or ["waiting for the first step"]
    figure, axes = plt.subplots(1, len(stages), figsize=(3.6 * len(stages) + 1.2, 2.8), squeeze=False)
    for axis, stage in zip(axes[0], stages):
        _plot_stage(axis, stage, [record for record in records if record["stage"] == stage])
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.canvas.draw()
    picture = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return picture


def _plot_stage(axis, stage: str, rows: list[dict]) -> None:
    """One stage's losses; a log axis when they span more than a factor of 10."""
    from matplotlib.ticker import MaxNLocator

    values = []
    for key in [k for k in (rows[0] if rows else {}) if k not in ("stage", "step")]:
        points = [(r["step"], max(float(r[key]), 1e-8)) for r in rows if isinstance(r.get(key), (int, float))]
        values += [v for _, v in points]
        axis.plot([s for s, _ in points], [v for _, v in points], linewidth=1.2,
                  marker="." if len(points) < 20 else None, label=key)
    if values and max(values) > 10 * min(values):
        axis.set_yscale("log")
    if rows:
        axis.legend(fontsize=7, loc="upper right")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set(title=stage, xlabel="step", ylabel="loss")
    axis.title.set_fontsize(9)
    axis.grid(True, alpha=0.3)


def discard_unfinished_checkpoints(out: Path) -> list[Path]:
    """Remove checkpoints a Stop may have cut short, so `--resume` starts from a whole one; returns them.

    The trainers log step N of a stage before saving its checkpoint `checkpoints/<stage>/step-N` and mark a finished
    stage `DONE` after its last save, so `step-N` is whole once the log has a later step of that stage or the stage
    is done."""
    reached: dict[str, int] = {}
    for record in read_log(out / "loss_log.jsonl"):
        reached[record["stage"]] = max(reached.get(record["stage"], 0), int(record["step"]))
    removed = []
    for stage in (out / "checkpoints").glob("*"):
        if stage.is_dir() and not (stage / "DONE").is_file():
            removed += _discard_unconfirmed(sorted(stage.glob("step-*"), key=_step_number), reached.get(stage.name, 0))
    return removed


def _discard_unconfirmed(folders: list[Path], reached: int) -> list[Path]:
    """Remove the checkpoints at or past the last logged step. A save also deletes the previous checkpoint after
    writing the new one: when Stop cut that deletion short (the previous one lacks files the new one has), the new
    one is whole and the previous one goes instead."""
    unconfirmed = [folder for folder in folders if _step_number(folder) >= reached]
    if len(unconfirmed) == 1 and len(folders) >= 2 and _files_in(folders[-2]) < _files_in(unconfirmed[0]):
        unconfirmed = [folders[-2]]
    for folder in unconfirmed:
        shutil.rmtree(folder, ignore_errors=True)
    return unconfirmed


def _step_number(folder: Path) -> int:
    step = folder.name.removeprefix("step-")
    return int(step) if step.isdigit() else -1


def _files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")}


# The process --------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training run: its command, folder and process. `state`: running, stopped, failed or finished."""

    session: str
    generator: str
    name: str
    folder: Path
    command: list[str]
    stages: list[tuple[str, int]]
    settings: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    started: float = 0.0
    state: str = "new"
    stopping: bool = False

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def log(self) -> Path:
        return self.folder / "run.log"

    def start(self, resume: bool = False) -> None:
        """Start the trainer (with `--resume`: from its latest checkpoint) in a process group of its own."""
        if resume:
            discard_unfinished_checkpoints(self.out)
        command = self.command + (["--resume"] if resume else [])
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=environment, start_new_session=True)
        self.started, self.state, self.stopping = time.monotonic(), "running", False

    def poll(self) -> str:
        """The run's state now (updated when its process has ended)."""
        if self.state == "running" and self.process is not None and self.process.poll() is not None:
            self.state = "stopped" if self.stopping else "finished" if self.process.returncode == 0 else "failed"
        return self.state

    def stop(self) -> None:
        """End the trainer and every process it started (SIGTERM to its group, SIGKILL after STOP_GRACE_S)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stopping = True
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()
        self.poll()

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def error_line(self) -> str:
        """The trainer's own last error message (`ValueError: …` → its text), for the artist."""
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            match = re.match(r"^(?:[\w.]+(?:Error|Exception)|SystemExit): (.+)$", line)
            if match:
                return match.group(1)
        return lines[-1][:300] if lines else "it ended without a message"


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


class Runs:
    """The runs of every session: at most `max_running` at once in the whole studio (training takes the machine)."""

    def __init__(self, max_running: int = 1):
        self.max_running = max_running
        self._runs: dict[str, list[Run]] = {}
        self._lock = threading.Lock()

    def add(self, run: Run, resume: bool = False) -> Run:
        """Start `run` unless a run is going (RunBusy)."""
        with self._lock:
            running = [other for runs in self._runs.values() for other in runs if other.poll() == "running"]
            if any(other.session == run.session for other in running):
                raise RunBusy("A training run is already going in this session: stop it or wait until it ends.")
            if len(running) >= self.max_running:
                raise RunBusy("Another training run is using this machine now; try again when it has ended.")
            run.start(resume=resume)
            runs = self._runs.setdefault(run.session, [])
            if run not in runs:
                runs.append(run)
        return run

    def of(self, session: str) -> list[Run]:
        with self._lock:
            return list(self._runs.get(session, []))

    def latest(self, session: str) -> Run | None:
        runs = self.of(session)
        return runs[-1] if runs else None

    def stop(self, session: str) -> Run | None:
        """Stop the session's running run; returns it (None when none was running)."""
        run = self.latest(session)
        if run is None or run.poll() != "running":
            return None
        run.stop()
        return run

    def end(self, session: str) -> None:
        """The session ended: stop its run and forget its runs."""
        self.stop(session)
        with self._lock:
            self._runs.pop(session, None)


RUNS = Runs()
