"""The studio as one gr.Blocks: a header, one tab per working generator, and About."""

from __future__ import annotations

import contextlib
from pathlib import Path

import gradio as gr

from pipelines.registry import available, forget_trained_weights, register_local_checkpoints
from studio.compute import warm_up
from studio.context import StudioContext
from studio.tabs import about, images_that_sound, impact_sound, sounding_video, spectrogram_lab, train, visual_echoes
from studio.training import RUNS
from studio.validation import checked_number_inputs

HEADER = """
# Synesthesia Studio
Make sound and image together: pictures you can hear, sounds you can see.
"""

# Tabs, in order. A tab is shown only when every pipeline it needs can be loaded (weights present or reachable);
# a tuple in REQUIRES means "any one of these".
TABS = (images_that_sound, impact_sound, sounding_video, visual_echoes, spectrogram_lab, train)


def working_tabs(context: StudioContext) -> list:
    register_local_checkpoints(context.config.checkpoints.get("mm_diffusion", {}))
    return [tab for tab in TABS if all(_can_load(names, context.config.tab(tab.NAME).variant) for names in tab.REQUIRES)]


def _can_load(names: str | tuple[str, ...], variant: str) -> bool:
    """A pipeline name, or a tuple of names of which any one will do."""
    return any(available(name, variant) for name in ((names,) if isinstance(names, str) else names))


def build_studio(context: StudioContext) -> gr.Blocks:
    """Build the UI. Loads no model: pipelines load on first use through pipelines.registry."""
    with gr.Blocks(title="Synesthesia Studio", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(HEADER + f"\nModels: `{context.config.models}` · device: `{context.config.device}`",
                    elem_id="studio-header")
        with gr.Tabs():
            for tab in working_tabs(context):
                tab.build(context)
            weights = about.build(context)
        demo.load(lambda: about.weights_table(context), None, weights)
        demo.load(warm_up, None, None, queue=False, api_visibility="private")

        def end_session(request: gr.Request) -> None:
            RUNS.end(request.session_hash)  # its training stops before its folder goes
            forget_trained_weights(request.session_hash)
            context.files.end(request.session_hash)

        demo.unload(end_session)
    context.files.keep(keep_cached_at_build(demo))  # an example a session used is claimed by it, yet stays for all
    checked_number_inputs(demo)  # by API too, an out-of-range or empty setting gets the handler's plain message
    return demo


def remove_gradio_files(demo: gr.Blocks) -> None:
    """Remove every file gradio keeps for this studio in its cache — the artists' uploads and its copies of the files
    handlers returned — and the folders that leaves empty; examples stay, as gradio keeps them. Gradio does this
    itself only when its server shuts down by itself, which a SIGTERM or SIGINT skips; other apps' files in a shared
    cache are not touched."""
    keep = {path for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())}
    for files in demo.temp_file_sets:
        for name in set(files) - keep:
            path = Path(name)
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when now empty


def keep_cached_at_build(demo: gr.Blocks) -> set[str]:
    """The files gradio put in its cache while the studio was built, shared by every session: the examples (ready to
    load on a click) and starting values. Gradio prepares them once, so each component is told to keep its own:
    gradio's hourly sweep (`delete_cache`) would otherwise remove them after an hour, and a click on the example
    would then hand the handler a missing file."""
    for block in demo.blocks.values():
        if hasattr(block, "temp_files") and hasattr(block, "keep_in_cache"):
            block.keep_in_cache.update(block.temp_files)
    return set().union(*demo.temp_file_sets, *(getattr(block, "keep_in_cache", ()) for block in demo.blocks.values()))
