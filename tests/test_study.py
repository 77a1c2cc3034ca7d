"""The study (benchmarks/study.py): its statistics, learning-rate selection, narrowing flags, its scheduler, its
warm-start cache, the --quick grid end to end with the figures drawn from its output, `credit_kit compare` on top of
it, and the committed report rebuilt from the committed run files."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gcpo
from benchmarks import study  # as benchmarks.study, the name mutation testing gives it (see pyproject.toml)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _runs(**finals):
    """{variant: {seed: run}} with the given final rewards per seed (AUC = final / 2, warm start 0.1)."""
    run = lambda f: {"final": f, "auc": f / 2, "reward_before": 0.1}  # noqa: E731
    return {v: {s: run(f) for s, f in enumerate(fs, 1)} for v, fs in finals.items()}


def test_learned_line_names_the_best_variant_and_its_gain_over_the_warm_start():
    r = _runs(dapo=[0.3, 0.5, 0.4], gcpo=[0.6, 0.8, 0.7])
    line = study.learned_line(r)
    m, lo, hi = study.t_mean_ci([0.5, 0.7, 0.6])  # gcpo's final − 0.1, per seed
    assert f"Best final reward: gcpo, gain over the warm start {study.fmt_ci(m, lo, hi)} (it learns)" in line
    assert "warm start: 0.100" in line
    flat = _runs(dapo=[0.0, 0.2, 0.1])  # gains −0.1, 0.1, 0: the interval includes 0
    assert "NOT shown to learn" in study.learned_line(flat)


def test_mechanism_rows_are_the_controls_and_peers_as_paired_differences():
    r = _runs(
        dapo=[0.5, 0.6, 0.7],
        gcpo=[0.6, 0.8, 0.7],
        **{"gcpo+shuffled": [0.4, 0.6, 0.5], "dapo+entropy_top20": [0.2, 0.3, 0.1]},
    )
    rows = study.mechanism_rows(r, "copy")
    assert [row.split(" | ")[1] for row in rows] == [
        "step sizes without information: gcpo+shuffled − dapo",
        "GCPO's placement: gcpo − gcpo+shuffled",
        "GCPO vs a peer: gcpo − dapo+entropy_top20",  # no oracle: its row is left out
    ]
    d = study.t_mean_ci([0.6 - 0.2, 0.8 - 0.3, 0.7 - 0.1])
    assert rows[2].startswith("| copy |") and study.fmt_ci(*d) in rows[2]  # final, paired by seed
    d_auc = study.t_mean_ci([0.4 / 2 - 0.5 / 2, 0.6 / 2 - 0.6 / 2, 0.5 / 2 - 0.7 / 2])  # AUC: shuffled − dapo
    assert study.fmt_ci(*d_auc) in rows[0]


def test_bootstrap_ratio_is_the_ratio_of_means_with_a_paired_interval():
    num, den = [0.1, 0.3, 0.2, 0.0, 0.4], [0.5, 0.6, 0.4, 0.3, 0.7]
    r, lo, hi = study.bootstrap_ratio_ci(num, den)
    assert r == pytest.approx(np.mean(num) / np.mean(den)) and lo < r < hi  # not the mean of per-seed ratios
    assert (r, lo, hi) == study.bootstrap_ratio_ci(num, den)
    # brute force: the same resampled pairs, by a loop
    idx = np.random.default_rng(study.BOOTSTRAP_SEED).integers(0, 5, size=(study.BOOTSTRAP_RESAMPLES, 5))
    ratios = [np.mean(np.take(num, i)) / np.mean(np.take(den, i)) for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ratios, [0.025, 0.975])))
    assert study.bootstrap_ratio_ci([0.1, 0.2], [0.3, -0.3]) is None  # the oracle's gain is not distinguishable from 0
    assert study.bootstrap_ratio_ci([0.1, 0.2, 0.1], [0.2, 0.0, 0.1]) is None  # some resample's gain is 0


def test_lr_selection_averages_the_tuning_seeds_and_breaks_ties_to_the_smaller_rate(tmp_path):
    assert study.select_lr({1e-3: 0.4, 5e-4: 0.4, 2e-3: 0.3}) == 5e-4
    assert study.select_lr({2e-3: 0.5, 1e-3: 0.4}) == 2e-3
    plan = study.make_plan(tasks=["needle-8"], variants=["dapo"], seeds=(1,), tune_seeds=(101, 102))
    # seed 101 alone would pick 2e-3, seed 102 alone 5e-4; the mean over both ties 5e-4 with 1e-3 (0.3)
    aucs = {(101, 5e-4): 0.1, (102, 5e-4): 0.5, (101, 1e-3): 0.3, (102, 1e-3): 0.3, (101, 2e-3): 0.6, (102, 2e-3): -0.1}
    aucs.update({(101, 4e-3): 0.2, (102, 4e-3): 0.0})  # needle's grid has a fourth rate
    assert {lr for _, lr in aucs} == set(study.TASKS["needle-8"].lrs)
    for (seed, lr), auc in aucs.items():
        study.write_json(
            study.Job("tune", "needle-8", "dapo", seed, lr).path(str(tmp_path)), {"seed": seed, "lr": lr, "auc": auc}
        )
    sel = study.select_lrs(plan, "needle-8", str(tmp_path))["dapo"]
    assert sel["lr"] == 5e-4 and sel["tune_seeds"] == [101, 102]
    assert sel["mean_auc"] == {"0.0005": 0.3, "0.001": 0.3, "0.002": 0.25, "0.004": 0.1}
    assert study.selections_from_files(str(tmp_path))["needle-8"]["dapo"]["lr"] == 5e-4  # the report agrees


def test_default_plan_tunes_every_lr_owner_on_two_seeds_and_reports_every_variant():
    plan = study.make_plan()
    jobs = plan.jobs()
    tune = {j.variant for j in jobs if j.phase == "tune"}
    assert tune == {"grpo", "dr_grpo", "dapo", "gcpo", *study.PEERS}  # controls run at gcpo's rate
    assert len(plan.tune_seeds) >= 2
    assert not {j.seed for j in jobs if j.phase == "tune"} & {j.seed for j in jobs if j.phase == "report"}
    report = [j for j in jobs if j.phase == "report"]
    assert len({j.seed for j in report}) >= 10
    for task in plan.tasks:  # every variant, the peers included, on every task and reporting seed
        assert {j.variant for j in report if j.task == task} == set(study.DEFAULT_VARIANTS)
        assert sum(1 for j in report if j.task == task) == len(study.DEFAULT_VARIANTS) * len(plan.report_seeds)
    assert {f"needle-{L}" for L in (8, 16, 32, 64)} <= set(plan.tasks)
    assert len({j.path("out") for j in jobs}) == len(jobs)  # one file per run


def test_narrowing_flags_select_exactly_the_requested_cells():
    plan = study.make_plan(
        tasks=["needle-16", "copy"], variants=["gcpo+oracle", "vppo_top40"], seeds=(3, 5), tune_seeds=(201, 202)
    )
    jobs = plan.jobs()
    assert {(j.task, j.variant, j.seed) for j in jobs if j.phase == "report"} == {
        (t, v, s) for t in ("needle-16", "copy") for v in ("gcpo+oracle", "dapo+vppo_top40") for s in (3, 5)
    }
    # tuning: exactly the owners of the requested variants' learning rates, on the tuning seeds, over the grid
    assert {(j.task, j.variant, j.seed, j.lr) for j in jobs if j.phase == "tune"} == {
        (t, a, s, lr)
        for t in ("needle-16", "copy")
        for a in ("gcpo", "dapo+vppo_top40")
        for s in (201, 202)
        for lr in study.TASKS[t].lrs
    }
    assert {(j.task, j.seed) for j in jobs if j.phase == "warm"} == {
        (t, s) for t in ("needle-16", "copy") for s in (3, 5, 201, 202)
    }
    assert plan.variants["dapo+vppo_top40"].options == {"credit": "vppo_top40"}
    assert plan.variants["dapo+vppo_top40"].preset == "dapo"


def test_parse_seeds():
    assert study.parse_seeds("1-3,7,2", "--seeds") == (1, 2, 3, 7)
    for bad in ("", "a", "5-2", "1-x"):
        with pytest.raises(ValueError, match="--seeds"):
            study.parse_seeds(bad, "--seeds")


def test_a_scheme_from_a_file_becomes_a_dapo_variant_tuned_on_its_own(tmp_path):
    f = tmp_path / "my_credit.py"
    f.write_text("def flat(mask):\n    return mask.float()\n")
    name, v = study.scheme_variant(f"{f}:flat")
    assert name == "dapo+my_credit.flat" and v.preset == "dapo" and v.lr_from == name
    assert v.options == {"credit": f"{f}:flat"}
    plan = study.make_plan(tasks=["needle-8"], variants=["dapo", f"{f}:flat"], seeds=(1,))
    assert set(plan.tuned_of("needle-8")) == {"dapo", name}
    with pytest.raises(ValueError, match="no file"):
        study.resolve_variants([f"{tmp_path}/missing.py:flat"])
    with pytest.raises(ValueError, match="not a variant"):
        study.resolve_variants(["gcpo+typo"])


@pytest.mark.parametrize(
    "args, words",
    [
        (["--variants", "nosuch.py:f"], "no file"),
        (["--tasks", "needle-7"], "unknown"),
        (["--seeds", "3-1"], "--seeds"),
        (["--seeds", "1-3", "--tune-seeds", "2,101"], "overlap"),
        (["--report-only"], "no run files"),
    ],
)
def test_cli_mistakes_are_one_line(tmp_path, args, words):
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "study.py"), "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and words in run.stderr, run.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.cpu_sensitive
def test_cached_warm_start_reproduces_the_uncached_run(tmp_path):
    """Every run starts from a saved warm start (model=DIR/model, warm_steps=0): it must be the same run as
    warm-starting in-process."""
    common = dict(
        env="needle",
        task_args="length=8",
        seed=3,
        device="cpu",
        eval_prompts=32,
        batch_prompts=4,
        group_size=4,
        eval_every=2,
    )
    gcpo.train(gcpo.make_config("gcpo", steps=0, warm_steps=30, out=str(tmp_path / "warm"), **common), progress=False)
    cached = gcpo.train(
        gcpo.make_config("gcpo", steps=4, warm_steps=0, model=str(tmp_path / "warm" / "model"), **common),
        progress=False,
    )
    direct = gcpo.train(gcpo.make_config("gcpo", steps=4, warm_steps=30, **common), progress=False)
    assert cached["evals"] == direct["evals"]
    for a, b in zip(cached["history"], direct["history"]):
        assert a["reward_mean"] == b["reward_mean"] and a.get("pg_loss") == b.get("pg_loss")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """`study.py --quick` into a temporary folder, then `plots.py` on its output."""
    out = tmp_path_factory.mktemp("study")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "study.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    plots = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "plots.py"), "--results", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
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
        assert r["budget"] == spec.budget()
        if job.phase == "report":  # a variant runs at the selected rate of the algorithm it controls
            assert r["lr"] == selection[job.task][study.VARIANTS[job.variant].lr_from]["lr"]
            for k, v in study.VARIANTS[job.variant].options.items():
                assert r["config"][k] == v
    # the same warm start and eval prompts for every variant on a (task, seed): the same starting reward
    runs = study.collect(str(out))
    for by_variant in runs.values():
        for seed in plan.report_seeds:
            assert len({by_variant[v][seed]["reward_before"] for v in by_variant}) == 1
    assert "logp_move_high_w" in runs["sentiment"]["gcpo"][1]["curves"]  # the mechanism diagnostics
    assert "key_weight_auc" in runs["needle-8"]["gcpo+oracle"][1]["curves"]


def test_quick_selects_the_best_mean_tuning_auc(quick):
    out, _ = quick
    selection = json.loads((out / "lr_selection.json").read_text())
    for task, algos in selection.items():
        for algo, s in algos.items():
            aucs = {
                float(lr): np.mean(
                    [
                        study.load_json(study.Job("tune", task, algo, seed, float(lr)).path(str(out)))["auc"]
                        for seed in study.QUICK_TUNE_SEEDS
                    ]
                )
                for lr in s["mean_auc"]
            }
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
    row = next(
        line
        for line in report.splitlines()[report.splitlines().index("### sentiment") :]
        if re.match(r"\| gcpo( †)? \|", line)
    )
    assert f"{diff:.3f} [" in row.split("|")[5] and row.split("|")[6].strip() in ("excludes 0", "includes 0")
    assert "| gcpo † |" in row  # the last invocation computed it
    assert "ran " in stdout and "min wall" in stdout


def test_quick_resumes_without_rerunning(quick):
    out, _ = quick
    files = sorted(str(p) for p in out.rglob("runs/**/*.json"))
    mtimes = [os.path.getmtime(f) for f in files]
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "study.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ran 0 runs" in run.stdout
    assert [os.path.getmtime(f) for f in files] == mtimes
    meta = json.loads((out / "study.json").read_text())
    assert len(meta["invocations"]) == 2 and meta["last_invocation"]["cells"] == []
    assert "†" not in (out / "report.md").read_text().split("## Results per task")[1]  # nothing recomputed


def test_quick_plots_are_pngs(quick):
    out, _ = quick
    for name in ("learning_curves", "paired_difference", "credit_difficulty", "key_token_auc"):
        data = (out / "figures" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def test_plots_without_runs_is_a_one_line_error(tmp_path):
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "plots.py"), "--results", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "study.py" in run.stderr


def test_compare_races_a_scheme_reusing_the_study_cells(quick, tmp_path):
    """`credit_kit compare` on a copy of the --quick study: dapo and gcpo cells are reused, the scheme is tuned
    and run, the table has its paired differences to dapo and gcpo, the figure is written; then it resumes."""
    out = tmp_path / "study"
    shutil.copytree(quick[0], out)
    dapo = out / "runs" / "report" / "needle-8" / "dapo" / "seed1.json"
    before = dapo.stat().st_mtime
    cmd = [
        sys.executable,
        "-m",
        "credit_kit.compare",
        "gtpo_entropy",
        "--quick",
        "--tasks",
        "needle-8",
        "--seeds",
        "1-2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ran 6 runs" in run.stdout  # 2 rates x 2 tuning seeds + 2 reporting seeds; nothing else
    assert dapo.stat().st_mtime == before
    for ref in ("dapo", "gcpo"):
        assert re.search(rf"Δ dapo\+gtpo_entropy − {ref} +-?\d\.\d{{3}} \[", run.stdout), run.stdout
    assert (out / "figures" / "compare_dapo+gtpo_entropy.png").read_bytes()[:4] == b"\x89PNG"
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert again.returncode == 0 and "ran 0 runs" in again.stdout


def test_compare_bad_scheme_is_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "credit_kit.compare", "nosuch:fn", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "nosuch" in run.stderr, run.stderr


def test_committed_report_is_what_the_committed_run_files_rebuild(tmp_path):
    """results/report.md as committed must be exactly what `study.py --report-only` makes of the committed run files
    (read from git's HEAD, so that run files a running study has not committed yet do not count; outside a git
    checkout, the files on disk)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD", "results"], capture_output=True)
    if archive.returncode == 0:
        subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    else:
        shutil.copytree(os.path.join(ROOT, "results"), tmp_path / "results", ignore=shutil.ignore_patterns("cache"))
    results = tmp_path / "results"
    assert (results / "runs" / "report").is_dir(), "results/runs is missing: commit the run files"
    committed = (results / "report.md").read_text()
    study.write_report(str(results))
    assert (results / "report.md").read_text() == committed


