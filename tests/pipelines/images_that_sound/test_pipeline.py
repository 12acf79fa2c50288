"""Images that Sound on tiny random components: the paper's loop (Eqs. 1–6) pinned against a reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from studio.streaming import every_steps
from tests.factories import tiny_images_that_sound

LATENT_WIDTH = 16  # 128 pixels = 1.28 s


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_images_that_sound(tmp_path_factory.mktemp("its"))


def run(pipe, **kwargs):
    arguments = dict(image_prompt="a castle with bell towers", audio_prompt="bell ringing", num_inference_steps=4,
                     latent_width=LATENT_WIDTH, vocoder="griffinlim", griffin_lim_iterations=2,
                     generator=torch.Generator().manual_seed(0))
    return pipe(**(arguments | kwargs))


def embed(encoder, tokenizer, text: str) -> torch.Tensor:
    return encoder(tokenizer([text], padding="max_length", max_length=8, return_tensors="pt").input_ids)[0]


def reference_latents(pipe, weights, steps, scales=(10.0, 10.0), seed=0):
    """The paper's loop written out plainly: per-model CFG (unbatched), weighted average, DDIM (eta 0)."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    latents = torch.randn((1, 4, 32, LATENT_WIDTH), generator=torch.Generator().manual_seed(seed))
    streams = [(pipe.image_unet, pipe.image_text_encoder, pipe.image_tokenizer, "a castle with bell towers"),
               (pipe.audio_unet, pipe.audio_text_encoder, pipe.audio_tokenizer, "bell ringing")]
    with torch.no_grad():
        for index, t in enumerate(scheduler.timesteps):
            total = torch.zeros_like(latents)
            for (unet, encoder, tokenizer, prompt), scale, weight in zip(streams, scales, weights(index, int(t))):
                if weight == 0:
                    continue
                uncond = unet(latents, t, encoder_hidden_states=embed(encoder, tokenizer, "")).sample
                cond = unet(latents, t, encoder_hidden_states=embed(encoder, tokenizer, prompt)).sample
                total += weight * (uncond + scale * (cond - uncond))
            latents = scheduler.step(total, t, latents).prev_sample
    return latents


def test_full_composition_is_the_weighted_average_of_both_guided_models(pipe):
    out = run(pipe, warm_start_image=1.0, warm_start_audio=1.0)
    expected = reference_latents(pipe, lambda i, t: (0.5, 0.5), steps=4)
    torch.testing.assert_close(out.latents, expected, atol=2e-4, rtol=1e-3)


def test_warm_start_switches_the_image_model_on_at_t_v_times_T(pipe):
    # 10 DDIM steps on SD's schedule: t = 901, 801, …, 1. With t_v = 0.9 the image model is off while t > 900.
    out = run(pipe, num_inference_steps=10, warm_start_image=0.9)
    expected = reference_latents(pipe, lambda i, t: (0.0, 1.0) if t > 900 else (0.5, 0.5), steps=10)
    torch.testing.assert_close(out.latents, expected, atol=2e-4, rtol=1e-3)
    audio_only = run(pipe, warm_start_image=0.0)
    torch.testing.assert_close(audio_only.latents, reference_latents(pipe, lambda i, t: (0.0, 1.0), steps=4),
                               atol=2e-4, rtol=1e-3)


def test_each_unet_runs_once_per_active_step_with_both_branches_batched(pipe, monkeypatch):
    calls = {"image": [], "audio": []}
    for name in calls:
        unet = getattr(pipe, f"{name}_unet")
        original = unet.forward
        monkeypatch.setattr(unet, "forward", lambda x, *a, _o=original, _n=name, **k: (calls[_n].append(x.shape[0]),
                                                                                     _o(x, *a, **k))[1])
    run(pipe, num_inference_steps=10, warm_start_image=0.9, num_samples=3)
    assert calls["audio"] == [6] * 10  # cond + uncond for 3 samples in one batch, every step
    assert calls["image"] == [6] * 9  # skipped entirely while its weight is 0


