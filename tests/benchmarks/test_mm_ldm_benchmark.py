"""The MM-LDM vs MM-Diffusion benchmark's quick path (tiny presets) runs end to end and writes its record: every
training and sampling row, the speed-ups against the baselines of the same run, both parameter counts. Nothing here
is timed."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import mm_ldm as bench
from pipelines.mm_ldm.modeling_mm_ldm import build_components
from tests.factories import MM_DIFFUSION_GOLDEN as GOLDEN

TRAINING_KEYS = ["mm_diffusion", "mm_ldm_precomputed", "mm_ldm_vae_precomputed", "mm_ldm", "mm_ldm_autoencoder"]
SAMPLING_KEYS = ["mm_diffusion_ddpm", "mm_diffusion_ddim", "mm_ldm", "mm_ldm_precomputed", "mm_diffusion_a2v",
                 "mm_ldm_a2v"]
NETWORKS = {"mm_diffusion_unet", "dit", "autoencoder", "autoencoder_encoders", "kl_vae", "kl_vae_encoder"}


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "mm_ldm.json"
    returned = bench.main(["--quick", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))  # what is written is what was measured
    return written


def test_the_record_names_its_clip_setup_and_machine(record):
    assert {"date", "machine", "load_average_1_5_15_min", "timer", "presets", "clip", "batch", "repeats", "sampler_steps", "training",
            "sampling", "parameters", "paper_table_1"} <= record.keys()
    assert record["presets"] == {"mm_ldm": "tiny", "mm_diffusion": "tiny"}
    assert (record["clip"]["frames"], record["clip"]["height"], record["clip"]["width"]) == (8, 16, 16)
    assert (record["clip"]["audio_samples"], record["clip"]["sample_rate"], record["clip"]["fps"]) == (12800, 16000, 10)
    assert record["batch"] == 2 and record["repeats"] == 1
    assert record["sampler_steps"] == {"ddpm": 2, "ddim": 2, "dit": 2, "decoder": 2}


def test_every_row_is_there_with_its_ratios_to_the_baselines(record):
    training, sampling = record["training"], record["sampling"]
    assert [row["key"] for row in training] == TRAINING_KEYS
    assert [row["key"] for row in sampling] == SAMPLING_KEYS
    ratios = {"speedup_vs_mm_diffusion", "flop_ratio_vs_mm_diffusion", "paper_size_flop_ratio_vs_mm_diffusion"}
    assert all(ratios <= row.keys() for row in training)
    assert all({"speedup_vs_ddpm", "speedup_vs_ddim", "speedup_vs_mm_diffusion_a2v"} <= row.keys() for row in sampling)


def test_ratios_are_the_baselines_value_over_each_rows():
    rows = [{"flops": 12.0}, {"flops": 3.0}, {"flops": 48.0}]
    bench.add_ratios(rows, rows[0], "flops", "ratio")
    assert [row["ratio"] for row in rows] == [1.0, 4.0, 0.25]


def test_the_paper_speedups_are_table_1s_against_mm_diffusion_at_64_and_128(record):
    by_key = {row["key"]: row["paper_speedup"] for row in record["training"]}
    assert by_key["mm_ldm_precomputed"] == pytest.approx({"vs_mm_diffusion_64": 1.70 / 0.38,
                                                          "vs_mm_diffusion_128": 2.36 / 0.38})  # the paper's "6x"
    assert by_key["mm_ldm"]["vs_mm_diffusion_128"] == pytest.approx(2.36 / 0.46)
    assert by_key["mm_diffusion"] is None and by_key["mm_ldm_autoencoder"] is None
    by_key = {row["key"]: row["paper_speedup"] for row in record["sampling"]}
    assert by_key["mm_ldm_precomputed"]["vs_mm_diffusion_128"] == pytest.approx(90.0 / 8.7)  # the paper's "10x"
    assert by_key["mm_diffusion_ddim"] is None and by_key["mm_diffusion_ddpm"] is None


def test_running_the_encoders_adds_their_flops(record):
    flops = {row["key"]: (row["flops"], row["paper_size_flops"]) for row in record["training"]}
    for size in (0, 1):
        assert flops["mm_ldm_precomputed"][size] < flops["mm_ldm_vae_precomputed"][size] < flops["mm_ldm"][size]


def test_flops_are_counted_on_the_meta_device_with_a_known_answer():
    layer = torch.nn.Linear(3, 5, device="meta")
    x = torch.zeros(7, 3, device="meta")
    assert bench.counted_flops(lambda: layer(x)) == 2 * 7 * 3 * 5  # a multiply and an add per weight per row
    assert bench.counted_flops(lambda: layer(x).sum().backward()) == 2 * 2 * 7 * 3 * 5  # + the weight's gradient
    x.requires_grad_()
    assert bench.counted_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 7 * 3 * 5  # + the input's gradient


def test_parameter_counts_of_the_timed_and_the_paper_networks(record):
    timed, paper = record["parameters"]["timed"], record["parameters"]["paper"]
    assert timed.keys() == paper.keys() == NETWORKS
    released = json.loads((GOLDEN / "mm_diffusion_official_state_dict_shapes.json").read_text())
    assert paper["mm_diffusion_unet"] == released["mm_diffusion_base_64"]["num_params"]  # the released Landscape U-Net
    tiny = build_components("tiny")
    assert timed["dit"] == sum(p.numel() for p in tiny["transformer"].parameters())
    assert timed["kl_vae"] == sum(p.numel() for p in tiny["vae"].parameters())
    for parts, whole in (("autoencoder_encoders", "autoencoder"), ("kl_vae_encoder", "kl_vae")):
        assert 0 < timed[parts] < timed[whole] and 0 < paper[parts] < paper[whole]


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
