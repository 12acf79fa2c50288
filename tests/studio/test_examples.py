"""Every tab offers examples: small files in assets/examples that fit the studio weights."""

from __future__ import annotations

import soundfile

from pipelines.media import video_info
from tests.factories import EXAMPLES


def test_example_files_are_small_and_readable():
    for path in EXAMPLES.iterdir():
        assert path.stat().st_size < 400_000, path
    glass = soundfile.info(EXAMPLES / "glass-ring.wav")
    assert glass.duration >= 3.7  # the whole ring: Impact Sound's estimate hears it out
    for name in ("glass-hit.mp4", "bounce.mp4"):
        info = video_info(EXAMPLES / name)
        assert info.seconds > 0.5 and info.size == (64, 64), name


def test_every_generator_tab_offers_examples(tmp_path):
    """Every tab the studio weights show (Train and About aside) has examples."""
    import gradio as gr

    from studio.app import working_tabs
    from studio.config import build_config
    from studio.context import StudioContext
    from studio.sessions import SessionFiles

    context = StudioContext(build_config(models="studio"), SessionFiles(tmp_path))
    tabs = [tab for tab in working_tabs(context) if tab.NAME != "train"]
    assert {tab.NAME for tab in tabs} >= {"images_that_sound", "impact_sound", "sounding_video", "spectrogram_lab"}
    for tab in tabs:
        with gr.Blocks() as demo:
            tab.build(context)
        assert any(isinstance(block, gr.Dataset) and block.samples for block in demo.blocks.values()), tab.NAME
