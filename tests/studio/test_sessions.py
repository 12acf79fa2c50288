"""studio.sessions: one private folder per session, removed at session end or by age and size limits."""

from __future__ import annotations

import os
import time

from studio.sessions import SessionFiles


def test_each_session_has_its_own_folder_and_unguessable_names(tmp_path):
    files = SessionFiles(tmp_path)
    a1, a2 = files.new_path("alice", "picture", ".wav"), files.new_path("alice", "picture", ".wav")
    b1 = files.new_path("bob", "picture", ".wav")
    assert a1.parent == a2.parent != b1.parent
    assert a1 != a2 and a1.name.startswith("picture-") and a1.suffix == ".wav"
    assert "alice" not in str(a1)  # folder names are hashes, not session ids


def test_ending_a_session_removes_only_its_files(tmp_path):
    files = SessionFiles(tmp_path)
    alice = files.new_path("alice", "x", ".txt")
    alice.write_text("a")
    bob = files.new_path("bob", "x", ".txt")
    bob.write_text("b")
    files.end("alice")
    assert not alice.exists() and bob.exists()


def test_sweep_removes_old_sessions_then_oldest_until_under_the_size_limit(tmp_path):
    files = SessionFiles(tmp_path, max_age_s=3600, max_bytes=2500)
    paths = {}
    for age, name in [(7200, "stale"), (300, "older"), (100, "newer")]:
        paths[name] = files.new_path(name, "x", ".bin")
        paths[name].write_bytes(b"0" * 1500)
        stamp = time.time() - age
        os.utime(paths[name].parent, (stamp, stamp))
    files.sweep()
    assert not paths["stale"].exists()  # older than max_age
    assert not paths["older"].exists()  # removed to fit 3000 bytes into 2500
    assert paths["newer"].exists()


def test_remove_all(tmp_path):
    files = SessionFiles(tmp_path / "root")
    files.new_path("s", "x", ".txt").write_text("x")
    files.remove_all()
    assert not (tmp_path / "root").exists()


def test_a_job_still_running_when_its_session_ends_leaves_nothing(tmp_path):
    import pytest

    from studio.sessions import SessionEnded

    files = SessionFiles(tmp_path / "root", cache_dir=tmp_path / "cache")
    early = files.new_path("alice", "x", ".wav")  # the job asked for a path, then the tab closed
    files.end("alice")
    with pytest.raises(FileNotFoundError):
        early.write_text("late")  # its folder is gone: nothing lands on disk
    with pytest.raises(SessionEnded):
        files.new_path("alice", "y", ".wav")
    assert list((tmp_path / "root").iterdir()) == []


def test_ending_a_session_removes_gradios_cached_copies_of_its_files(tmp_path):
    import shutil

    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    mine, theirs = files.new_path("alice", "x", ".wav"), files.new_path("bob", "x", ".wav")
    for path in (mine, theirs):  # as gradio serves them: a copy under <cache>/<content hash>/<name>
        path.write_text(path.name)
        (cache / path.stem[-6:]).mkdir(parents=True)
        shutil.copy(path, cache / path.stem[-6:] / path.name)
    files.end("alice")
    assert sorted(p.name for p in cache.rglob("*.wav")) == [theirs.name]


def test_sigterm_and_sigint_remove_every_session_folder(tmp_path):
    """app.py's handlers: a studio stopped by a signal leaves no session folder behind."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = f"""
import time
from app import remove_files_on_signals
from studio.sessions import SessionFiles
files = SessionFiles({str(tmp_path / "root")!r})
remove_files_on_signals(files)
files.new_path("alice", "x", ".wav").write_text("x")
print("ready", flush=True)
time.sleep(60)
"""
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        assert (tmp_path / "root").is_dir()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 128 + signum
        assert not (tmp_path / "root").exists()
