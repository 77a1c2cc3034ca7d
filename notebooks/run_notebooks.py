"""Run the notebooks and save them with their outputs; --check re-runs them and compares the text outputs.

    python notebooks/run_notebooks.py                          # regenerate every notebooks/*.ipynb in place
    python notebooks/run_notebooks.py token_credit.ipynb       # only this one
    python notebooks/run_notebooks.py --check                  # exit 1 if a saved text output has changed

No Jupyter is needed. A notebook's code cells run in order in one namespace (`__name__ == "__main__"`), with the
repository root as the working directory and on `sys.path`, one torch thread, matplotlib's Agg backend, and
the global random generators (random, numpy, torch) seeded with 0. What a cell prints becomes a "stream"
output, the value of its last expression (unless None or the line ends with ";") an "execute_result", and each
open matplotlib figure a "display_data" PNG, in the order they appear (plt.show() shows the figures at that
point; the rest are shown when the cell ends, then closed). The file is written back as nbformat v4 JSON.
Given several notebooks, each runs in its own interpreter, as each would get its own kernel.

--check runs the notebooks with NOTEBOOK_CHECK=1 in the environment (a notebook that writes files, such as its
figures, skips that: a check leaves the repository as it was) and compares, cell by cell, the saved stdout and
execute_result text with what the code prints now, naming each code cell that differs with a short diff.
Figures and stderr are saved but not compared (PNG bytes depend on the matplotlib version). So that a check can
pass at all, text outputs must be deterministic: a text output showing a memory address ("at 0x7f...") is an
error, and so is an ANSI colour code.

A float trajectory of training or sampling is deterministic on one platform only: another CPU (or torch's
kernels for another instruction set, ATEN_CPU_CAPABILITY) rounds differently, and the difference grows. So the
notebook's metadata records the platform that saved its outputs (`platform()`), and a code cell whose output
depends on such a trajectory carries a tag in its metadata:
    no tag        exact text on every platform (hand computations: they must not depend on the CPU);
    trajectory    exact on the saving platform; elsewhere the same text once every number is masked, and each
                  number within ATOL + RTOL·|saved| of the saved one;
    sampled       (sampled tokens are shown) exact on the saving platform; elsewhere only each line's label,
                  the text before its first colon.
"""

import argparse
import ast
import base64
import difflib
import hashlib
import importlib.metadata
import io
import json
import linecache
import os
import platform as _platform
import random
import re
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
ANSI = re.compile(r"\x1b\[")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
ATOL, RTOL = 0.05, 0.15  # a trajectory cell's numbers on another platform (measured: docs/testing.md)
SOURCES: dict[str, str] = {}  # cell file name ("name.ipynb[cell 3]") → source, for tracebacks


class CellError(Exception):
    """A cell raised, or printed something that cannot be compared; the message names the notebook and cell."""


class Capture(io.TextIOBase):
    """A text stream (stdout or stderr) that appends what is written to the cell's list of outputs."""

    def __init__(self, outputs: list, name: str):
        self.outputs, self.name = outputs, name

    def writable(self):
        return True

    def write(self, text):
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == self.name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)


def show_figures(outputs: list) -> None:
    """Append every open matplotlib figure to outputs as a display_data PNG, then close them all."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    plt = sys.modules["matplotlib.pyplot"]
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})  # no version stamp
        w, h = fig.get_size_inches() * fig.dpi
        outputs.append(
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {
                    "image/png": base64.b64encode(buf.getvalue()).decode("ascii") + "\n",
                    "text/plain": f"<Figure size {w:g}x{h:g} with {len(fig.axes)} Axes>",
                },
            }
        )
    plt.close("all")


def run_cell(source: str, filename: str, namespace: dict, outputs: list, count: int) -> None:
    """Execute one cell's source in namespace, appending its outputs (nbformat v4 dicts, text as str)."""
    SOURCES[filename] = source
    tree = ast.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(last, filename, "eval"), namespace)
        if value is not None:
            outputs.append(
                {
                    "output_type": "execute_result",
                    "execution_count": count,
                    "metadata": {},
                    "data": {"text/plain": repr(value)},
                }
            )
    show_figures(outputs)


