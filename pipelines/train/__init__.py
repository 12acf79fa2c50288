"""`python -m pipelines.train <generator> --data toyworld|FOLDER --out DIR [--init paper|studio|DIR]`: trainers on
`accelerate`.

Built on `accelerate.Accelerator`, so `accelerate launch -m pipelines.train ...` runs it unchanged on several
devices. Every trainer has resumable checkpoints (`--resume`), an EMA of the weights (`--ema-decay`), mixed
precision (`--mixed-precision`), a tqdm progress bar, a loss log (`loss_log.jsonl`) and a loss-curve picture
(`loss_curve.png`), and is seeded (`--seed`). The generators' trainers also draw sample previews while they train
(`--preview-every N`, 0 = off: OUT/previews/step-NNNNNN.png and .wav, logged in loss_log.jsonl;
`pipelines.train.common`).

Generators:

- `images_that_sound` (`pipelines.train.images_that_sound`): a shared `AutoencoderKL` (8× down-sampling) trained
  on pictures and spectrogram images, a frozen random-init `CLIPTextModel` with a word-level tokenizer, and two
  small `UNet2DConditionModel`s (image, audio) with ε-prediction and 10 % caption dropout. The output folder is
  what `ImagesThatSoundPipeline.from_pretrained(OUT)` loads. With `--init`: fine-tunes the UNets `--models` names
  (fully, or a LoRA with `--lora-rank`, optionally `--lora-text-encoder`) on the starting VAE's latents.

- `judges` (`pipelines.train.judges`): the toy-world CNN judges of `pipelines.metrics.judges` (picture class,
  sound class, impact material; `--judges` picks which), toy world only; OUT holds `image.safetensors`/`.json`,
  `sound.safetensors`/`.json` and `material.safetensors`/`.json`.

- `impact_sound` (`pipelines.train.impact_sound`): Impact Sound's physics-driven diffusion model (paper 004) in
  four resumable stages: the residual predictor (STFT loss), a small visual encoder trained as a material
  classifier, the spectrogram U-Net trained jointly with the physics encoder (L1 ε loss, cosine schedule, EMA),
  and the export of the folder `ImpactDiffusionPipeline.from_pretrained(OUT)` loads, with the retrieval bank of
  the training clips. `--data toyworld` or a Greatest Hits-style folder with a `hits.jsonl` (video, hit time,
  material, optional separate audio; format in the module docstring). `--size studio|tiny|paper`.

- `mm_diffusion` (`pipelines.train.mm_diffusion`): MM-Diffusion's coupled U-Net (paper 000) with the official
  objective (ε-prediction on both streams, one shared uniform t, linear β, T = 1000, AdamW, EMA). `--size paper`
  is the released Landscape network on the paper's clip (16 frames of 64×64, 1.6 s of 16 kHz audio); `studio` and
  `tiny` shrink the clip (studio: 8 frames of 16×16, 0.8 s of 4 kHz audio) for a CPU; --frames, --frame-size,
  --sample-rate and --fps set it explicitly. `--data toyworld` or a Landscape / AIST++-style folder of video files
  with their audio tracks (several clips per long file). OUT holds `model.safetensors` + `model.json` (official
  flags and clip format), which the registry's studio Sounding Video loads.

- `mm_ldm` (`pipelines.train.mm_ldm`): MM-LDM (paper 001) in three resumable stages into one OUT, one a run
  (`--stage vae|autoencoder|dit`): the KL-VAE on frames and audio images (its latent scale measured at the end), the
  multi-modal autoencoder (Eq. 3; `--adversarial` adds the triplet GAN loss) on the frozen VAE's latents, and the
  latent DiT on the autoencoder's pre-computed latents (5 % kept conditions each, never both). `--size
  studio|tiny|paper`; `--data toyworld` (scene = class) or a folder of videos with sound (sub-folder = class). After
  the dit stage OUT is what `MMLDMPipeline.from_pretrained(OUT)` loads.

- `visual_echoes` (`pipelines.train.visual_echoes`): Visual Echoes (paper 002) in two resumable stages
  (`--stage tokenizers|transformer|all`): one `VQModel` per modality (picture; SpecVQGAN log-mel spectrogram), then
  the masked audio-visual token transformer (per-modality truncated-Gaussian mask ratios, 50 % token dropping,
  cross-entropy on masked tokens). `--size studio|tiny|paper`; `--data toyworld` (paired toy pictures and sounds) or
  a folder with a `pairs.jsonl`. OUT is what `VisualEchoesPipeline.from_pretrained(OUT)` loads.

Fine-tuning (every trainer, `pipelines.train.init`): `--init paper|studio|DIR` starts from existing weights instead
of a random initialisation: the published ones where they exist, the bundled `assets/models/<generator>/`, or a
folder the pipeline's `save_pretrained` wrote. The architecture comes from those weights (`--size` is ignored, with
a message); the optimiser starts fresh; `--resume` continues this run's own checkpoints (it wins over `--init`); the
output records `"init"`. `--lora-rank R` (images_that_sound and mm_diffusion; the other trainers refuse it) trains
a LoRA on the U-Nets' attention projections instead of every weight, and OUT then holds only the adapters
(`OUT/<model>_lora/`, `pipelines.images_that_sound.lora`; MM-Diffusion: `OUT/adapter.*`,
`pipelines.mm_diffusion.lora`), which the pipeline's `load_lora_weights` and `from_pretrained(OUT)` load.

Data for `images_that_sound` (`--data FOLDER` or `--data FILE.zip`): pictures and/or sounds, in sub-folders too.
With a `captions.jsonl`, one JSON object a line::

    {"file": "castle.png", "caption": "a castle with towers", "kind": "image"}
    {"file": "bell.wav", "caption": "a bell ringing", "kind": "sound"}

(`file` relative to the folder). Without one, every file is used: its kind from the suffix (pictures .png .jpg .jpeg
.bmp .gif .webp .tif .tiff; sounds .wav .flac .ogg .mp3 .m4a .aac .aif .aiff .opus), its caption `--caption "..."`
for all, else the file name ("rain_on-tin_roof.wav" → "rain on tin roof"). A zip is read the same way (a zip holding
one folder reads that folder). Images (any format PIL reads) are converted to grayscale and resized to 256 rows ×
`--width` columns. Sounds (any file `pipelines.audio.load_audio` reads: any rate, length and channel count) are
mixed to mono, resampled to 16 kHz, cut or zero-padded to `--width` spectrogram frames (`--width` · 160 samples)
and turned into the Auffusion spectrogram image of `pipelines.audio` (256 mel rows, low frequencies at the
bottom). Files that cannot be used (unreadable, empty or silent sounds, not a picture or a sound, listed but
missing) are skipped, printed with the reason and written to `OUT/skipped.json`. From scratch both kinds are needed
(the VAE trains on all of them, the image UNet on the images, the audio UNet on the sounds); with `--init`,
`--models image|audio|image,audio` picks the UNets to train, so a folder of sounds alone fine-tunes the audio model.
Each model to train needs at least one usable file of its kind (a ValueError says so).
"""

GENERATORS = ("images_that_sound", "judges", "impact_sound", "mm_diffusion", "mm_ldm", "visual_echoes")
