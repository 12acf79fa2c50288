"""Modal impact sounds (pipelines/impact_sound): the paper's extractor pinned to measured
anchors, the refined estimator's known-answer recovery, synthesis, edits, presets, JSON and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import librosa
import numpy as np
import pytest
import soundfile

from pipelines.audio import SPECS, stft_magnitude
from pipelines.impact_sound import edits
from pipelines.impact_sound.materials import MATERIALS, Plate, material_preset, plate_modes
from pipelines.impact_sound.modal import (
    Modes,
    amplitude_to_db_ref_max,
    estimate_modes,
    modal_sum,
    official_code_resynthesis,
    synthesize,
)
from tests.factories import ROOT

IMPACT = SPECS["impact"]
SR = IMPACT.sample_rate
BIN_HZ = SR / IMPACT.n_fft  # 21.533 Hz
MAX_FRAME_S = 44 * IMPACT.hop_length / SR  # 0.2554 s, the extractor's decay cap

# Five sparse modes (the notes' five-mode test frequencies), with known powers and T60s.
FIVE = Modes(frequencies=[440.0, 1187.0, 2650.0, 5210.0, 8333.0], powers=[0.0, -4.4, -8.0, -12.0, -20.0],
             decays=[0.15, 0.08, 0.05, 0.03, 0.02])


def damped_sine(f0: float, t60: float, n: int = IMPACT.clip_samples) -> np.ndarray:
    t = np.arange(n) / SR
    return np.sin(2 * np.pi * f0 * t) * 10 ** (-(60 / t60) * t / 20)


def notes_five_mode_clip() -> np.ndarray:
    """The notes' five-mode clip: amplitudes 1/.6/.4/.25/.1, T60 .15/.08/.05/.03/.02 s, sin with θ = 0."""
    amplitudes, t60s = [1, 0.6, 0.4, 0.25, 0.1], [0.15, 0.08, 0.05, 0.03, 0.02]
    return sum(a * damped_sine(f, d) for f, a, d in zip(FIVE.frequencies, amplitudes, t60s))


# --- the published extractor (`paper`) ------------------------------------------------------------------------


def test_stft_and_db_match_librosa_as_the_released_code_calls_it():
    x = np.random.default_rng(0).standard_normal(IMPACT.clip_samples) * np.exp(-np.arange(IMPACT.clip_samples) / 900)
    ours = stft_magnitude(x, IMPACT)  # the one impact STFT (pipelines/audio.py), here on float64 numpy
    reference = np.abs(librosa.stft(x, n_fft=IMPACT.n_fft, hop_length=IMPACT.hop_length))
    assert ours.shape == (1025, 44)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(amplitude_to_db_ref_max(ours), librosa.amplitude_to_db(reference, ref=np.max),
                               atol=1e-9)


@pytest.mark.parametrize("f0, t60, f_est, p_db, d_ms", [
    (1000.0, 0.05, 1000.09, -1.06, 81.27),
    (1234.5, 0.10, 1236.11, -1.95, 150.93),
    (3000.0, 0.20, 3000.27, -3.26, 255.42),  # capped: never reaches −80 dB
    (523.0, 1.00, 524.05, -4.96, 255.42),  # capped
])
def test_paper_reproduces_the_notes_single_mode_anchors(f0, t60, f_est, p_db, d_ms):
    modes = estimate_modes(damped_sine(f0, t60), SR, "paper")
    k = round(f0 / BIN_HZ)
    assert modes.frequencies[k] == pytest.approx(f_est, abs=0.005)  # linspace label, not the true 4 Hz grid
    assert modes.powers[k] == pytest.approx(p_db, abs=0.005)
    assert modes.decays[k] * 1000 == pytest.approx(d_ms, abs=0.005)


