"""The real app on a free localhost port, driven in Debian's Chromium by Playwright, as an artist would use it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.factories import EXAMPLES, ROOT

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


def open_tab(browser, url: str, tab: str):
    """A new page on the studio at `url`, showing `tab`."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url)
    page.get_by_role("tab", name=tab).click()
    return page


@pytest.fixture(scope="module")
def page(browser, studio_url):
    page = open_tab(browser, studio_url, "Spectrogram Lab")
    page.get_by_text("Picture → sound").wait_for()
    return page


def upload(page, component: str, path, prompt) -> None:
    """Upload through the component's file input and wait until the component shows the file."""
    page.locator(f"{component} input[type=file]").set_input_files(str(path))
    prompt.wait_for(state="hidden", timeout=30_000)


def set_slider(page, slider: str, value: str) -> None:
    """Type `value` into a slider's number box until the slider holds it: an accordion that was just opened mounts its
    sliders' initial values over what was typed in the first moments."""
    from playwright.sync_api import expect

    number, bar = page.locator(f"{slider} input[type=number]"), page.locator(f"{slider} input[type=range]")
    for _ in range(10):
        number.fill(value)
        number.press("Enter")
        try:
            expect(bar).to_have_value(value, timeout=2_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{slider} did not take the value {value}")


def open_settings(page, slider: str) -> None:
    """Click the shown tab's Settings until `slider` shows: a click that lands before the page is live is lost. Only
    a tab's own Settings: the footer's opens a dialog that covers the page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    number = page.locator(f"{slider} input[type=number]")
    for _ in range(5):
        page.get_by_role("tabpanel").get_by_role("button", name="Settings").filter(visible=True).first.click()
        try:
            number.wait_for(state="visible", timeout=5_000)
            return
        except PlaywrightTimeout:
            if number.is_visible():
                return
    raise AssertionError(f"the Settings holding {slider} did not open")


def generate_in_steps(page, tab: str, steps: str) -> None:
    """Open the tab's Settings, set `#{tab}-steps` and click `#{tab}-generate`."""
    open_settings(page, f"#{tab}-steps")
    set_slider(page, f"#{tab}-steps", steps)
    page.locator(f"#{tab}-generate").click()


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


def huge_png(path, side: int):
    """A real side×side black grayscale PNG, written row by row (a few hundred kB; 1.6 GB once decoded as RGBA)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row, body = zlib.compressobj(9), bytes(side + 1), []
    for _ in range(side):
        body.append(packer.compress(row))
    body.append(packer.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b""))
    return path


def test_a_huge_picture_is_called_too_big_not_missing(browser, studio_url, tmp_path):
    """A 20000×20000 PNG does not fit the browser's editor canvas, so it never reaches the server (by API the server
    reads its header and refuses it before decoding: tests/studio/test_validation.py); the message says it is too big
    and what to do, not only that there is no picture."""
    page = open_tab(browser, studio_url, "Spectrogram Lab")
    page.locator("#lab-picture canvas").first.wait_for(state="attached")
    upload(page, "#lab-picture", huge_png(tmp_path / "huge.png", 20_000),
           page.locator("#lab-picture").get_by_text("Upload an image"))
    page.locator("#lab-play").click()
    page.get_by_text("too big for the browser to open").first.wait_for(timeout=60_000)
    page.close()


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
    page = open_tab(browser, studio_url, "Impact Sound")
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
    from tests.factories import TINY, cached_repo, tiny_model_folder, write_auffusion_vocoder

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
    open_settings(page, "#its-steps")
    for slider, value in (("#its-steps", "20"), ("#its-seconds", "1.28")):
        set_slider(page, slider, value)
    page.locator("#its-generate").click()
    page.locator("#its-note").get_by_text("Seeds").wait_for(timeout=120_000)
    assert page.locator("#its-gallery img").count() >= 1
    page.close()


def test_studio_images_that_sound_makes_a_sample(browser, studio_url):
    """The bundled studio weights, a few steps: a spectrogram and its files come back."""
    page = open_tab(browser, studio_url, "Images that Sound")
    generate_in_steps(page, "its", "4")
    page.locator("#its-note").get_by_text("Seed").first.wait_for(timeout=120_000)
    assert page.locator("#its-gallery img").count() >= 1
    page.close()


def test_studio_sounding_video_makes_an_mp4_and_a_wav(browser, studio_url):
    """The bundled studio MM-Diffusion model, a few DDPM steps: the mp4 plays in the page, mp4 and wav download."""
    page = open_tab(browser, studio_url, "Sounding Video")
    generate_in_steps(page, "sv", "5")
    page.locator("#sv-note").get_by_text("frames of 16×16").wait_for(timeout=120_000)
    page.locator("#sv-video video").wait_for()
    files = page.locator("#sv-files").inner_text()
    assert ".mp4" in files and ".wav" in files
    page.close()


def test_studio_sounding_video_makes_a_clip_with_mm_ldm(browser, studio_url):
    """MM-LDM chosen in the Weights dropdown: its own settings replace MM-Diffusion's; at 2 DiT and 2 decoder steps it
    makes its 32×32 clip, played in the page, with mp4 and wav to download."""
    page = open_tab(browser, studio_url, "Sounding Video")
    page.locator("#sv-weights input").click()
    page.get_by_role("option", name="MM-LDM · studio (toy world)").click()
    page.locator("#sv-format").get_by_text("8 frames of 32×32").wait_for(timeout=60_000)  # MM-LDM is loaded
    open_settings(page, "#sv-ldm-steps")
    assert not page.locator("#sv-steps").is_visible()  # MM-Diffusion's steps are hidden
    set_slider(page, "#sv-ldm-steps", "2")
    set_slider(page, "#sv-decoder-steps", "2")
    page.locator("#sv-generate").click()
    page.locator("#sv-note").get_by_text("8 frames of 32×32").wait_for(timeout=120_000)
    page.locator("#sv-video video").wait_for()
    files = page.locator("#sv-files").inner_text()
    assert ".mp4" in files and ".wav" in files
    page.close()


def test_studio_visual_echoes_hears_a_bundled_example_picture(browser, studio_url):
    """The bundled Visual Echoes weights: a toy-world picture uploaded, 4 decoding iterations, its sound comes back."""
    page = open_tab(browser, studio_url, "Visual Echoes")
    page.locator("#ve-picture canvas").first.wait_for(state="attached")  # the editor drops uploads before this
    picture = min((ROOT / "assets" / "models" / "visual_echoes" / "examples").glob("*.png"))
    upload(page, "#ve-picture", picture, page.locator("#ve-picture").get_by_text("Upload an image"))
    generate_in_steps(page, "ve", "4")
    page.locator("#ve-note").get_by_text("Griffin-Lim made the sound").wait_for(timeout=120_000)
    assert page.locator("#ve-audio audio").count() >= 1
    assert page.locator("#ve-gallery img").count() >= 1
    page.close()


def test_studio_impact_diffusion_scores_a_silent_video(browser, studio_url, tmp_path):
    """The bundled studio diffusion model hears a toy glass hit, its physics retrieved from its training clips (the
    mode table stays empty: it is not needed)."""
    from tests.factories import write_glass_video

    video = tmp_path / "glass.mp4"
    hit = write_glass_video(video)
    page = open_tab(browser, studio_url, "Impact Sound")
    upload(page, "#impact-video", video, page.locator("#impact-video").get_by_text("Drop Video Here"))
    page.locator("#impact-hits textarea").fill(f"{hit:.3f}")
    page.locator("#impact-sound-source").get_by_text("physics retrieved from the video").click()
    page.locator("#impact-score").click()
    page.locator("#impact-video-note").get_by_text("physics retrieved from training clips of glass").wait_for(
        timeout=120_000)
    assert page.locator("#impact-scored video").get_attribute("src").endswith(".mp4")
    page.close()


def test_the_train_tab_starts_and_stops_a_tiny_run(browser, studio_url):
    """A tiny Images that Sound run on a picture and a sound: the loss streams in, Stop ends it and says how to go on."""
    import re

    page = open_tab(browser, studio_url, "Train")
    page.locator("#train-hardware").get_by_text(re.compile("GPU")).wait_for(timeout=30_000)  # the tab has opened
    page.locator("#train-uploads input[type=file]").set_input_files([str(EXAMPLES / "rings.png"),
                                                                     str(EXAMPLES / "chirp.wav")])
    page.locator("#train-uploads").get_by_text("chirp", exact=True).wait_for(timeout=30_000)  # shown as uploaded
    page.locator("#train-name").get_by_role("textbox").fill("browser run")
    open_settings(page, "#train-steps")
    set_slider(page, "#train-steps", "3000")  # far more than the test waits for: Stop ends it
    set_slider(page, "#train-batch", "2")
    page.locator("#train-size").get_by_text("tiny").click()
    page.locator("#train-start").click()
    page.locator("#train-status").get_by_text(re.compile(r"Step \d+ of 4000")).wait_for(timeout=120_000)
    assert page.locator("#train-curve img").count() == 1
    page.locator("#train-stop").click()
    page.locator("#train-status").get_by_text("Stopped").wait_for(timeout=60_000)
    page.close()
