"""Synesthesia Studio's browser UI: gr.Blocks, one module per tab. Reaches models only through pipelines.registry."""
