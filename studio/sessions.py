"""Per-session folders for the files the studio writes, removed when the session ends or grows too old or big.

Each browser session gets its own folder, named from a hash of Gradio's session id, and every file in it a random
name, so one user's results are never listed or guessable by another. `sweep()` removes folders idle for longer
than `max_age_s`, then the oldest ones until the whole root fits in `max_bytes`.

Gradio serves a handler's output files from copies in its own cache (`<cache>/<content hash>/<name>`). Our names are
unique, so ending a session also removes the cache copies of every file it wrote (`forget`), and an ended session's
files are no longer served. A job still running when its session ends gets `SessionEnded` at its next `new_path`,
so it leaves no orphan folder behind. `remove_all` (at exit and on SIGTERM/SIGINT) removes every folder and its cache
copies.

An artist's uploads are saved by gradio at `<cache>/<content hash>/<name>`, without a session id, so identical uploads
from two sessions share one path. Each handler `claim`s the uploads it receives for its session; a session's end
removes those no open session has claimed too (the last one to end removes them), never the examples gradio keeps.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path


class SessionEnded(Exception):
    """The session a job writes for has ended (its browser tab closed): the job's files would be orphans."""


class SessionFiles:
    def __init__(self, root: Path | None = None, *, max_age_s: float = 3600.0, max_bytes: int = 2 * 1024**3,
                 cache_dir: Path | str | None = None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="synesthesia-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._lock = threading.RLock()
        self._ended: dict[str, float] = {}  # folder name -> when its session ended
        self._uploads: dict[str, set[Path]] = {}  # folder name -> uploads its open session claimed
        self._kept: set[Path] = set()  # files in gradio's cache that stay for everyone (examples)

    @property
    def cache_dir(self) -> Path:
        """Gradio's file cache, where it copies every file a handler returns before serving it."""
        if self._cache_dir is None:
            from gradio.utils import get_upload_folder

            return Path(get_upload_folder())
        return self._cache_dir

    def folder(self, session_id: str | None) -> Path:
        """This session's folder (created on first use). Clears out stale sessions first. SessionEnded once the
        session has ended."""
        self.sweep()
        name = _folder_name(session_id)
        with self._lock:
            if name in self._ended:
                raise SessionEnded(f"session {name} has ended")
            folder = self.root / name
            folder.mkdir(exist_ok=True)
            folder.touch()  # marks the session as active for the age limit
        return folder

    def new_path(self, session_id: str | None, stem: str, suffix: str) -> Path:
        """A fresh, unguessable file path in the session's folder, e.g. `picture-3kX9….wav`."""
        return self.folder(session_id) / f"{stem}-{secrets.token_urlsafe(8)}{suffix}"

    def claim(self, session_id: str | None, *uploads) -> None:
        """Note uploads a handler received (paths, None, or lists of paths) as this session's, to be removed at its
        end. Only files in gradio's cache count: other paths (bundled examples, a Python caller's files) are ignored."""
        cache = Path(os.path.abspath(self.cache_dir))
        paths = {path for path in _paths(uploads) if cache in path.parents and path.is_file()}
        name = _folder_name(session_id)
        with self._lock:
            if paths and name not in self._ended:
                self._uploads.setdefault(name, set()).update(paths)

    def keep(self, paths) -> None:
        """Files in gradio's cache that no session's end removes, though a session claims them (the examples)."""
        with self._lock:
            self._kept.update(_paths(paths))

    def end(self, session_id: str | None) -> None:
        """Remove everything the session wrote and gradio's copies of it, and the uploads it claimed that no open
        session claimed too (called when the browser tab closes). A job still running for it can write nothing more
        (SessionEnded)."""
        name = _folder_name(session_id)
        with self._lock:
            self._ended[name] = time.time()
            folder = self.root / name
            if folder.is_dir():
                self.forget(path for path in folder.rglob("*") if path.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            uploads = self._uploads.pop(name, set()) - self._kept
            for path in uploads - set().union(*self._uploads.values()):
                path.unlink(missing_ok=True)
                with _quiet():
                    path.parent.rmdir()  # only when now empty

    def forget(self, paths) -> None:
        """Remove files and gradio's cached copies of them (found by their unique names)."""
        names = set()
        for path in paths:
            path = Path(path)
            names.add(path.name)
            path.unlink(missing_ok=True)
        if not names or not self.cache_dir.is_dir():
            return
        for copy_folder in self.cache_dir.iterdir():
            for name in names & _names_in(copy_folder):
                (copy_folder / name).unlink(missing_ok=True)
                with _quiet():
                    copy_folder.rmdir()  # only when now empty

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._ended = {name: at for name, at in self._ended.items() if now - at < max(self.max_age_s, 86400)}
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
        """Remove every session's folder and gradio's cached copies of their files (at exit, SIGTERM and SIGINT:
        gradio's own clean-up of its cache does not run when a signal ends the process)."""
        if self.root.is_dir():
            self.forget(path for path in self.root.rglob("*") if path.is_file())
        shutil.rmtree(self.root, ignore_errors=True)


def _folder_name(session_id: str | None) -> str:
    return hashlib.sha256((session_id or "anonymous").encode()).hexdigest()[:24]


def _paths(values) -> set[Path]:
    """The file paths among handler values, made absolute as gradio makes them: a multi-file upload is a list; None
    is no upload."""
    paths = set()
    for value in values:
        if isinstance(value, (list, tuple)):
            paths |= _paths(value)
        elif isinstance(value, (str, Path)) and str(value):
            paths.add(Path(os.path.abspath(value)))
    return paths


def _names_in(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    except OSError:
        return set()


def _quiet():
    import contextlib

    return contextlib.suppress(OSError)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
