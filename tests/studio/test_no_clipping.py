"""Nothing the studio writes clips: every wav and every mp4's sound is peak-limited below full scale. Each tab's
loudest fast case is run (both of Impact Sound's paths; Visual Echoes on its bundled weights where they load, else on a
tiny random model) and every wav in its session folder, and the decoded sound of every mp4, scanned. AAC overshoots the
level it is given, so an mp4's sound is checked after encoding (`pipelines.media._aac_soundtrack`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipelines.impact_sound.modal import Modes
from pipelines.media import PEAK_LIMIT, VideoDecodeError, read_soundtrack, read_video, save_wav, write_video
from studio.config import StudioConfig, build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs.impact_sound import ImpactHandlers, modes_table
from studio.tabs.spectrogram_lab import LabHandlers
from tests.factories import FakeRequest, editor_value


def clipped_samples(folder: Path) -> dict[str, int]:
    """{file name: how many samples are at |x| >= 1} for every wav under `folder` and every mp4 with sound, decoded at
    its own rate (an empty dict: no sound was written)."""
    found = {}
    for wav in sorted(Path(folder).rglob("*.wav")):
        audio, _ = soundfile.read(wav, dtype="float32")
        found[wav.name] = int(np.count_nonzero(np.abs(audio) >= 1.0))
    for mp4 in sorted(Path(folder).rglob("*.mp4")):
        try:
            audio = read_soundtrack(mp4, None)
        except VideoDecodeError as error:
            assert str(error) == "it has no sound track", (mp4.name, error)
            continue
        found[mp4.name] = int(np.count_nonzero(np.abs(audio) >= 1.0))
    return found


def test_save_wav_and_write_video_limit_the_peak(tmp_path):
    sine = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32) * 3.0
    loud = sine.copy()
    loud[5] = np.nan
    audio, _ = soundfile.read(save_wav(loud, 16000, tmp_path / "loud.wav"), dtype="float32")
    assert np.isfinite(audio).all() and np.abs(audio).max() <= PEAK_LIMIT + 1e-3
    quiet = np.full(100, 0.25, np.float32)
    np.testing.assert_allclose(soundfile.read(save_wav(quiet, 16000, tmp_path / "q.wav"))[0], 0.25, atol=1e-4)
    mp4 = write_video(tmp_path / "loud.mp4", np.zeros((10, 16, 16, 3), np.uint8), 10, audio=sine,
                      sample_rate=16000)
    assert np.abs(read_soundtrack(mp4, 16000)).max() < 1.0


def test_a_full_scale_square_wave_stays_below_full_scale_in_an_mp4(tmp_path):
    """Limited to 0.98 and encoded once, it decodes to a peak of 2.29; checked and encoded again, it stays under the
    limit, at its own rate and resampled alike, and keeps its length and most of its level."""
    square = np.sign(np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    mp4 = write_video(tmp_path / "square.mp4", np.zeros((10, 16, 16, 3), np.uint8), 10, audio=square,
                      sample_rate=16000)
    sound = read_soundtrack(mp4, None)
    assert 0.5 < np.abs(sound).max() <= PEAK_LIMIT
    assert np.abs(read_soundtrack(mp4, 44100)).max() < 1.0
    assert abs(len(sound) - 16000) < 1024  # one AAC frame
    assert len(read_video(mp4).frames) == 10  # the video is as it was


def test_quiet_sound_is_muxed_as_it_is(tmp_path):
    """A soft sine needs no second pass: its level in the mp4 is the level given."""
    sine = (0.25 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    mp4 = write_video(tmp_path / "sine.mp4", np.zeros((10, 16, 16, 3), np.uint8), 10, audio=sine, sample_rate=16000)
    sound = read_soundtrack(mp4, None)
    assert np.abs(sound[2000:14000]).max() == pytest.approx(0.25, abs=0.01)


def spectrogram_lab(context, tmp_path) -> None:
    """Both directions, as loud as they go: an all-white picture, and the example chirp at full scale drawn and
    played back."""
    from tests.factories import EXAMPLES

    lab = LabHandlers(context, "auto")
    white = editor_value(tmp_path, np.full((256, 512, 3), 255, np.uint8))
    lab.play_picture(white, 2.0, 8, False, "Griffin-Lim", FakeRequest())
    chirp, rate = soundfile.read(EXAMPLES / "chirp.wav", dtype="float32")
    soundfile.write(tmp_path / "loud.wav", chirp / np.abs(chirp).max(), rate, subtype="FLOAT")
    lab.draw_sound(str(tmp_path / "loud.wav"), 8, FakeRequest())


LOUD_MODES = Modes(frequencies=[220.0, 440.0, 880.0], powers=[40.0, 40.0, 40.0], decays=[1.0, 1.0, 1.0])


def impact_sound_modes(context, tmp_path) -> None:
    """The loudest table there is, played (render) and placed on two hits 0.05 s apart in a video (soundtrack)."""
    from tests.factories import write_glass_video

    impact = ImpactHandlers(context, "auto")
    impact.render(modes_table(LOUD_MODES), "", 2.0, 0, 1, 0, 0, 0, 0, FakeRequest())
    video = tmp_path / "glass.mp4"
    hit = write_glass_video(video)
    list(impact.score_video(str(video), f"{hit:.3f}, {hit + 0.05:.3f}", modes_table(LOUD_MODES), 2.0, 0, 1, 0, 0, 0,
                            0, "modes", request=FakeRequest()))


def impact_sound_diffusion(context, tmp_path) -> None:
    """The bundled diffusion model, physics retrieved (the paper's rule) and taken from the loudest table."""
    from tests.factories import write_glass_video

    impact = ImpactHandlers(context, "auto")
    video = tmp_path / "glass.mp4"
    hit = write_glass_video(video)
    for source in ("retrieved", "diffusion_modes"):
        list(impact.score_video(str(video), f"{hit:.3f}, {hit + 0.05:.3f}", modes_table(LOUD_MODES), 2.0, 0, 1, 0,
                                0, 0, 0, source, 10, 0, request=FakeRequest()))


def images_that_sound(context, tmp_path) -> None:
    """The bundled studio weights at the tab's studio prompts, a few steps, two samples (its wav clipped before)."""
    from studio.tabs.images_that_sound import COMPOSED, STUDIO_PROMPTS, ImagesThatSoundHandlers

    handlers = ImagesThatSoundHandlers(context, "studio")
    list(handlers.generate(*STUDIO_PROMPTS[0], "", 4, 10, 10, 0.9, 1.0, 0.64, 2, 0, "auto", COMPOSED, 10, "",
                           FakeRequest()))


def sounding_video(context, tmp_path) -> None:
    """The bundled studio model, a few DDPM steps, joint and video -> audio (the low lamp example)."""
    from studio.tabs.sounding_video import JOINT, STUDIO_WEIGHTS, VIDEO_TO_AUDIO, SoundingVideoHandlers
    from tests.factories import EXAMPLES

    handlers = SoundingVideoHandlers(context, "studio")
    list(handlers.generate(STUDIO_WEIGHTS, JOINT, None, None, "DDPM", 4, 0, None, 1, 0, 2, False, FakeRequest()))
    list(handlers.generate(STUDIO_WEIGHTS, VIDEO_TO_AUDIO, None, str(EXAMPLES / "lamp-low.mp4"), "DDPM", 4, 0, None,
                           2, 0, 1, False, FakeRequest()))


def visual_echoes(context, tmp_path) -> None:
    """Picture -> sound and both at once; on the bundled weights where they load, else on a tiny random model."""
    from pipelines.registry import available
    from studio.tabs import visual_echoes as tab
    from tests.factories import tiny_visual_echoes, toy_picture

    handlers = tab.VisualEchoesHandlers(context, "auto")
    picture = editor_value(tmp_path, (toy_picture(1, size=32) * 255).astype(np.uint8))
    with pytest.MonkeyPatch.context() as patch:
        if not available("visual_echoes"):
            tiny = tiny_visual_echoes()
            patch.setattr(tab, "get_pipeline", lambda *_: tiny)
        for task in (tab.PICTURE_TO_SOUND, tab.BOTH):
            list(handlers.generate(task, picture, None, 0, 1, 4, 9, 3, 2, 0, FakeRequest()))


@pytest.mark.parametrize("tab", [spectrogram_lab, impact_sound_modes, impact_sound_diffusion, images_that_sound,
                                 sounding_video, visual_echoes], ids=lambda tab: tab.__name__)
def test_no_tab_writes_a_clipped_sample(tmp_path, tab):
    """Each tab's loudest fast case; every wav it wrote, and the sound in every mp4, is scanned."""
    context = StudioContext(build_config(models="studio") if tab is images_that_sound else StudioConfig(),
                            SessionFiles(tmp_path / "sessions"))
    tab(context, tmp_path)
    found = clipped_samples(tmp_path / "sessions")
    assert any(name.endswith(".wav") for name in found) and any(name.endswith(".mp4") for name in found), found
    assert not any(found.values()), found
