"""The notebooks run top to bottom (their code cells, in order, in one namespace), so they cannot rot.
Their asserts check the numbers; this test only fails if a cell raises."""
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    with open(os.path.join(ROOT, "notebooks", name)) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{name}[cell {i}]", "exec"), namespace)
