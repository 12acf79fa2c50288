"""Metrics for the generators, judged by small toy-world classifiers (`judges`).

- `judges`: the CNN judges (toy picture class, toy sound class) and their ranking-interface scorers;
- `images_that_sound`: Table-1-style accuracies of Images that Sound's methods (`python -m pipelines.metrics`).
"""
