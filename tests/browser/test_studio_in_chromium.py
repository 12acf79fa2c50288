"""The real app on a free localhost port, driven in Debian's Chromium by Playwright, as an artist would use it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def serve(*flags: str, **env: str):
    """Start `python app.py` on a free port; yields its URL, stops it afterwards."""
    port = free_port()
    environment = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **env)
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *flags], cwd=ROOT, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while not answers(url):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("the studio did not start serving")
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def studio_url():
    yield from serve("--models", "studio")


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run tests/install_test_extras.sh")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, studio_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(studio_url)
    page.get_by_role("tab", name="Spectrogram Lab").click()
    page.get_by_text("Picture → sound").wait_for()
    return page


def upload(page, component: str, path, prompt) -> None:
    """Upload through the component's file input and wait until the component shows the file."""
    page.locator(f"{component} input[type=file]").set_input_files(str(path))
    prompt.wait_for(state="hidden", timeout=30_000)


def set_slider(page, slider: str, value: str) -> None:
    number = page.locator(f"{slider} input[type=number]")
    number.fill(value)
    number.press("Enter")


def test_a_picture_becomes_sound_and_a_video(page):
    page.locator("#lab-picture canvas").first.wait_for(state="attached")  # the editor drops uploads before this
    upload(page, "#lab-picture", EXAMPLES / "rings.png", page.locator("#lab-picture").get_by_text("Upload an image"))
    page.locator("#lab-play").click()
    page.locator("#lab-heard-note").get_by_text("Round-trip difference").wait_for(timeout=90_000)
    assert page.locator("#lab-heard-audio audio").count() >= 1  # the player holds the sound
    downloads = page.locator("#lab-heard-files").inner_text()
    assert all(suffix in downloads for suffix in (".wav", ".png", ".mp4"))
    video = page.locator("#lab-heard-video video")
    video.wait_for(state="attached")
    assert video.get_attribute("src").endswith(".mp4")


def test_a_corrupt_upload_gets_a_clear_message_and_the_studio_keeps_serving(page, tmp_path, studio_url):
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(os.urandom(6000))
    upload(page, "#lab-sound", corrupt, page.locator("#lab-sound").get_by_text("Drop Audio Here"))
    page.locator("#lab-draw").click()
    page.get_by_text("We could not read 'broken.wav' as audio").wait_for(timeout=60_000)

    assert answers(studio_url)
    page.locator("#lab-sound").get_by_role("button", name="Clear").click()
    upload(page, "#lab-sound", EXAMPLES / "chirp.wav", page.locator("#lab-sound").get_by_text("Drop Audio Here"))
    page.locator("#lab-draw").click()
    page.locator("#lab-seen-note").get_by_text("1.50 s at 16000 Hz").wait_for(timeout=90_000)
    assert page.locator("#lab-seen-image img").count() == 1


def test_a_reference_hit_fills_the_impact_mode_table(browser, studio_url, tmp_path):
    import re

    import numpy as np
    import soundfile

    from pipelines.impact_sound.modal import Modes, synthesize

    hit = tmp_path / "hit.wav"  # two ringing modes, struck 0.1 s into the recording
    modes = Modes(frequencies=[440.0, 1187.0], powers=[0.0, -6.0], decays=[0.15, 0.08])
    soundfile.write(hit, np.concatenate([np.zeros(4410), synthesize(modes, duration=0.5)]), 44100)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(studio_url)
    page.get_by_role("tab", name="Impact Sound").click()
    upload(page, "#impact-reference", hit, page.locator("#impact-reference").get_by_text("Drop Audio Here"))
    page.locator("#impact-estimate").click()
    page.locator("#impact-note").get_by_text("2 modes estimated (refined)").wait_for(timeout=60_000)
    page.locator("#impact-modes").get_by_text(re.compile(r"^1187\.")).filter(visible=True).first.wait_for()
    downloads = page.locator("#impact-downloads")
    downloads.get_by_text(".json").wait_for()
    assert ".wav" in downloads.inner_text()
    page.close()


@pytest.fixture(scope="module")
def paper_weights_url(tmp_path_factory):
    """The studio with tiny random stand-ins for the paper's Images that Sound weights in its Hugging Face cache."""
    from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
    from tests.conftest import cached_repo
    from tests.test_images_that_sound import tiny_model_folder
    from tests.test_vocoders import TINY, write_auffusion_vocoder

    cache = tmp_path_factory.mktemp("hub")
    tiny_model_folder(cached_repo(cache, PAPER_IMAGE_MODEL), seed=0)
    audio = cached_repo(cache, PAPER_AUDIO_MODEL)
    tiny_model_folder(audio, seed=1)
    write_auffusion_vocoder(audio, TINY)
    yield from serve("--offline", HF_HUB_CACHE=str(cache))


def test_images_that_sound_forms_live_and_returns_files(browser, paper_weights_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(paper_weights_url)
    page.get_by_role("tab", name="Images that Sound").wait_for()
    page.get_by_role("button", name="Settings").filter(visible=True).first.click()
    for slider, value in (("#its-steps", "20"), ("#its-seconds", "1.28")):
        set_slider(page, slider, value)
    page.locator("#its-generate").click()
    page.locator("#its-note").get_by_text("Seeds").wait_for(timeout=120_000)
    assert page.locator("#its-gallery img").count() >= 1
    page.close()



def test_studio_images_that_sound_makes_a_sample(browser, studio_url):
    """The bundled studio weights, a few steps: a spectrogram and its files come back."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(studio_url)
    page.get_by_role("tab", name="Images that Sound").click()
    page.get_by_role("button", name="Settings").filter(visible=True).first.click()
    set_slider(page, "#its-steps", "4")
    page.locator("#its-generate").click()
    page.locator("#its-note").get_by_text("Seed").first.wait_for(timeout=120_000)
    assert page.locator("#its-gallery img").count() >= 1
    page.close()
