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


def test_the_training_loss_ignores_unmasked_targets():
    torch.manual_seed(0)
    _, _, transformer = build_preset("tiny")
    audio, image = torch.randint(0, 16, (4, 10)), torch.randint(0, 16, (4, 16))
    loss, losses = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss) and set(losses) >= {"audio_ce", "image_ce"}
    # Same masks (same generator), different targets only where nothing is masked: the same loss.
    from pipelines.visual_echoes.scheduling_visual_echoes import training_masks

    generator = torch.Generator().manual_seed(1)
    masked_a, _, _ = training_masks(4, 10, generator)
    masked_v, _, _ = training_masks(4, 16, generator)
    other_audio = torch.where(masked_a, audio, (audio + 1) % 16)
    other_image = torch.where(masked_v, image, (image + 1) % 16)
    # Unmasked tokens are inputs too, so only the loss's targets may be swapped: compare with the targets' effect
    # removed by feeding identical inputs (the masked positions are [MASK] either way).
    again, _ = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, again)
    assert other_audio.shape == audio.shape and other_image.shape == image.shape


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


def test_task_masks_give_one_modality_whole_and_hide_the_other_from_the_encoder():
    from pipelines.train.visual_echoes import task_masks

    (audio, image), (audio_dropped, image_dropped) = task_masks("image_to_audio", 3, 10, 16)
    assert audio.shape == audio_dropped.shape == (3, 10) and image.shape == image_dropped.shape == (3, 16)
    assert audio.all() and audio_dropped.all() and not image.any() and not image_dropped.any()
    (audio, image), (audio_dropped, image_dropped) = task_masks("audio_to_image", 2, 10, 16)
    assert image.all() and image_dropped.all() and not audio.any() and not audio_dropped.any()


def test_the_task_share_trains_the_samplers_tasks_on_its_rows_and_zero_keeps_the_papers_loss():
    torch.manual_seed(0)
    _, _, transformer = build_preset("tiny")
    audio, image = torch.randint(0, 16, (4, 10)), torch.randint(0, 16, (4, 16))
    plain, _ = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1))
    none, _ = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1), task_share=0.0)
    torch.testing.assert_close(plain, none)
    # Share 1: rows 0-1 image -> sound, rows 2-3 sound -> image, each scored on every token of its hidden modality.
    _, tasks = transformer_loss(transformer, audio, image, torch.Generator().manual_seed(1), task_share=1.0)
    mask_audio, mask_image = transformer.mask_ids
    every, none = torch.ones(2, 10, dtype=torch.bool), torch.zeros(2, 16, dtype=torch.bool)
    logits_a, _ = transformer(torch.full_like(audio[:2], mask_audio), image[:2], every, none)
    _, logits_v = transformer(audio[2:], torch.full_like(image[2:], mask_image), ~every, ~none)
    F = torch.nn.functional
    assert tasks["audio_ce"] == pytest.approx(F.cross_entropy(logits_a.transpose(1, 2), audio[:2]).item(), rel=1e-5)
    assert tasks["image_ce"] == pytest.approx(F.cross_entropy(logits_v.transpose(1, 2), image[2:]).item(), rel=1e-5)
