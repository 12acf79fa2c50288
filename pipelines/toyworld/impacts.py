"""Impact clips with ground truth: an object of known material, size and colour falls and hits the floor.

Each clip holds

- frames [T, H, W, 3] float32 in [0, 1] (default 16 frames of 64 × 64 at 30 fps): the object falls under gravity,
  touches the floor exactly at frame `hit_frame` (t = hit_frame / fps in video time), rebounds once and comes to
  rest (the rebound is high enough that it does not land again inside the clip, so there is exactly one hit);
- audio [S] float32 at the impact rate (`SPECS["impact"]`: 44.1 kHz, 0.25 s), the clip starting at the hit as the
  impact pipeline expects (optionally `audio_onset_s` of silence first): the modal sound, synthesised by the
  impact pipeline's own `synthesize` from `material_preset` modes of a plate of that material scaled by the
  object's size (f ∝ 1 / size), plus a residual rendered by the impact pipeline's own residual model
  (`impact_sound.residual.ResidualParams`: its fixed noise in 100 mel bands, paper Eq. 5–6) with random gains and
  T60s, scaled so its peak is `residual_db` below the modal sound's peak;
- the true `Modes` of the modal part (powers include the level set by the impact velocity: the modal part's peak
  is 0.9 · v / v_max), the residual's `ResidualParams` (gains, T60s), and the scene's parameters.

The object's colour comes from its material's palette (`common.MATERIAL_COLOURS`), so the picture tells the
material, as it does in Greatest Hits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.audio import SPECS
from pipelines.impact_sound import MATERIALS, Modes, Plate, material_preset, synthesize
from pipelines.toyworld.common import (
    COLOURS, MATERIAL_COLOURS, backdrop, box, disk, item_rngs, paint, pick_one,
)

IMPACT = SPECS["impact"]
FPS = 30.0  # Greatest Hits' frame rate
NUM_FRAMES = 16
FRAME_SIZE = 64
SHAPES = ("ball", "block")
SIZE_RANGE = (0.5, 2.0)  # scale of the reference plate (20 × 15 × 0.5 cm); log-uniform
RESIDUAL_DB = -24.0
PEAK_AT_MAX_SPEED = 0.9


@dataclass
class ImpactBatch:
    """A batch of N impact clips and their ground truth (arrays stacked on the first axis).

    frames: [N, T, H, W, 3] float32 in [0, 1]. audio, modal_audio, residual_audio: [N, S] float32 at
    `sample_rate` (audio = modal_audio + residual_audio). hit_frame: [N] int (video frame of the contact);
    hit_time_s: [N] (= hit_frame / fps); audio_onset_s: [N] time of the hit inside the audio clip.
    """

    frames: np.ndarray
    audio: np.ndarray
    modal_audio: np.ndarray
    residual_audio: np.ndarray
    sample_rate: int
    fps: float
    hit_frame: np.ndarray
    hit_time_s: np.ndarray
    audio_onset_s: np.ndarray
    modes: list[Modes]
    materials: list[str]
    shapes: list[str]
    sizes: np.ndarray  # plate scale factor, 0.5–2
    size_names: list[str]
    colours: list[str]
    speeds: np.ndarray  # impact speed, frame heights per second
    residuals: list[dict | None] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.materials)

    def record(self, index: int) -> dict:
        """JSON-ready ground truth of one clip (the modes in `Modes.to_dict` form)."""
        return {
            "material": self.materials[index], "shape": self.shapes[index], "size": float(self.sizes[index]),
            "size_name": self.size_names[index], "colour": self.colours[index],
            "colour_rgb": list(COLOURS[self.colours[index]]), "caption": self.captions[index],
            "fps": self.fps, "num_frames": int(self.frames.shape[1]), "hit_frame": int(self.hit_frame[index]),
            "hit_time_s": float(self.hit_time_s[index]), "sample_rate": self.sample_rate,
            "audio_onset_s": float(self.audio_onset_s[index]), "impact_speed": float(self.speeds[index]),
            "modes": self.modes[index].to_dict(), "residual": self.residuals[index],
        }


@dataclass(frozen=True)
class _Scene:
    material: str
    shape: str
    size: float
    colour: str
    hit_frame: int
    fall_s: float  # time the object has been falling when it hits
    speed: float  # impact speed in frame heights per second
    restitution: float
    x: float  # horizontal centre, fraction of the width
    strike: tuple[float, float]


def sample_impacts(
    n: int,
    seed: int,
    *,
    materials: tuple[str, ...] = tuple(MATERIALS),
    shapes: tuple[str, ...] = SHAPES,
    num_frames: int = NUM_FRAMES,
    fps: float = FPS,
    frame_size: int = FRAME_SIZE,
    audio_onset_s: float = 0.0,
    residual_db: float | None = RESIDUAL_DB,
) -> ImpactBatch:
    """N seeded impact clips (sample i depends only on `seed` and i). `residual_db=None`: no residual (faster)."""
    _check_options(num_frames, fps, frame_size, audio_onset_s)
    rngs = item_rngs(seed, n)
    scenes = [_draw_scene(rng, tuple(materials), tuple(shapes), num_frames, fps) for rng in rngs]
    frames = np.stack([_render(scene, rng, num_frames, fps, frame_size) for scene, rng in zip(scenes, rngs)]) \
        if n else np.zeros((0, num_frames, frame_size, frame_size, 3), np.float32)
    sounds = [_sound(scene, rng, audio_onset_s, residual_db) for scene, rng in zip(scenes, rngs)]
    empty = np.zeros((0, IMPACT.clip_samples), np.float32)
    return ImpactBatch(
        frames=frames,
        audio=np.stack([s[0] + s[1] for s in sounds]) if n else empty,
        modal_audio=np.stack([s[0] for s in sounds]) if n else empty,
        residual_audio=np.stack([s[1] for s in sounds]) if n else empty,
        sample_rate=IMPACT.sample_rate, fps=float(fps),
        hit_frame=np.array([s.hit_frame for s in scenes], dtype=np.int64),
        hit_time_s=np.array([s.hit_frame / fps for s in scenes]),
        audio_onset_s=np.full(n, float(audio_onset_s)),
        modes=[s[2] for s in sounds], materials=[s.material for s in scenes], shapes=[s.shape for s in scenes],
        sizes=np.array([s.size for s in scenes]), size_names=[size_name(s.size) for s in scenes],
        colours=[s.colour for s in scenes], speeds=np.array([s.speed for s in scenes]),
        residuals=[s[3] for s in sounds], captions=[caption(s) for s in scenes],
    )


def _check_options(num_frames: int, fps: float, frame_size: int, audio_onset_s: float) -> None:
    if not 4 <= num_frames <= 256:
        raise ValueError(f"`num_frames` must be between 4 and 256, got {num_frames}")
    if not 1.0 <= fps <= 240.0:
        raise ValueError(f"`fps` must be between 1 and 240, got {fps}")
    if not 16 <= frame_size <= 512:
        raise ValueError(f"`frame_size` must be between 16 and 512 pixels, got {frame_size}")
    if not 0.0 <= audio_onset_s < IMPACT.clip_seconds / 2:
        raise ValueError(f"`audio_onset_s` must be in [0, {IMPACT.clip_seconds / 2}) s, got {audio_onset_s}")


def size_name(size: float) -> str:
    return "small" if size < 0.8 else "large" if size > 1.25 else "medium"


def caption(scene: _Scene) -> str:
    return f"a {size_name(scene.size)} {scene.colour} {scene.material} {scene.shape} falls and hits the floor"


def _draw_scene(rng: np.random.Generator, materials: tuple[str, ...], shapes: tuple[str, ...], num_frames: int,
                fps: float) -> _Scene:
    material = pick_one(rng, materials, tuple(MATERIALS), "material")
    shape = pick_one(rng, shapes, SHAPES, "shape")
    size = float(math.exp(rng.uniform(math.log(SIZE_RANGE[0]), math.log(SIZE_RANGE[1]))))
    colour = MATERIAL_COLOURS[material][int(rng.integers(len(MATERIAL_COLOURS[material])))]
    hit_frame = int(rng.integers(num_frames // 4, num_frames - num_frames // 4 + 1))
    fall_s = float(rng.uniform(0.5, 0.7))
    # The rebound must not land again before the clip ends: the second landing comes 2·e·fall_s after the hit.
    after_s = (num_frames - 1 - hit_frame) / fps
    restitution = float(min(max(rng.uniform(0.2, 0.5), 1.05 * after_s / (2.0 * fall_s)), 0.95))
    return _Scene(material, shape, size, colour, hit_frame, fall_s, float(rng.uniform(4.0, 6.0)), restitution,
                  float(rng.uniform(0.3, 0.7)), (float(rng.uniform(0.2, 0.45)), float(rng.uniform(0.2, 0.45))))


def height_above_floor(scene: _Scene, t: np.ndarray, hit_time: float) -> np.ndarray:
    """Height of the object's bottom above the floor (frame heights) at times t: dropped from rest `fall_s`
    before the hit (held still before that), one rebound, then rest."""
    gravity = scene.speed / scene.fall_s
    before = t < hit_time
    falling_for = np.clip(t - (hit_time - scene.fall_s), 0.0, None)
    fall = 0.5 * gravity * (scene.fall_s**2 - falling_for**2)
    since = t - hit_time
    rebound = np.maximum(scene.restitution * scene.speed * since - 0.5 * gravity * since**2, 0.0)
    return np.where(before, fall, rebound)


def _render(scene: _Scene, rng: np.random.Generator, num_frames: int, fps: float, size: int) -> np.ndarray:
    floor_y = 0.8 * size
    frames = backdrop(num_frames, size, floor_y, rng)
    radius = size * 0.08 * scene.size**0.75
    t = np.arange(num_frames) / fps
    bottom = floor_y - size * height_above_floor(scene, t, scene.hit_frame / fps)
    centre_x = np.full(num_frames, scene.x * size)
    rgb = np.array(COLOURS[scene.colour])
    if scene.shape == "ball":
        mask = disk(size, size, centre_x, bottom - radius, radius)
        highlight = disk(size, size, centre_x - 0.35 * radius, bottom - 1.35 * radius, 0.3 * radius)
    else:
        mask = box(size, size, centre_x, bottom - radius, radius * 1.2, radius)
        highlight = box(size, size, centre_x, bottom - 1.8 * radius, radius * 1.1, 0.15 * radius)
    paint(frames, mask, rgb)
    paint(frames, highlight * mask, np.minimum(rgb + 0.25, 1.0))
    return np.clip(frames, 0.0, 1.0)


def true_modes(scene: _Scene) -> Modes:
    """The material's plate modes with every dimension scaled by the object's size (so f ∝ 1 / size)."""
    reference = Plate()
    plate = Plate(reference.width_m * scene.size, reference.height_m * scene.size,
                  reference.thickness_m * scene.size, *scene.strike)
    return material_preset(scene.material, plate=plate, sample_rate=IMPACT.sample_rate)


def _sound(scene: _Scene, rng: np.random.Generator, onset_s: float,
           residual_db: float | None) -> tuple[np.ndarray, np.ndarray, Modes, dict | None]:
    """(modal [S], residual [S], the modal part's exact modes, residual parameters) for one clip."""
    modes = true_modes(scene)
    duration = IMPACT.clip_seconds - onset_s
    raw = synthesize(modes, duration=duration, ceiling=float("inf")).astype(np.float64)
    # Level: peak 0.9 · v / v_max. Synthesis is linear, so the gain goes into the modes' powers exactly.
    gain = PEAK_AT_MAX_SPEED * scene.speed / 6.0 / float(np.max(np.abs(raw)))
    modes = modes.replace(powers=modes.powers + 20.0 * math.log10(gain))
    modal = raw * gain
    if residual_db is None:  # the fast path: modal sound only
        residual, params = np.zeros_like(modal), None
    else:
        residual, params = _residual(rng, len(modal), float(np.max(np.abs(modal))) * 10.0 ** (residual_db / 20.0))
    pad = IMPACT.clip_samples - len(modal)
    return (np.pad(modal, (pad, 0)).astype(np.float32), np.pad(residual, (pad, 0)).astype(np.float32), modes,
            params)


def _residual(rng: np.random.Generator, num_samples: int, peak: float) -> tuple[np.ndarray, dict]:
    """The impact pipeline's residual (fixed noise in 100 mel bands, paper Eq. 5–6) scaled to `peak`, with its
    parameters: gains (already scaled, inside the predictor's range (0, 1)) and T60 decays in seconds."""
    from pipelines.impact_sound.residual import N_BANDS, ResidualParams

    gains, decays = rng.uniform(0.05, 1.0, N_BANDS), rng.uniform(0.01, 0.1, N_BANDS)
    noise = ResidualParams(gains, decays).render(num_samples, IMPACT.sample_rate).astype(np.float64)
    top = float(np.max(np.abs(noise)))
    scale = peak / top if top > 0 else 0.0  # the residual is linear in its gains: scale once, render once
    return noise * scale, ResidualParams(gains * scale, decays).to_dict()
