"""Media writing lives in `pipelines.media` (the command-line tools write the same files); re-exported for tabs."""

from pipelines.media import save_playhead_video, save_png, save_wav, to_uint8

__all__ = ["save_playhead_video", "save_png", "save_wav", "to_uint8"]
