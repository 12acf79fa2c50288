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
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("paper", "studio")
MODEL_CHOICES = ("auto",) + VARIANTS


@dataclass(frozen=True)
class WeightsSource:
    """One variant of a pipeline's weights.

    `missing(offline)` returns None when the weights can be loaded, or a plain sentence saying why not.
    `load(device, dtype)` builds the pipeline on that device.
    """

    load: Callable[[str, Any], Any]
    missing: Callable[[bool], str | None] = lambda offline: None
    description: str = ""


@dataclass(frozen=True)
class PipelineEntry:
    name: str
    title: str
    variants: dict[str, WeightsSource] = field(default_factory=dict)
    # For pipelines without weights (signal processing only, run on the CPU): how to build one.
    load_without_weights: Callable[[], Any] | None = None


@dataclass(frozen=True)
class LoadReport:
    name: str
    variant: str | None
    device: str
    reason: str


class UnknownPipelineError(KeyError):
    pass


class WeightsUnavailableError(RuntimeError):
    pass


def choose_device(preference: str = "auto") -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit choice is checked against what this machine has."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if preference == "auto":
        return next(device for device in ("cuda", "mps", "cpu") if available[device])
    if preference not in available:
        raise ValueError(f"device must be one of auto, cpu, cuda, mps; got {preference!r}")
    if not available[preference]:
        raise ValueError(f"device {preference!r} was asked for but this machine has none")
    return preference


