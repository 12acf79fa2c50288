"""pipelines.registry: lazy, once, thread-safe, variant choice with reasons, LRU residency on a GPU."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.registry import (
    Registry,
    UnknownPipelineError,
    WeightsUnavailableError,
    describe,
    get_pipeline,
)
from pipelines.weights import PipelineEntry, WeightsSource
from tests.factories import ROOT


class FakePipeline:
    def __init__(self, name, device):
        self.name, self.device, self.moves = name, device, []

    def to(self, device):
        self.moves.append(device)
        self.device = device
        return self


def counting_source(counter: list, name: str, delay: float = 0.0, missing=None) -> WeightsSource:
    def load(device, dtype):
        time.sleep(delay)
        counter.append(name)
        return FakePipeline(name, device)

    return WeightsSource(load=load, missing=missing or (lambda offline: None))


def not_cached(offline):
    return "are not in the local cache and the Hub is unreachable" if offline else "are not in the local cache"


def test_nothing_loads_until_asked_and_then_only_once_across_threads():
    loads = []
    registry = Registry(device="cpu")
    registry.register(PipelineEntry("toy", "Toy", {"studio": counting_source(loads, "toy", delay=0.2)}))
    assert loads == [] and registry.reports() == []
    results = []
    threads = [threading.Thread(target=lambda: results.append(registry.get("toy"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["toy"]
    assert all(result is results[0] for result in results)


def test_different_pipelines_load_one_at_a_time():
    """Loads import diffusers/transformers lazily, which is not thread-safe: two loads never overlap."""
    active, overlaps = [], []

    def source(name):
        def load(device, dtype):
            active.append(name)
            overlaps.append(len(active))
            time.sleep(0.05)
            active.remove(name)
            return FakePipeline(name, device)

        return WeightsSource(load=load)

    registry = Registry(device="cpu")
    for name in ("a", "b", "c"):
        registry.register(PipelineEntry(name, name, {"studio": source(name)}))
    threads = [threading.Thread(target=registry.get, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [1, 1, 1]


def test_auto_uses_paper_weights_when_present():
    registry = Registry(device="cpu")
    registry.register(PipelineEntry("toy", "Toy", {"paper": counting_source([], "paper"),
                                                   "studio": counting_source([], "studio")}))
    assert registry.get("toy").name == "paper"
    assert registry.reports()[0].variant == "paper"
    assert "paper weights are available" in registry.reports()[0].reason


def test_auto_falls_back_to_studio_and_says_why():
    registry = Registry(device="cpu", offline=True)
    registry.register(PipelineEntry("toy", "Toy", {"paper": counting_source([], "paper", missing=not_cached),
                                                   "studio": counting_source([], "studio")}))
    assert registry.get("toy").name == "studio"
    (report,) = registry.reports()
    assert report.variant == "studio" and report.device == "cpu"
    assert report.reason == ("paper weights are not in the local cache and the Hub is unreachable: "
                             "using studio weights.")


def test_explicit_variant_and_global_default():
    registry = Registry(device="cpu", default_variant="studio")
    registry.register(PipelineEntry("toy", "Toy", {"paper": counting_source([], "paper"),
                                                   "studio": counting_source([], "studio")}))
    assert registry.get("toy").name == "studio"  # --models studio wins over auto
    assert registry.get("toy", "paper").name == "paper"


def test_missing_weights_and_unknown_names_raise_plain_errors():
    registry = Registry(device="cpu", offline=True)
    registry.register(PipelineEntry("toy", "Toy", {"paper": counting_source([], "paper", missing=not_cached)}))
    with pytest.raises(WeightsUnavailableError, match="paper weights were asked for but are not in the local"):
        registry.get("toy", "paper")
    with pytest.raises(WeightsUnavailableError, match="no usable weights"):
        registry.get("toy")
    with pytest.raises(WeightsUnavailableError, match="no 'studio' weights"):
        registry.get("toy", "studio")
    with pytest.raises(UnknownPipelineError, match="no pipeline named 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="models must be one of"):
        registry.configure(default_variant="best")


def test_least_recently_used_pipeline_leaves_the_gpu():
    loads = []
    registry = Registry(max_resident=2)
    for name in ("a", "b", "c"):
        registry.register(PipelineEntry(name, name.upper(), {"studio": counting_source(loads, name)}))
    a = registry.get("a", device="cuda")
    b = registry.get("b", device="cuda")
    registry.get("a", device="cuda")  # a is now the most recently used
    c = registry.get("c", device="cuda")
    assert b.moves == ["cpu"] and a.moves == [] and c.device == "cuda"
    assert {report.name: report.device for report in registry.reports()} == {"a": "cuda", "b": "cpu", "c": "cuda"}
    assert registry.get("b", device="cuda") is b  # comes back without reloading, and a (LRU now) leaves
    assert b.device == "cuda" and a.moves == ["cpu"]
    assert loads == ["a", "b", "c"]


def test_weightless_pipelines_ignore_the_variant():
    registry = Registry(device="cpu", default_variant="studio")
    registry.register(PipelineEntry("dsp", "DSP", load_without_weights=lambda: FakePipeline("dsp", "cpu")))
    assert registry.get("dsp", device="cuda").name == "dsp"
    (report,) = registry.reports()
    assert report.reason == "DSP needs no weights (signal processing only)." and report.device == "cpu"


def test_builtin_spectrogram_lab_is_registered_and_described():
    assert describe("spectrogram_lab").startswith(("not loaded yet; Spectrogram Lab needs no weights",
                                                   "loaded on"))
    lab = get_pipeline("spectrogram_lab", device="cpu")
    assert lab is get_pipeline("spectrogram_lab", device="cpu")
    assert describe("spectrogram_lab") == "loaded on cpu: Spectrogram Lab needs no weights (signal processing only)."


def test_every_generator_declares_its_entries_in_its_own_light_package():
    """The registry collects each generator's entries.py; reading them imports no torch (start-up stays light)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pipelines.registry import ENTRY_MODULES, REGISTRY, _register_builtin_pipelines\n"
        "_register_builtin_pipelines()\n"
        "assert all(m.startswith('pipelines.') and m.endswith('.entries') for m in ENTRY_MODULES), ENTRY_MODULES\n"
        "print(sorted(REGISTRY.entries))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("spectrogram_lab", "images_that_sound", "impact_sound", "impact_diffusion", "mm_diffusion_toyworld",
                 "mm_diffusion_landscape", "hifigan"):
        assert f"'{name}'" in result.stdout


