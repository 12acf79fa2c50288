"""The studio's compute thread: every model the tabs load, and every sampling they start, runs on one thread.

Why one: torch's CPU build parallelises with OpenMP (libgomp), which gives every thread that starts parallel work a
pool of helper threads of its own, kept while that thread lives. Once the pools hold more threads than the machine
has cores, libgomp stops letting idle helpers spin and puts them to sleep between operations, and a diffusion
model's many small operations then pay for waking them every time. Loading a model on one of gradio's threads and
sampling on another was enough for that: on a 2-core CPU the Sounding Video tab's default clip took 26-37 s through
`python app.py`, and the same sampling took 27 s on a fresh thread against 15.6 s on the thread that had loaded the
model (2026-12-06). On one thread
there is one pool. Jobs run one after another, in the order they come (on a CPU, two at once would each run at
half speed anyway).

The pool should not take every core either: its threads wait for each other after every operation, so while the
web server works on a core (a preview, the page's messages) the whole pool waits. `leave_a_core_for_the_server`
gives torch all cores but one.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pipelines import registry

Result = TypeVar("Result")


class ComputeThread:
    """One daemon thread running the functions handed to it, one after another.

    Started on first use, and again in a forked child process (a ZeroGPU worker), where threads do not survive the
    fork. A daemon, so that quitting the studio never waits for a sampling to finish.
    """

    def __init__(self, name: str = "studio-compute"):
        self.name = name
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, function: Callable[..., Result], *args, **kwargs) -> Future:
        """Queue `function(*args, **kwargs)`; its Future holds the result or the error it raised."""
        future: Future = Future()
        with self._lock:
            if self._pid != os.getpid():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                self._thread = threading.Thread(target=self._serve, args=(self._jobs,), name=self.name, daemon=True)
                self._thread.start()
            self._jobs.put((future, function, args, kwargs))
        return future

    def run(self, function: Callable[..., Result], *args, **kwargs) -> Result:
        """`function(*args, **kwargs)` on the compute thread (at once when called from it): its result, or its
        error raised here."""
        if threading.current_thread() is self._thread:
            return function(*args, **kwargs)
        return self.submit(function, *args, **kwargs).result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        while True:
            future, function, args, kwargs = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(error)


COMPUTE = ComputeThread()


def warm_up() -> None:
    """Import the generators' base (torch, diffusers' pipeline utilities) on the compute thread, in the background,
    so that the first generation does not wait for it (4 s on a 2-core CPU). The studio calls it when a page is
    opened; after the first time it costs nothing."""
    COMPUTE.submit(importlib.import_module, "pipelines.pipeline_utils")


def leave_a_core_for_the_server(environ=os.environ) -> None:
    """Let torch compute on all cores but one (at least one) by setting OMP_NUM_THREADS, unless it is set already.
    Call it before torch is imported (it reads the variable then): `python app.py` does, first thing."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    environ.setdefault("OMP_NUM_THREADS", str(max(1, cores - 1)))


def get_pipeline(name: str, variant: str = "auto", device: str | None = None) -> Any:
    """The registry's pipeline (`pipelines.registry.get_pipeline`), loaded on the compute thread."""
    return COMPUTE.run(registry.get_pipeline, name, variant, device)
