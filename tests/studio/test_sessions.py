"""studio.sessions: one private folder per session, removed at session end or by age and size limits."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gradio as gr
import pytest

from studio.sessions import SessionFiles
from tests.factories import FakeRequest


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


def test_remove_all_takes_gradios_cached_copies_too(tmp_path):
    import shutil

    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    for session in ("alice", "bob"):
        path = files.new_path(session, "x", ".txt")
        path.write_text(session)
        (cache / session).mkdir(parents=True)
        shutil.copy(path, cache / session / path.name)
    (cache / "other").mkdir()
    (cache / "other" / "upload.wav").write_text("not a session's file")
    files.remove_all()
    assert not (tmp_path / "root").exists()
    assert [path.name for path in cache.rglob("*") if path.is_file()] == ["upload.wav"]


def test_a_job_still_running_when_its_session_ends_leaves_nothing(tmp_path):
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

    root = Path(__file__).resolve().parents[2]
    script = f"""
import time
from app import remove_files_on_signals
from studio.sessions import SessionFiles
files = SessionFiles({str(tmp_path / "root")!r}, cache_dir={str(tmp_path / "cache")!r})
remove_files_on_signals(files.remove_all)
path = files.new_path("alice", "x", ".wav")
path.write_text("x")
copy = {str(tmp_path / "cache")!r} + "/hash/" + path.name  # as gradio serves it
import os, shutil
os.makedirs(os.path.dirname(copy), exist_ok=True)
shutil.copy(path, copy)
print("ready", flush=True)
time.sleep(60)
"""
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        assert (tmp_path / "root").is_dir()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 128 + signum
        assert not (tmp_path / "root").exists() and not any((tmp_path / "cache").rglob("*.wav"))


def test_gradio_files_of_the_studio_go_and_nothing_else(tmp_path):
    """At a signal: the artists' uploads and gradio's copies of returned files go, with their emptied folders; an
    example gradio keeps, and another app's file in a shared cache, stay."""
    import gradio as gr

    from studio.app import remove_gradio_files

    def cached(folder: str, name: str) -> Path:
        path = tmp_path / "cache" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        return path

    with gr.Blocks() as demo:
        audio = gr.Audio()
    upload, returned, example = cached("a1", "upload.wav"), cached("b2", "picture.png"), cached("c3", "chirp.wav")
    other_app = cached("d4", "theirs.wav")
    demo.upload_file_set.add(str(upload))
    audio.temp_files.update({str(returned), str(example)})
    audio.keep_in_cache = {str(example)}
    remove_gradio_files(demo)
    assert sorted(path.name for path in (tmp_path / "cache").rglob("*")) == ["c3", "chirp.wav", "d4", "theirs.wav"]
    assert other_app.read_text() == "theirs.wav"


def test_the_studio_makes_its_own_gradio_cache_unless_one_is_given(tmp_path, monkeypatch):
    """Only a folder of the studio's own is removed whole; a given GRADIO_TEMP_DIR (maybe shared) is left to
    remove_gradio_files."""
    from app import use_own_gradio_cache

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "given"))
    assert use_own_gradio_cache() is None and os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "given")
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    own = use_own_gradio_cache()
    assert own.is_dir() and own.parent == tmp_path and os.environ["GRADIO_TEMP_DIR"] == str(own)
    from gradio.utils import get_upload_folder

    assert Path(get_upload_folder()) == own


def uploaded(cache: Path, content: str, name: str) -> Path:
    """A file as gradio's /upload saves it: `<cache>/<hash of its content>/<name>`, with no session id."""
    import hashlib

    path = cache / hashlib.sha256(content.encode()).hexdigest() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_an_upload_claimed_by_one_session_goes_at_its_end(tmp_path):
    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    mine, theirs = uploaded(cache, "alice's", "hit.wav"), uploaded(cache, "bob's", "hit.wav")
    files.claim("alice", str(mine), None)
    files.claim("bob", [str(theirs)])  # a multi-file upload is a list
    files.end("alice")
    assert not mine.parent.exists() and theirs.exists()  # the emptied hash folder goes too


def test_an_upload_claimed_by_two_sessions_stays_until_both_have_ended(tmp_path):
    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    shared = uploaded(cache, "the same recording", "take.wav")  # identical uploads share one path
    files.claim("alice", str(shared))
    files.claim("bob", str(shared))
    files.end("alice")
    assert shared.exists()
    files.end("bob")
    assert not shared.exists()


