"""Synesthesia Studio's models and signal processing. Never imports gradio: everything here works without the UI."""
