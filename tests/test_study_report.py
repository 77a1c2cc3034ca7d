"""The study's report (benchmarks/study.py write_report) read as a user reads it: its section structure and Markdown
layout, the Cost lines (CPU-hours, worker-hours, wall time, workers) and the seed lines recomputed from the files
written here, the budget table against the TASKS table, the † marks of the last invocation, the per-task tables
(lr column, dapo's own row, the mechanism table of non-needle tasks), the learning-rate line's order, the failed
runs, and the Design section; the needle axis (the oracle criterion at the ORACLE_MARGIN boundary, the Δ table with
its '-' cells and oracle shares, the mechanism rows by length), mechanism_rows (controls, then peers: PEERS or a custom
dapo+ scheme) and learned_line (best mean final, ties, a zero lower end); the plan a user narrows (make_plan's full and
--quick defaults and narrowing, resolve_variants' errors, Plan.jobs); and the small helpers the study stands on
(parse_seeds, scheme_variant, write_json, collect, all_run_files, task_order, variant_order, TaskSpec.budget)."""

import dataclasses
import json
import math
import os

import pytest

from benchmarks import study  # as benchmarks.study, the name mutation testing gives it (see pyproject.toml)

BEFORE = [0.2, 0.25, 0.3]  # the warm start's eval reward per reporting seed 1, 2, 3
FINALS = {
    ("needle-8", "dapo"): [0.5, 0.6, 0.9],
    ("needle-8", "gcpo"): [0.7, 0.7, 0.95],
    ("needle-8", "gcpo+oracle"): [0.8, 0.9, 1.0],
    ("needle-8", "gcpo+shuffled"): [0.55, 0.5, 0.85],  # with it, needle-8 has mechanism rows (in the axis section)
    ("copy", "dapo"): [0.6, 0.7, 0.65],
    ("copy", "gcpo"): [0.62, 0.8, 0.6],
    ("copy", "gcpo+shuffled"): [0.5, 0.75, 0.7],
    ("copy", "gcpo+oracle"): [0.9, 0.85, 0.95],
}
# copy/gcpo's seed 1 ran at another rate than its seeds 2 and 3 (say, a rate selected before more tuning seeds)
LRS = {("copy", "gcpo", 1): 3e-4}
REPORT_CPU, REPORT_SECONDS = 1000.0, 1300.0  # per reporting run file
TUNE = {  # (task, owner): {(seed, lr): auc}
    ("copy", "dapo"): {(101, 3e-4): 0.3, (102, 3e-4): 0.4, (101, 1e-3): 0.5, (102, 1e-3): 0.6},
    ("copy", "gcpo"): {(101, 3e-4): 0.7, (102, 3e-4): 0.6, (101, 1e-3): 0.2, (102, 1e-3): 0.1},
    ("copy", "dapo+entropy_top20"): {(101, 3e-4): 0.1, (102, 3e-4): 0.2, (101, 1e-3): 0.3, (102, 1e-3): 0.1},
}
TUNE_CPU, TUNE_SECONDS = 700.0, 800.0
META = {
    "invocations": [{"command": "a", "wall_seconds": 100000.0}, {"command": "b", "wall_seconds": 80000.0}],
    "workers": 5,
    "last_invocation": {
        "command": "python benchmarks/study.py --tasks copy,needle-8 --workers 5",
        "cells": ["copy/gcpo", "needle-8/gcpo+oracle"],
    },
    "failed": ["report copy grpo seed 4: RuntimeError: out of memory", "tune copy dr_grpo seed 101: skipped"],
}


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _study(out, meta=META):
    """A results folder: reporting runs (FINALS), tuning runs (TUNE), one warm start whose file predates the
    seconds/cpu_seconds fields, lr_selection.json, and study.json (meta; None: no study.json)."""
    for (task, v), fs in FINALS.items():
        for seed, (f, b) in enumerate(zip(fs, BEFORE), 1):
            run = dict(phase="report", task=task, variant=v, seed=seed, lr=LRS.get((task, v, seed), 1e-3))
            run.update(budget=study.TASKS[task].budget(), final=f, auc=f / 2 + b / 4, reward_before=b)
            run.update(seconds=REPORT_SECONDS, cpu_seconds=REPORT_CPU)
            _write(os.path.join(out, "runs", "report", task, v, f"seed{seed}.json"), run)
    for (task, owner), aucs in TUNE.items():
        for (seed, lr), auc in aucs.items():
            run = dict(phase="tune", task=task, variant=owner, seed=seed, lr=lr, auc=auc)
            run.update(seconds=TUNE_SECONDS, cpu_seconds=TUNE_CPU)
            _write(os.path.join(out, "runs", "tune", task, owner, f"seed{seed}_lr{lr:g}.json"), run)
    _write(os.path.join(out, "runs", "warm", "copy", "seed1.json"), {"phase": "warm", "task": "copy", "seed": 1})
    _write(os.path.join(out, "lr_selection.json"), {"copy": {}})
    if meta is not None:
        _write(os.path.join(out, "study.json"), meta)
    return out


@pytest.fixture
def report(tmp_path):
    out = _study(str(tmp_path / "results"))
    return study.write_report(out)


def _cells(row):
    assert row.startswith("|") and row.endswith("|"), row
    return [c.strip() for c in row[1:-1].split("|")]


