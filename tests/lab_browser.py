"""JupyterLab on localhost, driven in headless Chromium: the harness of tests/test_browser.py.

Selenium rather than Playwright: Debian builds ``chromium`` and ``chromium-driver`` from one
source package, so the driver always speaks exactly the browser's protocol version, whereas
Playwright is released against one Chromium revision of its own and supports others only
on a best-effort basis. Selenium is given the driver's path (``Service(CHROMEDRIVER)``), and
with a path it never runs Selenium Manager, so nothing is downloaded at run time.

Everything a person would look at is read from the page (prompts, outputs, widgets,
pictures); the server's REST API is used only to know whether the kernel is busy and to
shut kernels down between notebooks.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from helpers import free_port

SCREENSHOTS = Path(__file__).resolve().parents[1] / "out" / "browser-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_COMMAND = "apt-get install -y chromium chromium-driver (as root; or: make chromium)"

# A closed network refuses Chromium's own background connections (updates, sync, field
# trials), and a fresh profile keeps the user's extensions and settings out.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1100")

# JupyterLab's own settings for the test: no news or update checks (network, and a toast
# over the notebook), and no toast notifications at all.
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}}

T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the browser test cannot run here (one line naming the install command), or None."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} not found: install with {INSTALL_COMMAND}"
    return None


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll ``condition`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LabServer:
    """A running JupyterLab server: its address, token, and the process behind it."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API (``/api/...``) with the token; the decoded JSON."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        """Execution state of the kernel of ``notebook`` (a path under the root), or None."""
        for session in self.api("GET", "/api/sessions"):
            if session["path"] == notebook and session.get("kernel"):
                return session["kernel"]["execution_state"]
        return None

    def shut_down_kernels(self) -> None:
        """End every session and its kernel (frees the memory of a finished notebook)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def isolated_jupyter_env(work: Path) -> dict[str, str]:
    """Environment for a server that reads no user configuration: config, data, runtime,
    settings, workspaces and IPython folders under ``work``. Kernel specs of this Python's
    environment (``sys.prefix``) stay findable, so ``python3`` is this environment."""
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
               "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_SETTINGS_DIR": "settings",
               "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "IPYTHONDIR": "ipython"}
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_PREFER_ENV_PATH": "1"}
    for variable, name in folders.items():
        (work / name).mkdir(parents=True, exist_ok=True)
        env[variable] = str(work / name)
    env.pop("UNETLIB_WIDGETS", None)  # the kernel must decide by itself, as for a user
    for name, values in LAB_SETTINGS.items():
        path = work / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return env


def start_lab(root: Path, work: Path, *, timeout: float = 120) -> LabServer:
    """Start JupyterLab from this Python on a free localhost port with a random token.

    Parameters
    ----------
    root : Path
        Folder the server shows (its notebooks open as ``/lab/tree/<name>``).
    work : Path
        Empty folder for the server's configuration, runtime files and log.
    """
    port, token = free_port(), secrets.token_hex(24)
    log = work / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI runs as root, where Jupyter wants to be told it is meant
        command.append("--allow-root")
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=isolated_jupyter_env(work), cwd=root)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
        try:
            return server.api("GET", "/api/status") is not None
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_for(ready, timeout, "JupyterLab to answer")
    except BaseException:
        server.stop()
        raise
    return server


def start_chromium(profile: Path):
    """Headless Chromium from Debian's packages, driven by its own chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


# The picture a viewer shows: the image of its output area (a data: URL of the figure).
_PICTURE_JS = """
const img = arguments[0].querySelector('.widget-output img');
return img ? img.getAttribute('src') : null;
"""

# One entry per code cell, in order: its prompt (e.g. "[3]:", "[*]:", "[ ]:").
_PROMPTS_JS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
    .map(cell => (cell.querySelector('.jp-InputPrompt') || {}).textContent || '');
"""

# Every output's mime type and text, as the page shows them.
_OUTPUTS_JS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')]
    .map(output => ({mime: output.getAttribute('data-mime-type') || '',
                     text: output.innerText || ''}));
"""