T975_DF2 = 4.302652729911275  # Student t's 97.5% quantile at 2 degrees of freedom (tables): 3 seeds


def _by_hand(x):
    """mean ± t·sd/√n over 3 values, the 95% t interval, formatted as the report prints it."""
    x = np.asarray(x, dtype=np.float64)
    half = T975_DF2 * x.std(ddof=1) / np.sqrt(3)
    return f"{x.mean():.3f} [{x.mean() - half:.3f}, {x.mean() + half:.3f}]"


def test_report_tables_from_synthetic_run_files_match_a_computation_by_hand(tmp_path):
    """write_report on run files written here, every checked cell recomputed by hand: the needle criterion (met at
    one length, not at the other), the paired differences to dapo, the oracle share's point value, the per-task table,
    the learning-rate selection with its tie and the CPU-hours."""
    out = tmp_path / "results"
    before = [0.2, 0.25, 0.3]
    finals = {
        ("needle-8", "dapo"): [0.5, 0.6, 0.9],
        ("needle-8", "gcpo"): [0.7, 0.7, 0.95],
        ("needle-8", "gcpo+oracle"): [0.8, 0.9, 1.0],  # gain over the warm start 0.6, 0.65, 0.7: criterion met
        ("needle-16", "dapo"): [0.3, 0.4, 0.2],
        ("needle-16", "gcpo+oracle"): [0.5, 0.9, 0.4],  # gain 0.3, 0.65, 0.1: lower bound < 0.4, not met
        ("copy", "dapo"): [0.6, 0.7, 0.65],
        ("copy", "gcpo"): [0.62, 0.8, 0.6],
    }

    def write(path, **fields):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fields))

    for (task, v), fs in finals.items():
        budget = study.TASKS[task].budget()
        for seed, (f, b) in enumerate(zip(fs, before), 1):
            run = dict(phase="report", task=task, variant=v, seed=seed, lr=1e-3, budget=budget)
            run.update(final=f, auc=f / 2 + b / 4, reward_before=b, seconds=2.0, cpu_seconds=1.5)
            write(out / "runs" / "report" / task / v / f"seed{seed}.json", **run)
    tune_auc = {
        (101, 5e-4): 0.3,
        (102, 5e-4): 0.5,
        (101, 1e-3): 0.2,
        (102, 1e-3): 0.6,
        (101, 2e-3): 0.1,
        (102, 2e-3): 0.2,
    }
    for (seed, lr), auc in tune_auc.items():
        run = dict(phase="tune", task="copy", variant="dapo", seed=seed, lr=lr, auc=auc, seconds=1.0, cpu_seconds=1.5)
        write(out / "runs" / "tune" / "copy" / "dapo" / f"seed{seed}_lr{lr:g}.json", **run)
    text = study.write_report(str(out))
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines() if " | " in line}

    # the compute: 21 reporting + 6 tuning files at 1.5 CPU-seconds each
    assert f"Compute: {27 * 1.5 / 3600:.3f} CPU-hours" in text
    # the criterion: the oracle's gain over the warm start, per seed
    gain8 = np.subtract(finals[("needle-8", "gcpo+oracle")], before)
    gain16 = np.subtract(finals[("needle-16", "gcpo+oracle")], before)
    assert f"| {_by_hand(gain8)} | met |" in rows["| 8 | 3"]
    assert f"| {_by_hand(gain16)} | NOT met |" in rows["| 16 | 3"]
    # the axis: gcpo − dapo on AUC and final, paired by seed, and the share of the oracle's gain (point value)
    auc = {k: np.asarray(f) / 2 + np.asarray(before) / 4 for k, f in finals.items()}
    d_auc = auc[("needle-8", "gcpo")] - auc[("needle-8", "dapo")]
    d_fin = np.subtract(finals[("needle-8", "gcpo")], finals[("needle-8", "dapo")])
    row = rows["| 8 | gcpo"]
    assert f"| {_by_hand(d_auc)} | " in row and f"| {_by_hand(d_fin)} | " in row
    share_auc = d_auc.mean() / (auc[("needle-8", "gcpo+oracle")] - auc[("needle-8", "dapo")]).mean()
    assert f"| {share_auc:.3f} [" in row
    # the per-task table: gcpo's final mean with its interval, and Δ final vs dapo with its verdict
    d_copy = np.subtract(finals[("copy", "gcpo")], finals[("copy", "dapo")])
    row = rows["| gcpo | 3"]
    assert f"| {_by_hand(finals[('copy', 'gcpo')])} | {_by_hand(d_copy)} | includes 0 |" in row
    # learning rates: mean tuning AUC 0.4, 0.4, 0.15: a tie, which goes to the smaller rate
    assert "- copy: dapo **0.0005** (0.0005: 0.400, 0.001: 0.400, 0.002: 0.150)" in text


