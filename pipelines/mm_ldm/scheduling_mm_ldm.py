"""MM-LDM's noise schedule, sampler and training objective (paper §3.2-3.3, §4.1).

- The schedule: LDM's "linear" β from 0.00085 to 0.012 over T = 1000 steps in √β (diffusers' "scaled_linear"), shared
  by both latents (Eq. 4), so ᾱ_T ≈ 4.66e-3. The released configs use it for the DiT and for the shared decoder.
- The sampler: DDIM with 50 steps and η = 0 (paper §4.1), diffusers' `DDIMScheduler` configured as LDM's DDIM
  (uniform "leading" steps 981, 961, ..., 1; ᾱ_prev of the last step = ᾱ_0; no clipping of x̂_0).
- Eq. 5, corrected: z^t = √ᾱ_t z^0 + √(1 − ᾱ_t) n^t (the paper prints (1 − ᾱ_t) without the square root).
- Cross-modal guidance, Eq. 8 with the sign corrected: ε = ε_u + φ(ε_c − ε_u) (the paper prints
  φ·ε_c − (1 − φ)·ε_u; the released DDIM code, and classifier-free guidance, use this form).
- Reconstruction guidance (a departure, for A2V and V2A; off by default): after each DDIM step the generated latent
  moves against the gradient, taken at the step's input, of how far the DiT's x̂_0 of the given stream lies from the
  given latent: z^{t-1} − λ √(1 − ᾱ_{t-1}) ∇_{z^t} mean‖x̂_0 − z_given‖² (MM-Diffusion's gradient guidance, Eq. 12
  with the paper's factor, applied to MM-LDM's latents; `reconstruction_step`). The cross-modal guidance alone lets
  the studio model's video ignore its given audio: its DiT learnt to use a clean condition for its own stream only.
- Resampling (a departure, off by default; RePaint, Lugmayr et al. 2022, jump length 1): each of the noisiest
  `resample_share` of the DDIM steps is taken `resample_rounds` times, going back from z^{t-1} to z^t by
  q(z^t | z^{t-1}) in between (`renoise`), as the studio MM-Diffusion does in joint generation, where the rounds act
  as a corrector that lets the two streams agree.
- Loss, Eq. 7 as the code computes it: MSE_a + MSE_v (mean squared error per modality, summed).
- Condition keeping in training: 5 % of the samples see the clean audio latent (A2V), another 5 % the clean video
  latent (V2A), never both; the rest see null (zero) latents. The paper: "5 % training samples for each conditional
  generation task"; the released code draws two p = 0.05 masks and XORs them (4.75 % each): we follow the paper.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012
NUM_INFERENCE_STEPS = 50
CONDITION_KEEP_PROBABILITY = 0.05


def make_scheduler() -> DDIMScheduler:
    """The shared schedule with LDM's DDIM sampler (η = 0 by default in `step`)."""
    return DDIMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading", prediction_type="epsilon")