def _tables(text):
    """Every table of the report: (the heading above it, its header cells, its rows' cells)."""
    lines, out, heading, i = text.split("\n"), [], None, 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i]
        if lines[i].startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append((heading, _cells(lines[i]), [_cells(r) for r in lines[i + 2 : j]]))
            i = j
        else:
            i += 1
    return out


def _section(text, heading):
    """The lines under a heading, up to the next heading of the same or a higher level."""
    lines = text.split("\n")
    start = lines.index(heading)
    level = heading.split(" ")[0]
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("#") and len(lines[i].split(" ")[0]) <= len(level)
        ),
        len(lines),
    )
    return lines[start + 1 : end]


def _line(text, prefix):
    found = [line for line in text.split("\n") if line.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def test_report_sections_in_order(report):
    """The report's headings, in the order a reader navigates them: title, Cost, Design, Budget, learning rates, the
    needle axis (there is a needle task), the per-task results (one ### per task, in the study's task order), and the
    failed runs of the last invocation."""
    headings = [line for line in report.split("\n") if line.startswith("#")]
    assert headings == [
        "# GCPO study: results",
        "## Cost",
        "## Design",
        "## Budget per task (the same for every variant on a task)",
        "## Selected learning rates (mean AUC over the tuning seeds; ties: the smaller rate)",
        "## The credit-difficulty axis: needle, one key token among L",
        "## Results per task",
        "### needle-8",
        "### copy",
        "## Failed runs (last invocation)",
    ]


def test_report_is_well_formed_markdown(report):
    """Markdown renders headings, tables and paragraphs only when blank lines separate them: every heading has a blank
    line before (but the first) and after it; every table starts after a blank line, has a separator row with one
    cell per header cell, rows that each have that many cells, and ends at a blank line or the end; the Cost list is
    followed by a blank line (else the seeds sentence would join its last item)."""
    lines = report.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#"):
            assert (i == 0 or lines[i - 1] == "") and lines[i + 1] == "", (i, line)
    tables = 0
    for i, line in enumerate(lines):
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            tables += 1
            assert lines[i - 1] == "", (i, line)
            n = len(_cells(line))
            assert lines[i + 1] == "|" + "---|" * n, (i, lines[i + 1])
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                assert len(_cells(lines[j])) == n, lines[j]
                j += 1
            assert j == len(lines) or lines[j] == "", (j, lines[j])
        if line.startswith("- ") and i + 1 < len(lines) and not lines[i + 1].startswith(("- ", "  ")):
            assert lines[i + 1] == "", (i, line, lines[i + 1])
    # budget, axis criterion, axis differences, axis mechanism, and per task: results (+ mechanism for copy)
    assert tables == 4 + 2 + 1


def test_report_opens_with_how_it_was_built_and_the_last_command(report):
    """The opening paragraph says the report is rebuilt from the run files by `--report-only` and quotes the command
    of the last invocation (study.json's last_invocation) that the † marks refer to."""
    lines = report.split("\n")
    assert lines[1] == ""
    assert lines[2].startswith("Rebuilt from the run files under runs/ by `python benchmarks/study.py --report-only`")
    assert f"(`{META['last_invocation']['command']}`)" in lines[2]


def test_cost_lines_sum_every_run_file_and_the_invocations(report):
    """Cost: the workers of study.json; the wall time as the sum of the invocations' wall_seconds in hours and their
    count; CPU-hours and worker-hours summed over every run file (reporting, tuning and warm starts; a file without
    the fields counts 0) and the number of those files (study.json and lr_selection.json are not run files)."""
    n_report = sum(len(fs) for fs in FINALS.values())
    n_tune = sum(len(a) for a in TUNE.values())
    n_files = n_report + n_tune + 1
    cpu_h = (n_report * REPORT_CPU + n_tune * TUNE_CPU) / 3600
    busy_h = (n_report * REPORT_SECONDS + n_tune * TUNE_SECONDS) / 3600
    wall_h = sum(i["wall_seconds"] for i in META["invocations"]) / 3600
    assert f"; {META['workers']} worker processes of one torch thread each." in _line(report, "- Hardware: ")
    wall = _line(report, "- Wall time: ")
    assert wall.startswith(f"- Wall time: {wall_h:.2f} h over {len(META['invocations'])} finished invocation(s)")
    compute = _line(report, "- Compute: ")
    assert compute.startswith(f"- Compute: {cpu_h:.3f} CPU-hours (")
    assert f"summed over the {n_files} run files" in compute
    assert compute.endswith(f"add up to {busy_h:.3f} worker-hours.")


def test_seed_lines_list_the_tuning_and_reporting_seeds(report):
    """The seeds sentence: the tuning seeds found in the tuning files and the reporting seeds of the reporting runs,
    ascending and comma-separated."""
    tune = sorted({s for aucs in TUNE.values() for s, _ in aucs})
    seeds = list(range(1, len(BEFORE) + 1))
    line = _line(report, "Tuning seeds: ")
    assert line == (
        f"Tuning seeds: {', '.join(map(str, tune))} (learning-rate selection only); reporting seeds: "
        f"{', '.join(map(str, seeds))}."
    )


def test_a_report_before_any_run_or_invocation_says_so(tmp_path):
    """Before any tuning or reporting run and without study.json (only warm starts whose files predate the
    seconds/cpu_seconds fields): the default two workers, no command quoted ('-'), the sentence that no invocation
    has finished, zero CPU- and worker-hours over those files, '-' for both seed lists, no failed-runs section."""
    out = tmp_path / "results"
    for seed in (1, 2, 3, 4):
        _write(str(out / "runs" / "warm" / "copy" / f"seed{seed}.json"), {"phase": "warm", "seed": seed})
    text = study.write_report(str(out))
    assert "(`-`)" in _line(text, "Rebuilt from the run files")
    assert _line(text, "- Hardware: ").endswith("; 2 worker processes of one torch thread each.")
    assert _line(text, "- Wall time: ").startswith("- Wall time: no invocation has finished yet (")
    compute = _line(text, "- Compute: ")
    assert compute.startswith(f"- Compute: {0:.3f} CPU-hours (") and "summed over the 4 run files" in compute
    assert compute.endswith(f"add up to {0:.3f} worker-hours.")
    assert _line(text, "Tuning seeds: ") == "Tuning seeds: - (learning-rate selection only); reporting seeds: -."
    assert not [line for line in text.split("\n") if line.startswith("## Failed")]
    assert (out / "report.md").read_text() == text


def test_study_json_without_invocations_keeps_the_fallback_wall_time(tmp_path):
    """A study.json with no finished invocation: the wall-time line says none finished (no '0.00 h' total)."""
    out = _study(str(tmp_path / "results"), meta={"workers": 1, "last_invocation": {"command": "c", "cells": []}})
    text = study.write_report(out)
    assert _line(text, "- Wall time: ").startswith("- Wall time: no invocation has finished yet (")
    assert "(`c`)" in text and "1 worker processes" in text


def test_design_section_is_the_docstrings_design_part(report):
    """## Design holds the module docstring's Design part: from the line after 'Design' to the 'Outputs' paragraph."""
    doc = study.__doc__
    start = doc.index("\nDesign\n") + len("\nDesign\n")
    expected = doc[start : doc.index("\nOutputs", start)].strip()
    assert "\n".join(_section(report, "## Design")).strip() == expected


def test_budget_table_rows_are_the_tasks_budgets(report):
    """The budget table has one row per task, and each column holds that task's TASKS entry ('-' for no task args)."""
    (head, rows), *_ = [(h, r) for title, h, r in _tables(report) if title.startswith("## Budget")]
    assert [r[0] for r in rows] == ["needle-8", "copy"]
    for row in rows:
        col = dict(zip(head, row))
        spec = study.TASKS[col["task"]]
        assert col["env"] == spec.env
        assert col["task args"] == (spec.task_args or "-")
        assert col["warm-start steps"] == str(spec.warm_steps)
        assert col["RL steps"] == str(spec.steps)
        assert col["prompts x group"] == f"{spec.batch_prompts} x {spec.group_size}"
        assert col["eval every"] == str(spec.eval_every)
        assert col["eval prompts"] == str(spec.eval_prompts)
    assert study.TASKS["copy"].task_args == "" and study.TASKS["needle-8"].task_args != ""  # both cases shown


def _per_task(report, task):
    """The per-task results table of `task`: its header and {variant cell: row cells}."""
    (head, rows), *mech = [(h, r) for title, h, r in _tables(report) if title == f"### {task}"]
    return head, {r[0]: r for r in rows}, mech


def test_dagger_marks_exactly_the_last_invocations_cells(report):
    """† follows the variant name in exactly the (task, variant) cells of study.json's last_invocation, in the per-task
    tables and on the needle axis, and nowhere else."""
    cells = set(META["last_invocation"]["cells"])
    seen = set()
    for title, head, rows in _tables(report):
        if title.startswith("### ") and "variant" in head:
            task, col = title[4:], head.index("variant")
        elif title.startswith("## The credit-difficulty axis") and head[:2] == ["L", "variant"]:
            task, col = None, 1
        else:  # the budget table, the criterion and the mechanism tables: no variant cell
            assert not any("†" in c for r in rows for c in r)
            continue
        for row in rows:
            t = task or f"needle-{row[0]}"
            name, marked = row[col].removesuffix(" †"), row[col].endswith(" †")
            assert marked == (f"{t}/{name}" in cells), (t, row[col])
            assert "†" not in name
            seen |= {f"{t}/{name}"} if marked else set()
    assert seen == cells
    assert report.count("†") == 1 + 2 + 1  # the opening sentence, two per-task cells, the oracle on the axis


def test_per_task_lr_column_lists_every_rate_a_variant_ran_at(report):
    """The lr column: the rates of the variant's runs, ascending and comma-separated (copy/gcpo ran at two)."""
    head, rows, _ = _per_task(report, "copy")
    for (task, v), fs in FINALS.items():
        if task != "copy":
            continue
        lrs = sorted({LRS.get((task, v, s), 1e-3) for s in range(1, len(fs) + 1)})
        row = rows.get(v) or rows[v + " †"]
        assert row[head.index("lr")] == ", ".join(f"{x:g}" for x in lrs)
        assert row[head.index("n")] == str(len(fs))
    assert len(rows[next(k for k in rows if k.startswith("gcpo "))][head.index("lr")].split(", ")) == 2


def test_dapos_own_row_has_no_difference_to_itself(report):
    """dapo is the reference: its Δ columns are '-' with an empty verdict, while every other variant's are filled."""
    for task in ("needle-8", "copy"):
        head, rows, _ = _per_task(report, task)
        for name in ("Δ final vs dapo", "Δ AUC vs dapo"):
            i = head.index(name)
            assert rows["dapo"][i : i + 2] == ["-", ""]
            for v, row in rows.items():
                if v != "dapo":
                    assert row[i] != "-" and row[i + 1] in ("includes 0", "excludes 0")


def test_needle_tasks_have_no_per_task_mechanism_table_other_tasks_do(report):
    """The mechanism table of a needle task is in the axis section (labelled by L); a non-needle task gets its own
    under its results, labelled by the task's name."""
    _, _, mech = _per_task(report, "needle-8")
    assert mech == []
    _, _, mech = _per_task(report, "copy")
    assert len(mech) == 1
    head, rows = mech[0]
    assert head[0] == "task" and "comparison" in head
    assert rows and all(r[0] == "copy" for r in rows)
    assert any(r[1] == "GCPO's placement: gcpo − gcpo+shuffled" for r in rows)
    assert study.MECHANISM_INTRO in _section(report, "### copy")
    assert study.MECHANISM_INTRO not in _section(report, "### needle-8")


def test_learning_rate_line_has_one_entry_per_tuned_owner(report):
    """The selected-rate line of a task: one '<owner> **<lr>** (...)' entry per tuned owner, separated by '; ', each
    with the rate of the highest mean tuning AUC (ties: the smaller rate)."""
    line = _line(report, "- copy: ")
    entries = line.removeprefix("- copy: ").split("; ")
    owners = [o for (t, o) in TUNE if t == "copy"]
    assert sorted(e.split(" **")[0] for e in entries) == sorted(owners)
    # in the study's variant order (dapo, gcpo, the peers, grpo, dr_grpo), not by name
    assert [e.split(" **")[0] for e in entries] == [v for v in study.DEFAULT_VARIANTS if v in owners]
    for e in entries:
        owner = e.split(" **")[0]
        aucs = TUNE[("copy", owner)]
        mean = {lr: sum(a for (s, r), a in aucs.items() if r == lr) / 2 for lr in {r for _, r in aucs}}
        best = max(mean, key=lambda lr: (mean[lr], -lr))
        assert e.startswith(f"{owner} **{best:g}** (")


def test_failed_runs_section_lists_study_jsons_failures(report):
    """## Failed runs lists study.json's `failed` entries, one bullet each, in order."""
    lines = _section(report, "## Failed runs (last invocation)")
    assert [line for line in lines if line] == [f"- {f}" for f in META["failed"]]


def test_report_md_is_written_into_the_results_folder(tmp_path):
    """write_report writes report.md under the results folder, with the text it returns."""
    out = _study(str(tmp_path / "results"))
    text = study.write_report(out)
    with open(os.path.join(out, "report.md")) as f:
        assert f.read() == text


# ---------------------------------------------------------------------------------------------------------
# the helpers


def test_cell_mark_appends_a_dagger_to_the_last_invocations_cells():
    """cell_mark: ' †' for a (task, variant) among the cells, '' otherwise."""
    assert study.cell_mark({"copy/gcpo"}, "copy", "gcpo") == " †"
    assert study.cell_mark({"copy/gcpo"}, "copy", "dapo") == ""


def test_all_run_files_reads_only_the_files_under_runs(tmp_path):
    """all_run_files: every JSON file under runs/ (any phase), not study.json or lr_selection.json beside them."""
    out = str(tmp_path / "results")
    _write(os.path.join(out, "runs", "report", "copy", "dapo", "seed1.json"), {"phase": "report"})
    _write(os.path.join(out, "runs", "tune", "copy", "dapo", "seed101_lr0.001.json"), {"phase": "tune"})
    _write(os.path.join(out, "runs", "warm", "copy", "seed1.json"), {"phase": "warm"})
    _write(os.path.join(out, "study.json"), {"workers": 2})
    _write(os.path.join(out, "lr_selection.json"), {})
    assert sorted(r["phase"] for r in study.all_run_files(out)) == ["report", "tune", "warm"]


def test_task_order_puts_the_studys_tasks_first_then_others_by_name():
    """task_order: the TASKS order (needle by length), then tasks the study does not know, by name."""
    got = study.task_order(["zeta", "copy", "alpha", "needle-16", "needle-8"])
    assert got == ["needle-8", "needle-16", "copy", "alpha", "zeta"]


def test_budget_is_the_task_without_its_lr_grid():
    """TaskSpec.budget: every field of the task but the learning-rate grid (a resumed study compares it; a new grid
    keeps the runs)."""
    spec = study.TASKS["needle-8"]
    fields = {f.name for f in dataclasses.fields(spec)}
    assert set(spec.budget()) == fields - {"lrs"}
    assert spec.budget() == {f: getattr(spec, f) for f in fields - {"lrs"}}


def test_parse_seeds_takes_seed_zero_and_rejects_a_descending_range():
    """parse_seeds: seeds are non-negative, so 0 is a seed and 0-2 a range; a range that descends is an error."""
    assert study.parse_seeds("0", "--seeds") == (0,)
    assert study.parse_seeds("0-2,5", "--seeds") == (0, 1, 2, 5)
    with pytest.raises(ValueError, match="--seeds '5,3-1': '3-1' is not a range"):
        study.parse_seeds("5,3-1", "--seeds")


def test_write_json_is_atomic_and_readable(tmp_path):
    """write_json: creates the parent folders, leaves no temporary file, overwrites, round-trips, and writes one value
    per line (the run files are committed: a diff shows which value changed)."""
    path = tmp_path / "a" / "b" / "run.json"
    obj = {"final": 0.5, "evals": [[0, 0.1], [10, 0.4]], "budget": {"steps": 10}}
    study.write_json(str(path), {"old": 1})
    study.write_json(str(path), obj)
    assert os.listdir(path.parent) == ["run.json"]
    assert json.loads(path.read_text()) == obj
    assert len(path.read_text().splitlines()) > len(obj)


def test_scheme_variant_names_a_module_scheme_by_module_and_function():
    """A module:function scheme joins as dapo+module.function, the dotted module name whole; a bad one is a one-line
    error that names it as a credit scheme."""
    name, v = study.scheme_variant("gcpo_support.schemes:k3_score")
    assert name == "dapo+gcpo_support.schemes.k3_score"
    assert v == study.Variant("dapo", (("credit", "gcpo_support.schemes:k3_score"),), name)
    with pytest.raises(ValueError, match=r"^credit scheme 'gcpo_support.schemes:no_such_scheme'"):
        study.scheme_variant("gcpo_support.schemes:no_such_scheme")


def test_scheme_variant_splits_a_file_scheme_at_the_last_colon(tmp_path):
    """path/file.py:function → dapo+file.function, the function being what follows the last colon (a folder name may
    hold a colon)."""
    folder = tmp_path / "schemes:v2"
    folder.mkdir()
    (folder / "study_report_scheme.py").write_text("def weights(entropy, mask):\n    return mask\n")
    spec = f"{folder}/study_report_scheme.py:weights"
    name, v = study.scheme_variant(spec)
    assert name == "dapo+study_report_scheme.weights"
    assert v.options == {"credit": spec} and v.lr_from == name


# ---------------------------------------------------------------------------------------------------------
# the needle axis, the mechanism rows and the learned line, from run dicts {task: {variant: {seed: run}}}

# Student's t, 0.975 quantile, by df (df = 1: the Cauchy quantile tan(0.475π))
T975 = {1: math.tan(0.475 * math.pi), 2: 4.302652729911275, 3: 3.182446305284263, 4: 2.7764451051977987}


def _ci(x):
    """'mean [lo, hi]' of x with its 95% t interval, computed here in float64 from the table above."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    m = x.mean()
    if len(x) < 2:
        return f"{m:.3f} [{m:.3f}, {m:.3f}]", m, m
    half = T975[len(x) - 1] * x.std(ddof=1) / np.sqrt(len(x))
    return f"{m:.3f} [{m - half:.3f}, {m + half:.3f}]", m - half, m + half


def _runs(finals, aucs=None, before=(0.2, 0.25, 0.3)):
    """{seed: run} for seeds 1.. from the finals (and AUCs; default: final / 2) and the warm start's rewards."""
    aucs = aucs or [f / 2 for f in finals]
    return {s: dict(final=f, auc=a, reward_before=b) for s, (f, a, b) in enumerate(zip(finals, aucs, before), 1)}


NEEDLE = {
    "needle-8": {
        "dapo": _runs([0.5, 0.6, 0.9], [0.3, 0.35, 0.5]),
        "gcpo": _runs([0.7, 0.7, 0.95], [0.4, 0.45, 0.55]),
        "gcpo+shuffled": _runs([0.55, 0.5, 0.85], [0.3, 0.3, 0.45]),
        "gcpo+oracle": _runs([0.8, 0.9, 1.0], [0.5, 0.6, 0.7]),
    },
    # no dapo; the oracle's gain is exactly ORACLE_MARGIN on both seeds (0.5 − 0.1 == 0.4 in float64)
    "needle-16": {"gcpo+oracle": _runs([0.5, 0.5], before=(0.1, 0.1)), "gcpo": _runs([0.3])},
    "needle-32": {"gcpo": _runs([0.4, 0.5]), "dapo": _runs([0.3, 0.6])},  # no oracle: no criterion row
    # the oracle's mean gain (0.5) passes the margin while its interval's lower end does not
    "needle-64": {"dapo": _runs([0.1, 0.2], before=(0.1, 0.1)), "gcpo+oracle": _runs([0.4, 0.8], before=(0.1, 0.1))},
}


@pytest.fixture
def axis():
    return "\n".join(study.needle_section(NEEDLE, set()))


def _axis_tables(text):
    return [(h, r) for title, h, r in _tables(text) if title.startswith("## The credit-difficulty axis")]


def test_needle_criterion_table_per_length(axis):
    """The criterion table: one row per needle length with a gcpo+oracle run, by length numerically (16 after 8): the
    oracle's seeds, the warm start's mean reward, the oracle's mean final, its gain over the warm start with a 95% t
    interval, 'met' when the mean gain is ≥ ORACLE_MARGIN (the boundary included, judged on the mean, not the
    interval's lower end), and dapo's mean final ('-' without dapo)."""
    (head, rows), *_ = _axis_tables(axis)
    assert head == ["L", "seeds", "warm start", "gcpo+oracle final", "gain [95% interval]", "criterion", "dapo final"]
    assert [r[0] for r in rows] == ["8", "16", "64"]
    r8, r16, r64 = rows
    assert r8[1:4] == ["3", f"{(0.2 + 0.25 + 0.3) / 3:.3f}", f"{0.9:.3f}"]
    assert r8[4] == _ci([0.8 - 0.2, 0.9 - 0.25, 1.0 - 0.3])[0]
    assert r8[5:] == ["met", f"{(0.5 + 0.6 + 0.9) / 3:.3f}"]
    assert r16[1:] == ["2", "0.100", "0.500", "0.400 [0.400, 0.400]", "met", "-"]
    text, lo, _ = _ci([0.3, 0.7])
    assert lo < study.ORACLE_MARGIN
    assert r64[1:] == ["2", "0.100", "0.600", text, "met", "0.150"]


def test_needle_criterion_not_met_below_the_margin():
    """A mean gain just under ORACLE_MARGIN is 'NOT met'."""
    runs = {"needle-8": {"gcpo+oracle": _runs([0.49, 0.49], before=(0.1, 0.1))}}
    (head, rows), *_ = _axis_tables("\n".join(study.needle_section(runs, set())))
    assert rows[0][5] == "NOT met"


def test_needle_difference_table_against_dapo(axis):
    """The per-length Δ table: every variant but dapo (the reference has no row), by length then in the study's
    variant order; Δ AUC then Δ final vs dapo with its interval and verdict, '-' and an empty verdict where the variant
    shares no seed with dapo; the share of the oracle's gain where it is defined, '-' for the oracle's own row and
    where dapo or a second common seed is missing."""
    _, (head, rows), _ = _axis_tables(axis)
    assert head[:2] == ["L", "variant"] and len(head) == 8
    assert [(r[0], r[1]) for r in rows] == [
        ("8", "gcpo"),
        ("8", "gcpo+shuffled"),
        ("8", "gcpo+oracle"),
        ("16", "gcpo"),
        ("16", "gcpo+oracle"),
        ("32", "gcpo"),
        ("64", "gcpo+oracle"),
    ]
    by = {(r[0], r[1]): r[2:] for r in rows}
    n8 = NEEDLE["needle-8"]
    for v in ("gcpo", "gcpo+shuffled", "gcpo+oracle"):
        for k, metric in ((0, "auc"), (2, "final")):
            d = [n8[v][s][metric] - n8["dapo"][s][metric] for s in (1, 2, 3)]
            text, lo, hi = _ci(d)
            assert by[("8", v)][k : k + 2] == [text, "excludes 0" if lo > 0 or hi < 0 else "includes 0"], (v, metric)
    assert by[("8", "gcpo+oracle")][4:] == ["-", "-"]
    for k, metric in ((4, "auc"), (5, "final")):
        num = sum(n8["gcpo"][s][metric] - n8["dapo"][s][metric] for s in (1, 2, 3))
        den = sum(n8["gcpo+oracle"][s][metric] - n8["dapo"][s][metric] for s in (1, 2, 3))
        assert by[("8", "gcpo")][k].startswith(f"{num / den:.3f} ["), metric
    for key in (("16", "gcpo"), ("16", "gcpo+oracle")):
        assert by[key] == ["-", "", "-", "", "-", "-"]
    assert by[("32", "gcpo")][4:] == ["-", "-"]  # no oracle
    assert by[("64", "gcpo+oracle")][4:] == ["-", "-"]


def test_needle_mechanism_rows_are_labelled_by_length(axis):
    """The axis's mechanism table: per length, the comparisons whose two variants both ran, labelled by L."""
    *_, (head, rows) = _axis_tables(axis)
    assert head[:2] == ["L", "comparison"]
    assert [(r[0], r[1].split(":")[0]) for r in rows] == [
        ("8", "step sizes without information"),
        ("8", "GCPO's placement"),
        ("8", "perfect placement"),
    ]


def test_no_needle_task_no_axis_section():
    """Without a needle run the axis section is left out."""
    assert study.needle_section({"copy": NEEDLE["needle-8"]}, set()) == []


def test_mechanism_rows_controls_then_peers():
    """mechanism_rows: the controls (gcpo+shuffled − dapo, gcpo − gcpo+shuffled, gcpo+oracle − gcpo+shuffled), then
    gcpo − each peer: a PEERS scheme or a 'dapo+<scheme>' not in VARIANTS (a custom credit scheme), in the study's
    order, the unknown ones by name; a variant that is neither (an unknown gcpo+ name, grpo) is no peer. Each row:
    the label, 'name: a − b', then Δ AUC and Δ final with their intervals and verdicts."""
    base = NEEDLE["needle-8"]
    r = dict(base)
    r["dapo+entropy_top20"] = _runs([0.6, 0.65, 0.9], [0.35, 0.3, 0.5])
    r["dapo+mymod.k3"] = _runs([0.5, 0.65, 0.8])
    r["gcpo+mystery"] = _runs([0.5, 0.6, 0.7])
    r["grpo"] = _runs([0.4, 0.6, 0.7])
    rows = [_cells(x) for x in study.mechanism_rows(r, "lbl")]
    pairs = [
        ("step sizes without information", "gcpo+shuffled", "dapo"),
        ("GCPO's placement", "gcpo", "gcpo+shuffled"),
        ("perfect placement", "gcpo+oracle", "gcpo+shuffled"),
        ("GCPO vs a peer", "gcpo", "dapo+entropy_top20"),
        ("GCPO vs a peer", "gcpo", "dapo+mymod.k3"),
    ]
    assert [x[:2] for x in rows] == [["lbl", f"{n}: {a} − {b}"] for n, a, b in pairs]
    for row, (_, a, b) in zip(rows, pairs):
        cells = []
        for metric in ("auc", "final"):
            text, lo, hi = _ci([r[a][s][metric] - r[b][s][metric] for s in (1, 2, 3)])
            cells += [text, "excludes 0" if lo > 0 or hi < 0 else "includes 0"]
        assert row[2:] == cells, row


def test_mechanism_rows_leave_out_a_comparison_with_a_missing_variant():
    """Without gcpo+shuffled, the three controls that need it are left out; without any common seed, a row too."""
    r = {v: runs for v, runs in NEEDLE["needle-8"].items() if v != "gcpo+shuffled"}
    r["dapo+entropy_top20"] = {9: dict(final=0.5, auc=0.2, reward_before=0.1)}
    assert study.mechanism_rows(r, "x") == []


def test_learned_line_names_the_best_mean_final_and_its_gain():
    """learned_line: the variant with the highest mean final reward (not the last by name), the warm start's mean
    reward, and its gain over the warm start per seed with a 95% t interval; 'it learns' when the interval's lower
    end is above 0."""
    by_variant = {"dapo": _runs([0.8, 0.9, 0.95]), "gcpo": _runs([0.5, 0.6, 0.7]), "grpo": _runs([0.1, 0.2, 0.3])}
    text, lo, _ = _ci([0.8 - 0.2, 0.9 - 0.25, 0.95 - 0.3])
    assert lo > 0
    assert study.learned_line(by_variant) == (
        f"Eval reward of the warm start: {0.25:.3f} (mean over seeds). Best final reward: dapo, gain over the "
        f"warm start {text} (it learns)."
    )


def test_learned_line_ties_go_to_the_study_order():
    """Among variants with the same mean final reward, the first in the study's variant order is named."""
    by_variant = {"gcpo+oracle": _runs([0.5, 0.6, 0.7]), "gcpo": _runs([0.5, 0.6, 0.7]), "dapo": _runs([0.1, 0.1, 0.1])}
    assert "Best final reward: gcpo, " in study.learned_line(by_variant)


def test_learned_line_a_zero_lower_end_is_not_learning():
    """A gain whose interval's lower end is exactly 0 (here: no gain on any seed), or below 0 even where the whole
    interval is negative, is 'NOT shown to learn'."""
    line = study.learned_line({"dapo": _runs([0.2, 0.25], before=(0.2, 0.25))})
    verdict = "(NOT shown to learn: the interval's lower end is not above 0)."
    assert line.endswith(f"gain over the warm start 0.000 [0.000, 0.000] {verdict}")
    lost = study.learned_line({"dapo": _runs([0.1, 0.15, 0.1], before=(0.5, 0.6, 0.55))})  # every seed loses
    assert lost.endswith(verdict) and "it learns" not in lost


# ---------------------------------------------------------------------------------------------------------
# the plan a user narrows with --quick, --tasks, --variants, --seeds, --tune-seeds


def test_make_plan_defaults_full_and_quick():
    """make_plan: the full study by default (every task, the default variants, the tuning and reporting seeds),
    --quick's tiny grid otherwise."""
    full = study.make_plan()
    assert list(full.tasks) == list(study.TASKS) and list(full.variants) == list(study.DEFAULT_VARIANTS)
    assert full.tune_seeds == (101, 102) and full.report_seeds == tuple(range(1, 11))
    quick = study.make_plan(quick=True)
    assert list(quick.tasks) == ["needle-8", "sentiment"] and quick.tasks == study.QUICK_TASKS
    assert list(quick.variants) == list(study.QUICK_VARIANTS)
    assert quick.tune_seeds == (101, 102) and quick.report_seeds == (1, 2)


def test_make_plan_narrows_to_the_requested_tasks_variants_and_seeds():
    """--tasks, --variants, --seeds and --tune-seeds keep only what was asked for (variants in the order given)."""
    plan = study.make_plan(tasks=["copy", "needle-16"], variants=["gcpo", "dapo"], seeds=[2, 5], tune_seeds=[7])
    assert sorted(plan.tasks) == ["copy", "needle-16"]
    assert plan.tasks["copy"] == study.TASKS["copy"]
    assert list(plan.variants) == ["gcpo", "dapo"] and plan.variants["gcpo"] == study.VARIANTS["gcpo"]
    assert plan.report_seeds == (2, 5) and plan.tune_seeds == (7,)


def test_make_plan_rejects_an_unknown_task_by_name():
    """An unknown task (or a full-study task under --quick) is a ValueError that names it."""
    with pytest.raises(ValueError, match=r"^--tasks nope: unknown; choose from needle-8"):
        study.make_plan(tasks=["copy", "nope"])
    with pytest.raises(ValueError, match=r"^--tasks copy: unknown; choose from needle-8, sentiment$"):
        study.make_plan(quick=True, tasks=["copy"])


def test_resolve_variants_rejects_gcpos_own_credit_and_unknown_names():
    """GCPO's own credit modes are not variants: the error points to gcpo and its controls; an unknown name is an
    error that names it."""
    for n in ("uniform", "contrast", "shuffled", "oracle"):
        with pytest.raises(ValueError, match=rf"^--variants '{n}' is GCPO's own credit; use dapo, gcpo"):
            study.resolve_variants(["dapo", n])
    with pytest.raises(ValueError, match=r"^--variants 'nope': not a variant \(dapo, gcpo"):
        study.resolve_variants(["nope"])


def test_plan_jobs_warm_tune_and_report():
    """Plan.jobs: per task, a warm start (variant '') for every tuning and reporting seed, a tuning run per lr owner ×
    the task's lr grid × tuning seed, a reporting run per variant on that task × reporting seed; a sentiment-only
    variant runs (and has its owner, gcpo, tuned) on sentiment alone."""
    plan = study.make_plan(tasks=["copy", "sentiment"], variants=["dapo", "gcpo+entropy0.02"], seeds=[1, 2])
    jobs = plan.jobs()
    assert len(jobs) == len(set(jobs))
    want = set()
    for t, owners, variants in (
        ("copy", ["dapo"], ["dapo"]),
        ("sentiment", ["dapo", "gcpo"], ["dapo", "gcpo+entropy0.02"]),
    ):
        want |= {study.Job("warm", t, "", s) for s in (101, 102, 1, 2)}
        want |= {study.Job("tune", t, a, s, lr) for a in owners for lr in study.TASKS[t].lrs for s in (101, 102)}
        want |= {study.Job("report", t, v, s) for v in variants for s in (1, 2)}
    assert set(jobs) == want
    assert len(jobs) == 2 * 4 + (1 + 2) * 3 * 2 + (1 + 2) * 2


# ---------------------------------------------------------------------------------------------------------
# reading the run files back


def test_collect_reads_one_phase_keyed_by_seed_or_seed_and_rate(tmp_path):
    """collect: the reporting runs by default, {task: {variant: {seed: run}}}; the tuning runs keyed by (seed, lr);
    files that are not JSON are ignored."""
    out = str(tmp_path / "results")
    rep = {"phase": "report", "seed": 3, "final": 0.5}
    tune = {"phase": "tune", "seed": 101, "lr": 1e-3, "auc": 0.4}
    _write(os.path.join(out, "runs", "report", "copy", "gcpo", "seed3.json"), rep)
    _write(os.path.join(out, "runs", "tune", "copy", "gcpo", "seed101_lr0.001.json"), tune)
    with open(os.path.join(out, "runs", "report", "copy", "gcpo", "notes.txt"), "w") as f:
        f.write("not a run")
    assert study.collect(out) == {"copy": {"gcpo": {3: rep}}}
    assert study.collect(out, "tune") == {"copy": {"gcpo": {(101, 1e-3): tune}}}


def test_variant_order_known_first_then_others_by_name():
    """variant_order: the study's variants in its order (the defaults, then the other known variants), then names
    it does not know, alphabetically."""
    got = study.variant_order(["zeta", "dapo+b", "gcpo+entropy0.02", "gcpo", "alpha", "dapo"])
    assert got == ["dapo", "gcpo", "gcpo+entropy0.02", "alpha", "dapo+b", "zeta"]


def test_a_needle_length_outside_the_study_keeps_its_mechanism_table(tmp_path):
    """A needle task that is not one of the study's lengths (a user's own, e.g. needle-12 from --task-args) is left
    out of the credit-difficulty section, so its per-task section carries its mechanism table."""
    out = str(tmp_path / "results")
    budget = study.TaskSpec("needle", "length=12,position=0").budget()
    for v, fs in {"dapo": [0.5, 0.6, 0.7], "gcpo": [0.6, 0.6, 0.8], "gcpo+shuffled": [0.4, 0.5, 0.7]}.items():
        for seed, f in enumerate(fs, 1):
            run = dict(phase="report", task="needle-12", variant=v, seed=seed, lr=1e-3, budget=budget)
            run.update(final=f, auc=f / 2, reward_before=0.2, seconds=1.0, cpu_seconds=1.0)
            _write(os.path.join(out, "runs", "report", "needle-12", v, f"seed{seed}.json"), run)
    text = study.write_report(out)
    assert "## The credit-difficulty axis" not in text
    rows = _section(text, "### needle-12")
    assert any(row.startswith("| needle-12 | GCPO's placement: gcpo − gcpo+shuffled |") for row in rows)


def test_selection_file_keeps_what_another_invocation_wrote_meanwhile(tmp_path, monkeypatch):
    """Two invocations on other tasks of one results folder each write lr_selection.json: run_study re-reads the
    file before it adds its own selection, so a task the other invocation selected meanwhile is kept."""
    out = str(tmp_path / "results")
    plan = study.make_plan(tasks=["needle-8"], variants=["dapo"], seeds=[1], tune_seeds=(101, 102))
    plan.report_seeds = ()  # only the tuning phase, whose files are all on disk: nothing runs
    budget = study.TASKS["needle-8"].budget()
    for seed in (101, 102):
        _write(study.Job("warm", "needle-8", "", seed).path(out), {"phase": "warm", "budget": budget})
        os.makedirs(os.path.join(study.warm_dir(out, "needle-8", seed), "model"))
        for lr in study.NEEDLE_LRS:
            run = dict(phase="tune", seed=seed, lr=lr, auc=lr, budget=budget, algo="dapo", overrides={})
            _write(study.Job("tune", "needle-8", "dapo", seed, lr).path(out), run)
    other = {"copy": {"gcpo": {"lr": 0.001, "mean_auc": {"0.001": 0.5}, "tune_seeds": [101, 102]}}}
    real = study.select_lrs

    def select_while_another_invocation_writes(*args, **kwargs):
        _write(os.path.join(out, "lr_selection.json"), other)  # the other invocation's write, mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "select_lrs", select_while_another_invocation_writes)
    res = study.run_study(plan, out, workers=1)
    assert res["ran"] == [] and res["failed"] == []
    with open(os.path.join(out, "lr_selection.json")) as f:
        saved = json.load(f)
    assert saved["copy"] == other["copy"]
    assert saved["needle-8"]["dapo"]["lr"] == max(study.NEEDLE_LRS)  # AUC = lr: the largest rate wins
