"""MM-LDM sampling: joint sounding-video generation, audio → video and video → audio (paper §3.2-3.3, §4.1).

1. The given modality (if any) is encoded: audio -> audio image (`pipelines.audio.audio_image`) -> KL-VAE latent ->
   the audio encoder's posterior mean z_a; video -> per-frame KL-VAE latents -> the video encoder (keyframes and
   content frame) -> z_v.
2. The DiT denoises (z_a, z_v) from Gaussian noise with DDIM 50 (η = 0) on the shared scaled-linear schedule.
   - Joint generation: both conditions null (0_a, 0_v).
   - Audio → video (cross-modal sampling guidance, §3.3): at every step the audio stream is the forward-noised ground
     truth z_a^t = √ᾱ_t z_a + √(1 − ᾱ_t) n^t (Eq. 5 with the square root the paper omits; a fresh n^t per step, as
     the equation writes it), and the video noise is ε = ε_u + φ(ε_c − ε_u) with ε_c = ε̂(z_a^t, z_v^t, t; z_a, 0_v)
     and ε_u = ε̂(z_a^t, z_v^t, t; 0_a, 0_v) (Eq. 8 with its sign corrected), both from one batched DiT call. The
     given audio is returned as given. Video → audio is symmetric. φ is not given in the paper; `guidance_scale`.
   - Departure, resampling (`resample_rounds` U, 1 = the paper's sampler): each of the noisiest `resample_share` of
     the steps is taken U times, backing up by q(z^t | z^{t-1}) in between (`scheduling_mm_ldm.renoise`), in every
     mode; in joint generation the rounds act as a corrector that lets the two streams agree.
   - Departure, reconstruction guidance (`reconstruction_scale` λ, 0 = the paper's sampler): after each step the
     generated latent also moves against the gradient of how far the DiT's x̂_0 of the given stream lies from the
     given latent (`scheduling_mm_ldm.reconstruction_step`), as MM-Diffusion's zero-shot gradient guidance does. The
     studio DiT's video ignores the clean audio condition (it learnt to use each condition for its own stream), so
     without it audio → video is not coupled; with it the video is steered until the audio it implies is the given one.
3. The shared diffusion decoder turns z_v into every frame's KL-VAE latent (with the frame index) and z_a into the
   audio image's, each by DDIM with decoder classifier-free guidance (scale 2.5, the released configs), with the class
   predicted by the classification head; the KL-VAE decodes them; the audio image goes back to sound by Griffin-Lim
   (`pipelines.audio.audio_image_to_waveform`; the released code uses a HiFi-GAN that is not public).

Loading and saving: a folder with `vae/`, `autoencoder/`, `transformer/` (diffusers `save_pretrained`: config.json +
safetensors), `scheduler/` and `model.json` (clip format, audio convention, latent scale, training record).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from pipelines.audio import SPECS, AudioSpec, audio_image, audio_image_to_waveform
from pipelines.mm_diffusion.clips import ClipFormat
from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline, read_json, save_module, write_json

from .modeling_autoencoder import DecoderConditions, MultiModalAutoencoder
from .modeling_dit import MMLDMTransformer
from .scheduling_mm_ldm import (
    NUM_INFERENCE_STEPS,
    forward_noise,
    guided_noise,
    predicted_original,
    reconstruction_step,
    renoise,
    resampled,
)

CONFIG_FORMAT = "mm_ldm-1"
CONFIG_KEYS = ("format", "fps", "audio_spec", "latent_scale")
DEFAULT_GUIDANCE_SCALE = 3.0  # φ: not given in the paper
DECODER_GUIDANCE_SCALE = 2.5  # the released autoencoder configs (Landscape, AIST++)
GRIFFIN_LIM_ITERATIONS = 32

Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class MMLDMPipelineOutput(BaseOutput):
    """Sounding videos.

    video: `[N, F, H, W, 3]` uint8 numpy (`output_type="np"`), float32 torch in [0, 1] (`"pt"`), or the video latents
        z_v `[N, C, h, w]` (`"latent"`).
    audio: `[N, L]` float32 waveform at `sample_rate` (numpy for "np", torch for "pt"), or z_a (`"latent"`).
    """

    video: np.ndarray | torch.Tensor
    audio: np.ndarray | torch.Tensor
    sample_rate: int
    fps: int


class MMLDMPipeline(StudioPipeline):
    """Joint audio-video generation, A2V and V2A with MM-LDM (see the module docstring).

    Args:
        vae: the pre-compression KL-VAE (frames and audio images share it).
        autoencoder: the multi-modal autoencoder (encoders, semantic space, shared decoder).
        transformer: the multi-modal DiT.
        scheduler: the shared DDIM schedule (`scheduling_mm_ldm.make_scheduler`).
        fps: the clip's frame rate; audio_spec: its `pipelines.audio.SPECS` name (rate, clip length, mel).
        latent_scale: factor applied to the autoencoder's latents before the DiT (1: as encoded).
        training_record: how the weights were trained (kept in model.json).
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["preview", "audio_latents", "video_latents", "denoised_audio",
                                                    "denoised_video"]

    def __init__(self, vae: AutoencoderKL, autoencoder: MultiModalAutoencoder, transformer: MMLDMTransformer,
                 scheduler: DDIMScheduler, fps: int = 10, audio_spec: str = "mm_ldm_studio", latent_scale: float = 1.0,
                 training_record: dict[str, Any] | None = None):
        super().__init__()
        if audio_spec not in SPECS or SPECS[audio_spec].n_mels is None:
            raise ValueError(f"`audio_spec` must name a mel convention of pipelines.audio.SPECS, got {audio_spec!r}")
        self.register_modules(vae=vae, autoencoder=autoencoder, transformer=transformer, scheduler=scheduler)
        self.fps, self.audio_spec, self.latent_scale = fps, audio_spec, latent_scale
        self.training_record = dict(training_record or {})

    # 0. Loading and saving
    @classmethod
    def from_pretrained(cls, pretrained: str | Path, torch_dtype: torch.dtype = torch.float32) -> MMLDMPipeline:
        """A folder written by `save_pretrained`, on the CPU."""
        folder = Path(pretrained)
        if not (folder / "model.json").is_file():
            raise ValueError(f"{folder} is not a saved MM-LDM pipeline (no model.json)")
        config = read_json(folder / "model.json")
        if config.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{folder}/model.json has format {config.get('format')!r}, expected {CONFIG_FORMAT!r}")
        modules = {name: kind.from_pretrained(folder / name, torch_dtype=torch_dtype) for name, kind in
                   (("vae", AutoencoderKL), ("autoencoder", MultiModalAutoencoder),
                    ("transformer", MMLDMTransformer))}
        record = {key: value for key, value in config.items() if key not in CONFIG_KEYS}
        return cls(**modules, scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"), fps=config["fps"],
                   audio_spec=config["audio_spec"], latent_scale=config["latent_scale"], training_record=record)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """vae/, autoencoder/, transformer/ (config.json + safetensors; `dtype=torch.float16` halves them for
        bundling, the modules themselves stay as they are), scheduler/ and model.json."""
        folder = Path(folder)
        for name in ("vae", "autoencoder", "transformer"):
            save_module(getattr(self, name), folder / name, dtype)
        self.scheduler.save_pretrained(folder / "scheduler")
        write_json({"format": CONFIG_FORMAT, "fps": self.fps, "audio_spec": self.audio_spec,
                    "latent_scale": self.latent_scale, **self.training_record}, folder / "model.json")
        return folder

    # 1. Inputs
    @property
    def spec(self) -> AudioSpec:
        return SPECS[self.audio_spec]

    @property
    def num_frames(self) -> int:
        return self.autoencoder.config.num_frames

    @property
    def frame_size(self) -> int:
        return self.vae.config.sample_size

    @property
    def clip_format(self) -> ClipFormat:
        """The sounding-video clip this model makes (the same record as MM-Diffusion's, for uploads and files)."""
        size = self.frame_size
        return ClipFormat(self.num_frames, size, size, self.spec.clip_samples, self.fps, self.spec.sample_rate)

    @property
    def mel_frames(self) -> int:
        return self.spec.frames_for(self.spec.clip_samples)

    def latent_shapes(self, num_samples: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        audio, video = self.autoencoder.latent_shapes()
        return (num_samples, *audio), (num_samples, *video)

    def check_inputs(self, video, audio, num_inference_steps: int, guidance_scale: float, reconstruction_scale: float,
                     decoder_steps: int, decoder_guidance_scale: float, num_samples: int, generator: Generator,
                     latents, output_type: str) -> None:
        if video is not None and audio is not None:
            raise ValueError("Give at most one of `video` (video-to-audio) and `audio` (audio-to-video): the other "
                             "modality is generated. For joint generation give neither.")
        train_steps = self.scheduler.config.num_train_timesteps
        for name, value in (("num_inference_steps", num_inference_steps), ("decoder_steps", decoder_steps)):
            if not isinstance(value, int) or not 1 <= value <= train_steps:
                raise ValueError(f"`{name}` must be an integer from 1 to {train_steps}, got {value!r}.")
        for name, value in (("guidance_scale", guidance_scale), ("reconstruction_scale", reconstruction_scale),
                            ("decoder_guidance_scale", decoder_guidance_scale)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an integer >= 1, got {num_samples!r}.")
        if isinstance(generator, list) and len(generator) != num_samples:
            raise ValueError(f"`generator` is a list of {len(generator)} generators but `num_samples` is "
                             f"{num_samples}; pass one generator per sample, or a single generator.")
        if latents is not None:
            if not (isinstance(latents, (tuple, list)) and len(latents) == 2):
                raise ValueError("`latents` must be a pair (audio noise, video noise) of tensors.")
            for name, tensor, shape in zip(("audio", "video"), latents, self.latent_shapes(num_samples)):
                if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or not torch.isfinite(
                        tensor).all():
                    raise ValueError(f"`latents` {name} noise must be a finite tensor of shape {shape}, got "
                                     f"{tuple(getattr(tensor, 'shape', ()))}.")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'latent', got {output_type!r}.")

    @staticmethod
    def check_resampling(rounds: int, share: float) -> None:
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`resample_rounds` must be an integer >= 1 (1 = no resampling), got {rounds!r}.")
        if not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(f"`resample_share` must be a share of the steps between 0 and 1, got {share!r}.")

    # 2. Conditioning: media -> perceptual latents
    def video_tensor(self, video, num_samples: int) -> torch.Tensor:
        """uint8 (or float in [0, 1]) `[F, H, W, 3]` / `[N, F, H, W, 3]` -> `[N, F, 3, H, W]` in [-1, 1]."""
        tensor = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
        tensor = tensor[None] if tensor.dim() == 4 else tensor
        expected = (self.num_frames, self.frame_size, self.frame_size, 3)
        if tensor.dim() != 5 or tuple(tensor.shape[1:]) != expected or tensor.shape[0] not in (1, num_samples):
            raise ValueError(f"`video` must have shape {expected} or (N, *{expected}) with N = 1 or `num_samples` "
                             f"({num_samples}), got {tuple(tensor.shape)}; resize and trim the clip first.")
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 127.5 - 1.0
        elif tensor.is_floating_point() and torch.isfinite(tensor).all() and tensor.min() >= 0 and tensor.max() <= 1:
            tensor = tensor.float() * 2.0 - 1.0
        else:
            raise ValueError("`video` must be uint8 in 0..255 or finite float in [0, 1].")
        return tensor.permute(0, 1, 4, 2, 3).expand(num_samples, -1, -1, -1, -1)

    def audio_array(self, audio, num_samples: int) -> np.ndarray:
        """A waveform `[L]` / `[N, L]` of exactly one clip at the spec's rate, in [-1, 1] -> float32 `[N, L]`."""
        array = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio)
        array = array[None] if array.ndim == 1 else array
        length, rate = self.spec.clip_samples, self.spec.sample_rate
        if array.ndim != 2 or array.shape[1] != length or array.shape[0] not in (1, num_samples):
            raise ValueError(f"`audio` must be a mono waveform of {length} samples ({length / rate:g} s at {rate} "
                             f"Hz), shape ({length},) or (N, {length}) with N = 1 or `num_samples` ({num_samples}); "
                             f"got {tuple(array.shape)}. Resample, pad or trim it.")
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all() or np.abs(array).max() > 1:
            raise ValueError("`audio` must be a finite float waveform in [-1, 1].")
        return np.broadcast_to(array.astype(np.float32), (num_samples, length))

    def vae_encode(self, images: torch.Tensor) -> torch.Tensor:
        """`[M, 3, H, W]` in [-1, 1] -> scaled KL-VAE latents (the posterior mean)."""
        images = images.to(self.device, self.vae.dtype)
        return self.vae.encode(images).latent_dist.mode() * self.vae.config.scaling_factor

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """`[N, F, 3, H, W]` in [-1, 1] -> z_v `[N, C, h, w]` (posterior mean, × latent_scale). Only the keyframes the
        video encoder reads go through the KL-VAE (4 of the 16 frames at paper size)."""
        keyframes = video[:, list(self.autoencoder.keyframes)]
        latents = self.vae_encode(keyframes.flatten(0, 1)).unflatten(0, keyframes.shape[:2])
        return self.autoencoder.encode_keyframes(latents.to(self.autoencoder.dtype)).mode() * self.latent_scale

    def encode_audio(self, waveforms: np.ndarray) -> torch.Tensor:
        """`[N, L]` waveforms -> audio images -> z_a `[N, C, h, w]` (posterior mean, × latent_scale)."""
        images = torch.from_numpy(np.stack([audio_image(w, self.spec, self.frame_size, self.frame_size)
                                            for w in waveforms]))
        return self.autoencoder.encode_audio(self.vae_encode(images).to(self.autoencoder.dtype)).mode() \
            * self.latent_scale

    # 3. The DiT with cross-modal guidance
    def predict_noise(self, audio: torch.Tensor, video: torch.Tensor, timestep: torch.Tensor,
                      audio_condition: torch.Tensor | None, video_condition: torch.Tensor | None,
                      guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε_a, ε_v): the plain prediction with both conditions null, or, with a condition, ε_u + φ(ε_c − ε_u) from
        one batched call on [conditional; unconditional] rows."""
        batch = audio.shape[0]
        timesteps = timestep.reshape(-1).expand(batch).to(audio.device)
        if audio_condition is None and video_condition is None:
            return self.transformer(audio, video, timesteps)

        def with_null(condition: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
            return None if condition is None else torch.cat([condition, torch.zeros_like(like)])

        eps_audio, eps_video = self.transformer(torch.cat([audio, audio]), torch.cat([video, video]),
                                                timesteps.repeat(2), with_null(audio_condition, audio),
                                                with_null(video_condition, video))
        (cond_audio, uncond_audio), (cond_video, uncond_video) = eps_audio.chunk(2), eps_video.chunk(2)
        return (guided_noise(uncond_audio, cond_audio, guidance_scale),
                guided_noise(uncond_video, cond_video, guidance_scale))

    def prepare_latents(self, num_samples: int, generator: Generator,
                        latents: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_a^T, z_v^T): the given `latents`, or audio noise then video noise from the generator(s)."""
        if latents is not None:
            return tuple(t.to(self.device, self.transformer.dtype) for t in latents)
        return tuple(randn_tensor(shape, generator=generator, device=self.device, dtype=self.transformer.dtype)
                     for shape in self.latent_shapes(num_samples))

    @torch.no_grad()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
        num_inference_steps: int = NUM_INFERENCE_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        reconstruction_scale: float = 0.0,
        resample_rounds: int = 1,
        resample_share: float = 0.6,
        decoder_steps: int = NUM_INFERENCE_STEPS,
        decoder_guidance_scale: float = DECODER_GUIDANCE_SCALE,
        num_samples: int = 1,
        generator: Generator = None,
        latents: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_type: Literal["np", "pt", "latent"] = "np",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> MMLDMPipelineOutput | tuple:
        """Generate `num_samples` sounding videos; with `video` (V2A) or `audio` (A2V), generate the other modality.

        Args:
            video: uint8 `[F, H, W, 3]` or `[N, F, H, W, 3]` frames (or float in [0, 1]) at the model's clip size.
            audio: `[L]` or `[N, L]` float waveform in [-1, 1] of one clip at the model's rate.
            num_inference_steps: DDIM steps of the DiT (paper: 50).
            guidance_scale: φ of the cross-modal guidance (A2V / V2A only; 1 = the conditional prediction alone,
                0 = the unconditional one).
            reconstruction_scale: λ of the reconstruction guidance (A2V / V2A only; 0 = the paper's sampler; a
                departure, see the module docstring).
            resample_rounds: how many times each resampled DiT step is taken (RePaint's U; 1 = the paper's
                sampler; a departure, see the module docstring).
            resample_share: the share of the DiT steps, from the noisiest, that are resampled (never the last).
            decoder_steps, decoder_guidance_scale: DDIM steps and classifier-free guidance of the shared decoder
                (released: 50, 2.5).
            generator: one `torch.Generator`, or one per sample.
            latents: the DiT's initial noise (z_a^T `[N, C, h_a, w_a]`, z_v^T `[N, C, h_v, w_v]`); default: drawn
                from `generator`.
            output_type: "np" (uint8 frames, numpy audio), "pt" (float frames in [0, 1], torch audio) or "latent"
                (z_v, z_a: the decoder is skipped).
            callback_on_step_end: `callback_on_step_end(pipe, step, timestep, callback_kwargs)` after every DiT step,
                with the asked-for names of "preview" (uint8 `[N, h, w, 3]`: the first three channels of x̂_0's video
                latent, min-max scaled per sample), "audio_latents", "video_latents" (the state) and "denoised_audio",
                "denoised_video" (x̂_0). Returned "audio_latents" / "video_latents" replace the state. Setting
                `pipe._interrupt = True` stops after the step.
        """
        # 1. Check inputs
        self.check_inputs(video, audio, num_inference_steps, guidance_scale, reconstruction_scale, decoder_steps,
                          decoder_guidance_scale, num_samples, generator, latents, output_type)
        self.check_resampling(resample_rounds, resample_share)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        # 2. Encode the condition
        given_video = None if video is None else self.video_tensor(video, num_samples)
        given_audio = None if audio is None else self.audio_array(audio, num_samples)
        clean_video = None if given_video is None else self.encode_video(given_video).to(self.transformer.dtype)
        clean_audio = None if given_audio is None else self.encode_audio(given_audio).to(self.transformer.dtype)
        # 3. Timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        z_audio, z_video = self.prepare_latents(num_samples, generator, latents)
        # 4. Denoising loop
        z_audio, z_video = self.denoise(z_audio, z_video, clean_audio, clean_video, guidance_scale,
                                        reconstruction_scale, resample_rounds, resample_share, generator,
                                        callback_on_step_end, callback_on_step_end_tensor_inputs)
        z_audio = z_audio if clean_audio is None else clean_audio  # the given modality is returned as given
        z_video = z_video if clean_video is None else clean_video
        if output_type == "latent":
            return MMLDMPipelineOutput(z_video, z_audio, self.spec.sample_rate, self.fps) if return_dict else \
                (z_video, z_audio, self.spec.sample_rate, self.fps)
        # 5. Decode
        given = "video" if given_video is not None else "audio" if given_audio is not None else None
        frames, images = self.decode_latents(z_audio, z_video, decoder_steps, decoder_guidance_scale, generator, given)
        return self.postprocess(frames, images, given_video, given_audio, output_type, return_dict)

    @torch.no_grad()
    def reconstruct(self, video: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor,
                    decoder_steps: int = NUM_INFERENCE_STEPS, decoder_guidance_scale: float = DECODER_GUIDANCE_SCALE,
                    generator: Generator = None, output_type: Literal["np", "pt"] = "np",
                    return_dict: bool = True) -> MMLDMPipelineOutput | tuple:
        """Sounding videos through the autoencoder alone: both streams encoded (z_v, z_a, as `__call__` encodes a
        given stream) and decoded by the shared decoder, with no DiT. What the latent space keeps of a clip: the
        ceiling of what sampling can give back. `video` `[N, F, H, W, 3]` and `audio` `[N, L]` as in `__call__`."""
        num_samples = len(video) if np.ndim(video) == 5 else 1
        self.check_inputs(None, None, 1, 0.0, 0.0, decoder_steps, decoder_guidance_scale, num_samples, generator,
                          None, output_type)
        z_video = self.encode_video(self.video_tensor(video, num_samples)).to(self.transformer.dtype)
        z_audio = self.encode_audio(self.audio_array(audio, num_samples)).to(self.transformer.dtype)
        frames, images = self.decode_latents(z_audio, z_video, decoder_steps, decoder_guidance_scale, generator)
        return self.postprocess(frames, images, None, None, output_type, return_dict)

    def reconstruction_gradient(self, z_audio: torch.Tensor, z_video: torch.Tensor, timestep: torch.Tensor,
                                clean_audio: torch.Tensor | None, clean_video: torch.Tensor | None,
                                guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict_noise`'s (ε_a, ε_v), and the gradient w.r.t. the generated stream's latent of the given stream's
        reconstruction error Σ_n mean‖x̂_0 − z_given‖² (per sample, so a sample's guidance ignores the batch)."""
        given_is_audio = clean_audio is not None
        with torch.enable_grad():
            generated = (z_video if given_is_audio else z_audio).detach().requires_grad_(True)
            audio, video = (z_audio, generated) if given_is_audio else (generated, z_video)
            eps_audio, eps_video = self.predict_noise(audio, video, timestep, clean_audio, clean_video, guidance_scale)
            noisy, eps, clean = (audio, eps_audio, clean_audio) if given_is_audio else (video, eps_video, clean_video)
            error = (predicted_original(self.scheduler, noisy, eps, timestep) - clean).pow(2).flatten(1).mean(1).sum()
            (gradient,) = torch.autograd.grad(error, generated)
        return eps_audio.detach(), eps_video.detach(), gradient

    def denoise(self, z_audio: torch.Tensor, z_video: torch.Tensor, clean_audio: torch.Tensor | None,
                clean_video: torch.Tensor | None, guidance_scale: float, reconstruction_scale: float,
                resample_rounds: int, resample_share: float, generator: Generator,
                callback_on_step_end: StepCallback | None, tensor_inputs: list[str] | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM over the DiT; the resampled steps are taken `resample_rounds` times, backing up by q(z^t | z^{t-1})
        in between."""
        timesteps = self.scheduler.timesteps
        for i, t in enumerate(timesteps):
            if self.interrupt:
                break
            rounds = resample_rounds if resampled(i, len(timesteps), resample_share) else 1
            for round_ in range(rounds):
                if round_ > 0:
                    z_audio, z_video = (renoise(self.scheduler, z, int(t), int(timesteps[i + 1]),
                                                randn_tensor(z.shape, generator=generator, device=self.device,
                                                             dtype=z.dtype)) for z in (z_audio, z_video))
                z_audio, z_video, denoised_audio, denoised_video = self.ddim_step(
                    i, z_audio, z_video, clean_audio, clean_video, guidance_scale, reconstruction_scale, generator)
            returned = self.step_end(
                callback_on_step_end, i, t, tensor_inputs,
                preview=lambda d=denoised_video: latent_preview(d),
                audio_latents=lambda a=z_audio: a, video_latents=lambda v=z_video: v,
                denoised_audio=lambda d=denoised_audio: d, denoised_video=lambda d=denoised_video: d)
            z_audio = returned.get("audio_latents", z_audio)
            z_video = returned.get("video_latents", z_video)
        return z_audio, z_video

    def ddim_step(self, i: int, z_audio: torch.Tensor, z_video: torch.Tensor, clean_audio: torch.Tensor | None,
                  clean_video: torch.Tensor | None, guidance_scale: float, reconstruction_scale: float,
                  generator: Generator) -> tuple[torch.Tensor, ...]:
        """One DDIM step i -> (z_a^{t-1}, z_v^{t-1}, x̂_0 of each). A given modality is replaced by its forward-noised
        ground truth before the call, and with `reconstruction_scale` > 0 the generated one is steered towards it
        after every step but the last."""
        timesteps = self.scheduler.timesteps
        t = timesteps[i]
        timestep = t.reshape(1)
        if clean_audio is not None:  # Eq. 5: z_a^t = √ᾱ_t z_a + √(1 − ᾱ_t) n^t
            noise = randn_tensor(clean_audio.shape, generator=generator, device=self.device, dtype=z_audio.dtype)
            z_audio = forward_noise(self.scheduler, clean_audio, noise, timestep)
        if clean_video is not None:
            noise = randn_tensor(clean_video.shape, generator=generator, device=self.device, dtype=z_video.dtype)
            z_video = forward_noise(self.scheduler, clean_video, noise, timestep)
        reconstructing = reconstruction_scale > 0 and (clean_audio is not None or clean_video is not None)
        if reconstructing:
            eps_audio, eps_video, gradient = self.reconstruction_gradient(z_audio, z_video, timestep, clean_audio,
                                                                          clean_video, guidance_scale)
        else:
            eps_audio, eps_video = self.predict_noise(z_audio, z_video, timestep, clean_audio, clean_video,
                                                      guidance_scale)
        audio_step = self.scheduler.step(eps_audio, t, z_audio)
        video_step = self.scheduler.step(eps_video, t, z_video)
        z_audio, z_video = audio_step.prev_sample, video_step.prev_sample
        if reconstructing and i + 1 < len(timesteps):
            if clean_audio is not None:
                z_video = reconstruction_step(self.scheduler, z_video, gradient, timesteps[i + 1],
                                              reconstruction_scale)
            else:
                z_audio = reconstruction_step(self.scheduler, z_audio, gradient, timesteps[i + 1],
                                              reconstruction_scale)
        return z_audio, z_video, audio_step.pred_original_sample, video_step.pred_original_sample

    # 5. Decoding: the shared decoder, then the KL-VAE
    def decode_latents(self, z_audio: torch.Tensor, z_video: torch.Tensor, steps: int, guidance_scale: float,
                       generator: Generator, given: str | None = None) -> tuple[torch.Tensor | None, ...]:
        """(z_a, z_v) -> frames `[N, F, 3, H, W]` and audio images `[N, 3, H, W]` in [-1, 1]; the `given` modality
        ("audio" or "video", returned as given) is not decoded (None)."""
        ae = self.autoencoder
        z_audio, z_video = (z / self.latent_scale for z in (z_audio.to(ae.dtype), z_video.to(ae.dtype)))
        n, frames = z_audio.shape[0], self.num_frames
        s_audio, s_video = ae.semantics(z_audio, z_video)
        labels = ae.classify(s_audio, s_video).argmax(-1)  # at inference the class comes from the head
        rows = {  # per modality: own latent, class, other modality's semantics, frame index (video only)
            "audio": (z_audio, labels, s_video, None),
            "video": (z_video.repeat_interleave(frames, 0), labels.repeat_interleave(frames),
                      s_audio.repeat_interleave(frames, 0),
                      torch.arange(frames, device=z_video.device).repeat(n)),
        }
        scheduler = DDIMScheduler.from_config(self.scheduler.config,
                                              prediction_type=ae.config.decoder_prediction_type)
        scheduler.set_timesteps(steps, device=self.device)
        shape = (ae.config.vae_channels, ae.config.vae_size, ae.config.vae_size)
        x = {"audio": randn_tensor((n, *shape), generator=generator, device=self.device, dtype=ae.dtype),
             "video": randn_tensor((n, frames, *shape), generator=generator, device=self.device,
                                   dtype=ae.dtype).flatten(0, 1)}
        x = {name: value for name, value in x.items() if name != given}  # drawn anyway: same noise in every mode
        conditions = {modality: self.guided_decoder_conditions(modality, *rows[modality]) for modality in x}
        for t in scheduler.timesteps:
            for modality in x:
                output = self.decoder_output(x[modality], t, conditions[modality], guidance_scale)
                x[modality] = scheduler.step(output, t, x[modality]).prev_sample
        decoded = {name: self.vae.decode(value.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
                   for name, value in x.items()}
        video = decoded.get("video")
        return None if video is None else video.unflatten(0, (n, frames)), decoded.get("audio")

    def guided_decoder_conditions(self, modality: str, latent: torch.Tensor, labels: torch.Tensor,
                                  other: torch.Tensor, frame_index: torch.Tensor | None) -> DecoderConditions:
        """The shared decoder's conditions for classifier-free guidance, rows [conditional; context and latent
        dropped]: computed once a decode, since they do not change with t."""
        m = latent.shape[0]
        drop = torch.cat([torch.zeros(m, dtype=torch.bool), torch.ones(m, dtype=torch.bool)]).to(latent.device)
        index = None if frame_index is None else frame_index.repeat(2)
        return self.autoencoder.decoder_conditions(modality, latent.repeat(2, 1, 1, 1), labels.repeat(2),
                                                   other.repeat(2, 1, 1), index, drop)

    def decoder_output(self, x: torch.Tensor, t: torch.Tensor, conditions: DecoderConditions,
                       guidance_scale: float) -> torch.Tensor:
        """The shared decoder's ε (or v) with classifier-free guidance (`guided_decoder_conditions`)."""
        m = x.shape[0]
        output = self.autoencoder.denoise_with(torch.cat([x, x]), t.reshape(1).expand(2 * m), conditions)
        cond, uncond = output.chunk(2)
        return guided_noise(uncond, cond, guidance_scale)

    def postprocess(self, frames: torch.Tensor | None, images: torch.Tensor | None, given_video: torch.Tensor | None,
                    given_audio: np.ndarray | None, output_type: str, return_dict: bool):
        """Frames to uint8 or [0, 1]; audio images to sound (the given modality is returned as given)."""
        frames = frames if given_video is None else given_video.float()
        if given_audio is None:
            length = self.spec.clip_samples
            waveforms = np.stack([np.pad(w, (0, max(length - len(w), 0)))[:length] for w in
                                  (audio_image_to_waveform(image, self.spec, self.mel_frames, GRIFFIN_LIM_ITERATIONS)
                                   for image in images.float().cpu().numpy())])
        else:
            waveforms = np.array(given_audio, dtype=np.float32)
        video = ((frames.permute(0, 1, 3, 4, 2).float() + 1) / 2).clamp(0, 1)
        if output_type == "np":
            video = (video * 255).round().to(torch.uint8).cpu().numpy()
            audio = waveforms.astype(np.float32)
        else:
            audio = torch.from_numpy(waveforms.astype(np.float32))
        if not return_dict:
            return video, audio, self.spec.sample_rate, self.fps
        return MMLDMPipelineOutput(video=video, audio=audio, sample_rate=self.spec.sample_rate, fps=self.fps)


def latent_preview(latent: torch.Tensor) -> np.ndarray:
    """`[N, C, h, w]` -> uint8 `[N, h, w, 3]`: the first three channels (repeated if fewer), min-max scaled per
    sample."""
    picture = latent[:, :3] if latent.shape[1] >= 3 else latent[:, :1].expand(-1, 3, -1, -1)
    low = picture.amin(dim=(1, 2, 3), keepdim=True)
    high = picture.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (picture - low) / (high - low).clamp_min(1e-8)
    return (scaled.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()


__all__ = ["MMLDMPipeline", "MMLDMPipelineOutput", "latent_preview"]
