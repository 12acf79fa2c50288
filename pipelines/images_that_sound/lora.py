"""LoRA adapters for Images that Sound's two models (`peft`), and the words a word-level tokenizer learns with them.

An adapter is a folder written by `save_adapter` (the trainer's `--lora-rank` output, `OUT/<model>_lora/`):

- `adapter.safetensors`: the LoRA matrices of the UNet (`unet.<peft key>`), of the text encoder when it was adapted
  (`text_encoder.<peft key>`), and `added_embeddings` [n, width] when the vocabulary grew (below);
- `adapter.json`: {"format": "synesthesia-lora", "model": "image"|"audio", "rank", "alpha", "unet_targets",
  "text_encoder_targets", "added_words", "base": {"init": what the run started from, "unet_parameters",
  "vocab_size"}}.

`ImagesThatSoundPipeline.from_pretrained(OUT)` of a run holding only adapters loads their base (`base.init`) with
them (`from_lora_run`).

LoRA (Hu et al. 2021; the peft code shared with MM-Diffusion is `pipelines.lora`) adds B·A·x·(α / r) to each
targeted linear layer: the UNets' attention projections (`UNET_TARGETS`) and, optionally, the text encoder's
(`TEXT_TARGETS`). B starts at zero, so an untrained adapter is the base model exactly, and a scale of 0 gives the base
output exactly (the added term is multiplied by 0).

Growing the vocabulary: the studio models use a word-level tokenizer over the toy captions, which reads any other
word as [UNK]. A fine-tune on new captions adds their words with fresh random embeddings (the studio text encoder
is random and frozen anyway: the UNet learns to read it); the adapter carries them, and `unload` removes them. A
BPE tokenizer (the paper's CLIP) needs none.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.lora import (  # noqa: F401 (re-exported: the pipeline and the trainer call them as lora.*)
    CONFIG_NAME,
    add_lora,
    load_lora_state,
    lora_state,
    read_adapter,
    remove_lora,
    save_adapter,
    set_lora_scale,
    split_state,
)

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
MODELS = ("image", "audio")


# LoRA layers: the shared `pipelines.lora` ----------------------------------------------------------------------------
def lora_parameter_count(module: torch.nn.Module, rank: int, targets: tuple[str, ...]) -> int:
    """Parameters a rank-`rank` LoRA on `targets` adds: r · (in + out) per linear layer (works on the meta device)."""
    return sum(rank * (layer.in_features + layer.out_features) for name, layer in module.named_modules()
               if isinstance(layer, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets))


# Vocabulary of word-level tokenizers ---------------------------------------------------------------------------------
def is_word_level(tokenizer) -> bool:
    from tokenizers import models

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, models.WordLevel)


def unknown_words(tokenizer, captions: list[str]) -> list[str]:
    """Words of `captions` (as the tokenizer normalises and splits them) that a word-level tokenizer lacks."""
    if not is_word_level(tokenizer):
        return []
    backend, vocabulary = tokenizer.backend_tokenizer, tokenizer.get_vocab()
    found: list[str] = []
    for caption in captions:
        text = backend.normalizer.normalize_str(caption) if backend.normalizer else caption
        words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer else text.split()
        found += [w for w in words if w not in vocabulary and w not in found]
    return found


def grown_tokenizer(tokenizer, words: list[str]):
    """A copy of a word-level tokenizer with `words` appended (ids len(tokenizer), len(tokenizer) + 1, ...)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer
    vocabulary = dict(tokenizer.get_vocab())
    vocabulary.update({word: len(tokenizer) + i for i, word in enumerate(words)})
    grown = Tokenizer(models.WordLevel(vocabulary, unk_token=tokenizer.unk_token))
    grown.normalizer, grown.pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=grown, pad_token=tokenizer.pad_token, unk_token=tokenizer.unk_token,
                                   model_max_length=tokenizer.model_max_length)


def new_embeddings(text_encoder, count: int, seed: int) -> torch.Tensor:
    """`count` random token embeddings with the spread of the encoder's own (seeded)."""
    table = text_encoder.get_input_embeddings().weight.detach().float()
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((count, table.shape[1]), generator=generator) * table.std() + table.mean()


def append_embeddings(text_encoder, rows: torch.Tensor) -> None:
    """Grow the encoder's token table by `rows` (the new words' embeddings)."""
    old = text_encoder.get_input_embeddings().weight.shape[0]
    text_encoder.resize_token_embeddings(old + len(rows), mean_resizing=False)
    with torch.no_grad():
        table = text_encoder.get_input_embeddings().weight
        table[old:] = rows.to(table.dtype)


# Adapter folders -----------------------------------------------------------------------------------------------------
def adapter_folder(path: str | Path, model: str) -> Path:
    """`path` itself when it holds adapter.json, else `path/<model>_lora` (a trainer's OUT)."""
    path = Path(path)
    for candidate in (path, path / f"{model}_lora"):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise ValueError(f"{path} holds no LoRA adapter ({CONFIG_NAME}, or {model}_lora/{CONFIG_NAME})")
