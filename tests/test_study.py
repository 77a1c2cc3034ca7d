"""The study (benchmarks/study.py): its statistics, its warm-start cache, and the --quick grid end to end with
the figures drawn from its output."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gcpo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import study  # noqa: E402


def test_curve_auc_is_the_trapezoid_mean_height():
    # (2·(0.1+0.5)/2 + 4·(0.5+0.2)/2) / 6 = (0.6 + 1.4) / 6; a left-Riemann or unnormalised sum differs
    assert study.curve_auc([(0, 0.1), (2, 0.5), (6, 0.2)]) == pytest.approx(2.0 / 6)
    assert study.curve_auc([(0, 0.3), (5, 0.3), (10, 0.3)]) == pytest.approx(0.3)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    x = [0.1, 0.4, 0.35, 0.9, 0.2]
    m, lo, hi = study.bootstrap_mean_ci(x)
    assert m == pytest.approx(np.mean(x)) and lo < m < hi
    assert (m, lo, hi) == study.bootstrap_mean_ci(x)  # a fixed bootstrap seed: the report is reproducible
    assert lo >= min(x) and hi <= max(x)
    assert study.bootstrap_mean_ci([0.25] * 4) == (0.25, 0.25, 0.25)
    # a wider level gives a wider interval
    _, lo99, hi99 = study.bootstrap_mean_ci(x, level=0.99)
    assert lo99 <= lo and hi99 >= hi


def test_in_words():
    assert study.in_words(0.01, 0.2) == "excludes 0"
    assert study.in_words(-0.3, -0.01) == "excludes 0"
    assert study.in_words(-0.01, 0.2) == "includes 0"
    assert study.in_words(0.0, 0.2) == "includes 0"


def test_plan_tunes_base_algorithms_only_and_reports_every_variant():
    plan = study.make_plan(quick=False)
    jobs = plan.jobs()
    tune = {(j.task, j.variant) for j in jobs if j.phase == "tune"}
    assert {v for _, v in tune} == set(study.BASE)
    assert not {j.seed for j in jobs if j.phase == "tune"} & {j.seed for j in jobs if j.phase == "report"}
    report = [j for j in jobs if j.phase == "report"]
    assert len({j.seed for j in report}) >= 10
    for task in plan.tasks:  # every variant meant for a task, on every reporting seed
        n = sum(1 for j in report if j.task == task)
        assert n == len(plan.variants_of(task)) * len(plan.report_seeds)
    assert sum(j.task == "sentiment" for j in report) > sum(j.task == "topic" for j in report)  # §4 extras
    assert len({j.path("out") for j in jobs}) == len(jobs)  # one file per run


@pytest.mark.cpu_sensitive
def test_cached_warm_start_reproduces_the_uncached_run(tmp_path):
    """Every run starts from a saved warm start (model=DIR/model, warm_steps=0): it must be the same run as
    warm-starting in-process."""
    common = dict(env="needle", task_args="length=8", seed=3, device="cpu", eval_prompts=32, batch_prompts=4,
                  group_size=4, eval_every=2)
    gcpo.train(gcpo.make_config("gcpo", steps=0, warm_steps=30, out=str(tmp_path / "warm"), **common), progress=False)
    cached = gcpo.train(gcpo.make_config("gcpo", steps=4, warm_steps=0, model=str(tmp_path / "warm" / "model"),
                                         **common), progress=False)
    direct = gcpo.train(gcpo.make_config("gcpo", steps=4, warm_steps=30, **common), progress=False)
    assert cached["evals"] == direct["evals"]
    for a, b in zip(cached["history"], direct["history"]):
        assert a["reward_mean"] == b["reward_mean"] and a.get("pg_loss") == b.get("pg_loss")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """`study.py --quick` into a temporary folder, then `plots.py` on its output."""
    out = tmp_path_factory.mktemp("study")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "study.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    plots = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "plots.py"), "--results", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert plots.returncode == 0, plots.stderr[-3000:]
    return out, run.stdout


def test_quick_writes_every_run_file_with_a_consistent_curve(quick):
    out, _ = quick
    plan = study.make_plan(quick=True)
    selection = json.loads((out / "lr_selection.json").read_text())
    for job in plan.jobs():
        assert os.path.exists(job.path(str(out))), job
        if job.phase == "warm":
            continue
        r = json.loads(open(job.path(str(out))).read())
        spec = plan.tasks[job.task]
        steps = [s for s, _ in r["evals"]]
        assert steps == list(range(0, spec.steps + 1, spec.eval_every))
        assert r["evals"][0][1] == r["reward_before"] and r["evals"][-1][1] == r["final"]
        assert r["auc"] == pytest.approx(study.curve_auc(r["evals"]))
        assert r["config"]["steps"] == spec.steps and r["config"]["batch_prompts"] == spec.batch_prompts
        assert r["config"]["lr"] == r["lr"] and r["lr"] in spec.lrs
        assert len(r["curves"]["reward_mean"]) == spec.steps
        if job.phase == "report":  # a variant runs at the selected rate of the algorithm it controls
            assert r["lr"] == selection[job.task][study.VARIANTS[job.variant][2]]["lr"]
            for k, v in study.VARIANTS[job.variant][1].items():
                assert r["config"][k] == v
    # the same warm start and eval prompts for every variant on a (task, seed): the same starting reward
    runs = study.collect(str(out))
    for task, by_variant in runs.items():
        for seed in plan.report_seeds:
            assert len({by_variant[v][seed]["reward_before"] for v in by_variant}) == 1
    assert "logp_move_high_w" in runs["sentiment"]["gcpo"][1]["curves"]  # the mechanism diagnostics
    assert "key_weight_auc" in runs["needle-8"]["gcpo+oracle"][1]["curves"]


def test_quick_selects_the_best_mean_tuning_auc(quick):
    out, _ = quick
    selection = json.loads((out / "lr_selection.json").read_text())
    for task, algos in selection.items():
        for algo, s in algos.items():
            aucs = {float(lr): np.mean([json.loads(open(study.Job("tune", task, algo, seed, float(lr)).path(str(out))).read())["auc"]
                                        for seed in study.QUICK_TUNE_SEEDS]) for lr in s["mean_auc"]}
            assert aucs[s["lr"]] == max(aucs.values())


def test_quick_report_states_budget_lrs_and_paired_differences(quick):
    out, stdout = quick
    report = (out / "report.md").read_text()
    plan = study.make_plan(quick=True)
    runs = study.collect(str(out))
    for task, spec in plan.tasks.items():
        assert f"### {task}" in report
        assert f"| {task} | {spec.env} |" in report  # the budget row
    assert "Hardware:" in report and "Wall time:" in report and "--quick" in report
    # the paired difference in the report is the mean over seeds of (variant − dapo)
    diff = np.mean([runs["sentiment"]["gcpo"][s]["final"] - runs["sentiment"]["dapo"][s]["final"] for s in (1, 2)])
    row = next(line for line in report.splitlines()[report.splitlines().index("### sentiment"):]
               if line.startswith("| gcpo |"))
    assert f"{diff:.3f} [" in row.split("|")[4] and row.split("|")[5].strip() in ("excludes 0", "includes 0")
    assert "ran " in stdout and "min wall" in stdout


def test_quick_resumes_without_rerunning(quick):
    out, _ = quick
    files = sorted(str(p) for p in out.rglob("runs/**/*.json"))
    mtimes = [os.path.getmtime(f) for f in files]
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "study.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ran 0 runs" in run.stdout
    assert [os.path.getmtime(f) for f in files] == mtimes
    assert json.loads((out / "study.json").read_text())["invocations"] == 2


def test_quick_plots_are_pngs(quick):
    out, _ = quick
    for name in ("learning_curves", "paired_difference", "credit_difficulty", "key_token_auc", "sentiment_mechanism"):
        data = (out / "figures" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def test_plots_without_runs_is_a_one_line_error(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "plots.py"), "--results", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "study.py" in run.stderr