def forward_noise(scheduler: DDIMScheduler, clean: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
    """Eq. 5 with the correct noise coefficient: √ᾱ_t z^0 + √(1 − ᾱ_t) n (one t per sample, `timesteps` [B])."""
    alphas = scheduler.alphas_cumprod.to(clean.device, clean.dtype)[timesteps.to(clean.device)]
    alphas = alphas.reshape(-1, *([1] * (clean.dim() - 1)))
    return alphas.sqrt() * clean + (1.0 - alphas).sqrt() * noise


def guided_noise(uncond: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Cross-modal sampling guidance (Eq. 8, sign corrected): ε_u + φ(ε_c − ε_u); φ = 1 gives ε_c, φ = 0 gives ε_u."""
    return uncond + phi * (cond - uncond)


def predicted_original(scheduler: DDIMScheduler, noisy: torch.Tensor, noise: torch.Tensor,
                       timestep: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (z^t − √(1 − ᾱ_t) ε̂) / √ᾱ_t (one shared t)."""
    alpha = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[timestep.to(noisy.device)].reshape(-1)[0]
    return (noisy - (1.0 - alpha).sqrt() * noise) / alpha.sqrt()


def reconstruction_step(scheduler: DDIMScheduler, previous: torch.Tensor, gradient: torch.Tensor,
                        previous_timestep: int, scale: float) -> torch.Tensor:
    """Reconstruction guidance on a step's output: z^{t-1} − λ √(1 − ᾱ_{t-1}) ∇ (λ = `scale`)."""
    alpha = scheduler.alphas_cumprod[previous_timestep].to(previous.device, previous.dtype)
    return previous - scale * (1.0 - alpha).sqrt() * gradient


def resampled(i: int, num_steps: int, share: float) -> bool:
    """Whether DDIM step i is among the noisiest `share` of the steps that resampling repeats (never the last)."""
    return i < num_steps - 1 and i < share * num_steps


def renoise(scheduler: DDIMScheduler, sample: torch.Tensor, timestep: int, previous_timestep: int,
            noise: torch.Tensor) -> torch.Tensor:
    """Back up a DDIM step from z^{t-1} (at `previous_timestep`) to z^t: a draw from q(z^t | z^{t-1}) =
    N(√(ᾱ_t / ᾱ_{t-1}) z^{t-1}, (1 − ᾱ_t / ᾱ_{t-1}) I), with `noise` ~ N(0, I)."""
    ratio = scheduler.alphas_cumprod[timestep] / scheduler.alphas_cumprod[previous_timestep]
    ratio = ratio.to(sample.device, sample.dtype)
    return ratio.sqrt() * sample + (1.0 - ratio).sqrt() * noise


def mm_ldm_loss(pred_audio: torch.Tensor, noise_audio: torch.Tensor, pred_video: torch.Tensor,
                noise_video: torch.Tensor) -> torch.Tensor:
    """Eq. 7 as the released code computes it: MSE_a + MSE_v (a zero prediction of unit noise gives 2)."""
    return torch.nn.functional.mse_loss(pred_audio, noise_audio) + torch.nn.functional.mse_loss(pred_video,
                                                                                                 noise_video)


def condition_masks(batch_size: int, generator: torch.Generator | None = None,
                    keep: float = CONDITION_KEEP_PROBABILITY) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples keep their clean audio latent (A2V) and which their clean video latent (V2A): bool [B] each,
    `keep` of the samples for each task and never both (one uniform draw per sample)."""
    draw = torch.rand(batch_size, generator=generator)
    return draw < keep, (draw >= keep) & (draw < 2 * keep)


def sample_timesteps(batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One t ~ U{0, ..., T − 1} per sample, shared by its audio and video latents (as the released DiT)."""
    return torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,), generator=generator)


def dit_training_loss(transformer: torch.nn.Module, scheduler: DDIMScheduler, audio: torch.Tensor,
                      video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One training loss of the DiT on clean latents z_a `[B, ...]`, z_v `[B, ...]`: a shared t per sample,
    independent noise per modality, each clean latent kept as the condition for its 5 % of the samples (zeros
    otherwise), Eq. 7 (MSE_a + MSE_v). `generator` is a CPU generator (every draw is made on the CPU)."""
    batch = audio.shape[0]
    timesteps = sample_timesteps(batch, generator).to(audio.device)
    noise_audio = torch.randn(audio.shape, generator=generator).to(audio)
    noise_video = torch.randn(video.shape, generator=generator).to(video)
    keep_audio, keep_video = (mask.to(audio.device) for mask in condition_masks(batch, generator))
    audio_condition = audio * keep_audio.reshape(-1, *([1] * (audio.dim() - 1))).to(audio.dtype)
    video_condition = video * keep_video.reshape(-1, *([1] * (video.dim() - 1))).to(video.dtype)
    eps_audio, eps_video = transformer(forward_noise(scheduler, audio, noise_audio, timesteps),
                                       forward_noise(scheduler, video, noise_video, timesteps), timesteps,
                                       audio_condition, video_condition)
    return mm_ldm_loss(eps_audio, noise_audio, eps_video, noise_video)


__all__ = ["BETA_END", "BETA_START", "CONDITION_KEEP_PROBABILITY", "NUM_INFERENCE_STEPS", "NUM_TRAIN_TIMESTEPS",
           "condition_masks", "dit_training_loss", "forward_noise", "guided_noise", "make_scheduler", "mm_ldm_loss",
           "predicted_original", "reconstruction_step", "sample_timesteps"]
