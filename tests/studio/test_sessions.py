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
