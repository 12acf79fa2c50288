"""The toy world: determinism, shapes and rates, ground truth that is right, and the dataset CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile

from pipelines.audio import SPECS, log_mel, spectrogram_to_image
from pipelines.impact_sound import Modes, synthesize
from pipelines.toyworld import sample
from pipelines.toyworld.__main__ import main
from pipelines.toyworld.captioned import CORE_IMAGE_CLASSES, CORE_SOUND_CLASSES, caption_vocabulary
from pipelines.toyworld.videos import bounce_heights

KINDS = ("impact", "sounding_video", "image", "sound")


def _arrays(batch) -> dict[str, np.ndarray]:
    return {name: value for name, value in vars(batch).items() if isinstance(value, np.ndarray)}


# Determinism ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_arrays_and_prefix_stable(kind):
    first, again, longer = sample(kind, 3, 7), sample(kind, 3, 7), sample(kind, 5, 7)
    for name, value in _arrays(first).items():
        np.testing.assert_array_equal(value, _arrays(again)[name], err_msg=name)
        np.testing.assert_array_equal(value, _arrays(longer)[name][:3], err_msg=f"{name}: sample i depends on n")
    assert first.captions == again.captions


@pytest.mark.parametrize("kind", KINDS)
def test_different_seeds_differ(kind):
    key = {"impact": "audio", "sounding_video": "audio", "image": "images", "sound": "audio"}[kind]
    assert not np.array_equal(getattr(sample(kind, 3, 1), key), getattr(sample(kind, 3, 2), key))


def test_unknown_kind_class_and_seed_are_plain_errors():
    with pytest.raises(ValueError, match="unknown toy-world kind"):
        sample("poem", 2, 0)
    with pytest.raises(ValueError, match="unknown image class"):
        sample("image", 2, 0, classes=("unicorns",))
    with pytest.raises(ValueError, match="seed"):
        sample("sound", 2, -1)


# Shapes, dtypes, rates --------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_rates_match_the_specs():
    impact = sample("impact", 2, 0)
    assert impact.frames.shape == (2, 16, 64, 64, 3) and impact.frames.dtype == np.float32
    assert impact.audio.shape == (2, SPECS["impact"].clip_samples) and impact.audio.dtype == np.float32
    assert impact.sample_rate == SPECS["impact"].sample_rate == 44100
    video = sample("sounding_video", 2, 0)
    assert video.frames.shape == (2, 16, 64, 64, 3) and video.frames.dtype == np.float32 and video.fps == 10.0
    assert video.audio.shape == (2, SPECS["mm_diffusion"].clip_samples) and video.sample_rate == 16000
    images = sample("image", 3, 0)
    assert images.images.shape == (3, 16, 64) and images.images.dtype == np.float32
    sounds = sample("sound", 3, 0)
    assert sounds.spectrograms.shape == (3, 16, 64) and sounds.audio.shape == (3, 64 * 160)
    assert sounds.sample_rate == SPECS["auffusion"].sample_rate
    for array in (impact.frames, video.frames, images.images, sounds.spectrograms):
        assert array.min() >= 0.0 and array.max() <= 1.0
    for audio in (impact.audio, video.audio, sounds.audio):
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_full_height_sound_image_is_the_auffusion_spectrogram():
    spec = SPECS["auffusion"]
    sounds = sample("sound", 2, 3, height=256, width=40)
    assert sounds.spectrograms.shape == (2, 256, 40)
    expected = spectrogram_to_image(log_mel(sounds.audio[0], spec), spec)
    np.testing.assert_allclose(sounds.spectrograms[0], expected, atol=1e-6)
    big = sample("image", 1, 0, height=256, width=1024)
    assert big.images.shape == (1, 256, 1024)


# Impact ground truth ----------------------------------------------------------------------------------------------


def test_impact_onset_is_at_the_stated_hit_time():
    onset_s = 0.03
    batch = sample("impact", 6, 4, audio_onset_s=onset_s)
    onset = round(onset_s * batch.sample_rate)
    for audio in batch.audio:
        assert not np.any(audio[:onset]), "sound before the hit"
        loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
        assert abs(loud[0] - onset) <= 0.001 * batch.sample_rate  # within 1 ms


def test_impact_modes_are_the_modal_part_exactly():
    batch = sample("impact", 4, 5)
    for modes, modal in zip(batch.modes, batch.modal_audio):
        np.testing.assert_allclose(synthesize(modes, ceiling=math.inf), modal, atol=2e-6)
        assert Modes.from_json(modes.to_json()).frequencies.tolist() == modes.frequencies.tolist()
    np.testing.assert_allclose(batch.audio, batch.modal_audio + batch.residual_audio, atol=1e-6)
    from pipelines.impact_sound.residual import ResidualParams

    for record, residual in zip(batch.residuals, batch.residual_audio):  # the residual is the pipeline's own model
        params = ResidualParams(record["gains"], record["decay_s"])
        np.testing.assert_allclose(params.render(len(residual)), residual, atol=1e-5)
        assert 0.0 < params.gains.min() and params.gains.max() < 1.0


def _mode_energies(modes: Modes, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.sum(10.0 ** ((2.0 * (modes.powers[:, None] - modes.decay_rates[:, None] * t[None, :])) / 20.0), axis=1)


def test_impact_strongest_mode_is_the_spectral_peak():
    batch = sample("impact", 32, 6)
    checked = 0
    for modes, audio in zip(batch.modes, batch.audio):
        energy = _mode_energies(modes, 0.25, batch.sample_rate)
        first, second = np.sort(energy)[::-1][:2]
        if 10.0 * math.log10(first / second) < 3.0:
            continue  # two modes about equally strong: either may peak
        spectrum = np.abs(np.fft.rfft(audio, 8 * len(audio)))
        peak_hz = np.fft.rfftfreq(8 * len(audio), 1.0 / batch.sample_rate)[np.argmax(spectrum)]
        assert abs(peak_hz - modes.frequencies[np.argmax(energy)]) < 5.0
        checked += 1
    assert checked >= 6


def test_impact_hit_frame_shows_the_contact_and_size_sets_pitch():
    from pipelines.toyworld.impacts import height_above_floor, true_modes

    batch = sample("impact", 8, 8)
    assert np.allclose(batch.hit_time_s, batch.hit_frame / batch.fps)
    # The object (pixels away from the median frame, the backdrop) reaches lowest in the picture at the hit frame.
    for frames, frame in zip(batch.frames, batch.hit_frame):
        moving = np.abs(frames - np.median(frames, axis=0)).max(axis=-1) > 0.1  # [T, H, W]
        lowest_row = np.array([np.flatnonzero(m.any(axis=1)).max(initial=-1) for m in moving])
        assert lowest_row.argmax() == frame and (lowest_row[frame] > lowest_row[np.arange(16) != frame]).all()
    # Bigger objects of the same material ring lower.
    from pipelines.toyworld.impacts import _Scene

    small, large = (_Scene("glass", "ball", s, "pale blue", 4, 0.6, 5.0, 0.4, 0.5, (0.3, 0.3)) for s in (0.5, 2.0))
    assert true_modes(large).frequencies.min() < true_modes(small).frequencies.min() / 3.0
    assert height_above_floor(small, np.array([4 / 30]), 4 / 30)[0] == 0.0


# Sounding-video ground truth --------------------------------------------------------------------------------------


def _onset_ratio(audio: np.ndarray, sample: int, window: int) -> float:
    before = np.sum(audio[max(sample - window, 0) : sample] ** 2) + 1e-12
    return float(np.sum(audio[sample : sample + window] ** 2) / before)


def test_every_contact_frame_has_a_click_at_its_time():
    batch = sample("sounding_video", 10, 11, scenes=("bounce", "collide"))
    window = round(0.004 * batch.sample_rate)  # 4 ms
    contacts = 0
    for index in range(len(batch)):
        for frame in batch.contact_frames(index):
            start = round(frame / batch.fps * batch.sample_rate)
            assert _onset_ratio(batch.audio[index], start, window) > 4.0, (index, frame)
            # The click is not a few ms later: the 4 ms before the frame time are much quieter.
            contacts += 1
        for obj in batch.objects[index]:
            if "contact_frames" in obj:  # the ball's bottom is on the floor at each of its contact frames
                frames = [f for f in obj["contact_frames"] if f < 16]
                assert np.allclose(bounce_heights(obj["contact_frames"], np.array(frames) / batch.fps), 0.0)
    assert contacts >= 10


def test_rain_ticks_and_hum_follow_their_ground_truth():
    rain = sample("sounding_video", 2, 3, scenes=("rain",))
    window = round(0.002 * rain.sample_rate)
    for audio, events in zip(rain.audio, rain.events):
        ratios = [_onset_ratio(audio, round(e["time_s"] * rain.sample_rate), window) for e in events]
        assert np.median(ratios) > 4.0
    spin = sample("sounding_video", 2, 3, scenes=("spin",))
    per_frame = spin.sample_rate // 10
    for audio, curves in zip(spin.audio, spin.curves):
        for frame in (2, 8, 14):
            chunk = audio[frame * per_frame - per_frame // 2 : frame * per_frame + per_frame // 2]
            spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)), 8 * len(chunk)))
            peak = np.fft.rfftfreq(8 * len(chunk), 1.0 / spin.sample_rate)[np.argmax(spectrum)]
            assert abs(peak - curves["hum_hz"][frame]) < 0.05 * curves["hum_hz"][frame]
        assert curves["hum_hz"][-1] < curves["hum_hz"][0]  # the top slows down, the hum falls


def test_lamp_hums_at_its_heights_pitch_on_exactly_its_lit_frames():
    from pipelines.toyworld.videos import LAMP_HEIGHTS, lamp_frequency

    assert lamp_frequency(LAMP_HEIGHTS[0]) == pytest.approx(800.0) and lamp_frequency(LAMP_HEIGHTS[1]) == 200.0
    lamps = sample("sounding_video", 6, 5, scenes=("lamp",))
    per_frame = lamps.sample_rate // 10
    for frames, audio, curves, (lamp,) in zip(lamps.frames, lamps.audio, lamps.curves, lamps.objects):
        lit = np.asarray(curves["lamp_lit"], bool)
        assert 2 <= (~lit).sum() and lit[0]  # it flickers off at least twice a clip
        loudness = np.sqrt((audio.reshape(16, per_frame)[:, 200:-200] ** 2).mean(axis=1))  # away from the fades
        assert loudness[lit].min() > 0.2 and loudness[~lit].max() < 1e-3
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        peak = np.fft.rfftfreq(len(audio), 1.0 / lamps.sample_rate)[np.argmax(spectrum)]
        assert abs(peak - lamp["hum_hz"]) < 2.0 and lamp["hum_hz"] == pytest.approx(lamp_frequency(lamp["height"]))
        row = int(lamp["height"] * frames.shape[1])  # the lamp's centre row: bright when lit, dim when off
        brightness = frames[:, row].max(axis=(1, 2))
        assert brightness[lit].min() > 0.9 and 0.2 < brightness[~lit].max() < 0.5


# Captioned images and sounds ---------------------------------------------------------------------------------------


def _diagonal_fraction(image: np.ndarray) -> float:
    gy, gx = np.gradient(image)
    return float(abs(np.mean(gx * gy)) / (np.mean(gx**2 + gy**2) + 1e-9))


def test_image_classes_differ_by_trivial_statistics():
    batch = sample("image", 40, 0, classes=CORE_IMAGE_CLASSES, balanced=True)
    by_class = {name: batch.images[np.array(batch.classes) == name] for name in CORE_IMAGE_CLASSES}
    stripes = [_diagonal_fraction(image) for image in by_class["stripes"]]
    rings = [_diagonal_fraction(image) for image in by_class["rings"]]
    assert min(stripes) > 0.25 > 0.1 > max(rings)  # orientation energy: stripes are diagonal, rings are not
    towers = by_class["towers"]
    assert (towers[:, -2:].mean(axis=(1, 2)) > towers[:, :2].mean(axis=(1, 2)) + 0.3).all()  # rise from the bottom


def _fourier_features(pictures: np.ndarray) -> np.ndarray:
    spectrum = np.abs(np.fft.fft2(pictures - pictures.mean(axis=(1, 2), keepdims=True))).reshape(len(pictures), -1)
    spectrum /= np.linalg.norm(spectrum, axis=1, keepdims=True) + 1e-9
    return np.concatenate([spectrum, pictures.mean(axis=2)], axis=1)  # shift-invariant pattern + row profile


@pytest.mark.parametrize("kind, field", [("image", "images"), ("sound", "spectrograms")])
def test_all_classes_are_separable_by_a_nearest_centroid(kind, field):
    train, test = sample(kind, 160, 0, balanced=True), sample(kind, 48, 1, balanced=True)
    names = sorted(set(train.classes))
    features = _fourier_features(getattr(train, field))
    centroids = np.stack([features[np.array(train.classes) == name].mean(axis=0) for name in names])
    distances = ((_fourier_features(getattr(test, field))[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = np.mean(np.array(names)[distances.argmin(axis=1)] == np.array(test.classes))
    assert accuracy >= 0.9


def _peak_track(audio: np.ndarray, rate: int, start_s: float, seconds: float, frame_s: float = 0.008) -> np.ndarray:
    """Peak frequency (Hz) of `frame_s` frames (half overlapping) through one event."""
    size = round(frame_s * rate)
    starts = np.arange(round(start_s * rate), round((start_s + seconds) * rate) - size, size // 2)
    frames = np.stack([audio[s : s + size] * np.hanning(size) for s in starts])
    spectra = np.abs(np.fft.rfft(frames, 4 * size, axis=1))
    return np.fft.rfftfreq(4 * size, 1.0 / rate)[np.argmax(spectra, axis=1)]


def test_sound_classes_behave_as_named():
    batch = sample("sound", 16, 2, classes=CORE_SOUND_CLASSES, balanced=True)
    rate = batch.sample_rate
    for audio, name, params in zip(batch.audio, batch.classes, batch.params):
        if name == "chirps":  # rising pitch through every chirp
            for onset in params["onsets_s"]:
                track = _peak_track(audio, rate, onset + 0.15 * params["chirp_s"], 0.7 * params["chirp_s"])
                assert track[-1] > 1.4 * track[0] and np.corrcoef(np.arange(len(track)), track)[0, 1] > 0.9
        elif name == "hums":  # one steady low pitch
            track = _peak_track(audio, rate, 0.05, 0.55, frame_s=0.064)
            assert np.ptp(track) < 10.0 and track.mean() < 1000.0
        elif name == "bells":  # rings on: still loud 0.2 s after the strike
            start = round(params["onsets_s"][0] * rate)
            assert np.abs(audio[start + 3200 : start + 3520]).max() > 0.1 * np.abs(audio[start : start + 800]).max()
        elif name == "knocks":  # short: nearly silent 0.3 s after the last knock
            end = round(params["onsets_s"][-1] * rate) + round(0.36 * rate)
            assert end >= len(audio) or np.abs(audio[end:]).max() < 1e-3 * np.abs(audio).max() + 1e-6


def test_captions_are_short_and_from_the_vocabulary():
    vocabulary = set(caption_vocabulary())
    for kind in ("image", "sound"):
        batch = sample(kind, 24, 5, balanced=True)
        for caption, params in zip(batch.captions, batch.params):
            words = [w for w in caption.split() if w != params.get("text")]
            assert 1 <= len(caption.split()) <= 8 and set(words) <= vocabulary, caption


# The dataset CLI --------------------------------------------------------------------------------------------------


def test_cli_writes_impact_folder(tmp_path):
    assert main(["impact", "--n", "2", "--seed", "3", "--out", str(tmp_path)]) == 0
    for name in ("0000", "0001"):
        assert (tmp_path / f"{name}.mp4").stat().st_size > 0
        audio, rate = soundfile.read(tmp_path / f"{name}.wav")
        assert rate == 44100 and len(audio) == SPECS["impact"].clip_samples
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert {"material", "size", "colour", "hit_frame", "hit_time_s", "modes", "residual"} <= set(record)
        assert len(Modes.from_dict(record["modes"])) > 0
    assert json.loads((tmp_path / "toyworld.json").read_text())["kind"] == "impact"


def test_cli_writes_sounding_video_folder_with_muxed_audio(tmp_path):
    from pipelines.media import read_soundtrack, video_info

    assert main(["sounding_video", "--n", "1", "--seed", "0", "--out", str(tmp_path), "--scenes", "bounce"]) == 0
    info = video_info(tmp_path / "0000.mp4")
    assert info.fps == 10 and info.size == (64, 64) and abs(info.seconds - 1.6) < 0.05
    sound = read_soundtrack(tmp_path / "0000.mp4", SPECS["mm_diffusion"].sample_rate)
    assert abs(len(sound) / SPECS["mm_diffusion"].sample_rate - 1.6) < 0.05 and np.abs(sound).max() > 0.01
    assert json.loads((tmp_path / "0000.json").read_text())["scene"] == "bounce"
    png_folder = tmp_path / "png"
    assert main(["sounding_video", "--n", "1", "--out", str(png_folder), "--video-format", "png"]) == 0
    assert len(list((png_folder / "0000").glob("*.png"))) == 16 and (png_folder / "0000.wav").exists()


@pytest.mark.parametrize("kind, suffix", [("image", ".png"), ("sound", ".wav")])
def test_cli_writes_captioned_folders(tmp_path, kind, suffix):
    assert main([kind, "--n", "3", "--seed", "1", "--out", str(tmp_path), "--height", "16", "--width", "32"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [line["file"] for line in lines] == [f"000{i}{suffix}" for i in range(3)]
    assert all(line["caption"] and line["class"] for line in lines)
    assert all((tmp_path / line["file"]).exists() for line in lines)
    if kind == "sound":
        audio, rate = soundfile.read(tmp_path / "0000.wav")
        assert rate == 16000 and len(audio) == 32 * 160 and (tmp_path / lines[0]["image"]).exists()


def test_cli_rejects_bad_options_plainly(tmp_path, capsys):
    assert main(["image", "--n", "2", "--out", str(tmp_path), "--classes", "unicorns"]) == 2
    assert "unknown image class" in capsys.readouterr().err
