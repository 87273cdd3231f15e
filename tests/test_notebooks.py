"""Every notebook runs headlessly under papermill with small parameters."""

from pathlib import Path

import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, output_dir: Path, **parameters) -> Path:
    """Execute ``notebooks/<name>`` with papermill, from the notebooks folder as users do."""
    output = output_dir / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(output), parameters=parameters,
                               cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
    return output


def test_01_reshaping_runs_on_the_demo_stack(tmp_path):
    run_notebook("01_reshaping.ipynb", tmp_path, demo_dir=str(tmp_path / "demo"), demo_cycles=6,
                 split_dir=str(tmp_path / "split"), pick_count=3, test_count=2,
                 data1d_dir=str(tmp_path / "data1d"), data3d_dir=str(tmp_path / "data3d"))
    assert len(list((tmp_path / "split" / "laser2").iterdir())) == 6
    assert sorted(p.name for p in (tmp_path / "data1d" / "train" / "frames").iterdir()) == ["0.png", "1.png", "2.png"]
    assert sorted(p.name for p in (tmp_path / "data3d" / "test").glob("*.tif")) == ["0.tif", "1.tif"]
    # A second run with the same parameters changes nothing and does not fail.
    stamp = (tmp_path / "data1d" / "train" / "frames" / "0.png").stat().st_mtime_ns
    (tmp_path / "again").mkdir()
    run_notebook("01_reshaping.ipynb", tmp_path / "again", demo_dir=str(tmp_path / "demo"),
                 demo_cycles=6, split_dir=str(tmp_path / "split"), pick_count=3, test_count=2,
                 data1d_dir=str(tmp_path / "data1d"), data3d_dir=str(tmp_path / "data3d"))
    assert (tmp_path / "data1d" / "train" / "frames" / "0.png").stat().st_mtime_ns == stamp
