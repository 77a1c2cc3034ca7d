"""The notebooks are saved with their outputs; here they are re-run, and a saved text output that no longer matches
what the code prints fails, naming the notebook and the cell (`python notebooks/run_notebooks.py --check`):
exactly on the platform that saved the notebook, and by each cell's tag elsewhere (a float trajectory differs
from CPU to CPU; the rules are in run_notebooks.py's docstring and docs/testing.md).
The runner itself is tested on small notebooks written on the fly."""

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "notebooks", "run_notebooks.py")
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))

_spec = importlib.util.spec_from_file_location("run_notebooks", RUNNER)
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)


def assert_nbformat_v4(nb):
    """The parts of the nbformat 4.5 schema that a writer can get wrong: required keys, no unknown keys, output
    types and their fields, multi-line strings as str or list of str, unique cell ids."""
    multiline = lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
    assert set(nb) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5 and isinstance(nb["metadata"], dict)
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids)
    for cell in nb["cells"]:
        assert isinstance(cell["metadata"], dict) and multiline(cell["source"])
        if cell["cell_type"] == "markdown":
            assert set(cell) <= {"id", "cell_type", "metadata", "source", "attachments"}
            continue
        assert cell["cell_type"] == "code"
        assert set(cell) == {"id", "cell_type", "metadata", "source", "outputs", "execution_count"}
        assert cell["execution_count"] is None or isinstance(cell["execution_count"], int)
        for out in cell["outputs"]:
            kind = out["output_type"]
            if kind == "stream":
                assert set(out) == {"output_type", "name", "text"} and out["name"] in ("stdout", "stderr")
                assert multiline(out["text"])
            else:
                assert kind in ("display_data", "execute_result")
                keys = {"output_type", "data", "metadata"} | (
                    {"execution_count"} if kind == "execute_result" else set()
                )
                assert set(out) == keys and isinstance(out["metadata"], dict)
                assert all(multiline(v) for v in out["data"].values())


def write_notebook(path, cells):
    """cells: list of (cell_type, source) or (cell_type, source, tags). Written as an nbformat 4.5 notebook
    without outputs."""
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    for i, (kind, source, *tags) in enumerate(cells):
        cell = {
            "id": f"c{i}",
            "cell_type": kind,
            "metadata": {"tags": tags[0]} if tags else {},
            "source": source.splitlines(True),
        }
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        nb["cells"].append(cell)
    run_notebooks.write(nb, str(path))
    return str(path)


SMALL = [
    ("markdown", "# a title"),
    ("code", "import os\nx = 6 * 7\nprint('cwd has gcpo.py:', os.path.isfile('gcpo.py'))"),
    ("code", "x"),
    ("code", "import matplotlib.pyplot as plt\nprint('before')\nplt.plot([0, 1])\nplt.show()\nprint('after')"),
    ("markdown", "text"),
    ("code", "x + 1;"),
    ("code", "plt.figure()\nplt.plot([1, 0])\nx - 1"),
]


def test_runner_saves_every_kind_of_output_as_nbformat_v4(tmp_path):
    path = write_notebook(tmp_path / "small.ipynb", SMALL)
    nb = run_notebooks.execute(path)
    run_notebooks.write(nb, path)
    nb = run_notebooks.load(path)
    assert_nbformat_v4(nb)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == [1, 2, 3, 4, 5]
    kinds = [[o["output_type"] for o in c["outputs"]] for c in code]
    assert kinds == [
        ["stream"],
        ["execute_result"],
        ["stream", "display_data", "stream"],
        [],
        ["execute_result", "display_data"],
    ]
    assert "".join(code[0]["outputs"][0]["text"]) == "cwd has gcpo.py: True\n"  # the repository root
    assert code[1]["outputs"][0]["data"]["text/plain"] == ["42"] and code[1]["outputs"][0]["execution_count"] == 2
    assert ["".join(o["text"]) for o in code[2]["outputs"][::2]] == ["before\n", "after\n"]
    png = base64.b64decode(code[2]["outputs"][1]["data"]["image/png"])
    assert png.startswith(b"\x89PNG") and code[2]["outputs"][1]["data"]["text/plain"][0].startswith("<Figure size")
    assert code[4]["outputs"][0]["data"]["text/plain"] == ["41"]


