"""The CLI: help for every command, one-line errors without tracebacks, real outputs."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from unetlib.cli import build_parser, main
from unetlib.config import SyntheticConfig
from unetlib.synthetic import write_synthetic_stack


def run_cli(*args, cwd=None):
    """Run ``python -m unetlib`` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "unetlib", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_command_explains_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m unetlib {command}")
    assert "options:" in out


def test_expected_error_is_one_line_without_traceback(tmp_path):
    result = run_cli("split-stack", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.tif'}: file not found. Check the path."]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, args, message", [
    ("text", (), "is not a TIFF file"),
    (np.zeros((8, 8), np.uint16), (), "single 2-D image"),
    (np.zeros((2, 8, 8), np.uint16), (), "fewer than the 4 lasers"),
    (np.zeros((8, 8, 8), np.uint16), ("--lasers", "0"), "lasers=0 is invalid"),
])
def test_bad_input_exits_non_zero_naming_the_file(tmp_path, capsys, content, args, message):
    path = tmp_path / "in.tif"
    if isinstance(content, str):
        path.write_text(content)
    else:
        tifffile.imwrite(path, content, photometric="minisblack")
    status = main(["-q", "split-stack", str(path), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"error: {path}") and message in err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    stack, _ = write_synthetic_stack(tmp_path / "s.tif", SyntheticConfig(cycles=1, height=32, width=32))
    (tmp_path / "blocker").write_text("x")
    status = main(["-q", "split-stack", str(stack), "--out", str(tmp_path / "blocker" / "out")])
    assert status == 2
    assert "is a file" in capsys.readouterr().err


def test_demo_stack_split_and_pick_from_the_command_line(tmp_path):
    demo = run_cli("demo-stack", "--out", str(tmp_path / "demo"), "--cycles", "5",
                   "--height", "48", "--width", "64")
    assert demo.returncode == 0, demo.stderr
    assert tifffile.imread(tmp_path / "demo" / "stack.tif").shape == (20, 48, 64)
    split = run_cli("split-stack", str(tmp_path / "demo" / "stack.tif"), "--out", str(tmp_path / "split"))
    assert split.returncode == 0, split.stderr
    assert len(list((tmp_path / "split" / "laser4").iterdir())) == 5
    pick = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "3",
                   "--channels", "3", "--out", str(tmp_path / "data3d"))
    assert pick.returncode == 0, pick.stderr
    assert "picked cycles [0, 2, 4]" in pick.stdout
    repeated = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "3",
                       "--out", str(tmp_path / "data3d"), "--channels", "3")
    assert repeated.returncode == 0 and "nothing to do" in repeated.stderr
    different = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "2",
                        "--out", str(tmp_path / "data3d"), "--channels", "3")
    assert different.returncode == 2 and "--force" in different.stderr
