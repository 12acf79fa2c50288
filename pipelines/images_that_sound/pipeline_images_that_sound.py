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

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pipelines.audio import SPECS, griffin_lim, image_to_spectrogram
from pipelines.images_that_sound import LATENT_BLOCK, PAPER_AUDIO_MODEL, PAPER_IMAGE_MODEL
from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline
from pipelines.vocoders.hifigan import HiFiGAN

AUFFUSION = SPECS["auffusion"]
CROP_FRACTION = 32 / 1024  # the authors' `crop_image`: the last 32 of 1024 columns are Auffusion's padding
VOCODERS = ("auto", "hifigan", "griffinlim")


@dataclass
class ImagesThatSoundOutput(BaseOutput):
    """One entry per sample: spectrograms [N, n_mels, W] in [0, 1], images, audio [N, samples], final latents, and
    which vocoder made the sound ("hifigan" or "griffinlim")."""

    spectrogram: np.ndarray
    image: list[Image.Image]
    audio: np.ndarray
    sample_rate: int
    latents: torch.Tensor
    vocoder: str


@dataclass(frozen=True)
class Guidance:
    """What one model contributes: its UNet, encoded [uncond; cond] prompts, CFG scale and warm-start fraction."""

    unet: UNet2DConditionModel
    embeddings: torch.Tensor
    scale: float
    warm_start: float


@dataclass(frozen=True)
class ModelSource:
    """Where one model's diffusers-layout parts are: a local folder or Hub id, and the folder inside it ("" or
    "audio_model/")."""

    source: str
    prefix: str = ""

    def subfolder(self, part: str) -> str:
        return f"{self.prefix}{part}"


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