# ---- the scheduler (run_study), its training replaced by a stand-in -----------------------------------------
# The study's scheduler (benchmarks/study.py run_study) with the training replaced by a stand-in that writes the run
# file a real run would (the fields `matches` compares) and an AUC chosen by the test: every job of the plan runs once;
# a warm start before the runs on its seed, a task's tuning before its reporting runs, reporting seed by seed; each
# reporting run at the rate selected for the owner of its learning rate, which is the one lr_selection.json records; a
# resumed study runs only the files that are missing or stale (another budget, options or rate, a lost warm-start
# model); a failed job skips exactly what depends on it; an interrupted study says so. The --quick tests above train.

LRS = (1e-3, 2e-3, 4e-3)
SPEC = dataclasses.replace(study.TASKS["needle-8"], lrs=LRS)
OTHER = dataclasses.replace(study.TASKS["copy"], lrs=LRS)
# the stand-in's tuning AUC: each owner has its own best rate, and seed 101 alone would choose another one
AUC = {
    "dapo": {101: {1e-3: 0.9, 2e-3: 0.2, 4e-3: 0.1}, 102: {1e-3: 0.1, 2e-3: 0.7, 4e-3: 0.3}},  # means .5 .45 .2
    "gcpo": {101: {1e-3: 0.1, 2e-3: 0.2, 4e-3: 0.5}, 102: {1e-3: 0.2, 2e-3: 0.2, 4e-3: 0.5}},  # means .15 .2 .5
}
BEST = {"dapo": 1e-3, "gcpo": 4e-3}