def test_only_uploads_in_gradios_cache_are_claimed_and_examples_stay(tmp_path):
    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    outside = tmp_path / "my-own.wav"
    outside.write_text("a file of the artist's machine")
    sneaky = cache / ".." / "my-own.wav"  # names the same file through the cache
    example = uploaded(cache, "chirp", "chirp.wav")
    files.keep([str(example)])
    folder_of_uploads = uploaded(cache, "x", "x.wav").parent
    files.claim("alice", str(outside), str(sneaky), str(example), str(folder_of_uploads), 3, "")
    files.end("alice")
    assert outside.exists() and example.exists() and folder_of_uploads.is_dir()


def test_a_session_that_has_ended_claims_nothing(tmp_path):
    """A late claim would keep the path held forever (nobody ends that session again), so it is not taken."""
    cache = tmp_path / "cache"
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    shared = uploaded(cache, "take", "take.wav")
    files.end("alice")
    files.claim("alice", str(shared))
    files.claim("bob", str(shared))
    files.end("bob")
    assert not shared.exists()


def _impact(context):
    from studio.tabs.impact_sound import ImpactHandlers

    return ImpactHandlers(context, "auto")


def _sounding_video(context):
    from studio.tabs.sounding_video import SoundingVideoHandlers

    return SoundingVideoHandlers(context, "auto")


def _lab(context):
    from studio.tabs.spectrogram_lab import LabHandlers

    return LabHandlers(context, "auto")


def _visual_echoes(context):
    from studio.tabs.visual_echoes import VisualEchoesHandlers

    return VisualEchoesHandlers(context, "auto")


def _train(context):
    from studio.tabs.train import TrainHandlers

    return TrainHandlers(context)


# (tab handlers, the upload's name, how the handler is called with it). Each upload is junk, or a setting is wrong, so
# the handler refuses it at once with a message: the claim is made before any check.
UPLOAD_HANDLERS = {
    "impact-estimate": (_impact, "hit.wav", lambda h, up, request: h.estimate(up, "refined", request)),
    "impact-load-modes": (_impact, "modes.txt", lambda h, up, request: h.load_modes(up, request)),
    "impact-find-hits": (_impact, "hits.mp4", lambda h, up, request: h.find_hits(up, 0.5, request)),
    "impact-score-video": (_impact, "hits.mp4", lambda h, up, request: list(h.score_video(
        up, "0.5", None, 0.25, 0, 1, 0, 0, 0, 0, request=request))),
    "impact-retrieve-physics": (_impact, "hits.mp4", lambda h, up, request: h.retrieve_physics(up, "0.5",
                                                                                                 request=request)),
    "sounding-video-audio": (_sounding_video, "sound.wav", lambda h, up, request: list(h.generate(
        None, "Audio → video", up, None, "DDPM", 2, 1, "paper", 1, 0, 1, False, request))),
    "sounding-video-video": (_sounding_video, "clip.mp4", lambda h, up, request: list(h.generate(
        None, "Video → audio", None, up, "DDPM", 2, 1, "paper", 1, 0, 1, False, request))),
    "spectrogram-lab-sound": (_lab, "sound.wav", lambda h, up, request: h.draw_sound(up, 8, request)),
    "visual-echoes-sound": (_visual_echoes, "sound.wav", lambda h, up, request: list(h.generate(
        "nothing", None, up, 0.5, 1.0, 2, 9, 3, 1, 0, request))),
    "train-files": (_train, "pictures.zip", lambda h, up, request: list(h.start(
        "nothing", None, "My files", [up], "", "mine", 10, 2, None, 0, request))),
}


def _canvas(part: str, upload: str) -> dict:
    """An image editor value (type="filepath") holding the upload as its background, one layer or its composite."""
    value = {"background": None, "layers": [], "composite": None}
    value[part] = [upload] if part == "layers" else upload
    return value


for _part in ("background", "layers", "composite"):
    UPLOAD_HANDLERS[f"spectrogram-lab-canvas-{_part}"] = (_lab, "canvas.png", lambda h, up, request, part=_part: (
        h.play_picture(_canvas(part, up), 2.0, 8, False, "Griffin-Lim", request)))
    UPLOAD_HANDLERS[f"visual-echoes-canvas-{_part}"] = (_visual_echoes, "canvas.png", lambda h, up, request,
                                                        part=_part: list(h.generate(
        "nothing", _canvas(part, up), None, 0.5, 1.0, 2, 9, 3, 1, 0, request)))


