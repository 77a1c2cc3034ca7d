"""The study's report (benchmarks/study.py write_report) read as a user reads it: its section structure and Markdown
layout, the Cost lines (CPU-hours, worker-hours, wall time, workers) and the seed lines recomputed from the files
written here, the budget table against the TASKS table, the † marks of the last invocation, the per-task tables
(lr column, dapo's own row, the mechanism table of non-needle tasks), the learning-rate line's order, the failed
runs, and the Design section; and the small helpers the study stands on (parse_seeds, scheme_variant, write_json,
all_run_files, task_order, TaskSpec.budget)."""

import dataclasses
import json
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