def test_paper_gives_one_mode_per_bin_on_the_bin_grid():
    modes = estimate_modes(notes_five_mode_clip(), SR, "paper")
    centers = np.arange(1025) * BIN_HZ
    assert len(modes) == 1025 and modes.phases is None
    assert np.all(np.abs(modes.frequencies - centers) <= 10.76 + 1e-9)
    assert modes.frequencies[0] in (0.0, 22050 / 5512, 2 * 22050 / 5512)  # the DC bin: linspace labels
    assert modes.powers.max() <= 0.0 and modes.powers.min() >= -80.0
    frames = modes.decays * SR / IMPACT.hop_length  # decays are whole frames (or the 0.5-frame rule)
    np.testing.assert_allclose(frames, np.round(frames * 2) / 2, atol=1e-9)
    # The notes' five-mode anchors: p at the mode bins, f within 4 Hz, the resynthesis peak at sample 0.
    bins = np.round(FIVE.frequencies / BIN_HZ).astype(int)
    np.testing.assert_allclose(modes.powers[bins], [-2.5, -8.8, -14.5, -21.6, -32.5], atol=0.05)
    assert np.all(np.abs(modes.frequencies[bins] - FIVE.frequencies) <= 4.0)
    assert np.argmax(np.abs(official_code_resynthesis(modes))) == 0


def test_paper_decays_are_biased_and_saturate_in_noise():
    clean = estimate_modes(damped_sine(1000.0, 0.05), SR, "paper")
    assert clean.decays[round(1000 / BIN_HZ)] == pytest.approx(14 * 256 / SR)  # 81 ms for a true T60 of 50 ms
    clip = notes_five_mode_clip()
    clip /= np.abs(clip).max()
    noisy = clip + 10 ** (-20 / 20) * np.random.default_rng(0).standard_normal(len(clip))
    modes = estimate_modes(noisy, SR, "paper")
    saturated = np.isclose(modes.decays, MAX_FRAME_S)
    bins = np.round(FIVE.frequencies / BIN_HZ).astype(int)
    assert saturated[bins].all()  # every true mode's decay information is gone
    assert saturated.mean() > 0.99


# --- the refined estimator ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_five() -> np.ndarray:
    clip = modal_sum(FIVE, IMPACT.clip_samples, SR)
    return clip + 1e-3 * np.random.default_rng(1).standard_normal(len(clip))  # noise 60 dB below the loudest mode


def test_refined_recovers_known_sparse_modes(noisy_five):
    modes = estimate_modes(noisy_five, SR, "refined")
    assert len(modes) == 5
    np.testing.assert_allclose(modes.frequencies, FIVE.frequencies, atol=1.0)
    np.testing.assert_allclose(modes.powers, FIVE.powers, atol=1.0)
    np.testing.assert_allclose(modes.decays, FIVE.decays, rtol=0.10)
    np.testing.assert_allclose(np.angle(np.exp(1j * modes.phases)), 0.0, atol=0.1)


def test_refined_decays_survive_noise_that_saturates_the_paper():
    clip = modal_sum(FIVE, IMPACT.clip_samples, SR)
    noisy = clip + 1e-2 * np.random.default_rng(2).standard_normal(len(clip))  # −40 dB
    modes = estimate_modes(noisy, SR, "refined")
    assert len(modes) == 5
    np.testing.assert_allclose(modes.decays[:4], FIVE.decays[:4], rtol=0.05)
    # The weakest, fastest mode (−20 dB, T60 20 ms) starts only ~36 dB above this noise: a looser bound.
    np.testing.assert_allclose(modes.decays[4], FIVE.decays[4], rtol=0.25)
    paper = estimate_modes(noisy, SR, "paper")
    assert np.allclose(paper.decays[np.round(FIVE.frequencies / BIN_HZ).astype(int)], MAX_FRAME_S)


def test_refined_recovers_phases_and_long_decays_at_another_rate():
    truth = Modes([523.0, 1200.0, 3000.0], [-6.0, -10.0, -12.0], [1.0, 2.0, 0.1], phases=[1.0, -2.0, np.pi / 2],
                  sample_rate=16000)
    modes = estimate_modes(modal_sum(truth, 4000, 16000), 16000, "refined")
    assert modes.sample_rate == 16000 and len(modes) == 3
    np.testing.assert_allclose(modes.decays, truth.decays, rtol=0.05)  # T60s far longer than the 0.25 s clip
    np.testing.assert_allclose(np.angle(np.exp(1j * (modes.phases - truth.phases))), 0.0, atol=0.02)