class LabPage:
    """One browser tab on a JupyterLab server, opening and running notebooks like a person."""

    def __init__(self, driver, server: LabServer) -> None:
        self.driver, self.server = driver, server

    def open_notebook(self, name: str, *, timeout: float = 120) -> None:
        """Open ``name`` in a workspace of its own (nothing else restored) and wait until
        its kernel has started and is idle."""
        from selenium.webdriver.common.by import By

        workspace = Path(name).stem.replace("_", "-")
        self.driver.get(f"{self.server.url}/lab/workspaces/{workspace}/tree/{name}"
                        f"?reset&token={self.server.token}")
        wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell"),
                 timeout, f"{name} to show its cells")
        wait_for(lambda: self.server.kernel_state(name) == "idle", timeout,
                 f"the kernel of {name} to start")

    def run_all_cells(self) -> None:
        """Run > Run All Cells, through the menu bar."""
        from selenium.webdriver.common.by import By

        menus = self.driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
        (run,) = [menu for menu in menus if menu.text.strip() == "Run"]
        run.click()
        item = wait_for(lambda: self.driver.find_elements(
            By.CSS_SELECTOR, '.lm-Menu-item[data-command="runmenu:run-all"]'), 10,
            "the Run menu")[0]
        item.click()

    def prompts(self) -> list[str]:
        return self.driver.execute_script(_PROMPTS_JS)

    def wait_until_run(self, name: str, timeout: float) -> list[str]:
        """Until the run of a freshly opened notebook has ended: its kernel idle, no cell
        queued or running, some cell executed. Returns the prompts: all numbered when every
        cell ran, blank from the first error on (JupyterLab stops a run at an error)."""
        def ended() -> list[str] | None:
            prompts = self.prompts()
            executed = any(_executed(prompt) for prompt in prompts)
            running = any("*" in prompt for prompt in prompts)
            if executed and not running and self.server.kernel_state(name) == "idle":
                return prompts
            return None

        try:
            return wait_for(ended, timeout, f"the cells of {name} to run", interval=1.0)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; prompts {self.prompts()}") from None

    def outputs(self) -> list[dict[str, str]]:
        """Every output area's mime type and visible text."""
        return self.driver.execute_script(_OUTPUTS_JS)

    def viewers(self) -> list:
        """The unetlib viewers on the page (ipywidgets boxes with class ``unetlib-viewer``)."""
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR,
                                         ".jp-NotebookPanel:not(.lm-mod-hidden) .unetlib-viewer")

    def picture(self, viewer) -> str | None:
        """The figure a viewer currently shows, as its image's data URL."""
        return self.driver.execute_script(_PICTURE_JS, viewer)

    def control(self, viewer, label: str):
        """The control of ``viewer`` whose description reads ``label``."""
        from selenium.webdriver.common.by import By

        for control in viewer.find_elements(By.CSS_SELECTOR, ".widget-inline-hbox"):
            labels = control.find_elements(By.CSS_SELECTOR, ".widget-label")
            if labels and labels[0].get_attribute("textContent").strip() == label:
                return control
        raise LookupError(f"no control labelled {label!r} in the viewer")

    def operate(self, control) -> str:
        """Change a control as a person would; returns what was done.

        A slider: focus its handle and press the arrow key towards the side with room
        (right unless it stands at its maximum). A drop-down: choose the next option.
        """
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select

        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", control)
        selects = control.find_elements(By.TAG_NAME, "select")
        if selects:
            menu = Select(selects[0])
            index = [option.is_selected() for option in menu.options].index(True)
            target = (index + 1) % len(menu.options)
            menu.select_by_index(target)
            return f"chose option {menu.options[target].text!r}"
        handle = control.find_element(By.CSS_SELECTOR, ".noUi-handle")
        now, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
        key, name = (Keys.ARROW_LEFT, "ArrowLeft") if now >= top else (Keys.ARROW_RIGHT, "ArrowRight")
        handle.send_keys(key)
        return f"pressed {name} on the slider at {now:g} of {top:g}"

    def screenshot(self, viewer, path: Path) -> Path:
        """Save the window with the cell of ``viewer`` (its code, then the viewer) at the top."""
        self.driver.execute_script(
            "(arguments[0].closest('.jp-Cell') || arguments[0]).scrollIntoView({block: 'start'});",
            viewer)
        time.sleep(0.5)  # let the scroll and the last image paint
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


def _executed(prompt: str) -> bool:
    """True for the prompt of a cell that ran: ``[12]:``."""
    return prompt.strip().startswith("[") and prompt.strip()[1:].rstrip(":]").isdigit()
