"""MM-Diffusion sampling: joint audio-video generation and zero-shot A2V / V2A (paper §3.1, §3.4; joint-av.md §A6-A7).

One coupled U-Net predicts (ε_video, ε_audio) from (video_t, audio_t, t). Joint generation denoises both from
Gaussian noise with DDPM, DDIM or DPM-Solver (`scheduling_mm_diffusion`). Zero-shot conditional generation uses the
same unconditional model:

- replacement: before every model evaluation the given modality is replaced by its forward-diffused ground truth
  q(c_t | c) = √ᾱ_t c + √(1 − ᾱ_t) ε_c. As the official code, ε_c is one fixed draw for the whole loop: the initial
  noise of the conditioning modality.
- gradient guidance (Eqs. 10-12): the joint step gives (c_{t-1}, x_{t-1}) from (ĉ_t, x_t); the target is corrected by
  x̃_{t-1} = x_{t-1} − λ · w · ∇_{x_t} ‖c_{t-1} − ĉ_{t-1}‖², with ĉ_{t-1} = q(c_{t-1} | c) on the same ε_c and the
  squared error averaged over the elements of each sample. w = √(1 − ᾱ_{t-1}) ("paper", Eq. 12's factor at the
  step's output t-1) or w = √ᾱ_t ("code", the released `conditional_p_sample_loop_progressive_scale`, at the step's
  input t). Eq. 12 writes the gradient w.r.t. a_t, which the step's output v_t does not depend on; like the released
  code (and the reconstruction guidance it follows) it is taken w.r.t. the target's *input* x_t. No guidance on the
  final step (the code's `t != 0` mask). λ = 0 is exactly the replacement sampler.
- resampling (not in MM-Diffusion; RePaint, Lugmayr et al. 2022, jump length 1): each of the noisiest
  `resample_share` of the steps is taken `resample_rounds` times, going back to t by q(x_t | x_{t-1}) in between, so
  the generated modality can settle on the given one while the coarse layout is still open. Replacement alone lets
  the video fix its layout while the given audio is still mostly noise; on the studio lamp model it leaves audio ->
  video uncoupled, and resampling couples it (README). In joint generation the same rounds act as a corrector (as in
  predictor-corrector and restart samplers): each noisy state is denoised again from a fresh draw near it, so errors
  of the noisiest steps, where the layout and the background are decided, are not carried on (README: on the studio
  model it turns muddy, grainy backgrounds back into the scene's). 1 round (the default) is the paper's sampler.
- clean condition (not in MM-Diffusion; UniDiffuser's per-modality timesteps, Bao et al. 2023): for weights trained
  with `--clean-condition` (`pipelines.train.mm_diffusion`), the given modality enters every model call clean, at
  step 0 (its stream's own timestep embedding), and the network's learnt conditional denoises the other one.

Departures from the official code:
- the official guided loop with `use_fp16=True` multiplies the loss by `loss_scale = 2**20` and never divides it back
  out (effective λ = 3·2^20); here λ is the weight on the true gradient, whatever the precision;
- the official loss is `mean_flat(...).mean()` over the batch, which divides each sample's gradient by N; here the
  per-sample losses are summed, so a sample's guidance does not depend on the batch size;
- at the end, the conditioning modality in the output is the given input itself (the official loop returns the
  model's last replacement step for it);
- noise comes from per-sample `torch.Generator`s (a batch equals single runs with the same generators while the
  U-Net's random shift is off; with `cross_attention_shift=True` one shift per RS-MMA block and call is shared by the
  batch, as in the official code, drawn from a generator seeded by the first sample's generator);
- video is rounded to uint8 (the official cast truncates, a −0.5 level bias; rounding makes a given uint8 clip come
  back bit-identical);
- DPM-Solver steps with an order-1 group use the correct DPM-Solver-1 for audio (the official noise-prediction
  `dpm_solver_first_update` applies the data-prediction formula to audio; the default 20 steps never use it).
Gradient guidance and resampling need a one-evaluation-per-step sampler: they are offered with DDPM and DDIM, not
DPM-Solver.

Loading and saving (`from_pretrained` / `save_pretrained`, `checkpoints`): a released checkpoint file (`Landscape.pt`,
`AIST++.pt`, read with `torch.load(weights_only=True)`) or a saved folder (model.safetensors + model.json: the official
flags, the clip format and how the weights were trained), the layout the trainer writes and the studio bundles.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from pipelines.lora import load_lora_state, remove_lora, set_lora_scale, split_state
from pipelines.pipeline_utils import BaseOutput, StepCallback, StudioPipeline

from . import lora as mm_lora
from .attention import RSMMABlock
from .checkpoints import load_pretrained, official_flags, save_pretrained_files
from .clips import FPS, SAMPLE_RATE, ClipFormat
from .modeling_mm_diffusion import MMDiffusionUNet
from .scheduling_mm_diffusion import (
    SAMPLERS,
    DiffusionProcess,
    Sampler,
    make_sampler,
    space_timesteps,
    split_model_output,
)

CONFIG_FORMAT = "mm_diffusion-trained-1"  # model.json's "format", as the trainer has always written it
CONFIG_KEYS = ("format", "flags", "clip_format")  # the rest of model.json records how the weights were trained
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 25, "dpm_solver": 20}  # full DDPM ("Ours*"), the SR's ddim25, DPM-Solver-20

Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class MMDiffusionPipelineOutput(BaseOutput):
    """Sounding videos.

    video: `[N, F, H, W, 3]`, uint8 numpy (`output_type="np"`: `((x + 1)·127.5).clamp(0, 255)`, rounded) or
        float32 torch in [0, 1] (`output_type="pt"`).
    audio: `[N, L]` float32 waveform (numpy or torch as `video`), nominally in [-1, 1], at `sample_rate`.
    """

    video: np.ndarray | torch.Tensor
    audio: np.ndarray | torch.Tensor
    sample_rate: int
    fps: int


@dataclass(frozen=True)
class Condition:
    """The given modality for zero-shot generation: which one, its clean value in [-1, 1], and its slice in the packed
    state."""

    name: Literal["video", "audio"]
    clean: torch.Tensor  # packed [N, D_c]
    part: slice
    target: slice


class MMDiffusionPipeline(StudioPipeline):
    """Joint audio-video generation and zero-shot A2V / V2A with MM-Diffusion's coupled U-Net.

    Args:
        unet: the coupled U-Net (`MMDiffusionUNet`); its `diffusion_flags` (official diffusion flags) define the
            process, its output channels whether sigma is learned.
        sampler: the default sampler, "dpm_solver" (official unconditional default), "ddpm" or "ddim".
        sample_rate, fps: the clip's audio rate and frame rate (the released models: 16 kHz, 10 fps; a smaller
            model trained by `pipelines.train mm_diffusion` may use others).
        training_record: how the weights were trained (the trainer's record in model.json: size, data, steps, seed
            and, on toy-world data, the scenes); empty for the released checkpoints.
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["preview", "video", "audio", "denoised_video", "denoised_audio"]

    def __init__(self, unet: MMDiffusionUNet, sampler: str = "dpm_solver", sample_rate: int = SAMPLE_RATE,
                 fps: int = FPS, training_record: dict[str, Any] | None = None):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}.")
        self.register_modules(unet=unet)
        self.sampler = sampler
        self.sample_rate, self.fps = sample_rate, fps
        self.training_record = dict(training_record or {})
        self.lora: dict | None = None  # the loaded LoRA adapter's config
        self.learn_sigma = unet.config["video_out_channels"] == 2 * unet.config["video_size"][1]
        self.process = DiffusionProcess.from_flags(unet.diffusion_flags, learn_sigma=self.learn_sigma)

    # 0. Loading and saving
    @classmethod
    def from_pretrained(cls, pretrained: str | Path, torch_dtype: torch.dtype = torch.float32) -> MMDiffusionPipeline:
        """A released checkpoint file (`Landscape.pt`, `AIST++.pt`; a `<name>.json` beside it may give other flags)
        or a folder written by `save_pretrained` or the trainer, on the CPU. Any half `torch_dtype` loads the official
        mixed precision (float16 convolutions). A trainer's `--lora-rank` folder loads as its base with the adapter
        (`from_lora_run`)."""
        if mm_lora.lora_run(pretrained):
            return cls.from_lora_run(pretrained, torch_dtype)
        unet, config = load_pretrained(pretrained, "base", torch_dtype)
        clip = config.get("clip_format", {})
        record = {key: value for key, value in config.items() if key not in CONFIG_KEYS}
        return cls(unet, sample_rate=clip.get("sample_rate", SAMPLE_RATE), fps=clip.get("fps", FPS),
                   training_record=record)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """folder/model.safetensors (the U-Net under the official key names; `dtype=torch.float16` halves it for
        bundling) and folder/model.json (flags, clip format, training record), which `from_pretrained` loads. Base
        weights only: with a LoRA loaded it refuses (the adapter is its own folder)."""
        if self.lora is not None:
            raise ValueError("A LoRA is loaded: call unload_lora_weights() before save_pretrained (the adapter is its "
                             "own folder).")
        config = {"format": CONFIG_FORMAT, "flags": official_flags(self.unet),
                  "clip_format": dataclasses.asdict(self.clip_format), **self.training_record}
        return save_pretrained_files(self.unet, folder, config, dtype)

    # LoRA adapters (`pipelines.mm_diffusion.lora`)
    @classmethod
    def from_lora_run(cls, folder: str | Path, torch_dtype: torch.dtype = torch.float32) -> MMDiffusionPipeline:
        """The base a LoRA run started from (its adapter.json's `base`: studio, the released checkpoint or a path)
        with the run's adapter loaded at scale 1."""
        config, _ = mm_lora.read_mm_adapter(folder)
        pipe = cls.from_pretrained(mm_lora.base_path(config), torch_dtype)
        pipe.load_lora_weights(folder)
        return pipe

    def load_lora_weights(self, path: str | Path, scale: float = 1.0) -> dict:
        """Load a LoRA adapter (a folder a `--lora-rank` run wrote) onto the U-Net at `scale` (0: the base output
        exactly). One adapter at a time: loading another replaces it. Returns the adapter's config."""
        config, tensors = mm_lora.read_mm_adapter(path)
        self.unload_lora_weights()
        parameters = mm_lora.base_parameter_count(self.unet)
        if parameters != config["base"]["unet_parameters"]:
            raise ValueError(f"This adapter was trained on a U-Net of {config['base']['unet_parameters']:,} "
                             f"parameters (started from {config['base']['init']}); this pipeline's has {parameters:,}.")
        load_lora_state(self.unet, split_state(tensors, "unet."), config["rank"], config["alpha"],
                        tuple(config["targets"]))
        self.lora = config
        self.set_lora_scale(scale)
        return config

    def set_lora_scale(self, scale: float) -> None:
        """The strength of the loaded adapter: 0 is the base model exactly, 1 as trained (any float)."""
        set_lora_scale(self.unet, scale)

    def unload_lora_weights(self) -> None:
        """Remove the adapter: the pipeline is the base pipeline again."""
        if self.lora is not None:
            remove_lora(self.unet)
            self.lora = None

    @property
    def clip_format(self) -> ClipFormat:
        """The clip this model makes by default: its training frames, size and audio length, at its rates."""
        frames, height, width = self.default_size()
        return ClipFormat(frames, height, width, self.audio_length(frames), self.fps, self.sample_rate)

    # 1. Inputs
    def default_size(self) -> tuple[int, int, int]:
        frames, _, height, width = self.unet.config["video_size"]
        return frames, height, width

    def audio_length(self, num_frames: int) -> int:
        """Audio samples for `num_frames` frames, at the U-Net's training ratio (1,600 per frame in the paper)."""
        frames, length = self.unet.config["video_size"][0], self.unet.config["audio_size"][1]
        return num_frames * length // frames

    def check_inputs(self, video, audio, num_frames: int, height: int, width: int, sampler: str,
                     num_inference_steps: int, eta: float, timestep_respacing: str | None, guidance_scale: float,
                     guidance_scale_form: str, resample_rounds: int, resample_share: float, clean_condition: bool,
                     num_samples: int, generator: Generator, latents, output_type: str) -> None:
        if video is not None and audio is not None:
            raise ValueError("Give at most one of `video` (video-to-audio) and `audio` (audio-to-video): the other "
                             "modality is generated. For joint generation give neither.")
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        if num_inference_steps > self.process.num_timesteps:
            raise ValueError(f"`num_inference_steps` must be at most the {self.process.num_timesteps} training "
                             f"steps, got {num_inference_steps}.")
        for name, value in (("eta", eta), ("guidance_scale", guidance_scale)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
        if eta > 0 and sampler != "ddim":
            raise ValueError(f"`eta` only applies to sampler='ddim', got eta={eta} with sampler={sampler!r}; "
                             f"leave eta at 0 or use sampler='ddim'.")
        if timestep_respacing is not None:
            if sampler == "dpm_solver":
                raise ValueError(f"`timestep_respacing`={timestep_respacing!r} applies to 'ddpm' and 'ddim' only; "
                                 f"DPM-Solver spaces its {num_inference_steps} steps uniformly in logSNR.")
            try:
                space_timesteps(self.process.num_timesteps, timestep_respacing)
            except ValueError as error:
                raise ValueError(f"`timestep_respacing`={timestep_respacing!r} is not an official respacing string "
                                 f"('250', '10,15,20' or 'ddim25'): {error}") from None
        if guidance_scale_form not in ("paper", "code"):
            raise ValueError(f"`guidance_scale_form` must be 'paper' (√(1−ᾱ), Eq. 12) or 'code' (√ᾱ, the released "
                             f"code), got {guidance_scale_form!r}.")
        if guidance_scale > 0 and (video is not None or audio is not None) and sampler == "dpm_solver":
            raise ValueError(f"Gradient guidance (`guidance_scale`={guidance_scale} > 0) needs sampler='ddpm' or "
                             f"'ddim' (one model evaluation per step); use one of those, or guidance_scale=0 for the "
                             f"replacement method with DPM-Solver.")
        self.check_resampling(resample_rounds, resample_share, sampler)
        if clean_condition:
            self.check_clean_condition(video is not None or audio is not None, guidance_scale)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an integer >= 1, got {num_samples!r}.")
        if isinstance(generator, list) and len(generator) != num_samples:
            raise ValueError(f"`generator` is a list of {len(generator)} generators but `num_samples` is "
                             f"{num_samples}; pass one generator per sample, or a single generator.")
        if output_type not in ("np", "pt"):
            raise ValueError(f"`output_type` must be 'np' (uint8 video) or 'pt' (float video in [0, 1]), got "
                             f"{output_type!r}.")
        self.check_size(num_frames, height, width)
        shapes = self.shapes(num_samples, num_frames, height, width)
        if latents is not None:
            if not (isinstance(latents, (tuple, list)) and len(latents) == 2):
                raise ValueError("`latents` must be a pair (video noise, audio noise) of tensors.")
            for name, tensor, shape in zip(("video", "audio"), latents, shapes):
                if tuple(tensor.shape) != shape or not torch.isfinite(tensor).all():
                    raise ValueError(f"`latents` {name} noise must be a finite tensor of shape {shape}, got "
                                     f"{tuple(tensor.shape)}.")

    @staticmethod
    def check_resampling(rounds: int, share: float, sampler: str) -> None:
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`resample_rounds` must be an integer >= 1 (1 = no resampling), got {rounds!r}.")
        if not (isinstance(share, (int, float)) and 0 <= share <= 1):
            raise ValueError(f"`resample_share` must be a share of the steps between 0 and 1, got {share!r}.")
        if rounds > 1 and sampler == "dpm_solver":
            raise ValueError(f"Resampling (`resample_rounds`={rounds}) needs sampler='ddpm' or 'ddim' (one model "
                             f"evaluation per step); use one of those, or resample_rounds=1 with DPM-Solver.")

    @property
    def learnt_clean_condition(self) -> bool:
        """Whether the weights were trained with one stream given clean (`--clean-condition`)."""
        return bool(self.training_record.get("clean_condition"))

    def check_clean_condition(self, conditional: bool, guidance_scale: float) -> None:
        if not conditional:
            raise ValueError("`clean_condition=True` conditions on a given modality; give `video` or `audio`, or "
                             "leave it off for joint generation.")
        if not self.learnt_clean_condition:
            raise ValueError("These weights were not trained with a clean condition (`pipelines.train mm_diffusion "
                             "--clean-condition`); leave `clean_condition` off to use the paper's zero-shot sampler.")
        if guidance_scale > 0:
            raise ValueError(f"Gradient guidance (`guidance_scale`={guidance_scale}) steers a noised condition; with "
                             f"`clean_condition=True` the network conditions directly: set guidance_scale=0.")

    def check_size(self, num_frames: int, height: int, width: int) -> None:
        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        windows = [m.window for m in self.unet.modules() if isinstance(m, RSMMABlock)]
        if windows and num_frames < max(windows):
            raise ValueError(f"`num_frames`={num_frames} is smaller than the U-Net's largest RS-MMA window "
                             f"({max(windows)} frames); use at least {max(windows)} frames.")
        video_shape, audio_shape = self.shapes(1, num_frames, height, width)
        try:
            self.unet.check_inputs(torch.empty(video_shape, device="meta"), torch.empty(audio_shape, device="meta"))
        except ValueError as error:
            raise ValueError(f"`num_frames`={num_frames}, `height`={height}, `width`={width} (audio length "
                             f"{audio_shape[-1]}) do not fit the U-Net: {error}") from None

    def shapes(self, num_samples: int, num_frames: int, height: int, width: int) -> tuple[tuple[int, ...], ...]:
        channels, audio_channels = self.unet.config["video_size"][1], self.unet.config["audio_size"][0]
        return ((num_samples, num_frames, channels, height, width),
                (num_samples, audio_channels, self.audio_length(num_frames)))

    # 2. Conditioning
    def encode_video(self, video, num_samples: int, shape: tuple[int, ...]) -> torch.Tensor:
        """uint8 (or float in [0, 1]) `[F, H, W, 3]` / `[N, F, H, W, 3]` -> `[N, F, 3, H, W]` in [-1, 1] (official
        `x / 127.5 − 1`)."""
        tensor = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
        if tensor.dim() == 4:
            tensor = tensor[None]
        expected = (shape[1], shape[3], shape[4], shape[2])
        if tensor.dim() != 5 or tuple(tensor.shape[1:]) != expected or tensor.shape[0] not in (1, num_samples):
            raise ValueError(f"`video` must have shape {expected} or (N, *{expected}) with N = 1 or `num_samples` "
                             f"({num_samples}), got {tuple(tensor.shape)}; resize and trim the clip first.")
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 127.5 - 1.0
        elif tensor.is_floating_point():
            if not torch.isfinite(tensor).all() or tensor.min() < 0 or tensor.max() > 1:
                raise ValueError("A float `video` must be finite and in [0, 1] (or pass uint8 frames in 0..255).")
            tensor = tensor.float() * 2.0 - 1.0
        else:
            raise ValueError(f"`video` must be uint8 in 0..255 or float in [0, 1], got dtype {tensor.dtype}.")
        return tensor.permute(0, 1, 4, 2, 3).expand(num_samples, -1, -1, -1, -1)

    def encode_audio(self, audio, num_samples: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Waveform `[L]` / `[N, L]` at the pipeline's rate, in [-1, 1] -> `[N, 1, L]`."""
        tensor = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio)
        if tensor.dim() == 1:
            tensor = tensor[None]
        length = shape[-1]
        if tensor.dim() != 2 or tensor.shape[1] != length or tensor.shape[0] not in (1, num_samples):
            rate = self.sample_rate
            raise ValueError(f"`audio` must be a mono waveform of {length} samples ({length / rate} s at {rate} Hz), "
                             f"shape ({length},) or (N, {length}) with N = 1 or "
                             f"`num_samples` ({num_samples}); got {tuple(tensor.shape)}. Resample, pad or trim it.")
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all() or tensor.abs().max() > 1:
            raise ValueError("`audio` must be a finite float waveform in [-1, 1].")
        return tensor.float()[:, None].expand(num_samples, shape[1], -1)

    # 3. Latents
    def prepare_latents(self, shapes, generator: Generator, latents) -> tuple[torch.Tensor, torch.Tensor]:
        """x_T for video then audio; with a list of generators each sample draws its own (video, then audio)."""
        if latents is not None:
            return tuple(t.to(self.device, torch.float32) for t in latents)
        if isinstance(generator, list):  # per sample: video then audio, exactly as a single run draws them
            pairs = [self.prepare_latents(((1, *shapes[0][1:]), (1, *shapes[1][1:])), g, None) for g in generator]
            return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        return tuple(randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
                     for shape in shapes)

    def shift_generator(self, generator: Generator) -> torch.Generator | None:
        """RS-MMA random shifts (drawn on every call when the U-Net shifts): a generator seeded from the first
        sample's, so a seeded run is reproducible; None (global RNG) without generators or without shift."""
        shifting = any(m.random_shift for m in self.unet.modules() if isinstance(m, RSMMABlock))
        first = generator[0] if isinstance(generator, list) else generator
        if not shifting or first is None:
            return None
        seed = int(torch.randint(0, 2**62, (1,), generator=first))
        return torch.Generator().manual_seed(seed)

    # 4. Model
    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, split: int, shapes,
                      shift_generator: torch.Generator | None,
                      clean: Literal["video", "audio"] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed x_t -> packed (ε, variance values) from one U-Net call on both modalities (Eq. 6); `clean` names a
        stream that is given clean, at step 0."""
        video, audio = unpack(x, split, shapes)
        video_step, audio_step = timestep.to(x.device), None  # None: the audio shares the video's step
        if clean is not None:  # step 0 is 0 in the U-Net's time too (×1000/T rescales it to 0)
            audio_step = torch.zeros_like(video_step) if clean == "audio" else video_step
            video_step = torch.zeros_like(video_step) if clean == "video" else video_step
        out_video, out_audio = self.unet(video, audio, video_step, audio_timesteps=audio_step,
                                         generator=shift_generator)
        eps_video, var_video = split_model_output(out_video.to(x.dtype), 2, self.learn_sigma)  # fp16 U-Net: back to
        eps_audio, var_audio = split_model_output(out_audio.to(x.dtype), 1, self.learn_sigma)  # the state's float32
        return pack(eps_video, eps_audio), pack(var_video, var_audio)

    def guided_step(self, sampler: Sampler, x: torch.Tensor, i: int, cond: Condition, eps_c: torch.Tensor,
                    guidance_scale: float, form: str, generator: Generator, model) -> tuple[torch.Tensor, ...]:
        """One joint step, then Eq. 12 on the target: x̃_{t-1} = x_{t-1} − λ w ∇_{x_t} Σ_n mean‖c_{t-1} − ĉ_{t-1}‖²."""
        with torch.enable_grad():
            target = x[:, cond.target].detach().requires_grad_(True)
            x_in = torch.cat([x[:, cond.part], target], 1) if cond.part.start == 0 else \
                torch.cat([target, x[:, cond.part]], 1)
            eps, var = model(x_in)
            prev, denoised = sampler.step(eps, var, i, x_in, generator)
            alpha_prev, sigma_prev = sampler.next_noise_level(i)
            reference = alpha_prev * cond.clean + sigma_prev * eps_c  # ĉ_{t-1} ~ q(c_{t-1} | c), same ε_c
            loss = (prev[:, cond.part] - reference).pow(2).mean(dim=1).sum()  # per-sample mean, summed (no 1/N)
            (grad,) = torch.autograd.grad(loss, target)
        weight = sampler.noise_level(i)[0] if form == "code" else sigma_prev  # √ᾱ_t (code) or √(1 − ᾱ_{t-1}) (paper)
        prev = prev.detach()
        prev[:, cond.target] -= guidance_scale * weight * grad
        return prev, denoised.detach()

    @staticmethod
    def uses_guidance(cond: Condition | None, guidance_scale: float) -> bool:
        """Gradient guidance (Eq. 12) runs for a zero-shot call with λ > 0; λ = 0 is the replacement method."""
        return cond is not None and guidance_scale > 0

    @torch.no_grad()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        eta: float = 0.0,
        timestep_respacing: str | None = None,
        guidance_scale: float = 0.0,
        guidance_scale_form: Literal["paper", "code"] = "paper",
        resample_rounds: int = 1,
        resample_share: float = 0.6,
        clean_condition: bool = False,
        num_samples: int = 1,
        generator: Generator = None,
        latents: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_type: Literal["np", "pt"] = "np",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> MMDiffusionPipelineOutput | tuple:
        """Generate `num_samples` sounding videos; with `video` (V2A) or `audio` (A2V), generate the other modality.

        Args:
            video: uint8 `[F, H, W, 3]` or `[N, F, H, W, 3]` frames (or float in [0, 1]) to generate audio for.
            audio: `[L]` or `[N, L]` float waveform in [-1, 1] at `sample_rate` to generate video for.
            num_frames, height, width: clip size (default: the U-Net's training size); the audio length follows
                from the frame count at the training ratio.
            num_inference_steps: model evaluations (default 20 for DPM-Solver, 1000 for DDPM, 25 for DDIM).
            sampler: "dpm_solver" (singlestep, order 3, logSNR), "ddpm" or "ddim"; default: the pipeline's.
            eta: DDIM's η (0 = deterministic).
            timestep_respacing: official respacing string for DDPM/DDIM ("250", "ddim25", "10,15,20"); default: DDPM
                `str(num_inference_steps)`, DDIM `f"ddim{num_inference_steps}"`.
            guidance_scale: λ of Eq. 12 for zero-shot generation; 0 = the replacement method. (The released scripts use
                λ = 3 with 1000 DDPM steps.)
            guidance_scale_form: "paper" (w = √(1 − ᾱ_{t-1}), Eq. 12) or "code" (w = √ᾱ_t, the released code).
            resample_rounds: how many times each resampled step is taken (RePaint's U; 1 = the paper's sampler); in
                joint generation a corrector. DDPM and DDIM.
            resample_share: the share of the steps, from the noisiest, that are resampled (the last step never is).
            clean_condition: zero-shot only, for weights trained with `--clean-condition`: the given modality enters
                the U-Net clean at step 0 instead of forward-noised (a departure; no gradient guidance with it).
            generator: one `torch.Generator`, or one per sample (then a batch equals single runs).
            latents: initial noise (video `[N, F, C, H, W]`, audio `[N, C, L]`); for zero-shot generation the
                conditioning modality's noise is its fixed replacement noise ε_c.
            output_type: "np" (uint8 video, numpy audio) or "pt" (float video in [0, 1], torch audio).
            callback_on_step_end: `callback_on_step_end(pipe, step, timestep, callback_kwargs)` after every step;
                `callback_kwargs` holds the names asked for in `callback_on_step_end_tensor_inputs` (default: all),
                each computed when read: "preview" (x̂_0's frames, uint8 numpy `[N, F, H, W, 3]`), "video", "audio"
                (the current state) and "denoised_video", "denoised_audio" (x̂_0), unpacked, in [-1, 1]. A "video" or
                "audio" it returns replaces the state. Setting `pipe._interrupt = True` stops after the step.
        """
        # 1. Check inputs
        default_frames, default_height, default_width = self.default_size()
        num_frames = default_frames if num_frames is None else num_frames
        height = default_height if height is None else height
        width = default_width if width is None else width
        sampler = sampler or self.sampler
        if num_inference_steps is None:
            num_inference_steps = DEFAULT_STEPS.get(sampler, 1)
        self.check_inputs(video, audio, num_frames, height, width, sampler, num_inference_steps, eta,
                          timestep_respacing, guidance_scale, guidance_scale_form, resample_rounds, resample_share,
                          clean_condition, num_samples, generator, latents, output_type)
        self.start_sampling(callback_on_step_end, callback_on_step_end_tensor_inputs)
        shapes = self.shapes(num_samples, num_frames, height, width)
        split = math.prod(shapes[0][1:])
        # 2. Encode the condition and prepare the sampler
        cond = self.encode_condition(video, audio, num_samples, shapes, split)
        schedule = make_sampler(self.process, sampler, num_inference_steps, timestep_respacing, eta)
        # 3. Initial noise x_T (and ε_c, the conditioning modality's share of it)
        x = pack(*self.prepare_latents(shapes, generator, latents))
        shift_generator = self.shift_generator(generator)
        eps_c = x[:, cond.part].clone() if cond is not None else None
        # 4. Denoising loop
        x = self.denoise(schedule, x, cond, eps_c, guidance_scale, guidance_scale_form, resample_rounds,
                         resample_share, clean_condition, generator, shift_generator, split, shapes,
                         callback_on_step_end, callback_on_step_end_tensor_inputs)
        if cond is not None:  # the given modality is returned as given
            x[:, cond.part] = cond.clean
        # 5. Decode
        return self.decode(*unpack(x, split, shapes), output_type, return_dict)

    def encode_condition(self, video, audio, num_samples: int, shapes, split: int) -> Condition | None:
        if video is not None:
            clean = self.encode_video(video, num_samples, shapes[0]).to(self.device)
            return Condition("video", clean.reshape(num_samples, -1), slice(0, split), slice(split, None))
        if audio is not None:
            clean = self.encode_audio(audio, num_samples, shapes[1]).to(self.device)
            return Condition("audio", clean.reshape(num_samples, -1), slice(split, None), slice(0, split))
        return None

    def denoise(self, schedule: Sampler, x: torch.Tensor, cond: Condition | None, eps_c: torch.Tensor | None,
                guidance_scale: float, form: str, resample_rounds: int, resample_share: float,
                clean_condition: bool, generator: Generator, shift_generator, split: int, shapes,
                callback_on_step_end: StepCallback | None, tensor_inputs: list[str] | None) -> torch.Tensor:
        """The reverse process; the conditioning modality is replaced by q(c_t | c) (or, with `clean_condition`, by c
        itself) before every model call, and the resampled steps are taken again from q(x_t | x_{t-1}) of their own
        result."""
        clean = cond.name if clean_condition else None
        for i in range(schedule.num_steps):
            if self.interrupt:
                break
            timestep = schedule.model_timesteps[i].expand(x.shape[0])
            model = partial(self.predict_noise, timestep=timestep, split=split, shapes=shapes,
                            shift_generator=shift_generator, clean=clean)
            rounds = resample_rounds if resampled(i, schedule.num_steps, resample_share) else 1
            for round_ in range(rounds):
                if round_ > 0:
                    x = schedule.renoise(i, x, generator)
                if cond is not None:  # replacement: ĉ_t = √ᾱ_t c + √(1 − ᾱ_t) ε_c, or c itself at step 0
                    alpha, sigma = schedule.noise_level(i)
                    x = x.clone()
                    x[:, cond.part] = cond.clean if clean_condition else alpha * cond.clean + sigma * eps_c
                if self.uses_guidance(cond, guidance_scale) and i < schedule.num_steps - 1:
                    x, denoised = self.guided_step(schedule, x, i, cond, eps_c, guidance_scale, form, generator,
                                                   model)
                else:
                    eps, var = model(x)
                    x, denoised = schedule.step(eps, var, i, x, generator)
            x = self.end_step(callback_on_step_end, i, timestep[0], tensor_inputs, x, denoised, split, shapes)
        return x

    def end_step(self, callback_on_step_end: StepCallback | None, step: int, timestep: torch.Tensor,
                 tensor_inputs: list[str] | None, x: torch.Tensor, denoised: torch.Tensor, split: int,
                 shapes) -> torch.Tensor:
        """Hand the step to the callback (each value made only when it reads it); returns the state, with the
        "video" or "audio" the callback gave back."""
        returned = self.step_end(
            callback_on_step_end, step, timestep, tensor_inputs,
            preview=lambda: frames_as_uint8(unpack(denoised, split, shapes)[0]).cpu().numpy(),
            video=lambda: unpack(x, split, shapes)[0], audio=lambda: unpack(x, split, shapes)[1],
            denoised_video=lambda: unpack(denoised, split, shapes)[0],
            denoised_audio=lambda: unpack(denoised, split, shapes)[1])
        if not returned.keys() & {"video", "audio"}:
            return x
        video, audio = unpack(x, split, shapes)
        return pack(returned.get("video", video), returned.get("audio", audio))

    def decode(self, video: torch.Tensor, audio: torch.Tensor, output_type: str, return_dict: bool):
        """`[N, F, C, H, W]` in [-1, 1] -> `[N, F, H, W, C]` (uint8 or float in [0, 1]); audio -> `[N, L]` float32."""
        audio = audio[:, 0].float()
        if output_type == "np":
            video = frames_as_uint8(video).cpu().numpy()
            audio = audio.cpu().numpy()
        else:
            video = ((video.permute(0, 1, 3, 4, 2) + 1) / 2).clamp(0, 1).float()
        if not return_dict:
            return video, audio, self.sample_rate, self.fps
        return MMDiffusionPipelineOutput(video=video, audio=audio, sample_rate=self.sample_rate, fps=self.fps)


def resampled(i: int, num_steps: int, share: float) -> bool:
    """Whether evaluation i is among the noisiest `share` of the steps that resampling repeats (never the last)."""
    return i < num_steps - 1 and i < share * num_steps


def frames_as_uint8(video: torch.Tensor) -> torch.Tensor:
    """`[N, F, C, H, W]` in [-1, 1] -> uint8 `[N, F, H, W, C]`, rounded (the official cast truncates)."""
    return ((video.permute(0, 1, 3, 4, 2) + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)


def pack(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """(`[N, F, C, H, W]`, `[N, C, L]`) -> `[N, D]`: both modalities of a sample in one row (they share t, Eq. 5)."""
    return torch.cat([video.reshape(video.shape[0], -1), audio.reshape(audio.shape[0], -1)], dim=1)


def unpack(x: torch.Tensor, split: int, shapes) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0]
    return x[:, :split].reshape(n, *shapes[0][1:]), x[:, split:].reshape(n, *shapes[1][1:])


__all__ = ["MMDiffusionPipeline", "MMDiffusionPipelineOutput", "frames_as_uint8", "pack", "unpack"]
