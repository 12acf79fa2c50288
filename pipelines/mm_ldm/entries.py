"""MM-LDM's registry entry: the bundled studio model trained on the toy world (`mm_ldm_toyworld`, studio weights).
The authors released no weights; the paper's size is `python -m pipelines.train mm_ldm --size paper`, whose output
folder `MMLDMPipeline.from_pretrained` loads (the Train tab registers such folders as extra variants)."""

from __future__ import annotations

from pipelines.weights import ASSETS, PipelineEntry, WeightsSource, files_missing

STUDIO_FOLDER = ASSETS / "mm_ldm"
# The tab's, the CLI's and the metric's defaults for MM-LDM: the paper's DDIM 50 for the DiT, the shared decoder's
# DDIM steps, φ of the cross-modal guidance and, per mode, λ of the reconstruction guidance (a departure:
# `pipeline_mm_ldm`; joint samples have nothing given to steer by). The paper gives no φ. For the model before the
# keyframe paths (16 clips each, height <-> pitch, 2026-12-06): audio -> video 0.99 at φ = 1, λ = 100 (0.93 at λ = 30,
# 0.76 at λ = 300, 0.81 at φ = 3; without λ not coupled); video -> audio 0.93 at φ = 1, λ = 100 (0.99 without λ).
# The bundled model, whose z_v also carries each keyframe (2026-12-07): audio -> video needs a stronger pull (32 clips:
# 0.99 at λ = 300, 0.80 at 100 on 64, 0.62 at 30, 0.47 at 0); video -> audio follows the flicker best with the paper's
# sampler, λ = 0 (256 paired clips: 0.27 against 0.24 at λ = 30 and 0.19 at 100, both beyond noise; pitch 0.96 / 0.98
# / 0.97, not told apart). Held-out clips (`--seed 1`) agree: audio -> video 0.89 at λ = 300, 0.81 at 100 (64 clips);
# video -> audio's flicker 0.32 at λ = 0, 0.33 at 30, 0.23 at 100 (128 clips).
STUDIO_STEPS = 50
STUDIO_DECODER_STEPS = 50
STUDIO_GUIDANCE = 1.0
STUDIO_RECONSTRUCTION = {"joint": 0.0, "a2v": 300.0, "v2a": 0.0}
# Resampling rounds of the DiT's noisiest steps (a departure: `pipeline_mm_ldm`) per mode: audio -> video settles on
# the given sound with 2 (2026-12-07: 1.00 against 0.79 with 1 on 64 clips, 1.00 against 0.89 on 32 others); joint
# and video -> audio did not gain from them (64 clips, 2026-12-06: joint 0.87 with 3 against 0.84 without, video ->
# audio 0.85 against 0.93).
STUDIO_RESAMPLE_ROUNDS = {"joint": 1, "a2v": 2, "v2a": 1}
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
