"""studio.streaming: previews reach the page, errors reach the handler, and closing the handler stops the work."""

from __future__ import annotations

import threading

import pytest

from studio.streaming import Stopped, stream


def handler(work):
    """A tab handler as the tabs write it: previews shown as 1-tuples, then the result."""
    result = yield from stream(work, lambda value: (f"preview {value}",))
    yield (f"result {result}",)


def test_previews_then_the_result():
    def work(preview):
        for step in range(3):
            preview(step)
        return "done"

    assert list(handler(work)) == [("preview 0",), ("preview 1",), ("preview 2",), ("result done",)]


def test_an_error_in_the_work_is_raised_in_the_handler():
    def work(preview):
        preview(0)
        raise ValueError("the upload is not a video")

    outputs = handler(work)
    assert next(outputs) == ("preview 0",)
    with pytest.raises(ValueError, match="not a video"):
        next(outputs)


def test_closing_the_handler_stops_the_work_at_its_next_preview():
    """What Gradio does on Stop: close the handler's generator. The work must end, not run on unseen."""
    steps_done, outcome, closed, ended = [], [], threading.Event(), threading.Event()

    def work(preview):
        try:
            for step in range(100):
                preview(step)
                closed.wait()  # the artist presses Stop while step 0 is being computed
                steps_done.append(step)
            outcome.append("finished")
        except Stopped:
            outcome.append("stopped")
            raise
        finally:
            ended.set()

    outputs = handler(work)
    assert next(outputs) == ("preview 0",)
    outputs.close()
    closed.set()
    ended.wait(timeout=60)  # only a guard against hanging the suite; nothing is timed
    assert outcome == ["stopped"] and steps_done == [0]


def test_previews_go_through_files_that_do_not_outlive_their_job(tmp_path):
    """A long run's previews, sent as files and copied into gradio's cache as gradio does: at the end of the job
    only the last one shown is left, in the cache and in the session's folder."""
    import shutil

    import numpy as np

    from studio.sessions import SessionFiles
    from studio.streaming import PreviewFiles

    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    picture = PreviewFiles(files, "alice")

    def work(preview):
        for step in range(200):
            preview(np.full((8, 8), step / 200, np.float32))
        return "done"

    def served(path):  # what gradio does with every file an output gets: a copy under <cache>/<hash>/<name>
        copy = cache / str(abs(hash(path))) / path.rsplit("/", 1)[-1]
        copy.parent.mkdir(parents=True)
        shutil.copy(path, copy)
        return (path,)

    outputs = list(stream(work, lambda image: served(picture(image)), picture))
    assert len(outputs) == 200
    assert len(list(cache.rglob("*.png"))) == 1 and len(list((tmp_path / "root").rglob("*.png"))) == 1
    files.end("alice")
    assert list(cache.rglob("*.png")) == [] and not any((tmp_path / "root").iterdir())


def test_the_work_runs_on_the_compute_thread():
    from studio.compute import COMPUTE

    def work(preview):
        preview(threading.current_thread().name)
        return "done"

    assert list(handler(work)) == [(f"preview {COMPUTE.name}",), ("result done",)]
