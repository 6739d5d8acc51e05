"""Every notebook runs top to bottom in a fresh kernel (the venv's python) with small settings, and is saved
with its outputs cleared. A broken notebook fails `make test`."""

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


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec for this interpreter in a private JUPYTER_PATH (nothing written outside tmp)."""
    spec = tmp_path / "jupyter" / "kernels" / "cvi-lab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cvi-lab (test)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CVI_LAB_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("CVI_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return "cvi-lab-test"


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else json.dumps(o.get("data", {})))
    return "\n".join(out)


EXPECT = {  # something each notebook must have printed, so a silently empty run fails too
    "01_quickstart": ["end_conversation_endpoint_hit", "system.shutdown", "response latency at the participant",
                      "user: "],
    "02_stages": ["s of speech", "frames at", "tok/s", "pocketsphinx_en"],
    "03_compare": ["latency p50 ms"],
}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, venv_kernel, tmp_path):
    import shutil

    from nbclient import NotebookClient

    if path.stem == "03_compare" and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package, installed by `make test` as root) speaks the scripted participants")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=540, kernel_name=venv_kernel, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any failing cell
    text = _text(nb)
    for expected in EXPECT.get(path.stem, []):
        assert expected in text, f"{path.name}: {expected!r} not in the outputs"
