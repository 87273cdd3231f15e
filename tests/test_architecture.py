"""The package's layers hold: each subpackage imports only from the ones below it.

Read from the source (``ast``), not by importing: every ``import unetlib.…`` and
``from unetlib… import …`` anywhere in a module, inside functions too, so a cycle cannot
hide behind an import placed in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unetlib"
# Bottom to top: a module may import from its own layer and the layers before it.
LAYERS = ("core", "data", "nn", "viz", "runs", "inference", "study", "napari", "app")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported unetlib module, line, inside a function) for each import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names
                             if alias.name.startswith("unetlib."))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module \
                    and child.module.split(".")[0] == "unetlib":
                for alias in child.names:  # ``from unetlib.data import organs``
                    submodule = f"{child.module}.{alias.name}"
                    found.append((submodule if submodule in MODULES else child.module,
                                  child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return sorted({(target, line, inner) for target, line, inner in found
                   if target in MODULES and target != module})


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_lives_in_a_layer():
    loose = [module for module in MODULES
             if layer(module) is None and module not in ("unetlib", "unetlib.__main__")]
    assert loose == [], f"put these in one of {LAYERS}: {loose}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}"
              for module, edges in GRAPH.items() if layer(module) is not None
              for target, line, _ in edges
              if layer(target) is not None and layer(target) > layer(module)]
    assert upward == [], "\n".join(upward)


def test_the_modules_import_one_another_without_cycles():
    # Depth-first search for a back edge; report each cycle found as a chain of modules.
    cycles, state = [], {}

    def visit(module: str, chain: list[str]) -> None:
        state[module] = "open"
        for target, _, _ in GRAPH[module]:
            if target in ("unetlib",):
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(chain[chain.index(target):] + [target]))
            elif target not in state:
                visit(target, chain + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert cycles == [], "\n".join(cycles)


def test_only_the_loader_imports_tensorflow_or_keras():
    # unetlib.core._tensorflow sets TensorFlow's environment (log level, oneDNN on AVX2
    # CPUs) before loading it, and hides its start-up chatter. A module importing keras or
    # tensorflow itself (an import sorter puts ``from keras import ops`` above unetlib's
    # imports) loads TensorFlow first, and those settings silently do nothing.
    direct = []
    for module, path in MODULES.items():
        if module == "unetlib.core._tensorflow":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            direct += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {name}"
                       for name in names if name.split(".")[0] in ("keras", "tensorflow")]
    assert direct == [], "\n".join(direct)


LAZY_MODULE = "# Imports inside functions are lazy:"


def test_imports_inside_functions_say_why():
    # An import placed in a function must keep an optional or slow dependency lazy and say
    # so: on its line or the line before, or once for the module in a top-level comment
    # starting with LAZY_MODULE. Otherwise it belongs at the top of the module.
    unexplained = []
    for module, edges in GRAPH.items():
        source = MODULES[module].read_text(encoding="utf-8")
        lines = source.splitlines()
        for target, line, inner in edges:
            context = lines[line - 1] + (lines[line - 2] if line > 1 else "")
            if inner and "lazy" not in context and f"\n{LAZY_MODULE}" not in source:
                unexplained.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} "
                                   f"imports {target} inside a function")
    assert unexplained == [], "\n".join(unexplained)


def test_the_package_exposes_its_entry_points_without_loading_tensorflow():
    import subprocess
    import sys

    code = ("import sys, unetlib\n"
            "assert 'tensorflow' not in sys.modules, 'import unetlib loaded TensorFlow'\n"
            "for name in unetlib._ENTRY_POINTS:\n"
            "    value = getattr(unetlib, name)\n"
            "    print(name, value.__module__, value.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert len(rows) >= 15
    for name, module, defined_as in rows:
        assert defined_as == name and module.split(".")[1] in LAYERS, (name, module)


def test_scoring_masks_and_refusing_a_missing_data_folder_do_not_load_tensorflow(tmp_path):
    """``evaluate`` compares folders of masks: numpy's work, so it answers in about a second
    (a missing folder too), not after TensorFlow's 5-8 s start; ``train`` and ``crossval``
    name a missing data folder, ``predict``, ``quantify`` and ``export`` a missing run, and
    ``study`` a missing sheet, ``propose`` a missing run, before loading it."""
    import subprocess
    import sys

    missing, no_run = tmp_path / "no-data", tmp_path / "no-run"
    (tmp_path / "frames").mkdir()
    commands = {
        "train": ["train", str(missing), "--out", str(tmp_path / "run")],
        "crossval": ["crossval", str(missing), "--out", str(tmp_path / "cv")],
        "predict": ["predict", str(no_run), str(tmp_path / "frames"), "--out",
                    str(tmp_path / "masks")],
        "quantify": ["quantify", str(no_run), str(tmp_path / "a.tif"), "--out",
                     str(tmp_path / "q")],
        "export": ["export", str(no_run), "--out", str(tmp_path / "model.zip")],
        "study": ["study", str(tmp_path / "study.csv"), "--run", str(no_run), "--out",
                  str(tmp_path / "s")],
        "propose": ["propose", str(no_run), str(missing)],
    }
    code = ("import sys\n"
            "import unetlib.inference.evaluate, unetlib.nn.frame_scores\n"
            "from unetlib.app.cli import main\n"
            f"for command in {list(commands.values())!r}:\n"
            "    assert main(command) == 2, command\n"
            "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)[:3]\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == len(commands), done.stderr
    frames_missing = f"error: {missing / 'train' / 'frames'}: folder not found"
    run_missing = f"error: {no_run}: model file or run folder not found"
    export_missing = f"error: {no_run}: run folder not found"
    sheet_missing = f"error: {tmp_path / 'study.csv'}: file not found"
    for line, expected in zip(errors, (frames_missing, frames_missing, run_missing, run_missing,
                                       export_missing, sheet_missing, run_missing)):
        assert line.startswith(expected), done.stderr
    assert not any((tmp_path / name).exists()
                   for name in ("run", "cv", "masks", "q", "model.zip", "s"))
