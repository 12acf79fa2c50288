"""What a session leaves on the disk, seen from the browser: previews do not outlive their job, a tab closed mid-request
leaves no folder behind, and the files of an ended session are no longer served.

The studio runs with its temporary folders (the session root and gradio's cache) under this test's own folder, and a
1-second heartbeat, so a closed tab is noticed at once."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.test_studio_in_chromium import browser, generate_in_steps, open_tab, serve, upload  # noqa: F401
from tests.factories import EXAMPLES

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("disk")


@pytest.fixture(scope="module")
def studio_url(disk):
    (disk / "cache").mkdir()
    yield from serve("--models", "studio", TMPDIR=str(disk), GRADIO_TEMP_DIR=str(disk / "cache"),
                     GRADIO_HEARTBEAT_INTERVAL="1")


def session_folders(disk: Path) -> set[Path]:
    """Every session's folder: the subfolders of the studio's session root (`synesthesia-…`, not its examples store
    or a video being muxed)."""
    roots = [path for path in disk.glob("synesthesia-*")
             if not path.name.startswith(("synesthesia-examples-", "synesthesia-mux-"))]
    return {folder for root in roots for folder in root.iterdir() if folder.is_dir()}


def cached(disk: Path, pattern: str) -> set[str]:
    """Names of the files matching `pattern` in gradio's cache (which it serves them from)."""
    return {path.name for path in (disk / "cache").rglob(pattern)}


def wait_until(condition, what: str, timeout_s: float = 60.0) -> None:
    """Poll `condition` until it holds; a guard against hanging, not a timed assertion."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.25)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def make_a_sounding_video(page, steps: str) -> None:
    generate_in_steps(page, "sv", steps)
    page.locator("#sv-note").get_by_text("frames of 16×16").wait_for(timeout=120_000)


def test_previews_are_not_kept_past_their_job(browser, studio_url, disk):  # noqa: F811
    """8 steps stream a preview picture (one every 5 steps); once the job is done one is left (the last shown), in the
    session's folder and in gradio's cache alike."""
    before_folders, before_cached = session_folders(disk), cached(disk, "preview-*.png")
    page = open_tab(browser, studio_url, "Sounding Video")
    make_a_sounding_video(page, "8")
    (folder,) = session_folders(disk) - before_folders
    left = {path.name for path in folder.glob("preview-*.png")}
    assert len(left) == 1 and cached(disk, "preview-*.png") - before_cached == left
    page.close()


def test_a_tab_closed_mid_request_leaves_no_orphan_folder(browser, studio_url, disk):  # noqa: F811
    """A 1000-step job is running (its previews are on the disk) when its tab closes: its folder goes and nothing of
    it comes back. A second tab's job, which waits for the tab's one worker, runs only once the first job has ended."""
    before = session_folders(disk)
    closing = open_tab(browser, studio_url, "Sounding Video")
    generate_in_steps(closing, "sv", "1000")
    wait_until(lambda: any(any(folder.glob("preview-*.png")) for folder in session_folders(disk) - before),
               "the job wrote its first preview")
    (orphan,) = session_folders(disk) - before
    written = {path.name for path in orphan.iterdir()}
    closing.close()
    wait_until(lambda: not orphan.exists(), "the closed tab's folder was removed")

    page = open_tab(browser, studio_url, "Sounding Video")
    make_a_sounding_video(page, "2")  # served after the closed tab's job has ended
    assert not orphan.exists() and not written & cached(disk, "*")
    page.close()


def test_the_files_of_an_ended_session_are_no_longer_served(browser, studio_url, disk):  # noqa: F811
    page = open_tab(browser, studio_url, "Spectrogram Lab")
    upload(page, "#lab-sound", EXAMPLES / "chirp.wav", page.locator("#lab-sound").get_by_text("Drop Audio Here"))
    page.locator("#lab-draw").click()
    page.locator("#lab-seen-note").get_by_text("1.50 s at 16000 Hz").wait_for(timeout=90_000)
    picture = page.locator("#lab-seen-image img").get_attribute("src")
    assert status(picture) == 200
    page.close()
    wait_until(lambda: status(picture) in (403, 404), "the picture's link stopped working")  # gradio: 403
    assert Path(picture.split("file=", 1)[1]).name not in cached(disk, "*")


def test_an_artists_upload_is_gone_once_their_tab_closes(browser, studio_url, disk, tmp_path):  # noqa: F811
    """A recording of the artist's own (not an example: those stay for everyone) drawn in the Spectrogram Lab leaves
    gradio's cache when the tab closes."""
    recording = own_recording(tmp_path / "my-take.wav")
    page = open_tab(browser, studio_url, "Spectrogram Lab")
    upload(page, "#lab-sound", recording, page.locator("#lab-sound").get_by_text("Drop Audio Here"))
    page.locator("#lab-draw").click()
    page.locator("#lab-seen-note").get_by_text("1.50 s at 16000 Hz").wait_for(timeout=90_000)
    assert recording.name in cached(disk, "*")
    page.close()
    wait_until(lambda: recording.name not in cached(disk, "*"), "the upload was removed")


def own_recording(path: Path) -> Path:
    """The example chirp at half its loudness: a file no example shares a path in gradio's cache with."""
    import soundfile

    chirp, rate = soundfile.read(EXAMPLES / "chirp.wav", dtype="float32")
    soundfile.write(path, 0.5 * chirp, rate)
    return path


def test_a_studio_stopped_by_sigterm_leaves_no_session_files(browser, tmp_path):  # noqa: F811
    """A studio of its own takes an artist's recording (not an example: gradio keeps those) and makes a picture and
    its sound, then is stopped as a service would be (SIGTERM): its session root is gone, and so are the upload and
    gradio's served copies of the files it wrote, from a cache folder it was given (and so may share)."""
    recording = own_recording(tmp_path / "my-recording.wav")
    (tmp_path / "cache").mkdir()
    server = serve("--models", "studio", TMPDIR=str(tmp_path), GRADIO_TEMP_DIR=str(tmp_path / "cache"))
    page = open_tab(browser, next(server), "Spectrogram Lab")
    upload(page, "#lab-sound", recording, page.locator("#lab-sound").get_by_text("Drop Audio Here"))
    page.locator("#lab-draw").click()
    page.locator("#lab-seen-note").get_by_text("1.50 s at 16000 Hz").wait_for(timeout=90_000)
    (folder,) = session_folders(tmp_path)
    written = {path.name for path in folder.iterdir()}
    assert written & cached(tmp_path, "*") and recording.name in cached(tmp_path, "*")  # served from gradio's cache
    next(server, None)  # SIGTERM while the page is still open, then wait for the studio to exit
    assert not session_folders(tmp_path) and not (written | {recording.name}) & cached(tmp_path, "*")
    page.close()
