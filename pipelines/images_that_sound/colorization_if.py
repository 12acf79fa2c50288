"""The paper's colorization: Factorized Diffusion on DeepFloyd IF stages I and II (paper App. A.1, after Geng et al.).

IF works in pixel space, so the constraint is applied to the noisy image itself. At every step of both stages the
grayscale component (channel mean) of x_t is replaced by the same component of a fresh noisy copy of the spectrogram,

    y_t = √ᾱ_t · g + √(1 − ᾱ_t) · ε,   x_t ← G(y_t) + (x_t − G(x_t)),   G(x) = channel mean,

so the model only synthesises the colour component. Stage I runs at a quarter of the spectrogram's size (64 rows for
Auffusion's 256 mels; the width keeps the aspect, e.g. 64 × 248) and restarts from the noisy gray image y_t at step
`start_step` of `num_inference_steps` (7 of 30: "a stronger prior for what the structure of the image is");
stage II up-samples to full size, conditioned on stage I's result noised to `noise_level` 50. Classifier-free
guidance follows IF: the UNets predict noise and variance (6 channels); guidance mixes the noise halves and the
conditional branch's variance goes to the DDPM step. The result's channel mean equals the spectrogram exactly.

Compared with the Stable Diffusion path (`colorization.py`), nothing here goes through a VAE: the projection is
exact at every step, not only at the end, and IF was the model the authors used. It needs the gated DeepFloyd weights
and T5-XXL (about 10 GB in fp16), so it is meant for a GPU.

Departures from the authors' code (IFICL/images-that-sound, src/colorization):
- they evaluate two "views" (gray, colour) with the same prompt and identity transforms and average 2·G(ε) and
  2·C(ε); that equals one plain estimate ε, so each CFG branch runs once here (half the UNet work, same result);
- at the restart step their view code has, as an in-place side effect, replaced y_t by 2·G(y_t) (twice the gray,
  no colour noise); we restart from y_t itself, the noisy gray image the paper describes;
- the steps before `start_step` are thrown away by their restart, so they are not run here;
- the last step's output is projected once more (in [0, 1], `project_grayscale`), so the channel mean equals the
  spectrogram exactly instead of approximately;
- projection noise and sampling draw from the given generators (theirs from the global RNG), so results reproduce.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from pipelines.images_that_sound import PAPER_IF_STAGE_I, PAPER_IF_STAGE_II
from pipelines.images_that_sound.colorization import project_grayscale, replace_grayscale

IF_PROMPT_LENGTH = 77  # IF's T5 was trained on 77 tokens (diffusers' IF pipelines use the same)
STAGE_I_SCALE = 4  # stage I samples at a quarter of the final size, as the authors (64 × 256 for 256 × 1024)


class IFColorizationPipeline(DiffusionPipeline):
    """Colour spectrograms with DeepFloyd IF while their grayscale stays fixed (Factorized Diffusion).

    Components: `tokenizer` + `text_encoder` (T5, shared by both stages), stage I `unet` (3 → 6 channels: noise and
    learned variance) with its DDPM `scheduler`, stage II `super_resolution_unet` (6 → 6 channels, noise level as class
    embedding) with its `super_resolution_scheduler` and the `image_noising_scheduler` that noises its condition.
    """

    def __init__(self, tokenizer, text_encoder, unet: UNet2DConditionModel, scheduler: DDPMScheduler,
                 super_resolution_unet: UNet2DConditionModel, super_resolution_scheduler: DDPMScheduler,
                 image_noising_scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                              super_resolution_unet=super_resolution_unet,
                              super_resolution_scheduler=super_resolution_scheduler,
                              image_noising_scheduler=image_noising_scheduler)

    @classmethod
    def from_pretrained(cls, stage_1: str = PAPER_IF_STAGE_I, stage_2: str = PAPER_IF_STAGE_II,
                        dtype: torch.dtype = torch.float32, variant: str | None = "fp16") -> IFColorizationPipeline:
        """Load IF stage I and II (Hub ids or local folders in the IF layout) through diffusers' IF pipelines.

        The fp16 files are read (as the authors do; half the download) and cast to `dtype`. The safety checker and
        watermarker are not loaded: the loop below never calls them (nor does the authors' sampler).
        """
        from diffusers import IFPipeline, IFSuperResolutionPipeline

        unused = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
        first = IFPipeline.from_pretrained(stage_1, variant=variant, dtype=dtype, **unused)
        second = IFSuperResolutionPipeline.from_pretrained(stage_2, text_encoder=None, tokenizer=None,
                                                           variant=variant, dtype=dtype, **unused)
        return cls(first.tokenizer, first.text_encoder, first.unet, first.scheduler, second.unet, second.scheduler,
                   second.image_noising_scheduler)

    @property
    def size_multiple(self) -> int:
        """Spectrogram sizes are padded to a multiple of this: stage I (at 1/4 size) and II must halve evenly."""
        stage_1 = STAGE_I_SCALE * 2 ** (len(self.unet.config.block_out_channels) - 1)
        stage_2 = 2 ** (len(self.super_resolution_unet.config.block_out_channels) - 1)
        return math.lcm(stage_1, stage_2)

    def check_inputs(self, spectrograms: np.ndarray, num_inference_steps: int, guidance_scale: float,
                     start_step: int, noise_level: int) -> None:
        if spectrograms.ndim != 3 or min(spectrograms.shape) < 1:
            raise ValueError(f"`spectrograms` must be an array [N, height, width], got shape {spectrograms.shape}")
        if not np.isfinite(spectrograms).all() or spectrograms.min() < 0 or spectrograms.max() > 1:
            raise ValueError("`spectrograms` must hold finite values in [0, 1] (spectrogram images)")
        if spectrograms.shape[1] % self.size_multiple:
            raise ValueError(f"the spectrogram height must be a multiple of {self.size_multiple} for IF's UNets, got "
                             f"{spectrograms.shape[1]}")
        if num_inference_steps < 1 or not 0 <= start_step < num_inference_steps:
            raise ValueError(f"need `num_inference_steps` >= 1 and 0 <= `start_step` < `num_inference_steps`, got "
                             f"{num_inference_steps} and {start_step}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be a finite number >= 0, got {guidance_scale}")
        if not 0 <= noise_level < self.image_noising_scheduler.config.num_train_timesteps:
            raise ValueError(f"`noise_level` must be a timestep of the noising schedule, in [0, "
                             f"{self.image_noising_scheduler.config.num_train_timesteps}), got {noise_level}")

    def encode_prompt(self, prompt: str, negative_prompt: str, count: int) -> torch.Tensor:
        """T5 states [uncond × N; cond × N], encoded once; prompts lower-cased and stripped as IF does."""
        texts = [negative_prompt.lower().strip(), prompt.lower().strip()]
        tokens = self.tokenizer(texts, padding="max_length", max_length=IF_PROMPT_LENGTH, truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        states = self.text_encoder(tokens.input_ids.to(self.device),
                                   attention_mask=tokens.attention_mask.to(self.device))[0]
        return states.to(self.unet.dtype).repeat_interleave(count, dim=0)

    @torch.no_grad()
    def __call__(self, spectrograms: np.ndarray, prompt: str, *, negative_prompt: str = "",
                 num_inference_steps: int = 30, guidance_scale: float = 10.0, start_step: int = 7,
                 noise_level: int = 50, generator: torch.Generator | list[torch.Generator] | None = None
                 ) -> np.ndarray:
        """Colour images [N, H, W, 3] in [0, 1] whose channel mean equals `spectrograms` [N, H, W] exactly.

        Paper defaults: 30 steps, guidance 10, stage I restarts from the noisy spectrogram at step 7, stage II
        conditioning noised to level 50; the prompt is typically "a colorful photo of …".
        """
        # 1. Check inputs
        self.check_inputs(spectrograms, num_inference_steps, guidance_scale, start_step, noise_level)
        count, height, width = spectrograms.shape
        # 2. Encode the prompt once for both stages
        embeddings = self.encode_prompt(prompt, negative_prompt, count)
        # 3. The spectrogram as the fixed grayscale g in [-1, 1], padded with silence (black) to a size IF can halve
        padded = -(-width // self.size_multiple) * self.size_multiple
        gray = torch.full((count, height, padded), -1.0, device=self.device)
        gray[..., :width] = torch.from_numpy(np.ascontiguousarray(spectrograms)).to(self.device) * 2 - 1
        small = F.interpolate(gray[:, None], (height // STAGE_I_SCALE, padded // STAGE_I_SCALE), mode="bilinear",
                              align_corners=False, antialias=False)[:, 0]  # the authors' TF.resize(…, antialias=False)
        # 4. Stage I at a quarter size, 5. stage II up-sampling
        low = self.sample_stage_1(embeddings, small, num_inference_steps, guidance_scale, start_step, generator)
        image = self.sample_stage_2(embeddings, gray, low, num_inference_steps, guidance_scale, noise_level, generator)
        # 6. Exact grayscale in [0, 1], padding cropped
        colour = project_grayscale(image.float() / 2 + 0.5, gray / 2 + 0.5)[..., :width]
        return colour.permute(0, 2, 3, 1).cpu().numpy()

    def sample_stage_1(self, embeddings, gray, steps: int, scale: float, start_step: int, generator) -> torch.Tensor:
        """Quarter-size sample [N, 3, h, w] (64 rows for 256 mels) whose gray component tracks `gray` [N, h, w],
        restarted from the noisy gray image at `start_step`."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # per call: users share the pipeline
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps[start_step:].tolist()  # the steps before the restart would be thrown away
        images = noisy_gray(gray, scheduler.alphas_cumprod[timesteps[0]], generator, self.unet.dtype)
        for index, timestep in enumerate(self.progress_bar(timesteps)):
            if index > 0:  # the restart image y_t already has the right gray component
                images = project_noisy(images, gray, scheduler.alphas_cumprod[timestep], generator)
            model_input = scheduler.scale_model_input(images, timestep)
            noise = guided_estimate(self.unet, model_input, timestep, embeddings, scale, channels=3)
            images = scheduler.step(noise, timestep, images, generator=generator).prev_sample
        return images

    def sample_stage_2(self, embeddings, gray, low_res, steps: int, scale: float, noise_level: int,
                       generator) -> torch.Tensor:
        """Full-size sample [N, 3, H, W] up-sampled from `low_res`, its gray component tracking `gray` [N, H, W]."""
        scheduler = type(self.super_resolution_scheduler).from_config(self.super_resolution_scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        count, height, width = gray.shape
        dtype = self.super_resolution_unet.dtype
        upscaled = F.interpolate(low_res, (height, width), mode="bilinear", align_corners=True)
        levels = torch.full((count,), noise_level, device=self.device, dtype=torch.long)
        upscaled = self.image_noising_scheduler.add_noise(
            upscaled, randn_tensor(upscaled.shape, generator=generator, device=self.device, dtype=upscaled.dtype),
            levels)
        images = randn_tensor((count, 3, height, width), generator=generator, device=self.device, dtype=dtype)
        images = images * scheduler.init_noise_sigma
        for timestep in self.progress_bar(scheduler.timesteps.tolist()):
            images = project_noisy(images, gray, scheduler.alphas_cumprod[timestep], generator)
            model_input = scheduler.scale_model_input(torch.cat([images, upscaled], dim=1), timestep)
            noise = guided_estimate(self.super_resolution_unet, model_input, timestep, embeddings, scale, channels=3,
                                    class_labels=torch.cat([levels, levels]))
            images = scheduler.step(noise, timestep, images, generator=generator).prev_sample
        return images


def noisy_gray(gray: torch.Tensor, alpha_cumprod: torch.Tensor, generator, dtype) -> torch.Tensor:
    """y_t = √ᾱ_t · g + √(1 − ᾱ_t) · ε: the gray image [N, H, W] on 3 channels, noised to step t (fresh ε)."""
    noise = randn_tensor((gray.shape[0], 3, *gray.shape[1:]), generator=generator, device=gray.device, dtype=dtype)
    alpha_cumprod = alpha_cumprod.to(gray.device, dtype)
    return alpha_cumprod.sqrt() * gray[:, None].to(dtype) + (1 - alpha_cumprod).sqrt() * noise


def project_noisy(images: torch.Tensor, gray: torch.Tensor, alpha_cumprod: torch.Tensor, generator) -> torch.Tensor:
    """x_t ← G(y_t) + C(x_t): the grayscale component of x_t [N, 3, H, W] replaced by that of a noisy `gray`."""
    target = noisy_gray(gray, alpha_cumprod, generator, images.dtype).mean(dim=1)
    return replace_grayscale(images, target)


def guided_estimate(unet: UNet2DConditionModel, model_input: torch.Tensor, timestep, embeddings: torch.Tensor,
                    scale: float, channels: int, **unet_kwargs) -> torch.Tensor:
    """IF's classifier-free guidance, both branches in one batch: [uncond + s·(cond − uncond), cond variance]."""
    output = unet(torch.cat([model_input, model_input]), timestep, encoder_hidden_states=embeddings,
                  **unet_kwargs).sample
    uncond, cond = output.chunk(2)
    noise = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([noise, cond[:, channels:]], dim=1)