def _plan(tasks=("needle-8",), report_seeds=(1, 2)):
    specs = {"needle-8": SPEC, "copy": OTHER}
    # gcpo itself is not reported: it is tuned as the owner of its controls' rate
    variants = {v: study.VARIANTS[v] for v in ("dapo", "gcpo+shuffled", "gcpo+oracle")}
    return study.Plan({t: specs[t] for t in tasks}, variants, (101, 102), report_seeds)


class StandIn:
    """Replaces study.run_job: records (job, variant, lr) in call order and writes the job's file like run_job."""

    def __init__(self, fail=(), interrupt=None):
        self.calls, self.fail, self.interrupt = [], set(fail), interrupt

    def __call__(self, job, spec, variant, out, lr):
        self.calls.append((job, variant, lr))
        if job == self.interrupt:
            raise KeyboardInterrupt
        if job in self.fail:
            raise RuntimeError("stand-in  failure\non two lines")
        res = {"phase": job.phase, "task": job.task, "seed": job.seed, "budget": spec.budget()}
        if job.phase == "warm":
            os.makedirs(os.path.join(study.warm_dir(out, job.task, job.seed), "model"), exist_ok=True)
        else:
            auc = AUC[job.variant][job.seed][lr] if job.phase == "tune" else 0.5
            res.update(variant=job.variant, algo=variant.preset, overrides=variant.options, lr=lr, auc=auc)
        study.write_json(job.path(out), res)
        return res