def test_dependencies_point_one_way():
    """Inference never imports the trainers or the metrics, and no generator imports the registry."""
    import re

    for path in (ROOT / "pipelines").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if not relative.startswith(("pipelines/train/", "pipelines/metrics/")):
            assert not re.search(r"(from|import) pipelines\.(train|metrics)\b", text), relative
        if relative.count("/") >= 2 and not relative.startswith(("pipelines/train/", "pipelines/metrics/")):
            assert not re.search(r"(from|import) pipelines\.registry\b", text), relative


def test_trained_weights_join_their_entry_for_their_owner_only(tmp_path):
    """A folder a trainer wrote becomes a variant of its entry: loaded by the entry's pipeline class, listed for its
    owner only, never chosen by `auto`, and gone once forgotten."""
    import numpy as np

    from pipelines.registry import (
        available,
        chosen_variant,
        forget_trained_weights,
        register_trained_weights,
        trained_weights,
    )
    from tests.factories import tiny_mm_diffusion

    tiny_mm_diffusion().save_pretrained(tmp_path / "mine")
    variant = register_trained_weights("mm_diffusion_toyworld", "my bounces", tmp_path / "mine", owner="artist")
    assert [w.label for w in trained_weights("mm_diffusion_toyworld", "artist")] == ["my bounces"]
    assert trained_weights("mm_diffusion_toyworld", "someone else") == []
    assert chosen_variant("mm_diffusion_toyworld", "auto") == "studio" and available("mm_diffusion_toyworld", variant)
    pipe = get_pipeline("mm_diffusion_toyworld", variant, device="cpu")
    assert pipe.clip_format.sample_rate == 2000 and pipe is not get_pipeline("mm_diffusion_toyworld", "studio", "cpu")
    output = pipe(num_inference_steps=2, sampler="ddim", generator=None)
    assert np.isfinite(output.audio).all()
    forget_trained_weights("artist")
    assert trained_weights("mm_diffusion_toyworld", "artist") == [] and not available("mm_diffusion_toyworld", variant)
    with pytest.raises(ValueError, match="cannot load trained weights"):
        register_trained_weights("hifigan", "x", tmp_path, owner="artist")
