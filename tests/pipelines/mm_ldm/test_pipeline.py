"""MMLDMPipeline: joint generation, A2V / V2A by cross-modal guidance, the house contract (save → load, seeds,
callback, interrupt) and plain errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.mm_ldm.pipeline_mm_ldm import MMLDMPipeline, MMLDMPipelineOutput
from pipelines.mm_ldm.scheduling_mm_ldm import make_scheduler

FAST = {"num_inference_steps": 3, "decoder_steps": 2}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hum(pipe: MMLDMPipeline, hz: float = 440.0) -> np.ndarray:
    t = np.arange(pipe.spec.clip_samples) / pipe.spec.sample_rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def clip(pipe: MMLDMPipeline, seed: int = 0) -> np.ndarray:
    shape = (pipe.num_frames, pipe.frame_size, pipe.frame_size, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_joint_generation_makes_frames_and_sound(pipe):
    out = pipe(generator=seeded(), **FAST)
    assert isinstance(out, MMLDMPipelineOutput)
    assert out.video.shape == (1, 8, 16, 16, 3) and out.video.dtype == np.uint8
    assert out.audio.shape == (1, 12800) and out.audio.dtype == np.float32 and np.isfinite(out.audio).all()
    assert (out.sample_rate, out.fps) == (16000, 10)
    video, audio, rate, fps = pipe(generator=seeded(), output_type="pt", return_dict=False, **FAST)
    assert (rate, fps) == (16000, 10)
    torch.testing.assert_close(audio, torch.from_numpy(out.audio))
    assert video.dtype == torch.float32 and 0 <= float(video.min()) <= float(video.max()) <= 1
    np.testing.assert_array_equal((video * 255).round().to(torch.uint8).numpy(), out.video)
    latents = pipe(generator=seeded(), output_type="latent", **FAST)
    assert latents.video.shape == (1, 4, 4, 4) and latents.audio.shape == (1, 4, 2, 2)


def test_audio_to_video_keeps_the_given_audio(trained_pipe):
    sound = hum(trained_pipe)
    out = trained_pipe(audio=sound, generator=seeded(), **FAST)
    np.testing.assert_array_equal(out.audio[0], sound)
    latents = trained_pipe(audio=sound, generator=seeded(), output_type="latent", **FAST)
    with torch.no_grad():
        torch.testing.assert_close(latents.audio, trained_pipe.encode_audio(sound[None]))


def test_video_to_audio_keeps_the_given_video(trained_pipe):
    frames = clip(trained_pipe)
    out = trained_pipe(video=frames, generator=seeded(), **FAST)
    np.testing.assert_array_equal(out.video[0], frames)
    assert out.audio.shape == (1, 12800)


def test_a_given_video_is_encoded_from_its_keyframes_alone(trained_pipe):
    video = trained_pipe.video_tensor(clip(trained_pipe), 1)
    every_frame = trained_pipe.vae_encode(video.flatten(0, 1)).unflatten(0, video.shape[:2])
    expected = trained_pipe.autoencoder.encode_video(every_frame).mode() * trained_pipe.latent_scale
    torch.testing.assert_close(trained_pipe.encode_video(video), expected)


def test_reconstruct_decodes_both_encoded_streams_and_ignores_frames_between_keyframes(trained_pipe):
    """The autoencoder alone: the same seed gives the same clip; a frame the video encoder does not read (not a
    keyframe) changes nothing, a keyframe changes the clip."""
    video, sound = clip(trained_pipe)[None], hum(trained_pipe)[None]
    out = trained_pipe.reconstruct(video, sound, decoder_steps=2, generator=seeded())
    assert out.video.shape == video.shape and out.video.dtype == np.uint8 and out.audio.shape == sound.shape
    skipped = next(i for i in range(trained_pipe.num_frames) if i not in trained_pipe.autoencoder.keyframes)
    for frame, changes in ((skipped, False), (trained_pipe.autoencoder.keyframes[1], True)):
        edited = video.copy()
        edited[0, frame] = 255 - edited[0, frame]
        again = trained_pipe.reconstruct(edited, sound, decoder_steps=2, generator=seeded())
        assert np.array_equal(again.video, out.video) != changes


def test_phi_one_is_the_conditional_and_phi_zero_the_unconditional_prediction(trained_pipe):
    generator = seeded(3)
    audio, video = (torch.randn(shape, generator=generator) for shape in trained_pipe.latent_shapes(2))
    condition = torch.randn(audio.shape, generator=generator)
    t = torch.tensor([501])
    with torch.no_grad():
        conditional = trained_pipe.transformer(audio, video, t.expand(2), audio_condition=condition)
        unconditional = trained_pipe.transformer(audio, video, t.expand(2))
        assert (conditional[1] - unconditional[1]).abs().max() > 1e-3
        for phi, expected in ((1.0, conditional), (0.0, unconditional)):
            guided = trained_pipe.predict_noise(audio, video, t, condition, None, phi)
            for ours, theirs in zip(guided, expected):
                torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_guidance_does_nothing_while_the_condition_paths_are_zero(pipe):
    """At initialisation ε_c = ε_u, so any φ gives the same audio-to-video latents."""
    sound = hum(pipe)
    runs = [pipe(audio=sound, guidance_scale=phi, generator=seeded(), output_type="latent", **FAST).video
            for phi in (0.0, 5.0)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-6)


def test_the_given_stream_is_forward_noised_ground_truth_at_every_step(trained_pipe, monkeypatch):
    """Recover n^t = (z_a^t − √ᾱ_t z_a) / √(1 − ᾱ_t) from what the DiT receives: unit-variance noise (the printed
    (1 − ᾱ_t) coefficient would shrink it), fresh at every step, and the clean latent as the condition."""
    sound = hum(trained_pipe)
    seen = []
    forward = trained_pipe.transformer.forward

    def spy(audio, video, timestep, audio_condition=None, video_condition=None):
        seen.append((audio[:64].clone(), int(timestep[0]), audio_condition))
        return forward(audio, video, timestep, audio_condition, video_condition)

    monkeypatch.setattr(trained_pipe.transformer, "forward", spy)
    trained_pipe(audio=sound, num_samples=64, generator=seeded(), output_type="latent", num_inference_steps=4)
    with torch.no_grad():
        clean = trained_pipe.encode_audio(sound[None])
    alphas = make_scheduler().alphas_cumprod
    recovered = []
    for audio_in, t, condition in seen:
        torch.testing.assert_close(condition[:64], clean.expand(64, -1, -1, -1))
        assert not condition[64:].any()  # the unconditional rows get the null latent
        recovered.append((audio_in - alphas[t].sqrt() * clean) / (1 - alphas[t]).sqrt())
    assert [t for _, t, _ in seen] == [751, 501, 251, 1]
    for noise in recovered:
        assert float(noise.std()) == pytest.approx(1.0, abs=0.08) and abs(float(noise.mean())) < 0.08
    assert float(torch.corrcoef(torch.stack([recovered[0].flatten(), recovered[1].flatten()]))[0, 1]) < 0.2


def test_reconstruction_gradient_is_the_gradient_of_the_given_streams_error(trained_pipe):
    """The gradient w.r.t. z_v of Σ_n mean‖x̂_0(z_a) − z_a‖² (audio given), by central differences in float64."""
    pipe = trained_pipe.to(dtype=torch.float64)
    generator = seeded(4)
    audio, video = (torch.randn(shape, generator=generator, dtype=torch.float64) for shape in pipe.latent_shapes(2))
    clean = torch.randn(audio.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([601])
    eps_audio, eps_video, gradient = pipe.reconstruction_gradient(audio, video, t, clean, None, 2.0)
    with torch.no_grad():
        torch.testing.assert_close((eps_audio, eps_video), pipe.predict_noise(audio, video, t, clean, None, 2.0))
        alpha = pipe.scheduler.alphas_cumprod[601].double()

        def error(z_video: torch.Tensor) -> float:
            eps = pipe.predict_noise(audio, z_video, t, clean, None, 2.0)[0]
            return float(((audio - (1 - alpha).sqrt() * eps) / alpha.sqrt() - clean).pow(2).flatten(1).mean(1).sum())

        for index in [(0, 0, 0, 0), (1, 3, 2, 1), (1, 1, 3, 3)]:
            step = torch.zeros_like(video)
            step[index] = 1e-5
            numeric = (error(video + step) - error(video - step)) / 2e-5
            assert float(gradient[index]) == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    assert gradient.abs().max() > 0


@pytest.mark.parametrize("given", ["audio", "video"])
def test_reconstruction_guidance_moves_the_generated_latent_by_lambda_times_its_gradient(trained_pipe, given):
    """After the first of two steps the generated latent differs from the paper's sampler (λ = 0) by exactly
    −λ √(1 − ᾱ_{t-1}) ∇ (the same noise draws); the given stream and the last step are untouched."""
    condition = {"audio": hum(trained_pipe)} if given == "audio" else {"video": clip(trained_pipe)}
    generated = "video_latents" if given == "audio" else "audio_latents"
    states = {}

    def keep(scale):
        def callback(p, step, timestep, kwargs):
            states.setdefault(scale, []).append(kwargs[generated].clone())
            return {}
        return callback

    for scale in (0.0, 50.0):
        trained_pipe(**condition, reconstruction_scale=scale, num_inference_steps=2, generator=seeded(5),
                     output_type="latent", callback_on_step_end=keep(scale),
                     callback_on_step_end_tensor_inputs=[generated])
    # the first step's inputs, rebuilt from the same generator: the initial noise, then the given stream's draw
    generator = seeded(5)
    z_audio, z_video = trained_pipe.prepare_latents(1, generator)
    trained_pipe.scheduler.set_timesteps(2)
    t0, t1 = trained_pipe.scheduler.timesteps
    with torch.no_grad():
        clean = (trained_pipe.encode_audio(condition["audio"][None]) if given == "audio"
                 else trained_pipe.encode_video(trained_pipe.video_tensor(condition["video"], 1)))
    noise = torch.randn(clean.shape, generator=generator)
    alpha = trained_pipe.scheduler.alphas_cumprod
    noisy = alpha[t0].sqrt() * clean + (1 - alpha[t0]).sqrt() * noise
    if given == "audio":
        *_, gradient = trained_pipe.reconstruction_gradient(noisy, z_video, t0.reshape(1), clean, None, 3.0)
    else:
        *_, gradient = trained_pipe.reconstruction_gradient(z_audio, noisy, t0.reshape(1), None, clean, 3.0)
    shift = states[50.0][0] - states[0.0][0]
    torch.testing.assert_close(shift, -50.0 * (1 - alpha[t1]).sqrt() * gradient, rtol=1e-4, atol=1e-6)
    assert shift.abs().max() > 1e-4


def test_reconstruction_guidance_leaves_joint_generation_alone(trained_pipe):
    runs = [trained_pipe(reconstruction_scale=scale, generator=seeded(), output_type="latent", **FAST).video
            for scale in (0.0, 100.0)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


@pytest.mark.parametrize("given", [None, "audio", "video"])
def test_resampling_retakes_the_noisiest_steps_in_every_mode(trained_pipe, monkeypatch, given):
    """With U rounds over 10 steps and a share of 0.6, the first 6 steps are each taken U times: 10 + 6(U − 1) DiT
    calls (the given stream forward-noised afresh each time); one round is the paper's sampler, draw for draw."""
    calls = []
    forward = trained_pipe.transformer.forward

    def counted(*args, **kwargs):
        calls.append(int(args[2][0]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(trained_pipe.transformer, "forward", counted)
    condition = {"audio": {"audio": hum(trained_pipe)}, "video": {"video": clip(trained_pipe)}}.get(given, {})
    plain = trained_pipe(**condition, num_inference_steps=10, generator=seeded(), output_type="latent")
    assert len(calls) == 10
    calls.clear()
    once = trained_pipe(**condition, num_inference_steps=10, resample_rounds=1, generator=seeded(),
                        output_type="latent")
    torch.testing.assert_close(once.video, plain.video, rtol=0, atol=0)
    calls.clear()
    thrice = trained_pipe(**condition, num_inference_steps=10, resample_rounds=3, generator=seeded(),
                          output_type="latent")
    timesteps = sorted(set(calls), reverse=True)
    assert len(calls) == 10 + 6 * 2 and calls == [t for t in timesteps for _ in range(3 if t in timesteps[:6] else 1)]
    generated = "audio" if given == "video" else "video"
    assert not torch.allclose(getattr(thrice, generated), getattr(plain, generated))


@pytest.mark.parametrize(("kwargs", "message"), [({"resample_rounds": 0}, "resample_rounds"),
                                                 ({"resample_rounds": 1.5}, "resample_rounds"),
                                                 ({"resample_share": 1.5}, "resample_share")])
def test_bad_resampling_settings_get_plain_messages(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(output_type="latent", **kwargs)


def test_save_then_load_gives_equal_outputs(trained_pipe, tmp_path):
    trained_pipe.save_pretrained(tmp_path / "mm_ldm")
    assert (tmp_path / "mm_ldm" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MMLDMPipeline.from_pretrained(tmp_path / "mm_ldm")
    sound = hum(trained_pipe)
    for kwargs in ({"output_type": "latent"}, {"audio": sound}):
        first = trained_pipe(generator=seeded(4), **FAST, **kwargs)
        second = loaded(generator=seeded(4), **FAST, **kwargs)
        for ours, theirs in zip(first.to_tuple(), second.to_tuple()):
            if isinstance(ours, torch.Tensor):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
            else:
                np.testing.assert_array_equal(ours, theirs)


def test_loading_a_folder_that_is_not_a_saved_pipeline_is_a_plain_error(tmp_path):
    with pytest.raises(ValueError, match="not a saved MM-LDM pipeline"):
        MMLDMPipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize("output_type", ["latent", "pt"])
def test_same_seed_same_output_and_a_batch_equals_its_singles(trained_pipe, output_type):
    batch = trained_pipe(num_samples=2, generator=[seeded(1), seeded(2)], output_type=output_type, **FAST)
    for index, seed in enumerate((1, 2)):
        single = trained_pipe(generator=seeded(seed), output_type=output_type, **FAST)
        again = trained_pipe(generator=seeded(seed), output_type=output_type, **FAST)
        torch.testing.assert_close(single.video, again.video, rtol=0, atol=0)
        torch.testing.assert_close(batch.video[index : index + 1], single.video, rtol=1e-4, atol=1e-4)
        # Griffin-Lim's 32 iterations magnify the batch's rounding differences in the decoded audio image (~1e-6)
        # to ~8e-3 in the waveform (measured 2026-12-07); the latents agree to 1e-5.
        tolerance = 1e-4 if output_type == "latent" else 2e-2
        torch.testing.assert_close(batch.audio[index : index + 1], single.audio, rtol=0, atol=tolerance)
    other = trained_pipe(generator=seeded(3), output_type=output_type, **FAST)
    assert not torch.allclose(other.video, batch.video[:1])


def test_callback_gets_previews_and_interrupt_stops_sampling(pipe):
    steps = []

    def callback(p, step, timestep, kwargs):
        steps.append(step)
        preview = kwargs["preview"]
        assert preview.shape == (1, 4, 4, 3) and preview.dtype == np.uint8
        assert kwargs["denoised_video"].shape == (1, 4, 4, 4)
        if step == 1:
            p._interrupt = True
        return {"audio_latents": torch.zeros_like(kwargs["audio_latents"])}

    out = pipe(generator=seeded(), output_type="latent", num_inference_steps=10, callback_on_step_end=callback)
    assert steps == [0, 1]
    assert not out.audio.any()  # the callback's returned state was kept
    with pytest.raises(ValueError, match="offers"):
        pipe(output_type="latent", callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["nope"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"audio": "both", "video": "both"}, "at most one"),
    ({"audio": np.zeros(100, np.float32)}, "12800 samples"),
    ({"audio": np.full(12800, np.nan, np.float32)}, "finite float waveform"),
    ({"video": np.zeros((8, 32, 32, 3), np.uint8)}, "resize and trim"),
    ({"video": np.full((8, 16, 16, 3), 2.0, np.float32)}, "uint8 in 0..255"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"guidance_scale": -1.0}, "guidance_scale"),
    ({"reconstruction_scale": float("inf")}, "reconstruction_scale"),
    ({"decoder_guidance_scale": float("nan")}, "decoder_guidance_scale"),
    ({"output_type": "gif"}, "output_type"),
    ({"latents": (torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 3, 3))}, r"video noise .* shape \(1, 4, 4, 4\)"),
    ({"num_samples": 2, "generator": [torch.Generator()]}, "one generator per sample"),
])
def test_bad_inputs_get_plain_messages(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_given_latents_are_the_initial_noise(trained_pipe):
    generator = seeded(7)
    noise = tuple(torch.randn(shape, generator=generator) for shape in trained_pipe.latent_shapes(1))
    drawn = trained_pipe(generator=seeded(7), output_type="latent", **FAST)
    given = trained_pipe(latents=noise, output_type="latent", **FAST)
    torch.testing.assert_close(given.video, drawn.video, rtol=0, atol=0)


def test_the_decoders_sampler_reads_what_the_decoder_predicts(pipe, monkeypatch):
    """An oracle decoder that knows the clean latents, answering in ε or in v: the same samples when the sampler
    reads its answer as the autoencoder's config says, other samples when it does not."""
    ae, scheduler = pipe.autoencoder, make_scheduler()
    shape = (ae.config.vae_channels, ae.config.vae_size, ae.config.vae_size)
    clean = torch.randn(shape, generator=seeded(5))

    def oracle(kind):
        def denoise_with(noisy, timesteps, conditions):
            noise = (noisy - scheduler.alphas_cumprod[timesteps[0]].sqrt() * clean) / (
                1 - scheduler.alphas_cumprod[timesteps[0]]).sqrt()
            return noise if kind == "epsilon" else scheduler.get_velocity(clean.expand_as(noisy), noise, timesteps)
        return denoise_with

    z_audio, z_video = (torch.randn(1, *s, generator=seeded(6)) for s in ae.latent_shapes())
    decoded = {}
    for config_kind, answer_kind in (("epsilon", "epsilon"), ("v_prediction", "v_prediction"),
                                     ("epsilon", "v_prediction")):
        ae.register_to_config(decoder_prediction_type=config_kind)
        monkeypatch.setattr(ae, "denoise_with", oracle(answer_kind))
        decoded[config_kind, answer_kind] = pipe.decode_latents(z_audio, z_video, 4, 2.5, seeded(7))
    for ours, theirs in zip(decoded["epsilon", "epsilon"], decoded["v_prediction", "v_prediction"]):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert (decoded["epsilon", "v_prediction"][1] - decoded["epsilon", "epsilon"][1]).abs().max() > 0.1