@pytest.fixture
def stand_in(monkeypatch):
    def install(**kw):
        s = StandIn(**kw)
        monkeypatch.setattr(study, "run_job", s)
        return s

    return install


def _order(calls):
    return {job: i for i, (job, _, _) in enumerate(calls)}


def test_every_job_runs_once_in_dependency_order_at_the_selected_rate(tmp_path, stand_in):
    out, plan = str(tmp_path), _plan()
    s = stand_in()
    res = study.run_study(plan, out, workers=1)
    jobs = [job for job, _, _ in s.calls]
    assert sorted(jobs, key=repr) == sorted(plan.jobs(), key=repr) and len(set(jobs)) == len(jobs)
    assert res["failed"] == [] and res["interrupted"] is False and res["ran"] == jobs
    at = _order(s.calls)
    warm = {j.seed: at[j] for j in jobs if j.phase == "warm"}
    for job, variant, lr in s.calls:
        if job.phase == "tune":
            assert warm[job.seed] < at[job] and lr == job.lr and variant == study.VARIANTS[job.variant]  # not reported
        if job.phase == "report":
            owner = plan.variants[job.variant].lr_from
            last_tune = max(at[j] for j in jobs if j.phase == "tune" and j.variant == owner)
            assert warm[job.seed] < at[job] and last_tune < at[job]
            assert variant == plan.variants[job.variant]
            assert lr == BEST[owner], (job, lr)  # the best mean over both tuning seeds, not seed 101's best
    # the tuning seeds' warm starts, then the tuning, then seed by seed: a warm start and all its reporting runs
    phases = [(j.phase, j.seed) for j in jobs]
    assert phases[:2] == [("warm", 101), ("warm", 102)]
    assert {p for p, _ in phases[2:14]} == {"tune"}  # 2 owners x 3 rates x 2 seeds
    seed1 = [j for j in jobs if j.phase == "report" and j.seed == 1]
    assert phases[14] == ("warm", 1) and max(at[j] for j in seed1) < warm[2]
    with open(os.path.join(out, "lr_selection.json")) as f:
        saved = json.load(f)
    assert {o: saved["needle-8"][o]["lr"] for o in saved["needle-8"]} == BEST
    assert saved["needle-8"]["dapo"]["mean_auc"] == {"0.001": 0.5, "0.002": 0.45, "0.004": 0.2}
    assert 0 <= res["wall"] < 600  # seconds this invocation took, not a timestamp


