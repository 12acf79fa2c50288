"""LoRA adapters with `peft`, shared by every generator that offers them (Images that Sound, MM-Diffusion).

LoRA (Hu et al. 2021) adds B·A·x·(α / r) to each targeted layer (linear or convolution: peft has both). B starts at
zero, so an untrained adapter is the base model exactly, and a scale of 0 gives the base output exactly (the added
term is multiplied by 0). The base weights are never changed: removing the adapter gives the base model back.

An adapter is a folder written by `save_adapter`: `adapter.safetensors` (the LoRA matrices under the peft keys, each
prefixed by the network it belongs to, e.g. `unet.`) and `adapter.json` ({"format": "synesthesia-lora", "rank",
"alpha", what it applies to...}; each generator's own `lora` module documents its fields).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER = "artist"  # the peft adapter name inside each model
FORMAT = "synesthesia-lora"
WEIGHTS_NAME, CONFIG_NAME = "adapter.safetensors", "adapter.json"


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
    """The LoRA matrices of `module` (peft keys), float32 on the CPU."""
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
    """The tensors under `prefix` (e.g. "unet."), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