def test_rerunning_gives_the_same_file(tmp_path):
    path = write_notebook(tmp_path / "small.ipynb", SMALL)
    run_notebooks.write(run_notebooks.execute(path), path)
    first = open(path, "rb").read()
    run_notebooks.write(run_notebooks.execute(path), path)
    assert open(path, "rb").read() == first  # figures included: no timestamps or version stamps


def test_check_names_the_cell_whose_text_changed_and_ignores_figure_bytes(tmp_path):
    path = write_notebook(tmp_path / "small.ipynb", SMALL)
    nb = run_notebooks.execute(path)
    run_notebooks.write(nb, path)
    assert run_notebooks.check(path) == []
    nb["cells"][3]["outputs"][1]["data"]["image/png"] = base64.b64encode(b"other bytes").decode()
    run_notebooks.write(nb, path)
    assert run_notebooks.check(path) == []  # figures are not compared
    nb["cells"][2]["outputs"][0]["data"]["text/plain"] = ["41"]
    nb["cells"][3]["outputs"] = nb["cells"][3]["outputs"][:2]  # the 'after' line lost
    run_notebooks.write(nb, path)
    problems = run_notebooks.check(path)
    assert len(problems) == 2
    assert problems[0].startswith("small.ipynb: cell 2 (code cell 2)")
    assert "-[result] 41" in problems[0] and "+[result] 42" in problems[0]
    assert problems[1].startswith("small.ipynb: cell 3 (code cell 3)") and "+after" in problems[1]


