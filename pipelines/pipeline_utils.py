"""The one base every studio generator stands on: loading, saving, devices, outputs, step callbacks and interrupts.

Every generator's pipeline subclasses `StudioPipeline` (itself diffusers' `DiffusionPipeline`) and keeps the same
contract, so the registry, the tabs, the trainers and the tests treat them alike:

- `from_pretrained(folder_or_repo, torch_dtype=...)` and `save_pretrained(folder)` round-trip: what a trainer saves
  is exactly what the registry loads, and `save → load` gives the same seeded output;
- `.to(device, dtype)`, `.device`, `.dtype` over every registered network (plain `nn.Module`s included);
- `__call__(..., generator, output_type, return_dict, callback_on_step_end, callback_on_step_end_tensor_inputs)`
  returning a `BaseOutput` dataclass (or a tuple with `return_dict=False`);
- one step callback in diffusers' form, `callback_on_step_end(pipe, step, timestep, callback_kwargs)`, where
  `callback_kwargs` holds the asked-for names of the pipeline's `_callback_tensor_inputs` (always including
  `"preview"`: what the UI shows, a numpy array); values are computed only when the callback reads them, so a
  callback that looks at every fifth step pays for previews only there;
- one interrupt flag, diffusers' own: setting `pipe._interrupt = True` (from a callback or another thread) stops
  sampling after the current step; loops check `pipe.interrupt`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

__all__ = ["BaseOutput", "LazyKwargs", "StepCallback", "StudioPipeline", "load_weights", "read_json", "save_module",
           "save_weights", "write_json"]

StepCallback = Callable[["StudioPipeline", int, int, Mapping[str, Any]], "dict | None"]


class LazyKwargs(Mapping):
    """The `callback_kwargs` of one step: each value is computed (once) when the callback first reads it."""

    def __init__(self, makers: Mapping[str, Callable[[], Any]]):
        self._makers, self._values = dict(makers), {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = self._makers[name]()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


class StudioPipeline(DiffusionPipeline):
    """Base of every generator pipeline (see the module docstring for the contract).

    Subclasses register their networks with `register_modules`, implement `from_pretrained` / `save_pretrained`, call
    `self.start_sampling(...)` at the top of `__call__`, stop their loop when `self.interrupt` is set, and hand every
    step to `self.step_end(...)`.
    """

    _callback_tensor_inputs: ClassVar[list[str]] = ["preview"]

    # Devices -----------------------------------------------------------------------------------------------------
    def networks(self) -> list[torch.nn.Module]:
        """Every registered component that is a torch module."""
        return [module for module in self.components.values() if isinstance(module, torch.nn.Module)]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> StudioPipeline:
        """Move (and optionally cast) every network; returns the pipeline."""
        # Only what is asked for: diffusers models warn about casting whenever a `dtype` keyword is passed, even None.
        moves = {name: value for name, value in (("device", device), ("dtype", dtype)) if value is not None}
        for module in self.networks():
            module.to(**moves)
        return self

    @property
    def device(self) -> torch.device:
        return next((p.device for m in self.networks() for p in m.parameters()), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        return next((p.dtype for m in self.networks() for p in m.parameters()), torch.float32)

    # Interrupt ---------------------------------------------------------------------------------------------------
    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (from a callback or another thread) to stop after the current step."""
        return getattr(self, "_interrupt", False)

    # Step callback -----------------------------------------------------------------------------------------------
    def start_sampling(self, callback_on_step_end: StepCallback | None, tensor_inputs: list[str] | None) -> None:
        """Clear the interrupt flag and check the callback's asked-for names (a `ValueError` names the bad ones)."""
        self._interrupt = False
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise ValueError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}")
        unknown = sorted(set(tensor_inputs or ()) - set(self._callback_tensor_inputs))
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` has {unknown}; {type(self).__name__} offers "
                             f"{self._callback_tensor_inputs}")

    def step_end(self, callback_on_step_end: StepCallback | None, step: int, timestep: int,
                 tensor_inputs: list[str] | None, **makers: Callable[[], Any]) -> dict:
        """Call the callback with the asked-for values (computed lazily); returns the tensors it hands back."""
        if callback_on_step_end is None:
            return {}
        names = self._callback_tensor_inputs if tensor_inputs is None else tensor_inputs
        kwargs = LazyKwargs({name: makers[name] for name in names if name in makers})
        return callback_on_step_end(self, step, int(timestep), kwargs) or {}


# Weights and configs on disk: safetensors and JSON only ---------------------------------------------------------------
def save_weights(module: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """A module's state dict as safetensors (optionally cast, e.g. fp16 for bundled studio weights)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: (t.to(dtype) if dtype is not None and t.is_floating_point() else t).detach().contiguous().cpu()
             for name, t in module.state_dict().items()}
    save_file(state, str(path))
    return path


def save_module(module: torch.nn.Module, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
    """A diffusers model's `save_pretrained(folder)` as safetensors, in `dtype` if given (the module is put back in
    its own), without the `_name_or_path` diffusers records on loading (a machine path, meaningless elsewhere)."""
    folder, own = Path(folder), module.dtype
    casting = dtype is not None and dtype != own  # diffusers' `to(dtype)` warns even when nothing changes
    if casting:
        module.to(dtype)
    try:
        module.save_pretrained(folder, safe_serialization=True)
    finally:
        if casting:
            module.to(own)
    config = read_json(folder / "config.json")
    config.pop("_name_or_path", None)
    write_json(config, folder / "config.json")
    return folder


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into `module`, cast to the module's own dtype."""
    from safetensors.torch import load_file

    dtype = next(module.parameters()).dtype
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in load_file(str(path)).items()}
    module.load_state_dict(state, strict=strict)
    return module


def write_json(data: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
