"""Images that Sound's registry entries: the composing pipeline (paper or studio weights), the paper's re-ranking
scorers (CLIP, CLAP) and its colorizer (DeepFloyd IF). Light: nothing heavy is imported until a load."""

from __future__ import annotations

from pipelines import images_that_sound as its
from pipelines.weights import ASSETS, PipelineEntry, WeightsSource, files_missing

STUDIO_FOLDER = ASSETS / "images_that_sound"
STUDIO_FILES = tuple(f"{model}/{part}" for model in ("image_model", "audio_model")
                     for part in ("unet/config.json", "text_encoder/config.json", "tokenizer/tokenizer_config.json")
                     ) + ("audio_model/vae/config.json", "image_model/scheduler/scheduler_config.json")


def entries() -> list[PipelineEntry]:
    return [composition_entry(),
            scorer_entry("clip_scorer", "CLIP scorer", its.CLIP_MODEL, "ClipWindowScorer"),
            scorer_entry("clap_scorer", "CLAP scorer", its.CLAP_MODEL, "ClapScorer"),
            colorizer_entry()]


def composition_entry() -> PipelineEntry:
    from pipelines.hub import weights_missing

    def load_paper(device: str, dtype):
        from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

        return ImagesThatSoundPipeline.from_pretrained(image_model=its.PAPER_IMAGE_MODEL,
                                                       audio_model=its.PAPER_AUDIO_MODEL, torch_dtype=dtype).to(device)

    def load_studio(device: str, dtype):
        from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundPipeline

        return ImagesThatSoundPipeline.from_pretrained(STUDIO_FOLDER, torch_dtype=dtype).to(device)

    return PipelineEntry("images_that_sound", "Images that Sound", {
        "paper": WeightsSource(
            load=load_paper,
            missing=lambda offline: (weights_missing(its.PAPER_IMAGE_MODEL, its.PAPER_IMAGE_FILES, offline)
                                     or weights_missing(its.PAPER_AUDIO_MODEL, its.PAPER_AUDIO_FILES, offline)),
            description="Stable Diffusion v1.5 + Auffusion + Auffusion's HiFi-GAN"),
        "studio": WeightsSource(
            load=load_studio, missing=lambda offline: files_missing(STUDIO_FOLDER, STUDIO_FILES),
            description="small toy-world models in assets/models/images_that_sound (Griffin-Lim, no HiFi-GAN)"),
    })


def scorer_entry(name: str, title: str, repo_id: str, class_name: str) -> PipelineEntry:
    """A paper-weights entry for a re-ranking scorer of `pipelines.images_that_sound.ranking`."""
    from pipelines.hub import weights_missing

    def load(device: str, dtype):
        from pipelines.images_that_sound import ranking

        return getattr(ranking, class_name).from_pretrained(repo_id)

    files = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
    return PipelineEntry(name, title, {"paper": WeightsSource(
        load=load, missing=lambda offline: weights_missing(repo_id, files, offline), description=repo_id)})


def colorizer_entry() -> PipelineEntry:
    """`colorizer_if`: the paper's colorization on DeepFloyd IF I + II. IF is gated, so it is used only with a Hugging
    Face token and its weights in the local cache or reachable."""
    from pipelines.hub import token_configured, weights_missing

    def missing(offline: bool) -> str | None:
        if not token_configured():
            return ("need a Hugging Face token (DeepFloyd IF is gated): accept its licence on the model page, then "
                    "set HF_TOKEN or run `hf auth login`")
        return (weights_missing(its.PAPER_IF_STAGE_I, its.PAPER_IF_STAGE_I_FILES, offline)
                or weights_missing(its.PAPER_IF_STAGE_II, its.PAPER_IF_STAGE_II_FILES, offline))

    def load(device: str, dtype):
        from pipelines.images_that_sound.colorization_if import IFColorizationPipeline

        return IFColorizationPipeline.from_pretrained(dtype=dtype).to(device)

    return PipelineEntry("colorizer_if", "Colorization (DeepFloyd IF)", {"paper": WeightsSource(
        load=load, missing=missing, description=f"{its.PAPER_IF_STAGE_I} + {its.PAPER_IF_STAGE_II} with T5 (gated)")})
