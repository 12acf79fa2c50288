"""Visual Echoes' decoding speed: masked parallel decoding (N = 30 iterations, guidance s = 3) against autoregressive
decoding of the same network (one audio token per step, raster order, with the same guidance), image → sound.

    python -m benchmarks.visual_echoes [--sizes studio,paper] [--repeats 3] [--model assets/models/visual_echoes]

Both decoders call the same bidirectional transformer (no key/value cache exists for it), so each step costs one
guided forward pass (a batch of 2: conditional and unconditional). At the studio size both are run end to end. At the
paper size (424 M parameters, 265 + 256 tokens) an autoregressive clip would take hundreds of forward passes on a
CPU, so one guided forward is timed and both totals are that time × their step counts (30 against 265), marked
"extrapolated". Also the time of one image → sound sample with the bundled studio weights (Griffin-Lim included).
Prints a table and writes benchmarks/results/visual_echoes_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def guided_forward(transformer, audio: torch.Tensor, image: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    mask_v = transformer.mask_ids[1]
    logits = transformer(torch.cat([audio, audio]), torch.cat([image, torch.full_like(image, mask_v)]))[0]
    return logits[:1] * scale + logits[1:] * (1 - scale) if scale != 1 else logits[:1]


@torch.inference_mode()
def autoregressive(transformer, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Raster-order decoding: at step i the model sees tokens < i and [MASK] from i on, samples token i."""
    mask_a = transformer.mask_ids[0]
    audio = torch.full((1, transformer.lengths[0]), mask_a)
    for position in range(transformer.lengths[0]):
        logits = guided_forward(transformer, audio, image)[0, position]
        audio[0, position] = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[0]
    return audio


@torch.inference_mode()
def masked(transformer, image: torch.Tensor, generator: torch.Generator, steps: int = 30) -> torch.Tensor:
    from pipelines.visual_echoes.scheduling_visual_echoes import MaskScheduler

    mask_a = transformer.mask_ids[0]
    audio = torch.full((1, transformer.lengths[0]), mask_a)
    scheduler = MaskScheduler(steps, 9.0, mask_a, torch.tensor([transformer.lengths[0]]))
    for step in range(steps):
        audio, sampled = scheduler.step(step, guided_forward(transformer, audio, image), audio, [generator])
    return sampled


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(sizes: list[str], repeats: int, model: str | None) -> dict:
    from pipelines.visual_echoes.modeling_visual_echoes import TOKENIZER_SIZES, build_transformer

    torch.manual_seed(0)
    rows = []
    for size in sizes:
        audio_size, image_size = TOKENIZER_SIZES[size]["audio"], TOKENIZER_SIZES[size]["image"]
        lengths = (audio_size.num_tokens, image_size.num_tokens, audio_size.codebook_size, image_size.codebook_size)
        transformer = build_transformer(size, *lengths).eval()
        image = torch.randint(0, lengths[3], (1, lengths[1]))
        generator = torch.Generator().manual_seed(0)
        if size == "paper":
            audio = torch.full((1, lengths[0]), lengths[2])
            with torch.inference_mode():
                guided_forward(transformer, audio, image)  # warm-up
                forward = timed(lambda: guided_forward(transformer, audio, image), repeats)
            ours, theirs, how = 30 * forward, lengths[0] * forward, "extrapolated from one guided forward"
        else:
            masked(transformer, image, generator)  # warm-up
            ours = timed(lambda: masked(transformer, image, generator), repeats)
            theirs = timed(lambda: autoregressive(transformer, image, generator), repeats)
            how = "measured end to end"
        rows.append({"size": size, "parameters": sum(p.numel() for p in transformer.parameters()),
                     "audio_tokens": lengths[0], "masked_s": ours, "autoregressive_s": theirs,
                     "speed_up": theirs / ours, "how": how})
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "rows": rows}
    if model and Path(model, "visual_echoes.json").is_file():
        from pipelines.toyworld.paired import sample_paired
        from pipelines.visual_echoes.pipeline_visual_echoes import VisualEchoesPipeline
        from pipelines.weights import repo_relative

        pipe = VisualEchoesPipeline.from_pretrained(model)
        picture = sample_paired(1, 0, size=pipe.picture_size, frames=pipe.audio_frames).images[0]
        pipe(picture, num_inference_steps=30, generator=[torch.Generator().manual_seed(0)])  # warm-up
        result["studio_model"] = repo_relative(model)
        result["studio_image_to_sound_s"] = timed(
            lambda: pipe(picture, num_inference_steps=30, generator=[torch.Generator().manual_seed(0)]), repeats)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.visual_echoes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="studio,paper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(Path(__file__).resolve().parent.parent / "assets" / "models" /
                                               "visual_echoes"))
    args = parser.parse_args(argv)
    result = run(args.sizes.split(","), args.repeats, args.model)
    print("| size | parameters | audio tokens | masked N=30 (s) | autoregressive (s) | speed-up | how |")
    print("|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['size']} | {row['parameters'] / 1e6:.1f} M | {row['audio_tokens']} | {row['masked_s']:.3f} | "
              f"{row['autoregressive_s']:.3f} | {row['speed_up']:.1f}× | {row['how']} |")
    if "studio_image_to_sound_s" in result:
        print(f"one image → sound sample with the studio weights: {result['studio_image_to_sound_s']:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "visual_echoes_speed.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
