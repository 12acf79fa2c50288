"""Long generations on the compute thread: previews stream to the page, and Stop really stops the work.

Gradio runs a generator handler step by step and, when the artist presses Stop, closes it. A sampler running in
another thread would not notice and would go on computing unseen for minutes. `stream` runs the work on the studio's
compute thread (`studio.compute`), turns each preview it makes into the handler's outputs, and once the handler is
closed makes the work's next preview raise `Stopped`, which ends the sampling.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from studio.compute import COMPUTE

Result = TypeVar("Result")
Preview = Callable[[Any], None]
StepCallback = Callable[[Any, int, int, Any], dict]


class Stopped(Exception):
    """Raised inside the work at its next preview once the handler streaming it has been closed (Stop)."""


class PreviewFiles:
    """A job's preview pictures as png files in its session's folder, so none piles up in gradio's cache.

    A numpy image sent to the page is written by gradio into its cache under a new name every time (500 files for
    a 1000-step run, kept for an hour). Sent as files of ours instead, each has a unique name, and `prune` removes
    them and gradio's copies: all but the newest `keep` while the job runs, all but the one shown when it ends
    (that one goes with the session).
    """

    def __init__(self, files, session_id: str | None, *, keep: int = 2):
        self.files, self.session_id, self.keep = files, session_id, keep
        self.paths: list = []

    def __call__(self, image) -> str:
        """Write a [0, 1] float or uint8 picture; returns its path, for a gr.Image output."""
        from pipelines.media import save_png

        path = self.files.new_path(self.session_id, "preview", ".png")
        save_png(image if image.dtype != "uint8" else image / 255.0, path)
        self.paths.append(path)
        self.prune(self.keep)
        return str(path)

    def prune(self, keep: int = 1) -> None:
        old, self.paths = (self.paths[:-keep], self.paths[-keep:]) if keep else (self.paths, [])
        if old:
            self.files.forget(old)


def stream(work: Callable[[Preview], Result], show: Callable[[Any], tuple],
           previews: PreviewFiles | None = None) -> Generator[tuple, None, Result]:
    """Run `work(preview)` in a worker thread; yield `show(x)` for every `preview(x)` it makes; return its result.

    Use it as `result = yield from stream(...)` in a handler. An error raised by the work is raised here, in the
    handler's thread (where `user_facing` turns it into a message). `previews`: the job's preview files, pruned
    to the last one shown when the stream ends (finished, failed or stopped).
    """
    updates: queue.Queue = queue.Queue()
    closed = threading.Event()

    def preview(value: Any) -> None:
        if closed.is_set():
            raise Stopped
        updates.put(("preview", value))

    def run() -> None:
        if closed.is_set():  # stopped while it waited for the compute thread
            return
        try:
            updates.put(("done", work(preview)))
        except Stopped:
            pass
        except Exception as error:  # noqa: BLE001 - re-raised in the handler's thread, where user_facing handles it
            updates.put(("error", error))

    COMPUTE.submit(run)
    try:
        while True:
            kind, value = updates.get()
            if kind == "done":
                return value
            if kind == "error":
                raise value
            yield show(value)
    finally:
        closed.set()
        if previews is not None:
            previews.prune(1)


def every_steps(preview: Preview, every: int) -> StepCallback:
    """A pipeline's `callback_on_step_end` that hands `callback_kwargs["preview"]` to `preview` every `every` steps
    (the preview is made only on those steps). With `stream`, Stop raises `Stopped` from it and sampling ends."""

    def callback_on_step_end(pipe, step: int, timestep: int, callback_kwargs) -> dict:
        if (step + 1) % every == 0:
            preview(callback_kwargs["preview"])
        return {}

    return callback_on_step_end
