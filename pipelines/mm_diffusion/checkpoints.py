"""Loading the released MM-Diffusion checkpoints (`Landscape.pt`, `AIST++.pt`, `*_SR.pt`) safely and with clear errors.

File format: a PyTorch `.pt` holding a plain guided-diffusion style state
dict `{key: tensor}`, keys exactly as `MMDiffusionUNet` / `MMDiffusionSuperResModel` name them
(tests/data/mm_diffusion/mm_diffusion_official_state_dict_shapes.json lists all of them). A `.safetensors` file with
the same keys loads the same way. `.pt` files are read with `torch.load(..., weights_only=True)`: a file holding
anything but tensors and plain containers is refused, never executed.

`OFFICIAL_MODELS` is the one table of the released models and their official flags. The notes give one flag set
for both base models (Landscape and AIST++ share the architecture: 133,675,524 parameters) and one for both SR models
(311,027,910), so keys and shapes tell base from SR but cannot tell Landscape from AIST++; the file name does
(`model.official_model` says which, or lists both when the name does not).

Not in the notes: the dtype the released files store. Any floating dtype is accepted and cast to float32 before
loading (the official `load_state_dict` copies into float32 parameters); `dtype=torch.float16` then applies the
official mixed precision (`convert_to_fp16`, as `--use_fp16 True`): convolutions in float16, norms, embeddings and the
attention softmax in float32.

Saved pipelines (`save_pretrained`, the trainer's output, the bundled studio model) are a folder holding
`model.safetensors` (the same keys) and `model.json` ({"flags": the official flags, ...}). A checkpoint file may have
such a JSON next to it (`Landscape.json` for `Landscape.pt`) naming the flags of a model trained with other flags;
`load_pretrained` reads both layouts.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from pipelines.pipeline_utils import save_weights, write_json

from .modeling_mm_diffusion import MMDiffusionUNet
from .modeling_mm_diffusion_sr import MMDiffusionSuperResModel

CheckpointKind = Literal["base", "sr"]
MODEL_CLASSES: dict[str, type[MMDiffusionUNet | MMDiffusionSuperResModel]] = {
    "base": MMDiffusionUNet,
    "sr": MMDiffusionSuperResModel,
}
SUPPORTED_DTYPES = (torch.float32, torch.float16)
HALF_DTYPES = (torch.float16, torch.bfloat16)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
MAX_LISTED = 5  # offending keys named in an error message

# The released base model: Table A.1 coupled U-Net column as the official scripts' flags (joint-av.md §A3; the flags
# with which the official code reproduces every key and shape of the released files, shapes JSON).
BASE_FLAGS = (
    "--cross_attention_resolutions 2,4,8 --cross_attention_windows 1,4,8 --cross_attention_shift True "
    "--video_attention_resolutions 2,4,8 --audio_attention_resolutions -1 --video_size 16,3,64,64 "
    "--audio_size 1,25600 --learn_sigma False --num_channels 128 --num_head_channels 64 --num_res_blocks 2 "
    "--resblock_updown True --use_scale_shift_norm True"
)
# The released SR model: the official sampling scripts' SR flags (anchors.md §1.3; joint-av.md §A4, Table A.1 SR).
SR_FLAGS = (
    "--sr_attention_resolutions 8,16,32 --large_size 256 --small_size 64 --sr_learn_sigma True "
    "--sr_num_channels 192 --sr_num_heads 4 --sr_num_res_blocks 2 --sr_resblock_updown True "
    "--sr_use_scale_shift_norm True"
)


@dataclass(frozen=True)
class OfficialModel:
    """One released checkpoint: its file stem, which network, the official flags that build it, its size."""

    name: str
    kind: CheckpointKind
    flags: str
    num_params: int


OFFICIAL_MODELS: tuple[OfficialModel, ...] = (
    OfficialModel("Landscape", "base", BASE_FLAGS, 133_675_524),  # paper: "115.13M" (joint-av.md §A3: UNCLEAR)
    OfficialModel("AIST++", "base", BASE_FLAGS, 133_675_524),
    OfficialModel("Landscape_SR", "sr", SR_FLAGS, 311_027_910),  # paper: "311.03M"
    OfficialModel("AIST++_SR", "sr", SR_FLAGS, 311_027_910),
)


# ---------------------------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------------------------


def describe_start(head: bytes) -> str:
    """A plain-language guess at what a file that is not a checkpoint is, from its first bytes."""
    text = head.lstrip()
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights (run `git lfs pull`)"
    if text[:1] == b"<" or b"<html" in text.lower():
        return "it is an HTML page (a failed or blocked download?)"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it is a text file"
    return f"it starts with the bytes {head[:8]!r}"


def looks_like_torch_file(head: bytes) -> bool:
    """`torch.save` writes a zip archive (`PK\\x03\\x04`) or, in the legacy format, a pickle (protocol marker 0x80)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_torch_file(path: Path) -> Any:
    """`torch.load(weights_only=True)` with every failure turned into a ValueError that says what the file is."""
    head = path.open("rb").read(64)
    if not looks_like_torch_file(head):
        raise ValueError(f"{path.name} is not a PyTorch checkpoint: {describe_start(head)}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" ({found.group(1)})" if found else ""
            raise ValueError(
                f"Refused to load {path.name}: it contains Python objects{what} besides tensors, and loading those "
                f"could run arbitrary code. The official checkpoints hold only tensors; use the file from the "
                f"official release, or re-save just its state dict."
            ) from None
        raise ValueError(bad_file_message(path, head, error)) from None
    except Exception as error:  # noqa: BLE001 (zip, pickle, storage, EOF errors: all mean a damaged file)
        raise ValueError(bad_file_message(path, head, error)) from None


def bad_file_message(path: Path, head: bytes, error: Exception) -> str:
    """A file with a torch signature that still fails to load is damaged (the zip directory or pickle is cut)."""
    detail = str(error).splitlines()[0][:120] if str(error) else "unexpected end of file"
    return (f"{path.name} is truncated or corrupt: PyTorch could not read it ({type(error).__name__}: {detail}). "
            f"Download it again.")


def looks_like_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then the JSON header ('{')."""
    return len(head) > 8 and int.from_bytes(head[:8], "little") < 2**27 and head[8:9] == b"{"


def load_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    head = path.open("rb").read(64)
    if not looks_like_safetensors(head):
        raise ValueError(f"{path.name} is not a safetensors file: {describe_start(head)}.")
    try:
        return load_file(path, device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{path.name} is truncated or corrupt ({error}). Download it again.") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `{key: tensor}` state dict of a `.pt` / `.pth` / `.bin` (torch) or `.safetensors` file, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No checkpoint file at {path}: give the local path of the downloaded `.pt` file.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is empty (0 bytes): the download did not complete. Download it again.")
    loaded = load_safetensors_file(path) if path.suffix == ".safetensors" else load_torch_file(path)
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError(f"{path.name} is not a state dict: it holds {type(loaded).__name__} rather than a "
                         f"non-empty {{name: tensor}} mapping.")
    not_tensors = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path.name} is not a plain state dict: entries {not_tensors[:MAX_LISTED]} are not named "
                         f"tensors (a training checkpoint wrapping the weights?). Save only the model's state dict.")
    return dict(loaded)


# ---------------------------------------------------------------------------------------------------------------
# Checking keys and shapes
# ---------------------------------------------------------------------------------------------------------------

Shapes = dict[str, tuple[int, ...]]


def build_on_meta(kind: CheckpointKind, flags: str | Mapping[str, Any]) -> torch.nn.Module:
    """The network for `flags` (an official flag string or a {flag: value} mapping), without allocating weights."""
    cls = MODEL_CLASSES[kind]
    with torch.device("meta"):
        return cls.from_flag_string(flags) if isinstance(flags, str) else cls.from_official_flags(**flags)


@lru_cache(maxsize=8)
def official_shapes(kind: CheckpointKind, flags: str) -> Shapes:
    return {key: tuple(t.shape) for key, t in build_on_meta(kind, flags).state_dict().items()}


def state_dict_shapes(state_dict: Mapping[str, torch.Tensor]) -> Shapes:
    return {key: tuple(t.shape) for key, t in state_dict.items()}


def mismatch_message(name: str, found: Shapes, expected: Shapes, model: str) -> str | None:
    """What is wrong with `found` against `expected`, in words, or None when every key and shape matches."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and found[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return None
    shared = len(expected) - len(missing)
    if shared < len(expected) / 2:
        example = f"unexpected keys such as {unexpected[:3]}" if unexpected else f"none of {missing[:3]}"
        return (f"{name} holds the keys of another model: only {shared} of the {len(expected)} keys of {model} are "
                f"in it (it has {len(found)} keys; {example}).")
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {missing[:MAX_LISTED]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:MAX_LISTED]}")
    if wrong:
        shown = ", ".join(f"{k}: {list(found[k])} in the file, {list(expected[k])} in the model"
                          for k in wrong[:MAX_LISTED])
        parts.append(f"{len(wrong)} keys with wrong shapes, e.g. {shown}")
    return f"{name} does not match {model}: " + "; ".join(parts) + "."


