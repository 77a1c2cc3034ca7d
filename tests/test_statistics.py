"""The statistics behind every number of the study's report (benchmarks/study.py), each against an independent
computation: the learning-curve area by hand and in closed form, the bootstrap interval against the exact
bootstrap distribution (all n^n resamples of a small sample) and against its level (coverage of a known mean over
many samples), the paired difference by hand, and the learning-rate selection on run files written here."""
import itertools
import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import study  # noqa: E402


# ---- the area under the learning curve ------------------------------------------------------------------
def test_curve_auc_by_hand_on_uneven_steps():
    # trapezoids 1·(0.2+0.6)/2 + 3·(0.6+0)/2 + 1·(0+1)/2 = 0.4 + 0.9 + 0.5 = 1.8 over 5 steps; a left sum gives
    # 0.4, a right sum 0.32, the mean of the points 0.45, the area without dividing 1.8
    assert study.curve_auc([(0, 0.2), (1, 0.6), (4, 0.0), (5, 1.0)]) == pytest.approx(0.36, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_curve_auc_of_a_line_is_its_mean_height(seed):
    """A straight line r = a + b·s sampled at any steps 0 = s_0 < .. < s_K = S: the trapezoid rule is exact and the
    area per step is a + b·S/2; a constant curve gives its value."""
    rng = np.random.default_rng(seed)
    steps = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 200), size=rng.integers(1, 12), replace=False))])
    a, b = rng.uniform(-1, 1, 2)
    evals = [(int(s), a + b * s) for s in steps]
    assert study.curve_auc(evals) == pytest.approx(a + b * steps[-1] / 2, abs=1e-12)
    assert study.curve_auc([(int(s), 0.3) for s in steps]) == pytest.approx(0.3, abs=1e-15)


def test_curve_auc_of_one_evaluation_is_that_evaluation():
    assert study.curve_auc([(0, 0.7)]) == 0.7


# ---- the bootstrap interval -------------------------------------------------------------------------------
def exact_bootstrap_quantile(x, p):
    """The p-quantile (inverse CDF) of the exact bootstrap distribution of the mean of x: every one of the n^n
    equally likely resamples (index tuples) enumerated."""
    n = len(x)
    means = np.sort([np.mean([x[i] for i in idx]) for idx in itertools.product(range(n), repeat=n)])
    return means[min(max(math.ceil(p * len(means)) - 1, 0), len(means) - 1)]


@pytest.mark.parametrize("level", [0.5, 0.8, 0.95])
def test_bootstrap_interval_is_the_exact_bootstrap_distributions_central_interval(level):
    """x = (1, 2, 4, 8, 16)/16: all 5^5 = 3125 resamples, 126 distinct means. The interval's ends are the
    (1 − level)/2 and (1 + level)/2 quantiles of that distribution, up to the Monte Carlo error of 10,000
    resamples (one percentage point of probability is ~6 standard errors). A bootstrap that never draws one of
    the values, or quantiles at 1 − level and level, lands outside."""
    x = [1 / 16, 2 / 16, 4 / 16, 8 / 16, 1.0]
    mean, lo, hi = study.bootstrap_mean_ci(x, level=level)
    assert mean == np.mean(x)
    for end, p in ((lo, (1 - level) / 2), (hi, (1 + level) / 2)):
        assert exact_bootstrap_quantile(x, p - 0.01) <= end <= exact_bootstrap_quantile(x, p + 0.01), (end, p)


def test_bootstrap_draws_every_value():
    """(0, 0, 1): the resampled mean is k/3 with k ~ Binomial(3, 1/3) draws of the 1. P(k = 0) = 8/27 > 0.025 puts
    the lower end at 0, P(k = 3) = 1/27 > 0.025 the upper end at 1; a bootstrap that never draws the last (or the
    first) value gives another interval."""
    for x in ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]):
        assert study.bootstrap_mean_ci(x)[1:] == (0.0, 1.0), x


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_bootstrap_interval_covers_a_known_mean_at_its_level(level):
    """2,000 samples of 100 draws from N(0.3, 1): the interval covers 0.3 in a fraction of the samples within 3
    binomial standard errors (~0.015) plus 0.01 of its level (the percentile bootstrap undercovers slightly at
    n = 100: ≈ P(|t_99| < z·√0.99), 0.946 at 95%). An interval at the wrong level (90% for 95%) is ~0.05 off."""
    rng, reps = np.random.default_rng(2026), 2000
    covered = 0
    for r in range(reps):
        _, lo, hi = study.bootstrap_mean_ci(rng.normal(0.3, 1.0, 100), resamples=1000, seed=r, level=level)
        covered += lo <= 0.3 <= hi
    tolerance = 3 * math.sqrt(level * (1 - level) / reps) + 0.01
    assert abs(covered / reps - level) < tolerance, covered / reps


def test_bootstrap_interval_has_the_normal_width_on_a_large_sample():
    """n = 400: the bootstrap distribution of the mean is close to normal with sd s/√n (s with divisor n), so the
    95% interval is mean ± 1.96·s/√n to within a few percent (a 90% one would be 16% narrower)."""
    x = np.random.default_rng(7).exponential(1.0, 400)
    m, lo, hi = study.bootstrap_mean_ci(x)
    half = 1.959964 * x.std() / math.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.04)
    assert m - lo == pytest.approx(half, rel=0.1) and hi - m == pytest.approx(half, rel=0.1)  # skewed: not exact


