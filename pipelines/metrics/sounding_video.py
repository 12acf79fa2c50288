"""Audio-visual coupling of Sounding Video on the toy world: does the generated sound belong to the generated picture?

MM-Diffusion's claim is that one coupled U-Net makes video and audio that belong together (paper §4, the MOS "A-V"
alignment of Table 5). The toy world makes that measurable, one known coupling per scene (`COUPLINGS`):

- `bounce` — **onset F1**: every bounce is a knock starting on the contact frame. Contacts are found in the video
  (an object arriving at the floor: the lowest foreground pixel of a column entering the floor band,
  `detect_contacts`), onsets in the audio (short-time energy jumping well above the preceding milliseconds,
  `detect_onsets`), and matched one to one within ±`--tolerance` frames (F1 summed over clips; hit rate, precision,
  recall and exact F1 reported too).
- `lamp` — **pitch**: the higher the lamp hangs, the higher its hum. The correlation, across clips, between the pitch
  the lamp's height calls for (`lamp_frequency`, log scale) and the hum's measured pitch (the spectral peak).
  **Flicker**: the hum sounds while the lamp is lit. The per-clip correlation of the lamp's brightness and the
  audio's loudness, frame by frame, averaged over clips.

For every coupling: the score of the true pairs (video i with audio i) with its 95 % bootstrap interval (the clips
resampled `--permutations` times: whether two models' scores differ beyond the clips drawn), the mean score over
`--permutations` random re-pairings (the baseline a model without coupling reaches), and the permutation p-value (how
often a re-pairing scores at least as high as the true pairs). The same for ground-truth toy clips in the model's
format (the upper bound). The metric generates N samples with a Sounding Video model: joint ones (`--mode joint`), or
zero-shot ones from held-out ground-truth toy clips: videos for their audio (`a2v`) or audio for their videos (`v2a`);
`--mode all` runs the three. The model (`--weights`: a registry entry or a saved folder) is MM-Diffusion (`--sampler`,
`--steps`; joint samples with `--joint-resample-rounds`; video -> audio by replacement, Eq. 10; audio -> video with
gradient guidance `--gradient-guidance` λ in `--guidance-form`, Eq. 12, and `--resample-rounds`/`--resample-share`; for
weights trained with a clean condition both from the learnt conditional, `--clean-condition`) or MM-LDM (DiT DDIM
`--steps`, the shared decoder's `--decoder-steps`, cross-modal guidance φ `--guidance` and reconstruction guidance λ
`--reconstruction` for a2v and v2a); options of the other model are refused (`sampling_for`). The given stream of a
zero-shot clip is scored as given, and how far the model's returned copy of it strays is reported (`given_stream`: 0
when returned as given).

Which scene a generated clip shows is decided by a **scene judge**, a small CNN trained in the run on real toy
frames of every scene in the model's format (`train_scene_judge`; its held-out accuracy on real clips is reported):
each coupling is scored on the clips judged to be its scene, and the share of generated clips judged to be one of
the model's training scenes says whether the frames show the scene's objects at all.

Frame 0 of a clip is left out of the bounce detectors: the video detector needs the frame before a contact to see the
motion into it. Printed as a table and written to `--out` as JSON with date, machine and settings; the JSON keeps
every generated clip's measurements, so two models' runs can be compared clip by clip
(`python -m pipelines.metrics sounding_video_comparison`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.mm_diffusion.clips import ClipFormat

FOREGROUND_THRESHOLD = 0.05  # |frame − background| (0..1) below which a pixel is backdrop
OBJECT_WEIGHT = 0.05  # foreground weight (summed over three columns) that makes a pixel part of an object
FLOOR_BAND = 0.1  # a contact's lowest object pixel lies within this fraction of the height above the floor
ONSET_RISE_DB = 9.0  # energy jump over the preceding windows that makes an onset
ONSET_RANGE_DB = 30.0  # onsets quieter than the clip's loudest window by more than this are ignored
ONSET_MIN_RMS = 0.01  # nor those below this absolute level (silence, noise floor)
WINDOWS_PER_FRAME = 8
LAMP_GLOW = 0.1  # luminance above the room's (the frame's median pixel) that makes a pixel part of the lamp
PITCH_BAND_HZ = (150.0, 1000.0)  # where a hum's fundamental is looked for (the lamp's 200-800 Hz, with a margin)
MODES = ("joint", "a2v", "v2a")
RECONSTRUCTED = "reconstructed"  # MM-LDM only: ground-truth clips encoded and decoded, no DiT
DEFAULT_SCENES = ("bounce",)  # the scene whose contacts the detectors see, for a model that does not name its own
PERMUTATIONS = 1000


# Detectors ---------------------------------------------------------------------------------------------------------


def foreground(frames: np.ndarray) -> np.ndarray:
    """Per-pixel object weight `[F, H, W]` in [0, 1]: distance from the clip's median frame (the static backdrop),
    above `FOREGROUND_THRESHOLD`. frames: uint8 `[F, H, W, 3]` or float in [0, 1]."""
    frames = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)
    distance = np.abs(frames - np.median(frames, axis=0, keepdims=True)).max(axis=-1)
    return np.clip((distance - FOREGROUND_THRESHOLD) / (1.0 - FOREGROUND_THRESHOLD), 0.0, 1.0)


def detect_contacts(frames: np.ndarray, floor: float) -> np.ndarray:
    """Frames (≥ 1) where an object arrives at the floor: the fall's vertical-velocity reversal, seen as the lowest
    object pixel of a column entering the floor band.

    For every group of three adjacent columns, the lowest row whose foreground weight exceeds OBJECT_WEIGHT; a
    contact at t when, in some group, that row lies within FLOOR_BAND·H of the floor row `floor`·H at t but not at
    t − 1 (a ball resting on the floor, or rolling along it, makes no contact). frames: `[F, H, W, 3]`; floor: the
    floor's top edge, a fraction of H.
    """
    weight = foreground(frames)  # [F, H, W]
    height = weight.shape[1]
    columns = weight + np.pad(weight, ((0, 0), (0, 0), (1, 0)))[..., :-1] + np.pad(weight, ((0, 0), (0, 0), (0, 1)))[
        ..., 1:]  # each column with its two neighbours
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    lowest = np.where(columns > OBJECT_WEIGHT, rows, -1.0).max(axis=1)  # [F, W]; -1: no object in the column
    at_floor = lowest >= (floor - FLOOR_BAND) * height - 0.5
    return np.flatnonzero((at_floor[1:] & ~at_floor[:-1]).any(axis=1)) + 1


def detect_onsets(audio: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """Frames (≥ 1) in which a sound starts: the energy of a short window (1/8 frame) rises ONSET_RISE_DB above the
    loudest of the two windows before it, within ONSET_RANGE_DB of the clip's peak and above ONSET_MIN_RMS."""
    hop = fmt.audio_samples // fmt.frames // WINDOWS_PER_FRAME
    windows = np.asarray(audio, np.float64)[: hop * fmt.frames * WINDOWS_PER_FRAME].reshape(-1, hop)
    rms = np.sqrt((windows**2).mean(axis=1))
    level = 20.0 * np.log10(np.maximum(rms, 1e-8))
    before = np.maximum(np.concatenate([[-160.0], level[:-1]]), np.concatenate([[-160.0] * 2, level[:-2]]))
    onset = (level - before > ONSET_RISE_DB) & (level > level.max() - ONSET_RANGE_DB) & (rms > ONSET_MIN_RMS)
    frames = np.unique(np.flatnonzero(onset) // WINDOWS_PER_FRAME)
    return frames[frames >= 1]


# The lamp ---------------------------------------------------------------------------------------------------------


def luminance(frames: np.ndarray) -> np.ndarray:
    """Rec. 601 luma `[F, H, W]` in [0, 1] of uint8 or [0, 1] float frames `[F, H, W, 3]`."""
    frames = frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)
    return frames @ np.array([0.299, 0.587, 0.114], np.float32)


