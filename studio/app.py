"""The studio as one gr.Blocks: a header, one tab per working generator, and About."""

from __future__ import annotations

import gradio as gr

from pipelines.registry import available, forget_trained_weights, register_local_checkpoints
from studio.context import StudioContext
from studio.tabs import about, images_that_sound, impact_sound, sounding_video, spectrogram_lab, train, visual_echoes
from studio.training import RUNS

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

        def end_session(request: gr.Request) -> None:
            RUNS.end(request.session_hash)  # its training stops before its folder goes
            forget_trained_weights(request.session_hash)
            context.files.end(request.session_hash)

        demo.unload(end_session)
    return demo
