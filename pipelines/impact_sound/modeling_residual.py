"""The residual-parameter predictor (Su et al., CVPR 2023, Sec. 3.1 "Residual Parameters Prediction" and Sec. 4;
the official `SpecTransformer` in `libs/models/sound_physics_residual_model.py`).

Log-spectrogram frames (1025 bins × 44 frames; each frame is a token) → Linear(1025 → 256) + learned positional
embedding → 4-layer, 4-head transformer encoder (pre-LayerNorm, GELU, 4× MLP, dropout 0.1, final LayerNorm, as
minGPT blocks) → mean over frames → two linear heads (paper: "two linear projections"):

- gains w = sigmoid(Linear(256 → 100)) ∈ (0, 1)                       (the code's weight head)
- decays d = 1e-5 + 0.5·sigmoid(Linear(256 → 100)) ∈ (1e-5, 0.50001) s (the code's `noise_t`, a T60)

Departures from the official code, named:

- The attention blocks are `torch.nn.TransformerEncoderLayer` (its attention runs through PyTorch's
  scaled_dot_product_attention) instead of minGPT's hand-written causal-free blocks; same layout and sizes, so the
  official weights do not load by name.
- Input: the paper's log-spectrogram (scaled to [-1, 1], see `residual.log_spectrogram`), not the code's linear
  |STFT|.
- Training (`residual_training_step`): the modal part is `modal.synthesize(modes)` (paper Eq. 4, sin with a 0.25 ms
  fade-in) rather than the code's precomputed in-phase cosine resynthesis; both the prediction and the recording
  are peak-normalised as in the code.

Weights are saved as `model.safetensors` beside a `config.json` (`save_pretrained` / `from_pretrained`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.audio import peak_normalize_rows
from pipelines.impact_sound.modal import Modes, synthesize
from pipelines.impact_sound.residual import (
    DECAY_SPAN_S, IMPACT, MIN_DECAY_S, N_BANDS, NOISE_SEED, NUM_SAMPLES, SAMPLE_RATE, ResidualParams, STFTLoss,
    fit_length, log_spectrogram, render_residual,
)
from pipelines.pipeline_utils import load_weights, read_json, save_weights, write_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "impact-residual-predictor"


@dataclass(frozen=True)
class ResidualPredictorConfig:
    """Sizes of the predictor; the defaults are the paper's and the official code's."""

    n_freq_bins: int = IMPACT.n_fft // 2 + 1  # 1025
    n_frames: int = 1 + NUM_SAMPLES // IMPACT.hop_length  # 44 tokens (the code's block size)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    n_bands: int = N_BANDS
    min_decay_s: float = MIN_DECAY_S
    decay_span_s: float = DECAY_SPAN_S
    sample_rate: int = SAMPLE_RATE
    num_samples: int = NUM_SAMPLES
    noise_seed: int = NOISE_SEED

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"`d_model` ({self.d_model}) must be a multiple of `n_heads` ({self.n_heads})")
        if min(self.n_freq_bins, self.n_frames, self.d_model, self.n_layers, self.n_heads, self.n_bands) < 1:
            raise ValueError("every size in the residual predictor config must be at least 1")
        if self.min_decay_s <= 0 or self.decay_span_s <= 0:
            raise ValueError("`min_decay_s` and `decay_span_s` must be positive")

    def to_dict(self) -> dict:
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ResidualPredictorConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise ValueError(f"not a residual predictor config: expected \"model_type\": \"{MODEL_TYPE}\"")
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields - {"model_type"})
        if unknown:
            raise ValueError(f"unknown residual predictor config keys: {', '.join(unknown)}")
        return cls(**{key: value for key, value in data.items() if key in fields})


class ResidualPredictor(nn.Module):
    """Spectrogram [B, 1025, 44] → (gains [B, 100] in (0, 1), T60 decays [B, 100] in seconds)."""

    def __init__(self, config: ResidualPredictorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ResidualPredictorConfig()
        self.input_proj = nn.Linear(config.n_freq_bins, config.d_model)
        self.position = nn.Parameter(torch.zeros(1, config.n_frames, config.d_model))  # learned (minGPT)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, dim_feedforward=config.ff_mult * config.d_model, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, norm=nn.LayerNorm(config.d_model),
                                             enable_nested_tensor=False)
        self.gain_head = nn.Linear(config.d_model, config.n_bands)
        self.decay_head = nn.Linear(config.d_model, config.n_bands)
        self.apply(_init_weights)  # also gives every (deep-copied) encoder layer its own initial weights

    @property
    def device(self) -> torch.device:
        return self.position.device

    def forward(self, spectrogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, n_freq_bins, n_frames] log-spectrogram (`residual.log_spectrogram`) → (gains, decays), each
        [B, n_bands]."""
        config = self.config
        if spectrogram.ndim != 3 or spectrogram.shape[1:] != (config.n_freq_bins, config.n_frames):
            raise ValueError(f"expected a spectrogram [B, {config.n_freq_bins}, {config.n_frames}], got "
                             f"{tuple(spectrogram.shape)}")
        tokens = self.input_proj(spectrogram.transpose(1, 2)) + self.position  # one token per frame
        pooled = self.encoder(self.dropout(tokens)).mean(dim=1)  # paper: "the output features are then averaged"
        gains = torch.sigmoid(self.gain_head(pooled))
        decays = config.min_decay_s + config.decay_span_s * torch.sigmoid(self.decay_head(pooled))
        return gains, decays

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform at 44.1 kHz → the encoder input (cut or zero-padded to the clip length first)."""
        return log_spectrogram(fit_length(audio, self.config.num_samples))

    def render(self, gains: torch.Tensor, decays: torch.Tensor) -> torch.Tensor:
        """The residual waveform of predicted parameters (the model's own noise seed and length)."""
        return render_residual(gains, decays, num_samples=self.config.num_samples,
                               sample_rate=self.config.sample_rate, seed=self.config.noise_seed)

    @torch.no_grad()
    def predict(self, audio: np.ndarray | torch.Tensor) -> ResidualParams | list[ResidualParams]:
        """Residual parameters of one clip [T] (→ ResidualParams) or a batch [B, T] (→ a list), in eval mode.

        `audio` is mono at 44.1 kHz, starting at the hit; it is cut or zero-padded to 0.25 s and peak-normalised.
        """
        batch = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
        single = batch.ndim == 1
        batch = batch.reshape(1, -1) if single else batch
        if batch.ndim != 2 or batch.shape[-1] == 0 or not bool(torch.isfinite(batch).all()):
            raise ValueError("`audio` must be a finite mono clip [T] or a batch [B, T] with at least one sample")
        was_training = self.training
        self.eval()
        try:  # the STFT runs in float32 whatever the weights' dtype
            spectrogram = self.spectrogram(batch.to(self.device, torch.float32)).to(self.position.dtype)
            gains, decays = self(spectrogram)
        finally:
            self.train(was_training)
        params = [ResidualParams(g.float().cpu().numpy(), d.float().cpu().numpy()) for g, d in zip(gains, decays)]
        return params[0] if single else params

    # Saving and loading ------------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` and `model.safetensors` (weights only, cast to `dtype` when given) into `directory`."""
        folder = Path(directory)
        write_json(self.config.to_dict(), folder / CONFIG_NAME)
        save_weights(self, folder / WEIGHTS_NAME, dtype)
        return folder

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ResidualPredictor:
        """Build from `config.json` and load `model.safetensors` strictly (as float32); returned in eval mode."""
        folder = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} has no {name}: not a saved residual predictor")
        model = cls(ResidualPredictorConfig.from_dict(read_json(folder / CONFIG_NAME)))
        return load_weights(model, folder / WEIGHTS_NAME).eval()


