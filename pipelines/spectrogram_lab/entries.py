"""The Spectrogram Lab's registry entry: signal processing only, no weights."""

from __future__ import annotations

from pipelines.weights import PipelineEntry


def entries() -> list[PipelineEntry]:
    return [PipelineEntry("spectrogram_lab", "Spectrogram Lab", load_without_weights=lab_pipeline)]


def lab_pipeline():
    from pipelines.spectrogram_lab.pipeline_spectrogram_lab import SpectrogramLabPipeline

    return SpectrogramLabPipeline()