def lamp_weights(frames: np.ndarray) -> np.ndarray:
    """Per-pixel lamp weight `[H, W]`: how far the clip's mean luminance rises above the room (the median pixel) by
    more than LAMP_GLOW."""
    mean = luminance(frames).mean(axis=0)
    return np.clip(mean - np.median(mean) - LAMP_GLOW, 0.0, None)


def lamp_height(frames: np.ndarray, fmt: ClipFormat | None = None) -> float:
    """Where the lamp hangs: its centre row as a fraction of the frame height from the top (NaN: no lamp seen)."""
    weights = lamp_weights(frames)
    if weights.sum() <= 0.0:
        return float("nan")
    rows = (np.arange(weights.shape[0]) + 0.5) / weights.shape[0]
    return float((weights.sum(axis=1) * rows).sum() / weights.sum())


def lamp_brightness(frames: np.ndarray, fmt: ClipFormat | None = None) -> np.ndarray:
    """The lamp's mean luminance in every frame `[F]` (NaNs: no lamp seen)."""
    weights = lamp_weights(frames)
    if weights.sum() <= 0.0:
        return np.full(len(frames), np.nan)
    return (luminance(frames) * weights).sum(axis=(1, 2)) / weights.sum()


def hum_pitch(audio: np.ndarray, fmt: ClipFormat) -> float:
    """The hum's fundamental (Hz): the strongest spectral peak of the Hann-windowed clip within PITCH_BAND_HZ,
    refined by a parabola through the peak bin and its neighbours (NaN for a clip quieter than ONSET_MIN_RMS)."""
    audio = np.asarray(audio, np.float64)
    if np.sqrt(np.mean(audio**2)) < ONSET_MIN_RMS:
        return float("nan")
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    frequencies = np.fft.rfftfreq(len(audio), 1.0 / fmt.sample_rate)
    band = np.flatnonzero((frequencies >= PITCH_BAND_HZ[0]) & (frequencies <= PITCH_BAND_HZ[1]))
    peak = band[np.argmax(spectrum[band])]
    left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
    offset = 0.5 * (left - right) / (left - 2.0 * centre + right) if left - 2.0 * centre + right < 0.0 else 0.0
    return float((peak + offset) * fmt.sample_rate / len(audio))


def frame_loudness(audio: np.ndarray, fmt: ClipFormat) -> np.ndarray:
    """RMS of the audio under every frame `[F]`."""
    per_frame = fmt.audio_samples // fmt.frames
    windows = np.asarray(audio, np.float64)[: per_frame * fmt.frames].reshape(fmt.frames, per_frame)
    return np.sqrt((windows**2).mean(axis=1))


def pitch_correlation(heights: list[float], pitches: list[float]) -> float:
    """Pearson correlation, over clips where both were measured, of log pitch called for by the lamp's height and the
    hum's measured log pitch (1: every hum at its lamp's pitch, up to a common shift)."""
    from pipelines.toyworld.videos import lamp_frequency

    heights, pitches = np.asarray(heights, np.float64), np.asarray(pitches, np.float64)
    seen = np.isfinite(heights) & np.isfinite(pitches)
    if seen.sum() < 3:
        return float("nan")
    return _pearson(np.log2(lamp_frequency(heights[seen])), np.log2(pitches[seen]))


