"""What every tab is built with: the settings and the per-session file store."""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import StudioConfig
from studio.sessions import SessionFiles


@dataclass(frozen=True)
class StudioContext:
    config: StudioConfig
    files: SessionFiles
