"""Start-up speed: import time, and time from `python app.py` to the first page served.

Each is measured for the studio and, in the same run, for a baseline: a one-button gr.Blocks app (the least a
Gradio app can cost on this machine). Prints a table and writes benchmarks/results/startup.json.

    python -m benchmarks.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
BASELINE_APP = """
import sys, gradio as gr
with gr.Blocks() as demo:
    gr.Button("hello")
demo.launch(server_port=int(sys.argv[1]))
"""
GOAL_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seconds_to_first_page(command: list[str], port: int) -> float:
    """Wall time from process start until GET / answers 200."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"{command} exited before serving") from None
                time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=30)


def first_page(command_for_port) -> float:
    port = free_port()
    return seconds_to_first_page(command_for_port(port), port)


def import_seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True)
    return time.perf_counter() - start


def median_of(runs: int, measure) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    rows = {
        "import (s)": (
            median_of(args.runs, lambda: import_seconds("import gradio")),
            median_of(args.runs, lambda: import_seconds("import app, studio.app, studio.tabs.spectrogram_lab")),
        ),
        "launch to first page (s)": (
            median_of(args.runs, lambda: first_page(lambda port: [sys.executable, "-c", BASELINE_APP, str(port)])),
            median_of(args.runs, lambda: first_page(
                lambda port: [sys.executable, "app.py", "--models", "studio", "--port", str(port)])),
        ),
    }
    print(f"{'measure':<28}{'baseline':>10}{'studio':>10}{'ratio':>8}")
    for name, (baseline, studio) in rows.items():
        print(f"{name:<28}{baseline:>10.2f}{studio:>10.2f}{studio / baseline:>8.2f}")
    served = rows["launch to first page (s)"][1]
    print(f"goal: first page in under {GOAL_SECONDS:g} s -> {'met' if served < GOAL_SECONDS else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}", "runs": args.runs, "baseline": "one-button gr.Blocks app",
        "results": {name: {"baseline": b, "studio": s, "ratio": s / b} for name, (b, s) in rows.items()},
        "goal_first_page_s": GOAL_SECONDS,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