def flicker_correlation(brightness: list[np.ndarray], loudness: list[np.ndarray]) -> float:
    """Mean over clips of the frame-by-frame Pearson correlation of the lamp's brightness and the audio's loudness
    (clips where either is constant or unmeasured are left out: they carry no flicker to follow)."""
    brightness, loudness = np.asarray(brightness, np.float64), np.asarray(loudness, np.float64)  # [N, F]
    spread_b, spread_a = brightness.std(axis=1), loudness.std(axis=1)
    varying = np.isfinite(brightness).all(axis=1) & (spread_b > 1e-6) & (spread_a > 1e-6)
    if not varying.any():
        return float("nan")
    z_b = (brightness[varying] - brightness[varying].mean(1, keepdims=True)) / spread_b[varying, None]
    z_a = (loudness[varying] - loudness[varying].mean(1, keepdims=True)) / spread_a[varying, None]
    return float((z_b * z_a).mean())


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64) - np.mean(x), np.asarray(y, np.float64) - np.mean(y)
    scale = np.sqrt((x**2).sum() * (y**2).sum())
    return float((x * y).sum() / scale) if scale > 0.0 else float("nan")


# Scores ------------------------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """Summed over clips: contacts, onsets, contacts with an onset within the tolerance, one-to-one matches within
    the tolerance and exact (same frame) matches."""

    contacts: int = 0
    onsets: int = 0
    hits: int = 0
    matches: int = 0
    exact_matches: int = 0

    def add(self, contacts: np.ndarray, onsets: np.ndarray, tolerance: int) -> None:
        self.contacts += len(contacts)
        self.onsets += len(onsets)
        self.hits += sum(bool(np.any(np.abs(onsets - c) <= tolerance)) for c in contacts)
        self.matches += match_count(contacts, onsets, tolerance)
        self.exact_matches += len(np.intersect1d(contacts, onsets))

    def scores(self) -> dict:
        def ratio(a: int, b: int) -> float:
            return a / b if b else float("nan")

        both = self.onsets + self.contacts
        return {"hit_rate": ratio(self.hits, self.contacts), "precision": ratio(self.matches, self.onsets),
                "recall": ratio(self.matches, self.contacts), "f1": ratio(2 * self.matches, both),
                "f1_exact": ratio(2 * self.exact_matches, both), "contacts": self.contacts, "onsets": self.onsets,
                "matches": self.matches, "exact_matches": self.exact_matches}


def match_count(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> int:
    """One-to-one matches within ±tolerance frames, greedily in time order (both sorted, so greedy is optimal)."""
    used, matches = set(), 0
    for r in np.sort(reference):
        for j, d in enumerate(np.sort(detected)):
            if j not in used and abs(int(d) - int(r)) <= tolerance:
                used.add(j)
                matches += 1
                break
    return matches


def onset_counts(contacts: list[np.ndarray], onsets: list[np.ndarray], tolerance: int) -> Counts:
    counts = Counts()
    for video_contacts, audio_onsets in zip(contacts, onsets):
        counts.add(video_contacts, audio_onsets, tolerance)
    return counts


def coupling(contacts: list[np.ndarray], onsets: list[np.ndarray], tolerance: int) -> dict:
    """Onset scores of the true pairs (video i with audio i) and of all shuffled pairs (video i with audio j ≠ i)."""
    shuffled = Counts()
    for i, video_contacts in enumerate(contacts):
        for j, audio_onsets in enumerate(onsets):
            if j != i:
                shuffled.add(video_contacts, audio_onsets, tolerance)
    return {"paired": onset_counts(contacts, onsets, tolerance).scores(), "shuffled": shuffled.scores()}


def detector_validation(truth: list[np.ndarray], detected: list[np.ndarray], tolerance: int) -> dict:
    """A detector against the true contact frames: precision and recall within ±tolerance and exact, and F1."""
    counts = onset_counts(truth, detected, tolerance)  # "contacts" = the truth, "onsets" = the detections
    scores = counts.scores()
    return {**scores, "precision_exact": counts.exact_matches / max(counts.onsets, 1),
            "recall_exact": counts.exact_matches / max(counts.contacts, 1)}


@dataclass(frozen=True)
class Coupling:
    """One known link between what a scene shows and what it sounds like: a feature of the frames, a feature of the
    audio, and a score of a list of paired features (higher: more coupled)."""

    name: str
    scene: str
    description: str
    video: Callable[[np.ndarray, ClipFormat], Any]
    audio: Callable[[np.ndarray, ClipFormat], Any]
    score: Callable[[list, list], float]


def couplings(tolerance: int) -> tuple[Coupling, ...]:
    """Every coupling of the toy world (bounce onsets matched within ±`tolerance` frames)."""
    from pipelines.toyworld.videos import FLOOR

    return (
        Coupling("bounce_onsets", "bounce", f"onset F1 (±{tolerance} frames)",
                 lambda frames, fmt: detect_contacts(frames, FLOOR), detect_onsets,
                 lambda contacts, onsets: onset_counts(contacts, onsets, tolerance).scores()["f1"]),
        Coupling("lamp_pitch", "lamp", "height ↔ pitch correlation", lamp_height, hum_pitch, pitch_correlation),
        Coupling("lamp_flicker", "lamp", "brightness ↔ loudness correlation", lamp_brightness, frame_loudness,
                 flicker_correlation),
    )


def permutation_test(score: Callable[[list, list], float], video: list, audio: list, permutations: int,
                     seed: int) -> dict:
    """The true pairs' score, the mean (and spread) of the score over `permutations` random re-pairings of the
    audio, and the one-sided permutation p-value (1 + re-pairings scoring ≥ the true pairs) / (1 + re-pairings)."""
    paired = score(video, audio)
    rng = np.random.default_rng(seed)
    shuffled = np.array([score(video, [audio[j] for j in rng.permutation(len(audio))]) for _ in range(permutations)])
    shuffled = shuffled[np.isfinite(shuffled)]
    if not np.isfinite(paired) or not len(shuffled):
        return {"paired": paired, "shuffled": float("nan"), "shuffled_sd": float("nan"), "margin": float("nan"),
                "p_value": float("nan")}
    return {"paired": paired, "shuffled": float(shuffled.mean()), "shuffled_sd": float(shuffled.std()),
            "margin": paired - float(shuffled.mean()),
            "p_value": float((1 + (shuffled >= paired).sum()) / (1 + len(shuffled)))}


def bootstrap_interval(score: Callable[[list, list], float], video: list, audio: list, draws: int, seed: int,
                       level: float = 0.95) -> list[float]:
    """The `level` percentile interval of the true pairs' score over `draws` resamplings of the clips with
    replacement (each clip keeps its pair): how far the score could move with other clips of the same kind, so two
    models' scores can be told apart or not."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        picked = rng.integers(0, len(video), len(video))
        scores.append(score([video[i] for i in picked], [audio[i] for i in picked]))
    return percentile_interval(scores, level)


