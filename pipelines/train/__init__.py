"""`python -m pipelines.train <generator> --data toyworld|FOLDER --out DIR`: trainers on `accelerate`.

Built on `accelerate.Accelerator`, so `accelerate launch -m pipelines.train ...` runs it unchanged on several
devices. Every trainer has resumable checkpoints (`--resume`), an EMA of the weights (`--ema-decay`), mixed
precision (`--mixed-precision`), a tqdm progress bar, a loss log (`loss_log.jsonl`) and a loss-curve picture
(`loss_curve.png`), and is seeded (`--seed`).

Generators:

- `images_that_sound` (`pipelines.train.images_that_sound`): a shared `AutoencoderKL` (8× down-sampling) trained
  on pictures and spectrogram images, a frozen random-init `CLIPTextModel` with a word-level tokenizer, and two
  small `UNet2DConditionModel`s (image, audio) with ε-prediction and 10 % caption dropout. The output folder is
  what `ImagesThatSoundPipeline.from_pretrained(OUT/image_model, OUT/audio_model)` loads.

- `judges` (`pipelines.train.judges`): the toy-world CNN judges of `pipelines.metrics.judges` (picture class,
  sound class), toy world only; OUT holds `image.safetensors`/`.json` and `sound.safetensors`/`.json`.

Real-data folder format for `images_that_sound` (`--data FOLDER`): the folder holds a `captions.jsonl`, one JSON
object a line::

    {"file": "castle.png", "caption": "a castle with towers", "kind": "image"}
    {"file": "bell.wav", "caption": "a bell ringing", "kind": "sound"}

`file` is relative to the folder. Images (any format PIL reads) are converted to grayscale and resized to 256 rows
× `--width` columns. Sounds (any file `pipelines.audio.load_audio` reads: any rate, length and channel count) are
mixed to mono, resampled to 16 kHz, cut or zero-padded to `--width` spectrogram frames (`--width` · 160 samples)
and turned into the Auffusion spectrogram image of `pipelines.audio` (256 mel rows, low frequencies at the
bottom). Both kinds are needed: the VAE trains on all of them, the image UNet on the images, the audio UNet on the
sounds.
"""

GENERATORS = ("images_that_sound", "judges")
