"""Lazy, cached, thread-safe loading of every pipeline by name and weights variant.

A generator registers a `PipelineEntry` saying how to check for and load each weights variant:

- `paper`: the published weights (or the paper's architecture trained at full size), used when present;
- `studio`: small models bundled in `assets/models/`, always present, fast on a CPU.

`get_pipeline(name, variant="auto")` picks `paper` when its weights are in the local cache (or the Hub is
reachable and the registry is not offline) and `studio` otherwise, loads it once even when many users ask at
the same moment, and records a `LoadReport` saying which variant it used and why. Entries with no weights at all
(pure signal processing) ignore the variant.

On a GPU at most `max_resident` pipelines stay on the device; when another one is needed the least recently
used one moves to the CPU (and back when it is next asked for).

Each generator declares its own entries in its package (`pipelines/<generator>/entries.py`, built from
`pipelines.weights`; light: no torch import, so start-up can check for weights). `ENTRY_MODULES` lists them and the
registry collects them on first use; no generator imports the registry.

Weights trained in the studio (the Train tab) join an entry as extra variants: `register_trained_weights(name,
label, folder, owner=...)` adds one (key `trained-…`, loaded with the entry's `FOLDER_PIPELINES` class), a tab lists
its owner's with `trained_weights(name, owner)` and asks for one by its key; `auto` never picks one.
"""

from __future__ import annotations

import collections
import importlib
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.devices import choose_device, choose_dtype
from pipelines.weights import PipelineEntry, WeightsSource

VARIANTS = ("paper", "studio")
MODEL_CHOICES = ("auto",) + VARIANTS


@dataclass(frozen=True)
class LoadReport:
    name: str
    variant: str | None
    device: str
    reason: str


@dataclass(frozen=True)
class TrainedWeights:
    """A folder a trainer wrote, registered as a variant of a registry entry."""

    name: str  # the registry entry
    variant: str  # its key among the entry's variants
    label: str  # the artist's name for it
    folder: Path
    owner: str | None  # who may use it (a studio session), None: everyone


class UnknownPipelineError(KeyError):
    pass


class WeightsUnavailableError(RuntimeError):
    pass