def percentile_interval(values: list[float], level: float = 0.95) -> list[float]:
    """[low, high]: the central `level` share of the finite values (NaNs when there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


# The scene judge ---------------------------------------------------------------------------------------------------


def _scene_judge_network(classes: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.GELU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.GELU(),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.GELU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes))


@dataclass
class SceneJudge:
    """A small CNN that tells the toy world's scenes apart from single frames; a clip's scene is the one with the
    highest mean log-probability over its frames."""

    network: Any
    scenes: tuple[str, ...]

    def __call__(self, frames: np.ndarray) -> list[str]:
        """Scenes of clips `[N, F, H, W, 3]` (uint8)."""
        import torch

        with torch.no_grad():
            logits = self.network(_frames_tensor(frames.reshape(-1, *frames.shape[2:])))
        votes = torch.log_softmax(logits, -1).reshape(len(frames), frames.shape[1], -1).mean(1).argmax(-1)
        return [self.scenes[int(i)] for i in votes]


def _frames_tensor(frames: np.ndarray):
    import torch

    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)


def train_scene_judge(fmt: ClipFormat, seed: int, clips_per_scene: int = 40, steps: int = 300) -> tuple[SceneJudge,
                                                                                                          float]:
    """A scene judge trained on real toy clips of every scene in `fmt` (seeded), and its accuracy on as many held-out
    real clips."""
    import torch

    from pipelines.toyworld.videos import SCENES

    torch.manual_seed(seed)
    train = ground_truth_clips(clips_per_scene * len(SCENES), seed, fmt, SCENES)
    held_out = ground_truth_clips(clips_per_scene * len(SCENES), seed + 1, fmt, SCENES)
    network = _scene_judge_network(len(SCENES))
    frames = _frames_tensor(train.frames.reshape(-1, *train.frames.shape[2:]))
    labels = torch.tensor([SCENES.index(s) for s in train.scenes]).repeat_interleave(fmt.frames)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        picks = torch.randint(0, len(frames), (128,), generator=generator)
        loss = torch.nn.functional.cross_entropy(network(frames[picks]), labels[picks])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    judge = SceneJudge(network.eval(), SCENES)
    accuracy = float(np.mean([a == b for a, b in zip(judge(held_out.frames), held_out.scenes)]))
    return judge, accuracy


# The model ---------------------------------------------------------------------------------------------------------

MODEL_NAMES = {"mm_diffusion": "MM-Diffusion", "mm_ldm": "MM-LDM"}
MODEL_OPTIONS = {"mm_diffusion": ("sampler", "steps", "joint_resample_rounds", "resample_rounds", "resample_share",
                                  "gradient_guidance", "guidance_form", "clean_condition"),
                 "mm_ldm": ("steps", "decoder_steps", "guidance", "reconstruction", "joint_resample_rounds",
                            "resample_rounds", "resample_share")}  # run()'s options per model


@dataclass(frozen=True)
class Sampling:
    """How the metric calls one Sounding Video model: its family (a key of MODEL_NAMES), the keyword arguments of its
    pipeline for every mode, and the settings the JSON records."""

    model: str
    arguments: dict[str, dict[str, Any]]
    settings: dict[str, Any]


def load_model(weights: str, variant: str):
    """The Sounding Video model `weights` names: a registry entry (its `variant`), or a path: an MM-LDM folder
    (model.json of its format) or an MM-Diffusion folder or checkpoint, on the registry's device and dtype."""
    from pipelines.devices import choose_device, choose_dtype
    from pipelines.mm_ldm.pipeline_mm_ldm import CONFIG_FORMAT
    from pipelines.pipeline_utils import read_json
    from pipelines.registry import UnknownPipelineError, WeightsUnavailableError, get_pipeline

    path = Path(weights)
    if not path.exists():
        try:
            return get_pipeline(weights, variant)
        except UnknownPipelineError:
            raise ValueError(f"--weights {weights!r} is neither a registry name nor a model folder") from None
        except WeightsUnavailableError as error:
            raise ValueError(str(error)) from None
    config = path / "model.json"
    if config.is_file() and read_json(config).get("format") == CONFIG_FORMAT:
        from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline as Pipeline
    else:
        from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline as Pipeline
    device = choose_device()
    return Pipeline.from_pretrained(path, torch_dtype=choose_dtype(device)).to(device)


def model_family(pipe) -> str:
    """The model's family: "mm_diffusion" or "mm_ldm" (ValueError for a pipeline that makes no sounding videos)."""
    from pipelines.mm_diffusion.pipeline_mm_diffusion import MMDiffusionPipeline
    from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline

    if isinstance(pipe, MMLDMPipeline):
        return "mm_ldm"
    if isinstance(pipe, MMDiffusionPipeline):
        return "mm_diffusion"
    raise ValueError(f"--weights must be a Sounding Video model (MM-Diffusion or MM-LDM), got a {type(pipe).__name__}")