def choose_dtype(device: str):
    """fp16/bf16 on accelerators (bf16 where the GPU supports it), fp32 on the CPU."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


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


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


REGISTRY = Registry()


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


# MM-Diffusion's released checkpoints are local files (not on the Hub): space.yaml `checkpoints.mm_diffusion` names
# them and start-up hands the paths over with `register_local_checkpoints`. One entry per base checkpoint.
MM_DIFFUSION_CHECKPOINTS = {"landscape": "Landscape", "aist": "AIST++"}  # config key -> released model
MM_DIFFUSION_CHECKPOINT_KEYS = tuple(MM_DIFFUSION_CHECKPOINTS) + tuple(f"{k}_sr" for k in MM_DIFFUSION_CHECKPOINTS)
_LOCAL_CHECKPOINTS: dict[str, str] = {}


def register_local_checkpoints(paths: dict[str, str | None]) -> None:
    """Point the `mm_diffusion_<key>` entries at local checkpoint files ({"landscape": path, "aist_sr": path, ...};
    None or "" = not configured). Loads nothing; a pipeline already loaded from other files is dropped."""
    unknown = sorted(set(paths) - set(MM_DIFFUSION_CHECKPOINT_KEYS))
    if unknown:
        raise ValueError(f"unknown MM-Diffusion checkpoint(s) {unknown}; known: {list(MM_DIFFUSION_CHECKPOINT_KEYS)}")
    _register_builtin_pipelines()
    configured = {key: str(path) for key, path in paths.items() if path}
    if configured != _LOCAL_CHECKPOINTS:
        _LOCAL_CHECKPOINTS.clear()
        _LOCAL_CHECKPOINTS.update(configured)
        for key in MM_DIFFUSION_CHECKPOINTS:
            REGISTRY.forget(f"mm_diffusion_{key}")


def _register_builtin_pipelines() -> None:
    if "spectrogram_lab" in REGISTRY.entries:
        return
    from pipelines import images_that_sound as its
    from pipelines.audio import SPECS
    from pipelines.hub import weights_missing
    from pipelines.impact_sound.pipeline_physics import ImpactPhysicsPipeline
    from pipelines.spectrogram_lab import SpectrogramLabPipeline
    from pipelines.vocoders import AUFFUSION_REPO, AUFFUSION_VOCODER_FILES, load_hifigan


    REGISTRY.register(PipelineEntry("spectrogram_lab", "Spectrogram Lab", load_without_weights=SpectrogramLabPipeline))
    for key in MM_DIFFUSION_CHECKPOINTS:
        REGISTRY.register(_mm_diffusion_entry(key))
    REGISTRY.register(_mm_diffusion_studio_entry())
    REGISTRY.register(PipelineEntry("impact_sound", "Impact Sound (physics)",
                                    load_without_weights=ImpactPhysicsPipeline))
    REGISTRY.register(_impact_diffusion_entry())
    REGISTRY.register(PipelineEntry("hifigan", "HiFi-GAN vocoder", {
        "paper": WeightsSource(
            load=lambda device, dtype: load_hifigan(AUFFUSION_REPO, SPECS["auffusion"], device, dtype),
            missing=lambda offline: weights_missing(AUFFUSION_REPO, AUFFUSION_VOCODER_FILES, offline),
            description=f"Auffusion's HiFi-GAN ({AUFFUSION_REPO}, vocoder/)",
        ),
    }))
    REGISTRY.register(_scorer_entry("clip_scorer", "CLIP scorer", its.CLIP_MODEL, "ClipWindowScorer"))
    REGISTRY.register(_scorer_entry("clap_scorer", "CLAP scorer", its.CLAP_MODEL, "ClapScorer"))
    REGISTRY.register(_judge_entry("judge_image", "Toy picture-class judge", "JudgeImageScorer"))
    REGISTRY.register(_judge_entry("judge_sound", "Toy sound-class judge", "JudgeSoundScorer"))
    REGISTRY.register(_colorizer_if_entry())
    REGISTRY.register(PipelineEntry("images_that_sound", "Images that Sound", {
        "paper": WeightsSource(
            load=_load_paper_images_that_sound,
            missing=lambda offline: (weights_missing(its.PAPER_IMAGE_MODEL, its.PAPER_IMAGE_FILES, offline)
                                     or weights_missing(its.PAPER_AUDIO_MODEL, its.PAPER_AUDIO_FILES, offline)),
            description="Stable Diffusion v1.5 + Auffusion + Auffusion's HiFi-GAN",
        ),
        "studio": WeightsSource(
            load=_load_studio_images_that_sound,
            missing=_studio_images_that_sound_missing,
            description="small toy-world models in assets/models/images_that_sound (Griffin-Lim, no HiFi-GAN)",
        ),
    }))


def _scorer_entry(name: str, title: str, repo_id: str, class_name: str) -> PipelineEntry:
    """A paper-weights entry for a re-ranking scorer of pipelines.images_that_sound.ranking."""
    from pipelines.hub import weights_missing

    def load(device: str, dtype):
        from pipelines.images_that_sound import ranking

        return getattr(ranking, class_name).from_pretrained(repo_id)

    files = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
    return PipelineEntry(name, title, {"paper": WeightsSource(
        load=load, missing=lambda offline: weights_missing(repo_id, files, offline), description=repo_id)})


def _judge_entry(name: str, title: str, class_name: str) -> PipelineEntry:
    """A studio-weights entry for a toy-world judge scorer of pipelines.metrics.judges (assets/models/judges)."""

    def load(device: str, dtype):
        from pipelines.metrics import judges

        return getattr(judges, class_name).from_pretrained(judges.STUDIO_JUDGES).to(device)

    def missing(offline: bool) -> str | None:  # no torch import: start-up checks stay light
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent / STUDIO_JUDGES
        absent = [f for f in (f"{name.removeprefix('judge_')}.{ext}" for ext in ("json", "safetensors"))
                  if not (root / f).is_file()]
        return f"are missing: {', '.join(absent)} not found in {root}" if absent else None

    return PipelineEntry(name, title, {"studio": WeightsSource(
        load=load, missing=missing, description="small CNN judge trained on the toy world (assets/models/judges)")})


def _mm_diffusion_entry(key: str) -> PipelineEntry:
    """`mm_diffusion_<key>`: a released base checkpoint (+ its `<key>_sr` up-sampler when configured), paper variant."""
    from pathlib import Path

    model = MM_DIFFUSION_CHECKPOINTS[key]

    def missing(offline: bool) -> str | None:
        path = _LOCAL_CHECKPOINTS.get(key)
        if not path:
            return f"have no checkpoint path configured (space.yaml `checkpoints.mm_diffusion.{key}`)"
        return None if Path(path).is_file() else f"are missing: file {path} not found"

    def load(device: str, dtype):
        from pipelines.sounding_video import load_sounding_video

        return load_sounding_video(_LOCAL_CHECKPOINTS[key], _LOCAL_CHECKPOINTS.get(f"{key}_sr"), device, dtype)

    return PipelineEntry(f"mm_diffusion_{key}", f"MM-Diffusion ({model})", {"paper": WeightsSource(
        load=load, missing=missing, description=f"the released {model} checkpoint (local file)")})


STUDIO_MM_DIFFUSION = "assets/models/mm_diffusion"  # relative to the repository root


def _mm_diffusion_studio_entry() -> PipelineEntry:
    """`mm_diffusion_toyworld`: the bundled MM-Diffusion trained on toy-world bounces (`pipelines.train mm_diffusion`,
    a shrunken clip), studio variant; works offline."""
    from pathlib import Path

    def folder() -> Path:
        return Path(__file__).resolve().parent.parent / STUDIO_MM_DIFFUSION

    def missing(offline: bool) -> str | None:  # no torch import: start-up checks stay light
        absent = [name for name in ("model.safetensors", "model.json") if not (folder() / name).is_file()]
        return f"are missing: {', '.join(absent)} not found in {folder()}" if absent else None

    def load(device: str, dtype):
        from pipelines.train.mm_diffusion import load_trained

        return load_trained(folder(), device, dtype)

    return PipelineEntry("mm_diffusion_toyworld", "MM-Diffusion (toy world)", {"studio": WeightsSource(
        load=load, missing=missing,
        description=f"a small model trained on toy-world bounces ({STUDIO_MM_DIFFUSION})")})


STUDIO_IMAGES_THAT_SOUND = "assets/models/images_that_sound"  # relative to the repository root
STUDIO_JUDGES = "assets/models/judges"  # relative to the repository root


def _studio_images_that_sound_folder():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / STUDIO_IMAGES_THAT_SOUND


def _studio_images_that_sound_missing(offline: bool) -> str | None:
    root = _studio_images_that_sound_folder()
    needed = [f"{model}/{part}" for model in ("image_model", "audio_model")
              for part in ("unet/config.json", "text_encoder/config.json", "tokenizer/tokenizer_config.json")]
    needed += ["audio_model/vae/config.json", "image_model/scheduler/scheduler_config.json"]
    absent = [name for name in needed if not (root / name).is_file()]
    return f"are missing: {', '.join(absent)} not found in {root}" if absent else None


def _load_studio_images_that_sound(device: str, dtype):
    """The bundled toy-world models (fp16 safetensors, loaded in `dtype`: float32 on the CPU), vocoder Griffin-Lim."""
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    root = _studio_images_that_sound_folder()
    pipe = ImagesThatSoundPipeline.from_pretrained(str(root / "image_model"), str(root / "audio_model"), vocoder=None,
                                                   torch_dtype=dtype)
    return pipe.to(device)


def _load_paper_images_that_sound(device: str, dtype):
    from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
    from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

    pipe = ImagesThatSoundPipeline.from_pretrained(PAPER_IMAGE_MODEL, PAPER_AUDIO_MODEL, vocoder=PAPER_AUDIO_MODEL,
                                                   torch_dtype=dtype)
    return pipe.to(device)


def _colorizer_if_entry() -> PipelineEntry:
    """`colorizer_if`: the paper's colorization on DeepFloyd IF I + II, paper variant. IF is gated, so it is used only
    with a Hugging Face token and its weights in the local cache or reachable."""
    from pipelines import images_that_sound as its
    from pipelines.hub import token_configured, weights_missing

    def missing(offline: bool) -> str | None:
        if not token_configured():
            return ("need a Hugging Face token (DeepFloyd IF is gated): accept its licence on the model page, then "
                    "set HF_TOKEN or run `hf auth login`")
        return (weights_missing(its.PAPER_IF_STAGE_I, its.PAPER_IF_STAGE_I_FILES, offline)
                or weights_missing(its.PAPER_IF_STAGE_II, its.PAPER_IF_STAGE_II_FILES, offline))

    def load(device: str, dtype):
        from pipelines.images_that_sound.colorization_if import IFColorizationPipeline

        return IFColorizationPipeline.from_pretrained(dtype=dtype).to(device)

    return PipelineEntry("colorizer_if", "Colorization (DeepFloyd IF)", {"paper": WeightsSource(
        load=load, missing=missing, description=f"{its.PAPER_IF_STAGE_I} + {its.PAPER_IF_STAGE_II} with T5 (gated)")})


STUDIO_IMPACT_SOUND = "assets/models/impact_sound"  # relative to the repository root


def _impact_diffusion_entry() -> PipelineEntry:
    """Impact Sound's physics-driven diffusion model: the bundled toy-world model (studio variant).

    The paper published no weights; its architecture at full size is `pipelines.train impact_sound --size paper`,
    loaded in Python with `ImpactDiffusionPipeline.from_pretrained(folder)`."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / STUDIO_IMPACT_SOUND

    def missing(offline: bool) -> str | None:  # no torch import: start-up checks stay light
        needed = ("config.json", "denoiser.safetensors", "visual_encoder.safetensors", "bank.safetensors",
                  "residual/config.json")
        absent = [name for name in needed if not (root / name).is_file()]
        return f"are missing: {', '.join(absent)} not found in {root}" if absent else None

    def load(device: str, dtype):
        from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline

        return ImpactDiffusionPipeline.from_pretrained(root, device=device, dtype=dtype)

    return PipelineEntry("impact_diffusion", "Impact Sound (diffusion)", {"studio": WeightsSource(
        load=load, missing=missing, description=f"small toy-world model in {STUDIO_IMPACT_SOUND}")})
