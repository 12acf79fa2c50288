"""Sounding videos with ground truth: 16 frames at 10 fps (64 × 64) and 1.6 s of 16 kHz audio (MM-Diffusion's clip).

Scenes (`SCENES`):

- `bounce`: one to three balls of known materials fall and bounce on the floor. Every contact happens exactly at a
  frame time t = frame / 10 s, and the audio has a knock starting on sample frame · 1600: the material's plate
  modes (`material_preset`, scaled by the ball's size, T60s capped at 0.3 s) synthesised by the impact
  pipeline's `synthesize`, louder for faster contacts.
- `collide`: two blocks slide along the floor, meet exactly at a frame time with a knock of both materials, and
  rebound.
- `spin`: a spinning top slows down; its hum (a harmonic tone, pitch proportional to the spin rate) glides down
  with it. Ground truth: the hum's fundamental at each frame.
- `rain`: streaks fall and land at random times (not on frames); each landing is a short tick at its time.
- `wind`: grass blades sway with a gust envelope; the audio is low-passed noise following the same envelope.
- `lamp`: a large lamp hangs on a cord in a dark room and hums while it is lit; it flickers off for a frame or two
  several times a clip, and the hum stops with it. Two couplings with a known answer: the higher the lamp hangs,
  the higher its hum (`lamp_pitch`, one octave per `LAMP_OCTAVES`-th of the height range), and the hum sounds exactly
  on the lit frames (`lamp_lit`). Built to be learnable on a CPU: the sound carries the pitch on two thirds of the
  samples, the lamp stays visible (dim) when off, and it covers about a tenth of the frame.

Each sample's ground truth: the scene, its events (contacts with frame, time, objects and materials; rain ticks
with time) and, for continuous sounds, per-frame curves (`hum_hz`, `wind_envelope`). Audio is scaled down only
if it would pass 0.95 full scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.audio import SPECS
from pipelines.impact_sound import MATERIALS, Plate, material_preset, synthesize
from pipelines.toyworld.common import (
    COLOURS, MATERIAL_COLOURS, add_at, backdrop, box, disk, item_rngs, paint, pick_one, pixel_grid, segment,
)

SPEC = SPECS["mm_diffusion"]
FPS = 10.0
NUM_FRAMES = round(SPEC.clip_seconds * FPS)  # 16
FRAME_SIZE = 64
SAMPLES_PER_FRAME = round(SPEC.sample_rate / FPS)  # 1600
SCENES = ("bounce", "collide", "spin", "rain", "wind", "lamp")
FLOOR = 0.85  # floor's top edge, fraction of the frame height from the top
GRAVITY = 9.8  # frame heights per second squared
KNOCK_MAX_T60 = 0.3  # seconds: contacts read as knocks, not as ringing bells
MAX_PEAK = 0.95


@dataclass
class SoundingVideoBatch:
    """N sounding videos. frames: [N, T, H, W, 3] float32 in [0, 1]; audio: [N, S] float32 at `sample_rate`.

    events[i]: dicts {"kind": "contact" | "tick", "time_s", "frame" (contacts only), "objects", "materials"}.
    curves[i]: per-frame ground-truth curves of continuous sounds ({"hum_hz": [...]} or {"wind_envelope": [...]}).
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    scenes: list[str]
    events: list[list[dict]]
    curves: list[dict]
    objects: list[list[dict]]
    captions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scenes)

    def contact_frames(self, index: int) -> np.ndarray:
        """Sorted unique frames at which sample `index` has a contact (bounce or collision)."""
        return np.unique([e["frame"] for e in self.events[index] if e["kind"] == "contact"]).astype(np.int64)

    def record(self, index: int) -> dict:
        """JSON-ready ground truth of one video."""
        return {"scene": self.scenes[index], "caption": self.captions[index], "fps": self.fps,
                "num_frames": int(self.frames.shape[1]), "sample_rate": self.sample_rate,
                "objects": self.objects[index], "events": self.events[index], "curves": self.curves[index]}


@dataclass
class _Clip:
    frames: np.ndarray
    audio: np.ndarray
    events: list[dict]
    curves: dict
    objects: list[dict]
    caption: str


