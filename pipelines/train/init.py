"""Where a fine-tune starts (`--init paper|studio|DIR`), shared by every trainer.

- absent: random initialisation (training from scratch), as before;
- `studio`: the bundled weights of the generator, `assets/models/<generator>/` (`pipelines.weights.ASSETS`);
- `paper`: the published weights, where the paper released them (each trainer says where it finds them);
- anything else: a path, a folder written by the pipeline's `save_pretrained` (or by this trainer); MM-Diffusion also
  takes a released checkpoint file (`--init Landscape.pt`).

The architecture then comes from the starting weights: `--size` (and MM-Diffusion's clip options) are ignored, with a
printed message. The optimiser state always starts fresh. `--resume` wins: when OUT holds a checkpoint of a stage,
that stage continues from it (the starting weights are only where the first run began). The exported folder records
the starting point as `"init"` (`init_record`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from pipelines.weights import ASSETS


@dataclass(frozen=True)
class InitSource:
    """A resolved starting point: `kind` is "paper", "studio" or "path"; `path` the folder or file (None for paper
    weights that live in the Hugging Face cache)."""

    kind: str
    path: Path | None = None

    @property
    def label(self) -> str:
        """What the exported record says: "paper", "studio" or the path."""
        return self.kind if self.kind in ("paper", "studio") else str(self.path)


def resolve_init(args: argparse.Namespace, generator: str) -> InitSource | None:
    """The starting point `--init` names, checked to exist (None when training from scratch)."""
    value = getattr(args, "init", None)
    if not value:
        return None
    if value == "paper":
        return InitSource("paper")
    if value == "studio":
        folder = ASSETS / generator
        if not folder.is_dir():
            raise ValueError(f"--init studio: no studio weights are bundled for {generator} (no {folder}); give "
                             f"--init DIR, a folder a previous run wrote")
        return InitSource("studio", folder)
    path = Path(value)
    if not path.exists():
        raise ValueError(f"--init {value}: no such folder (give paper, studio, or a folder save_pretrained wrote)")
    return InitSource("path", path)


def announce(init: InitSource, ignored: str = "--size") -> None:
    """Say that the architecture comes from the starting weights, so the ignored options are not a surprise."""
    print(f"[init] starting from {init.label}: the architecture comes from these weights; {ignored} ignored; "
          f"the optimiser starts fresh")


def init_record(args: argparse.Namespace) -> str:
    """The `"init"` value of a training record: "scratch", "paper", "studio" or the path given."""
    return getattr(args, "init", None) or "scratch"


def refuse_lora(args: argparse.Namespace, generator: str) -> None:
    """Trainers without LoRA support say so plainly instead of silently fine-tuning everything."""
    if getattr(args, "lora_rank", 0):
        raise ValueError(f"--lora-rank is offered for images_that_sound and mm_diffusion; {generator} fine-tunes all "
                         f"its weights (leave --lora-rank out or 0)")
