"""MM-LDM's registry entry: the bundled studio model trained on the toy world (`mm_ldm_toyworld`, studio weights).
The authors released no weights; the paper's size is `python -m pipelines.train mm_ldm --size paper`, whose output
folder `MMLDMPipeline.from_pretrained` loads (the Train tab registers such folders as extra variants)."""

from __future__ import annotations

from pipelines.weights import ASSETS, PipelineEntry, WeightsSource, files_missing

STUDIO_FOLDER = ASSETS / "mm_ldm"
# The tab's, the CLI's and the metric's defaults for MM-LDM: the paper's DDIM 50 for the DiT, the shared decoder's
# DDIM steps, and φ of the cross-modal guidance (audio -> video, video -> audio; the paper gives no value).
STUDIO_STEPS = 50
STUDIO_DECODER_STEPS = 50
STUDIO_GUIDANCE = 3.0
STUDIO_FILES = ("model.json", "scheduler/scheduler_config.json",
                *(f"{module}/{name}" for module in ("vae", "autoencoder", "transformer")
                  for name in ("config.json", "diffusion_pytorch_model.safetensors")))


def entries() -> list[PipelineEntry]:
    return [PipelineEntry("mm_ldm_toyworld", "MM-LDM (toy world)", {"studio": WeightsSource(
        load=load_studio, missing=lambda offline: files_missing(STUDIO_FOLDER, STUDIO_FILES),
        description="a small model trained on the toy world (assets/models/mm_ldm)")})]


def load_studio(device: str, dtype):
    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline

    return MMLDMPipeline.from_pretrained(STUDIO_FOLDER, torch_dtype=dtype).to(device)
