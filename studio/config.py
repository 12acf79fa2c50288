"""The studio's settings: command-line flags merged with `space.yaml` (how the studio is deployed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.mm_diffusion.entries import CHECKPOINT_KEYS as MM_DIFFUSION_CHECKPOINT_KEYS
from pipelines.registry import MODEL_CHOICES

SPACE_FILE = Path(__file__).resolve().parent.parent / "space.yaml"
TAB_NAMES = ("impact_sound", "sounding_video", "spectrogram_lab")
# Local weights files (not on the Hub), by generator: space.yaml `checkpoints.<generator>.<key>`.
CHECKPOINT_KEYS = {"mm_diffusion": MM_DIFFUSION_CHECKPOINT_KEYS}


@dataclass(frozen=True)
class TabSettings:
    """Deployment settings of one tab: weights variant, requests running at once, ZeroGPU seconds (0 = CPU)."""

    variant: str = "auto"
    concurrency_limit: int = 1
    gpu_seconds: int = 0


@dataclass(frozen=True)
class StudioConfig:
    models: str = "auto"
    device: str = "auto"
    offline: bool = False
    queue_size: int = 32
    max_upload_mb: int = 50
    hardware: str = "cpu-basic"
    tabs: dict[str, TabSettings] = field(default_factory=dict)
    # Local checkpoint paths by generator and key, only those configured: {"mm_diffusion": {"landscape": "/..."}}.
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)

    def tab(self, name: str) -> TabSettings:
        """A tab's settings; `--models paper|studio` overrides the per-tab variant of space.yaml."""
        settings = self.tabs.get(name, TabSettings())
        if self.models != "auto":
            return TabSettings(self.models, settings.concurrency_limit, settings.gpu_seconds)
        return settings


def load_space_file(path: Path = SPACE_FILE) -> dict:
    """Read and check space.yaml; a mistake there stops start-up with a message naming the key."""
    data = yaml.safe_load(path.read_text()) or {}
    unknown_tabs = set(data.get("tabs", {})) - set(TAB_NAMES)
    if unknown_tabs:
        raise ValueError(f"{path.name}: unknown tab(s) {sorted(unknown_tabs)}; known tabs: {list(TAB_NAMES)}")
    for name, tab in data.get("tabs", {}).items():
        unknown_keys = set(tab) - {"variant", "concurrency_limit", "gpu_seconds"}
        if unknown_keys:
            raise ValueError(f"{path.name}: tabs.{name} has unknown key(s) {sorted(unknown_keys)}")
        if tab.get("variant", "auto") not in MODEL_CHOICES:
            raise ValueError(f"{path.name}: tabs.{name}.variant must be one of {MODEL_CHOICES}")
        if int(tab.get("concurrency_limit", 1)) < 1 or int(tab.get("gpu_seconds", 0)) < 0:
            raise ValueError(f"{path.name}: tabs.{name} needs concurrency_limit >= 1 and gpu_seconds >= 0")
    check_checkpoints(data.get("checkpoints"), path.name)
    return data


def check_checkpoints(section, file_name: str) -> None:
    """`checkpoints:` maps a generator to {key: local path or null}; unknown generators or keys are named."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ValueError(f"{file_name}: checkpoints must be a mapping such as `mm_diffusion: {{landscape: PATH}}`")
    for generator, paths in section.items():
        if generator not in CHECKPOINT_KEYS:
            raise ValueError(f"{file_name}: checkpoints has unknown key {generator!r}; known: {list(CHECKPOINT_KEYS)}")
        if paths is None:
            continue
        if not isinstance(paths, dict):
            raise ValueError(f"{file_name}: checkpoints.{generator} must map names to file paths")
        for key, value in paths.items():
            if key not in CHECKPOINT_KEYS[generator]:
                raise ValueError(f"{file_name}: checkpoints.{generator} has unknown key {key!r}; known: "
                                 f"{list(CHECKPOINT_KEYS[generator])}")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{file_name}: checkpoints.{generator}.{key} must be a file path or empty")


def checkpoint_paths(section, base: Path) -> dict[str, dict[str, str]]:
    """The configured paths only, `~` expanded and relative ones taken from space.yaml's folder."""
    paths = {}
    for generator, entries in (section or {}).items():
        configured = {key: str(base / Path(value).expanduser()) for key, value in (entries or {}).items() if value}
        if configured:
            paths[generator] = configured
    return paths


def build_config(*, models: str = "auto", device: str = "auto", offline: bool = False,
                 space_file: Path = SPACE_FILE) -> StudioConfig:
    data = load_space_file(space_file)
    tabs = {name: TabSettings(**values) for name, values in data.get("tabs", {}).items()}
    queue = data.get("queue", {})
    return StudioConfig(
        models=models, device=device, offline=offline, queue_size=int(queue.get("max_size", 32)),
        max_upload_mb=int(data.get("max_upload_mb", 50)), hardware=data.get("hardware", "cpu-basic"), tabs=tabs,
        checkpoints=checkpoint_paths(data.get("checkpoints"), Path(space_file).resolve().parent),
    )