def execute(path: str, checking: bool = False) -> dict:
    """Run the notebook at path; return it with fresh outputs and execution counts (the file is not written).
    Raises CellError naming the cell if a cell raises or prints a memory address or an ANSI code. checking: run
    with NOTEBOOK_CHECK=1 in the environment, so that the notebook skips writing files (its figures)."""
    nb = load(path)
    if nb.get("nbformat") != 4:
        raise CellError(f"{path}: not an nbformat 4 notebook (nbformat={nb.get('nbformat')!r})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    matplotlib.rcdefaults()
    seed_everything(0)
    nb["metadata"]["platform"] = platform()
    namespace = {"__name__": "__main__"}
    outputs: list = []
    plt_show = plt.show
    plt.show = lambda *args, **kwargs: show_figures(outputs)  # show the figures where the cell asks for them
    name, cwd, streams = os.path.basename(path), os.getcwd(), (sys.stdout, sys.stderr)
    sys.path.insert(0, ROOT)
    os.chdir(ROOT)
    before = os.environ.get("NOTEBOOK_CHECK")
    if checking:
        os.environ["NOTEBOOK_CHECK"] = "1"
    try:
        count = 0
        for index, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            count += 1
            outputs = []  # the plt.show above reads this name
            sys.stdout, sys.stderr = Capture(outputs, "stdout"), Capture(outputs, "stderr")
            try:
                run_cell(as_text(cell["source"]), f"{name}[cell {index}]", namespace, outputs, count)
            except Exception as e:
                sys.stdout, sys.stderr = streams
                raise CellError(f"{name}: cell {index} (code cell {count}) raised:\n{cell_traceback(e)}") from None
            finally:
                sys.stdout, sys.stderr = streams
            for out in outputs:
                text = out.get("text", out.get("data", {}).get("text/plain", ""))
                if out.get("name") != "stderr" and ADDRESS.search(text):
                    raise CellError(
                        f"{name}: cell {index} (code cell {count}) shows a memory address "
                        f"({ADDRESS.search(text).group().strip()}), which changes every run; "
                        "end the line with ';' or print something deterministic instead"
                    )
                if ANSI.search(text):
                    raise CellError(
                        f"{name}: cell {index} (code cell {count}) prints an ANSI escape code, which "
                        "a saved notebook shows as garbage; print without colour"
                    )
            cell["outputs"] = [as_lines(out) for out in outputs]
            cell["execution_count"] = count
    finally:
        os.chdir(cwd)
        sys.path.remove(ROOT)
        if checking:
            os.environ.pop("NOTEBOOK_CHECK") if before is None else os.environ.update(NOTEBOOK_CHECK=before)
        plt.close("all")
        plt.show = plt_show
    return nb


def cell_traceback(e: BaseException) -> str:
    """The traceback from the cell's own frame down (the runner's frames left out)."""
    for filename, source in SOURCES.items():  # show the cells' lines (a library may have cleared linecache)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    tb = e.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.endswith("]"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb)).rstrip()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    if "numpy" in sys.modules or _importable("numpy"):
        import numpy as np

        np.random.seed(seed)
    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.manual_seed(seed)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def as_text(source) -> str:
    """nbformat stores multi-line strings either as one string or as a list of lines."""
    return "".join(source) if isinstance(source, list) else source


def as_lines(out: dict) -> dict:
    """An output with its text split into lines (keeping the newlines), as Jupyter writes it."""
    out = dict(out)
    if "text" in out:
        out["text"] = out["text"].splitlines(True)
    if "data" in out:
        out["data"] = {k: (v if k == "image/png" else v.splitlines(True)) for k, v in out["data"].items()}
    return out


def text_outputs(cell: dict) -> str:
    """The compared text of a code cell: its stdout and execute_result text, in order, as one string."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out["name"] == "stdout":
            parts.append(as_text(out["text"]))
        elif out["output_type"] == "execute_result":
            parts.append("[result] " + as_text(out["data"].get("text/plain", "")) + "\n")
    return "".join(parts)


def platform() -> dict:
    """What a float trajectory depends on: library versions, the kernels torch picked for this CPU, the CPU."""
    version = lambda pkg: importlib.metadata.version(pkg) if _importable(pkg) else None
    sig = {
        "python": _platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "transformers": version("transformers"),
        "cpu": cpu_name(),
    }
    if "torch" in sys.modules or _importable("torch"):
        import torch

        sig["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return sig


def cpu_name() -> str:
    """The CPU's vendor, family, model and stepping, and a hash of its feature flags (Linux); else the machine."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        return _platform.processor() or _platform.machine()
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    flags = hashlib.sha256(" ".join(sorted(info.get("flags", "").split())).encode()).hexdigest()[:12]
    return (
        f"{info.get('vendor_id')} family {info.get('cpu family')} model {info.get('model')} stepping "
        f"{info.get('stepping')} ({info.get('model name')}), flags {flags}"
    )


def tags(cell: dict) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def same_up_to_numbers(saved: str, now: str) -> bool:
    """The same text once every number is masked, and each number within ATOL + RTOL·|saved| of the saved one."""
    if NUMBER.sub("#", saved) != NUMBER.sub("#", now):
        return False
    return all(
        abs(float(b) - float(a)) <= ATOL + RTOL * abs(float(a))
        for a, b in zip(NUMBER.findall(saved), NUMBER.findall(now))
    )


def labels(text: str) -> list[str]:
    """Each line's label: the text before its first colon (the whole line if it has none)."""
    return [line.split(":", 1)[0] for line in text.splitlines()]


def matches(cell: dict, saved: str, now: str, exact: bool) -> bool:
    """Whether a code cell's text output still matches its saved one (the rules in the module docstring)."""
    kind = tags(cell) & {"trajectory", "sampled"}
    if exact or not kind:
        return saved == now
    if "sampled" in kind:
        return labels(saved) == labels(now)
    return same_up_to_numbers(saved, now)


def compare(saved: dict, fresh: dict, name: str, max_lines: int = 12) -> list[str]:
    """One message per code cell whose saved text output differs from the fresh one (a short unified diff):
    exactly where the fresh run's platform is the one that saved the notebook, by the cell's tag elsewhere."""
    exact = saved["metadata"].get("platform") == fresh["metadata"].get("platform")
    problems, count = [], 0
    for index, (old, new) in enumerate(zip(saved["cells"], fresh["cells"])):
        if old["cell_type"] != "code":
            continue
        count += 1
        a, b = text_outputs(old), text_outputs(new)
        if not matches(old, a, b, exact):
            rule = (
                ""
                if exact or not tags(old) & {"trajectory", "sampled"}
                else (" beyond what another platform may change (tag " + "/".join(sorted(tags(old))) + ")")
            )
            diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "saved", "now", n=1, lineterm=""))
            more = f"\n  ... ({len(diff) - max_lines} more diff lines)" if len(diff) > max_lines else ""
            problems.append(
                f"{name}: cell {index} (code cell {count}): the saved output differs from what the "
                f"code prints now{rule}:\n  " + "\n  ".join(diff[:max_lines]) + more
            )
    return problems


