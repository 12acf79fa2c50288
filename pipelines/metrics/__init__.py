"""Metrics for the generators, judged by small toy-world classifiers (`judges`).

- `judges`: the CNN judges (toy picture class, toy sound class, impact material) and their ranking-interface scorers;
- `images_that_sound`: Table-1-style accuracies of Images that Sound's methods (`python -m pipelines.metrics`);
- `impact_sound`: Impact Sound's Table 1/3 measures (LSD, Spec. MSE, material accuracy, KL, KID) per method;
- `sounding_video`: the audio-visual coupling of MM-Diffusion's and MM-LDM's samples on the toy world;
- `sounding_video_comparison`: two models' coupling scores compared, with bootstrap intervals;
- `visual_echoes`: Visual Echoes' image ↔ sound, co-generation, pitch and event count on the toy world.
"""
