"""Every notebook runs top to bottom headless as shipped (`jupyter nbconvert --execute`), and is saved with its
outputs cleared. A broken notebook fails `make test`."""

from __future__ import annotations

import json
import pathlib
import sys

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert {"01_quickstart.ipynb", "02_stages.ipynb", "03_compare.ipynb"} <= set(names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_with_outputs_cleared(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i} has outputs: clear them"
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state: clear it"


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else json.dumps(o.get("data", {})))
    return "\n".join(out)


EXPECT = {  # something each notebook must have printed, so a silently empty run fails too
    "01_quickstart": ["GUEST=True SMALL=True", "end_conversation_endpoint_hit", "system.shutdown", "response latency at the participant",
                      "user: "],
    "02_stages": ["SMALL=True", "s of speech", "frames at", "tok/s", "pocketsphinx_en"],
    "03_compare": ["SMALL=True", "latency p50 ms", "per-turn view: asr=faster_whisper_tiny_en turn_"],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_parameters_cell(path):
    """papermill's convention: one cell tagged `parameters`, literal assignments only (papermill injects
    its overrides after it); no environment variable decides how a notebook runs."""
    import ast

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert tagged == code[:1], f"{path.name}: the first code cell (and only it) must be tagged `parameters`"
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), ast.dump(node)
    source = "\n".join(c.source for c in code)
    assert "os.environ" not in source and "getenv" not in source


def _run_in_kernel(source: str, allow_stdin: bool) -> str:
    from jupyter_client.manager import start_new_kernel

    import os

    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        out: list[str] = []
        kc.execute_interactive(source, allow_stdin=allow_stdin, timeout=120,
                               output_hook=lambda msg: out.append(msg["content"].get("text", "")),
                               stdin_hook=lambda msg: None)
        return "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("allow_stdin", [True, False])
def test_attended_reads_whether_the_front_end_can_answer_input(allow_stdin):
    """JupyterLab sends allow_stdin=true, nbclient (nbconvert, papermill) false: attended() says which."""
    text = _run_in_kernel("from cvi_lab.notebook.attended import attended\nprint(attended())", allow_stdin)
    assert text.strip() == str(allow_stdin)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_headless_as_shipped(path, tmp_path):
    """`jupyter nbconvert --to notebook --execute` exactly as a user types it: the shipped parameters,
    the notebook's own kernel, no variable telling it that it is a test. Nobody can answer input(), so
    the notebooks take their headless defaults (the scripted participant, small settings)."""
    import os
    import shutil
    import subprocess

    if path.stem == "03_compare" and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package, installed by `make test` as root) speaks the scripted participants")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CVI_LAB_NOTEBOOK", "PYTHONPATH", "JUPYTER"))}
    env["CVI_LAB_HOME"] = str(tmp_path / "home")  # the user's home is not the test's
    jupyter = pathlib.Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(path), "--output-dir", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-6000:]
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    text = _text(nb)
    for expected in EXPECT.get(path.stem, []):
        assert expected in text, f"{path.name}: {expected!r} not in the outputs"
