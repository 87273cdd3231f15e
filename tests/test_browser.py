"""The notebooks as people open them: JupyterLab in headless Chromium, every cell run,
the widgets live, and each viewer's picture changing when its control is moved.

The suite's notebooks are written, with the tiny parameters of the papermill tests, as
parameterised copies (papermill, nothing executed) into a temporary folder, so their demo
data land beside them there (``../demo``), never in the repository or a user's folder.
One JupyterLab server (localhost, random token, no user configuration) serves them and
one headless Chromium opens each in turn, in suite order, since each notebook reads what
the one before wrote. A screenshot of each notebook's viewer after the control change is
saved in ``out/browser-screenshots/`` (pytest names the folder at the end of the run).

Needs Debian's ``chromium`` and ``chromium-driver``; without them the test skips, naming
the install command (in CI, where ``.ci/run`` installs them, it fails instead).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import papermill
import pytest
from lab_browser import SCREENSHOTS, LabPage, missing_browser, start_chromium, start_lab, wait_for
from test_notebooks import NOTEBOOKS, SUITE, TINY

from unetlib.app.notebooks import notebook_parameters

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# Each notebook's viewer and the controls a person moves in it, in this order.
VIEWERS = {
    "01_reshaping.ipynb": ("cycle", "laser"),   # frame browser
    "02_augmentation.ipynb": ("frame",),        # mask viewer
    "03_train_grayscale.ipynb": ("frame",),     # prediction viewer
    "04_train_rgb.ipynb": ("frame",),           # prediction viewer, organs in colour
    "05_quantify.ipynb": ("cycle",),            # cycle browser
    "06_study.ipynb": ("parameter", "laser"),   # one dot per mouse
}
# The tiny papermill parameters, without the cross-validation: it shows no widget and
# would only add a minute of training to the browser run.
PARAMETERS = {**TINY, "crossval_folds": 0}

RUN_TIMEOUT = 600      # seconds for one notebook's cells on a slow 2-core machine
REDRAW_TIMEOUT = 60    # seconds for a viewer to show a new picture after a control moved

# What a widget looks like when the front end cannot render it: its text repr.
WIDGET_REPR = re.compile(r"\b(?:IntSlider|FloatRangeSlider|SelectionSlider|Dropdown|VBox|HBox|"
                         r"interactive|Output)\(")
WIDGET_FAILURES = ("Error displaying widget", "Loading widget...")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """Parameterised copies of the suite in ``<tmp>/notebooks`` (none executed)."""
    missing = missing_browser()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    pytest.importorskip("selenium", reason="pip install -r requirements.txt")
    folder = tmp_path_factory.mktemp("lab") / "notebooks"
    folder.mkdir()
    for name in SUITE:
        declared = notebook_parameters(NOTEBOOKS / name)
        papermill.execute_notebook(str(NOTEBOOKS / name), str(folder / name), prepare_only=True,
                                   parameters={key: value for key, value in PARAMETERS.items()
                                               if key in declared}, progress_bar=False)
    return folder


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    """One JupyterLab server on the copies and one headless Chromium tab on it."""
    work = tmp_path_factory.mktemp("lab-work")
    server = start_lab(served, work)
    try:
        driver = start_chromium(work / "chromium-profile")
    except BaseException:
        server.stop()
        raise
    try:
        yield LabPage(driver, server)
    finally:
        driver.quit()
        server.stop()


def test_every_notebook_of_the_suite_has_its_viewer_checked():
    assert list(VIEWERS) == SUITE


_failed: list[str] = []  # notebooks that failed: the later ones read their outputs


@pytest.mark.parametrize("name", list(VIEWERS))
def test_notebook_runs_in_jupyterlab_with_live_viewers(page, name):
    if _failed:
        pytest.skip(f"{_failed[0]} failed, and {name} reads what it writes")
    try:
        _check_notebook(page, name)
    except BaseException:
        _failed.append(name)
        page.driver.save_screenshot(str(_screenshot_path(f"{Path(name).stem}-failed")))
        raise
    finally:
        page.server.shut_down_kernels()


def _screenshot_path(stem: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{stem}.png"


def _check_notebook(page: LabPage, name: str) -> None:
    page.open_notebook(name)
    page.run_all_cells()
    prompts = page.wait_until_run(name, RUN_TIMEOUT)

    # What a person checks first: no error shown, every cell ran.
    assert not _errors(page), f"{name} shows errors:\n" + "\n---\n".join(_errors(page))
    assert all(re.fullmatch(r"\[\d+\]:", prompt.strip()) for prompt in prompts), (
        f"not every cell of {name} ran: {prompts}")

    # Widgets render as widgets: none failed or stuck loading, none shown as its text repr.
    def settled() -> list[dict[str, str]] | None:
        outputs = page.outputs()
        texts = " ".join(output["text"] for output in outputs)
        return None if "Loading widget..." in texts else outputs

    outputs = wait_for(settled, REDRAW_TIMEOUT, f"the widgets of {name} to load")
    texts = [output["text"] for output in outputs]
    assert not [text for text in texts if any(failure in text for failure in WIDGET_FAILURES)]
    assert not [text for text in texts if WIDGET_REPR.search(text)], (
        f"{name} shows a widget as text: {[t for t in texts if WIDGET_REPR.search(t)]}")
    viewers = page.viewers()
    assert len(viewers) == 1, f"{name} shows {len(viewers)} live viewers, not one"
    viewer = viewers[0]

    # Moving each control changes the picture the viewer shows.
    picture = wait_for(lambda: page.picture(viewer), REDRAW_TIMEOUT, f"the picture of {name}")
    for label in VIEWERS[name]:
        action = page.operate(page.control(viewer, label))
        picture = _new_picture(page, viewer, picture, f"{name}, {label!r} control: {action}")
    # A failed redraw would show its traceback inside the viewer.
    assert not _errors(page), f"{name}'s viewer shows errors:\n" + "\n---\n".join(_errors(page))
    page.screenshot(viewer, _screenshot_path(Path(name).stem))


def _new_picture(page: LabPage, viewer, previous: str, what: str) -> str:
    """Wait until ``viewer`` shows a picture other than ``previous``; return it."""
    def changed() -> str | None:
        picture = page.picture(viewer)
        return picture if picture and picture != previous else None

    return wait_for(changed, REDRAW_TIMEOUT, f"a new picture after moving a control ({what})")


def _errors(page: LabPage) -> list[str]:
    """The error outputs on the page (tracebacks and error messages, in red)."""
    return [output["text"] for output in page.outputs()
            if output["mime"] == "application/vnd.jupyter.stderr"
            and ("Traceback" in output["text"] or "Error" in output["text"])]
