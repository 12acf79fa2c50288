"""Impact Sound's registry entries: the physics pipeline (modal analysis and synthesis, no weights) and the
physics-driven diffusion model (the bundled studio weights).

The paper published no weights; its architecture at full size is `python -m pipelines.train impact_sound --size
paper`, whose output folder `ImpactDiffusionPipeline.from_pretrained` loads."""

from __future__ import annotations

from pipelines.weights import ASSETS, PipelineEntry, WeightsSource, files_missing

STUDIO_FOLDER = ASSETS / "impact_sound"
STUDIO_FILES = ("config.json", "denoiser.safetensors", "visual_encoder.safetensors", "bank.safetensors",
                "residual/config.json")


def entries() -> list[PipelineEntry]:
    return [PipelineEntry("impact_sound", "Impact Sound (physics)", load_without_weights=physics_pipeline),
            PipelineEntry("impact_diffusion", "Impact Sound (diffusion)", {"studio": WeightsSource(
                load=load_studio_diffusion, missing=lambda offline: files_missing(STUDIO_FOLDER, STUDIO_FILES),
                description="small toy-world model in assets/models/impact_sound")})]


def physics_pipeline():
    from pipelines.impact_sound.pipeline_physics import ImpactPhysicsPipeline

    return ImpactPhysicsPipeline()


def load_studio_diffusion(device: str, dtype):
    from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline

    return ImpactDiffusionPipeline.from_pretrained(STUDIO_FOLDER, torch_dtype=dtype).to(device)