def test_two_workers_run_every_job_once_from_a_spawned_pool_of_one_thread_workers(tmp_path, stand_in, monkeypatch):
    """With workers > 1 the jobs go to a process pool: spawned (torch is not fork-safe), of `workers` processes,
    each initialised to one torch thread; every job runs once, after what it needs, and none is reported skipped.
    The pool here is a thread pool that records how it was asked for, so the stand-in's calls stay visible."""
    from multiprocessing.pool import ThreadPool

    asked = []

    class Context:
        def __init__(self, method):
            asked.append(method)

        def Pool(self, processes, initializer=None):
            asked.append((processes, initializer))
            return ThreadPool(processes)

    monkeypatch.setattr(study.mp, "get_context", Context)
    out, plan = str(tmp_path), _plan()
    s = stand_in()
    res = study.run_study(plan, out, workers=2)
    assert asked == ["spawn", (2, study._worker_init)]
    jobs = [job for job, _, _ in s.calls]
    assert sorted(jobs, key=repr) == sorted(plan.jobs(), key=repr) and len(set(jobs)) == len(jobs)
    assert res["failed"] == [] and sorted(res["ran"], key=repr) == sorted(jobs, key=repr)
    at = _order(s.calls)
    for job, _, lr in s.calls:
        if job.phase != "warm":
            assert at[study.Job("warm", job.task, "", job.seed)] < at[job]
        if job.phase == "report":
            assert lr == BEST[plan.variants[job.variant].lr_from]


def test_tasks_run_one_after_another_in_the_plans_order(tmp_path, stand_in):
    s = stand_in()
    study.run_study(_plan(tasks=("copy", "needle-8"), report_seeds=(1,)), str(tmp_path), workers=1)
    tasks = [job.task for job, _, _ in s.calls]
    n = tasks.count("copy")
    assert n == len(tasks) // 2 and tasks == ["copy"] * n + ["needle-8"] * n