def test_bootstrap_of_one_value_or_equal_values_is_that_value():
    assert study.bootstrap_mean_ci([0.4]) == (0.4, 0.4, 0.4)
    assert study.bootstrap_mean_ci([-1.5] * 3) == (-1.5, -1.5, -1.5)


# ---- the paired difference -----------------------------------------------------------------------------------
def runs_of(values):
    """{seed: run dict} as study.collect gives them, with 'final' and 'auc' per seed."""
    return {s: {"final": v, "auc": v / 2} for s, v in values.items()}


def test_paired_difference_is_the_bootstrap_of_per_seed_differences_on_common_seeds():
    dapo = runs_of({1: 0.1, 2: 0.9, 3: 0.5, 4: 0.3})
    gcpo = runs_of({2: 0.95, 3: 0.4, 4: 0.6, 5: 0.99})  # seeds 2, 3, 4 in common
    rows = {r["variant"]: r for r in study.summary_rows({"dapo": dapo, "gcpo": gcpo}, "final")}
    assert "diff" not in rows["dapo"] and rows["dapo"]["n"] == 4
    g = rows["gcpo"]
    assert g["n"] == 4 and g["n_paired"] == 3
    assert g["mean"] == study.bootstrap_mean_ci([0.95, 0.4, 0.6, 0.99])
    # variant − dapo per seed: 0.05, −0.1, 0.3 (positive = better than dapo)
    assert g["diff"][0] == pytest.approx((0.05 - 0.1 + 0.3) / 3, abs=1e-12)
    assert g["diff"] == pytest.approx(study.bootstrap_mean_ci([0.95 - 0.9, 0.4 - 0.5, 0.6 - 0.3]), abs=1e-12)
    auc = {r["variant"]: r for r in study.summary_rows({"dapo": dapo, "gcpo": gcpo}, "auc")}
    assert auc["gcpo"]["diff"][0] == pytest.approx(g["diff"][0] / 2, abs=1e-12)


def test_paired_difference_removes_what_the_seeds_share():
    """A variant exactly 0.05 above dapo on every seed, with seeds spread from 0 to 0.9: the paired interval is
    the single point 0.05 (an unpaired or misaligned comparison would be as wide as the seeds' spread)."""
    base = {s: 0.1 * s for s in range(10)}
    rows = study.summary_rows({"dapo": runs_of(base), "gcpo": runs_of({s: v + 0.05 for s, v in base.items()})},
                              "final")
    _, lo, hi = rows[1]["diff"]
    assert lo == pytest.approx(0.05, abs=1e-9) and hi == pytest.approx(0.05, abs=1e-9)
    assert study.in_words(lo, hi) == "excludes 0"


# ---- the learning-rate selection -------------------------------------------------------------------------------
def write_tuning(tmp_path, aucs: dict, seeds):
    """Tuning run files for dapo on one task: aucs = {lr: [AUC per tuning seed]}. Returns (plan, task, out)."""
    spec = study.TaskSpec("needle", "length=8", lrs=tuple(aucs))
    plan = study.Plan({"t": spec}, ("dapo",), tuple(seeds), (1,))
    for lr, per_seed in aucs.items():
        for s, auc in zip(seeds, per_seed):
            study.write_json(study.Job("tune", "t", "dapo", s, lr).path(str(tmp_path)), {"auc": auc})
    return plan, "t", str(tmp_path)


def test_select_lrs_takes_the_highest_mean_auc_over_the_tuning_seeds(tmp_path):
    # 3e-3 has the best first seed and the best single run, 1e-3 the best mean: (0.6 + 0.6) / 2 > (0.9 + 0.1) / 2
    plan, task, out = write_tuning(tmp_path, {3e-4: [0.2, 0.3], 1e-3: [0.6, 0.6], 3e-3: [0.9, 0.1]}, (101, 102))
    sel = study.select_lrs(plan, task, out)
    assert sel["dapo"]["lr"] == 1e-3
    assert sel["dapo"]["mean_auc"] == {"0.0003": 0.25, "0.001": 0.6, "0.003": 0.5}


@pytest.mark.parametrize("grid", [(5e-4, 1e-3, 2e-3), (2e-3, 1e-3, 5e-4), (1e-3, 5e-4, 2e-3)])
def test_select_lrs_breaks_a_tie_towards_the_smaller_rate(tmp_path, grid):
    """5e-4 and 1e-3 tie on mean AUC (0.25 + 0.75 and 0.5 + 0.5, exact in floating point) above 2e-3, in any grid
    order: the smaller rate is chosen (the documented rule; the study's needle-128 grpo once tied like this)."""
    table = {5e-4: [0.25, 0.75], 1e-3: [0.5, 0.5], 2e-3: [0.1, 0.2]}
    plan, task, out = write_tuning(tmp_path, {lr: table[lr] for lr in grid}, (101, 102))
    assert study.select_lrs(plan, task, out)["dapo"]["lr"] == 5e-4
