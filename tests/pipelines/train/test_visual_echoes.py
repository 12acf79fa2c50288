"""The Visual Echoes trainer end to end on the tiny preset: both stages through the real CLI, resume, and the output
folder loads as a pipeline that samples."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from pipelines.train.__main__ import main
from pipelines.train.visual_echoes import transformer_loss
from pipelines.visual_echoes.modeling_visual_echoes import build_preset
from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline


def test_tiny_training_runs_both_stages_resumes_and_exports_a_loadable_pipeline(tmp_path):
    out = tmp_path / "run"
    common = ["visual_echoes", "--data", "toyworld", "--out", str(out), "--size", "tiny", "--pool", "24",
              "--tokenizer-batch-size", "4", "--batch-size", "8", "--checkpoint-every", "2", "--restart-every", "2",
              "--warmup", "2"]
    main([*common, "--stage", "tokenizers", "--tokenizer-steps", "3"])
    assert (out / "audio_tokenizer" / "config.json").is_file() and (out / "image_tokenizer" / "config.json").is_file()
    main([*common, "--stage", "transformer", "--steps", "2"])
    main([*common, "--stage", "transformer", "--steps", "4", "--resume"])  # continues from step 2
    records = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["stage"] == "transformer"]
    assert steps == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records if r["stage"] == "transformer")
    pipe = VisualEchoesPipeline.from_pretrained(out)
    assert pipe.training_record["size"] == "tiny"
    result = pipe(np.full((16, 16, 3), 0.5, np.float32), num_inference_steps=2, output_type="spectrogram",
                  generator=[torch.Generator().manual_seed(0)])
    assert result.spectrograms.shape == (1, 80, 32)


class FixedLogits(torch.nn.Module):
    """Logits that do not depend on the input tokens (one set per position), so that only the loss's targets can
    change the loss."""

    mask_ids = (16, 16)

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.logits = (torch.randn(1, 10, 16, generator=generator), torch.randn(1, 16, 16, generator=generator))

    def forward(self, audio, image, audio_dropped=None, image_dropped=None):
        return tuple(logits.expand(len(audio), -1, -1) for logits in self.logits)


@pytest.mark.parametrize("task_share", [0.0, 0.5])
def test_the_training_loss_reads_the_targets_at_masked_positions_only(task_share):
    from pipelines.train.visual_echoes import paper_masks, task_masks

    audio, image = torch.randint(0, 16, (4, 10)), torch.randint(0, 16, (4, 16))
    loss, _ = transformer_loss(FixedLogits(), audio, image, torch.Generator().manual_seed(1), task_share=task_share)
    generator = torch.Generator().manual_seed(1)  # the same masks, drawn in the same order
    paper_rows = 4 - round(task_share * 4)
    masks = [torch.cat(parts) for parts in zip(paper_masks(paper_rows, 10, 16, generator, 0.7)[0],
                                                task_masks(4 - paper_rows, 10, 16, generator))]
    changed = [torch.where(m, ids, (ids + 1) % 16) for ids, m in zip((audio, image), masks)]
    same, _ = transformer_loss(FixedLogits(), *changed, torch.Generator().manual_seed(1), task_share=task_share)
    torch.testing.assert_close(loss, same)
    changed = [torch.where(m, (ids + 1) % 16, ids) for ids, m in zip((audio, image), masks)]
    other, _ = transformer_loss(FixedLogits(), *changed, torch.Generator().manual_seed(1), task_share=task_share)
    assert abs(other.item() - loss.item()) > 1e-3


def test_foreground_weights_raise_the_object_against_the_ground_and_keep_mean_one():
    from pipelines.train.visual_echoes import foreground_weights

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 1.0  # one lit pixel on a ground of 0 (the median)
    weights = foreground_weights(x, 3.0)
    expected = torch.full((1, 1, 4, 4), 16 / 19)  # raw weights 1 (15 pixels) and 4 (1 pixel), mean 19/16
    expected[0, 0, 1, 2] = 64 / 19
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(foreground_weights(x, 0.0), torch.ones(1, 1, 4, 4))


def test_the_tokenizer_objective_is_plain_l1_without_weighting_and_weighted_with_it():
    from pipelines.train.visual_echoes import TokenizerObjective, foreground_weights
    from pipelines.visual_echoes.modeling_visual_echoes import TOKENIZER_SIZES, build_tokenizer

    torch.manual_seed(0)
    vq = build_tokenizer(TOKENIZER_SIZES["tiny"]["image"]).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    plain, _, _, _, reconstruction = TokenizerObjective(vq)(x)
    torch.testing.assert_close(plain, torch.nn.functional.l1_loss(reconstruction, x))
    weighted, *_ = TokenizerObjective(vq, 5.0)(x)
    torch.testing.assert_close(weighted, ((reconstruction - x).abs() * foreground_weights(x, 5.0)).mean())


def test_codebook_size_sets_both_tokenizers_and_the_transformer_heads(tmp_path):
    out = tmp_path / "run"
    main(["visual_echoes", "--data", "toyworld", "--out", str(out), "--size", "tiny", "--pool", "8",
          "--codebook-size", "5", "--tokenizer-batch-size", "4", "--tokenizer-steps", "1", "--batch-size", "4",
          "--steps", "1", "--warmup", "1", "--restart-every", "1"])
    pipe = VisualEchoesPipeline.from_pretrained(out)
    assert pipe.audio_tokenizer.config.num_vq_embeddings == 5 and pipe.image_tokenizer.config.num_vq_embeddings == 5
    assert pipe.transformer.codebook_sizes == (5, 5)
    # Fine-tuning keeps the starting codebooks: the folder still fits its preset.
    tuned = tmp_path / "tuned"
    main(["visual_echoes", "--data", "toyworld", "--out", str(tuned), "--init", str(out), "--pool", "8",
          "--stage", "transformer", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--task-share", "0.5"])
    assert VisualEchoesPipeline.from_pretrained(tuned).transformer.codebook_sizes == (5, 5)


def test_codebook_size_keeps_the_preset_by_default_and_is_refused_with_init():
    from pipelines.train.visual_echoes import preset_sizes
    from pipelines.visual_echoes.modeling_visual_echoes import TOKENIZER_SIZES

    assert preset_sizes(argparse.Namespace(size="studio", codebook_size=None)) is TOKENIZER_SIZES["studio"]
    smaller = preset_sizes(argparse.Namespace(size="studio", codebook_size=64))
    assert {name: size.codebook_size for name, size in smaller.items()} == {"audio": 64, "image": 64}
    assert smaller["image"].grid == TOKENIZER_SIZES["studio"]["image"].grid
    with pytest.raises(ValueError, match="--init"):
        preset_sizes(argparse.Namespace(size="studio", codebook_size=64), start=object())
    with pytest.raises(ValueError, match="at least 2"):
        preset_sizes(argparse.Namespace(size="studio", codebook_size=1))


def test_task_masks_put_each_modality_in_the_samplers_states():
    from pipelines.train.visual_echoes import SAMPLER_STATES, task_masks

    audio, image = task_masks(50, 10, 16, torch.Generator().manual_seed(0))
    assert audio.shape == (50, 10) and image.shape == (50, 16)
    for row in range(50):
        for mask, state in zip((audio[row], image[row]), SAMPLER_STATES[row % 5]):
            count = int(mask.sum())
            assert {"given": count == 0, "hidden": count == len(mask), "partly": 1 <= count <= len(mask)}[state]
    partly = audio[[row for row in range(50) if SAMPLER_STATES[row % 5][0] == "partly"]].sum(dim=1)
    assert len(set(partly.tolist())) > 3  # ratios drawn per row


def test_the_task_share_trains_the_samplers_states_on_its_rows_and_zero_keeps_the_papers_loss():
    from pipelines.train.visual_echoes import task_masks

    torch.manual_seed(0)
    _, _, transformer = build_preset("tiny")
    audio, image = torch.randint(0, 16, (5, 10)), torch.randint(0, 16, (5, 16))
    plain, _ = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1))
    none, _ = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1), task_share=0.0)
    torch.testing.assert_close(plain, none)
    # Share 1: every row in a sampler state, nothing dropped, scored on every masked token of the batch.
    _, tasks = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1), task_share=1.0)
    masks = task_masks(5, 10, 16, torch.Generator().manual_seed(1))
    inputs = [torch.where(m, torch.full_like(ids, mask_id), ids)
              for ids, m, mask_id in zip((audio, image), masks, transformer.mask_ids)]
    logits = transformer(*inputs)
    F = torch.nn.functional
    for name, lg, ids, m in zip(("audio_ce", "image_ce"), logits, (audio, image), masks):
        assert tasks[name] == pytest.approx(F.cross_entropy(lg[m], ids[m]).item(), rel=1e-5)


def test_decoder_only_fine_tunes_one_decoder_keeps_the_codes_and_exports_the_starting_transformer(tmp_path):
    start, tuned = tmp_path / "start", tmp_path / "tuned"
    torch.manual_seed(0)
    VisualEchoesPipeline(*build_preset("tiny")).save_pretrained(start)
    main(["visual_echoes", "--data", "toyworld", "--out", str(tuned), "--init", str(start), "--pool", "8",
          "--stage", "tokenizers", "--tokenizers", "image", "--decoder-only", "--tokenizer-steps", "2",
          "--tokenizer-batch-size", "4", "--restart-every", "1", "--gan-weight", "0.1", "--gan-start", "0"])
    before, after = VisualEchoesPipeline.from_pretrained(start), VisualEchoesPipeline.from_pretrained(tuned)

    def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    old, new = before.image_tokenizer, after.image_tokenizer
    assert same(old.encoder, new.encoder) and same(old.quant_conv, new.quant_conv) and same(old.quantize, new.quantize)
    assert not same(old.decoder, new.decoder)
    assert same(before.audio_tokenizer, after.audio_tokenizer) and same(before.transformer, after.transformer)


def test_decoder_only_and_one_tokenizer_need_a_trained_start(tmp_path):
    for flags in (["--decoder-only"], ["--tokenizers", "audio"]):
        with pytest.raises(ValueError, match="--init"):
            main(["visual_echoes", "--data", "toyworld", "--out", str(tmp_path / "run"), "--size", "tiny",
                  "--pool", "8", "--stage", "tokenizers", "--tokenizer-steps", "1", *flags])
