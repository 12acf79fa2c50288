"""app.py and the studio frame: flags, space.yaml, nothing loaded at start-up, the ZeroGPU decorator."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import app
from studio.config import TabSettings, build_config, load_space_file
from studio.gpu import gpu_handler
from tests.factories import ROOT


def test_help_lists_every_flag():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--share", "--models", "--device", "--offline"):
        assert flag in result.stdout


def test_flags_parse_and_reject_unknown_choices():
    args = app.parse_args(["--models", "studio", "--device", "cpu", "--port", "9000", "--share", "--offline"])
    assert (args.models, args.device, args.port, args.share, args.offline) == ("studio", "cpu", 9000, True, True)
    assert app.parse_args([]).host == "127.0.0.1"
    with pytest.raises(SystemExit):
        app.parse_args(["--models", "best"])


def test_space_file_is_read_and_models_flag_overrides_variants():
    config = build_config()
    assert config.tab("spectrogram_lab").concurrency_limit >= 1 and config.queue_size >= 1
    forced = build_config(models="studio")
    assert forced.tab("spectrogram_lab").variant == "studio"
    assert forced.tab("not_configured") == TabSettings(variant="studio")


@pytest.mark.parametrize("text, message", [
    ("tabs: {ghost: {}}", "unknown tab"), ("tabs: {spectrogram_lab: {colour: red}}", "unknown key"),
    ("tabs: {spectrogram_lab: {variant: best}}", "variant must be one of"),
    ("tabs: {spectrogram_lab: {concurrency_limit: 0}}", "concurrency_limit >= 1"),
    ("checkpoints: {mm_diffusion: {landscap: a.pt}}", "unknown key 'landscap'"),
    ("checkpoints: {mm_ldm: {}}", "unknown key 'mm_ldm'"),
    ("checkpoints: {mm_diffusion: {aist: 3}}", "checkpoints.mm_diffusion.aist must be a file path"),
    ("checkpoints: [a.pt]", "checkpoints must be a mapping"),
])
def test_bad_space_file_is_named_clearly(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_space_file(path)


def test_building_the_studio_loads_no_model_and_no_torch(tmp_path):
    """Start-up builds every tab but loads no pipeline; even torch is not imported until a model is needed."""
    script = f"""
import sys
from pipelines.registry import REGISTRY
from studio.app import build_studio
from studio.config import build_config
from studio.context import StudioContext
from studio.sessions import SessionFiles
demo = build_studio(StudioContext(build_config(), SessionFiles({str(tmp_path)!r})))
labels = {{getattr(block, "label", None) for block in demo.blocks.values()}}
apis = {{dependency.api_name for dependency in demo.fns.values()}}
print(REGISTRY.reports(), "torch" in sys.modules, {{"Spectrogram Lab", "About"}} <= labels,
      {{"picture_to_sound", "sound_to_picture"}} <= apis)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["[]", "False", "True", "True"], result.stderr


def test_gpu_handler_is_a_no_op_without_spaces_and_wraps_with_it(monkeypatch):
    def handler():
        return "ran"

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert gpu_handler(handler, 60) is handler
    calls = []
    fake = types.SimpleNamespace(GPU=lambda duration: (calls.append(duration), lambda fn: ("wrapped", fn))[1])
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_handler(handler, 60) == ("wrapped", handler) and calls == [60]
    assert gpu_handler(handler, 0) is handler  # CPU-only tabs never ask for a GPU


def test_a_busy_port_is_named_with_the_flag_to_change_it():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "app.py", "--port", str(port), "--models", "studio"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"port {port} is busy" in result.stderr and "--port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_names_the_port_environment_variable():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert "GRADIO_SERVER_PORT" in result.stdout
