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