def identify_official_model(state_dict: Mapping[str, torch.Tensor], kind: CheckpointKind,
                            name: str = "the checkpoint") -> list[OfficialModel]:
    """The released models whose keys and shapes `state_dict` has exactly (tensors may be on the meta device).

    Raises a ValueError saying what is wrong when none matches: the other kind's keys (with the `kind` to use),
    another model's keys, missing keys or wrong shapes against the closest released model.
    """
    found = state_dict_shapes(state_dict)
    matches = [m for m in OFFICIAL_MODELS if m.kind == kind and official_shapes(m.kind, m.flags) == found]
    if matches:
        return matches
    other = [m for m in OFFICIAL_MODELS if m.kind != kind and official_shapes(m.kind, m.flags) == found]
    if other:
        raise ValueError(f"{name} is a released {other[0].kind!r} checkpoint ({' / '.join(m.name for m in other)}), "
                         f"not {kind!r}: load it with kind={other[0].kind!r}.")
    reference = next(m for m in OFFICIAL_MODELS if m.kind == kind)
    message = mismatch_message(name, found, official_shapes(kind, reference.flags), f"the released {kind} model")
    raise ValueError(f"{message} Pass `flags=` if it was trained with other official flags.")


def name_from_file(matches: list[OfficialModel], path: Path) -> str:
    """Landscape and AIST++ share their flags: the file name tells them apart ('AIST++_SR.pt', 'landscape_..')."""
    stem = path.stem.lower()
    named = [m.name for m in matches if m.name.lower().split("_")[0].rstrip("+") in stem]
    return named[0] if len(named) == 1 else " or ".join(m.name for m in matches)