class ImagesThatSoundPipeline(StudioPipeline):
    """Composes an image diffusion model and an audio (spectrogram) diffusion model on one latent.

    Components: `vae` (shared latent space; decodes spectrograms), `image_unet` + `image_text_encoder` +
    `image_tokenizer` (e.g. Stable Diffusion v1.5), `audio_unet` + `audio_text_encoder` + `audio_tokenizer`
    (e.g. Auffusion), a `DDIMScheduler`, and an optional HiFi-GAN `vocoder` (Griffin-Lim needs none).

    On disk (`save_pretrained`, the bundled `assets/models/images_that_sound`) a pipeline is one folder holding
    `image_model/{unet,text_encoder,tokenizer,scheduler}` and `audio_model/{unet,vae,text_encoder,tokenizer}`, plus
    `audio_model/vocoder/` (Auffusion's format) when it has a HiFi-GAN.

    LoRA adapters (`pipelines.images_that_sound.lora`, written by `python -m pipelines.train images_that_sound
    --lora-rank R`): `load_lora_weights(path, model="image"|"audio", scale=1.0)`, `set_lora_scale(scale, model=None)`
    and `unload_lora_weights(model=None)`.
    """

    _optional_components = ["vocoder"]
    _callback_tensor_inputs = ["preview", "latents"]

    def __init__(self, vae: AutoencoderKL, image_unet: UNet2DConditionModel, image_text_encoder, image_tokenizer,
                 audio_unet: UNet2DConditionModel, audio_text_encoder, audio_tokenizer, scheduler: DDIMScheduler,
                 vocoder: HiFiGAN | None = None):
        super().__init__()
        self.register_modules(vae=vae, image_unet=image_unet, image_text_encoder=image_text_encoder,
                              image_tokenizer=image_tokenizer, audio_unet=audio_unet,
                              audio_text_encoder=audio_text_encoder, audio_tokenizer=audio_tokenizer,
                              scheduler=scheduler, vocoder=vocoder)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # Loading and saving -----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, *, image_model: str | Path | None = None,
                        audio_model: str | Path | None = None, vocoder: HiFiGAN | Literal["auto"] | None = "auto",
                        torch_dtype: torch.dtype = torch.float32) -> ImagesThatSoundPipeline:
        """Load a studio-layout `folder` (local or a Hub id holding `image_model/` and `audio_model/`), or two
        diffusers-layout models (`image_model`, `audio_model`: folders or Hub ids; by default the paper's).

        A trainer's `--lora-rank` output (a folder holding only `<model>_lora/` adapters) loads as its base with the
        adapters (`from_lora_run`). The VAE comes from the audio model (it decodes spectrograms), the DDIM scheduler
        from the image model, as in the authors' code. `vocoder`: "auto" loads the audio model's `vocoder/` (Auffusion's HiFi-GAN) when it has
        one; a `HiFiGAN` is used as given; None loads none (Griffin-Lim only).
        """
        if folder is not None and (image_model is not None or audio_model is not None):
            raise ValueError("give either a studio-layout `folder` or `image_model` and `audio_model`, not both")
        if folder is not None and lora_run(folder):
            return cls.from_lora_run(folder, vocoder=vocoder, torch_dtype=torch_dtype)
        if folder is not None:
            image, audio = ModelSource(str(folder), "image_model/"), ModelSource(str(folder), "audio_model/")
        else:
            image = ModelSource(str(image_model or PAPER_IMAGE_MODEL))
            audio = ModelSource(str(audio_model or PAPER_AUDIO_MODEL))
        return cls._from_sources(image, audio, find_vocoder(audio) if vocoder == "auto" else vocoder, torch_dtype)

    @classmethod
    def from_lora_run(cls, folder: str | Path, vocoder: HiFiGAN | Literal["auto"] | None = "auto",
                      torch_dtype: torch.dtype = torch.float32) -> ImagesThatSoundPipeline:
        """The base a LoRA run started from (its adapter.json's `base.init`: studio, paper or a folder) with the
        run's adapters loaded at scale 1."""
        from pipelines.images_that_sound import lora

        models = [m for m in lora.MODELS if (Path(folder) / f"{m}_lora" / lora.CONFIG_NAME).is_file()]
        starts = {lora.read_adapter(Path(folder) / f"{m}_lora")[0]["base"]["init"] for m in models}
        if len(starts) != 1:
            raise ValueError(f"{folder}: its adapters start from different bases {sorted(starts)}")
        start = starts.pop()
        if start == "paper":
            pipe = cls.from_pretrained(vocoder=vocoder, torch_dtype=torch_dtype)
        else:
            from pipelines.images_that_sound.entries import STUDIO_FOLDER

            pipe = cls.from_pretrained(STUDIO_FOLDER if start == "studio" else start, vocoder=vocoder,
                                       torch_dtype=torch_dtype)
        for model in models:
            pipe.load_lora_weights(folder, model=model)
        return pipe

    @classmethod
    def _from_sources(cls, image: ModelSource, audio: ModelSource, vocoder: HiFiGAN | None,
                      torch_dtype: torch.dtype) -> ImagesThatSoundPipeline:
        from transformers import AutoModel

        def load(model: ModelSource, part: str, loader):
            return loader.from_pretrained(model.source, subfolder=model.subfolder(part), torch_dtype=torch_dtype)

        def load_text_encoder(model: ModelSource):  # transformers names the dtype argument differently
            return AutoModel.from_pretrained(model.source, subfolder=model.subfolder("text_encoder"),
                                             dtype=torch_dtype)

        return cls(
            vae=load(audio, "vae", AutoencoderKL),
            image_unet=load(image, "unet", UNet2DConditionModel),
            image_text_encoder=load_text_encoder(image),
            image_tokenizer=load_tokenizer(image),
            audio_unet=load(audio, "unet", UNet2DConditionModel),
            audio_text_encoder=load_text_encoder(audio),
            audio_tokenizer=load_tokenizer(audio),
            scheduler=DDIMScheduler.from_pretrained(image.source, subfolder=image.subfolder("scheduler")),
            vocoder=vocoder.to(torch_dtype) if vocoder is not None else None,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the studio layout (see the class docstring) that `from_pretrained(folder)` loads; returns `folder`.
        Base weights only: with a LoRA loaded it refuses (save the adapter folder instead, or unload it first)."""
        if self.lora_models(None):
            raise ValueError(f"a LoRA is loaded on the {' and '.join(self.lora_models(None))} model: call "
                             f"unload_lora_weights() before save_pretrained (the adapter is its own folder)")
        folder = Path(folder)
        parts = {
            "image_model": {"unet": self.image_unet, "text_encoder": self.image_text_encoder,
                            "tokenizer": self.image_tokenizer, "scheduler": self.scheduler},
            "audio_model": {"unet": self.audio_unet, "vae": self.vae, "text_encoder": self.audio_text_encoder,
                            "tokenizer": self.audio_tokenizer},
        }
        for model, components in parts.items():
            for name, component in components.items():
                component.save_pretrained(folder / model / name)
        if self.vocoder is not None:
            save_hifigan(self.vocoder, folder / "audio_model" / "vocoder")
        return folder

    # LoRA adapters (`pipelines.images_that_sound.lora`) -----------------------------------------------------------
    def load_lora_weights(self, path: str | Path, model: Literal["image", "audio"] = "audio",
                          scale: float = 1.0) -> dict:
        """Load a LoRA adapter onto the image or the audio model at `scale` (0: the base output exactly).

        `path`: a folder `pipelines.images_that_sound.lora.save_adapter` wrote, or a trainer's OUT holding
        `<model>_lora/`. Words the adapter added to a word-level vocabulary are added too. A model holds one adapter
        at a time: loading another replaces it. Returns the adapter's config (rank, base, added words...).
        """
        from pipelines.images_that_sound import lora

        self.check_lora_model(model)
        config, tensors = lora.read_adapter(lora.adapter_folder(path, model))
        if config["model"] != model:
            raise ValueError(f"{path} is an adapter for the {config['model']} model, not the {model} model")
        self.unload_lora_weights(model)
        unet, text_encoder, tokenizer = self.model_parts(model)
        base_parameters = sum(p.numel() for p in unet.parameters())
        if base_parameters != config["base"]["unet_parameters"]:
            raise ValueError(f"this adapter was trained on a {model} UNet of {config['base']['unet_parameters']:,} "
                             f"parameters (started from {config['base']['init']}); this pipeline's has "
                             f"{base_parameters:,}")
        text_encoder = self.own_text_encoder(model)
        self._loras = {**getattr(self, "_loras", {}), model: {"tokenizer": tokenizer, "vocab": len(tokenizer)}}
        if config["added_words"]:
            self.add_lora_words(model, config, tensors["added_embeddings"])
        lora.load_lora_state(unet, lora.split_state(tensors, "unet."), config["rank"], config["alpha"],
                             tuple(config["unet_targets"]))
        if config["text_encoder_targets"]:
            lora.load_lora_state(text_encoder, lora.split_state(tensors, "text_encoder."), config["rank"],
                                 config["alpha"], tuple(config["text_encoder_targets"]))
        self.set_lora_scale(scale, model)
        return config

    def set_lora_scale(self, scale: float, model: Literal["image", "audio"] | None = None) -> None:
        """The strength of the loaded adapter(s): 0 is the base model exactly, 1 as trained (any float)."""
        from pipelines.images_that_sound import lora

        for name in self.lora_models(model):
            for module in self.model_parts(name)[:2]:
                lora.set_lora_scale(module, scale)

    def unload_lora_weights(self, model: Literal["image", "audio"] | None = None) -> None:
        """Remove the adapter(s) and the words they added: the pipeline is the base pipeline again."""
        from pipelines.images_that_sound import lora

        for name in self.lora_models(model):
            unet, text_encoder, _ = self.model_parts(name)
            lora.remove_lora(unet)
            lora.remove_lora(text_encoder)
            saved = self._loras.pop(name)
            setattr(self, f"{name}_tokenizer", saved["tokenizer"])
            if text_encoder.get_input_embeddings().weight.shape[0] != saved["vocab"]:
                text_encoder.resize_token_embeddings(saved["vocab"], mean_resizing=False)

    def lora_models(self, model: str | None) -> list[str]:
        """The models that hold an adapter now (all, or `model` if it does)."""
        if model is not None:
            self.check_lora_model(model)
        return [name for name in getattr(self, "_loras", {}) if model in (None, name)]

    @staticmethod
    def check_lora_model(model: str) -> None:
        if model not in ("image", "audio"):
            raise ValueError(f"`model` must be 'image' or 'audio', got {model!r}")

    def model_parts(self, model: str) -> tuple:
        """(unet, text encoder, tokenizer) of the image or audio model."""
        return tuple(getattr(self, f"{model}_{part}") for part in ("unet", "text_encoder", "tokenizer"))

    def own_text_encoder(self, model: str):
        """The model's text encoder, copied first when both models share one object (an adapter changes it)."""
        import copy

        other = "audio" if model == "image" else "image"
        encoder = getattr(self, f"{model}_text_encoder")
        if encoder is getattr(self, f"{other}_text_encoder"):
            encoder = copy.deepcopy(encoder)
            setattr(self, f"{model}_text_encoder", encoder)
        return encoder

    def add_lora_words(self, model: str, config: dict, embeddings: torch.Tensor) -> None:
        from pipelines.images_that_sound import lora

        _, text_encoder, tokenizer = self.model_parts(model)
        if len(tokenizer) != config["base"]["vocab_size"]:
            raise ValueError(f"this adapter adds words to a vocabulary of {config['base']['vocab_size']} tokens; the "
                             f"{model} model's has {len(tokenizer)}")
        setattr(self, f"{model}_tokenizer", lora.grown_tokenizer(tokenizer, config["added_words"]))
        lora.append_embeddings(text_encoder, embeddings)

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
        if latent_width < LATENT_BLOCK or latent_width % LATENT_BLOCK:
            raise ValueError(f"`latent_width` must be a positive multiple of {LATENT_BLOCK} latent columns, got "
                             f"{latent_width}")
        expected = (num_samples, self.vae.config.latent_channels, self.latent_height, latent_width)
        if latents is not None and tuple(latents.shape) != expected:
            raise ValueError(f"`latents` must have shape {expected}, got {tuple(latents.shape)}")
        if vocoder not in VOCODERS:
            raise ValueError(f"`vocoder` must be 'auto', 'hifigan' or 'griffinlim', got {vocoder!r}")
        if vocoder == "hifigan" and self.vocoder is None:
            raise ValueError("these weights come without a HiFi-GAN vocoder: use vocoder='griffinlim' (or 'auto')")

    @property
    def latent_height(self) -> int:
        return AUFFUSION.n_mels // self.vae_scale_factor

    def resolve_vocoder(self, vocoder: str) -> str:
        """'auto' is the HiFi-GAN when one is loaded, else Griffin-Lim."""
        if vocoder != "auto":
            return vocoder
        return "hifigan" if self.vocoder is not None else "griffinlim"

    # 2. Prompts
    def encode_prompt(self, text_encoder, tokenizer, prompt: str, negative_prompt: str, num_samples: int):
        """[uncond × N; cond × N] text embeddings, encoded once per call."""
        tokens = tokenizer([negative_prompt, prompt], padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        embeddings = text_encoder(tokens.input_ids.to(self.device))[0]
        return embeddings.repeat_interleave(num_samples, dim=0)

    def image_guidance(self, prompt: str, negative_prompt: str, num_samples: int, scale: float,
                       warm_start: float) -> Guidance:
        return Guidance(self.image_unet, self.encode_prompt(self.image_text_encoder, self.image_tokenizer, prompt,
                                                            negative_prompt, num_samples), scale, warm_start)

    def audio_guidance(self, prompt: str, negative_prompt: str, num_samples: int, scale: float,
                       warm_start: float) -> Guidance:
        return Guidance(self.audio_unet, self.encode_prompt(self.audio_text_encoder, self.audio_tokenizer, prompt,
                                                            negative_prompt, num_samples), scale, warm_start)

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
        vocoder: Literal["auto", "hifigan", "griffinlim"] = "auto",
        griffin_lim_iterations: int = 32,
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagesThatSoundOutput | tuple:
        """Generate `num_samples` spectrograms that look like `image_prompt` and sound like `audio_prompt`.

        `warm_start_image`, `warm_start_audio` are t_v, t_a: the fraction of the reverse process during which each
        model is active (paper default 0.9 / 1.0: the audio model denoises alone for the first 10 % of steps).
        `latents` is the initial noise z_T. `vocoder`: "auto" is the HiFi-GAN when one is loaded, else Griffin-Lim.

        `callback_on_step_end(pipe, step, timestep, callback_kwargs)` runs after every step; `callback_kwargs` may
        hold "preview" (the clean estimate x̂_0 as spectrograms [N, n_mels, W] in [0, 1], numpy: `LinearPreview`,
        made only when read) and "latents" (z_{t-1}); a returned {"latents": ...} replaces them. Setting
        `pipe._interrupt = True` stops after the current step; the latents reached so far are decoded.
        """
        # 1. Check inputs
        self.check_inputs(num_inference_steps, image_guidance_scale, audio_guidance_scale, warm_start_image,
                          warm_start_audio, eta, num_samples, latent_width, latents, vocoder)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        # 2. Encode both prompts once
        models = [
            self.image_guidance(image_prompt, negative_prompt, num_samples, image_guidance_scale, warm_start_image),
            self.audio_guidance(audio_prompt, negative_prompt, num_samples, audio_guidance_scale, warm_start_audio),
        ]
        # 3. Initial noise z_T
        latents = self.prepare_latents(num_samples, latent_width, generator, latents)
        # 4. Denoising loop
        latents = self.denoise(models, latents, num_inference_steps, eta, generator, callback_on_step_end,
                               callback_on_step_end_tensor_inputs)
        # 5. Decode, crop the padding, vocode
        output = self.finish(self.decode_spectrograms(latents), latents, vocoder, griffin_lim_iterations)
        return output if return_dict else output.to_tuple()

    def prepare_latents(self, num_samples: int, latent_width: int, generator, latents: torch.Tensor | None):
        shape = (num_samples, self.vae.config.latent_channels, self.latent_height, latent_width)
        dtype = self.image_unet.dtype
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        return latents.to(self.device, dtype) * self.scheduler.init_noise_sigma

    def denoise(self, models: list[Guidance], latents: torch.Tensor, num_inference_steps: int, eta: float, generator,
                callback_on_step_end: StepCallback | None = None, tensor_inputs: list[str] | None = None,
                first_step: int = 0) -> torch.Tensor:
        """DDIM from z_T to z_0 with the weighted average of the active models; inactive ones are not evaluated.

        Each step goes to the callback as step `first_step + index`. The warm-start test and the scheduler read the
        timestep as a Python int (`t`): reading a GPU tensor there would make the host wait for the GPU every step.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        preview = LinearPreview(self.decode_spectrograms)
        for index, (timestep, t) in enumerate(zip(self.progress_bar(timesteps), timesteps.tolist())):
            if self.interrupt:
                break
            estimates = [self.guided_noise(m, latents, timestep) for m in models if self.active(m.warm_start, t)]
            noise = sum(estimates) / len(estimates)  # Eqs. 5–6: equal weights λ = w / Σw over the active models
            stepped = self.scheduler.step(noise, t, latents, eta=eta, generator=generator)
            latents, clean = stepped.prev_sample, stepped.pred_original_sample
            # Default arguments bind this step's tensors: a callback may keep the kwargs and read them later.
            returned = self.step_end(callback_on_step_end, first_step + index, t, tensor_inputs,
                                     preview=lambda clean=clean: preview(clean),
                                     latents=lambda latents=latents: latents)
            latents = returned.get("latents", latents)
        return latents

    def finish(self, spectrograms: np.ndarray, latents: torch.Tensor, vocoder: str,
               iterations: int) -> ImagesThatSoundOutput:
        """Crop the trailing padding (32/1024 of the width, as the authors), then vocode every sample."""
        keep = spectrograms.shape[-1] - round(spectrograms.shape[-1] * CROP_FRACTION)
        spectrograms = spectrograms[..., :keep]
        vocoder = self.resolve_vocoder(vocoder)
        audio = np.stack([self.spectrogram_to_audio(s, vocoder, iterations) for s in spectrograms])
        return ImagesThatSoundOutput(spectrograms, [to_viewable_image(s) for s in spectrograms], audio,
                                     AUFFUSION.sample_rate, latents, vocoder)

    @torch.no_grad()
    def imprint(self, image_prompt: str, audio_prompt: str, negative_prompt: str = "", image_steps: int = 50,
                audio_steps: int = 100, image_guidance_scale: float = 10.0, audio_guidance_scale: float = 10.0,
                rho: float = 0.5, generator=None, num_samples: int = 1, latent_width: int = 128,
                vocoder: Literal["auto", "hifigan", "griffinlim"] = "auto", griffin_lim_iterations: int = 32,
                return_dict: bool = True, callback_on_step_end: StepCallback | None = None,
                callback_on_step_end_tensor_inputs: list[str] | None = None) -> ImagesThatSoundOutput | tuple:
        """The paper's imprint baseline: an image from the image model alone multiplies a spectrogram from the
        audio model alone, spectrogram · (1 − ρ · (1 − image)), on the normalised log-mel image (ρ = 0.5).

        The two samples start from independent noise (image first, then spectrogram, from the same generators).
        The callback sees the image model's steps (0 … image_steps − 1), then the audio model's; an interrupt
        stops both.
        """
        self.check_inputs(max(image_steps, audio_steps), image_guidance_scale, audio_guidance_scale, 1.0, 1.0, 0.0,
                          num_samples, latent_width, None, vocoder)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"`rho` is the imprint strength, in [0, 1]; got {rho}")
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        image_model = self.image_guidance(image_prompt, negative_prompt, num_samples, image_guidance_scale, 1.0)
        audio_model = self.audio_guidance(audio_prompt, negative_prompt, num_samples, audio_guidance_scale, 1.0)
        image_latents = self.denoise([image_model], self.prepare_latents(num_samples, latent_width, generator, None),
                                     image_steps, 0.0, generator, callback_on_step_end,
                                     callback_on_step_end_tensor_inputs)
        audio_latents = self.denoise([audio_model], self.prepare_latents(num_samples, latent_width, generator, None),
                                     audio_steps, 0.0, generator, callback_on_step_end,
                                     callback_on_step_end_tensor_inputs, first_step=image_steps)
        mask = 1.0 - rho * (1.0 - self.decode_spectrograms(image_latents))
        output = self.finish(self.decode_spectrograms(audio_latents) * mask, audio_latents, vocoder,
                             griffin_lim_iterations)
        return output if return_dict else output.to_tuple()

    def decode_spectrograms(self, latents: torch.Tensor) -> np.ndarray:
        """VAE decode -> [0, 1] image -> channel mean: spectrogram images [N, n_mels, W] (float32)."""
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return (decoded / 2 + 0.5).clamp(0, 1).mean(dim=1).float().cpu().numpy()

    def spectrogram_to_audio(self, spectrogram: np.ndarray, vocoder: str, iterations: int) -> np.ndarray:
        log_mel = image_to_spectrogram(spectrogram, AUFFUSION)
        if vocoder == "griffinlim":
            return griffin_lim(log_mel, AUFFUSION, n_iter=iterations)
        return self.vocoder.vocode(torch.from_numpy(log_mel)).cpu().numpy()


def lora_run(folder: str | Path) -> bool:
    """Whether `folder` is a trainer's LoRA output: `<model>_lora/` adapters and no model of its own."""
    folder = Path(folder)
    return (folder.is_dir() and not (folder / "audio_model").is_dir()
            and any((folder / f"{m}_lora" / "adapter.json").is_file() for m in ("image", "audio")))


def find_vocoder(audio: ModelSource) -> HiFiGAN | None:
    """The HiFi-GAN in the audio model's `vocoder/` (Auffusion's format), or None when it has none."""
    from pipelines.vocoders import load_hifigan

    local = Path(audio.source) / audio.subfolder("vocoder")
    if Path(audio.source).is_dir():
        return load_hifigan(local, AUFFUSION).model if (local / "config.json").is_file() else None
    from huggingface_hub.errors import EntryNotFoundError

    from pipelines.hub import download

    try:
        files = [download(audio.source, audio.subfolder(f"vocoder/{name}")) for name in ("config.json", "vocoder.pt")]
    except EntryNotFoundError:  # a Hub model without a vocoder (or, offline, none cached)
        return None
    return load_hifigan(files[0].parent, AUFFUSION).model


def save_hifigan(model: HiFiGAN, folder: Path) -> None:
    """Auffusion's vocoder layout, which `find_vocoder` reads: config.json (the generator's settings) and vocoder.pt
    holding {"generator": state dict}. The weights are plain convolution weights (weight norm was folded at load), so
    Auffusion's own weight-normed generator would not load them strictly."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(model.config), indent=2) + "\n")
    torch.save({"generator": {name: t.detach().cpu() for name, t in model.state_dict().items()}},
               folder / "vocoder.pt")


def load_tokenizer(model: ModelSource):
    """The tokenizer in the model's `tokenizer/` folder, built from the class its tokenizer_config.json names.

    AutoTokenizer would first look for a model config.json, which diffusers-layout repos do not have at the root.
    """
    import transformers

    subfolder = model.subfolder("tokenizer")
    local = Path(model.source) / subfolder / "tokenizer_config.json"
    if local.is_file():
        config_file = local
    else:
        from pipelines.hub import download

        config_file = download(model.source, f"{subfolder}/tokenizer_config.json")
    class_name = json.loads(config_file.read_text()).get("tokenizer_class", "AutoTokenizer")
    return getattr(transformers, class_name, transformers.AutoTokenizer).from_pretrained(model.source,
                                                                                        subfolder=subfolder)


def to_viewable_image(spectrogram: np.ndarray) -> Image.Image:
    """Grayscale picture as the paper shows it: the spectrogram min-max stretched ("re-normalized for display")."""
    low, high = float(spectrogram.min()), float(spectrogram.max())
    stretched = (spectrogram - low) / (high - low) if high > low else np.zeros_like(spectrogram)
    return Image.fromarray((stretched * 255 + 0.5).astype(np.uint8))
