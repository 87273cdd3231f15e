"""requirements.txt and environment.yml describe the same environment."""

import os
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


def test_tensorflow_start_up_chatter_is_hidden_but_real_errors_are_not():
    import subprocess
    import sys

    from unetlib._tensorflow import filter_chatter

    result = subprocess.run([sys.executable, "-c", "import unetlib.train, unetlib.predict"],
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0
    assert result.stderr == ""
    noisy = ("I0000 00:00:1795594494.468146   12030 port.cc:153] oneDNN custom operations are on.\n"
             "E0000 00:00:1795594497.085670   12030 cuda_platform.cc:52] failed call to cuInit: X\n"
             "E0000 00:00:1795594497.085670   12030 some_op.cc:52] a real failure\n")
    assert filter_chatter(noisy) == "E0000 00:00:1795594497.085670   12030 some_op.cc:52] a real failure\n"