def _init_weights(module: nn.Module) -> None:
    """minGPT's initialisation: Linear N(0, 0.02) with zero bias, LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.normal_(module.in_proj_weight, mean=0.0, std=0.02)
        nn.init.zeros_(module.in_proj_bias)


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def modal_batch(batch_modes: Sequence[Modes | np.ndarray | torch.Tensor] | torch.Tensor | np.ndarray,
                num_samples: int = NUM_SAMPLES, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The modal resyntheses ŝ of a batch as float32 [B, num_samples]: `synthesize(modes)` at `sample_rate` for each
    `Modes`; an array or tensor is taken as an already synthesised ŝ at that rate (so a training loop can compute
    them once per clip)."""
    if isinstance(batch_modes, (np.ndarray, torch.Tensor)):
        return fit_length(torch.as_tensor(batch_modes, dtype=torch.float32), num_samples)
    rows = []
    for item in batch_modes:
        if isinstance(item, Modes):
            item = synthesize(item, sample_rate=sample_rate, duration=num_samples / sample_rate)
        rows.append(fit_length(torch.as_tensor(np.asarray(item, dtype=np.float32)).reshape(-1), num_samples))
    return torch.stack(rows)


def residual_loss(model: ResidualPredictor, batch_audio: torch.Tensor, modal: torch.Tensor,
                  loss_fn: nn.Module | None = None) -> torch.Tensor:
    """L(peak_norm(ŝ + R), peak_norm(s)) with R rendered from the model's prediction on s (paper Sec. 3.1)."""
    target = peak_normalize_rows(fit_length(batch_audio, model.config.num_samples))
    gains, decays = model(log_spectrogram(target))
    prediction = peak_normalize_rows(modal + model.render(gains, decays))
    return (loss_fn or STFTLoss().to(target.device))(prediction, target)


def residual_training_step(
    model: ResidualPredictor,
    batch_audio: np.ndarray | torch.Tensor,
    batch_modes: Sequence[Modes | np.ndarray | torch.Tensor] | torch.Tensor | np.ndarray,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: nn.Module | None = None,
    max_grad_norm: float | None = None,
) -> float:
    """One optimisation step of the residual predictor; returns the loss before the step.

    Args:
        batch_audio: the recordings s, [B, T] at 44.1 kHz starting at the hit (cut or zero-padded to 0.25 s).
        batch_modes: each clip's modes (synthesised with `modal.synthesize`) or the precomputed ŝ, [B, T].
        optimizer: e.g. AdamW(lr 5e-4, weight decay 1e-4), the official config.
        loss_fn: default `STFTLoss()` (the official single-resolution SC + log-mag + lin-mag at 2048/128).
        max_grad_norm: clip the gradient norm (not in the official config; None = off).
    """
    model.train()
    audio = torch.as_tensor(batch_audio, dtype=torch.float32).to(model.device)
    modal = modal_batch(batch_modes, model.config.num_samples, model.config.sample_rate).to(model.device)
    if audio.ndim != 2 or audio.shape[0] != modal.shape[0]:
        raise ValueError(f"expected batch_audio [B, T] with one modes entry per clip, got {tuple(audio.shape)} "
                         f"and {modal.shape[0]} modes")
    loss = residual_loss(model, audio, modal, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())