@pytest.mark.parametrize("case", UPLOAD_HANDLERS)
def test_every_handler_given_an_upload_claims_it_for_its_session(tmp_path, case):
    """The upload a handler receives is the session's: it is gone once the session ends (and not before)."""
    from studio.config import StudioConfig
    from studio.context import StudioContext

    build, name, call = UPLOAD_HANDLERS[case]
    files = SessionFiles(tmp_path / "root", cache_dir=tmp_path / "cache")
    upload = uploaded(tmp_path / "cache", "not a real media file", name)
    with pytest.raises(gr.Error):
        call(build(StudioContext(StudioConfig(device="cpu"), files)), str(upload), FakeRequest("artist"))
    files.end("someone else")
    assert upload.exists()
    files.end("artist")
    assert not upload.exists()


def test_an_example_an_artist_used_stays_when_their_session_ends(tmp_path, monkeypatch):
    """Clicking an example hands the handler gradio's cached copy of it, which every session shares: the studio tells
    its SessionFiles to keep gradio's examples."""
    from studio.app import build_studio
    from studio.config import build_config
    from studio.context import StudioContext

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    files = SessionFiles(tmp_path / "root")
    build_studio(StudioContext(build_config(models="studio"), files))
    (example,) = (tmp_path / "cache").rglob("chirp.wav")  # the Spectrogram Lab's example sound
    files.claim("artist", str(example))
    files.end("artist")
    assert example.exists()


def test_gradios_own_sweep_leaves_the_examples_it_prepared_at_build(tmp_path, monkeypatch):
    """Gradio prepares each example once; its `delete_cache` sweep of files older than an hour must not take them."""
    from gradio.route_utils import delete_files_created_by_app

    from studio.app import build_studio
    from studio.config import build_config
    from studio.context import StudioContext

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    demo = build_studio(StudioContext(build_config(models="studio"), SessionFiles(tmp_path / "root")))
    examples = sorted((tmp_path / "cache").rglob("*.wav"))
    assert examples  # the Spectrogram Lab's chirp, Sounding Video's lamp hum, ...
    delete_files_created_by_app(demo, age=None)  # the sweep, with every file old enough to go
    assert all(example.exists() for example in examples)


def test_a_picture_uploaded_into_a_canvas_is_removed_at_the_session_end(tmp_path, monkeypatch):
    """The browser's editor uploads its canvas (background, layer, composite) into gradio's cache; gradio
    (type="filepath") hands the handler re-encoded copies, saved in its cache too. Spectrogram Lab claims both: they
    go when the session ends."""
    import hashlib
    import io

    import numpy as np
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData
    from PIL import Image

    from studio.config import StudioConfig
    from studio.context import StudioContext
    from studio.validation import checked_image_input, editor_files

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    editor = checked_image_input(gr.ImageEditor(type="filepath", format="png", image_mode="RGBA"))  # as the tab's
    sent = {}
    for part, shade in [("background", 90), ("layer_0", 0), ("composite", 200)]:
        drawing = io.BytesIO()
        Image.fromarray(np.full((64, 128, 4), shade, np.uint8)).save(drawing, format="png", compress_level=1)
        sent[part] = cache / hashlib.sha256(drawing.getvalue()).hexdigest() / f"{part}.png"  # as /upload saves it
        sent[part].parent.mkdir(parents=True)
        sent[part].write_bytes(drawing.getvalue())
    value = editor.preprocess(EditorData(**{
        key: FileData(path=str(sent[part]), orig_name=f"{part}.png")
        for key, part in [("background", "background"), ("composite", "composite")]},
        layers=[FileData(path=str(sent["layer_0"]), orig_name="layer_0.png")]))
    background, (layer,), composite, _uploads = editor_files(value)
    canvas = list(sent.values()) + [Path(background), Path(layer), Path(composite)]
    assert len(set(canvas)) == 6 and all(path.is_file() and cache in path.parents for path in canvas)
    files = SessionFiles(tmp_path / "root", cache_dir=cache)
    wav, *_ = _lab(StudioContext(StudioConfig(device="cpu"), files)).play_picture(
        value, 1.0, 4, False, "Griffin-Lim", FakeRequest("artist"))
    assert wav.endswith(".wav") and all(path.exists() for path in canvas)
    files.end("artist")
    assert not any(path.exists() for path in canvas)