def platform_note(saved: dict, fresh: dict) -> str:
    """'same platform' or what differs from the platform that saved the notebook."""
    a, b = saved["metadata"].get("platform") or {}, fresh["metadata"].get("platform") or {}
    diff = [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "the saving platform: exact" if not diff else "another platform (" + "; ".join(diff) + "): tolerant"


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check(path: str) -> list[str]:
    """Re-run the notebook at path; one message per code cell whose saved text output differs (see compare)."""
    return compare(load(path), execute(path, checking=True), os.path.basename(path))


def write(nb: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def resolve(names: list[str]) -> list[str]:
    """Notebook paths from command-line names (paths, or file names in notebooks/); all of notebooks/ if none."""
    if not names:
        return sorted(os.path.join(HERE, f) for f in os.listdir(HERE) if f.endswith(".ipynb"))
    paths = []
    for n in names:
        path = n if os.path.exists(n) else os.path.join(HERE, n)
        if not os.path.exists(path):
            raise CellError(f"no notebook {n!r}; give a path or a file name in notebooks/")
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="paths, or names in notebooks/ (default: all)")
    parser.add_argument("--check", action="store_true", help="re-run and compare; never write")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if _importable("torch"):
        import torch

        torch.set_num_threads(1)
    try:
        paths = resolve(args.notebooks)
    except CellError as e:
        print(f"run_notebooks.py: error: {e}", file=sys.stderr)
        return 2
    if len(paths) > 1:  # each notebook in a fresh interpreter, as each would get a fresh kernel
        flags = ["--check"] if args.check else []
        return int(any([subprocess.run([sys.executable, __file__, *flags, p]).returncode != 0 for p in paths]))
    path = paths[0]
    name = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    start = time.perf_counter()
    try:
        fresh = execute(path, checking=args.check)
    except CellError as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    if not args.check:
        write(fresh, path)
        print(f"wrote {name} ({seconds:.1f} s)")
        return 0
    saved = load(path)
    problems = compare(saved, fresh, name)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"{'FAIL' if problems else 'ok  '} {name} ({seconds:.1f} s; {platform_note(saved, fresh)})")
    return int(bool(problems))


if __name__ == "__main__":
    sys.exit(main())
