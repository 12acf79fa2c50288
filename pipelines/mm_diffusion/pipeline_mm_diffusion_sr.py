"""MM-Diffusion's second stage: 64x64 clips to 256x256 with the ADM up-sampler and DDIM (joint-av.md §A4, §A6).

The official script (`py_scripts/multimodal_sample_sr.py`, flags `--sr_sample_fn ddim --sr_timestep_respacing ddim25`)
runs the SR model frame by frame on the base model's clips:

- the frames of all clips are one batch `(b f) c h w`, every frame at the same timestep; each frame is conditioned on
  its own low-resolution frame, bilinearly up-sampled and concatenated to x_t (`MMDiffusionSuperResModel.forward`,
  ADM `SuperResModel`);
- the initial noise is ONE image `(b, 3, 256, 256)` per clip, repeated over the clip's F frames (joint-av.md §A4
  "Sampling trick": it helps temporal consistency);
- DDIM with 25 respaced steps ("ddim25": timesteps 0, 40, ..., 960), η = 0, x̂_0 clipped to [-1, 1]; the SR model
  learns sigma, and DDIM uses the ε half of its output only (as the official `ddim_sample`).

The diffusion maths is `scheduling_mm_diffusion` (`DiffusionProcess`, `make_sampler`); nothing is re-derived here.

Departures from the official code:
- with η > 0, DDIM's fresh noise at each step is drawn independently per frame (the official `randn_like` does the
  same); only the initial noise is shared, as in the official script;
- noise comes from `torch.Generator`s: one generator draws the clips' noise images in order; a list gives each clip
  its own (then a batch equals single runs);
- `frame_batch_size` splits each model evaluation into chunks of frames to bound memory; the SR model is frame-wise
  and the chunks see the same timestep, so the result equals the single-batch official run;
- video is rounded to uint8 (the official cast truncates, a −0.5 level bias), as in `pipeline_mm_diffusion`.
UNCLEAR in the notes: whether the official script hands the SR model the base model's float output or its uint8
frames; here the input is what the caller gives (uint8, or float in [0, 1] to avoid the quantisation).

Loading and saving as `pipeline_mm_diffusion`: a released `*_SR.pt` file or a folder written by `save_pretrained`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline

from .checkpoints import load_pretrained, official_flags, save_pretrained_files
from .modeling_mm_diffusion_sr import MMDiffusionSuperResModel
from .pipeline_mm_diffusion import frames_as_uint8
from .scheduling_mm_diffusion import DDIMSampler, DiffusionProcess, make_sampler, space_timesteps, split_model_output

DEFAULT_SR_STEPS = 25  # official `--sr_timestep_respacing ddim25` (Table A.1 SR column: DDIM / 25)
CONFIG_FORMAT = "mm_diffusion-sr-1"  # model.json's "format" for a saved up-sampler

Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class MMDiffusionSuperResPipelineOutput(BaseOutput):
    """Up-sampled clips.

    video: `[N, F, H, W, 3]` (H = W = the SR model's `image_size`, 256 for the released models), uint8 numpy
        (`output_type="np"`) or float32 torch in [0, 1] (`output_type="pt"`).
    """

    video: np.ndarray | torch.Tensor


def process_flags(sr_flags: Mapping[str, Any]) -> dict[str, Any]:
    """The SR model's diffusion flags (`sr_diffusion_steps`, ...), renamed for `DiffusionProcess.from_flags`."""
    flags = dict(sr_flags)
    if "sr_diffusion_steps" in flags:
        flags["diffusion_steps"] = flags.pop("sr_diffusion_steps")
    flags.pop("sr_timestep_respacing", None)
    return flags


class MMDiffusionSuperResPipeline(StudioPipeline):
    """Frame-wise 64 -> 256 super-resolution of MM-Diffusion clips with the ADM up-sampler and DDIM.

    Args:
        sr_model: the SR U-Net (`MMDiffusionSuperResModel`); its `diffusion_flags` (official `sr_*` diffusion flags)
            define the process, its output channels whether sigma is learned (6 = ε and the variance term).
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["preview", "video", "denoised_video"]

    def __init__(self, sr_model: MMDiffusionSuperResModel):
        super().__init__()
        self.register_modules(sr_model=sr_model)
        self.learn_sigma = sr_model.config["out_channels"] == 2 * sr_model.config["in_channels"]
        self.process = DiffusionProcess.from_flags(process_flags(sr_model.diffusion_flags), self.learn_sigma)

    @classmethod
    def from_pretrained(cls, pretrained: str | Path,
                        torch_dtype: torch.dtype = torch.float32) -> MMDiffusionSuperResPipeline:
        """A released `*_SR.pt` file (a `<name>.json` beside it may give other flags) or a folder written by
        `save_pretrained`, on the CPU. Any half `torch_dtype` loads the official mixed precision."""
        return cls(load_pretrained(pretrained, "sr", torch_dtype)[0])

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """folder/model.safetensors (official key names, optionally cast) and folder/model.json (the flags)."""
        config = {"format": CONFIG_FORMAT, "flags": official_flags(self.sr_model)}
        return save_pretrained_files(self.sr_model, folder, config, dtype)

    @property
    def image_size(self) -> int:
        return int(self.sr_model.config["image_size"])

    # 1. Inputs
    def check_inputs(self, num_inference_steps: int, eta: float, timestep_respacing: str | None,
                     output_type: str, frame_batch_size: int | None) -> None:
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= self.process.num_timesteps:
            raise ValueError(f"`num_inference_steps` must be an integer between 1 and the "
                             f"{self.process.num_timesteps} training steps, got {num_inference_steps!r}.")
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"`eta` must be a finite number >= 0 (0 = deterministic DDIM), got {eta}.")
        respacing = timestep_respacing if timestep_respacing is not None else f"ddim{num_inference_steps}"
        try:
            space_timesteps(self.process.num_timesteps, respacing)
        except ValueError as error:
            raise ValueError(f"DDIM cannot take {num_inference_steps} steps ({respacing!r}): {error}") from None
        if output_type not in ("np", "pt"):
            raise ValueError(f"`output_type` must be 'np' (uint8 video) or 'pt' (float video in [0, 1]), got "
                             f"{output_type!r}.")
        if frame_batch_size is not None and (not isinstance(frame_batch_size, int) or frame_batch_size < 1):
            raise ValueError(f"`frame_batch_size` must be None (all frames at once) or an integer >= 1, got "
                             f"{frame_batch_size!r}.")

    def encode_video(self, video: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) `[F, h, w, 3]` / `[N, F, h, w, 3]` -> `[N, F, 3, h, w]` in [-1, 1] (official
        `x / 127.5 − 1`), the SR model's `low_res`; the value rules are `MMDiffusionPipeline.encode_video`'s."""
        tensor = video if isinstance(video, torch.Tensor) else torch.as_tensor(np.asarray(video))
        if tensor.dim() == 4:
            tensor = tensor[None]
        channels = self.sr_model.config["in_channels"]
        if tensor.dim() != 5 or tensor.shape[-1] != channels or 0 in tensor.shape:
            raise ValueError(f"`video` must be low-resolution clips [N, F, h, w, {channels}] (or one clip "
                             f"[F, h, w, {channels}]), got shape {tuple(tensor.shape)}.")
        height, width = tensor.shape[2:4]
        if height != width or height > self.image_size:
            raise ValueError(f"`video` frames must be square and at most the output size {self.image_size} (the "
                             f"released model takes 64x64), got {height}x{width}; letterbox them first.")
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 127.5 - 1.0
        elif tensor.is_floating_point():
            if not torch.isfinite(tensor).all() or tensor.min() < 0 or tensor.max() > 1:
                raise ValueError("A float `video` must be finite and in [0, 1] (or pass uint8 frames in 0..255).")
            tensor = tensor.float() * 2.0 - 1.0
        else:
            raise ValueError(f"`video` must be uint8 in 0..255 or float in [0, 1], got dtype {tensor.dtype}.")
        return tensor.permute(0, 1, 4, 2, 3).to(self.device)

    # 2. Latents
    def prepare_latents(self, num_clips: int, num_frames: int, generator: Generator,
                        latents: torch.Tensor | None) -> torch.Tensor:
        """x_T `[N, F, 3, H, W]`: one noise image per clip, repeated over its frames (official
        `noise.unsqueeze(1).repeat(1, f, 1, 1, 1)`, joint-av.md §A4)."""
        shape = (num_clips, 1, self.sr_model.config["in_channels"], self.image_size, self.image_size)
        if latents is not None:
            if tuple(latents.shape) not in (shape, (shape[0], *shape[2:])) or not torch.isfinite(latents).all():
                raise ValueError(f"`latents` must be a finite noise image per clip, shape {(shape[0], *shape[2:])}, "
                                 f"got {tuple(latents.shape)}.")
            noise = latents.reshape(shape).to(self.device, torch.float32)
        elif isinstance(generator, list):
            if len(generator) != num_clips:
                raise ValueError(f"`generator` is a list of {len(generator)} generators for {num_clips} clips; pass "
                                 f"one generator per clip, or a single generator.")
            noise = torch.cat([randn_tensor((1, *shape[1:]), generator=g, device=self.device, dtype=torch.float32)
                               for g in generator])
        else:
            noise = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        return noise.repeat(1, num_frames, 1, 1, 1)

    # 3. Model
    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, low_res: torch.Tensor,
                      frame_batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`[N, F, 3, H, W]` x_t -> (ε, variance values), frame-wise: all N·F frames as one `(b f)` batch, or in
        chunks of `frame_batch_size` frames (same result: the model sees each frame alone)."""
        num_clips, num_frames = x.shape[:2]
        frames, conds = x.flatten(0, 1), low_res.flatten(0, 1)
        times = timestep.to(x.device).repeat_interleave(num_frames)  # t shared by every frame of every clip
        chunk = frame_batch_size or frames.shape[0]
        out = torch.cat([self.sr_model(frames[i:i + chunk], times[i:i + chunk], conds[i:i + chunk])
                         for i in range(0, frames.shape[0], chunk)])
        out = out.to(x.dtype).unflatten(0, (num_clips, num_frames))  # an fp16 model: back to the float32 state
        return split_model_output(out, 2, self.learn_sigma)

    @torch.inference_mode()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor,
        num_inference_steps: int = DEFAULT_SR_STEPS,
        eta: float = 0.0,
        timestep_respacing: str | None = None,
        generator: Generator = None,
        latents: torch.Tensor | None = None,
        output_type: Literal["np", "pt"] = "np",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        frame_batch_size: int | None = None,
    ) -> MMDiffusionSuperResPipelineOutput | tuple:
        """Up-sample clips frame by frame to `image_size` x `image_size` (256 for the released models).

        Args:
            video: low-resolution clips, uint8 `[N, F, 64, 64, 3]` (or one clip `[F, 64, 64, 3]`), or float in [0, 1].
            num_inference_steps: DDIM steps (25, as the official `ddim25`).
            eta: DDIM's η (0 = deterministic, the official default).
            timestep_respacing: an official respacing string instead of `f"ddim{num_inference_steps}"`.
            generator: one `torch.Generator` for all clips, or one per clip.
            latents: the initial noise image per clip, `[N, 3, H, W]`; it is shared by all frames of the clip.
            output_type: "np" (uint8) or "pt" (float32 in [0, 1]).
            callback_on_step_end: `callback_on_step_end(pipe, step, timestep, callback_kwargs)` after every step;
                `callback_kwargs` holds the names asked for in `callback_on_step_end_tensor_inputs` (default: all),
                each computed when read: "preview" (x̂_0's frames, uint8 numpy `[N, F, H, W, 3]`), "video" (x_t) and
                "denoised_video" (x̂_0), `[N, F, 3, H, W]` in [-1, 1]. A "video" it returns replaces x_t. Setting
                `pipe._interrupt = True` stops after the step.
            frame_batch_size: frames per model call (None: all N·F frames at once, as the official script).
        """
        # 1. Check inputs
        self.check_inputs(num_inference_steps, eta, timestep_respacing, output_type, frame_batch_size)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        # 2. Encode the condition
        low_res = self.encode_video(video)
        # 3. Prepare timesteps (the official respacing "ddim25": 960, 920, ..., 0 as the model sees them)
        sampler = make_sampler(self.process, "ddim", num_inference_steps, timestep_respacing, eta)
        # 4. Prepare latents: one noise image per clip, shared by its frames
        x = self.prepare_latents(low_res.shape[0], low_res.shape[1], generator, latents)
        # 5. Denoising loop
        x = self.denoise(sampler, x, low_res, generator, callback_on_step_end, callback_on_step_end_tensor_inputs,
                         frame_batch_size)
        # 6. Decode
        return self.decode(x, output_type, return_dict)

    def denoise(self, sampler: DDIMSampler, x: torch.Tensor, low_res: torch.Tensor, generator: Generator,
                callback_on_step_end: StepCallback | None, tensor_inputs: list[str] | None,
                frame_batch_size: int | None) -> torch.Tensor:
        for i in range(sampler.num_steps):
            if self.interrupt:
                break
            timestep = sampler.model_timesteps[i].expand(x.shape[0])
            eps, var = self.predict_noise(x, timestep, low_res, frame_batch_size)
            x, denoised = sampler.step(eps, var, i, x, generator)  # DDIM: ε half only, x̂_0 clipped
            x = self.end_step(callback_on_step_end, i, timestep[0], tensor_inputs, x, denoised)
        return x

    def end_step(self, callback_on_step_end: StepCallback | None, step: int, timestep: torch.Tensor,
                 tensor_inputs: list[str] | None, x: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
        """Hand the step to the callback (each value made only when it reads it); returns x_t, or the "video" the
        callback gave back."""
        returned = self.step_end(callback_on_step_end, step, timestep, tensor_inputs,
                                 preview=lambda: frames_as_uint8(denoised).cpu().numpy(), video=lambda: x,
                                 denoised_video=lambda: denoised)
        return returned.get("video", x)

    @staticmethod
    def decode(video: torch.Tensor, output_type: str, return_dict: bool):
        """`[N, F, 3, H, W]` in [-1, 1] -> `[N, F, H, W, 3]`, uint8 numpy or float32 torch in [0, 1]."""
        if output_type == "np":
            video = frames_as_uint8(video).cpu().numpy()
        else:
            video = ((video.permute(0, 1, 3, 4, 2) + 1) / 2).clamp(0, 1).float()
        if not return_dict:
            return (video,)
        return MMDiffusionSuperResPipelineOutput(video=video)


__all__ = ["DEFAULT_SR_STEPS", "MMDiffusionSuperResPipeline", "MMDiffusionSuperResPipelineOutput", "process_flags"]
