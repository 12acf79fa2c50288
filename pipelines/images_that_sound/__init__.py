"""Images that Sound (paper 003): spectrograms that look like an image prompt and sound like an audio prompt.

`pipeline_images_that_sound.ImagesThatSoundPipeline` is the sampler; this package's top level stays light (no torch
import) so the registry can check for weights at start-up.
"""

PAPER_IMAGE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PAPER_AUDIO_MODEL = "auffusion/auffusion-full-no-adapter"
CLIP_MODEL = "openai/clip-vit-base-patch16"  # the authors' image-prompt scorer
CLAP_MODEL = "laion/clap-htsat-unfused"  # the authors' audio-prompt scorer
# Latent geometry of Stable Diffusion v1.5 and Auffusion (and the studio models): the VAE maps 8 × 8 pixels to one
# latent pixel, and the UNets halve the latent three times, so lengths come in blocks of 8 latent columns.
PIXELS_PER_LATENT = 8
LATENT_BLOCK = 8
# Files whose presence in the local cache means the paper weights can load offline.
PAPER_IMAGE_FILES = ("unet/config.json", "text_encoder/config.json", "tokenizer/tokenizer_config.json",
                     "scheduler/scheduler_config.json")
PAPER_AUDIO_FILES = ("vae/config.json", "unet/config.json", "text_encoder/config.json",
                     "tokenizer/tokenizer_config.json", "vocoder/config.json", "vocoder/vocoder.pt")
# The paper's colorizer (Factorized Diffusion on DeepFloyd IF, gated: needs a token and the licence accepted).
PAPER_IF_STAGE_I = "DeepFloyd/IF-I-M-v1.0"
PAPER_IF_STAGE_II = "DeepFloyd/IF-II-M-v1.0"
PAPER_IF_STAGE_I_FILES = ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json",
                          "text_encoder/config.json", "tokenizer/tokenizer_config.json")
PAPER_IF_STAGE_II_FILES = ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json",
                           "image_noising_scheduler/scheduler_config.json")
