"""LoRA adapters for Images that Sound's two models (`peft`), and the words a word-level tokenizer learns with them.

An adapter is a folder written by `save_adapter` (the trainer's `--lora-rank` output, `OUT/<model>_lora/`):

- `adapter.safetensors`: the LoRA matrices of the UNet (`unet.<peft key>`), of the text encoder when it was adapted
  (`text_encoder.<peft key>`), and `added_embeddings` [n, width] when the vocabulary grew (below);
- `adapter.json`: {"format": "synesthesia-lora", "model": "image"|"audio", "rank", "alpha", "unet_targets",
  "text_encoder_targets", "added_words", "base": {"init": what the run started from, "unet_parameters",
  "vocab_size"}}.

`ImagesThatSoundPipeline.from_pretrained(OUT)` of a run holding only adapters loads their base (`base.init`) with
them (`from_lora_run`).

LoRA (Hu et al. 2021) adds B·A·x·(α / r) to each targeted linear layer: the UNets' attention projections
(`UNET_TARGETS`) and, optionally, the text encoder's (`TEXT_TARGETS`). B starts at zero, so an untrained adapter is the
base model exactly, and a scale of 0 gives the base output exactly (the added term is multiplied by 0).

Growing the vocabulary: the studio models use a word-level tokenizer over the toy captions, which reads any other
word as [UNK]. A fine-tune on new captions adds their words with fresh random embeddings (the studio text encoder
is random and frozen anyway: the UNet learns to read it); the adapter carries them, and `unload` removes them. A
BPE tokenizer (the paper's CLIP) needs none.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER = "artist"  # the peft adapter name inside each model
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
FORMAT = "synesthesia-lora"
WEIGHTS_NAME, CONFIG_NAME = "adapter.safetensors", "adapter.json"
MODELS = ("image", "audio")


# LoRA layers ---------------------------------------------------------------------------------------------------------
def add_lora(module: torch.nn.Module, rank: int, targets: tuple[str, ...], alpha: float | None = None
             ) -> list[torch.nn.Parameter]:
    """Inject a LoRA of `rank` into `module`'s `targets`, freeze everything else; returns the LoRA parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise ValueError(f"the LoRA rank must be at least 1, got {rank}")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets), lora_dropout=0.0)
    inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    trainable = []
    for name, parameter in module.named_parameters():
        parameter.requires_grad_("lora_" in name)
        if "lora_" in name:
            trainable.append(parameter)
    return trainable


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous() for k, v in
            get_peft_model_state_dict(module, adapter_name=ADAPTER).items()}


def load_lora_state(module: torch.nn.Module, state: dict[str, torch.Tensor], rank: int, alpha: float,
                    targets: tuple[str, ...]) -> None:
    """Inject a LoRA and load its matrices (every one must fit, or a ValueError says the adapter's base differs)."""
    from peft.utils import set_peft_model_state_dict

    add_lora(module, rank, targets, alpha)
    module.requires_grad_(False)
    dtype = next(module.parameters()).dtype
    result = set_peft_model_state_dict(module, {k: v.to(dtype) for k, v in state.items()}, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"the adapter holds {len(unexpected)} matrices this model has no place for (first: "
                         f"{unexpected[0]}): it was trained on another base model")


def set_lora_scale(module: torch.nn.Module, scale: float) -> None:
    """Scale every LoRA term of `module` (0: the base model exactly; 1: as trained)."""
    from peft.tuners.lora import LoraLayer

    for layer in module.modules():
        if isinstance(layer, LoraLayer):
            layer.set_scale(ADAPTER, scale)


def has_lora(module: torch.nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(layer, LoraLayer) for layer in module.modules())


def remove_lora(module: torch.nn.Module) -> None:
    """Put the original layers back (the base weights were never changed)."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(module)


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


def save_adapter(folder: str | Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write adapter.safetensors and adapter.json (see the module docstring)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")
    return folder


def read_adapter(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_NAME} is not a {FORMAT} adapter")
    return config, load_file(str(folder / WEIGHTS_NAME))


def split_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
