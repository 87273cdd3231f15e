"""requirements.txt and environment.yml describe the same environment."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def pip_section(environment: dict) -> list[str]:
    return next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))


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
    conda = environment()
    assert parse(pip_section(conda)) == requirements
    assert "python=3.11" in conda["dependencies"]
    assert {"pip", "python=3.11"} <= set(d for d in conda["dependencies"] if isinstance(d, str))
    # The pip section installs this checkout too, as the Makefile's venv does.
    assert pip_section(conda)[-1] == "-e ."


def test_pyproject_declares_exactly_the_pinned_packages():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = parse(project["dependencies"] + extras["test"] + extras["napari"])
    requirements = parse((ROOT / "requirements.txt").read_text().splitlines())
    assert set(declared) == set(requirements)
    for name, minimum in declared.items():
        # pyproject gives the minimum, requirements.txt the same minimum and an upper bound.
        assert requirements[name].startswith(minimum), (name, minimum, requirements[name])


def third_party_imports(folder: Path) -> set[str]:
    """Top-level names of the modules outside the standard library that ``folder``'s
    Python files import (at the top or inside functions)."""
    import ast

    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {path.stem for path in folder.glob("*.py")}
    return {name for name in names
            if name not in sys.stdlib_module_names and name != "unetlib" and name not in local}


@pytest.mark.parametrize("folder", ["unetlib", "tests"])
def test_every_package_the_code_imports_is_a_requirement(folder):
    from importlib.metadata import packages_distributions

    requirements = parse((ROOT / "requirements.txt").read_text().splitlines())
    distributions = packages_distributions()
    missing = {}
    for name in third_party_imports(ROOT / folder):
        providers = {dist.lower().replace("_", "-") for dist in distributions.get(name, [])}
        # A module's own distribution, or the one that installs it as a dependency
        # (keras comes with tensorflow; distributed with dask[distributed]).
        if not providers & set(requirements) and not (
                name == "distributed" and "dask[distributed]" in requirements):
            missing[name] = sorted(providers) or "not installed"
    assert missing == {}, f"imported but not in requirements.txt: {missing}"


@pytest.mark.slow
def test_tensorflow_start_up_chatter_is_hidden_but_real_errors_are_not():
    import subprocess
    import sys

    from unetlib.core._tensorflow import filter_chatter

    result = subprocess.run([sys.executable, "-c", "import unetlib.runs.train, unetlib.inference.predict"],
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0
    assert result.stderr == ""
    noisy = ("I0000 00:00:1795594494.468146   12030 port.cc:153] oneDNN custom operations are on.\n"
             "E0000 00:00:1795594497.085670   12030 cuda_platform.cc:52] failed call to cuInit: X\n"
             "E0000 00:00:1795594497.085670   12030 some_op.cc:52] a real failure\n")
    assert filter_chatter(noisy) == "E0000 00:00:1795594497.085670   12030 some_op.cc:52] a real failure\n"


RETRACING_SCRIPT = """
import json, logging
import numpy as np
from unetlib.core._tensorflow import KerasTracesPerModel, tf
from unetlib.core.config import ModelConfig, model_preset
from unetlib.nn.model import build_unet

class Recorder(logging.Handler):
    messages = []
    def emit(self, record):
        self.messages.append(record.getMessage())

logger = tf.get_logger()
logger.addHandler(Recorder())
ours = [existing for existing in logger.filters if isinstance(existing, KerasTracesPerModel)]
config = ModelConfig(**{**model_preset("small").__dict__, "input_channels": 1})
frame = np.zeros((1, 32, 32, 1), np.float32)
for _ in range(5):  # as a cross-validation: a model per fold, each predicting
    build_unet(config).predict_on_batch(frame)
filtered = list(Recorder.messages)
for existing in ours:
    logger.removeFilter(existing)
build_unet(config).predict_on_batch(frame)  # the sixth trace, now unfiltered
print(json.dumps({"filters": len(ours), "filtered": filtered,
                  "unfiltered": Recorder.messages[len(filtered):]}))
