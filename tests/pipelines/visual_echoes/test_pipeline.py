"""The Visual Echoes pipeline on tiny random components: every task, guidance identities, and plain messages for bad
input (the shared contract — save/load, seeds, batches, callbacks, interrupt — runs in tests/pipelines/test_contract)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.factories import seeded_generators, tiny_visual_echoes, toy_picture


@pytest.fixture(scope="module")
def pipe():
    return tiny_visual_echoes()


def tone(seconds: float = 0.4, rate: int = 22050, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_image_to_audio_makes_a_sound_and_keeps_the_picture_tokens(pipe):
    picture_tokens = pipe.encode_picture(toy_picture()).numpy()
    out = pipe(toy_picture(), num_inference_steps=3, num_samples=2, generator=seeded_generators([0, 1]))
    assert out.audios.shape == (2, pipe.clip_samples) and out.sample_rate == 22050
    assert np.abs(out.audios).max() <= 0.99 and np.isfinite(out.audios).all()
    assert out.spectrograms.shape == (2, 80, pipe.audio_frames)
    assert (out.image_tokens == picture_tokens).all()  # the given tokens never change
    assert (out.audio_tokens < pipe.transformer.mask_ids[0]).all()


def test_audio_to_image_keeps_the_sound_tokens_and_makes_pictures(pipe):
    sound_tokens = pipe.encode_audio(tone(), 22050).numpy()
    out = pipe(audio=tone(), num_inference_steps=3, generator=seeded_generators([0]))
    assert out.images.shape == (1, 16, 16, 3) and out.audios is None
    assert (out.audio_tokens == sound_tokens).all()
    assert (out.image_tokens < pipe.transformer.mask_ids[1]).all()


def test_co_generation_fills_both_modalities(pipe):
    seen = []
    out = pipe(num_inference_steps=4, output_type="spectrogram", generator=seeded_generators([2]),
               callback_on_step_end=lambda p, step, t, kw: seen.append(kw["preview"]) or {})
    assert (out.audio_tokens < pipe.transformer.mask_ids[0]).all()
    assert (out.image_tokens < pipe.transformer.mask_ids[1]).all()
    assert out.images.shape == (1, 16, 16, 3) and out.spectrograms.shape == (1, 80, 32) and out.audios is None
    assert len(seen) == 4 and seen[0].shape == (1, 80, 80 + 32, 3)  # picture left of the spectrogram


def test_inpainting_leaves_tokens_outside_the_range_untouched(pipe):
    sound = tone(2.0)
    given = pipe.encode_audio(sound, 22050).view(*pipe.audio_grid).numpy()
    columns = pipe.inpaint_columns((0.0, 0.1))
    assert columns == [0]  # a column spans 16 frames = 0.186 s; the clip has 2 columns
    out = pipe(toy_picture(), sound, inpaint_range_s=(0.0, 0.1), num_inference_steps=3, output_type="tokens",
               generator=seeded_generators([0]))
    grid = out.audio_tokens.reshape(*pipe.audio_grid)
    assert (grid[:, 1] == given[:, 1]).all()
    assert out.spectrograms is None and out.images is None


def test_guidance_one_is_the_conditional_and_zero_the_unconditional(pipe):
    torch.manual_seed(0)
    mask_a, mask_v = pipe.transformer.mask_ids
    audio = torch.full((1, 10), mask_a)
    audio[0, :3] = torch.tensor([1, 2, 3])
    image, other_image = torch.randint(0, mask_v, (1, 16)), torch.randint(0, mask_v, (1, 16))
    conditional = pipe.transformer(audio, image)[0]
    unconditional = pipe.transformer(audio, torch.full_like(image, mask_v))[0]
    torch.testing.assert_close(pipe.logits(audio, image, "audio", 1.0)[0], conditional)
    torch.testing.assert_close(pipe.logits(audio, image, "audio", 0.0)[0], unconditional, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pipe.logits(audio, other_image, "audio", 0.0)[0], unconditional, atol=1e-5, rtol=1e-5)
    guided = pipe.logits(audio, image, "audio", 3.0)[0]
    expected = (3 * conditional.softmax(-1) - 2 * unconditional.softmax(-1)).clamp(min=0)
    torch.testing.assert_close(guided.exp(), expected / expected.sum(-1, keepdim=True), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(audio=np.zeros(22050, np.float32)), "silent"),
    (dict(audio=np.full(22050, np.nan, np.float32)), "NaN"),
    (dict(audio=tone() * 1000), "normalise"),
    (dict(audio=np.arange(5000)), "mono float waveform"),
    (dict(audio=tone()[:100]), "too short"),
    (dict(image=np.zeros((1, 1, 3), np.uint8)), "1 × 1 pixels"),
    (dict(image=np.full((16, 16, 3), np.nan, np.float32)), "NaN"),
    (dict(image=np.zeros((16, 16, 3), np.float32) + 2.0), r"\[0, 1\]"),
    (dict(image=np.zeros((4, 4, 4, 4))), "picture"),
    (dict(image=toy_picture(), audio=tone()), "give one"),
    (dict(image=toy_picture(), num_inference_steps=0), "num_inference_steps"),
    (dict(image=toy_picture(), guidance_scale=float("inf")), "guidance_scale"),
    (dict(image=toy_picture(), audio=tone(), inpaint_range_s=(0.5, 0.1)), "inpaint_range_s"),
    (dict(task="audio_to_image"), "needs `audio`"),
    (dict(image=toy_picture(), output_type="pil"), "output_type"),
])
def test_bad_inputs_get_plain_messages(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(**({"num_inference_steps": 2} | kwargs))


def test_an_uploaded_picture_of_any_size_and_a_sound_at_another_rate_are_accepted(pipe):
    from PIL import Image

    picture = Image.fromarray((np.random.default_rng(0).random((40, 70, 3)) * 255).astype(np.uint8))
    assert pipe.encode_picture(picture).shape == (1, 16)
    assert pipe.encode_audio(tone(rate=44100), 44100).shape == (1, 10)
