"""Where `paper` weights come from: the local Hugging Face cache, or the Hub when it can be reached.

The registry asks `weights_missing` before choosing a variant, so `--models auto` falls back to studio weights with
a reason instead of failing mid-download.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from pathlib import Path


def weights_missing(repo_id: str, filenames: tuple[str, ...], offline: bool) -> str | None:
    """None when every file is cached or can be downloaded now; otherwise why not, as a sentence fragment."""
    if all(cached_file(repo_id, name) for name in filenames):
        return None
    if offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        return f"({repo_id}) are not in the local cache and the studio is offline"
    if not hub_reachable():
        return f"({repo_id}) are not in the local cache and the Hub is unreachable"
    return None


def token_configured() -> bool:
    """Whether a Hugging Face token is set: HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), or the one `hf auth login` stored.

    Read locally: `huggingface_hub.get_token` may refresh an OAuth token over the network.
    """
    if any(os.environ.get(name, "").strip() for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")):
        return True
    from huggingface_hub import constants

    stored = Path(constants.HF_TOKEN_PATH)
    return stored.is_file() and bool(stored.read_text().strip())


def cached_file(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def download(repo_id: str, filename: str) -> Path:
    """The file from the cache, or downloaded into it (honours HF_HUB_OFFLINE)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens (checked once per process)."""
    from huggingface_hub import constants

    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False