def test_estimate_rejects_bad_input():
    with pytest.raises(ValueError, match="silent"):
        estimate_modes(np.zeros(1000), SR, "refined")
    with pytest.raises(ValueError, match="method"):
        estimate_modes(np.ones(10), SR, "magic")
    with pytest.raises(ValueError, match="mono"):
        estimate_modes(np.ones((2, 10)), SR)


# --- synthesis ------------------------------------------------------------------------------------------------


def test_synthesis_is_eq4_after_the_fade_in():
    modes = Modes([440.0], [-6.0], [0.2], phases=[0.3])
    out = synthesize(modes, duration=0.1)
    t = np.arange(len(out)) / SR
    expected = 10 ** ((-6.0 - 300.0 * t) / 20) * np.sin(2 * np.pi * 440 * t + 0.3)  # λ = 60 / 0.2 = 300 dB/s
    assert out.dtype == np.float32 and len(out) == round(0.1 * SR)
    np.testing.assert_allclose(out[11:], expected[11:], atol=1e-6)


def onset_splatter_db(samples: np.ndarray) -> float:
    """Share of the onset's energy above 12 kHz (dB), from silence into the first 64 samples."""
    segment = np.concatenate([np.zeros(64), samples[:64]]) * np.hanning(128)
    power = np.abs(np.fft.rfft(segment)) ** 2
    return float(10 * np.log10(power[np.fft.rfftfreq(128, 1 / SR) > 12000].sum() / power.sum()))


def test_synthesis_has_no_onset_click():
    rng = np.random.default_rng(3)  # 100 modes below 8 kHz with random phases: an abrupt start without the fade
    modes = Modes(rng.uniform(100, 8000, 100), rng.uniform(-40, -20, 100), rng.uniform(0.05, 0.5, 100),
                  phases=rng.uniform(-np.pi, np.pi, 100))
    raw = synthesize(modes, fade_in_s=0.0)
    out = synthesize(modes)
    assert abs(raw[0]) > 0.1 * np.abs(raw).max()  # without the fade the sound starts with a step
    assert out[0] == 0.0
    np.testing.assert_array_equal(out[11:], raw[11:])  # the fade touches only the first 11 samples (0.25 ms)
    assert onset_splatter_db(raw) > -30.0 and onset_splatter_db(out) < onset_splatter_db(raw) - 20.0
    paper_like = synthesize(estimate_modes(notes_five_mode_clip(), SR, "paper"))
    assert paper_like[0] == 0.0 and np.argmax(np.abs(paper_like)) > 0  # unlike the code's cosine click


def test_synthesis_never_exceeds_full_scale_and_keeps_quiet_sounds():
    loud = Modes(np.linspace(200, 5000, 50), np.full(50, 10.0), np.full(50, 0.3))  # would peak far above 1
    out = synthesize(loud)
    assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6) and np.abs(out).max() <= 1.0
    quiet = Modes([440.0], [-20.0], [0.1])
    assert np.abs(synthesize(quiet)).max() < 0.1  # not normalised up
    assert np.abs(synthesize(loud, ceiling=0.5)).max() <= 0.5


def test_synthesis_drops_modes_above_nyquist():
    modes = Modes([1000.0, 20000.0], [-6.0, -6.0], [0.1, 0.1])
    low_rate = synthesize(modes, sample_rate=16000)
    only_low = synthesize(Modes([1000.0], [-6.0], [0.1]), sample_rate=16000)
    np.testing.assert_allclose(low_rate, only_low)


