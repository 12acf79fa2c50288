"""What an artist waits for in the Sounding Video tab: Generate pressed, at the defaults, until the clip is shown.

Starts `python app.py --models studio`, opens it in Chromium (Playwright), opens the Sounding Video tab, waits
`--think` seconds (an artist looking at the tab; the studio imports its libraries meanwhile) and presses Generate
`--runs` times, each time timing the click until the new clip's video is in the page. The baseline, measured in the
same run: the same sampling (the bundled studio MM-Diffusion, the tab's default sampler, steps and resampling rounds)
called directly, with as many torch threads as the studio gives itself. Prints a table and writes
benchmarks/results/sounding_video_tab.json.

    python -m benchmarks.sounding_video_tab [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks.startup import free_port
from studio.compute import leave_a_core_for_the_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sounding_video_tab.json"
CHROMIUM = "/usr/bin/chromium"
GOAL_SECONDS = 30.0


def clicks_to_clip(url: str, runs: int, think: float) -> list[float]:
    """Seconds from each click on Generate until the new clip's video is in the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.get_by_role("tab", name="Sounding Video").click()
        time.sleep(think)
        video = page.locator("#sv-video video")
        seconds = []
        for _ in range(runs):
            before = video.get_attribute("src") if video.count() else None
            start = time.perf_counter()
            page.locator("#sv-generate").click()
            while not video.count() or video.get_attribute("src") in (before, None):
                time.sleep(0.05)
            seconds.append(time.perf_counter() - start)
        browser.close()
    return seconds


def through_the_studio(runs: int, think: float) -> list[float]:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "app.py", "--models", "studio", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        while not answers(url):
            if server.poll() is not None:
                raise RuntimeError("the studio exited before serving")
            time.sleep(0.2)
        return clicks_to_clip(url, runs, think)
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def pipeline_alone(runs: int) -> list[float]:
    """The tab's default joint sampling called directly (no server, no page), after one warm-up step."""
    import torch

    from pipelines.mm_diffusion.entries import STUDIO_JOINT
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
    from studio.tabs.sounding_video import SAMPLERS, STUDIO_WEIGHTS, default_sampler, default_steps

    pipe = MMDiffusionPipeline.from_pretrained(ROOT / "assets" / "models" / "mm_diffusion")
    arguments = {"sampler": SAMPLERS[default_sampler(STUDIO_WEIGHTS)],
                 "num_inference_steps": default_steps(STUDIO_WEIGHTS), "resample_rounds": STUDIO_JOINT.resample_rounds}
    pipe(sampler="ddpm", num_inference_steps=1)
    seconds = []
    for seed in range(runs):
        start = time.perf_counter()
        pipe(**arguments, generator=torch.Generator().manual_seed(seed))
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--think", type=float, default=3.0, help="seconds between opening the tab and the first click")
    args = parser.parse_args()
    leave_a_core_for_the_server()  # the baseline gets the studio's threads (before torch is imported)

    studio = through_the_studio(args.runs, args.think)
    alone = pipeline_alone(args.runs)
    rows = {"first click (s)": (alone[0], studio[0]), "median of the clicks (s)": (statistics.median(alone),
                                                                                     statistics.median(studio)),
            "slowest click (s)": (max(alone), max(studio))}
    print(f"{'measure':<28}{'pipeline':>10}{'studio':>10}{'ratio':>8}")
    for name, (baseline, through) in rows.items():
        print(f"{name:<28}{baseline:>10.1f}{through:>10.1f}{through / baseline:>8.2f}")
    print(f"goal: every clip in under {GOAL_SECONDS:g} s -> {'met' if max(studio) < GOAL_SECONDS else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}", "torch_threads": int(os.environ["OMP_NUM_THREADS"]),
        "runs": args.runs, "think_s": args.think, "baseline": "the same sampling called directly in this process",
        "clicks_s": studio, "pipeline_s": alone,
        "results": {name: {"pipeline": b, "studio": s, "ratio": s / b} for name, (b, s) in rows.items()},
        "goal_s": GOAL_SECONDS,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
