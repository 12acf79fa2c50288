"""Vocoders: log-mel spectrogram -> waveform. HiFi-GAN (Auffusion-compatible) and Griffin-Lim behind one call:
`vocoder(log_mel [n_mels, frames]) -> float32 waveform`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.audio import AudioSpec, griffin_lim

AUFFUSION_REPO = "auffusion/auffusion-full-no-adapter"
AUFFUSION_VOCODER_FILES = ("vocoder/config.json", "vocoder/vocoder.pt")


class GriffinLimVocoder:
    """Phase recovery by Griffin-Lim; needs no weights."""

    name = "griffinlim"

    def __init__(self, spec: AudioSpec, n_iter: int = 32):
        self.spec, self.n_iter = spec, n_iter

    def __call__(self, log_mel: np.ndarray, n_iter: int | None = None, seed: int = 0) -> np.ndarray:
        return griffin_lim(log_mel, self.spec, n_iter=n_iter or self.n_iter, seed=seed)


class HiFiGANVocoder:
    """A HiFi-GAN generator wrapped to take and return numpy arrays."""

    name = "hifigan"

    def __init__(self, model, spec: AudioSpec):
        self.model, self.spec = model, spec
        if model.config.num_mels != spec.n_mels or model.config.hop_length != spec.hop_length:
            raise ValueError(f"this HiFi-GAN expects {model.config.num_mels} mels at hop {model.config.hop_length}, "
                             f"not the {spec.name} spectrogram ({spec.n_mels} mels, hop {spec.hop_length})")

    def __call__(self, log_mel: np.ndarray, **_) -> np.ndarray:
        import torch

        return self.model.vocode(torch.from_numpy(np.ascontiguousarray(log_mel, dtype=np.float32))).cpu().numpy()

    def to(self, device: str) -> HiFiGANVocoder:
        self.model.to(device)
        return self


def load_hifigan(source: str | Path, spec: AudioSpec, device: str = "cpu", dtype=None) -> HiFiGANVocoder:
    """HiFi-GAN from a local folder holding `vocoder/` (or the vocoder folder itself), or from a Hub repo id."""
    from pipelines.vocoders.hifigan import HiFiGAN

    folder = Path(source)
    if (folder / "vocoder").is_dir():
        folder = folder / "vocoder"
    if not folder.is_dir():
        from pipelines.hub import download

        folder = download(str(source), AUFFUSION_VOCODER_FILES[0]).parent
        download(str(source), AUFFUSION_VOCODER_FILES[1])
    model = HiFiGAN.from_folder(folder).to(device)
    # Convolutions in half precision on accelerators; the CPU keeps fp32.
    return HiFiGANVocoder(model.to(dtype) if dtype is not None and device != "cpu" else model, spec)
