"""Images that Sound (paper 003): spectrograms that look like an image prompt and sound like an audio prompt."""

from pipelines.images_that_sound.pipeline_images_that_sound import ImagesThatSoundOutput, ImagesThatSoundPipeline

__all__ = ["ImagesThatSoundOutput", "ImagesThatSoundPipeline"]
