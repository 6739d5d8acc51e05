"""The control panel in real JupyterLab with Debian chromium: the widget renders, the embedded meeting page
gets the (fake) microphone and joins the live call, the panel shows the participant, the greeting's caption
and the speaking state, and the End button ends the call with its shutdown reason and usage."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time

import pathlib

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CVI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium not found at {CHROMIUM}"),
]

CELL = """import sys, tempfile
sys.path.insert(0, {repo!r})
from cvi_lab.notebook import ControlPanel, start_server
server = start_server("++engine.max_tokens=16", home=tempfile.mkdtemp())
panel = ControlPanel(server, poll_s=0.5, iframe_height=300)
panel.max_call_duration.value = "not a number"
panel.create()
panel"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb.cells = [nbformat.v4.new_code_cell(CELL.format(repo=str(REPO))),
                nbformat.v4.new_code_cell('panel.max_call_duration.value = "120"\nprint("created", panel.create().conversation_id)')]
    nbformat.write(nb, root / "panel.ipynb")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               IPYTHONDIR=str(tmp_path / "ipython"), CVI_LAB_HOME=str(tmp_path / "home"))
    port = _free_port()
    cmd = [os.path.join(os.path.dirname(sys.executable), "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--IdentityProvider.token=", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run cells by command, not keystrokes
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}/lab/tree/panel.ipynb", tmp_path / "lab.log"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _wait_text(page, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = await page.inner_text(".jp-Notebook")
        if text in body:
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{text!r} did not appear in the notebook within {timeout} s:\n{body[-2000:]}")


async def _run_cell(page, index: int, timeout: float = 60) -> None:
    """Run one cell through JupyterLab's command registry and wait until its prompt shows it was queued or ran.

    Keystrokes (Shift+Enter) were seen lost on a loaded machine when the notebook had not taken focus yet; a
    command cannot be lost, and the prompt check proves the kernel got the cell before the test waits on output."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputArea-prompt")
    before = (await prompt.inner_text()).strip()
    await page.evaluate("""async (index) => {
        const notebook = window.jupyterapp.shell.currentWidget.content;
        notebook.activeCellIndex = index;
        await window.jupyterapp.commands.execute('notebook:run-cell');
    }""", index)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = (await prompt.inner_text()).strip()
        if now != before and now not in ("[ ]:", ""):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"cell {index} was not queued within {timeout} s (prompt still {before!r})")


async def test_panel_in_jupyterlab_joins_and_ends_a_live_call(jupyter_lab):
    import playwright.async_api as playwright_api
    url, log = jupyter_lab
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required", "--no-first-run", "--disable-sync"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 1400})
            await page.goto(url, timeout=120_000)
            await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            await page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            await page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                         " && window.jupyterapp.shell.currentWidget.sessionContext"
                                         " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                                         timeout=120_000)
            await _run_cell(page, 0)  # the panel, with a bad timeout typed in
            await _wait_text(page, "max call duration: 'not a number' is not a number", 180)
            await _run_cell(page, 1)  # a valid form: the call starts (models load)
            await _wait_text(page, "created c", 240)
            frame = page.locator("iframe[src*='/meet/']")
            assert "microphone" in (await frame.get_attribute("allow") or "")
            body = await _wait_text(page, "1 participant", 60)  # the embedded page joined with the fake mic
            body = await _wait_text(page, "replica: Hey there", 60)  # the greeting, captioned live
            assert "speaking state unknown" not in body  # live events from the engine
            end = page.locator("button.widget-button", has_text="End").first
            await end.scroll_into_view_if_needed()
            await end.click(force=True)
            await _wait_text(page, "ended: end_conversation_endpoint_hit; usage", 60)
            await _wait_text(page, "The call ended", 60)  # the summary renders right after the status line
        except Exception:
            await page.screenshot(path=str(log.with_name("failure.png")))
            print(log.read_text()[-3000:], f"\nscreenshot: {log.with_name('failure.png')}")
            raise
        finally:
            await browser.close()
