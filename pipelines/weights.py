"""How a generator declares its weights to the registry: one `PipelineEntry` per pipeline, one `WeightsSource` per
variant (`paper`, `studio`). Each generator's `entries.py` builds these; `pipelines.registry` collects them.
Light on purpose: start-up reads every entry without importing torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"  # the bundled studio weights


def repo_relative(path: str | Path) -> str:
    """A folder as results and summaries record it: relative to the repository when inside it (no machine paths),
    else as given."""
    resolved, root = Path(path).resolve(), ASSETS.parents[1]
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


@dataclass(frozen=True)
class WeightsSource:
    """One variant of a pipeline's weights.

    `missing(offline)` returns None when the weights can be loaded, or a plain sentence saying why not.
    `load(device, dtype)` builds the pipeline on that device.
    """

    load: Callable[[str, Any], Any]
    missing: Callable[[bool], str | None] = lambda offline: None
    description: str = ""


def files_missing(folder: Path, names: tuple[str, ...]) -> str | None:
    """For a `missing` check: None when every file is in `folder`, else a sentence fragment naming the absent ones.
    Looks at the disk only (no torch import), so start-up checks stay light."""
    absent = [name for name in names if not (folder / name).is_file()]
    return f"are missing: {', '.join(absent)} not found in {folder}" if absent else None


@dataclass(frozen=True)
class PipelineEntry:
    name: str
    title: str
    variants: dict[str, WeightsSource] = field(default_factory=dict)
    # For pipelines without weights (signal processing only, run on the CPU): how to build one.
    load_without_weights: Callable[[], Any] | None = None
