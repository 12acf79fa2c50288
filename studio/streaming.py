"""Long generations in a worker thread: previews stream to the page, and Stop really stops the work.

Gradio runs a generator handler step by step and, when the artist presses Stop, closes it. A sampler running in a
worker thread would not notice and would go on computing unseen for minutes. `stream` runs the work in a thread,
turns each preview it makes into the handler's outputs, and once the handler is closed makes the work's next preview
raise `Stopped`, which ends the sampling.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

Result = TypeVar("Result")
Preview = Callable[[Any], None]
StepCallback = Callable[[Any, int, int, Any], dict]


class Stopped(Exception):
    """Raised inside the work at its next preview once the handler streaming it has been closed (Stop)."""


def stream(work: Callable[[Preview], Result], show: Callable[[Any], tuple]) -> Generator[tuple, None, Result]:
    """Run `work(preview)` in a worker thread; yield `show(x)` for every `preview(x)` it makes; return its result.

    Use it as `result = yield from stream(...)` in a handler. An error raised by the work is raised here, in the
    handler's thread (where `user_facing` turns it into a message).
    """
    updates: queue.Queue = queue.Queue()
    closed = threading.Event()

    def preview(value: Any) -> None:
        if closed.is_set():
            raise Stopped
        updates.put(("preview", value))

    def run() -> None:
        try:
            updates.put(("done", work(preview)))
        except Stopped:
            pass
        except Exception as error:  # noqa: BLE001 - re-raised in the handler's thread, where user_facing handles it
            updates.put(("error", error))

    threading.Thread(target=run, daemon=True).start()
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


def every_steps(preview: Preview, every: int) -> StepCallback:
    """A pipeline's `callback_on_step_end` that hands `callback_kwargs["preview"]` to `preview` every `every` steps
    (the preview is made only on those steps). With `stream`, Stop raises `Stopped` from it and sampling ends."""

    def callback_on_step_end(pipe, step: int, timestep: int, callback_kwargs) -> dict:
        if (step + 1) % every == 0:
            preview(callback_kwargs["preview"])
        return {}

    return callback_on_step_end
