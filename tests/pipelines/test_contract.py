"""One contract, run for every generator's pipeline (cases in `tests.factories.CONTRACT_CASES`).

save → load gives equal outputs; the same seed gives the same output; a batch equals its samples run alone; the step
callback gets `callback_on_step_end(pipe, step, timestep, callback_kwargs)` with a numpy preview; setting
`pipe._interrupt` stops sampling after the current step.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.pipeline_utils import BaseOutput, StudioPipeline
from tests.factories import CONTRACT_CASES

pytestmark = pytest.mark.parametrize("name", sorted(CONTRACT_CASES))


@pytest.fixture
def case(name):
    return CONTRACT_CASES[name]


@pytest.fixture
def pipe(case, tmp_path):
    return case.build(tmp_path / "built")


def run(case, pipe, seeds, **extra) -> np.ndarray:
    return np.asarray(case.samples(pipe(**case.call_kwargs(seeds), **extra)), dtype=np.float64)


def test_is_a_studio_pipeline_with_a_base_output(case, pipe):
    assert isinstance(pipe, StudioPipeline)
    output = pipe(**case.call_kwargs([0]))
    assert isinstance(output, BaseOutput)
    as_tuple = pipe(**case.call_kwargs([0]), return_dict=False)
    assert isinstance(as_tuple, tuple)
    np.testing.assert_allclose(np.asarray(case.samples(output)), np.asarray(case.samples(as_tuple)), atol=1e-6)


def test_save_then_load_gives_the_same_seeded_output(case, pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "saved")
    loaded = type(pipe).from_pretrained(folder)
    np.testing.assert_allclose(run(case, loaded, [3]), run(case, pipe, [3]), atol=1e-5)


def test_the_same_seed_gives_the_same_output_and_another_seed_another(case, pipe):
    first, again, other = run(case, pipe, [5]), run(case, pipe, [5]), run(case, pipe, [6])
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_batch_equals_its_samples_run_alone(case, pipe):
    batch = run(case, pipe, [1, 2])
    alone = np.concatenate([run(case, pipe, [1]), run(case, pipe, [2])])
    np.testing.assert_allclose(batch, alone, atol=1e-4)


def test_the_callback_gets_the_pipeline_the_step_and_a_preview(case, pipe):
    calls = []

    def callback(called_pipe, step, timestep, callback_kwargs):
        calls.append((called_pipe, step, timestep, callback_kwargs["preview"]))
        return {}

    run(case, pipe, [0], callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["preview"])
    assert len(calls) >= 2
    assert all(called is pipe for called, *_ in calls)
    assert [step for _, step, _, _ in calls] == list(range(len(calls)))
    assert all(isinstance(timestep, int) for _, _, timestep, _ in calls)
    assert all(isinstance(preview, np.ndarray) and np.isfinite(preview).all() for *_, preview in calls)


def test_unknown_callback_inputs_are_refused_by_name(case, pipe):
    with pytest.raises(ValueError, match="no_such_tensor"):
        pipe(**case.call_kwargs([0]), callback_on_step_end=lambda *a: {},
             callback_on_step_end_tensor_inputs=["no_such_tensor"])


def test_the_interrupt_flag_stops_sampling_after_the_current_step(case, pipe):
    steps = []

    def stop_at_first_step(called_pipe, step, timestep, callback_kwargs):
        steps.append(step)
        called_pipe._interrupt = True
        return {}

    run(case, pipe, [0], callback_on_step_end=stop_at_first_step)
    assert steps == [0]
    steps.clear()
    run(case, pipe, [0], callback_on_step_end=lambda p, step, t, kw: steps.append(step) or {})
    assert len(steps) >= 2  # the flag is cleared for the next call