class Registry:
    """Holds the entries, the loaded pipelines and the locks. One process-wide instance: `REGISTRY`."""

    def __init__(self, *, default_variant: str = "auto", device: str = "auto", offline: bool = False,
                 max_resident: int = 2):
        self.entries: dict[str, PipelineEntry] = {}
        self.configure(default_variant=default_variant, device=device, offline=offline, max_resident=max_resident)
        self._loaded: collections.OrderedDict[tuple[str, str | None], Any] = collections.OrderedDict()
        self._reports: dict[tuple[str, str | None], LoadReport] = {}
        self._placement: dict[tuple[str, str | None], str] = {}
        self._locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._guard = threading.Lock()
        self._loading = threading.Lock()
        self.trained: dict[str, TrainedWeights] = {}  # by variant key

    def configure(self, *, default_variant: str = "auto", device: str = "auto", offline: bool = False,
                  max_resident: int = 2) -> None:
        if default_variant not in MODEL_CHOICES:
            raise ValueError(f"models must be one of {', '.join(MODEL_CHOICES)}; got {default_variant!r}")
        self.default_variant, self.device_preference = default_variant, device
        self.offline, self.max_resident = offline, max_resident

    def register(self, entry: PipelineEntry) -> None:
        self.entries[entry.name] = entry

    def entry(self, name: str) -> PipelineEntry:
        if name not in self.entries:
            raise UnknownPipelineError(f"no pipeline named {name!r}; known: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def resolve(self, name: str, variant: str = "auto") -> tuple[str | None, str]:
        """Which variant `get_pipeline` would load, and a sentence saying why. Loads nothing."""
        entry = self.entry(name)
        if entry.load_without_weights is not None:
            return None, f"{entry.title} needs no weights (signal processing only)."
        variant = self.default_variant if variant == "auto" else variant
        if variant != "auto":
            if variant not in entry.variants:
                raise WeightsUnavailableError(f"{entry.title} has no {variant!r} weights")
            missing = entry.variants[variant].missing(self.offline)
            if missing:
                raise WeightsUnavailableError(f"{entry.title}: {variant} weights were asked for but {missing}")
            return variant, f"{variant} weights, as asked for."
        reasons = []
        for candidate in VARIANTS:
            if candidate not in entry.variants:
                continue
            missing = entry.variants[candidate].missing(self.offline)
            if missing is None and not reasons:
                return candidate, f"{candidate} weights are available."
            if missing is None:
                return candidate, f"{'; '.join(reasons)}: using {candidate} weights."
            reasons.append(f"{candidate} weights {missing}")
        raise WeightsUnavailableError(f"{entry.title} has no usable weights: {'; '.join(reasons)}")

    def get(self, name: str, variant: str = "auto", device: str | None = None) -> Any:
        """The pipeline, loaded on first use and cached. Thread-safe: concurrent callers share one load."""
        chosen, reason = self.resolve(name, variant)
        key = (name, chosen)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self.entries[name]
            weightless = entry.load_without_weights is not None
            target = "cpu" if weightless else device or choose_device(self.device_preference)
            if key not in self._loaded:
                self._make_room(target)
                with self._loading:  # one load at a time: diffusers' and transformers' lazy imports are not thread-safe
                    if weightless:
                        self._loaded[key] = entry.load_without_weights()
                    else:
                        self._loaded[key] = entry.variants[chosen].load(target, choose_dtype(target))
                self._placement[key] = target
                self._reports[key] = LoadReport(name, chosen, target, reason)
            elif self._placement[key] != target:
                self._make_room(target)
                self._move(key, target)
            with self._guard:
                self._loaded.move_to_end(key)
            return self._loaded[key]

    def clear(self) -> None:
        """Drop every loaded pipeline (they load again on next use) and free accelerator memory."""
        with self._guard:
            self._loaded.clear()
            self._reports.clear()
            self._placement.clear()
        _free_accelerator_memory()

    def forget(self, name: str) -> None:
        """Drop the loaded copies of one pipeline (e.g. its weights file changed); it loads again on next use."""
        with self._guard:
            for key in [key for key in self._loaded if key[0] == name]:
                del self._loaded[key], self._reports[key], self._placement[key]

    def reports(self) -> list[LoadReport]:
        """What is loaded now: name, variant, device and why that variant."""
        with self._guard:
            return [self._reports[key] for key in self._loaded]

    def _make_room(self, device: str) -> None:
        if device == "cpu":
            return
        with self._guard:
            resident = [key for key in self._loaded if self._placement[key] == device]
        while len(resident) >= self.max_resident:
            self._move(resident.pop(0), "cpu")

    def _move(self, key: tuple[str, str | None], device: str) -> None:
        pipeline = self._loaded[key]
        if hasattr(pipeline, "to"):
            pipeline.to(device)
        self._placement[key] = device
        report = self._reports[key]
        self._reports[key] = LoadReport(report.name, report.variant, device, report.reason)
        if device == "cpu":
            _free_accelerator_memory()

    def add_trained(self, weights: TrainedWeights, load) -> None:
        """Add `weights` as a variant of its entry, loaded by `load(folder, device, dtype)`."""
        source = WeightsSource(load=lambda device, dtype: load(weights.folder, device, dtype),
                               missing=lambda offline: None if weights.folder.is_dir() else
                               f"are missing: the folder {weights.folder} was removed",
                               description=f"trained in the studio: {weights.label} ({weights.folder})")
        with self._guard:
            self.entry(weights.name).variants[weights.variant] = source
            self.trained[weights.variant] = weights

    def remove_trained(self, variant: str) -> None:
        """Drop a trained variant and its loaded copy."""
        with self._guard:
            weights = self.trained.pop(variant, None)
            if weights is None:
                return
            self.entries[weights.name].variants.pop(variant, None)
            key = (weights.name, variant)
            if key in self._loaded:
                del self._loaded[key], self._reports[key], self._placement[key]


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


REGISTRY = Registry()


# Where each generator declares its entries: a module with `entries() -> list[PipelineEntry]`.
ENTRY_MODULES = (
    "pipelines.spectrogram_lab.entries",
    "pipelines.vocoders.entries",
    "pipelines.images_that_sound.entries",
    "pipelines.impact_sound.entries",
    "pipelines.mm_diffusion.entries",
    "pipelines.mm_ldm.entries",
    "pipelines.visual_echoes.entries",
)


# The class whose `from_pretrained(folder, torch_dtype=…)` loads a folder that entry's trainer wrote
# (`python -m pipelines.train <generator> --out FOLDER`).
FOLDER_PIPELINES = {
    "images_that_sound": "pipelines.images_that_sound.pipeline_images_that_sound:ImagesThatSoundPipeline",
    "impact_diffusion": "pipelines.impact_sound.pipeline_diffusion:ImpactDiffusionPipeline",
    "mm_diffusion_toyworld": "pipelines.mm_diffusion.pipeline_mm_diffusion:MMDiffusionPipeline",
    "mm_ldm_toyworld": "pipelines.mm_ldm.pipeline_mm_ldm:MMLDMPipeline",
    "visual_echoes": "pipelines.visual_echoes.pipeline_visual_echoes:VisualEchoesPipeline",
}


def _register_builtin_pipelines() -> None:
    if REGISTRY.entries:
        return
    for module in ENTRY_MODULES:
        for entry in importlib.import_module(module).entries():
            REGISTRY.register(entry)


def register_local_checkpoints(paths: dict[str, str | None]) -> None:
    """Point MM-Diffusion's released-checkpoint entries at local files (space.yaml `checkpoints.mm_diffusion`);
    a pipeline already loaded from other files is dropped. Loads nothing."""
    from pipelines.mm_diffusion.entries import set_local_checkpoints

    _register_builtin_pipelines()
    for name in set_local_checkpoints(paths):
        REGISTRY.forget(name)


def get_pipeline(name: str, variant: str = "auto", device: str | None = None) -> Any:
    """The named pipeline from the process-wide registry (see `Registry.get`)."""
    _register_builtin_pipelines()
    return REGISTRY.get(name, variant, device)


def available(name: str, variant: str = "auto") -> bool:
    """Whether the named pipeline could be loaded now with that variant (loads nothing)."""
    _register_builtin_pipelines()
    try:
        REGISTRY.resolve(name, variant)
        return True
    except WeightsUnavailableError:
        return False


def chosen_variant(name: str, variant: str = "auto") -> str | None:
    """The variant `get_pipeline` would load now (None: no weights needed, or none available). Loads nothing."""
    _register_builtin_pipelines()
    try:
        return REGISTRY.resolve(name, variant)[0]
    except WeightsUnavailableError:
        return None


def describe(name: str, variant: str = "auto") -> str:
    """One line for the UI: which weights the named pipeline uses (or will use) and why."""
    _register_builtin_pipelines()
    for report in REGISTRY.reports():
        if report.name == name:
            return f"loaded on {report.device}: {report.reason}"
    try:
        return f"not loaded yet; {REGISTRY.resolve(name, variant)[1]}"
    except WeightsUnavailableError as error:
        return f"unavailable: {error}"


def register_trained_weights(name: str, label: str, folder: str | Path, *, owner: str | None = None) -> str:
    """Make `folder` (what a trainer wrote for the entry `name`) a choice of weights for it, called `label`, for
    `owner` only (None: everyone). Returns the new variant's key, for `get_pipeline(name, key)`. Loads nothing."""
    _register_builtin_pipelines()
    if name not in FOLDER_PIPELINES:
        raise ValueError(f"{name!r} cannot load trained weights; these can: {', '.join(FOLDER_PIPELINES)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"the trained weights folder {folder} does not exist")
    weights = TrainedWeights(name, f"trained-{secrets.token_urlsafe(8)}", label, folder, owner)
    REGISTRY.add_trained(weights, _load_folder(FOLDER_PIPELINES[name]))
    return weights.variant


def trained_weights(name: str, owner: str | None = None) -> list[TrainedWeights]:
    """The trained weights of the entry `name` that `owner` may use and whose folder still exists, oldest first."""
    return [weights for weights in list(REGISTRY.trained.values()) if weights.name == name
            and weights.owner in (None, owner) and weights.folder.is_dir()]


def forget_trained_weights(owner: str) -> None:
    """Drop every trained variant `owner` registered (their session ended)."""
    for variant in [key for key, weights in list(REGISTRY.trained.items()) if weights.owner == owner]:
        REGISTRY.remove_trained(variant)


def _load_folder(target: str):
    """`load(folder, device, dtype)` for the class named "module:Class"."""

    def load(folder: Path, device: str, dtype) -> Any:
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name).from_pretrained(folder, torch_dtype=dtype).to(device)

    return load
