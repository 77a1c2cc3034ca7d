"""The house rules of the layout: imports run one way, from gcpo.py down to leaf modules that never import it
back, with no cycle anywhere in the repository, and every name is imported from the module that defines it."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("gcpo", "gcpo_support", "toy_envs", "credit_kit", "gcpo_trl")
LEAVES = ("gcpo_support", "toy_envs")  # what gcpo.py stands on


def python_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("mutants", "__pycache__")]
        for f in files:
            if f.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, f), ROOT)


def module_name(path: str) -> str:
    return path[:-3].replace(os.sep, ".").removesuffix(".__init__")


def project_imports(path: str) -> set[str]:
    """The project modules a file imports, at any depth of its code (lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(open(os.path.join(ROOT, path)).read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


GRAPH = {module_name(p): project_imports(p) for p in python_files()}
MODULES = set(GRAPH)


def test_no_leaf_module_imports_gcpo_or_what_stands_on_it():
    for mod, deps in GRAPH.items():
        if mod.split(".")[0] in LEAVES:
            bad = {d for d in deps if d.split(".")[0] in ("gcpo", "credit_kit", "gcpo_trl")}
            assert not bad, f"{mod} imports {sorted(bad)}: a leaf module must not import gcpo or its users"


def find_cycles(edges: dict) -> list[list[str]]:
    """Every cycle a depth-first walk meets in a {module: {imported modules}} graph."""
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycle():
    edges = {m: {d for d in deps if d in MODULES and d != m} for m, deps in GRAPH.items()}
    assert not find_cycles(edges), f"import cycles: {find_cycles(edges)}"


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []  # a diamond is no cycle


def test_gcpo_py_stays_one_sitting():
    lines = [x for x in open(os.path.join(ROOT, "gcpo.py")).read().splitlines() if x.strip()]
    assert len(lines) <= 735, f"gcpo.py has {len(lines)} non-blank lines; move plumbing to gcpo_support/"