# --- Modes: validation and JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"frequencies": [100.0, 30000.0]}, "frequencies"),
    ({"frequencies": [-1.0, 100.0]}, "frequencies"),
    ({"decays": [0.1, 0.0]}, "decays"),
    ({"powers": [0.0, np.nan]}, "powers"),
    ({"powers": [0.0]}, "one per mode"),
    ({"phases": [0.0, np.inf]}, "phases"),
    ({"sample_rate": 0}, "sample_rate"),
])
def test_modes_validation(fields, message):
    base = {"frequencies": [100.0, 200.0], "powers": [0.0, -3.0], "decays": [0.1, 0.2]}
    with pytest.raises(ValueError, match=message):
        Modes(**{**base, **fields})


def test_json_round_trip_is_exact(tmp_path, noisy_five):
    for modes in (estimate_modes(noisy_five, SR, "refined"), estimate_modes(noisy_five, SR, "paper")):
        back = Modes.load(modes.save(tmp_path / "modes.json"))
        assert back.sample_rate == modes.sample_rate
        for name in ("frequencies", "powers", "decays", "phases"):
            a, b = getattr(modes, name), getattr(back, name)
            assert (a is None and b is None) or np.array_equal(a, b)
    data = json.loads((tmp_path / "modes.json").read_text())
    data["decay_s"][0] = -1.0
    with pytest.raises(ValueError, match="decays"):
        Modes.from_dict(data)
    with pytest.raises(ValueError, match="not a modes file"):
        Modes.from_dict({"format": "something else"})


# --- edits ----------------------------------------------------------------------------------------------------


def test_pitch_up_an_octave_doubles_every_frequency():
    up = edits.shift_pitch(FIVE, 12)
    np.testing.assert_array_equal(up.frequencies, FIVE.frequencies * 2)
    np.testing.assert_array_equal(up.decays, FIVE.decays)
    np.testing.assert_array_equal(up.powers, FIVE.powers)
    assert len(edits.shift_pitch(FIVE, 24)) == 4  # 8333 Hz × 4 is past Nyquist: dropped
    np.testing.assert_allclose(edits.shift_pitch(FIVE, ratio=0.5).frequencies, FIVE.frequencies / 2)


def test_damping_and_rayleigh():
    np.testing.assert_array_equal(edits.scale_damping(FIVE, 0.5).decays, FIVE.decays * 2)
    alpha, beta = 10.0, 1e-7
    modes = edits.set_rayleigh_damping(FIVE, alpha, beta)
    sigma = (alpha + beta * (2 * np.pi * FIVE.frequencies) ** 2) / 2  # amplitude e^{−σt}
    np.testing.assert_allclose(modes.decays, np.log(1000.0) / sigma)  # e^{−σ·T60} = 10^{−3}
    assert np.all(np.diff(modes.decays) < 0)  # β damps high modes more


def test_brightness_tilts_powers_per_octave():
    bright = edits.tilt_brightness(FIVE, 6.0, reference_hz=440.0)
    np.testing.assert_allclose(bright.powers - FIVE.powers, 6.0 * np.log2(FIVE.frequencies / 440.0))
    assert bright.powers[0] == FIVE.powers[0]


def test_band_edits_act_on_exactly_the_modes_in_the_band():
    removed = edits.remove_band(FIVE, 1000.0, 2650.0)  # inclusive at both ends
    np.testing.assert_array_equal(removed.frequencies, [440.0, 5210.0, 8333.0])
    kept = edits.keep_band(FIVE, 1000.0, 2650.0)
    np.testing.assert_array_equal(kept.frequencies, [1187.0, 2650.0])
    muted = edits.mute_band(FIVE, 0.0, 1000.0)
    np.testing.assert_array_equal(muted.powers, [-80.0, -4.4, -8.0, -12.0, -20.0])
    paper = estimate_modes(notes_five_mode_clip(), SR, "paper")
    low_cut = edits.mute_band(paper, 0.0, 500.0)
    assert len(low_cut) == 1025 and np.all(low_cut.powers[paper.frequencies <= 500] == -80.0)


