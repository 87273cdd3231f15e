"""The napari plugin: its manifest, reader and layers here; the viewer and widgets in a
pytest process of their own on a virtual X display (``tests/napari_gui.py``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unetlib.core.config import SyntheticConfig
from unetlib.core.errors import InputError
from unetlib.data.synthetic import write_synthetic_stack
from unetlib.napari.layers import laser_count, stack_layers
from unetlib.napari.reader import get_reader, read_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory) -> Path:
    path, _ = write_synthetic_stack(tmp_path_factory.mktemp("napari") / "mouse.tif",
                                    SyntheticConfig(cycles=5, height=48, width=64))
    return path


def test_napari_finds_the_plugin_s_reader_and_three_widgets():
    from npe2 import PluginManager

    manager = PluginManager()
    manager.discover()
    manifest = manager.get_manifest("unetlib")
    assert [widget.display_name for widget in manifest.contributions.widgets] == [
        "Annotate", "Train", "Quantify"]
    assert manifest.contributions.readers[0].accepts_directories


def test_the_reader_takes_stacks_and_project_folders_and_leaves_the_rest(small_stack, tmp_path):
    assert get_reader(str(small_stack)) is read_path
    assert get_reader(str(tmp_path)) is None  # an empty folder is not one of ours
    assert get_reader(str(tmp_path / "notes.txt")) is None
    (tmp_path / "train" / "frames").mkdir(parents=True)
    assert get_reader(str(tmp_path)) is read_path


def test_a_stack_opens_as_one_layer_per_laser_in_its_own_range(small_stack):
    layers = read_path(small_stack)
    assert [kwargs["name"] for _, kwargs, _ in layers] == [f"mouse laser {n}" for n in (1, 2, 3, 4)]
    for number, (data, kwargs, kind) in enumerate(layers, start=1):
        assert kind == "image" and data.shape == (5, 48, 64)
        low, high = kwargs["contrast_limits"]
        middle = np.asarray(data[2], dtype=np.float64)
        assert np.percentile(middle, 0.5) == pytest.approx(low) and high > low
        assert kwargs["metadata"] == {"unetlib_stack": str(small_stack), "laser": number}


def test_the_laser_count_comes_from_a_sidecar_else_four(small_stack, tmp_path):
    assert laser_count(small_stack) == 4
    copy = tmp_path / "two.tif"
    shutil.copy(small_stack, copy)
    copy.with_suffix(".json").write_text(json.dumps({"lasers": 2}))
    layers, stack = stack_layers(copy)
    assert stack.lasers == 2 and len(layers) == 2 and layers[0][0].shape == (10, 48, 64)
    copy.with_suffix(".json").write_text(json.dumps({"lasers": "two"}))
    with pytest.raises(InputError, match=r"two\.json: has no whole number 'lasers'"):
        laser_count(copy)


def _xvfb() -> tuple[subprocess.Popen, str]:
    """A virtual X server on a free display (``Xvfb -displayfd``)."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as handle:
        number = handle.readline().strip()
    return server, f":{number}"


@pytest.mark.slow
def test_the_plugin_in_a_real_viewer(organ_run, tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is missing: as root, make qt-headless (the CI does)")
    server, display = _xvfb()
    try:
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
               "UNETLIB_GUI_RUN": str(organ_run["run"]), "UNETLIB_GUI_STACK": str(organ_run["stack"]),
               "UNETLIB_GUI_DATA": str(organ_run["root"] / "data"),
               "UNETLIB_GUI_SHOTS": str(ROOT / "out" / "napari")}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "-o", "addopts=--strict-markers -ra", "-o", "python_files=napari_gui.py",
                                 "--basetemp", str(tmp_path / "gui"), str(ROOT / "tests" / "napari_gui.py")],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
