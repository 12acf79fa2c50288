"""Every audio convention of the studio, in one place.

Sample rates, STFT/mel settings and the spectrogram <-> image mapping of each pipeline live in one `AudioSpec`
each (`SPECS`). Nothing else in the project hard-codes a sample rate or a hop size.

The Auffusion convention (used by Images that Sound and the Spectrogram Lab) follows the Auffusion /
images-that-sound code exactly:

- log-mel: reflect-pad by (n_fft - hop) / 2, STFT without centering (Hann window of `win_length` inside
  `n_fft`), magnitude sqrt(re² + im² + 1e-9), librosa's Slaney mel filters, natural log clamped at 1e-5;
- image value = (L - ln 1e-5) / (ln 200 - ln 1e-5), so black is silence (magnitude 1e-5) and white is loud
  (magnitude 200); the frequency axis is flipped so low frequencies sit at the bottom of the picture;
- Griffin-Lim: exp(L) -> librosa's mel inversion with the same STFT settings, centered, power 1.

The impact convention (physics-driven impact sound, Su et al. 2023) and every torch STFT:

- `stft` / `stft_magnitude`: centred torch STFT with a periodic Hann window and zero padding (librosa's defaults);
  the impact spectrogram is |STFT 2048/256| of the clip scaled to peak 1 (`peak_normalize_rows`);
- `impact_log_scale`: ln(|S| + 1e-8) min-max mapped to [-1, 1] with the official code's dataset constants
  (`IMPACT_SPEC_MIN`, `IMPACT_SPEC_MAX`); `impact_log_unscale` inverts it;
- Griffin-Lim of a linear magnitude: `griffin_lim_magnitude` (librosa, numpy) or `griffin_lim_torch` (batched).

torch is imported inside the functions that need it, so importing this module stays light.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AudioSpec:
    """How one pipeline hears: its rate, its clip length and (if it uses one) its spectrogram."""

    name: str
    sample_rate: int
    clip_seconds: float
    n_fft: int | None = None
    hop_length: int | None = None
    win_length: int | None = None
    n_mels: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    # "auffusion": natural log, image = (L - ln floor) / (ln ceiling - ln floor).
    # "specvqgan": 20·log10(mag) - 20 + 100, divided by 100 and clipped (SpecVQGAN / Visual Echoes).
    image_scale: str = "auffusion"
    magnitude_floor: float = 1e-5
    magnitude_ceiling: float = 200.0
    # Peak level the reference code normalises a clip to before analysis (None: leave the level alone).
    analysis_peak: float | None = None

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    def frames_for(self, num_samples: int) -> int:
        """Spectrogram frames the analysis gives for `num_samples` samples (padding of `log_mel` included)."""
        return num_samples // self.hop_length

    def samples_for(self, num_frames: int) -> int:
        return num_frames * self.hop_length


SPECS: dict[str, AudioSpec] = {
    # Auffusion / Images that Sound: 10.24 s clips = 1024 frames at hop 160.
    "auffusion": AudioSpec(
        "auffusion", 16000, 10.24, n_fft=2048, hop_length=160, win_length=1024, n_mels=256, fmin=0.0,
        fmax=8000.0, analysis_peak=0.95,
    ),
    # MM-Diffusion: a raw 16 kHz waveform, 1.6 s = 16 frames at 10 fps.
    "mm_diffusion": AudioSpec("mm_diffusion", 16000, 1.6),
    # Physics-driven impact sound: 0.25 s at 44.1 kHz, log-magnitude STFT 2048/256.
    "impact": AudioSpec("impact", 44100, 0.25, n_fft=2048, hop_length=256, win_length=2048),
    # Visual Echoes: SpecVQGAN preprocessing, 80 mels 125-7600 Hz, 10 s at 22.05 kHz (echoes-and-impact.md A).
    "visual_echoes": AudioSpec(
        "visual_echoes", 22050, 10.0, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=125.0,
        fmax=7600.0, image_scale="specvqgan",
    ),
    # MM-LDM's audio image (the released code's): the HiFi-GAN mel (80 bands, n_fft 1024, hop 256, win 1024, 0-8000 Hz)
    # of 1.6 s at 44.1 kHz, (20·log10 − 20 + 100)/100 clipped to [0, 1]. The released code computes the mel filters
    # with sampling_rate=22050 for its 44.1 kHz audio (so its "8000 Hz" band edge sits at 16 kHz); we use the true
    # rate.
    "mm_ldm": AudioSpec(
        "mm_ldm", 44100, 1.6, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0, fmax=8000.0,
        image_scale="specvqgan",
    ),
    # The studio MM-LDM's shrunken clip: the same mel at 16 kHz (the toy world's rate), 0.8 s = 50 mel frames.
    "mm_ldm_studio": AudioSpec(
        "mm_ldm_studio", 16000, 0.8, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0, fmax=8000.0,
        image_scale="specvqgan",
    ),
}


class AudioDecodeError(ValueError):
    """The file could not be read as audio, or holds no usable samples."""


@dataclass
class LoadedAudio:
    """Mono float32 samples at the spec's rate, with plain-language notes on what was changed."""

    samples: np.ndarray
    sample_rate: int
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def load_audio(path: str | Path, spec: AudioSpec, max_seconds: float | None = None) -> LoadedAudio:
    """Read any file soundfile or librosa can decode; downmix, resample to `spec` and trim, noting each change."""
    samples, rate = _decode(Path(path))
    notes = []
    if samples.shape[0] == 0:
        raise AudioDecodeError("the file holds no audio samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("the file holds invalid (NaN or infinite) samples")
    if samples.ndim == 2 and samples.shape[1] > 1:
        notes.append(f"Mixed {samples.shape[1]} channels down to mono.")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if max_seconds is not None and len(mono) > max_seconds * rate:
        notes.append(f"Kept the first {max_seconds:g} s of {len(mono) / rate:.1f} s.")
        mono = mono[: int(max_seconds * rate)]
    if rate != spec.sample_rate:
        notes.append(f"Resampled from {rate} Hz to {spec.sample_rate} Hz.")
        mono = resample(mono, rate, spec.sample_rate)
    return LoadedAudio(mono.astype(np.float32), spec.sample_rate, notes)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return samples, rate
    except Exception:  # noqa: BLE001 - soundfile cannot read it; librosa's audioread path may (mp3, m4a, ...)
        pass
    import librosa

    try:
        with warnings.catch_warnings():  # librosa warns on its fallback decoder; failure is reported below
            warnings.simplefilter("ignore")
            samples, rate = librosa.load(str(path), sr=None, mono=False)
    except Exception as error:
        raise AudioDecodeError("no audio decoder could read it") from error  # the chain is logged, not shown
    return np.atleast_2d(samples).T.astype(np.float32), int(rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    import librosa

    return librosa.resample(np.asarray(samples, dtype=np.float32), orig_sr=from_rate, target_sr=to_rate)


def peak_normalize(samples: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest magnitude is `peak`; silence stays silence."""
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    return samples if top == 0.0 else (samples * (peak / top)).astype(np.float32)


def peak_normalize_rows(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / max|x| per row of [..., T] (a torch tensor); a silent row stays silent."""
    return x / x.abs().amax(dim=-1, keepdim=True).clamp_min(eps)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples as 16-bit PCM, clipped to [-1, 1]."""
    import soundfile

    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return Path(path)


@functools.lru_cache(maxsize=8)
def mel_filters(spec: AudioSpec) -> np.ndarray:
    """librosa's Slaney mel filter bank for `spec`, [n_mels, n_fft // 2 + 1]."""
    import librosa

    return librosa.filters.mel(
        sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax
    ).astype(np.float32)


def mel_frequencies(spec: AudioSpec) -> np.ndarray:
    """Centre frequency in Hz of each mel bin of `spec` (bin 0 is the lowest)."""
    import librosa

    return librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax)[1:-1]


def mel_magnitude(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Mel magnitude [n_mels, frames] with the Auffusion analysis (reflect pad, uncentred STFT)."""
    import librosa

    pad = (spec.n_fft - spec.hop_length) // 2
    padded = np.pad(np.asarray(samples, dtype=np.float32), pad, mode="reflect")
    stft = librosa.stft(
        padded, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, window="hann",
        center=False,
    )
    magnitude = np.sqrt(stft.real**2 + stft.imag**2 + 1e-9)
    return mel_filters(spec) @ magnitude


def log_mel(samples: np.ndarray, spec: AudioSpec, *, normalize: bool = True) -> np.ndarray:
    """Natural-log mel spectrogram [n_mels, frames], clamped at the spec's magnitude floor.

    With `normalize`, the clip is first scaled to the spec's analysis peak, as the reference code prepares audio.
    """
    if normalize and spec.analysis_peak is not None:
        samples = peak_normalize(samples, spec.analysis_peak)
    return np.log(np.maximum(mel_magnitude(samples, spec), spec.magnitude_floor)).astype(np.float32)


def _unit_range(spec: AudioSpec) -> tuple[float, float]:
    return math.log(spec.magnitude_floor), math.log(spec.magnitude_ceiling)


def log_mel_to_unit(log_mel_spec: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Map a natural-log magnitude to [0, 1] by the spec's image convention (clamped)."""
    if spec.image_scale == "specvqgan":
        decibels = 20.0 * np.maximum(log_mel_spec, math.log(spec.magnitude_floor)) / math.log(10.0)
        return np.clip((decibels - 20.0 + 100.0) / 100.0, 0.0, 1.0).astype(np.float32)
    low, high = _unit_range(spec)
    return np.clip((log_mel_spec - low) / (high - low), 0.0, 1.0).astype(np.float32)


def unit_to_log_mel(unit: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Inverse of `log_mel_to_unit` on [0, 1]."""
    unit = np.clip(np.asarray(unit, dtype=np.float32), 0.0, 1.0)
    if spec.image_scale == "specvqgan":
        return ((unit * 100.0 - 100.0 + 20.0) / 20.0 * math.log(10.0)).astype(np.float32)
    low, high = _unit_range(spec)
    return (unit * (high - low) + low).astype(np.float32)


def spectrogram_to_image(log_mel_spec: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Log-mel [n_mels, frames] -> grayscale image in [0, 1], low frequencies at the bottom row."""
    return np.flipud(log_mel_to_unit(log_mel_spec, spec)).copy()


def image_to_spectrogram(image: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Grayscale [H, W] or channels-last [H, W, C] image in [0, 1] -> log-mel [H, W] (channel mean, unflipped).

    The image must already have `spec.n_mels` rows; images-that-sound averages the three decoded channels.
    """
    image = np.asarray(image, dtype=np.float32)
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    if gray.shape[0] != spec.n_mels:
        raise ValueError(f"a {spec.name} spectrogram image needs {spec.n_mels} rows, got {gray.shape[0]}")
    return unit_to_log_mel(np.flipud(gray), spec)


def griffin_lim(log_mel_spec: np.ndarray, spec: AudioSpec, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Waveform from a log-mel spectrogram by Griffin-Lim, as images-that-sound's `mel_to_audio` call does.

    exp(L) -> non-negative least-squares inverse of the mel filters -> librosa's Griffin-Lim (centred STFT,
    power 1, seeded random initial phase). Returns `spec.samples_for(frames)` samples, not clipped: a loud
    spectrogram can exceed full scale (the reference code clips; callers choose).
    """
    import librosa

    magnitude = np.exp(np.asarray(log_mel_spec, dtype=np.float32))
    audio = griffin_lim_magnitude(librosa.util.nnls(mel_filters(spec), magnitude), spec, n_iter, seed)
    # A centred STFT of F frames spans (F - 1) hops; pad to the analysis length, as the reference code does.
    return np.pad(audio, (0, spec.samples_for(magnitude.shape[1]) - len(audio))).astype(np.float32)


def griffin_lim_magnitude(magnitude: np.ndarray, spec: AudioSpec, n_iter: int = 32, seed: int = 0,
                          length: int | None = None) -> np.ndarray:
    """Waveform(s) [..., length] from a linear |STFT| [..., n_fft // 2 + 1, frames] by librosa's Griffin-Lim with
    the spec's STFT (centred, Hann, momentum 0.99), from a phase seeded by `seed`. The initial phase is drawn for
    the whole array at once, so a batch differs from its clips decoded one by one."""
    import librosa

    return librosa.griffinlim(np.asarray(magnitude), n_iter=n_iter, hop_length=spec.hop_length,
                              win_length=spec.win_length, n_fft=spec.n_fft, window="hann", center=True,
                              length=length, random_state=seed)


# Torch STFT: the impact convention, the training losses and the batched Griffin-Lim ---------------------------------


def stft(audio: torch.Tensor, n_fft: int, hop_length: int, win_length: int | None = None, *,
         pad_mode: str = "constant") -> torch.Tensor:
    """Complex STFT [..., n_fft // 2 + 1, frames] of [..., T]: centred (padded with `pad_mode`), a periodic Hann
    window of `win_length` samples (default n_fft) in the middle of each n_fft-point frame."""
    import torch

    win_length = win_length or n_fft
    window = torch.hann_window(win_length, periodic=True, dtype=audio.dtype, device=audio.device)
    spectrum = torch.stft(audio.reshape(-1, audio.shape[-1]), n_fft, hop_length, win_length, window, center=True,
                          pad_mode=pad_mode, return_complex=True)
    return spectrum.reshape(*audio.shape[:-1], *spectrum.shape[-2:])


def stft_magnitude(audio: torch.Tensor | np.ndarray, spec: AudioSpec) -> torch.Tensor | np.ndarray:
    """|STFT| [..., n_fft // 2 + 1, 1 + T // hop] of [..., T] with the spec's settings, as `librosa.stft` computes
    it by default (centred, zero padding, periodic Hann).

    A torch tensor goes through `stft`; a numpy array is transformed with numpy's FFT in its own precision and comes
    back as numpy, because the weightless physics path (mode estimation, the mode picture) must not load torch, and
    for one short clip torch's thread pool costs more than the transform itself on a busy CPU.
    """
    if not isinstance(audio, np.ndarray):
        return stft(audio, spec.n_fft, spec.hop_length, spec.win_length).abs()
    n_fft, hop_length = spec.n_fft, spec.hop_length
    win_length = spec.win_length or n_fft
    offset = (n_fft - win_length) // 2
    window = np.zeros(n_fft)
    window[offset : offset + win_length] = periodic_hann(win_length)
    padded = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft // 2)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    return np.abs(np.fft.rfft(frames * window, axis=-1)).swapaxes(-1, -2)


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window (`scipy.signal.get_window("hann", length)`, torch's `hann_window`), float64."""
    return 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, length + 1))[:-1]


def griffin_lim_torch(magnitude: torch.Tensor, spec: AudioSpec, n_iter: int, generator: torch.Generator,
                      length: int, momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013, as `librosa.griffinlim`) of magnitudes [B, bins, frames] with the
    spec's `stft_magnitude` settings: random initial phases from `generator` -> waveforms [B, length]."""
    import torch

    window = torch.hann_window(spec.n_fft, periodic=True, dtype=magnitude.dtype)

    def inverse(spectrum: torch.Tensor) -> torch.Tensor:
        return torch.istft(spectrum, spec.n_fft, spec.hop_length, window=window, length=length)

    angles = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype))
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = stft(inverse(magnitude * angles), spec.n_fft, spec.hop_length)
        angles = rebuilt - (momentum / (1.0 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    return inverse(magnitude * angles)


# The impact spectrogram's log scale: ln(|S| + 1e-8) min-max mapped to [-1, 1] with these constants.
IMPACT_LOG_EPS = 1e-8
IMPACT_SPEC_MIN = math.log(IMPACT_LOG_EPS)  # -18.420681
IMPACT_SPEC_MAX = 5.9540715  # a dataset constant of the official code


def impact_log_scale(magnitude: torch.Tensor) -> torch.Tensor:
    """A linear magnitude -> ln(|S| + 1e-8) mapped to [-1, 1] (the impact models' input and output)."""
    import torch

    return 2.0 * (torch.log(magnitude + IMPACT_LOG_EPS) - IMPACT_SPEC_MIN) / (IMPACT_SPEC_MAX - IMPACT_SPEC_MIN) - 1.0


def impact_log_unscale(spectrogram: torch.Tensor) -> torch.Tensor:
    """Inverse of `impact_log_scale`: [-1, 1] values -> linear magnitudes (never negative)."""
    import torch

    log_magnitude = (spectrogram + 1.0) / 2.0 * (IMPACT_SPEC_MAX - IMPACT_SPEC_MIN) + IMPACT_SPEC_MIN
    return torch.clamp(torch.exp(log_magnitude) - IMPACT_LOG_EPS, min=0.0)


def specvqgan_mel(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """SpecVQGAN's spectrogram (Visual Echoes' audio input) in [0, 1], [n_mels, 1 + len // hop]: |librosa.stft|
    (centred, Hann, power 1) -> Slaney mel filters -> floor at `magnitude_floor` -> (20·log10 − 20 + 100) / 100,
    clipped to [0, 1] (`log_mel_to_unit` with image_scale "specvqgan"). Row 0 is the lowest band. No peak
    normalisation. `unit_to_log_mel` + `griffin_lim` invert it."""
    import librosa

    magnitude = np.abs(librosa.stft(np.asarray(samples, dtype=np.float32), n_fft=spec.n_fft,
                                    hop_length=spec.hop_length, win_length=spec.win_length, window="hann"))
    mel = np.maximum(mel_filters(spec) @ magnitude, spec.magnitude_floor)
    return log_mel_to_unit(np.log(mel), spec)


SPECTROGRAM_PICTURE_RANGE_DB = 70.0


def spectrogram_picture(samples: np.ndarray, sample_rate: int, n_fft: int = 256, hop_length: int = 32) -> np.ndarray:
    """A linear-frequency spectrogram to look at: [n_fft // 2 + 1, frames] in [0, 1], low frequencies at the bottom;
    dB of the magnitude re a full-scale sine, the bottom SPECTROGRAM_PICTURE_RANGE_DB mapped to 0..1 (silence black)."""
    spec = AudioSpec("picture", sample_rate, len(samples) / sample_rate, n_fft=n_fft, hop_length=hop_length,
                     win_length=n_fft)
    magnitude = stft_magnitude(np.asarray(samples, np.float32), spec)
    decibels = 20.0 * np.log10(np.maximum(magnitude / (n_fft / 4.0), 1e-10))
    return np.flipud(np.clip(1.0 + decibels / SPECTROGRAM_PICTURE_RANGE_DB, 0.0, 1.0)).astype(np.float32)


# MM-LDM's audio image: the mel as a grayscale picture, made RGB and resized to the frame size, and back ------------


def audio_image(samples: np.ndarray, spec: AudioSpec, height: int, width: int) -> np.ndarray:
    """MM-LDM's audio image [3, height, width] in [-1, 1] of mono `samples` at `spec.sample_rate`.

    The HiFi-GAN mel of `mel_magnitude` (reflect pad, uncentred STFT, Slaney filters) -> (20·log10 − 20 + 100)/100
    clipped to [0, 1] (`log_mel_to_unit`, scale "specvqgan") -> ×255 as an 8-bit grayscale image (rounded; the
    released code truncates) -> PIL "RGB" (the gray value in all three channels) -> bicubic resize to width × height
    without crop -> x / 127.5 − 1. Row 0 is the lowest band, as the code leaves it (no flip). The mel is
    `spec.n_mels` × `spec.frames_for(len(samples))`: keep that size to invert (`audio_image_to_log_mel`).
    """
    from PIL import Image

    unit = log_mel_to_unit(log_mel(samples, spec, normalize=False), spec)
    gray = Image.fromarray(np.round(unit * 255.0).astype(np.uint8), mode="L")
    rgb = gray.convert("RGB").resize((width, height), Image.BICUBIC)
    return (np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


def audio_image_to_log_mel(image: np.ndarray, spec: AudioSpec, frames: int) -> np.ndarray:
    """Inverse of `audio_image`: [3, H, W] in [-1, 1] -> channel mean -> [0, 1] -> bicubic resize to the stored mel
    size (`spec.n_mels` × `frames`) -> natural-log mel [n_mels, frames] (values outside [0, 1] clipped first).

    The way back is torch's bicubic (Keys' a = −0.75), not PIL's (a = −0.5) that made the image: a 32-px image keeps
    a row for 2.5 mel bands, and PIL's softer kernel smears a hum's fundamental so that Griffin-Lim loses it to the
    second harmonic (128 toy lamp clips through 32² images: 5 an octave high with PIL's kernel, none with this one).
    """
    import torch

    unit = (np.asarray(image, dtype=np.float32).mean(axis=0) + 1.0) / 2.0
    resized = torch.nn.functional.interpolate(torch.from_numpy(unit)[None, None], size=(spec.n_mels, frames),
                                              mode="bicubic", align_corners=False)[0, 0]
    return unit_to_log_mel(resized.numpy(), spec)


def audio_image_to_waveform(image: np.ndarray, spec: AudioSpec, frames: int, n_iter: int = 32,
                            seed: int = 0) -> np.ndarray:
    """An MM-LDM audio image back to sound: `audio_image_to_log_mel`, then `griffin_lim` (`frames` × hop samples)."""
    return griffin_lim(audio_image_to_log_mel(image, spec, frames), spec, n_iter=n_iter, seed=seed)