def test_the_warm_start_cache_is_under_out_where_git_ignores_it():
    assert study.warm_dir("results", "copy", 3) == os.path.join("results", "cache", "copy", "seed3")
    with open(os.path.join(ROOT, ".gitignore")) as f:
        assert "results/cache/" in f.read().split()


def test_a_finished_study_runs_nothing_again(tmp_path, stand_in):
    out, plan = str(tmp_path), _plan()
    stand_in()
    study.run_study(plan, out, workers=1)
    again = stand_in()
    res = study.run_study(plan, out, workers=1)
    assert again.calls == [] and res["ran"] == [] and res["failed"] == []


def _edit(path, **changes):
    study.write_json(path, {**study.load_json(path), **changes})


@pytest.mark.parametrize(
    "stale",
    ["missing", "budget", "algo", "overrides", "lr"],
)
def test_a_resumed_study_reruns_exactly_a_missing_or_stale_reporting_file(tmp_path, stand_in, stale):
    out, plan = str(tmp_path), _plan()
    stand_in()
    study.run_study(plan, out, workers=1)
    job = study.Job("report", "needle-8", "gcpo+shuffled", 2)
    path = job.path(out)
    if stale == "missing":
        os.remove(path)
    else:
        other = {"budget": {**SPEC.budget(), "steps": 1}, "algo": "dapo", "overrides": {}, "lr": 1e-3}[stale]
        _edit(path, **{stale: other})
    again = stand_in()
    res = study.run_study(plan, out, workers=1)
    assert [(j, lr) for j, _, lr in again.calls] == [(job, BEST["gcpo"])] and res["ran"] == [job]


@pytest.mark.parametrize("stale", ["budget", "model"])
def test_a_stale_warm_start_reruns_alone(tmp_path, stand_in, stale):
    out, plan = str(tmp_path), _plan()
    stand_in()
    study.run_study(plan, out, workers=1)
    job = study.Job("warm", "needle-8", "", 1)
    if stale == "budget":
        _edit(job.path(out), budget={**SPEC.budget(), "warm_steps": 1})
    else:
        os.rmdir(os.path.join(study.warm_dir(out, "needle-8", 1), "model"))
    again = stand_in()
    study.run_study(plan, out, workers=1)
    assert [j for j, _, _ in again.calls] == [job]


def test_a_stale_tuning_file_reruns_and_reporting_runs_follow_a_changed_selection(tmp_path, stand_in, monkeypatch):
    out, plan = str(tmp_path), _plan()
    stand_in()
    study.run_study(plan, out, workers=1)
    tune = study.Job("tune", "needle-8", "dapo", 102, 2e-3)
    _edit(tune.path(out), algo="gcpo")  # a file run under other options reruns; its AUC, and so the selection, stay
    again = stand_in()
    study.run_study(plan, out, workers=1)
    assert [j for j, _, _ in again.calls] == [tune]  # no reporting run is stale
    # dapo's tuning redone with other AUCs: the selection moves to 4e-3 and dapo's reporting runs (only) follow it
    monkeypatch.setitem(AUC, "dapo", {s: {1e-3: 0.1, 2e-3: 0.2, 4e-3: 0.9} for s in (101, 102)})
    for seed in (101, 102):
        for lr in LRS:
            os.remove(study.Job("tune", "needle-8", "dapo", seed, lr).path(out))
    third = stand_in()
    study.run_study(plan, out, workers=1)
    reran = {(j.phase, j.variant, j.seed, lr) for j, _, lr in third.calls}
    assert reran == {("tune", "dapo", s, lr) for s in (101, 102) for lr in LRS} | {
        ("report", "dapo", s, 4e-3) for s in (1, 2)
    }


def test_reporting_files_wait_for_their_owners_rate_when_every_tuning_reruns(tmp_path, stand_in):
    """A resumed two-task study with one stale tuning file per owner and task: no rate is known at the start, so
    each rerun tuning selects its owner's rate while the other owners' (and the other task's) reporting files still
    wait for theirs; each current reporting file is kept once its owner's rate is selected, and none reruns."""
    out, plan = str(tmp_path), _plan(tasks=("needle-8", "copy"), report_seeds=(1,))
    stand_in()
    study.run_study(plan, out, workers=1)
    stale = [study.Job("tune", t, o, 102, 2e-3) for t in ("needle-8", "copy") for o in ("dapo", "gcpo")]
    for job in stale:
        _edit(job.path(out), algo="grpo")
    again = stand_in()
    res = study.run_study(plan, out, workers=1)
    assert sorted((j for j, _, _ in again.calls), key=repr) == sorted(stale, key=repr) and res["failed"] == []