def sampling_for(model: str, learnt_clean_condition: bool = False, **options: Any) -> Sampling:
    """`model`'s sampling from `options` (run()'s sampling options; None: the model's default, which for MM-Diffusion
    follows whether its weights learnt a clean condition). Options another model takes are refused, naming the ones
    that apply."""
    foreign = [name for name, value in options.items() if value is not None and name not in MODEL_OPTIONS[model]]
    if foreign:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in foreign)
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in MODEL_OPTIONS[model])
        raise ValueError(f"{flags} {'does' if len(foreign) == 1 else 'do'} not apply to {MODEL_NAMES[model]}, whose "
                         f"sampling options are {takes}")
    own = {name: options.get(name) for name in MODEL_OPTIONS[model]}
    return mm_ldm_sampling(**own) if model == "mm_ldm" else mm_diffusion_sampling(**own,
                                                                                  learnt=learnt_clean_condition)


def mm_diffusion_sampling(sampler: str | None, steps: int | None, joint_resample_rounds: int | None,
                          resample_rounds: int | None, resample_share: float | None, gradient_guidance: float | None,
                          guidance_form: str | None, clean_condition: bool | None, learnt: bool = False) -> Sampling:
    """MM-Diffusion; defaults (`entries.studio_steering`): the Sounding Video tab's for the studio model (DDPM 100;
    joint samples with 3 resampling rounds, audio -> video with 4, video -> audio by replacement), and for weights that
    learnt a clean condition (`learnt`) both directions from it, audio -> video with 3 rounds on top. The share of the
    steps resampled is `resample_share` in both modes."""
    from pipelines.mm_diffusion.entries import studio_steering

    plain = {"sampler": sampler or "ddpm", "num_inference_steps": 100 if steps is None else steps}
    share = 0.6 if resample_share is None else resample_share
    joint = {**plain, "resample_rounds": studio_steering("joint", learnt).overridden(
        resample_rounds=joint_resample_rounds).resample_rounds, "resample_share": share}
    chosen = studio_steering("a2v", learnt).overridden(
        guidance_scale=gradient_guidance, guidance_scale_form=guidance_form, resample_rounds=resample_rounds,
        clean_condition=clean_condition)
    steering = {**chosen.arguments(), "resample_share": share}
    v2a = {"clean_condition": studio_steering("v2a", learnt).overridden(clean_condition=clean_condition)
           .clean_condition}
    return Sampling("mm_diffusion", {"joint": joint, "a2v": {**plain, **steering}, "v2a": {**plain, **v2a}},
                    {"sampler": plain["sampler"], "steps": plain["num_inference_steps"],
                     "joint_resample_rounds": joint["resample_rounds"], "a2v_steering": steering,
                     "v2a_steering": v2a})


def mm_ldm_sampling(steps: int | None, decoder_steps: int | None, guidance: float | None,
                    reconstruction: float | None, joint_resample_rounds: int | None, resample_rounds: int | None,
                    resample_share: float | None) -> Sampling:
    """MM-LDM with cross-modal guidance φ and reconstruction guidance λ for a2v and v2a (`reconstruction`: both),
    resampling rounds of the DiT's noisiest steps (`resample_rounds`: a2v and v2a); defaults: the studio model's per
    mode (`pipelines.mm_ldm.entries`), the shared decoder at its released classifier-free guidance."""
    from pipelines.mm_ldm import entries
    from pipelines.mm_ldm.pipeline_mm_ldm import DECODER_GUIDANCE_SCALE

    plain = {"num_inference_steps": entries.STUDIO_STEPS if steps is None else steps,
             "decoder_steps": entries.STUDIO_DECODER_STEPS if decoder_steps is None else decoder_steps,
             "decoder_guidance_scale": DECODER_GUIDANCE_SCALE,
             "resample_share": 0.6 if resample_share is None else resample_share}
    rounds = {mode: entries.STUDIO_RESAMPLE_ROUNDS[mode] if given is None else given
              for mode, given in (("joint", joint_resample_rounds), ("a2v", resample_rounds), ("v2a", resample_rounds))}
    pull = {mode: entries.STUDIO_RECONSTRUCTION[mode] if reconstruction is None else reconstruction
            for mode in ("a2v", "v2a")}
    guided = {**plain, "guidance_scale": entries.STUDIO_GUIDANCE if guidance is None else guidance}
    reconstructed = {"decoder_steps": plain["decoder_steps"], "decoder_guidance_scale": DECODER_GUIDANCE_SCALE}
    return Sampling("mm_ldm", {"joint": {**plain, "resample_rounds": rounds["joint"]},
                               **{mode: {**guided, "reconstruction_scale": pull[mode], "resample_rounds": rounds[mode]}
                                  for mode in ("a2v", "v2a")}, "reconstructed": reconstructed},
                    {"steps": plain["num_inference_steps"], "decoder_steps": plain["decoder_steps"],
                     "decoder_guidance": DECODER_GUIDANCE_SCALE, "guidance": guided["guidance_scale"],
                     "reconstruction": pull, "resample_rounds": rounds,
                     "resample_share": plain["resample_share"]})


def trained_scenes(pipe) -> tuple[str, ...]:
    """The toy scenes a model was trained on, from its training record (MM-Diffusion's `scenes`; MM-LDM's `classes`
    when its data was the toy world), else DEFAULT_SCENES."""
    record = pipe.training_record
    if record.get("scenes"):
        return tuple(record["scenes"])
    if record.get("data") == "toyworld" and record.get("classes"):
        return tuple(record["classes"])
    return DEFAULT_SCENES


# Data --------------------------------------------------------------------------------------------------------------


@dataclass
class Clips:
    """Sounding clips in a model's format: uint8 frames `[N, F, H, W, 3]`, audio `[N, L]`, each clip's scene,
    (for ground truth) the true contact frames of every clip (frame 0 left out) and (for zero-shot clips) how far the
    model's returned copy of the given stream strays from it (`given_change`)."""

    frames: np.ndarray
    audio: np.ndarray
    scenes: list[str]
    contacts: list[np.ndarray] | None = None
    given_change: dict | None = None


