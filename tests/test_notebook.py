"""The notebook in figures/ runs: every code cell, in order, in one namespace
(what a kernel does, without needing Jupyter installed)."""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "figures" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells and all(not c["outputs"] for c in cells), "commit it without outputs"
    namespace: dict = {"__name__": "__notebook__"}
    for k, cell in enumerate(cells):
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"{NOTEBOOK.name} cell {k}", "exec"), namespace)
        except Exception as exc:  # name the cell
            pytest.fail(f"{NOTEBOOK.name}, code cell {k} failed: {exc!r}\n{source}")
    table = namespace["table"]
    assert set(table.area) == {"VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm"}
    best = namespace["best"]
    assert len(best) == 6 and (best.value > 0.2).all()