def test_a_one_task_variant_is_tuned_and_reported_on_its_task_only(tmp_path, stand_in, monkeypatch):
    """A variant restricted to one task with its own learning rate (a scheme raced on one task): its tuning and
    reporting runs are on that task only, at its own selected rate, and a finished study runs none of them again."""
    monkeypatch.setitem(AUC, "dapo+only", {s: {1e-3: 0.1, 2e-3: 0.8, 4e-3: 0.1} for s in (101, 102)})
    only = study.Variant("dapo", (("credit", "shuffled"),), "dapo+only", ("copy",))
    plan = _plan(tasks=("needle-8", "copy"), report_seeds=(1,))
    plan = study.Plan(plan.tasks, {**plan.variants, "dapo+only": only}, plan.tune_seeds, plan.report_seeds)
    out, s = str(tmp_path), stand_in()
    res = study.run_study(plan, out, workers=1)
    assert res["failed"] == []
    ran = {(j.phase, j.task, lr) for j, _, lr in s.calls if j.variant == "dapo+only"}
    assert ran == {("tune", "copy", lr) for lr in LRS} | {("report", "copy", 2e-3)}
    again = stand_in()
    res = study.run_study(plan, out, workers=1)
    assert res["ran"] == [] and res["failed"] == [] and again.calls == []  # its rate read back from its files


def test_a_failed_job_skips_exactly_the_jobs_that_need_it(tmp_path, stand_in):
    out, plan = str(tmp_path), _plan()
    bad_tune = study.Job("tune", "needle-8", "gcpo", 102, 2e-3)
    bad_warm = study.Job("warm", "needle-8", "", 2)
    s = stand_in(fail={bad_tune, bad_warm})
    res = study.run_study(plan, out, workers=1)
    failed = dict(res["failed"])
    assert failed[bad_tune] == failed[bad_warm] == "RuntimeError: stand-in failure on two lines"
    needs_gcpo = {study.Job("report", "needle-8", v, s) for v in ("gcpo+shuffled", "gcpo+oracle") for s in (1, 2)}
    needs_seed2 = {study.Job("report", "needle-8", v, 2) for v in ("dapo", "gcpo+shuffled", "gcpo+oracle")}
    skipped = {j for j, why in res["failed"] if why == "skipped: a job it needs failed"}
    assert skipped == needs_gcpo | needs_seed2
    assert set(failed) == skipped | {bad_tune, bad_warm}
    ran = {j for j, _, _ in s.calls}
    assert ran == set(plan.jobs()) - skipped and set(res["ran"]) == ran - {bad_tune, bad_warm}
    assert not os.path.exists(bad_tune.path(out))  # so that a rerun retries it
    dapo1 = study.Job("report", "needle-8", "dapo", 1)
    assert os.path.exists(dapo1.path(out))


def test_a_failed_tuning_warm_start_skips_its_tasks_tuning_and_reporting_and_the_next_task_runs(tmp_path, stand_in):
    """The first task's tuning-seed warm start fails: no rate can be selected there, so its tuning on that seed and
    all its reporting runs are skipped (never dispatched without a rate), and the second task runs whole."""
    out, plan = str(tmp_path), _plan(tasks=("needle-8", "copy"), report_seeds=(1,))
    bad = study.Job("warm", "needle-8", "", 101)
    s = stand_in(fail={bad})
    res = study.run_study(plan, out, workers=1)
    skipped = {j for j, why in res["failed"] if why == "skipped: a job it needs failed"}
    needle = [j for j in plan.jobs() if j.task == "needle-8"]
    assert skipped == {j for j in needle if j.phase == "report" or (j.phase == "tune" and j.seed == 101)}
    assert {j for j, _, _ in s.calls if j.task == "copy"} == {j for j in plan.jobs() if j.task == "copy"}


def test_an_interrupted_study_keeps_what_finished_and_says_so(tmp_path, stand_in):
    out, plan = str(tmp_path), _plan()
    stop = study.Job("tune", "needle-8", "dapo", 101, 2e-3)
    s = stand_in(interrupt=stop)
    res = study.run_study(plan, out, workers=1)
    assert res["interrupted"] is True and res["failed"] == []
    assert res["ran"] == [j for j, _, _ in s.calls[:-1]] and s.calls[-1][0] == stop
    assert all(os.path.exists(j.path(out)) for j in res["ran"])
    rest = stand_in()
    study.run_study(plan, out, workers=1)
    assert {j for j, _, _ in rest.calls} == set(plan.jobs()) - set(res["ran"])
