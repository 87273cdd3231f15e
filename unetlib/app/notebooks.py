"""Run the notebook suite headlessly with papermill, for one or several parameter sets.

``python -m unetlib run-notebooks --out OUT`` executes ``notebooks/01_*.ipynb``,
``02_*`` … in order into ``OUT/<set>/`` (never over the source notebooks). Parameters come
from the command line (``-p name value``) or a YAML file, either one mapping (one set) or
``{defaults: {...}, sets: {name: {...}, ...}}`` (one output folder per set). Each notebook
receives only the parameters its ``parameters`` cell declares.

Path parameters whose default lies under ``../demo`` (the demo work folder) are rebased
into ``OUT/<set>/demo`` so that sets never overwrite each other's data or runs. Notebooks
publish their headline numbers with :func:`publish_summary`; the runner collects them into
``OUT/summary.csv``, one row per set and notebook.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.core.io import ensure_folder, natural_key, write_csv
from unetlib.core.locking import output_lock

logger = logging.getLogger(__name__)

SUMMARY_MIMETYPE = "application/vnd.unetlib.summary+json"
DEMO_PREFIX = "../demo"
DEFAULT_SET = "default"
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def publish_summary(values: Mapping[str, Any]) -> None:
    """Show a notebook's headline numbers, machine-readably for the batch runner.

    Displays a one-line text (what a person sees) carrying the values under
    :data:`SUMMARY_MIMETYPE` (what :func:`run_suite` collects into ``summary.csv``).
    """
    from IPython.display import display

    text = ", ".join(f"{key}={_short(value)}" for key, value in values.items())
    display({"text/plain": text, SUMMARY_MIMETYPE: dict(values)}, raw=True)


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class NotebookRun:
    """Outcome of one notebook in one parameter set."""

    set_name: str
    notebook: str
    status: str  # "ok", "failed" or "skipped"
    seconds: float
    output: Path | None
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def parse_parameter_sets(yaml_path: str | os.PathLike[str] | None = None,
                         overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Read parameter sets from a YAML file and apply command-line overrides to each.

    Returns
    -------
    dict
        Set name -> parameters, in file order (a single ``default`` set without a file).
    """
    overrides = dict(overrides or {})
    if yaml_path is None:
        return {DEFAULT_SET: overrides}
    import yaml

    path = Path(yaml_path)
    if not path.is_file():
        raise InputError(describe(path, "file not found", "Check the --params path."))
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise InputError(describe(path, f"is not valid YAML ({str(error).splitlines()[0]})",
                                  "Fix the syntax.")) from None
    if not isinstance(document, dict):
        raise InputError(describe(path, "must hold a mapping of parameters, or 'sets:'",
                                  "See `python -m unetlib run-notebooks --help`."))
    if "sets" not in document:
        return {DEFAULT_SET: {**document, **overrides}}
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError(describe(path, "'defaults' must map parameter names to values",
                                  "Write e.g. defaults: {epochs: 2}."))
    sets = document["sets"]
    if isinstance(sets, list) and all(isinstance(item, dict) for item in sets):
        sets = {str(item.pop("name", f"set{i + 1}")): item for i, item in enumerate(sets)}
    if not isinstance(sets, dict) or not sets:
        raise InputError(describe(path, "'sets' must map set names to parameters",
                                  "Write e.g. sets: {small: {patch_size: 128}}."))
    for name, values in sets.items():
        if values is not None and not isinstance(values, dict):
            raise InputError(describe(path, f"set {name!r} must map parameter names to values, "
                                      f"not {type(values).__name__} {values!r}",
                                      "Write e.g. sets: {small: {patch_size: 128}}."))
        if not str(name) or "/" in str(name) or str(name).startswith("."):
            raise InputError(describe(path, f"set name {name!r} cannot be a folder name",
                                      "Use letters, digits, '-' and '_'."))
    return {str(name): {**defaults, **(values or {}), **overrides} for name, values in sets.items()}


def find_notebooks(folder: str | os.PathLike[str] = NOTEBOOKS_DIR,
                   only: Sequence[str] = ()) -> list[Path]:
    """The suite's notebooks (``NN_*.ipynb``) in order, optionally only those named."""
    folder = Path(folder)
    notebooks = sorted((p for p in folder.glob("[0-9][0-9]_*.ipynb")), key=natural_key)
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(key) for key in only)]
    if not notebooks:
        raise InputError(describe(folder, "holds no notebooks named like 01_*.ipynb"
                                  + (f" matching {', '.join(only)}" if only else ""),
                                  "Check --notebooks and --only."))
    return notebooks


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters a notebook declares, with their default values (as written)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {name: spec["default"] for name, spec in declared.items()}


def _rebase(default: str, work_dir: Path) -> str | None:
    """``'../demo/x'`` -> ``'<work_dir>/x'``; None for defaults outside the demo folder."""
    text = default.strip("'\"")
    if text == DEMO_PREFIX or text.startswith(DEMO_PREFIX + "/"):
        return str(work_dir / text[len(DEMO_PREFIX):].lstrip("/"))
    return None


