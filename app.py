"""Synesthesia Studio: `python app.py [--share] [--host H] [--port P] [--models auto|studio|paper] ...`."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipelines.registry import MODEL_CHOICES
from studio.compute import leave_a_core_for_the_server

DEVICES = ("auto", "cpu", "cuda", "mps")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Synesthesia Studio: a browser studio for making sound and image together.",
    )
    on_space = "SPACE_ID" in os.environ
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port to listen on (default 7860, or the GRADIO_SERVER_PORT environment variable)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (workshops)")
    parser.add_argument("--models", choices=MODEL_CHOICES, default="auto",
                        help="weights: paper where available else studio (auto), bundled studio weights only "
                             "(never touches the network), or paper only")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where models run (default: best available)")
    parser.add_argument("--offline", action="store_true",
                        help="never contact the Hugging Face Hub; use only local files (sets HF_HUB_OFFLINE=1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    leave_a_core_for_the_server()  # before torch is imported
    if not port_is_free(args.host, args.port):
        sys.exit(f"error: port {args.port} is busy (another studio or program is using it); "
                 f"choose another with --port, e.g. --port {args.port + 1}")
    if args.offline or args.models == "studio":
        os.environ["HF_HUB_OFFLINE"] = "1"
    own_cache = use_own_gradio_cache()  # before gradio is imported: some of it reads GRADIO_TEMP_DIR then
    from pipelines.devices import choose_device
    from pipelines.registry import REGISTRY
    from studio.app import build_studio, remove_gradio_files
    from studio.config import build_config
    from studio.context import StudioContext
    from studio.sessions import SessionFiles

    files = SessionFiles()
    demo = None

    def remove_everything() -> None:
        """Stop serving, then remove the artists' uploads, gradio's copies and every session's folder."""
        if demo is not None:
            demo.close(verbose=False)  # nothing new is uploaded or written while the files go
            remove_gradio_files(demo)
        files.remove_all()
        if own_cache:
            shutil.rmtree(own_cache, ignore_errors=True)

    atexit.register(remove_everything)
    remove_files_on_signals(remove_everything)  # from here: a Ctrl+C while the studio is built leaves nothing too
    try:
        device = choose_device(args.device) if args.device != "auto" else "auto"
        config = build_config(models=args.models, device=device, offline=args.offline)
    except ValueError as error:
        sys.exit(f"error: {error}")
    REGISTRY.configure(default_variant=args.models, device=args.device, offline=args.offline or args.models == "studio")
    demo = build_studio(StudioContext(config, files))
    demo.queue(max_size=config.queue_size, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=[str(files.root)],
                max_file_size=f"{config.max_upload_mb}mb", footer_links=["api", "settings"])


def use_own_gradio_cache() -> Path | None:
    """Give gradio a cache folder of the studio's own (GRADIO_TEMP_DIR), made now, unless one was set; called before
    gradio is imported. Gradio's default, <tmp>/gradio, is shared by every gradio app of the user, so only a folder
    of our own can be removed whole when the studio stops. Returns that folder, or None when GRADIO_TEMP_DIR was
    given (then only the files this studio put there are removed: `studio.app.remove_gradio_files`)."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="gradio-synesthesia-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def remove_files_on_signals(remove: Callable[[], None]) -> None:
    """On SIGTERM (a Space or service stopping) and SIGINT (Ctrl+C): `remove` the studio's files, then exit.
    atexit alone is not enough: SIGTERM's default action ends the process without running it, and gradio's own
    clean-up of its cache runs only when its server shuts down by itself."""

    def remove_and_exit(signum, frame) -> None:
        remove()
        sys.exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, remove_and_exit)


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (checked before the studio is built, to fail in a second)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


if __name__ == "__main__":
    main()
