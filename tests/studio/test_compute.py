"""studio.compute: the studio's torch work runs on one thread, in order; errors come back to the caller."""

from __future__ import annotations

import os
import threading

import pytest

from studio import compute
from studio.compute import COMPUTE, ComputeThread, leave_a_core_for_the_server


def test_jobs_run_one_after_another_on_one_thread():
    worker = ComputeThread("test-compute")
    seen = []

    def job(index):
        seen.append((index, threading.current_thread().name))
        return index * index

    futures = [worker.submit(job, index) for index in range(5)]
    assert [future.result(timeout=60) for future in futures] == [0, 1, 4, 9, 16]
    assert seen == [(index, "test-compute") for index in range(5)]
    assert worker.run(job, 6) == 36  # from another thread: waits for the result


def test_an_error_comes_back_to_the_caller_and_the_thread_goes_on():
    worker = ComputeThread("test-compute")

    def fail():
        raise ValueError("not a model")

    with pytest.raises(ValueError, match="not a model"):
        worker.run(fail)
    assert worker.run(lambda: "still serving") == "still serving"


def test_run_from_the_compute_thread_itself_does_not_wait_for_itself():
    worker = ComputeThread("test-compute")
    assert worker.run(lambda: worker.run(lambda: threading.current_thread().name)) == "test-compute"


def test_a_forked_process_gets_a_thread_of_its_own(monkeypatch):
    """Threads do not survive a fork (a ZeroGPU worker): the child starts its own instead of queueing forever."""
    worker = ComputeThread("test-compute")
    first = worker.run(threading.get_ident)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    assert worker.run(threading.get_ident) != first


def test_pipelines_load_on_the_compute_thread(monkeypatch):
    loaded_on = []

    def load(name, variant="auto", device=None):
        loaded_on.append(threading.current_thread().name)
        return (name, variant, device)

    monkeypatch.setattr(compute.registry, "get_pipeline", load)
    assert compute.get_pipeline("mm_diffusion_toyworld", "studio") == ("mm_diffusion_toyworld", "studio", None)
    assert loaded_on == [COMPUTE.name]


@pytest.mark.parametrize("cores, given, expected", [(2, None, "1"), (8, None, "7"), (1, None, "1"), (8, "3", "3")])
def test_torch_gets_all_cores_but_one_unless_told_otherwise(monkeypatch, cores, given, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    environ = {} if given is None else {"OMP_NUM_THREADS": given}
    leave_a_core_for_the_server(environ)
    assert environ["OMP_NUM_THREADS"] == expected


def test_warm_up_imports_the_libraries_on_the_compute_thread(monkeypatch):
    imported = []
    monkeypatch.setattr(compute.importlib, "import_module",
                        lambda name: imported.append((name, threading.current_thread().name)))
    compute.warm_up()
    COMPUTE.run(lambda: None)  # the jobs before it are done
    assert imported == [("pipelines.pipeline_utils", COMPUTE.name)]
