"""`@spaces.GPU` for GPU-bound handlers on a ZeroGPU Space; a no-op everywhere else."""

from __future__ import annotations

from collections.abc import Callable


def gpu_handler(handler: Callable, seconds: int) -> Callable:
    """Wrap `handler` in `spaces.GPU(duration=seconds)` when the `spaces` package is importable and seconds > 0."""
    if seconds <= 0:
        return handler
    try:
        import spaces
    except ImportError:
        return handler
    return spaces.GPU(duration=seconds)(handler)
