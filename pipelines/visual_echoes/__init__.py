"""Visual Echoes (paper 002): image → sound, sound → image and both at once with one masked token transformer.

- `modeling_visual_echoes`: the two VQGAN tokenizers (diffusers `VQModel`) and the masked audio-visual transformer;
- `scheduling_visual_echoes`: the MaskGIT / MAGE decoding schedule, confidence re-masking, guidance, training masks;
- `pipeline_visual_echoes`: `VisualEchoesPipeline` (tasks image_to_audio, audio_to_image, co_generation,
  inpaint_audio);
- `checkpoints`: loading taming-transformers and SpecVQGAN tokenizer checkpoints into `VQModel`;
- `entries`: the registry entries; `python -m pipelines.visual_echoes --help`: the command line.

Importing this package is light (no torch): the modules load on first use.
"""

from __future__ import annotations

TASKS = ("image_to_audio", "audio_to_image", "co_generation", "inpaint_audio")

__all__ = ["TASKS"]