def ground_truth_clips(count: int, seed: int, fmt: ClipFormat, scenes: tuple[str, ...]) -> Clips:
    """`count` seeded toy clips in `fmt` (a random window of each 16-frame toy video) with their true contacts."""
    from pipelines.toyworld import videos as toy_videos
    from pipelines.train.mm_diffusion import resample_audio, shrink_frames

    toy = toy_videos.sample_videos(count, seed, scenes=scenes, frame_size=64)
    per_frame = fmt.audio_samples // fmt.frames
    starts = np.random.default_rng(seed).integers(0, toy_videos.NUM_FRAMES - fmt.frames + 1, count)
    frames, audio, contacts = [], [], []
    for index, start in enumerate(starts):
        frames.append(shrink_frames(toy.frames[index, start : start + fmt.frames], fmt))
        whole = resample_audio(toy.audio[index], toy.sample_rate, fmt)
        audio.append(whole[start * per_frame : start * per_frame + fmt.audio_samples])
        true = toy.contact_frames(index)
        contacts.append(true[(true >= start + 1) & (true < start + fmt.frames)] - start)
    return Clips(np.stack(frames), np.stack(audio), list(toy.scenes), contacts)


def generate(pipe, count: int, seed: int, batch: int, arguments: dict[str, Any],
             **condition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`count` samples (uint8 video `[N, F, H, W, 3]`, audio `[N, L]`) of `pipe` (or a callable taking its arguments);
    sample i is seeded with seed + i. `condition`: `video` or `audio` of the `count` clips to generate the other
    modality for (zero-shot; both for a reconstruction), none for joint samples; `arguments`: the model's sampling
    arguments for the mode (`Sampling.arguments`)."""
    import torch

    videos, audios = [], []
    for first in range(0, count, batch):
        generators = [torch.Generator().manual_seed(seed + i) for i in range(first, min(count, first + batch))]
        given = {name: value[first : first + len(generators)] for name, value in condition.items()}
        output = pipe(num_samples=len(generators), generator=generators, **given, **arguments)
        videos.append(output.video)
        audios.append(output.audio)
    return np.concatenate(videos), np.concatenate(audios)


def generated_clips(pipe, mode: str, fmt: ClipFormat, scenes: tuple[str, ...], samples: int, seed: int, batch: int,
                    judge: SceneJudge, arguments: dict[str, Any]) -> Clips:
    """The clips to score for `mode`: both streams generated (joint; their scenes as the judge sees them), or one
    generated for the other given from held-out toy clips (their true scenes; the given stream scored as given, and
    the model's returned copy of it compared with it); `arguments`: the model's sampling arguments for `mode`."""
    if mode == "joint":
        frames, audio = generate(pipe, samples, seed, batch, arguments)
        return Clips(frames, audio, judge(frames))
    given = ground_truth_clips(samples, seed + 2_000_003, fmt, scenes)  # held out from both other sets
    if mode == RECONSTRUCTED:  # MM-LDM's autoencoder alone
        frames, audio = generate(lambda num_samples, **inputs: pipe.reconstruct(**inputs), samples, seed, batch,
                                 arguments, video=given.frames, audio=given.audio)
        return Clips(frames, audio, given.scenes)
    if mode == "a2v":
        frames, returned = generate(pipe, samples, seed, batch, arguments, audio=given.audio)
        return Clips(frames, given.audio, given.scenes, given_change=stream_change("audio", given.audio, returned))
    returned, audio = generate(pipe, samples, seed, batch, arguments, video=given.frames)
    return Clips(given.frames, audio, given.scenes, given.contacts, stream_change("video", given.frames, returned))


def stream_change(modality: str, given: np.ndarray, returned: np.ndarray) -> dict:
    """The largest absolute difference between a given stream and the model's returned copy of it (video: in uint8
    levels, audio: in amplitude; 0 when the model returns it as given)."""
    difference = np.abs(np.asarray(returned, np.float64) - np.asarray(given, np.float64))
    return {"modality": modality, "max_abs_change": float(difference.max()) if difference.size else 0.0}


def evaluate(clips: Clips, fmt: ClipFormat, tolerance: int, permutations: int = PERMUTATIONS, seed: int = 0,
             keep_measurements: bool = False) -> dict:
    """Every coupling scored on the clips of its scene (paired, shuffled mean, p-value); for bounce clips also the
    onset detail and, when the true contacts are known, the detectors against them; for zero-shot clips the change
    of the given stream (`given_stream`). `keep_measurements`: each coupling also keeps the clips it scored (their
    indices) and their video and audio features, for comparing two models clip by clip
    (`pipelines.metrics.sounding_video_comparison`)."""
    result = {"clips": len(clips.scenes), "scenes": {s: clips.scenes.count(s) for s in sorted(set(clips.scenes))},
              "couplings": {}}
    if clips.given_change is not None:
        result["given_stream"] = clips.given_change
    for link in couplings(tolerance):
        ours = [i for i, scene in enumerate(clips.scenes) if scene == link.scene]
        if len(ours) < 2:
            continue
        video = [link.video(clips.frames[i], fmt) for i in ours]
        audio = [link.audio(clips.audio[i], fmt) for i in ours]
        result["couplings"][link.name] = {"description": link.description, "clips": len(ours),
                                          **permutation_test(link.score, video, audio, permutations, seed),
                                          "interval": bootstrap_interval(link.score, video, audio, permutations,
                                                                         seed)}
        if keep_measurements:
            result["couplings"][link.name]["measurements"] = {"clips": ours, "video": _listed(video),
                                                              "audio": _listed(audio)}
        if link.scene == "bounce":
            result["bounce_detail"] = coupling(video, audio, tolerance)
            if clips.contacts is not None:
                truth = [clips.contacts[i] for i in ours]
                result["video_detector"] = detector_validation(truth, video, tolerance)
                result["audio_detector"] = detector_validation(truth, audio, tolerance)
    return result


def _listed(features: list) -> list:
    """Per-clip features (floats or arrays) as JSON lists."""
    return [np.asarray(feature).tolist() for feature in features]


def table(results: dict) -> str:
    """Markdown: every coupling's paired score with its 95 % bootstrap interval, shuffled mean ± spread, margin and
    p-value, per source."""
    lines = ["| clips | coupling | n | paired [95 % interval] | shuffled (mean ± sd) | margin | p |",
             "|---|---|---|---|---|---|---|"]
    for source, result in results.items():
        for name, c in result["couplings"].items():
            low, high = c["interval"]
            lines.append(f"| {source} | {name}: {c['description']} | {c['clips']} | {c['paired']:.2f} "
                         f"[{low:.2f}, {high:.2f}] | {c['shuffled']:.2f} ± {c['shuffled_sd']:.2f} | "
                         f"{c['margin']:+.2f} | {c['p_value']:.3f} |")
    return "\n".join(lines)


def detector_table(result: dict, tolerance: int) -> str:
    """Markdown: the video and audio detectors against the true contact frames of ground-truth bounce clips."""
    lines = [("| detector vs true contacts | precision (exact) | recall (exact) | "
              f"precision (±{tolerance}) | recall (±{tolerance}) |"), "|---|---|---|---|---|"]
    for name in ("video_detector", "audio_detector"):
        v = result[name]
        lines.append(f"| {name.replace('_', ' ')} | {v['precision_exact']:.2f} | {v['recall_exact']:.2f} | "
                     f"{v['precision']:.2f} | {v['recall']:.2f} |")
    return "\n".join(lines)


def run(out: str | Path, *, samples: int = 64, ground_truth: int = 200, seed: int = 0, sampler: str | None = None,
        steps: int | None = None, joint_resample_rounds: int | None = None, resample_rounds: int | None = None,
        resample_share: float | None = None, gradient_guidance: float | None = None, guidance_form: str | None = None,
        clean_condition: bool | None = None, decoder_steps: int | None = None,
        guidance: float | None = None, reconstruction: float | None = None, tolerance: int = 1,
        weights: str = "mm_diffusion_toyworld", variant: str = "studio", scenes: tuple[str, ...] | None = None,
        modes: tuple[str, ...] = ("joint",), batch: int = 16, permutations: int = PERMUTATIONS, judge_clips: int = 40,
        verbose: bool = True) -> dict:
    """Score ground-truth toy clips and `samples` generated ones per mode; print the tables; write the JSON to `out`.
    `weights`: a registry entry (`variant`) or a model folder (`load_model`). `scenes`: of the ground-truth clips; by
    default those the model was trained on (`trained_scenes`). Sampling options (`MODEL_OPTIONS`; None: the model's
    default): MM-Diffusion's `sampler`, `steps`, joint samples' `joint_resample_rounds` and audio -> video's
    `resample_rounds`, `resample_share`, `gradient_guidance`, `guidance_form` and both directions' `clean_condition`
    (`mm_diffusion_sampling`); MM-LDM's `steps`, `decoder_steps`, `guidance` and `reconstruction`
    (`mm_ldm_sampling`)."""
    from pipelines.metrics.images_that_sound import machine

    for mode in modes:
        if mode not in (*MODES, RECONSTRUCTED):
            raise ValueError(f"mode must be one of {', '.join(MODES)} or {RECONSTRUCTED}; got {mode!r}")
    started = time.time()
    pipe = load_model(weights, variant)
    family = model_family(pipe)
    if RECONSTRUCTED in modes and family != "mm_ldm":
        raise ValueError(f"--mode {RECONSTRUCTED} passes clips through MM-LDM's autoencoder; "
                         f"{MODEL_NAMES[family]} has none")
    sampling = sampling_for(family, family == "mm_diffusion" and pipe.learnt_clean_condition, sampler=sampler,
                            steps=steps, joint_resample_rounds=joint_resample_rounds,
                            resample_rounds=resample_rounds, resample_share=resample_share,
                            gradient_guidance=gradient_guidance, guidance_form=guidance_form,
                            clean_condition=clean_condition, decoder_steps=decoder_steps, guidance=guidance,
                            reconstruction=reconstruction)
    scenes = scenes or trained_scenes(pipe)
    fmt = pipe.clip_format  # the ground truth and the scene judge in the model's own clip
    judge, judge_accuracy = train_scene_judge(fmt, seed + 3_000_017, judge_clips)
    truth = ground_truth_clips(ground_truth, seed + 1_000_003, fmt, scenes)  # unseen toy seeds
    results = {"ground truth": evaluate(truth, fmt, tolerance, permutations, seed)}
    scene_recognition = {"real": float(np.mean([a == b for a, b in zip(judge(truth.frames), truth.scenes)]))}
    for mode in modes:
        clips = generated_clips(pipe, mode, fmt, scenes, samples, seed, batch, judge, sampling.arguments[mode])
        results[f"generated ({mode})"] = evaluate(clips, fmt, tolerance, permutations, seed,
                                                  keep_measurements=True)
        if mode != "v2a":  # the frames are generated
            scene_recognition[mode] = float(np.mean([s in scenes for s in judge(clips.frames)]))
    settings = dict(weights=weights, variant=None if Path(weights).exists() else variant, model=sampling.model,
                    modes=list(modes), samples=samples, ground_truth=ground_truth, seed=seed, **sampling.settings,
                    tolerance=tolerance, scenes=list(scenes), permutations=permutations, judge_clips=judge_clips,
                    clip_format=dataclasses.asdict(fmt))
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "seconds": round(time.time() - started, 1), "settings": settings,
              "scene_judge": {"held_out_accuracy": judge_accuracy, "recognised_as_a_training_scene": scene_recognition},
              "results": results}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    if verbose:
        print(table(results))
        print(f"\nscene judge: {judge_accuracy:.2f} on held-out real clips of every scene; clips recognised as one of "
              f"{', '.join(scenes)}: " + ", ".join(f"{k} {v:.2f}" for k, v in scene_recognition.items()))
        if "video_detector" in results["ground truth"]:
            print()
            print(detector_table(results["ground truth"], tolerance))
    return report


def add_arguments(parser) -> None:
    """Options of `python -m pipelines.metrics sounding_video` (`--out` and `--seed` are common). The sampling options
    default to None: the model's own default (`sampling_for`)."""
    from pipelines.mm_ldm.entries import STUDIO_DECODER_STEPS, STUDIO_GUIDANCE, STUDIO_RECONSTRUCTION, STUDIO_STEPS

    parser.add_argument("--samples", type=int, default=64, help="generated samples per mode")
    parser.add_argument("--ground-truth", type=int, default=200, help="ground-truth toy clips")
    parser.add_argument("--weights", default="mm_diffusion_toyworld", help="the Sounding Video model: a registry "
                        "name (mm_diffusion_toyworld, mm_ldm_toyworld, ...) or a saved MM-Diffusion or MM-LDM folder")
    parser.add_argument("--variant", default="studio", choices=("auto", "paper", "studio"),
                        help="the registry entry's weights (ignored for a folder)")
    parser.add_argument("--steps", type=int, default=None, help="MM-Diffusion: sampler steps (default 100, the tab's "
                        f"for the studio model); MM-LDM: the DiT's DDIM steps (default {STUDIO_STEPS})")
    parser.add_argument("--sampler", default=None, choices=("dpm_solver", "ddim", "ddpm"),
                        help="MM-Diffusion only (default ddpm: the Sounding Video tab's for the studio model)")
    parser.add_argument("--gradient-guidance", type=float, default=None, help="MM-Diffusion a2v only: λ of the "
                        "gradient guidance, Eq. 12 (default 0: replacement; the released scripts' λ = 3 acts as "
                        "3·2^20)")
    parser.add_argument("--guidance-form", default=None, choices=("paper", "code"), help="MM-Diffusion a2v only: "
                        "the factor of Eq. 12, the paper's √(1 − ᾱ) (default) or the released code's √ᾱ")
    parser.add_argument("--joint-resample-rounds", type=int, default=None, help="joint samples: times each "
                        "resampled step is taken (a corrector; default: the tab's for the studio model; 1 = the "
                        "paper's sampler)")
    parser.add_argument("--resample-rounds", type=int, default=None, help="MM-Diffusion a2v, MM-LDM a2v and v2a: "
                        "times each resampled step is taken (RePaint; default: the tab's for the studio model; 1 = "
                        "the paper's sampler)")
    parser.add_argument("--resample-share", type=float, default=None, help="share of the steps, from the noisiest, "
                        "that are resampled (default 0.6)")
    parser.add_argument("--clean-condition", default=None, action=argparse.BooleanOptionalAction,
                        help="MM-Diffusion a2v and v2a: give the given stream clean at step 0, for weights trained "
                             "with --clean-condition (their default), or noised as the paper (--no-clean-condition)")
    parser.add_argument("--decoder-steps", type=int, default=None, help="MM-LDM only: DDIM steps of the shared "
                        f"decoder (default {STUDIO_DECODER_STEPS})")
    parser.add_argument("--guidance", type=float, default=None, help="MM-LDM only: φ of the cross-modal guidance of "
                        f"a2v and v2a (default {STUDIO_GUIDANCE:g})")
    parser.add_argument("--reconstruction", type=float, default=None, help="MM-LDM only: λ of the reconstruction "
                        f"guidance of a2v and v2a (default a2v {STUDIO_RECONSTRUCTION['a2v']:g}, v2a "
                        f"{STUDIO_RECONSTRUCTION['v2a']:g}; 0 = the paper's sampler)")
    parser.add_argument("--tolerance", type=int, default=1, help="frames an onset may be off its contact")
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS, help="random re-pairings per score")
    parser.add_argument("--judge-clips", type=int, default=40, help="real clips per scene the scene judge learns "
                        "from (and is checked on)")
    parser.add_argument("--batch", type=int, default=16, help="samples generated at once")
    parser.add_argument("--mode", default="joint", choices=(*MODES, "all", RECONSTRUCTED),
                        help="joint samples, zero-shot video for given audio (a2v) or audio for given video (v2a), "
                             "or all three; MM-LDM: also the held-out clips through its autoencoder alone "
                             "(reconstructed: the ceiling of what its sampling can give back)")
    parser.add_argument("--scenes", default=None, help="toy scenes of the ground-truth clips, comma-separated "
                        "(default: those the model was trained on)")


def main(args) -> dict:
    """Run the metric from parsed arguments; a bad setting (such as another model's option) ends it with `error: …`
    and exit status 2."""
    try:
        return run(args.out, samples=args.samples, ground_truth=args.ground_truth, seed=args.seed,
                   sampler=args.sampler, steps=args.steps, joint_resample_rounds=args.joint_resample_rounds,
                   resample_rounds=args.resample_rounds, resample_share=args.resample_share,
                   gradient_guidance=args.gradient_guidance,
                   guidance_form=args.guidance_form, clean_condition=args.clean_condition,
                   decoder_steps=args.decoder_steps, guidance=args.guidance,
                   reconstruction=args.reconstruction,
                   tolerance=args.tolerance, weights=args.weights, variant=args.variant, batch=args.batch,
                   modes=MODES if args.mode == "all" else (args.mode,), permutations=args.permutations,
                   judge_clips=args.judge_clips, scenes=tuple(args.scenes.split(",")) if args.scenes else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
