"""The physics-driven diffusion model of Impact Sound (pipelines/impact_sound/: modeling_impact_sound.py,
scheduling_impact_sound.py, spectrogram.py, retrieval.py and pipeline_diffusion.py): cosine schedule, forward process,
sampler step, L1 ε loss, physics and visual encoders, U-Net, spectrogram representation, retrieval bank, the pipeline
built from tiny random components, and the bundled studio weights."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from pipelines.audio import peak_normalize_rows, stft_magnitude
from pipelines.impact_sound.modal import Modes, estimate_modes, synthesize
from pipelines.impact_sound.modeling_impact_sound import (
    DECAY_MAX_S,
    DECAY_MIN_S,
    PHYSICS_DIM,
    ImpactDenoiser,
    ImpactDiffusionConfig,
    PhysicsEncoder,
    PhysicsPriors,
    SpectrogramUNet,
    VisualEncoder,
    normalize_priors,
)
from pipelines.impact_sound.modeling_residual import ResidualPredictor, ResidualPredictorConfig
from pipelines.impact_sound.pipeline_diffusion import ImpactDiffusionPipeline, modal_audio, physics_priors_of
from pipelines.impact_sound.residual import ResidualParams, log_spectrogram
from pipelines.impact_sound.retrieval import RetrievalBank
from pipelines.impact_sound.scheduling_impact_sound import DiffusionSchedule, cosine_betas, diffusion_loss, draw_noise
from pipelines.impact_sound.spectrogram import (
    BIN_HZ,
    IMPACT,
    NUM_SAMPLES,
    SAMPLE_RATE,
    SPEC_FRAMES,
    STFT_BINS,
    audio_to_spectrogram,
    frequency_maps,
    row_frequencies,
    spectrogram_to_audio,
    spectrogram_to_magnitude,
)
from tests.factories import ROOT, seeded_generators

BUNDLED = ROOT / "assets" / "models" / "impact_sound"

CLASSES = ("metal", "glass", "wood")
TINY = ImpactDiffusionConfig.preset("tiny", visual_classes=CLASSES)


def impact(frequency: float = 1000.0, t60: float = 0.1, power_db: float = -6.0) -> np.ndarray:
    return synthesize(Modes([frequency], [power_db], [t60]))


def sample(eps_fn, shape: tuple[int, ...], schedule: DiffusionSchedule, generator) -> tuple[torch.Tensor, list]:
    """The ancestral sampler as the pipeline runs it: x_T from `draw_noise`, then `schedule.step` from the last index
    down; returns x_0 and the clipped x̂_0 of every step."""
    x, estimates = draw_noise(shape, generator), []
    for index in reversed(range(len(schedule))):
        t = torch.full((shape[0],), int(schedule.timesteps[index]), dtype=torch.long)
        x, x0 = schedule.step(eps_fn(x, t), index, x, generator)
        estimates.append(x0)
    return x, estimates


def random_priors(n: int, seed: int = 0) -> PhysicsPriors:
    g = torch.Generator().manual_seed(seed)
    centres = torch.arange(STFT_BINS) * BIN_HZ
    return PhysicsPriors(centres + (torch.rand(n, STFT_BINS, generator=g) - 0.5) * BIN_HZ,
                         -80.0 * torch.rand(n, STFT_BINS, generator=g),
                         DECAY_MIN_S + (DECAY_MAX_S - DECAY_MIN_S) * torch.rand(n, STFT_BINS, generator=g),
                         torch.rand(n, 100, generator=g), 1e-5 + 0.5 * torch.rand(n, 100, generator=g))


# --- config ------------------------------------------------------------------------------------------------------


def test_paper_preset_has_the_codes_sizes_and_round_trips_through_json():
    paper = ImpactDiffusionConfig.preset("paper")
    assert (paper.freq_bins, paper.dim, paper.dim_mults, paper.groups) == (1025, 64, (1, 2, 4, 8), 8)
    assert (paper.timesteps, paper.cosine_s, paper.max_beta, paper.num_frames, paper.physics_hidden) == \
        (1000, 0.008, 0.9999, 22, 512)
    assert paper.cond_dim == 256 + 256 + len(paper.visual_classes)  # the code: 256 + 256 + 17
    for config in (paper, ImpactDiffusionConfig.preset("studio", visual_classes=CLASSES), TINY):
        assert ImpactDiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("change", [dict(freq_bins=4), dict(dim=10), dict(visual_classes=("wood",)),
                                    dict(timesteps=1), dict(max_beta=1.0), dict(fps=0.0)])
def test_bad_config_values_are_refused(change):
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **change)


def test_config_from_dict_refuses_foreign_or_unknown_keys():
    with pytest.raises(ValueError, match="not an impact diffusion config"):
        ImpactDiffusionConfig.from_dict({"dim": 8})
    with pytest.raises(ValueError, match="unknown"):
        ImpactDiffusionConfig.from_dict({**TINY.to_dict(), "surprise": 1})
    with pytest.raises(ValueError, match="unknown size preset"):
        ImpactDiffusionConfig.preset("huge")


# --- schedule, forward process, sampler ------------------------------------------------------------------------


def test_cosine_schedule_matches_its_formula_and_ends_in_pure_noise():
    T, s = 1000, 0.008
    schedule = DiffusionSchedule.cosine(T)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 1, 10, 500, 900):  # unclipped region: ᾱ_t = f(t + 1) / f(0)
        assert schedule.alphas_cumprod[t] == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert schedule.betas.max() == pytest.approx(0.9999) and schedule.betas[-1] == pytest.approx(0.9999)
    assert np.all(np.diff(schedule.betas) > 0)
    assert schedule.alphas_cumprod[-1] < 1e-9  # ᾱ_T ≈ 0
    np.testing.assert_allclose(cosine_betas(T, s), schedule.betas)


def test_q_sample_has_the_right_mean_and_variance():
    schedule = DiffusionSchedule.cosine(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1, 1, 1), 0.7, dtype=torch.float64)
    for t in (0, 300, 700, 999):
        index = torch.full((len(x0),), t)
        xt = schedule.q_sample(x0, index, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        a = schedule.alphas_cumprod[t]
        assert float(xt.mean()) == pytest.approx(math.sqrt(a) * 0.7, abs=5e-3)
        assert float(xt.var()) == pytest.approx(1 - a, rel=2e-2, abs=1e-4)


@pytest.mark.parametrize("steps", [1000, 50])
def test_posterior_mean_from_predicted_x0_equals_the_paper_update_eq9(steps):
    """With x̂_0 from ε̂ (unclipped), the q-posterior mean is (x_t − β_t/√(1 − ᾱ_t)·ε̂)/√(1 − β_t) (Eq. 9, σ = 1),
    and its variance β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t)."""
    schedule = DiffusionSchedule.cosine(1000).respaced(steps)
    g = torch.Generator().manual_seed(1)
    xt, eps = torch.randn(6, 1, 4, 5, generator=g, dtype=torch.float64), torch.randn(6, 1, 4, 5, generator=g,
                                                                                     dtype=torch.float64)
    for i in (1, steps // 3, steps - 1):
        index = torch.full((6,), i)
        mean, log_variance = schedule.posterior(schedule.predict_x0(xt, index, eps), xt, index)
        beta, a, a_prev = schedule.betas[i], schedule.alphas_cumprod[i], schedule.alphas_cumprod[i - 1]
        expected = (xt - beta / math.sqrt(1 - a) * eps) / math.sqrt(1 - beta)
        torch.testing.assert_close(mean, expected, rtol=1e-9, atol=1e-9)
        assert float(log_variance.flatten()[0]) == pytest.approx(math.log(beta * (1 - a_prev) / (1 - a)), rel=1e-9)


def test_respacing_keeps_the_marginals_at_the_kept_timesteps():
    full = DiffusionSchedule.cosine(1000)
    spaced = full.respaced(50)
    assert len(spaced) == 50 and spaced.timesteps[0] == 0 and spaced.timesteps[-1] == 999
    np.testing.assert_allclose(spaced.alphas_cumprod, full.alphas_cumprod[spaced.timesteps], rtol=1e-9)
    assert full.respaced(1000) is full
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            full.respaced(bad)


@pytest.mark.parametrize("steps", [20, 7])
def test_sampler_equals_diffusers_ddpm_with_the_same_betas(steps):
    """An independent implementation of the same maths: diffusers' DDPMScheduler with `trained_betas` from the
    cosine function, x_0 clipping to [−1, 1], "fixed_small" variance (custom timesteps when respaced)."""
    T = 20
    schedule = DiffusionSchedule.cosine(T).respaced(steps)

    def eps_fn(x, t):
        return 0.8 * x + 0.1 * torch.sin(t.float())[:, None, None, None]

    ours, _ = sample(eps_fn, (3, 1, 4, 6), schedule, torch.Generator().manual_seed(5))
    reference = DDPMScheduler(num_train_timesteps=T, trained_betas=cosine_betas(T).tolist(), clip_sample=True,
                              clip_sample_range=1.0, variance_type="fixed_small", prediction_type="epsilon")
    reference.set_timesteps(timesteps=[int(t) for t in schedule.timesteps[::-1]])
    generator = torch.Generator().manual_seed(5)
    x = torch.randn((3, 1, 4, 6), generator=generator)
    for t in reference.timesteps:
        x = reference.step(eps_fn(x, t.repeat(3)), t, x, generator=generator).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_sampler_output_lies_in_minus_one_to_one_and_its_estimates_are_clipped():
    schedule = DiffusionSchedule.cosine(30).respaced(10)
    out, estimates = sample(lambda x, t: 50.0 * torch.randn_like(x), (2, 1, 5, 7), schedule,
                            torch.Generator().manual_seed(0))
    assert float(out.abs().max()) <= 1.0 and out.abs().max() > 0.5
    assert len(estimates) == 10 and all(float(x0.abs().max()) <= 1.0 for x0 in estimates)


def test_noise_from_one_generator_per_sample_equals_each_sample_drawn_alone():
    together = draw_noise((2, 1, 3, 4), seeded_generators([4, 9]))
    alone = [draw_noise((1, 1, 3, 4), seeded_generators([seed])) for seed in (4, 9)]
    torch.testing.assert_close(together, torch.cat(alone), rtol=0, atol=0)


def test_l1_epsilon_loss_decreases_on_a_toy_set():
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, freq_bins=16, timesteps=50)
    denoiser = ImpactDenoiser(config)
    schedule = DiffusionSchedule.from_config(config)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tanh(2 * torch.randn(4, 1, 16, SPEC_FRAMES, generator=g))
    priors, nu = random_priors(4), torch.randn(4, 3, generator=g)
    probe_t, probe_noise = torch.randint(0, 50, (64,), generator=g), torch.randn(64, 1, 16, SPEC_FRAMES, generator=g)

    def probe() -> float:
        with torch.no_grad():
            rep = torch.arange(64) % 4
            return float(diffusion_loss(denoiser, schedule, x0[rep], denoiser.physics(priors.select(rep)), nu[rep],
                                        t=probe_t, noise=probe_noise))

    before = probe()
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=2e-3)
    for _ in range(30):
        loss = diffusion_loss(denoiser, schedule, x0, denoiser.physics(priors), nu, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before > 0.7  # an untrained network's |ε̂ − ε| is about E|ε| = 0.80
    assert probe() < 0.75 * before  # measured 0.86 → 0.51


# --- physics and visual encoders ---------------------------------------------------------------------------------


def test_physics_prior_normalisations_on_known_values():
    centres = torch.arange(STFT_BINS) * BIN_HZ
    f = centres.clone()
    f[10] += BIN_HZ / 2  # the top of the bin's search window → +1
    f[11] -= BIN_HZ / 4
    p = torch.full((STFT_BINS,), -40.0)
    p[0], p[1] = 0.0, -80.0
    d = torch.full((STFT_BINS,), DECAY_MIN_S)
    d[1] = DECAY_MAX_S
    d[2] = 0.5 * (DECAY_MIN_S + DECAY_MAX_S)
    w, noise_t = torch.linspace(0.01, 0.99, 100), torch.full((100,), 1e-5)
    noise_t[1] = 1e-5 + 0.5
    nf, np_, nd, nw, nn_ = normalize_priors(PhysicsPriors(f[None], p[None], d[None], w[None], noise_t[None]))
    assert float(nf[0, 0]) == 0.0 and float(nf[0, 10]) == pytest.approx(1.0)
    assert float(nf[0, 11]) == pytest.approx(-0.5)
    assert (float(np_[0, 0]), float(np_[0, 1]), float(np_[0, 2])) == (-1.0, 1.0, 0.0)
    assert float(nd[0, 0]) == pytest.approx(-1.0) and float(nd[0, 1]) == pytest.approx(1.0)
    assert float(nd[0, 2]) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(nw[0], w)
    assert float(nn_[0, 0]) == 0.0 and float(nn_[0, 1]) == pytest.approx(1.0)
    assert (DECAY_MIN_S, DECAY_MAX_S) == pytest.approx((0.5 * 256 / 44100, 44 * 256 / 44100))


def test_paper_extractor_priors_normalise_into_the_unit_range_and_encode_into_minus_one_to_one():
    audio = np.stack([impact(440.0, 0.05), impact(3000.0, 0.5) + 0.01 * np.random.default_rng(0).standard_normal(
        NUM_SAMPLES).astype(np.float32)])
    predictor = ResidualPredictor(ResidualPredictorConfig(d_model=16, n_layers=1, n_heads=2)).eval()
    priors, residuals = physics_priors_of(audio, predictor)
    assert priors.frequencies.shape == (2, STFT_BINS) and priors.gains.shape == (2, 100) and len(residuals) == 2
    for values in normalize_priors(priors):
        assert float(values.min()) >= -1.0 - 1e-4 and float(values.max()) <= 1.0 + 1e-4
    torch.manual_seed(0)
    with torch.no_grad():
        mu = PhysicsEncoder(TINY)(priors)
    assert mu.shape == (2, PHYSICS_DIM) and float(mu.abs().max()) < 1.0
    assert not torch.allclose(mu[0], mu[1])


def test_physics_priors_need_the_paper_extractors_1025_modes():
    with pytest.raises(ValueError, match="1025"):
        PhysicsPriors.stack([Modes([100.0], [0.0], [0.1])], [ResidualParams(np.ones(100), np.ones(100))])


def test_physics_encoder_has_the_paper_branch_widths():
    encoder = PhysicsEncoder(ImpactDiffusionConfig.preset("paper"))
    assert [m.out_features for m in encoder.frequency if isinstance(m, torch.nn.Linear)] == [512, 512, 512, 64]
    assert [m.out_features for m in encoder.gain if isinstance(m, torch.nn.Linear)] == [64, 64, 32]
    assert sum(isinstance(m, torch.nn.PReLU) for m in encoder.decay) == 3
    assert (encoder.out.in_features, encoder.out.out_features) == (256, 256)


def test_visual_encoder_averages_per_frame_logits():
    torch.manual_seed(0)
    encoder = VisualEncoder(TINY).eval()
    frames = torch.rand(2, 5, 16, 16, 3)
    per_frame = encoder.frame_logits(frames)
    assert per_frame.shape == (2, 5, 3)
    torch.testing.assert_close(encoder(frames), per_frame.mean(dim=1))


# --- U-Net ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq_bins, mults", [(33, (1, 2)), (1025, (1, 2, 4, 8))])
def test_unet_keeps_odd_sizes_and_listens_to_its_conditions(freq_bins, mults):
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, freq_bins=freq_bins, dim_mults=mults)
    unet = SpectrogramUNet(config).eval()
    x = torch.randn(1, 1, freq_bins, SPEC_FRAMES)
    t, mu, nu = torch.tensor([3]), torch.zeros(1, PHYSICS_DIM), torch.zeros(1, 3)
    with torch.no_grad():
        out = unet(x, t, mu, nu)
        assert out.shape == x.shape
        assert not torch.allclose(out, unet(x, t, mu + 0.5, nu))
        assert not torch.allclose(out, unet(x, t, mu, nu + 1.0))
        assert not torch.allclose(out, unet(x, torch.tensor([60]), mu, nu))


def test_unet_layout_follows_the_code():
    unet = SpectrogramUNet(ImpactDiffusionConfig.preset("paper"))
    assert unet.init_conv.kernel_size == (7, 7) and unet.init_conv.bias is None
    assert [level[0].conv1.out_channels for level in unet.downs] == [64, 128, 256, 512]
    assert [type(level[3]).__name__ for level in unet.downs] == ["Conv2d"] * 3 + ["Identity"]
    assert unet.downs[0][3].kernel_size == (4, 4) and unet.downs[0][3].stride == (2, 2)
    assert [level[3].kernel_size for level in unet.ups] == [(4, 4)] * 3
    assert unet.downs[0][0].norm1.num_groups == 8 and unet.downs[0][2].heads == 8
    assert unet.downs[0][0].film[1].in_features == 256 + 256 + 10
    assert (unet.final_block.conv1.in_channels, unet.final_conv.out_channels) == (128, 1)


# --- spectrogram representation ---------------------------------------------------------------------------------


def test_full_resolution_spectrogram_is_the_papers_log_spectrogram():
    audio = np.stack([impact(700.0), impact(5000.0, 0.02)])
    spectrogram = audio_to_spectrogram(audio, STFT_BINS)
    assert spectrogram.shape == (2, STFT_BINS, SPEC_FRAMES)
    torch.testing.assert_close(spectrogram, log_spectrogram(torch.from_numpy(audio)), rtol=0, atol=1e-6)
    # Its inverse gives back the magnitude of the peak-normalised clip.
    magnitude = spectrogram_to_magnitude(spectrogram)
    reference = stft_magnitude(peak_normalize_rows(torch.from_numpy(audio)), IMPACT).numpy()
    np.testing.assert_allclose(magnitude, reference, rtol=1e-4, atol=1e-6)


def test_audio_spectrogram_round_trip_by_griffin_lim():
    audio = impact(1500.0, 0.08)
    spectrogram = audio_to_spectrogram(audio, STFT_BINS)
    back = spectrogram_to_audio(spectrogram)
    assert back.shape == (1, NUM_SAMPLES) and back.dtype == np.float32
    original, rebuilt = (stft_magnitude(peak_normalize_rows(torch.from_numpy(clip)), IMPACT)
                         for clip in (audio[None], back))
    convergence = float(torch.linalg.vector_norm(original - rebuilt) / torch.linalg.vector_norm(original))
    assert convergence < 0.2  # measured 0.05-0.15 for single modes
    assert float((audio_to_spectrogram(back, STFT_BINS) - spectrogram).abs().mean()) < 0.05
    np.testing.assert_array_equal(back, spectrogram_to_audio(spectrogram))  # seeded: reproducible


def test_frequency_maps_are_identity_at_full_resolution_and_averages_below():
    down, up = frequency_maps(STFT_BINS)
    torch.testing.assert_close(down, torch.eye(STFT_BINS))
    down, up = frequency_maps(128)
    assert down.shape == (128, STFT_BINS) and up.shape == (STFT_BINS, 128)
    torch.testing.assert_close(down.sum(dim=1), torch.ones(128))
    torch.testing.assert_close(up.sum(dim=1), torch.ones(STFT_BINS))
    rows = row_frequencies(128)
    assert rows[0] == 0.0 and rows[-1] == SAMPLE_RATE / 2 and np.all(np.diff(rows) > 0)
    assert np.diff(rows)[0] < BIN_HZ < np.diff(rows)[-1]  # finer than the bins at the bottom, coarser at the top


@pytest.mark.parametrize("frequency", [150.0, 440.0, 1234.5, 3000.0, 7777.0, 15000.0])
def test_frequency_resampling_keeps_a_tones_energy_at_its_frequency(frequency):
    audio = synthesize(Modes([frequency], [0.0], [2.0]))
    spectrogram = audio_to_spectrogram(audio, 96)[0]  # the studio model's rows
    rows = row_frequencies(96)
    loudest_row = int(spectrogram[:, 10:30].mean(dim=1).argmax())
    assert abs(loudest_row - int(np.argmin(np.abs(rows - frequency)))) <= 1
    # Back on the 1025 bins the energy peaks at the tone's frequency too.
    profile = spectrogram_to_magnitude(spectrogram[None])[0][:, 10:30].mean(axis=1)
    spacing = np.interp(frequency, rows[1:], np.diff(rows))
    assert abs(int(profile.argmax()) * BIN_HZ - frequency) <= max(spacing, BIN_HZ)


def test_spectrogram_refuses_clips_of_the_wrong_length():
    with pytest.raises(ValueError, match="11025 samples"):
        audio_to_spectrogram(np.zeros((1, 1000)), 128)


# --- retrieval bank ------------------------------------------------------------------------------------------------


def make_bank(n: int = 6, seed: int = 0) -> RetrievalBank:
    rng = np.random.default_rng(seed)
    modes = [Modes(rng.uniform(100, 9000, 3 + k), rng.uniform(-40, 0, 3 + k), rng.uniform(0.02, 1.0, 3 + k))
             for k in range(n)]
    residuals = [ResidualParams(rng.uniform(0, 1, 100), rng.uniform(0.01, 0.5, 100)) for _ in range(n)]
    return RetrievalBank.build(torch.from_numpy(rng.normal(size=(n, 3))), torch.from_numpy(rng.normal(size=(n, 256))),
                               modes, residuals, [CLASSES[k % 3] for k in range(n)], max_modes=6)


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_querying_with_a_training_key_returns_its_own_entry(metric):
    bank = make_bank()
    index, distance = bank.query(bank.keys, metric)
    assert index.tolist() == list(range(len(bank))) and float(distance.abs().max()) == 0.0


def test_l2_and_l1_can_disagree_as_the_paper_and_the_code_do():
    bank = RetrievalBank(torch.tensor([[1.0, 1.0], [1.5, 0.0]]), torch.zeros(2, 256), torch.zeros(2, 1),
                         torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(2), torch.zeros(2, 100),
                         torch.ones(2, 100))
    query = torch.zeros(1, 2)
    assert int(bank.query(query, "l2")[0]) == 0  # √2 < 1.5
    assert int(bank.query(query, "l1")[0]) == 1  # 1.5 < 2
    with pytest.raises(ValueError, match="metric"):
        bank.query(query, "cosine")


def test_bank_entries_keep_the_strongest_modes_and_survive_a_save(tmp_path):
    bank = make_bank()
    entry = bank.entry(5)
    assert len(entry.modes) == 6 and entry.label == "wood" and entry.mu.shape == (256,)
    assert len(bank.entry(0).modes) == 3  # fewer real modes than slots: the padding is not a mode
    bank.save(tmp_path)
    loaded = RetrievalBank.load(tmp_path)
    for name in RetrievalBank.TENSORS:
        torch.testing.assert_close(getattr(loaded, name), getattr(bank, name), rtol=0, atol=0)
    assert loaded.labels == bank.labels
    np.testing.assert_allclose(loaded.entry(5).residual.gains, entry.residual.gains)


# --- the pipeline, from tiny random components -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, timesteps=20)
    predictor = ResidualPredictor(ResidualPredictorConfig(d_model=16, n_layers=1, n_heads=2)).eval()
    denoiser, visual = ImpactDenoiser(config), VisualEncoder(config)
    audio = np.stack([impact(f, t) for f, t in ((500.0, 0.3), (2000.0, 0.05), (7000.0, 0.1), (900.0, 1.0))])
    frames = torch.rand(4, config.num_frames, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    priors, residuals = physics_priors_of(audio, predictor)
    with torch.no_grad():
        nu, mu = visual(frames), denoiser.physics(priors)
    modes = [estimate_modes(clip, SAMPLE_RATE, "refined") for clip in audio]
    bank = RetrievalBank.build(nu, mu, modes, residuals, ["wood", "metal", "glass", "wood"])
    pipe = ImpactDiffusionPipeline(denoiser, visual, predictor, bank)
    pipe.training_frames = frames
    return pipe


def generators(count: int, seed: int = 0) -> list[torch.Generator]:
    return seeded_generators(list(range(seed, seed + count)))


def test_pipeline_retrieves_its_own_training_clips(pipeline):
    features = pipeline.visual_features(pipeline.training_frames, hit_frame=pipeline.model_config.num_frames // 2)
    entries = pipeline.retrieve(features)
    assert [e.index for e in entries] == [0, 1, 2, 3] and entries[1].label == "metal"
    assert all(e.distance < 1e-5 for e in entries)
    assert [e.index for e in pipeline.retrieve(features, "l1")] == [0, 1, 2, 3]


def test_pipeline_call_shapes_ranges_callback_and_reproducibility(pipeline):
    frames = np.random.default_rng(1).random((3, 9, 40, 30, 3), dtype=np.float32)  # any size and length
    previews = []

    def every_second_step(pipe, step, timestep, callback_kwargs):
        if step % 2:
            previews.append((step, timestep, callback_kwargs["preview"]))
        return {}

    out = pipeline(frames, num_inference_steps=6, generator=torch.Generator().manual_seed(3),
                   callback_on_step_end=every_second_step)
    assert out.audio.shape == (3, NUM_SAMPLES) and out.audio.dtype == np.float32 and out.sample_rate == SAMPLE_RATE
    assert np.max(np.abs(out.audio)) == pytest.approx(0.9, abs=1e-5)
    assert out.spectrogram.shape == (3, pipeline.model_config.freq_bins, SPEC_FRAMES)
    assert out.spectrogram.min() >= -1.0 and out.spectrogram.max() <= 1.0
    assert out.retrieved.shape == (3,) and set(out.retrieved) <= {0, 1, 2, 3}
    assert [step for step, _, _ in previews] == [1, 3, 5]
    assert [timestep for _, timestep, _ in previews] == [15, 8, 0]  # 20 steps respaced to 6: 19, 15, 11, 8, 4, 0
    last = previews[-1][2]  # pictures of x̂_0: low frequencies in the bottom row, [0, 1]
    assert last.shape == (3, 32, 44) and last.min() >= 0.0 and last.max() <= 1.0
    again = pipeline(frames, num_inference_steps=6, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(out.audio, again.audio)
    as_tuple = pipeline(frames, num_inference_steps=6, generator=torch.Generator().manual_seed(3), return_dict=False)
    np.testing.assert_array_equal(as_tuple[0], out.audio) and np.testing.assert_array_equal(as_tuple[3], out.retrieved)


def test_one_generator_per_clip_makes_a_batch_sample_as_its_clips_alone(pipeline):
    frames = pipeline.training_frames[:2]
    batch = pipeline(frames, num_inference_steps=4, generator=generators(2, seed=5))
    alone = [pipeline(frames[k : k + 1], num_inference_steps=4, generator=generators(1, seed=5 + k))
             for k in range(2)]
    # equal up to the float rounding of batched kernels, which four steps grow to ~1e-4
    np.testing.assert_allclose(batch.spectrogram, np.concatenate([a.spectrogram for a in alone]), atol=1e-3)
    with pytest.raises(ValueError, match="one per clip"):
        pipeline(frames, num_inference_steps=2, generator=generators(3))


def test_the_components_rebuild_the_pipeline(pipeline):
    assert {name for name, _ in pipeline.components.items()} == {"denoiser", "visual_encoder", "residual_predictor",
                                                                 "bank"}
    assert len(pipeline.networks()) == 3
    rebuilt = ImpactDiffusionPipeline(**pipeline.components)
    a = pipeline(pipeline.training_frames[:1], num_inference_steps=2, generator=generators(1))
    b = rebuilt(pipeline.training_frames[:1], num_inference_steps=2, generator=generators(1))
    np.testing.assert_array_equal(a.audio, b.audio)


def test_physics_latent_is_the_encoder_on_the_priors_of_the_synthesised_modes(pipeline):
    modes = Modes([600.0, 1900.0], [-3.0, -12.0], [0.2, 0.05])
    residual = ResidualParams(np.full(100, 0.01), np.full(100, 0.05))
    mu = pipeline.physics_latent(modes, residual)
    assert mu.shape == (256,) and np.abs(mu).max() < 1.0
    audio = synthesize(modes, ceiling=math.inf)
    expected_audio = audio / np.max(np.abs(audio)) + residual.render()
    np.testing.assert_allclose(modal_audio(modes, residual), expected_audio, rtol=1e-5, atol=1e-6)
    priors = pipeline.physics_priors(modal_audio(modes, residual)[None])
    np.testing.assert_allclose(mu, pipeline.denoiser.physics(priors)[0].numpy(), rtol=1e-5, atol=1e-6)
    out = pipeline(pipeline.training_frames[:2], modes=modes, residual=residual, num_inference_steps=3,
                   generator=generators(2))
    assert out.retrieved is None and out.audio.shape == (2, NUM_SAMPLES)


def test_render_hits_windows_each_hit_and_builds_a_soundtrack(pipeline):
    video = np.random.default_rng(2).random((40, 24, 32, 3), dtype=np.float32)
    steps = []
    out = pipeline.render_hits(video, 20.0, [0.1, 1.2, 1.9], num_inference_steps=3, generator=generators(3),
                               callback_on_step_end=lambda pipe, step, t, kwargs: steps.append(step) or {})
    assert steps == [0, 1, 2]
    assert out.audio.shape == (3, NUM_SAMPLES) and out.retrieved.shape == (3,)
    assert out.soundtrack.shape == (round(2.0 * SAMPLE_RATE),) and np.max(np.abs(out.soundtrack)) <= 0.99
    first = round(0.1 * SAMPLE_RATE)
    assert not np.any(out.soundtrack[:first]) and np.any(out.soundtrack[first : first + 100])


def test_save_and_load_round_trip(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    loaded = ImpactDiffusionPipeline.from_pretrained(tmp_path)
    assert loaded.model_config == pipeline.model_config
    a = pipeline(pipeline.training_frames[:2], num_inference_steps=4, generator=generators(2, seed=7))
    b = loaded(pipeline.training_frames[:2], num_inference_steps=4, generator=generators(2, seed=7))
    np.testing.assert_allclose(a.spectrogram, b.spectrogram, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a.retrieved, b.retrieved)
    pipeline.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = ImpactDiffusionPipeline.from_pretrained(tmp_path / "half")
    assert half.dtype == torch.float32 and (tmp_path / "half" / "denoiser.safetensors").stat().st_size < \
        (tmp_path / "denoiser.safetensors").stat().st_size * 0.6
    low = ImpactDiffusionPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)  # the registry's GPU dtype
    assert {p.dtype for m in low.networks() for p in m.parameters()} == {torch.bfloat16} == {low.dtype}
    out = low(pipeline.training_frames[:1], modes=Modes([500.0], [0.0], [0.1]), num_inference_steps=2,
              generator=generators(1))
    assert np.isfinite(out.audio).all()
    with pytest.raises(FileNotFoundError, match="not an impact diffusion model folder"):
        ImpactDiffusionPipeline.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("frames, kwargs, message", [
    (np.zeros((4, 16, 16)), {}, "RGB video frames"),
    (np.full((1, 4, 16, 16, 3), np.nan), {}, "NaN"),
    (np.full((1, 4, 16, 16, 3), 7.0), {}, r"\[0, 1\]"),
    (np.zeros((1, 4, 16, 16, 3)), {"hit_frame": 9}, "hit_frame"),
    (np.zeros((2, 4, 16, 16, 3)), {"hit_frame": [1, 2, 3]}, "one frame number per clip"),
    (np.zeros((1, 4, 16, 16, 3)), {"hit_frame": 1.5}, "whole frame numbers"),
    (np.zeros((1, 4, 16, 16, 3)), {"num_inference_steps": 0}, "num_inference_steps"),
    (np.zeros((1, 4, 16, 16, 3)), {"residual": ResidualParams(np.ones(100), np.ones(100))}, "needs `modes`"),
    (np.zeros((1, 4, 16, 16, 3)), {"modes": Modes([500.0], [-400.0], [0.1])}, "no sound"),
    (np.zeros((1, 4, 16, 16, 3)), {"modes": "glass"}, "Modes object"),
])
def test_bad_inputs_get_clear_messages(pipeline, frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline(frames, **kwargs)


def test_bad_retrieval_and_hit_inputs_get_clear_messages(pipeline):
    with pytest.raises(ValueError, match="visual features"):
        pipeline.retrieve(np.zeros((1, 7)))
    video = np.zeros((10, 8, 8, 3))
    with pytest.raises(ValueError, match="fps"):
        pipeline.render_hits(video, 0.0, [0.1])
    with pytest.raises(ValueError, match="inside the video"):
        pipeline.render_hits(video, 10.0, [5.0])
    with pytest.raises(ValueError, match="between 1 and"):
        pipeline.render_hits(video, 10.0, [])


# --- the bundled studio weights ----------------------------------------------------------------------------------


def test_bundled_studio_weights_load_and_tell_glass_from_wood():
    """assets/models/impact_sound (TRAINING.md): the bank answers its own keys, and on fresh toy clips the generated
    glass impacts ring on after 100 ms while the wooden ones have died away (energy share after 0.1 s)."""

    from pipelines.toyworld.impacts import sample_impacts

    pipe = ImpactDiffusionPipeline.from_pretrained(BUNDLED)
    assert pipe.model_config.freq_bins == 96 and pipe.model_config.timesteps == 1000 and len(pipe.bank) == 512
    assert [e.index for e in pipe.retrieve(pipe.bank.keys[:20])] == list(range(20))
    glass, wood = sample_impacts(2, 301, materials=("glass",)), sample_impacts(2, 401, materials=("wood",))
    out = pipe(np.concatenate([glass.frames, wood.frames]), hit_frame=np.concatenate([glass.hit_frame,
                                                                                      wood.hit_frame]),
               num_inference_steps=20, generator=torch.Generator().manual_seed(1))
    assert [pipe.bank.labels[i] for i in out.retrieved] == ["glass", "glass", "wood", "wood"]
    energy = out.audio.astype(np.float64) ** 2
    tail = energy[:, round(0.1 * SAMPLE_RATE) :].sum(axis=1) / energy.sum(axis=1)
    assert tail[:2].mean() > 3.0 * tail[2:].mean()  # measured 0.19 vs 0.01


def test_the_bundled_folder_round_trips_through_save_pretrained(tmp_path):
    """The bundled weights load unchanged, save_pretrained writes the bundled layout (same files, same tensor names,
    same bank), and the saved copy gives the same seeded output."""
    from safetensors import safe_open

    bundled = ImpactDiffusionPipeline.from_pretrained(BUNDLED)
    saved = bundled.save_pretrained(tmp_path / "copy")
    layout = {"config.json", "denoiser.safetensors", "visual_encoder.safetensors", "bank.json", "bank.safetensors",
              "residual/config.json", "residual/model.safetensors"}
    assert {str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()} == layout
    for name in sorted(layout - {"config.json", "bank.json", "residual/config.json"}):
        with safe_open(BUNDLED / name, "pt") as original, safe_open(saved / name, "pt") as copy:
            assert set(original.keys()) == set(copy.keys())
            assert all(torch.equal(original.get_tensor(key).float(), copy.get_tensor(key).float())
                       for key in original.keys())
    copy = ImpactDiffusionPipeline.from_pretrained(saved)
    frames = np.random.default_rng(3).random((2, 8, 32, 32, 3), dtype=np.float32)
    a = bundled(frames, num_inference_steps=5, generator=generators(2, seed=11))
    b = copy(frames, num_inference_steps=5, generator=generators(2, seed=11))
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.retrieved, b.retrieved)