def test_morph_returns_the_endpoints_and_glides_matched_modes():
    a = FIVE
    b = Modes([450.0, 1250.0, 3000.0], [-3.0, -6.0, -10.0], [0.5, 0.3, 0.2])  # 3000 Hz is 2.2 st from 2650
    for amount, end in ((0.0, a), (1.0, b)):
        out = edits.morph(a, b, amount)
        for name in ("frequencies", "powers", "decays"):
            np.testing.assert_array_equal(getattr(out, name), getattr(end, name))
    half = edits.morph(a, b, 0.5)
    assert len(half) == 5  # three glides, two of a's modes fading out (b has none of its own)
    np.testing.assert_allclose(half.frequencies[0], math.sqrt(440.0 * 450.0))
    np.testing.assert_allclose(half.powers[0], -1.5)
    np.testing.assert_allclose(half.decays[0], math.sqrt(0.15 * 0.5))
    np.testing.assert_allclose(half.powers[3:], FIVE.powers[3:] + 20 * math.log10(0.5))


# --- material presets -----------------------------------------------------------------------------------------


def test_presets_follow_the_physics():
    presets = {name: material_preset(name) for name in ("metal", "glass", "ceramic", "wood", "plastic")}
    for modes in presets.values():
        assert 5 <= len(modes) <= 48 and modes.frequencies.max() < SR / 2
    # Plate eigenvalue: f11 = (π/2)[(1/a)² + (1/b)²]·√(E h² / (12 ρ (1 − ν²))), damped by √(1 − ζ²).
    steel, plate = MATERIALS["metal"], Plate()
    f11 = math.pi / 2 * (1 / plate.width_m**2 + 1 / plate.height_m**2) * math.sqrt(
        steel.youngs_modulus * plate.thickness_m**2 / (12 * steel.density * (1 - steel.poisson_ratio**2)))
    assert plate_modes(steel, plate, 20000.0)[0][0] == pytest.approx(f11)
    assert presets["metal"].frequencies[0] == pytest.approx(f11, rel=1e-6)
    # Lower loss rings longer at the same frequency: metal > glass > ceramic > wood > plastic.
    t60_at_1k = [edits.rayleigh_decay_times([1000.0], *MATERIALS[m].rayleigh)[0] for m in presets]
    assert t60_at_1k == sorted(t60_at_1k, reverse=True)
    assert np.median(presets["metal"].decays) > 10 * np.median(presets["wood"].decays)
    # Softer per mass sounds lower: acrylic's lowest mode is far below steel's.
    assert presets["plastic"].frequencies[0] < 0.5 * presets["metal"].frequencies[0]
    with pytest.raises(ValueError, match="unknown material"):
        material_preset("cheese")


# --- command line ---------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.impact_sound", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_end_to_end(tmp_path, noisy_five):
    source = tmp_path / "hit.wav"
    soundfile.write(source, (noisy_five / np.abs(noisy_five).max() * 0.9).astype(np.float32), SR)
    steps = [
        ("estimate", str(source), "--out", str(tmp_path / "modes.json"), "--method", "refined"),
        ("estimate", str(source), "--out", str(tmp_path / "paper.json")),
        ("preset", "wood", "--out", str(tmp_path / "wood.json")),
        ("edit", str(tmp_path / "modes.json"), "--pitch", "12", "--damping", "0.5", "--brightness", "3",
         "--remove-band", "5000", "20000", "--out", str(tmp_path / "edited.json")),
        ("edit", str(tmp_path / "modes.json"), "--morph", str(tmp_path / "wood.json"), "--amount", "0.5",
         "--out", str(tmp_path / "morphed.json")),
        ("synthesize", str(tmp_path / "edited.json"), "--out", str(tmp_path / "edited.wav"), "--duration", "0.5"),
    ]
    for step in steps:
        result = run_cli(*step)
        assert result.returncode == 0, result.stderr
    assert len(Modes.load(tmp_path / "paper.json")) == 1025
    original, edited = Modes.load(tmp_path / "modes.json"), Modes.load(tmp_path / "edited.json")
    kept = original.frequencies * 2 <= 5000  # doubled, then 5–20 kHz removed
    np.testing.assert_allclose(edited.frequencies, original.frequencies[kept] * 2)
    np.testing.assert_allclose(edited.decays, original.decays[kept] * 2)
    audio, rate = soundfile.read(tmp_path / "edited.wav")
    assert rate == SR and len(audio) == SR // 2 and 0 < np.abs(audio).max() <= 1.0
    failed = run_cli("synthesize", str(source), "--out", str(tmp_path / "x.wav"))
    assert failed.returncode == 2 and "error:" in failed.stderr and "Traceback" not in failed.stderr


