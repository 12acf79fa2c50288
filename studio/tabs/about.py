"""About: what each generator does, which weights each tab is using right now, and the papers to cite."""

from __future__ import annotations

import gradio as gr

from pipelines.registry import describe
from studio.context import StudioContext

# What each tab does, by tab name (a tab not listed here is still shown, with its models, from the registry).
WHAT = {
    "images_that_sound":
        "Two prompts make one spectrogram that looks like the image prompt and sounds like the audio prompt: an image "
        "model and an audio model denoise one latent together (or the paper's imprint and SDS baselines); watch it "
        "form, rank several samples by CLIP and CLAP, colorize the best. Outputs png, wav and a playhead mp4.",
    "impact_sound":
        "Estimates the physics of a recorded hit (each ringing mode's frequency, power and decay), or starts from a "
        "material; edit the modes or pitch, damping and brightness and hear each edit at once (modal synthesis, no "
        "weights); finds the hits in a silent video and scores it with one impact per hit, from the modes or from "
        "the diffusion model. Outputs wav, modes JSON and mp4.",
    "sounding_video":
        "MM-Diffusion makes a short video and its sound together, or a video for your sound, or a sound for your "
        "video (zero-shot, by replacement or gradient guidance); DPM-Solver, DDIM or DDPM; optional 64→256 "
        "super-resolution for the released checkpoints. MM-LDM does the same in a shared latent space, faster (DDIM, "
        "cross-modal guidance). Outputs mp4 with sound and wav.",
    "spectrogram_lab":
        "Plays any picture as a spectrogram and draws any sound as one, in the exact spectrogram convention that "
        "Images that Sound composes in; each direction shows its round trip. Outputs wav, png and a playhead mp4.",
    "train":
        "Trains Images that Sound, Impact Sound's diffusion model or MM-Diffusion on your own files (or the toy "
        "world), from scratch or from existing weights, with a live loss curve, Stop and Resume; the result becomes "
        "a choice of weights in that generator's tab and downloads as a zip.",
}
OTHER = "Not used by a tab in this studio"

PAPERS = """
### The papers behind the studio
1. Ludan Ruan, Yiyang Ma, Huan Yang, Huiguo He, Bei Liu, Jianlong Fu, Nicholas Jing Yuan, Qin Jin, Baining Guo.
   *MM-Diffusion: Learning Multi-Modal Diffusion Models for Joint Audio and Video Generation.* CVPR 2023.
2. Anonymous authors. *MM-LDM: Multi-Modal Latent Diffusion Model for Sounding Video Generation.* Under review.
3. Anonymous authors. *Visual Echoes: A Simple Unified Transformer for Audio-Visual Generation.* Under review.
4. Ziyang Chen, Daniel Geng, Andrew Owens. *Images that Sound: Composing Images and Sounds on a Single Canvas.*
   NeurIPS 2024.
5. Kun Su, Kaizhi Qian, Eli Shlizerman, Antonio Torralba, Chuang Gan. *Physics-Driven Diffusion Models for Impact
   Sound Synthesis from Videos.* CVPR 2023.
"""


def tab_models() -> list[tuple[str, str, list[str]]]:
    """(tab name, tab title, the registry names it can use), for every tab the studio has, from the tabs' own
    MODELS (or REQUIRES), then one more group for the registry entries no tab uses: every entry appears once."""
    from pipelines.registry import REGISTRY, _register_builtin_pipelines
    from studio.app import TABS as STUDIO_TABS

    _register_builtin_pipelines()
    groups, claimed = [], set()
    for tab in STUDIO_TABS:
        names = list(getattr(tab, "MODELS", None) or _flatten(tab.REQUIRES))
        names = [name for name in names if name in REGISTRY.entries and name not in claimed]
        claimed.update(names)
        groups.append((tab.NAME, getattr(tab, "TITLE", tab.NAME.replace("_", " ").title()), names))
    rest = [name for name in REGISTRY.entries if name not in claimed]
    if rest:
        groups.append(("", OTHER, rest))
    return groups


def _flatten(requires) -> list[str]:
    return [name for item in requires for name in ((item,) if isinstance(item, str) else item)]


def weights_table(context: StudioContext) -> str:
    """Markdown table of every registry entry, by the tab that uses it: its title, which weights are loaded or would
    load and why, and what those weights are. Read live from pipelines.registry, so it cannot go stale."""
    from pipelines.registry import REGISTRY, chosen_variant
    from pipelines.weights import ASSETS

    rows = ["| tab | model | weights in use | which weights |", "|---|---|---|---|"]
    for tab_name, tab_title, names in tab_models():
        variant = context.config.tab(tab_name).variant if tab_name else context.config.models
        for name in names:
            entry = REGISTRY.entry(name)
            chosen = chosen_variant(name, variant)
            if entry.load_without_weights is not None:
                source = "none: signal processing only"
            elif chosen in entry.variants:
                source = f"{chosen}: {entry.variants[chosen].description or 'no description'}"
            else:
                source = "; ".join(f"{key}: {value.description}" for key, value in entry.variants.items()
                                   if key not in REGISTRY.trained) or "—"  # a session's trained weights are its own
            rows.append(f"| {tab_title} | {entry.title} (`{name}`) | {_cell(describe(name, variant))} | "
                        f"{_cell(source)} |")
    rows.append("")
    rows.append(f"Studio weights are the small models bundled in `{_shown(ASSETS)}` (trained on a toy world; they "
                "never touch the network). Paper weights are the published ones, downloaded from the Hugging Face "
                "Hub or given as local files.")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _shown(path) -> str:
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(path)


def build(context: StudioContext) -> gr.Markdown:
    with gr.Tab("About", id="about"):
        groups = tab_models()
        gr.Markdown("### What each tab does\n" + "\n".join(
            f"- **{title}**: {WHAT.get(name, 'see the tab.')}" for name, title, _ in groups if name))
        gr.Markdown(f"### Weights\nModels mode: `{context.config.models}`. Pipelines load on first use; this table "
                    "is read from the model registry.")
        table = gr.Markdown(weights_table(context), elem_id="about-weights")
        gr.Button("Refresh", size="sm").click(lambda: weights_table(context), None, table)
        gr.Markdown(PAPERS)
    return table