def sample_videos(n: int, seed: int, *, scenes: tuple[str, ...] = SCENES, frame_size: int = FRAME_SIZE,
                  materials: tuple[str, ...] = tuple(MATERIALS)) -> SoundingVideoBatch:
    """N seeded sounding videos of the given scene kinds (sample i depends only on `seed` and i)."""
    if not 16 <= frame_size <= 256:
        raise ValueError(f"`frame_size` must be between 16 and 256 pixels, got {frame_size}")
    rngs = item_rngs(seed, n)
    kinds = [pick_one(rng, tuple(scenes), SCENES, "scene") for rng in rngs]
    clips = [_RENDERERS[kind](rng, frame_size, tuple(materials)) for kind, rng in zip(kinds, rngs)]
    frames = np.stack([c.frames for c in clips]) if n else np.zeros((0, NUM_FRAMES, frame_size, frame_size, 3),
                                                                    np.float32)
    audio = np.stack([_limit(c.audio) for c in clips]) if n else np.zeros((0, SPEC.clip_samples), np.float32)
    return SoundingVideoBatch(frames=np.clip(frames, 0.0, 1.0), audio=audio, sample_rate=SPEC.sample_rate, fps=FPS,
                              scenes=kinds, events=[c.events for c in clips], curves=[c.curves for c in clips],
                              objects=[c.objects for c in clips], captions=[c.caption for c in clips])


def _limit(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio)))
    return (audio * (MAX_PEAK / peak) if peak > MAX_PEAK else audio).astype(np.float32)


def _frame_times() -> np.ndarray:
    return np.arange(NUM_FRAMES) / FPS


def _new_track() -> np.ndarray:
    return np.zeros(SPEC.clip_samples, dtype=np.float64)


# Objects and their knocks -----------------------------------------------------------------------------------------


def _object(rng: np.random.Generator, materials: tuple[str, ...], shape: str) -> dict:
    material = pick_one(rng, materials, tuple(MATERIALS), "material")
    colour = MATERIAL_COLOURS[material][int(rng.integers(len(MATERIAL_COLOURS[material])))]
    return {"shape": shape, "material": material, "colour": colour, "size": float(math.exp(rng.uniform(-0.5, 0.5)))}


def knock(material: str, size: float, strike: tuple[float, float] = (0.37, 0.29)) -> np.ndarray:
    """A knock at 16 kHz, peak 1: the material's plate modes scaled by `size`, T60s capped at KNOCK_MAX_T60."""
    reference = Plate()
    plate = Plate(reference.width_m * size, reference.height_m * size, reference.thickness_m * size, *strike)
    modes = material_preset(material, plate=plate, sample_rate=SPEC.sample_rate, max_hz=7600.0)
    modes = modes.replace(decays=np.minimum(modes.decays, KNOCK_MAX_T60))
    sound = synthesize(modes, duration=KNOCK_MAX_T60 * 1.2, ceiling=float("inf")).astype(np.float64)
    return sound / float(np.max(np.abs(sound)))


def _describe(obj: dict) -> str:
    return f"{obj['colour']} {obj['material']} {obj['shape']}"


# bounce -----------------------------------------------------------------------------------------------------------


def bounce_contacts(rng: np.random.Generator) -> list[int]:
    """Contact frames of one ball: a first landing, then arcs of shrinking length (in frames), plus one landing
    after the clip (so the heights can be drawn to the end)."""
    contacts = [int(rng.integers(1, 7))]
    gap = int(rng.integers(4, 8))
    while contacts[-1] < NUM_FRAMES:
        contacts.append(contacts[-1] + gap)
        gap = max(3, gap - int(rng.integers(0, 2)))
    return contacts


def bounce_heights(contacts: list[int], t: np.ndarray) -> np.ndarray:
    """Height of the ball's bottom above the floor (frame heights) at times t: dropped from rest at t = 0 onto the
    first contact, then parabolic arcs between consecutive contacts."""
    times = np.asarray(contacts) / FPS
    heights = 0.5 * GRAVITY * np.maximum(times[0] ** 2 - t**2, 0.0)
    for start, end in zip(times[:-1], times[1:]):
        inside = (t >= start) & (t < end)
        heights = np.where(inside, 0.5 * GRAVITY * (t - start) * (end - t), heights)
    return heights


def _contact_speed(contacts: list[int], index: int) -> float:
    """Speed at contact `index` (frame heights per second): the fall or the arc that ends there."""
    duration = contacts[0] / FPS if index == 0 else (contacts[index] - contacts[index - 1]) / FPS
    return GRAVITY * duration if index == 0 else GRAVITY * duration / 2.0


