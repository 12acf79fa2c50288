"""The retrieval bank of the physics-driven impact model (Su et al., CVPR 2023, Sec. 3.2, test time): keys ν_train,
values μ_train, and per entry the sparse `refined` modes (≤ 64) and residual parameters of the clip, so the app can
show, play and edit the retrieved physics. Nearest neighbour by L2 distance (the paper) or L1 (the code's
`query_latents.py`). Saved as `bank.safetensors` (float32 arrays) and `bank.json` (entry count and labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pipelines.impact_sound.modal import Modes
from pipelines.impact_sound.residual import SAMPLE_RATE, ResidualParams
from pipelines.pipeline_utils import read_json, write_json

MAX_BANK_MODES = 64  # `refined` modes kept per retrieval-bank entry
TENSORS_NAME, LABELS_NAME = "bank.safetensors", "bank.json"


@dataclass
class BankEntry:
    """One retrieved training clip: its bank index, distance to the query, μ [256], sparse `refined` modes, residual
    parameters, and its label (material) when known."""

    index: int
    distance: float
    mu: np.ndarray
    modes: Modes
    residual: ResidualParams
    label: str | None = None


class RetrievalBank:
    """Training (ν, μ) pairs plus each clip's editable physics; nearest-neighbour look-up by ν.

    Arrays (float32 tensors): keys [N, visual_dim], values [N, 256], mode_frequencies/powers/decays
    [N, MAX_BANK_MODES] (padded; mode_counts [N] says how many are real), residual_gains/decays [N, M].
    """

    TENSORS = ("keys", "values", "mode_frequencies", "mode_powers", "mode_decays", "mode_counts",
               "residual_gains", "residual_decays")

    def __init__(self, keys, values, mode_frequencies, mode_powers, mode_decays, mode_counts, residual_gains,
                 residual_decays, labels: list[str] | None = None) -> None:
        self.keys = torch.as_tensor(keys, dtype=torch.float32)
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.mode_frequencies = torch.as_tensor(mode_frequencies, dtype=torch.float32)
        self.mode_powers = torch.as_tensor(mode_powers, dtype=torch.float32)
        self.mode_decays = torch.as_tensor(mode_decays, dtype=torch.float32)
        self.mode_counts = torch.as_tensor(mode_counts, dtype=torch.int64)
        self.residual_gains = torch.as_tensor(residual_gains, dtype=torch.float32)
        self.residual_decays = torch.as_tensor(residual_decays, dtype=torch.float32)
        self.labels = None if labels is None else [str(label) for label in labels]
        n = len(self.keys)
        if n == 0 or any(len(getattr(self, name)) != n for name in self.TENSORS):
            raise ValueError("a retrieval bank needs at least one entry and the same number of rows in every array")
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"got {len(self.labels)} labels for {n} bank entries")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, keys: torch.Tensor, values: torch.Tensor, modes: list[Modes], residuals: list[ResidualParams],
              labels: list[str] | None = None, max_modes: int = MAX_BANK_MODES) -> RetrievalBank:
        """From per-clip sparse modes (the strongest `max_modes` kept) and residual parameters."""
        n = len(modes)
        arrays = np.zeros((3, n, max_modes), dtype=np.float32)
        counts = np.zeros(n, dtype=np.int64)
        for row, clip_modes in enumerate(modes):
            keep = np.sort(np.argsort(-clip_modes.powers, kind="stable")[:max_modes])
            counts[row] = len(keep)
            for k, values_ in enumerate((clip_modes.frequencies, clip_modes.powers, clip_modes.decays)):
                arrays[k, row, : len(keep)] = values_[keep]
        gains = np.stack([r.gains for r in residuals]).astype(np.float32)
        decays = np.stack([r.decays for r in residuals]).astype(np.float32)
        return cls(keys.detach().float().cpu(), values.detach().float().cpu(), *arrays, counts, gains, decays,
                   labels)

    def query(self, features: torch.Tensor, metric: Literal["l2", "l1"] = "l2") -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest key of each row of features [B, visual_dim] → (indices [B], distances [B])."""
        if metric not in ("l2", "l1"):
            raise ValueError(f"`metric` must be \"l2\" (the paper) or \"l1\" (the code), got {metric!r}")
        features = torch.as_tensor(features, dtype=torch.float32).reshape(-1, self.keys.shape[1])
        distances = torch.cdist(features.cpu(), self.keys, p=2.0 if metric == "l2" else 1.0,
                                compute_mode="donot_use_mm_for_euclid_dist")
        best, index = distances.min(dim=1)
        return index, best

    def entry(self, index: int, distance: float = 0.0) -> BankEntry:
        count = int(self.mode_counts[index])
        modes = Modes(self.mode_frequencies[index, :count].double().numpy(),
                      self.mode_powers[index, :count].double().numpy(),
                      self.mode_decays[index, :count].double().numpy(), sample_rate=SAMPLE_RATE)
        residual = ResidualParams(self.residual_gains[index].double().numpy(),
                                  self.residual_decays[index].double().numpy())
        label = None if self.labels is None else self.labels[index]
        return BankEntry(int(index), float(distance), self.values[index].numpy().copy(), modes, residual, label)

    def save(self, folder: str | Path) -> None:
        """`bank.safetensors` (the float32 arrays) and `bank.json` (entry count and labels) in `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({key: getattr(self, key).contiguous() for key in self.TENSORS}, str(folder / TENSORS_NAME))
        write_json({"entries": len(self), "labels": self.labels}, folder / LABELS_NAME)

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalBank:
        from safetensors.torch import load_file

        tensors = load_file(str(Path(folder) / TENSORS_NAME))
        return cls(*(tensors[key] for key in cls.TENSORS), labels=read_json(Path(folder) / LABELS_NAME).get("labels"))
