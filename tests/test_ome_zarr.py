"""quantify --ome-zarr: the stack and its organ labels as OME-Zarr, read back with the
OME-Zarr library alone (what napari-ome-zarr and other OME tools use)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from helpers import run_main

pytestmark = pytest.mark.slow  # a quantify run


def test_quantify_writes_an_ome_zarr_the_ome_reader_opens_with_names_and_colours(organ_run, tmp_path,
                                                                                capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = tmp_path / "q"
    command = ["-q", "quantify", organ_run["run"], organ_run["stack"], "--out", out, "--ome-zarr"]
    result = run_main(capsys, *command)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = out / organ_run["stack"].stem
    store = folder / f"{folder.name}.ome.zarr"
    assert f"OME-Zarr: {store}" in result.stdout

    nodes = list(Reader(parse_url(str(store)))())
    image = nodes[0]
    frames = tifffile.imread(organ_run["stack"])
    cycles = frames.shape[0] // 4
    assert image.metadata["channel_names"] == ["laser 1", "laser 2", "laser 3", "laser 4"]
    assert len(image.data) == 1 and np.array_equal(
        np.asarray(image.data[0]), frames[:cycles * 4].reshape(cycles, 4, *frames.shape[1:]))
    label = next(node for node in nodes if node.metadata.get("name") == "organs")
    assert np.array_equal(np.asarray(label.data[0])[:, 0], tifffile.imread(folder / "labels.tif"))
    organs = (folder / "organs.csv").read_text().splitlines()[1:]
    names = {int(line.split(",")[0]): line.split(",")[1] for line in organs}
    assert {value: entry["name"] for value, entry in label.metadata["properties"].items()} == names
    colours = {int(line.split(",")[0]): line.split(",")[2] for line in organs}
    assert {value: "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])
            for value, rgba in label.metadata["color"].items()} == colours
    attributes = json.loads((store / "zarr.json").read_text())["attributes"]["ome"]
    assert attributes["version"] == "0.5"
    times = [float(line.split(",")[1]) for line in (folder / "cycles.csv").read_text().splitlines()[1:]]
    scale = attributes["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[0] == pytest.approx(times[1] - times[0]) and scale[1:] == [1.0, 1.0, 1.0]

    # A re-run reuses the results and keeps their store; a stack that moved is named.
    before = (store / "zarr.json").stat().st_mtime_ns
    again = run_main(capsys, *command)
    assert again.returncode == 0 and (store / "zarr.json").stat().st_mtime_ns == before
    from unetlib.core.errors import InputError
    from unetlib.study.ome_zarr import write_ome_zarr

    record = json.loads((folder / "quantify.json").read_text())
    record["stack"] = str(tmp_path / "gone.tif")
    (folder / "quantify.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"gone\.tif: not found \(the stack these results are of\)"):
        write_ome_zarr(folder, force=True)
