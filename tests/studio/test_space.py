"""The Hugging Face Space description (README front matter, space.yaml) agrees with requirements.txt and itself."""

from __future__ import annotations

import re
import sys

import yaml

from studio.config import TAB_NAMES, load_space_file
from tests.factories import ROOT


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with Hugging Face Space front matter between --- lines"
    return yaml.safe_load(match.group(1))


def pins() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_every_requirement_is_pinned():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines), lines
    assert pins()["torch"] == "2.13.0"


def test_front_matter_matches_requirements_and_space_yaml():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["title"]
    assert meta["sdk_version"] == pins()["gradio"]
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["suggested_hardware"] == load_space_file()["hardware"]


def test_space_yaml_configures_every_tab_and_the_readme_documents_its_keys():
    space = load_space_file()
    assert set(space["tabs"]) == set(TAB_NAMES)
    readme = (ROOT / "README.md").read_text()
    keys = {key for key, value in space.items() if not isinstance(value, dict)}
    keys |= {f"queue.{key}" for key in space["queue"]}
    keys |= {f"tabs.<tab>.{key}" for tab in space["tabs"].values() for key in tab}
    undocumented = [key for key in keys if f"`{key}`" not in readme]
    assert not undocumented, f"space.yaml keys missing from README.md: {undocumented}"
