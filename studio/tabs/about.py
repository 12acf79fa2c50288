"""About: what each generator does, which weights each tab is using right now, and the papers to cite."""

from __future__ import annotations

import gradio as gr

from pipelines.registry import describe
from studio.context import StudioContext

# (registry name, tab title, what it does) for every tab the studio shows.
TABS = [
    ("images_that_sound", "Images that Sound",
     "Two prompts make one spectrogram that looks like the image prompt and sounds like the audio prompt: an image "
     "model and an audio model denoise one latent together (or the paper's imprint and SDS baselines); watch it "
     "form, rank several samples by CLIP and CLAP, colorize the best. Outputs png, wav and a playhead mp4."),
    ("impact_sound", "Impact Sound",
     "Estimates the physics of a recorded hit (each ringing mode's frequency, power and decay; the paper's extractor "
     "or a refined one), or starts from a material; edit the modes or pitch, damping and brightness and hear each "
     "edit at once; finds the hits in a silent video and scores it with one impact per hit. Physics only for now: "
     "the paper's diffusion model is not in the studio yet. Outputs wav, modes JSON and mp4."),
    ("mm_diffusion_landscape", "Sounding Video (Landscape)",
     "MM-Diffusion makes a 1.6 s video and its sound together, or a video for your sound, or a sound for your video "
     "(zero-shot, by replacement or gradient guidance); DPM-Solver, DDIM or DDPM; optional 64→256 super-resolution. "
     "Needs the released checkpoints as local files (space.yaml `checkpoints`). Outputs mp4 with sound and wav."),
    ("mm_diffusion_aist", "Sounding Video (AIST++)", "The same with the dance model."),
    ("spectrogram_lab", "Spectrogram Lab",
     "Plays any picture as a spectrogram and draws any sound as one, in the exact spectrogram convention that "
     "Images that Sound composes in; each direction shows its round trip. Outputs wav, png and a playhead mp4."),
]

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


def weights_table(context: StudioContext) -> str:
    """Markdown table of each tab and the weights it uses (or will use when first asked), read live."""
    rows = ["| tab | weights in use |", "|---|---|"]
    for name, title, _ in TABS:
        rows.append(f"| {title} | {describe(name, context.config.tab(name).variant)} |")
    return "\n".join(rows)


def build(context: StudioContext) -> gr.Markdown:
    with gr.Tab("About", id="about"):
        gr.Markdown("### What each tab does\n" + "\n".join(f"- **{title}**: {what}" for _, title, what in TABS))
        gr.Markdown(f"### Weights\nModels mode: `{context.config.models}`. Pipelines load on first use.")
        table = gr.Markdown(weights_table(context), elem_id="about-weights")
        gr.Button("Refresh", size="sm").click(lambda: weights_table(context), None, table)
        gr.Markdown(PAPERS)
    return table
