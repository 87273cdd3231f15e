"""requirements.txt and environment.yml describe the same environment."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def parse(lines):
    """Map normalised package name -> version specifier for requirement lines."""
    packages = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        packages[match.group(1).lower().replace("_", "-")] = match.group(2).replace(" ", "")
    return packages


def test_requirements_and_environment_pin_the_same_packages():
    requirements = parse((ROOT / "requirements.txt").read_text().splitlines())
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert parse(pip_section) == requirements
    assert "python=3.11" in environment["dependencies"]
    assert {"pip", "python=3.11"} <= set(d for d in environment["dependencies"] if isinstance(d, str))


def test_the_field_s_packages_are_all_there():
    requirements = parse((ROOT / "requirements.txt").read_text().splitlines())
    for name in ("tensorflow", "keras", "numpy", "tifffile", "pillow", "matplotlib",
                 "ipywidgets", "papermill", "nbval", "ipykernel"):
        assert name in requirements, name
    assert requirements["tensorflow"].startswith(">=2.21")
    assert requirements["keras"].startswith(">=3")