# ---------------------------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------------------------


def load_official_checkpoint(
    path: str | Path,
    kind: CheckpointKind = "base",
    flags: str | Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> MMDiffusionUNet | MMDiffusionSuperResModel:
    """Load a released MM-Diffusion checkpoint into its network, checked key by key, in eval mode.

    Args:
        path: a local `.pt` (read with `weights_only=True`) or `.safetensors` file holding the state dict.
        kind: "base" (`Landscape.pt`, `AIST++.pt`: `MMDiffusionUNet`) or "sr" (`*_SR.pt`: `MMDiffusionSuperResModel`).
        flags: the official flags (a flag string or a mapping); None recognises the released model from the keys and
            shapes and uses its flags from `OFFICIAL_MODELS`.
        dtype: torch.float32, or torch.float16 for the official mixed precision (as `use_fp16 True` among `flags`).
        device: where the model goes.
    Returns:
        The model, in eval mode, with `model.official_model` naming the released model ("custom" with `flags`).
    Raises:
        ValueError naming the file and the problem: missing, empty, not a checkpoint, truncated or corrupt, holding
        non-tensor objects, the keys of another model, missing or unexpected keys, wrong shapes, non-finite values.
    """
    if kind not in MODEL_CLASSES:
        raise ValueError(f"`kind` must be 'base' (Landscape.pt, AIST++.pt) or 'sr' (*_SR.pt), got {kind!r}.")
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"`dtype` must be torch.float32 or torch.float16 (official mixed precision), got {dtype}.")
    path = Path(path)
    state_dict = read_state_dict(path)
    if flags is None:
        matches = identify_official_model(state_dict, kind, path.name)
        flags, official_name = matches[0].flags, name_from_file(matches, path)
    else:
        message = mismatch_message(path.name, state_dict_shapes(state_dict),
                                   state_dict_shapes(build_on_meta(kind, flags).state_dict()),
                                   f"the {kind} model built from the given flags")
        if message:
            raise ValueError(message)
        official_name = "custom"
    return build_and_load(state_dict, kind, flags, dtype, device, path.name, official_name)