def test_samples_in_a_batch_equal_the_same_samples_run_alone(pipe):
    seeds = [torch.Generator().manual_seed(s) for s in (5, 6)]
    batched = run(pipe, num_samples=2, generator=seeds)
    for index, seed in enumerate((5, 6)):
        alone = run(pipe, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(batched.latents[index : index + 1], alone.latents, atol=2e-4, rtol=1e-3)


def test_given_latents_are_the_initial_noise_and_results_reproduce(pipe):
    noise = torch.randn((1, 4, 32, LATENT_WIDTH), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(run(pipe, latents=noise).latents, run(pipe).latents)


def test_outputs_are_cropped_spectrograms_images_and_audio(pipe):
    out = run(pipe, num_samples=2)
    width = LATENT_WIDTH * 8 - 4  # 32/1024 of 128 columns cropped, as the authors crop 32 of 1024
    assert out.spectrogram.shape == (2, 256, width) and out.spectrogram.dtype == np.float32
    assert 0.0 <= out.spectrogram.min() and out.spectrogram.max() <= 1.0
    assert out.audio.shape == (2, width * 160) and out.sample_rate == 16000 and out.vocoder == "griffinlim"
    assert [image.size for image in out.image] == [(width, 256)] * 2 and out.image[0].mode == "L"
    for vocoder in ("hifigan", "auto"):  # auto: the HiFi-GAN, since these weights have one
        hifigan = run(pipe, vocoder=vocoder)
        assert hifigan.audio.shape == (1, width * 160) and np.abs(hifigan.audio).max() <= 1.0
        assert hifigan.vocoder == "hifigan"


def test_previews_are_made_only_when_read_and_only_the_first_is_decoded(pipe, monkeypatch):
    previews, decodes = [], []
    decode = pipe.decode_spectrograms
    monkeypatch.setattr(pipe, "decode_spectrograms", lambda latents: decodes.append(1) or decode(latents))
    run(pipe, num_inference_steps=6, callback_on_step_end=every_steps(lambda p: previews.append(p.shape), 2))
    assert previews == [(1, 256, 128)] * 3  # steps 1, 3, 5
    assert len(decodes) == 2  # the first preview read (which calibrates the others) and the final result
    decodes.clear()
    run(pipe, num_inference_steps=3, callback_on_step_end=lambda *args: {})
    assert len(decodes) == 1  # never read: never made


def test_a_preview_read_late_in_sampling_calibrates_there(pipe):
    """Previews read only from step 3 on: the first read decodes that step's estimate, later ones are linear."""
    previews = []

    def callback(called, step, timestep, callback_kwargs):
        if step >= 3:
            previews.append(callback_kwargs["preview"])
        return {}

    run(pipe, num_inference_steps=5, callback_on_step_end=callback)
    assert len(previews) == 2 and all(p.shape == (1, 256, 128) and 0 <= p.min() and p.max() <= 1 for p in previews)


def test_latents_returned_by_the_callback_replace_the_pipelines(pipe):
    seen = []

    def zero_at_the_last_step(called, step, timestep, callback_kwargs):
        seen.append(callback_kwargs["latents"].shape)
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if step == 3 else {}

    out = run(pipe, callback_on_step_end=zero_at_the_last_step, callback_on_step_end_tensor_inputs=["latents"])
    assert seen == [(1, 4, 32, LATENT_WIDTH)] * 4
    assert torch.count_nonzero(out.latents) == 0


def test_linear_preview_recovers_a_linear_decoder():
    """A decoder that is linear per latent pixel (gray = w·z + b over its 8 × 8 patch): one calibration recovers w
    and b exactly, and a new latent's preview is that map, upsampled."""
    from pipelines.images_that_sound.pipeline_images_that_sound import LinearPreview

    w, b = torch.tensor([0.3, -0.2, 0.1, 0.05]), 0.4

    def decode(latents):
        gray = torch.einsum("c,nchw->nhw", w, latents) + b
        return gray.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2).numpy()

    preview = LinearPreview(decode)
    first = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(preview(first), decode(first))  # the first preview is the decode itself
    assert torch.allclose(preview.weights, torch.cat([w, torch.tensor([b])]), atol=1e-5)
    flat = torch.zeros(1, 4, 6, 10)
    flat[:, 0] = 1.0  # gray 0.7 everywhere: upsampling keeps it
    assert preview(flat).shape == (1, 48, 80) and np.allclose(preview(flat), 0.7, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps"), ({"image_guidance_scale": float("nan")}, "finite"),
    ({"warm_start_image": 1.5}, "in \\[0, 1\\]"), ({"warm_start_image": 0.5, "warm_start_audio": 0.8}, "must be 1.0"),
    ({"latent_width": 12}, "multiple of 8"), ({"vocoder": "wavenet"}, "'auto', 'hifigan' or 'griffinlim'"),
    ({"latents": torch.zeros(1, 4, 32, 8)}, "must have shape"),
])
def test_bad_settings_are_refused_with_the_rule(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(pipe, **kwargs)


def test_imprint_multiplies_the_audio_models_spectrogram_by_the_image_mask(pipe):
    out = pipe.imprint("a castle", "bell ringing", image_steps=2, audio_steps=3, rho=0.5, latent_width=LATENT_WIDTH,
                       vocoder="griffinlim", griffin_lim_iterations=2, generator=torch.Generator().manual_seed(0))
    # Rebuild both single-model samples from the same noise draws and apply the paper's mask by hand.
    generator = torch.Generator().manual_seed(0)
    image_noise = torch.randn((1, 4, 32, LATENT_WIDTH), generator=generator)
    audio_noise = torch.randn((1, 4, 32, LATENT_WIDTH), generator=generator)
    image = run(pipe, image_prompt="a castle", warm_start_audio=0.0, warm_start_image=1.0, latents=image_noise,
                num_inference_steps=2)
    sound = run(pipe, audio_prompt="bell ringing", warm_start_image=0.0, latents=audio_noise, num_inference_steps=3)
    expected = sound.spectrogram * (1 - 0.5 * (1 - image.spectrogram))
    np.testing.assert_allclose(out.spectrogram, expected, atol=1e-5)
    with pytest.raises(ValueError, match="rho"):
        pipe.imprint("a", "b", rho=2.0, latent_width=LATENT_WIDTH)


def test_imprint_reports_both_models_steps_and_an_interrupt_stops_both(pipe):
    steps = []

    def record(called, step, timestep, callback_kwargs):
        steps.append((step, callback_kwargs["preview"].shape))
        return {}

    common = dict(image_steps=2, audio_steps=3, latent_width=LATENT_WIDTH, vocoder="griffinlim",
                  griffin_lim_iterations=1, generator=torch.Generator().manual_seed(0))
    pipe.imprint("a castle", "bell ringing", callback_on_step_end=record, **common)
    assert steps == [(index, (1, 256, 128)) for index in range(5)]  # the image model's 2 steps, then the audio's 3

    def stop(called, step, timestep, callback_kwargs):
        steps.append(step)
        called._interrupt = True
        return {}

    steps.clear()
    out = pipe.imprint("a castle", "bell ringing", callback_on_step_end=stop, **common)
    assert steps == [0] and np.isfinite(out.spectrogram).all()


def test_guidance_one_returns_the_conditional_estimate(pipe):
    guidance = pipe.encode_prompt(pipe.audio_text_encoder, pipe.audio_tokenizer, "bell ringing", "", 1)
    from pipelines.images_that_sound.pipeline_images_that_sound import Guidance

    latents = torch.randn((1, 4, 32, LATENT_WIDTH), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        guided = pipe.guided_noise(Guidance(pipe.audio_unet, guidance, 1.0, 1.0), latents, 500)
        conditional = pipe.audio_unet(latents, 500, encoder_hidden_states=guidance[1:]).sample
    torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-4)


def test_sds_loss_gradient_is_the_weighted_noise_residual(pipe):
    from pipelines.images_that_sound.pipeline_images_that_sound import Guidance
    from pipelines.images_that_sound.sds import sds_loss

    guidance = Guidance(pipe.audio_unet, pipe.encode_prompt(pipe.audio_text_encoder, pipe.audio_tokenizer,
                                                            "bell ringing", "", 1), 10.0, 1.0)
    latents = torch.randn((1, 4, 32, 8), generator=torch.Generator().manual_seed(0)).requires_grad_()
    sds_loss(pipe, guidance, latents, 500, torch.Generator().manual_seed(1)).backward()
    noise = torch.randn((1, 4, 32, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        noisy = pipe.scheduler.add_noise(latents, noise, torch.tensor([500]))
        expected = (1 - pipe.scheduler.alphas_cumprod[500]) * (pipe.guided_noise(guidance, noisy, 500) - noise)
    torch.testing.assert_close(latents.grad, expected, atol=1e-5, rtol=1e-4)


def test_score_distillation_optimises_a_picture_and_reports_progress(pipe):
    from pipelines.images_that_sound.sds import score_distillation

    progress = []

    def record(called, iteration, timestep, callback_kwargs):
        progress.append((iteration, callback_kwargs["preview"].shape, callback_kwargs["latents"].shape))
        assert 20 <= timestep <= 980
        return {}

    common = dict(latent_width=8, vocoder="griffinlim", griffin_lim_iterations=2, learning_rate=1e-2)
    out = score_distillation(pipe, "a castle", "bell ringing", iterations=4, callback_on_step_end=record,
                             generator=torch.Generator().manual_seed(0), **common)
    assert progress == [(i, (1, 256, 64), (1, 4, 32, 8)) for i in range(4)]
    assert out.spectrogram.shape == (1, 256, 62) and out.audio.shape == (1, 62 * 160)
    assert all(p.grad is None for p in pipe.vae.parameters())
    with pytest.raises(ValueError, match="between 1 and 40000"):
        score_distillation(pipe, "a", "b", iterations=0, latent_width=8)


def test_score_distillation_stops_after_the_iteration_that_sets_the_interrupt(pipe):
    from pipelines.images_that_sound.sds import score_distillation

    iterations = []

    def stop_at_the_second(called, iteration, timestep, callback_kwargs):
        iterations.append(iteration)
        called._interrupt = iteration == 1
        return {}

    out = score_distillation(pipe, "a castle", "bell ringing", iterations=5, latent_width=8, vocoder="griffinlim",
                             griffin_lim_iterations=1, generator=torch.Generator().manual_seed(0),
                             callback_on_step_end=stop_at_the_second)
    assert iterations == [0, 1] and out.spectrogram.shape == (1, 256, 62)


def test_grayscale_projection_is_exact_and_stays_in_range():
    from pipelines.images_that_sound.colorization import project_grayscale

    generator = torch.Generator().manual_seed(0)
    rgb, gray = torch.rand((2, 3, 16, 16), generator=generator), torch.rand((2, 16, 16), generator=generator)
    projected = project_grayscale(rgb * 3 - 1, gray)  # wild colours, far outside [0, 1]
    torch.testing.assert_close(projected.mean(dim=1), gray, atol=1e-6, rtol=0)
    assert projected.min() >= -1e-6 and projected.max() <= 1 + 1e-6
    inside = torch.full((1, 3, 2, 2), 0.5) + torch.tensor([0.1, 0.0, -0.1])[None, :, None, None]
    torch.testing.assert_close(project_grayscale(inside, torch.full((1, 2, 2), 0.5)), inside)  # already fits


def test_colorized_result_has_the_spectrogram_as_its_grayscale(pipe):
    from pipelines.images_that_sound.colorization import colorize

    spectrograms = run(pipe, num_samples=2).spectrogram
    colour = colorize(pipe, spectrograms, "a colorful photo of a castle", num_inference_steps=3,
                      generator=torch.Generator().manual_seed(0))
    assert colour.shape == (2, 256, 124, 3)
    np.testing.assert_allclose(colour.mean(axis=-1), spectrograms, atol=1e-5)
    assert colour.min() >= -1e-6 and colour.max() <= 1 + 1e-6
    assert np.abs(colour - colour.mean(axis=-1, keepdims=True)).max() > 0  # it does carry colour
