"""The vocoders' registry entry: Auffusion's HiFi-GAN (paper weights, from the local cache or the Hub)."""

from __future__ import annotations

from pipelines.vocoders import AUFFUSION_REPO, AUFFUSION_VOCODER_FILES
from pipelines.weights import PipelineEntry, WeightsSource


def entries() -> list[PipelineEntry]:
    from pipelines.hub import weights_missing

    def load(device: str, dtype):
        from pipelines.audio import SPECS
        from pipelines.vocoders import load_hifigan

        return load_hifigan(AUFFUSION_REPO, SPECS["auffusion"], device, dtype)

    return [PipelineEntry("hifigan", "HiFi-GAN vocoder", {"paper": WeightsSource(
        load=load, missing=lambda offline: weights_missing(AUFFUSION_REPO, AUFFUSION_VOCODER_FILES, offline),
        description=f"Auffusion's HiFi-GAN ({AUFFUSION_REPO}, vocoder/)")})]