"""


@pytest.mark.slow
def test_each_model_tracing_its_keras_functions_once_is_not_warned_about():
    """A cross-validation builds a model per fold and loads each best checkpoint: TensorFlow
    counts their first traces as retracing of one function and prints a paragraph of advice,
    unless the filter installed with TensorFlow drops it (in a fresh process: TensorFlow
    warns at most twice per function in a process)."""
    result = subprocess.run([sys.executable, "-c", RETRACING_SCRIPT], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["filters"] == 1
    assert seen["filtered"] == []
    assert any("triggered tf.function retracing" in message for message in seen["unfiltered"])
    # TensorFlow's own handler printed only the unfiltered one.
    assert result.stderr.count("triggered tf.function retracing") == 1


def test_the_readme_s_conda_path_names_this_environment_and_opens_the_notebooks():
    """The commands the README gives a conda user match environment.yml's environment."""
    readme = (ROOT / "README.md").read_text()
    name = environment()["name"]
    for command in ("conda env create -f environment.yml", f"conda activate {name}",
                    "jupyter lab notebooks/",
                    f'python -m ipykernel install --user --name {name} --display-name "Python ({name})"'):
        assert command in readme, command
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab: ", makefile, re.MULTILINE), "make lab is the pip path's way in"


@pytest.mark.slow
def test_the_environment_s_pip_section_resolves_and_its_jupyterlab_is_complete(tmp_path):
    """What ``conda env create`` does once Python is there: pip installs the pip section.

    pip resolves the pip section for a fresh virtual environment of this Python (``--dry-run``
    with a copy of this checkout in place of ``-e .``, which would write its metadata beside
    the sources): every pin is satisfiable together. The pip is this environment's, as recent
    as the ``pip`` conda-forge puts in (``--python`` points it at the fresh one): the pip a
    new venv bundles is years older and takes twice the CPU to resolve the same pins.
    Installing it for real would repeat what CI's ``make venv`` does on every run with the
    same pins (the test above compares them), for 2 minutes of copying TensorFlow. This
    environment, built from those pins, then must have what the README's next step needs: a
    ``jupyter lab`` command, ipywidgets' front end enabled in it, and the environment's own
    Python as the ``python3`` kernel the notebooks ask for.
    """
    source = tmp_path / "unet-mice"
    shutil.copytree(ROOT / "unetlib", source / "unetlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    requirements = tmp_path / "environment-pip.txt"
    requirements.write_text("\n".join(f"-e {source}" if line == "-e ." else line
                                      for line in pip_section(environment())) + "\n")
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=300)

    def run(*command: str | Path, timeout: float = 300) -> str:
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                                timeout=timeout, cwd=tmp_path)
        assert result.returncode == 0, f"{command}: {(result.stdout + result.stderr)[-3000:]}"
        return result.stdout + result.stderr

    resolved = run(sys.executable, "-m", "pip", "--python", env_dir / "bin" / "python", "install",
                   "--dry-run", "-r", requirements, timeout=900)
    would_install = resolved.split("Would install", 1)[-1].split()
    assert any(name.startswith("tensorflow-2.21") for name in would_install), resolved[-2000:]
    assert any(name.startswith("unetlib-") for name in would_install), resolved[-2000:]

    here = Path(sys.prefix)
    jupyter = Path(sys.executable).parent / "jupyter"
    run(sys.executable, "-m", "pip", "check")
    assert run(jupyter, "lab", "--version").strip().startswith("4.")
    manager = [line for line in run(jupyter, "labextension", "list").splitlines()
               if "@jupyter-widgets/jupyterlab-manager" in line]
    assert manager and "enabled" in manager[0] and "OK" in manager[0], manager
    kernels = json.loads(run(jupyter, "kernelspec", "list", "--json"))["kernelspecs"]
    assert Path(kernels["python3"]["resource_dir"]).is_relative_to(here)
