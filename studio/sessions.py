"""Per-session folders for the files the studio writes, removed when the session ends or grows too old or big.

Each browser session gets its own folder, named from a hash of Gradio's session id, and every file in it a random
name, so one user's results are never listed or guessable by another. `sweep()` removes folders idle for longer
than `max_age_s`, then the oldest ones until the whole root fits in `max_bytes`.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path


class SessionFiles:
    def __init__(self, root: Path | None = None, *, max_age_s: float = 3600.0, max_bytes: int = 2 * 1024**3):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="synesthesia-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self._lock = threading.Lock()

    def folder(self, session_id: str | None) -> Path:
        """This session's folder (created on first use). Clears out stale sessions first."""
        self.sweep()
        folder = self.root / _folder_name(session_id)
        folder.mkdir(exist_ok=True)
        folder.touch()  # marks the session as active for the age limit
        return folder

    def new_path(self, session_id: str | None, stem: str, suffix: str) -> Path:
        """A fresh, unguessable file path in the session's folder, e.g. `picture-3kX9…​.wav`."""
        return self.folder(session_id) / f"{stem}-{secrets.token_urlsafe(8)}{suffix}"

    def end(self, session_id: str | None) -> None:
        """Remove everything the session wrote (called when the browser tab closes)."""
        shutil.rmtree(self.root / _folder_name(session_id), ignore_errors=True)

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            folders = sorted((path for path in self.root.iterdir() if path.is_dir()), key=_mtime)
            for folder in [f for f in folders if now - _mtime(f) > self.max_age_s]:
                shutil.rmtree(folder, ignore_errors=True)
                folders.remove(folder)
            sizes = {folder: _size(folder) for folder in folders}
            while folders and sum(sizes.values()) > self.max_bytes:
                oldest = folders.pop(0)
                shutil.rmtree(oldest, ignore_errors=True)
                sizes.pop(oldest)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _folder_name(session_id: str | None) -> str:
    return hashlib.sha256((session_id or "anonymous").encode()).hexdigest()[:24]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