def _bounce(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    count = int(rng.integers(1, 4))
    frames = backdrop(NUM_FRAMES, size, FLOOR * size, rng)
    track, events, objects = _new_track(), [], []
    slots = rng.permutation(count) if count > 1 else np.zeros(1, dtype=np.int64)
    for index in range(count):
        obj = _object(rng, materials, "ball")
        contacts = bounce_contacts(rng)
        obj.update(x=float((slots[index] + rng.uniform(0.3, 0.7)) / count), contact_frames=contacts)
        radius = size * 0.07 * obj["size"]
        bottom = FLOOR * size - size * bounce_heights(contacts, _frame_times())
        paint(frames, disk(size, size, obj["x"] * size, bottom - radius, radius), COLOURS[obj["colour"]])
        sound = knock(obj["material"], obj["size"])
        for number, frame in enumerate(contacts):
            if frame >= NUM_FRAMES:
                break
            speed = _contact_speed(contacts, number)
            add_at(track, sound, frame * SAMPLES_PER_FRAME, gain=min(speed / 6.0, 1.0) * 0.8)
            events.append({"kind": "contact", "frame": frame, "time_s": frame / FPS, "objects": [index],
                           "materials": [obj["material"]], "speed": speed})
        objects.append(obj)
    events.sort(key=lambda e: (e["time_s"], e["objects"]))
    if count == 1:
        caption = f"a {_describe(objects[0])} bounces on the floor"
    else:
        caption = f"{('two', 'three')[count - 2]} balls bounce on the floor: " + ", ".join(
            f"a {_describe(o)}" for o in objects)
    return _Clip(frames, track, events, {}, objects, caption)


# collide ----------------------------------------------------------------------------------------------------------


def _collide(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    frames = backdrop(NUM_FRAMES, size, FLOOR * size, rng)
    contact = int(rng.integers(4, 12))
    meet_x = float(rng.uniform(0.35, 0.65))
    restitution = float(rng.uniform(0.3, 0.7))
    t = _frame_times() - contact / FPS  # time since the collision
    track, objects = _new_track(), []
    for side in (-1.0, 1.0):
        obj = _object(rng, materials, "block")
        half = 0.07 * obj["size"]
        speed = float(rng.uniform(0.3, 0.6))  # frame widths per second, towards the meeting point
        travel = np.where(t < 0.0, speed * -t, -restitution * speed * t)  # distance from contact, signed outwards
        centre = meet_x + side * (half + travel)
        paint(frames, box(size, size, centre * size, (FLOOR - half) * size, half * size, half * size),
              COLOURS[obj["colour"]])
        obj.update(speed=speed)
        objects.append(obj)
        add_at(track, knock(obj["material"], obj["size"]), contact * SAMPLES_PER_FRAME, gain=0.45)
    events = [{"kind": "contact", "frame": contact, "time_s": contact / FPS, "objects": [0, 1],
               "materials": [o["material"] for o in objects]}]
    caption = f"a {_describe(objects[0])} and a {_describe(objects[1])} slide together and collide"
    return _Clip(frames, track, events, {}, objects, caption)


# spin -------------------------------------------------------------------------------------------------------------


def hum_frequency(turns_per_frame: np.ndarray) -> np.ndarray:
    """The top's hum fundamental (Hz) for a spin rate in turns per video frame."""
    return 120.0 + 1800.0 * np.asarray(turns_per_frame)


def _spin(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    frames = backdrop(NUM_FRAMES, size, FLOOR * size, rng)
    obj = _object(rng, materials, "spinning top")
    start_rate = rng.uniform(0.06, 0.12)  # turns per frame
    end_rate = start_rate * rng.uniform(0.4, 0.8)
    rates = np.linspace(start_rate, end_rate, NUM_FRAMES)
    angles = 2.0 * np.pi * (rng.uniform() + np.concatenate([[0.0], np.cumsum(rates[:-1])]))  # [T]
    radius, cx = 0.2 * size, rng.uniform(0.35, 0.65) * size
    cy = FLOOR * size - 0.12 * size - radius
    y, x = pixel_grid(size, size)
    body = disk(size, size, cx, cy, radius)[0]  # [H, W]
    sector = np.floor((np.arctan2(y - cy, x - cx) - angles[:, None, None]) / (np.pi / 3.0)) % 2  # 6 sectors
    paint(frames, segment(size, size, cx, cy, cx, FLOOR * size - 1, 0.05 * size).repeat(NUM_FRAMES, 0),
          (0.1, 0.1, 0.1))
    paint(frames, body[None] * np.ones((NUM_FRAMES, 1, 1), np.float32), COLOURS[obj["colour"]])
    paint(frames, body[None] * sector.astype(np.float32) * 0.7, (0.1, 0.1, 0.1))
    hum_hz = hum_frequency(rates)
    sample_t = np.arange(SPEC.clip_samples) / SPEC.sample_rate
    instantaneous = np.interp(sample_t, _frame_times(), hum_hz)
    phase = 2.0 * np.pi * np.cumsum(instantaneous) / SPEC.sample_rate
    track = sum(0.3 / k * np.sin(k * phase) for k in (1, 2, 3))
    track *= np.minimum(sample_t / 0.02, 1.0)  # no click at the start
    obj.update(turns_per_frame=rates.tolist())
    return _Clip(frames, track, [], {"hum_hz": hum_hz.tolist()}, [obj],
                 f"a {obj['colour']} spinning top hums and slows down")


# rain -------------------------------------------------------------------------------------------------------------


def tick(rng: np.random.Generator) -> np.ndarray:
    """A rain tick: 6 ms of high-passed noise decaying 60 dB in 10 ms."""
    length = round(0.006 * SPEC.sample_rate)
    noise = np.diff(rng.standard_normal(length + 1))
    return noise * 10.0 ** (-(60.0 / 0.010) * np.arange(length) / SPEC.sample_rate / 20.0) / 2.0


def _rain(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    frames = backdrop(NUM_FRAMES, size, FLOOR * size, rng)
    count = int(rng.integers(8, 41))
    land = np.sort(rng.uniform(0.05, SPEC.clip_seconds - 0.05, count))
    xs, speeds = rng.uniform(0.05, 0.95, count), rng.uniform(2.5, 4.0, count)
    t = _frame_times()[:, None]  # [T, 1]
    bottom = FLOOR - speeds * (land - t)  # [T, D], frame heights
    top = bottom - 0.5 * speeds / FPS  # motion blur: half a frame's travel
    visible = (bottom > 0.0) & (t[:, 0, None] < land)
    frame_index, drop = np.nonzero(visible)
    streaks = segment(size, size, xs[drop] * size, top[frame_index, drop] * size, xs[drop] * size,
                      bottom[frame_index, drop] * size, max(1.0, size / 64))
    mask = np.zeros((NUM_FRAMES, size, size), np.float32)
    np.maximum.at(mask, frame_index, streaks)
    paint(frames, mask, (0.75, 0.8, 0.95))
    track = _new_track()
    for time_s in land:
        add_at(track, tick(rng), round(time_s * SPEC.sample_rate), gain=rng.uniform(0.3, 0.8))
    events = [{"kind": "tick", "time_s": float(time_s), "objects": [], "materials": []} for time_s in land]
    intensity = "light" if count < 16 else "steady" if count < 30 else "heavy"
    return _Clip(frames, track, events, {}, [], f"{intensity} rain falls and ticks on the ground")


# wind -------------------------------------------------------------------------------------------------------------


def gust_envelope(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A smooth gust strength in [0.15, 1] at times t (one or two gaussian gusts on a low base)."""
    envelope = np.full_like(t, 0.15, dtype=np.float64)
    for _ in range(int(rng.integers(1, 3))):
        centre, width = rng.uniform(0.2, 1.4), rng.uniform(0.15, 0.4)
        envelope += rng.uniform(0.5, 0.85) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return np.clip(envelope, 0.15, 1.0)


def _wind(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    frames = backdrop(NUM_FRAMES, size, FLOOR * size, rng)
    sample_t = np.arange(SPEC.clip_samples) / SPEC.sample_rate
    envelope_audio = gust_envelope(rng, sample_t)
    envelope = np.interp(_frame_times(), sample_t, envelope_audio)  # [T]
    count = int(rng.integers(4, 8))
    bases, lengths = rng.uniform(0.08, 0.92, count), rng.uniform(0.3, 0.55, count)
    wobble = rng.uniform(0.0, 2.0 * np.pi, count)
    lean = envelope[:, None] * (0.9 + 0.25 * np.sin(2.0 * np.pi * 1.5 * _frame_times()[:, None] + wobble))  # [T, B]
    tip_x = bases + lengths * np.sin(lean)
    tip_y = FLOOR - lengths * np.cos(lean)
    for blade in range(count):
        paint(frames, segment(size, size, np.full(NUM_FRAMES, bases[blade] * size), np.full(NUM_FRAMES, FLOOR * size),
                              tip_x[:, blade] * size, tip_y[:, blade] * size, max(1.5, 0.04 * size)),
              (0.25, 0.6, 0.25))
    spectrum = np.fft.rfft(rng.standard_normal(SPEC.clip_samples))
    frequencies = np.fft.rfftfreq(SPEC.clip_samples, 1.0 / SPEC.sample_rate)
    noise = np.fft.irfft(spectrum / (1.0 + (frequencies / 500.0) ** 2), n=SPEC.clip_samples)  # 2nd-order roll-off
    track = 0.6 * envelope_audio * noise / float(np.max(np.abs(noise)))
    return _Clip(frames, track, [], {"wind_envelope": envelope.tolist()}, [],
                 f"wind gusts and sways {count} blades of grass")


# lamp -------------------------------------------------------------------------------------------------------------

LAMP_HEIGHTS = (0.2, 0.75)  # the lamp's centre, fraction of the frame height from the top: highest, lowest
LAMP_HZ = (800.0, 200.0)  # its hum's fundamental at those heights (log-linear in between)
LAMP_SIDE = 0.3  # the lamp's side, fraction of the frame
LAMP_LIT, LAMP_DIM = (1.0, 0.85, 0.35), (0.35, 0.3, 0.2)
LAMP_RAMP_S = 0.008  # the hum fades in and out over this at a flicker
LAMP_ROOM = (0.06, 0.06, 0.09)


def lamp_frequency(height: np.ndarray | float) -> np.ndarray:
    """The hum's fundamental (Hz) of a lamp whose centre hangs at `height` (fraction of the frame from the top)."""
    position = (np.asarray(height, dtype=np.float64) - LAMP_HEIGHTS[0]) / (LAMP_HEIGHTS[1] - LAMP_HEIGHTS[0])
    return LAMP_HZ[0] * (LAMP_HZ[1] / LAMP_HZ[0]) ** position


def flicker(rng: np.random.Generator) -> np.ndarray:
    """Lit (True) or off per frame: lit at frame 0, off for one or two frames at a time, at least twice a clip."""
    while True:
        lit, state = np.ones(NUM_FRAMES, bool), True
        for frame in range(1, NUM_FRAMES):
            state = rng.uniform() >= (0.25 if state else 0.4)
            lit[frame] = state
        runs = np.diff(np.flatnonzero(np.diff(np.r_[True, lit, True].astype(int)) != 0))[::2]  # off-run lengths
        if (~lit).sum() >= 2 and len(runs) >= 2 and runs.max() <= 2:
            return lit


def _lamp(rng: np.random.Generator, size: int, materials: tuple[str, ...]) -> _Clip:
    height = float(rng.uniform(*LAMP_HEIGHTS))
    x = float(rng.uniform(0.25, 0.75))
    lit = flicker(rng)
    frames = np.broadcast_to(np.asarray(LAMP_ROOM, np.float32), (NUM_FRAMES, size, size, 3)).copy()
    half = LAMP_SIDE * size / 2.0
    paint(frames, segment(size, size, x * size, 0.0, x * size, height * size - half, max(1.0, size / 48))
          .repeat(NUM_FRAMES, 0), (0.4, 0.4, 0.42))
    shade = box(size, size, x * size, height * size, half, half).repeat(NUM_FRAMES, 0)
    paint(frames, shade, np.where(lit[:, None], LAMP_LIT, LAMP_DIM))
    hz = float(lamp_frequency(height))
    sample_t = np.arange(SPEC.clip_samples) / SPEC.sample_rate
    phase = 2.0 * np.pi * hz * sample_t + rng.uniform(0.0, 2.0 * np.pi)
    tone = 0.45 * (np.sin(phase) + 0.35 * np.sin(2.0 * phase) + 0.12 * np.sin(3.0 * phase))
    gate = np.repeat(lit.astype(np.float64), SAMPLES_PER_FRAME)
    ramp = np.ones(round(LAMP_RAMP_S * SPEC.sample_rate)) / round(LAMP_RAMP_S * SPEC.sample_rate)
    track = tone * np.convolve(gate, ramp, mode="same")
    obj = {"shape": "lamp", "x": x, "height": height, "hum_hz": hz}
    where = "high" if height < 0.38 else "low" if height > 0.57 else "halfway up"
    pitch = {"high": "a high", "low": "a low", "halfway up": "a middle"}[where]
    events = [{"kind": "flicker", "frame": int(f), "time_s": float(f / FPS), "objects": [0], "materials": [],
               "lit": bool(lit[f])} for f in np.flatnonzero(np.diff(lit.astype(int))) + 1]
    return _Clip(frames, track, events, {"lamp_lit": lit.astype(int).tolist(),
                                         "hum_hz": np.where(lit, hz, 0.0).tolist()}, [obj],
                 f"a lamp hanging {where} hums {pitch} note and flickers")


_RENDERERS = {"bounce": _bounce, "collide": _collide, "spin": _spin, "rain": _rain, "wind": _wind, "lamp": _lamp}
