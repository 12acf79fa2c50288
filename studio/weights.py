"""Weights the artist trained (the Train tab) as choices in a generator tab's weights dropdown.

A trained folder is a variant of a registry entry, owned by the session that trained it
(`pipelines.registry.register_trained_weights`). A tab lists the session's own next to its usual weights, refreshes
the list when it is opened, and turns the artist's choice back into a variant to load."""

from __future__ import annotations

import gradio as gr

from pipelines.registry import trained_weights

TRAINED_SUFFIX = " (trained here)"


def trained_choices(entry: str, session: str | None) -> list[tuple[str, str]]:
    """(label, variant) of the session's trained weights for `entry`."""
    return [(f"{weights.label}{TRAINED_SUFFIX}", weights.variant) for weights in trained_weights(entry, session)]


def is_trained(entry: str, choice, session: str | None) -> bool:
    return any(value == choice for _, value in trained_choices(entry, session))


def chosen_variant_for(entry: str, choice, default: str, session: str | None) -> str:
    """The variant to load for the dropdown's `choice`: a trained one of this session's, else `default`."""
    if choice in (None, "", default):
        return default
    if is_trained(entry, choice, session):
        return choice
    raise gr.Error("Those trained weights are not here any more (their session ended or their folder was cleared): "
                   "choose other weights.")


def refresh(base: list[tuple[str, str]], entry: str):
    """A handler for the tab's `select`: the dropdown's choices now (`base` + the session's trained weights); the
    current choice is kept while it is still one."""

    def handler(current, request: gr.Request):
        choices = base + trained_choices(entry, request.session_hash)
        values = [value for _, value in choices]
        return gr.update(choices=choices, value=current if current in values else (values[0] if values else None))

    return handler