def run_suite(out_dir: str | os.PathLike[str], parameter_sets: Mapping[str, Mapping[str, Any]],
              *, notebooks: Sequence[Path] | None = None, kernel_name: str = "python3",
              progress: bool = True) -> list[NotebookRun]:
    """Execute the notebooks for every parameter set; write ``summary.csv``.

    A failing cell stops the rest of that set (later notebooks read what earlier ones
    wrote) and is reported with the notebook and cell; other sets still run.
    """
    notebooks = list(notebooks) if notebooks is not None else find_notebooks()
    out_dir = Path(out_dir).resolve()
    if out_dir in {nb.parent.resolve() for nb in notebooks}:
        raise ParameterError(f"--out {out_dir} is the notebooks' own folder: executed copies "
                             "would replace the source notebooks; choose another folder.")
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    unknown = {name for values in parameter_sets.values() for name in values} - {
        name for params in declared.values() for name in params}
    if unknown:
        raise ParameterError(f"parameter(s) {', '.join(sorted(unknown))} are not declared by any "
                             f"notebook in {notebooks[0].parent}; check the spelling.")
    # One suite run per output folder: two would overwrite each other's executed copies.
    with output_lock(out_dir), _static_viewers():
        runs: list[NotebookRun] = []
        for set_name, values in parameter_sets.items():
            runs += _run_set(set_name, values, ensure_folder(out_dir / set_name), notebooks,
                             declared, kernel_name=kernel_name, progress=progress)
        write_summary(out_dir / "summary.csv", runs)
    return runs


@contextlib.contextmanager
def _static_viewers() -> Iterator[None]:
    """Kernels started meanwhile show the viewers as static figures (``UNETLIB_WIDGETS=0``).

    A kernel that JupyterLab started for a notebook shows them as widgets, recognised by the
    ``JPY_SESSION_NAME`` the server gives it; run from such a kernel (``!python -m unetlib
    run-notebooks``), papermill's kernels would inherit it. A choice of the user's stands.
    """
    if "UNETLIB_WIDGETS" in os.environ:
        yield
        return
    os.environ["UNETLIB_WIDGETS"] = "0"
    try:
        yield
    finally:
        os.environ.pop("UNETLIB_WIDGETS", None)


def _run_set(set_name: str, values: Mapping[str, Any], set_dir: Path, notebooks: Sequence[Path],
             declared: Mapping[Path, Mapping[str, Any]], *, kernel_name: str,
             progress: bool) -> list[NotebookRun]:
    """Execute the notebooks in order for one parameter set; stop the set at a failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    runs: list[NotebookRun] = []
    failed = False
    for notebook in notebooks:
        if failed:
            runs.append(NotebookRun(set_name, notebook.name, "skipped", 0.0, None,
                                    "an earlier notebook of this set failed"))
            continue
        parameters = {}
        for name, default in declared[notebook].items():
            rebased = _rebase(str(default), set_dir / "demo")
            if rebased is not None:
                parameters[name] = rebased
            if name in values:
                parameters[name] = values[name]
        output = set_dir / notebook.name
        logger.info("[%s] running %s", set_name, notebook.name)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                       cwd=str(notebook.parent), kernel_name=kernel_name,
                                       progress_bar=progress)
        except PapermillExecutionError as error:
            failed = True
            message = (f"{notebook.name}, cell {error.exec_count or error.cell_index}: "
                       f"{error.ename}: {str(error.evalue).splitlines()[0] if error.evalue else ''}")
            logger.error("[%s] failed: %s (executed copy: %s)", set_name, message, output)
            runs.append(NotebookRun(set_name, notebook.name, "failed",
                                    time.perf_counter() - start, output, message))
            continue
        runs.append(NotebookRun(set_name, notebook.name, "ok", time.perf_counter() - start,
                                output, summary=read_summary(output)))
    return runs


def read_summary(notebook: str | os.PathLike[str]) -> dict[str, Any]:
    """Collect the values published with :func:`publish_summary` in an executed notebook."""
    import nbformat

    values: dict[str, Any] = {}
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if SUMMARY_MIMETYPE in data:
                values.update(data[SUMMARY_MIMETYPE])
    return values


def write_summary(path: Path, runs: Sequence[NotebookRun]) -> Path:
    """One CSV row per set and notebook: status, time, error and published numbers."""
    keys: list[str] = []
    for run in runs:
        keys += [key for key in run.summary if key not in keys]
    rows = [{"set": run.set_name, "notebook": run.notebook, "status": run.status,
             "seconds": f"{run.seconds:.1f}", "error": run.error,
             "output": str(run.output or ""), **run.summary} for run in runs]
    return write_csv(path, rows, ["set", "notebook", "status", "seconds", *keys, "error", "output"],
                     overwrite=True)
