"""Visual Echoes' registry entry: the bundled studio weights (toy world). The paper released no weights; its
architecture at full size is `python -m pipelines.train visual_echoes --size paper`, whose output folder
`VisualEchoesPipeline.from_pretrained` loads (tokenizers from taming-transformers / SpecVQGAN checkpoints can be
converted with `pipelines.visual_echoes.checkpoints`)."""

from __future__ import annotations

from pipelines.weights import ASSETS, PipelineEntry, WeightsSource, files_missing

STUDIO_FOLDER = ASSETS / "visual_echoes"
STUDIO_FILES = ("visual_echoes.json", "audio_tokenizer/config.json", "audio_tokenizer/diffusion_pytorch_model.safetensors",
                "image_tokenizer/config.json", "image_tokenizer/diffusion_pytorch_model.safetensors",
                "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors")


def entries() -> list[PipelineEntry]:
    return [PipelineEntry("visual_echoes", "Visual Echoes", {"studio": WeightsSource(
        load=load_studio, missing=lambda offline: files_missing(STUDIO_FOLDER, STUDIO_FILES),
        description="small toy-world model in assets/models/visual_echoes")})]


def load_studio(device: str, dtype):
    from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline

    return VisualEchoesPipeline.from_pretrained(STUDIO_FOLDER, torch_dtype=dtype).to(device)