def build_and_load(state_dict: dict[str, torch.Tensor], kind: CheckpointKind, flags: str | Mapping[str, Any],
                   dtype: torch.dtype, device: torch.device | str, name: str,
                   official_name: str) -> MMDiffusionUNet | MMDiffusionSuperResModel:
    """Build on the meta device and take the file's tensors as the parameters (no second copy of the weights)."""
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: `{key}` holds {tensor.dtype} values; the weights of a model are floats.")
        tensor = tensor.to(torch.float32)  # as the official load into float32 parameters
        if tensor.data_ptr() % 64:  # safetensors hands over unaligned views; CPU kernels would then sum in
            tensor = tensor.clone()  # another order (last-bit differences): own, aligned memory as torch.load's
        state_dict[key] = tensor
        if not torch.isfinite(state_dict[key]).all():
            raise ValueError(f"{name}: `{key}` holds NaN or infinite values; the file is corrupt or came from a "
                             f"diverged run.")
    model = build_on_meta(kind, flags)
    fp16_flag = any(p.dtype == torch.float16 for p in model.parameters())  # `use_fp16 True` among the flags
    model.load_state_dict(state_dict, strict=True, assign=True)  # keys and shapes already checked
    if dtype == torch.float16 or fp16_flag:
        model.convert_to_fp16()  # official `use_fp16`: convolutions in float16, the rest in float32
    model.official_model = official_name
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------
# Saved pipelines: a folder (model.safetensors + model.json) or a checkpoint file with an optional JSON beside it
# ---------------------------------------------------------------------------------------------------------------


def official_precision(torch_dtype: torch.dtype) -> torch.dtype:
    """float32, or the official mixed precision (float16 convolutions) for any half dtype asked for."""
    if torch_dtype == torch.float32:
        return torch.float32
    if torch_dtype in HALF_DTYPES:
        return torch.float16
    raise ValueError(f"`torch_dtype` must be torch.float32 or a half dtype (the official mixed precision), got "
                     f"{torch_dtype}.")


def read_config(path: Path) -> dict[str, Any]:
    """A model.json-style config: {"flags": official flags (a mapping or a flag string), ...}."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} could not be read as JSON ({type(error).__name__}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("flags"), (dict, str)):
        message = f"{path.name} must hold {{\"flags\": {{...}}}} with the model's official flags."
        raise ValueError(message)  # noqa: TRY004 - a malformed file is bad input, not a caller's type error
    return config


def pretrained_files(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The weights file and the config of a saved folder or of a checkpoint file ({} when the file has no JSON beside
    it: a released model, recognised from its keys)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ValueError(f"{path} holds no {CONFIG_FILE}: give a folder written by `save_pretrained` (or the "
                             f"trainer), or a checkpoint file.")
        return path / WEIGHTS_FILE, read_config(path / CONFIG_FILE)
    sidecar = path.with_suffix(".json")
    return path, read_config(sidecar) if sidecar.is_file() else {}


def load_pretrained(path: str | Path, kind: CheckpointKind,
                    torch_dtype: torch.dtype) -> tuple[MMDiffusionUNet | MMDiffusionSuperResModel, dict[str, Any]]:
    """A saved folder or a checkpoint file -> (its network on the CPU, checked key by key, its config)."""
    weights, config = pretrained_files(path)
    model = load_official_checkpoint(weights, kind=kind, flags=config.get("flags"),
                                     dtype=official_precision(torch_dtype))
    return model, config


def official_flags(model: MMDiffusionUNet | MMDiffusionSuperResModel) -> dict[str, Any]:
    """The official flags that build `model` again (recorded by `from_official_flags`)."""
    flags = getattr(model, "official_flags", None)
    if flags is None:
        raise ValueError(f"Only a {type(model).__name__} built from official flags (`from_official_flags`, or loaded "
                         f"from a checkpoint) can be saved: its flags are what builds it again.")
    return flags


def save_pretrained_files(model: MMDiffusionUNet | MMDiffusionSuperResModel, folder: str | Path,
                          config: dict[str, Any], dtype: torch.dtype | None) -> Path:
    """folder/model.safetensors (official key names, optionally cast, e.g. to float16 for bundling) and
    folder/model.json (`config`)."""
    folder = Path(folder)
    save_weights(model, folder / WEIGHTS_FILE, dtype)
    write_json(config, folder / CONFIG_FILE)
    return folder


__all__ = [
    "CONFIG_FILE",
    "OFFICIAL_MODELS",
    "WEIGHTS_FILE",
    "OfficialModel",
    "identify_official_model",
    "load_official_checkpoint",
    "load_pretrained",
    "official_flags",
    "read_state_dict",
    "save_pretrained_files",
]