def test_block_synthesis_equals_eq4_sample_by_sample():
    """The blocked matrix-product synthesis against Eq. 4 written out directly, with phases, many modes and decays
    down to the paper extractor's shortest (2.9 ms), for a length that is not a multiple of the block."""
    rng = np.random.default_rng(5)
    n = 200
    modes = Modes(rng.uniform(50.0, 20000.0, n), rng.uniform(-80.0, 0.0, n), rng.uniform(0.0029, 1.0, n),
                  phases=rng.uniform(0.0, 2 * np.pi, n), sample_rate=SR)
    t = np.arange(5001)[:, None] / SR
    direct = np.sum(10.0 ** ((modes.powers - 60.0 / modes.decays * t) / 20.0)
                    * np.sin(2 * np.pi * modes.frequencies * t + modes.phases), axis=1)
    fast = modal_sum(modes, 5001, SR)
    assert np.abs(fast - direct).max() < 1e-6 * np.abs(direct).max()


def test_block_synthesis_of_nothing_is_silence():
    """No samples, or no mode below Nyquist, or modes far quieter than full scale: exact zeros or exact scaling."""
    one = Modes([440.0], [0.0], [0.5], sample_rate=SR)
    assert modal_sum(one, 0, SR).shape == (0,)
    assert not modal_sum(Modes([], [], [], sample_rate=SR), 50, SR).any()
    assert not modal_sum(Modes([12000.0], [0.0], [0.5], sample_rate=SR), 50, 16000).any()  # above 8 kHz Nyquist
    quiet = Modes([440.0], [-200.0], [0.5], sample_rate=SR)  # the guard is relative: a quiet sound keeps its shape
    np.testing.assert_allclose(modal_sum(quiet, 500, SR), 1e-10 * modal_sum(one, 500, SR), rtol=1e-5, atol=1e-17)


def test_importing_the_package_leaves_scipy_optimize_signal_and_torch_for_later():
    """Studio start-up: `import pipelines.impact_sound` must not pay for scipy.optimize, scipy.signal or torch."""
    heavy = ("scipy.optimize", "scipy.signal", "scipy.ndimage", "torch", "matplotlib")
    code = f"import sys, pipelines.impact_sound; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_mode_picture_puts_each_mode_at_its_decay_and_frequency_on_labelled_axes():
    from pipelines.impact_sound.picture import DOT_COLOUR, HEIGHT, WIDTH, modes_figure, modes_picture

    modes = Modes([440.0, 3000.0], [0.0, -20.0], [0.1, 0.5])  # the second still rings at the end: a triangle
    picture = modes_picture(synthesize(modes, duration=0.25), modes)
    assert picture.shape == (HEIGHT, WIDTH, 3) and picture.dtype == np.uint8
    axes = modes_figure(IMPACT.sample_rate / 2.0).axes
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_xlim()) == ("time (s)", "frequency (Hz)", (0.0, 0.25))
    dot = np.array([int(DOT_COLOUR[k : k + 2], 16) for k in (1, 3, 5)])
    for seconds, hz in ((0.1, 440.0), (0.249, 3000.0)):
        x, y = axes.transData.transform((seconds, math.log10(hz)))
        assert np.abs(picture[round(HEIGHT - y), round(x)].astype(int) - dot).max() <= 8
    empty = modes_picture(np.zeros(IMPACT.clip_samples, np.float32), Modes([], [], []))
    assert empty.shape == picture.shape  # silence, no modes: the axes alone
