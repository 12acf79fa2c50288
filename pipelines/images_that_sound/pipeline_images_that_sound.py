"""Images that Sound (Chen, Geng, Owens, NeurIPS 2024): one latent denoised by an image and an audio diffusion model.

Both models share a latent space (Auffusion is Stable Diffusion v1.5 fine-tuned on log-mel spectrograms), so a
single latent z_t can be denoised by both. Each step (paper Eqs. 1–6):

    ε_v = ε_v(z_t; ∅) + γ_v (ε_v(z_t; y_v) − ε_v(z_t; ∅))          (3)  classifier-free guidance, image model
    ε_a = ε_a(z_t; ∅) + γ_a (ε_a(z_t; y_a) − ε_a(z_t; ∅))          (4)  classifier-free guidance, audio model
    ε̃  = λ_a ε_a + λ_v ε_v,  λ_m = w_m / (w_a + w_v)               (5), (6)
    w_m = H(t_m · T − t)                                             warm start: model m is active once t ≤ t_m·T
    z_{t−1} = DDIM(ε̃, t, z_t)                                        (1)

The final latent is decoded to a 3-channel image whose channel mean is the spectrogram (an image in the Auffusion
convention of `pipelines.audio`), turned into sound by a HiFi-GAN or Griffin-Lim. As the authors' code does, the
trailing 32/1024 of the width (Auffusion's padding of 10 s to 10.24 s) is cropped from picture and sound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pipelines.audio import SPECS, griffin_lim, image_to_spectrogram
from pipelines.images_that_sound import PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL

AUFFUSION = SPECS["auffusion"]
CROP_FRACTION = 32 / 1024  # the authors' `crop_image`: the last 32 of 1024 columns are Auffusion's padding


@dataclass
class ImagesThatSoundOutput:
    """One entry per sample: spectrograms [N, n_mels, W] in [0, 1], images, audio [N, samples], final latents."""

    spectrogram: np.ndarray
    image: list[Image.Image]
    audio: np.ndarray
    sample_rate: int
    latents: torch.Tensor


@dataclass(frozen=True)
class Guidance:
    """What one model contributes: its UNet, encoded [uncond; cond] prompts, CFG scale and warm-start fraction."""

    unet: UNet2DConditionModel
    embeddings: torch.Tensor
    scale: float
    warm_start: float


class LinearPreview:
    """Cheap previews of the clean estimate: its spectrogram read off the latent by a linear map.

    The first preview is a full VAE decode, which also fits (least squares) one map from the latent channels to
    the decoded gray value, averaged over each latent pixel's patch. Later previews apply that map and upsample the
    result (bilinear): a few multiply-adds per latent pixel instead of the decoder, whose cost would otherwise grow
    with the number of previews. The final result is always a full decode.
    """

    def __init__(self, decode: Callable[[torch.Tensor], np.ndarray]):
        self.decode = decode
        self.weights: torch.Tensor | None = None  # [C + 1]: one per latent channel, then the bias
        self.size: tuple[int, int] | None = None

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        if self.weights is None:
            return self.calibrate(latents)
        gray = torch.einsum("c,nchw->nhw", self.weights[:-1], latents.float()) + self.weights[-1]
        upsampled = torch.nn.functional.interpolate(gray[:, None], size=self.size, mode="bilinear")
        return upsampled[:, 0].clamp(0, 1).cpu().numpy()

    def calibrate(self, latents: torch.Tensor) -> np.ndarray:
        """Decode fully, fit the map on this decode, and return the decode."""
        decoded = self.decode(latents)
        self.size = decoded.shape[-2:]
        patches = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(decoded)[:, None], latents.shape[-2:])
        design = torch.cat([latents.float().cpu(), torch.ones_like(latents[:, :1]).float().cpu()], dim=1)
        design = design.permute(0, 2, 3, 1).reshape(-1, design.shape[1]).double()
        self.weights = torch.linalg.lstsq(design, patches.reshape(-1, 1).double()).solution[:, 0].float().to(
            latents.device)
        return decoded


class ImagesThatSoundPipeline(DiffusionPipeline):
    """Composes an image diffusion model and an audio (spectrogram) diffusion model on one latent.

    Components: `vae` (shared latent space; decodes spectrograms), `image_unet` + `image_text_encoder` +
    `image_tokenizer` (e.g. Stable Diffusion v1.5), `audio_unet` + `audio_text_encoder` + `audio_tokenizer`
    (e.g. Auffusion), a `DDIMScheduler`, and an optional HiFi-GAN `vocoder` (Griffin-Lim needs none).
    """

    _optional_components = ["vocoder"]

    def __init__(self, vae: AutoencoderKL, image_unet: UNet2DConditionModel, image_text_encoder, image_tokenizer,
                 audio_unet: UNet2DConditionModel, audio_text_encoder, audio_tokenizer, scheduler: DDIMScheduler,
                 vocoder=None):
        super().__init__()
        self.register_modules(vae=vae, image_unet=image_unet, image_text_encoder=image_text_encoder,
                              image_tokenizer=image_tokenizer, audio_unet=audio_unet,
                              audio_text_encoder=audio_text_encoder, audio_tokenizer=audio_tokenizer,
                              scheduler=scheduler, vocoder=vocoder)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(cls, image_model: str = PAPER_IMAGE_MODEL, audio_model: str = PAPER_AUDIO_MODEL,
                        vocoder: str | None = None, torch_dtype: torch.dtype = torch.float32) -> ImagesThatSoundPipeline:
        """Load from two diffusers-layout folders or Hub ids (image model, audio model) and a vocoder source.

        The VAE comes from the audio model (it decodes spectrograms); the DDIM scheduler from the image model, as in
        the authors' code. `vocoder`: a folder or Hub id holding `vocoder/` (Auffusion layout), or None for none.
        """
        from transformers import AutoModel

        from pipelines.vocoders import load_hifigan

        def load(source, subfolder, loader):
            return loader.from_pretrained(source, subfolder=subfolder, torch_dtype=torch_dtype)

        return cls(
            vae=load(audio_model, "vae", AutoencoderKL),
            image_unet=load(image_model, "unet", UNet2DConditionModel),
            image_text_encoder=load(image_model, "text_encoder", AutoModel),
            image_tokenizer=load_tokenizer(image_model),
            audio_unet=load(audio_model, "unet", UNet2DConditionModel),
            audio_text_encoder=load(audio_model, "text_encoder", AutoModel),
            audio_tokenizer=load_tokenizer(audio_model),
            scheduler=DDIMScheduler.from_pretrained(image_model, subfolder="scheduler"),
            vocoder=load_hifigan(vocoder, AUFFUSION).model if vocoder else None,
        )

    # 1. Inputs
    def check_inputs(self, num_inference_steps, image_guidance_scale, audio_guidance_scale, warm_start_image,
                     warm_start_audio, eta, num_samples, latent_width, latents, vocoder) -> None:
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be at least 1, got {num_inference_steps}")
        for name, value in (("image_guidance_scale", image_guidance_scale),
                            ("audio_guidance_scale", audio_guidance_scale), ("eta", eta)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value}")
        for name, value in (("warm_start_image", warm_start_image), ("warm_start_audio", warm_start_audio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` is the fraction of the reverse process a model is active, in [0, 1]; "
                                 f"got {value}")
        if max(warm_start_image, warm_start_audio) < 1.0:
            raise ValueError("at least one of `warm_start_image` and `warm_start_audio` must be 1.0, so that some "
                             f"model denoises the first steps; got {warm_start_image} and {warm_start_audio}")
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be at least 1, got {num_samples}")
        if latent_width < 8 or latent_width % 8:
            raise ValueError(f"`latent_width` must be a positive multiple of 8 latent columns, got {latent_width}")
        expected = (num_samples, self.vae.config.latent_channels, self.latent_height, latent_width)
        if latents is not None and tuple(latents.shape) != expected:
            raise ValueError(f"`latents` must have shape {expected}, got {tuple(latents.shape)}")
        if vocoder not in ("hifigan", "griffinlim"):
            raise ValueError(f"`vocoder` must be 'hifigan' or 'griffinlim', got {vocoder!r}")
        if vocoder == "hifigan" and self.vocoder is None:
            raise ValueError("this pipeline has no HiFi-GAN vocoder: load one or use vocoder='griffinlim'")

    @property
    def latent_height(self) -> int:
        return AUFFUSION.n_mels // self.vae_scale_factor

    # 2. Prompts
    def encode_prompt(self, text_encoder, tokenizer, prompt: str, negative_prompt: str, num_samples: int):
        """[uncond × N; cond × N] text embeddings, encoded once per call."""
        tokens = tokenizer([negative_prompt, prompt], padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        embeddings = text_encoder(tokens.input_ids.to(self.device))[0]
        return embeddings.repeat_interleave(num_samples, dim=0)

    # 3. One guided noise estimate
    @staticmethod
    def guided_noise(guidance: Guidance, latents: torch.Tensor, timestep) -> torch.Tensor:
        """Eq. 3/4: CFG with the conditional and unconditional branch evaluated as one batch."""
        noise = guidance.unet(torch.cat([latents, latents]), timestep,
                              encoder_hidden_states=guidance.embeddings).sample
        uncond, cond = noise.chunk(2)
        return uncond + guidance.scale * (cond - uncond)

    def active(self, warm_start: float, timestep) -> bool:
        """Eq. 6: w = H(t_m · T − t), the model is active once t ≤ t_m · T."""
        return float(timestep) <= warm_start * self.scheduler.config.num_train_timesteps

    @torch.no_grad()
    def __call__(
        self,
        image_prompt: str,
        audio_prompt: str,
        negative_prompt: str = "",
        num_inference_steps: int = 100,
        image_guidance_scale: float = 10.0,
        audio_guidance_scale: float = 10.0,
        warm_start_image: float = 0.9,
        warm_start_audio: float = 1.0,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        num_samples: int = 1,
        latent_width: int = 128,
        vocoder: str = "hifigan",
        griffin_lim_iterations: int = 32,
        callback: Callable[[int, int, np.ndarray], None] | None = None,
        callback_steps: int = 10,
    ) -> ImagesThatSoundOutput:
        """Generate `num_samples` spectrograms that look like `image_prompt` and sound like `audio_prompt`.

        `warm_start_image`, `warm_start_audio` are t_v, t_a: the fraction of the reverse process during which each
        model is active (paper default 0.9 / 1.0: the audio model denoises alone for the first 10 % of steps).
        `latents` is the initial noise z_T. `callback(step, timestep, preview)` gets, every `callback_steps`
        steps, a preview of the clean estimate x̂_0 as spectrograms [N, n_mels, W] in [0, 1] (`LinearPreview`: the
        first decoded, the others read off the latent).
        """
        # 1. Check inputs
        self.check_inputs(num_inference_steps, image_guidance_scale, audio_guidance_scale, warm_start_image,
                          warm_start_audio, eta, num_samples, latent_width, latents, vocoder)
        # 2. Encode both prompts once
        models = [
            Guidance(self.image_unet, self.encode_prompt(self.image_text_encoder, self.image_tokenizer, image_prompt,
                                                         negative_prompt, num_samples),
                     image_guidance_scale, warm_start_image),
            Guidance(self.audio_unet, self.encode_prompt(self.audio_text_encoder, self.audio_tokenizer, audio_prompt,
                                                         negative_prompt, num_samples),
                     audio_guidance_scale, warm_start_audio),
        ]
        # 3. Initial noise z_T
        latents = self.prepare_latents(num_samples, latent_width, generator, latents)
        # 4. Denoising loop
        latents = self.denoise(models, latents, num_inference_steps, eta, generator, callback, callback_steps)
        # 5. Decode, crop the padding, vocode
        return self.finish(self.decode_spectrograms(latents), latents, vocoder, griffin_lim_iterations)

    def prepare_latents(self, num_samples: int, latent_width: int, generator, latents: torch.Tensor | None):
        shape = (num_samples, self.vae.config.latent_channels, self.latent_height, latent_width)
        dtype = self.image_unet.dtype
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        return latents.to(self.device, dtype) * self.scheduler.init_noise_sigma

    def denoise(self, models: list[Guidance], latents: torch.Tensor, num_inference_steps: int, eta: float, generator,
                callback=None, callback_steps: int = 10) -> torch.Tensor:
        """DDIM from z_T to z_0 with the weighted average of the active models; inactive ones are not evaluated.

        The warm-start test and the scheduler read the timestep as a Python int (`t`): reading a GPU tensor there
        would make the host wait for the GPU at every step.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        preview = LinearPreview(self.decode_spectrograms)
        for step, (timestep, t) in enumerate(zip(self.progress_bar(timesteps), timesteps.tolist())):
            estimates = [self.guided_noise(m, latents, timestep) for m in models if self.active(m.warm_start, t)]
            noise = sum(estimates) / len(estimates)  # Eqs. 5–6: equal weights λ = w / Σw over the active models
            stepped = self.scheduler.step(noise, t, latents, eta=eta, generator=generator)
            latents = stepped.prev_sample
            if callback is not None and (step + 1) % callback_steps == 0:
                callback(step, t, preview(stepped.pred_original_sample))
        return latents

    def finish(self, spectrograms: np.ndarray, latents: torch.Tensor, vocoder: str, iterations: int):
        """Crop the trailing padding (32/1024 of the width, as the authors), then vocode every sample."""
        keep = spectrograms.shape[-1] - round(spectrograms.shape[-1] * CROP_FRACTION)
        spectrograms = spectrograms[..., :keep]
        audio = np.stack([self.spectrogram_to_audio(s, vocoder, iterations) for s in spectrograms])
        return ImagesThatSoundOutput(spectrograms, [to_viewable_image(s) for s in spectrograms], audio,
                                     AUFFUSION.sample_rate, latents)

    @torch.no_grad()
    def imprint(self, image_prompt: str, audio_prompt: str, negative_prompt: str = "", image_steps: int = 50,
                audio_steps: int = 100, image_guidance_scale: float = 10.0, audio_guidance_scale: float = 10.0,
                rho: float = 0.5, generator=None, num_samples: int = 1, latent_width: int = 128,
                vocoder: str = "hifigan", griffin_lim_iterations: int = 32) -> ImagesThatSoundOutput:
        """The paper's imprint baseline: an image from the image model alone multiplies a spectrogram from the
        audio model alone, spectrogram · (1 − ρ · (1 − image)), on the normalised log-mel image (ρ = 0.5).

        The two samples start from independent noise (image first, then spectrogram, from the same generators).
        """
        self.check_inputs(max(image_steps, audio_steps), image_guidance_scale, audio_guidance_scale, 1.0, 1.0, 0.0,
                          num_samples, latent_width, None, vocoder)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"`rho` is the imprint strength, in [0, 1]; got {rho}")
        image_model = Guidance(self.image_unet, self.encode_prompt(self.image_text_encoder, self.image_tokenizer,
                                                                   image_prompt, negative_prompt, num_samples),
                               image_guidance_scale, 1.0)
        audio_model = Guidance(self.audio_unet, self.encode_prompt(self.audio_text_encoder, self.audio_tokenizer,
                                                                   audio_prompt, negative_prompt, num_samples),
                               audio_guidance_scale, 1.0)
        image_latents = self.denoise([image_model], self.prepare_latents(num_samples, latent_width, generator, None),
                                     image_steps, 0.0, generator)
        audio_latents = self.denoise([audio_model], self.prepare_latents(num_samples, latent_width, generator, None),
                                     audio_steps, 0.0, generator)
        mask = 1.0 - rho * (1.0 - self.decode_spectrograms(image_latents))
        return self.finish(self.decode_spectrograms(audio_latents) * mask, audio_latents, vocoder,
                           griffin_lim_iterations)

    def decode_spectrograms(self, latents: torch.Tensor) -> np.ndarray:
        """VAE decode -> [0, 1] image -> channel mean: spectrogram images [N, n_mels, W] (float32)."""
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return (decoded / 2 + 0.5).clamp(0, 1).mean(dim=1).float().cpu().numpy()

    def spectrogram_to_audio(self, spectrogram: np.ndarray, vocoder: str, iterations: int) -> np.ndarray:
        log_mel = image_to_spectrogram(spectrogram, AUFFUSION)
        if vocoder == "griffinlim":
            return griffin_lim(log_mel, AUFFUSION, n_iter=iterations)
        return self.vocoder.vocode(torch.from_numpy(log_mel)).cpu().numpy()


def load_tokenizer(source: str):
    """The tokenizer in `source`'s `tokenizer/` folder, built from the class its tokenizer_config.json names.

    AutoTokenizer would first look for a model config.json, which diffusers-layout repos do not have at the root.
    """
    import json

    import transformers

    local = Path(source) / "tokenizer" / "tokenizer_config.json"
    if local.is_file():
        config_file = local
    else:
        from pipelines.hub import download

        config_file = download(source, "tokenizer/tokenizer_config.json")
    class_name = json.loads(config_file.read_text()).get("tokenizer_class", "AutoTokenizer")
    return getattr(transformers, class_name, transformers.AutoTokenizer).from_pretrained(source,
                                                                                        subfolder="tokenizer")


def to_viewable_image(spectrogram: np.ndarray) -> Image.Image:
    """Grayscale picture as the paper shows it: the spectrogram min-max stretched ("re-normalized for display")."""
    low, high = float(spectrogram.min()), float(spectrogram.max())
    stretched = (spectrogram - low) / (high - low) if high > low else np.zeros_like(spectrogram)
    return Image.fromarray((stretched * 255 + 0.5).astype(np.uint8))