def test_cli_reports_a_failing_cell_and_leaves_the_file_alone(tmp_path):
    path = write_notebook(tmp_path / "bad.ipynb", [("code", "y = 1"), ("markdown", "m"), ("code", "z = y / 0")])
    before = open(path, "rb").read()
    proc = subprocess.run([sys.executable, RUNNER, path], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert "bad.ipynb: cell 2 (code cell 2) raised" in proc.stderr
    assert "z = y / 0" in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert "run_notebooks.py" not in proc.stderr  # the traceback starts in the cell
    assert open(path, "rb").read() == before


def test_cli_check_exit_status_and_message(tmp_path):
    path = write_notebook(tmp_path / "small.ipynb", [("code", "print('one')")])
    nb = run_notebooks.execute(path)
    nb["cells"][0]["outputs"][0]["text"] = ["two\n"]
    run_notebooks.write(nb, path)
    proc = subprocess.run([sys.executable, RUNNER, "--check", path], capture_output=True, text=True)
    assert proc.returncode == 1 and "small.ipynb: cell 0 (code cell 1)" in proc.stderr and "+one" in proc.stderr


def test_a_printed_memory_address_is_refused(tmp_path):
    path = write_notebook(tmp_path / "addr.ipynb", [("code", "object()")])
    with pytest.raises(run_notebooks.CellError, match="memory address"):
        run_notebooks.execute(path)


def test_ansi_escape_codes_are_refused(tmp_path):
    path = write_notebook(tmp_path / "ansi.ipynb", [("code", "print('\\x1b[31mred\\x1b[0m')")])
    with pytest.raises(run_notebooks.CellError, match="ANSI"):
        run_notebooks.execute(path)


def test_numbers_within_the_tolerance_and_the_same_text_around_them():
    same = run_notebooks.same_up_to_numbers
    atol, rtol = run_notebooks.ATOL, run_notebooks.RTOL
    saved = "eval reward 0.500 -> 0.800 after 10 steps, AUC 0.812\n"
    assert same(saved, saved)
    assert same(saved, "eval reward 0.520 -> 0.790 after 10 steps, AUC 0.807\n")
    assert not same(saved, "eval reward 0.500 -> 0.800 after 11 steps, AUC 0.812\n".replace("11", "20"))
    assert not same(saved, f"eval reward {0.5 + atol + rtol * 0.5 + 0.01:.3f} -> 0.800 after 10 steps, AUC 0.812\n")
    assert same(saved, f"eval reward {0.5 + atol + rtol * 0.5 - 0.001:.3f} -> 0.800 after 10 steps, AUC 0.812\n")
    assert not same(saved, "eval reward 0.500 -> 0.800 after 10 steps, key AUC 0.812\n")  # other words
    assert not same(saved, "eval reward 0.500 -> 0.800 after 10 steps, AUC 0.812 0.1\n")  # one more number
    assert not same("x -1.5\n", "x 1.5\n")  # the sign is part of the number
    assert run_notebooks.labels("prompt:   a b\nweights: 1 2\nend\n") == ["prompt", "weights", "end"]


@pytest.mark.parametrize(
    "tag, other_platform, now, ok",
    [
        (None, False, "w 0.501\n", False),
        (None, True, "w 0.501\n", False),  # untagged: exact everywhere
        ("trajectory", False, "w 0.501\n", False),  # on the saving platform: exact
        ("trajectory", True, "w 0.520\n", True),
        ("trajectory", True, "w 0.700\n", False),
        ("trajectory", True, "v 0.500\n", False),
        ("sampled", False, "w 0.501\n", False),
        ("sampled", True, "w 0.9 1.2 (tokens)\n", True),
        ("sampled", True, "v 0.500\n", False),
    ],
)
def test_check_is_exact_on_the_saving_platform_and_by_tag_elsewhere(tmp_path, tag, other_platform, now, ok):
    """A saved output 'w: 0.500' against the same output printed now (`now`), for a cell with each tag, on the
    platform that saved the notebook and on another one (its recorded torch CPU capability changed)."""
    cell = ("code", f"print({now.replace(' ', ': ', 1).strip()!r})") + (([tag],) if tag else ())
    path = write_notebook(tmp_path / "nb.ipynb", [cell])
    fresh = run_notebooks.execute(path)
    saved = json.loads(json.dumps(fresh))
    saved["cells"][0]["outputs"][0]["text"] = ["w: 0.500\n"]
    if other_platform:
        saved["metadata"]["platform"]["torch_cpu_capability"] = "another"
    problems = run_notebooks.compare(saved, fresh, "nb.ipynb")
    assert problems == [] if ok else len(problems) == 1 and "cell 0 (code cell 1)" in problems[0]


def test_the_saved_platform_is_what_decides_the_floats():
    sig = run_notebooks.platform()
    assert {"python", "torch", "numpy", "transformers", "cpu", "torch_cpu_capability"} <= set(sig)
    assert sig["torch"] == torch.__version__ and sig["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert sig == run_notebooks.platform()  # the same on every call


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_notebooks_record_their_platform_and_tag_only_known_kinds(name):
    nb = run_notebooks.load(os.path.join(ROOT, "notebooks", name))
    assert_nbformat_v4(nb)
    assert set(nb["metadata"]["platform"]) == set(run_notebooks.platform())
    tags = [run_notebooks.tags(c) for c in nb["cells"] if c["cell_type"] == "code"]
    assert set().union(*tags) <= {"trajectory", "sampled"}
    assert not any(run_notebooks.ANSI.search(run_notebooks.text_outputs(c)) for c in nb["cells"])


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_notebook_outputs_match_the_code(name):
    """Runs the notebook in a fresh interpreter, one thread, as CI does; fails naming each cell whose saved
    text output differs (exactly on the saving platform, by the cell's tag elsewhere). Regenerate with
    `python notebooks/run_notebooks.py NAME` after a deliberate change."""
    nb = run_notebooks.load(os.path.join(ROOT, "notebooks", name))
    assert any(c.get("outputs") for c in nb["cells"]), f"{name} is saved without outputs"
    proc = subprocess.run(
        [sys.executable, RUNNER, "--check", name],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
