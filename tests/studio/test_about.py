"""The About tab is generated from the model registry: every entry appears, with the weights it uses and why."""

from __future__ import annotations

from pipelines.registry import REGISTRY, _register_builtin_pipelines
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
from studio.tabs import about


def test_every_registry_entry_appears_with_its_tab_and_the_studio_weights_folder(tmp_path):
    _register_builtin_pipelines()
    table = about.weights_table(StudioContext(build_config(models="studio"), SessionFiles(tmp_path)))
    for name, entry in REGISTRY.entries.items():
        assert f"{entry.title} (`{name}`)" in table, name
    lines = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| ") and " (`" in line}
    assert lines["MM-Diffusion (toy world) (`mm_diffusion_toyworld`)"].startswith("| Sounding Video")
    assert lines["MM-LDM (toy world) (`mm_ldm_toyworld`)"].startswith("| Sounding Video")
    assert "studio: a small model trained on the toy world (assets/models/mm_ldm)" in \
        lines["MM-LDM (toy world) (`mm_ldm_toyworld`)"]
    assert "studio: small toy-world model in assets/models/impact_sound" in \
        lines["Impact Sound (diffusion) (`impact_diffusion`)"]
    assert "needs no weights" in lines["Impact Sound (physics) (`impact_sound`)"]
    assert "assets/models" in table and "studio weights, as asked for" in table
