"""One module per tab; each exposes `build(context)` and is added to the studio only when its pipeline works."""
