"""The statistics behind every number of the study's report (benchmarks/study.py), each against an independent
computation: the learning-curve area by hand and in closed form, the Student-t intervals of means and paired
differences against closed forms, tables and their coverage at ten seeds, the bootstrap intervals (of a mean and of
a ratio of paired means) against the exact bootstrap distribution (all n^n resamples of a small sample) and against
their level (coverage of a known mean over many samples), the paired difference and the oracle share by hand, and
the learning-rate selection on run files written here."""

import itertools
import json
import math

import numpy as np
import pytest

from benchmarks import study  # as benchmarks.study, the name mutation testing gives it (see pyproject.toml)


# ---- Student's t: the intervals of means and paired differences -----------------------------------------
@pytest.mark.parametrize(
    "p, df, expected",
    [  # closed forms for df = 1 (Cauchy) and 2, table values for the rest
        (0.975, 1, math.tan(math.pi * 0.475)),
        (0.9, 1, math.tan(math.pi * 0.4)),
        (0.975, 2, (2 * 0.975 - 1) * math.sqrt(2 / (4 * 0.975 * 0.025))),
        (0.995, 2, (2 * 0.995 - 1) * math.sqrt(2 / (4 * 0.995 * 0.005))),
        (0.975, 4, 2.776445105197793),
        (0.975, 9, 2.262157162798205),
        (0.95, 9, 1.833112932653586),
        (0.995, 9, 3.249835541592143),
        (0.975, 29, 2.045229642132703),
    ],
)
def test_t_quantile_matches_closed_forms_and_tables(p, df, expected):
    assert study.t_quantile(p, df) == pytest.approx(expected, rel=1e-7)


def test_t_quantile_tends_to_the_normal_and_is_zero_at_the_median():
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    assert study.t_quantile(0.975, 100_000) == pytest.approx(z, rel=1e-4)
    assert study.t_quantile(0.975, 30) > study.t_quantile(0.975, 100) > z  # heavier tails at fewer df
    assert study.t_quantile(0.5, 5) == pytest.approx(0.0, abs=1e-12)


def test_t_interval_by_hand():
    x = [0.2, 0.5, 0.3, 0.6]  # mean 0.4, s = √(0.1/3)
    m, lo, hi = study.t_mean_ci(x)
    half = 3.182446305284263 * math.sqrt(0.1 / 3) / 2  # t_{3, 0.975} · s / √4
    assert (m, lo, hi) == pytest.approx((0.4, 0.4 - half, 0.4 + half), abs=1e-9)
    assert study.t_mean_ci([0.7]) == (0.7, 0.7, 0.7)
    # two values, the smallest sample with an interval: df = 1, t_{1, 0.975} = tan(0.475π) = 12.7062...
    half2 = math.tan(0.475 * math.pi) * (0.2 / math.sqrt(2)) / math.sqrt(2)  # s of (0.1, 0.3) is 0.2/√2
    assert study.t_mean_ci([0.1, 0.3]) == pytest.approx((0.2, 0.2 - half2, 0.2 + half2), abs=1e-9)
    assert study.t_mean_ci([0.3] * 5) == pytest.approx((0.3, 0.3, 0.3), abs=1e-15)
    _, lo90, hi90 = study.t_mean_ci(x, level=0.9)
    assert lo < lo90 < hi90 < hi


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_t_interval_covers_a_known_mean_at_its_level_at_ten_seeds(level):
    """4,000 samples of 10 draws from N(0.3, 0.2), the study's seed count: the t interval covers 0.3 in a fraction
    within 3 binomial standard errors of its level, where the percentile bootstrap, by the same count, falls
    short by more than that (at 95%: about 0.91)."""
    rng, reps = np.random.default_rng(11), 4000
    samples = rng.normal(0.3, 0.2, (reps, 10))
    covered = np.mean([lo <= 0.3 <= hi for _, lo, hi in (study.t_mean_ci(x, level=level) for x in samples)])
    tolerance = 3 * math.sqrt(level * (1 - level) / reps)
    assert abs(covered - level) < tolerance, covered
    boot = np.mean(
        [
            lo <= 0.3 <= hi
            for _, lo, hi in (
                study.bootstrap_mean_ci(x, 1000, seed=i, level=level) for i, x in enumerate(samples[:1000])
            )
        ]
    )
    assert level - boot > 3 * math.sqrt(level * (1 - level) / 1000), boot


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
    assert study.curve_auc([(0, 0.2), (0, 0.4)]) == 0.4  # no step between them: no area, the last evaluation
    assert study.curve_auc([(0, 0.2), (0, 0.4), (4, 0.8)]) == pytest.approx(0.6, abs=1e-15)  # the formula


def test_curve_auc_is_the_mean_height_between_the_first_and_last_step():
    assert study.curve_auc([(0, 0.2), (10, 0.6)]) == pytest.approx(0.4, abs=1e-15)  # two points: their mean
    assert study.curve_auc([(5, 0.3), (15, 0.3)]) == pytest.approx(0.3, abs=1e-15)  # flat from step 5: its height
    assert study.curve_auc([(4, 0.0), (6, 1.0), (8, 1.0)]) == pytest.approx((1 * 2 / 2 + 2 * 1) / 4, abs=1e-15)


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
    assert mean == np.mean(x) and study.bootstrap_mean_ci(x, level=level) == (mean, lo, hi)  # seeded
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


# ---- the ratio of paired gains (the share of the oracle's gain a scheme recovers) ----------------------------
def exact_ratio_quantile(num, den, p):
    """The p-quantile of the exact paired-bootstrap distribution of mean(num)/mean(den): all n^n index tuples."""
    n = len(num)
    ratios = np.sort(
        [
            np.mean([num[i] for i in idx]) / np.mean([den[i] for i in idx])
            for idx in itertools.product(range(n), repeat=n)
        ]
    )
    return ratios[min(max(math.ceil(p * len(ratios)) - 1, 0), len(ratios) - 1)]


@pytest.mark.parametrize("level", [0.5, 0.95])
def test_ratio_interval_is_the_exact_paired_bootstrap_distributions_central_interval(level):
    num, den = [0.05, 0.3, 0.1, 0.45, 0.2], [0.5, 0.6, 0.4, 0.8, 0.55]  # every resample has mean(den) > 0
    r, lo, hi = study.bootstrap_ratio_ci(num, den, level=level)
    assert r == pytest.approx(sum(num) / sum(den), abs=1e-15)  # the ratio of the means, not the mean of ratios
    for end, p in ((lo, (1 - level) / 2), (hi, (1 + level) / 2)):
        assert exact_ratio_quantile(num, den, p - 0.01) <= end <= exact_ratio_quantile(num, den, p + 0.01), (end, p)
    assert study.bootstrap_ratio_ci(num, den, level=level) == (r, lo, hi)  # seeded: the report is reproducible


def test_ratio_interval_resamples_the_pairs_together():
    """num = 0.5·den seed by seed, with den spread over seeds: every paired resample has ratio 0.5 exactly, so
    the interval is that point (resampling num and den apart would spread it)."""
    den = [0.2, 0.9, 0.4, 0.6, 0.3, 0.8]
    r, lo, hi = study.bootstrap_ratio_ci([0.5 * d for d in den], den)
    assert r == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_ratio_is_undefined_exactly_when_some_resample_of_the_denominator_reaches_zero():
    """Every 3-value denominator from {−1, 0, 0.5, 1} with a non-zero mean: the ratio is None exactly when one of
    the 27 equally likely resamples (all of them among 10,000 draws) has a mean of 0 or of the other sign, where
    the ratio's interval is unbounded."""
    for den in itertools.product([-1.0, 0.0, 0.5, 1.0], repeat=3):
        if sum(den) == 0:
            continue
        sign = np.sign(sum(den))
        unbounded = any(sign * np.mean([den[i] for i in idx]) <= 0 for idx in itertools.product(range(3), repeat=3))
        assert (study.bootstrap_ratio_ci([1.0, 2.0, 3.0], list(den)) is None) == unbounded, den


def test_ratio_is_undefined_when_a_resample_of_the_denominator_is_zero_or_of_the_other_sign():
    assert study.bootstrap_ratio_ci([0.1, 0.2, 0.1], [0.3, -0.3, 0.1]) is None
    assert study.bootstrap_ratio_ci([0.1, 0.2, 0.1], [-0.3, -0.2, -0.4]) is not None  # below 0 throughout: defined
    assert study.bootstrap_ratio_ci([1.0, 1.0, 1.0], [0.0, 0.0, 1.0]) is None  # the resample (0, 0, 0)
    # (−1, 1, 1, 1, 1): 5.8% of resamples have three or more −1s and a mean ≤ 0, at any level
    for level in (0.5, 0.95):
        assert study.bootstrap_ratio_ci([1.0] * 5, [-1.0, 1.0, 1.0, 1.0, 1.0], level=level) is None


# ---- the paired difference -----------------------------------------------------------------------------------
def runs_of(values):
    """{seed: run dict} as study.collect gives them, with 'final' and 'auc' per seed."""
    return {s: {"final": v, "auc": v / 2} for s, v in values.items()}


def test_paired_difference_is_the_t_interval_of_per_seed_differences_on_common_seeds():
    runs = {
        "dapo": runs_of({1: 0.1, 2: 0.9, 3: 0.5, 4: 0.3}),
        "gcpo": runs_of({2: 0.95, 3: 0.4, 4: 0.6, 5: 0.99}),  # seeds 2, 3, 4 in common
    }
    diff, n = study.paired(runs, "gcpo", "dapo", "final")
    assert n == 3
    # variant − dapo per seed: 0.05, −0.1, 0.3 (positive = better than dapo)
    assert diff[0] == pytest.approx((0.05 - 0.1 + 0.3) / 3, abs=1e-12)
    d = np.array([0.95 - 0.9, 0.4 - 0.5, 0.6 - 0.3])
    half = 4.302652729749464 * d.std(ddof=1) / math.sqrt(3)  # t_{2, 0.975}: a table value
    assert diff == pytest.approx((d.mean(), d.mean() - half, d.mean() + half), abs=1e-9)
    auc, _ = study.paired(runs, "gcpo", "dapo", "auc")
    assert auc[0] == pytest.approx(diff[0] / 2, abs=1e-12)
    assert study.paired({"dapo": runs_of({1: 0.1}), "gcpo": runs_of({2: 0.3})}, "gcpo", "dapo", "final") == (None, 0)
    assert study.paired(runs, "gcpo+oracle", "dapo", "final") == (None, 0)  # a variant without runs
    assert study.paired(runs, "gcpo", "grpo", "final") == (None, 0)  # a reference without runs


def test_paired_difference_removes_what_the_seeds_share():
    """A variant exactly 0.05 above dapo on every seed, with seeds spread from 0 to 0.9: the paired interval is
    the single point 0.05 (an unpaired or misaligned comparison would be as wide as the seeds' spread)."""
    base = {s: 0.1 * s for s in range(10)}
    runs = {"dapo": runs_of(base), "gcpo": runs_of({s: v + 0.05 for s, v in base.items()})}
    (_, lo, hi), _ = study.paired(runs, "gcpo", "dapo", "final")
    assert lo == pytest.approx(0.05, abs=1e-9) and hi == pytest.approx(0.05, abs=1e-9)
    assert study.in_words(lo, hi) == "excludes 0"


def test_oracle_share_by_hand():
    """(variant − dapo) / (oracle − dapo) on the seeds all three have: gains 0.1, 0.2, 0.3 over oracle gains
    0.4, 0.4, 0.4 on seeds 1-3 (seed 4 lacks the oracle) give 0.6 / 1.2 = 0.5."""
    runs = {
        "dapo": runs_of({1: 0.1, 2: 0.2, 3: 0.3, 4: 0.0}),
        "gcpo": runs_of({1: 0.2, 2: 0.4, 3: 0.6, 4: 0.9}),
        "gcpo+oracle": runs_of({1: 0.5, 2: 0.6, 3: 0.7}),
    }
    r, lo, hi = study.oracle_share(runs, "gcpo", "final")
    assert r == pytest.approx(0.5) and lo <= r <= hi
    assert study.oracle_share({k: {1: v[1]} for k, v in runs.items()}, "gcpo", "final") is None  # one seed: no interval
    two = {k: {s: v[s] for s in (1, 2)} for k, v in runs.items()}  # two seeds: defined, (0.1 + 0.2) / (0.4 + 0.4)
    assert study.oracle_share(two, "gcpo", "final")[0] == pytest.approx(0.375)
    for missing in ("gcpo", "dapo", "gcpo+oracle"):
        assert study.oracle_share({k: v for k, v in runs.items() if k != missing}, "gcpo", "final") is None


def test_in_words_by_hand():
    """An interval 'excludes 0' only when it lies strictly on one side; touching 0 includes it."""
    assert [
        study.in_words(lo, hi)
        for lo, hi in ((0.01, 0.2), (-0.3, -0.01), (-0.01, 0.2), (0.0, 0.2), (-0.2, 0.0), (0.5, 0.9), (-0.1, 0.5))
    ] == ["excludes 0", "excludes 0", "includes 0", "includes 0", "includes 0", "excludes 0", "includes 0"]


# ---- the learning-rate selection -------------------------------------------------------------------------------
def test_select_lr_takes_the_best_mean_and_breaks_a_tie_towards_the_smaller_rate():
    for order in itertools.permutations([(5e-4, 0.25), (1e-3, 0.25), (2e-3, 0.1)]):  # any grid order
        assert study.select_lr(dict(order)) == 5e-4
    assert study.select_lr({2e-3: 0.5, 1e-3: 0.4, 5e-4: 0.45}) == 2e-3


def write_tuning(tmp_path, aucs: dict, seeds, variant="dapo", owner="dapo", task="t"):
    """Tuning run files of `owner` on one task, where the study's docstring puts them (runs/tune/<task>/<variant>/
    seed<k>_lr<lr>.json), for a plan that reports `variant`: aucs = {lr: [AUC per tuning seed]}.
    Returns (plan, task, out)."""
    spec = study.TaskSpec("needle", "length=8", lrs=tuple(aucs))
    plan = study.Plan({task: spec}, {variant: study.VARIANTS[variant]}, tuple(seeds), (1,))
    for lr, per_seed in aucs.items():
        for s, auc in zip(seeds, per_seed):
            folder = tmp_path / "runs" / "tune" / task / owner
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"seed{s}_lr{lr:g}.json").write_text(json.dumps({"auc": auc}))
    return plan, task, str(tmp_path)


def test_each_variant_runs_at_its_owners_selected_rate():
    """The controls run at gcpo's rate, a peer scheme at its own, and a sentiment-only variant only on sentiment:
    the owners tuned on a task are exactly those its reported variants name."""
    names = ("dapo", "gcpo", "gcpo+shuffled", "gcpo+oracle", "dapo+entropy_top20", "gcpo+entropy0.02")
    plan = study.Plan({}, {v: study.VARIANTS[v] for v in names}, (101,), (1,))
    assert plan.variants_of("needle-8") == ["dapo", "gcpo", "gcpo+shuffled", "gcpo+oracle", "dapo+entropy_top20"]
    assert plan.variants_of("sentiment") == list(names)
    owners = plan.tuned_of("needle-8")
    assert sorted(owners) == ["dapo", "dapo+entropy_top20", "gcpo"]
    assert owners["gcpo"] == study.VARIANTS["gcpo"] and owners["dapo+entropy_top20"].options == {
        "credit": "entropy_top20"
    }
    own = study.Variant("dapo", (("credit", "my.scheme"),), "dapo+my.scheme")  # a plugged-in scheme tunes as itself
    assert study.Plan({}, {"dapo+my.scheme": own}, (101,), (1,)).tuned_of("copy") == {"dapo+my.scheme": own}


def test_select_lrs_takes_the_highest_mean_auc_over_the_tuning_seeds(tmp_path):
    # 3e-3 has the best first seed and the best single run, 1e-3 the best mean: (0.6 + 0.6) / 2 > (0.9 + 0.1) / 2
    plan, task, out = write_tuning(tmp_path, {3e-4: [0.2, 0.3], 1e-3: [0.6, 0.6], 3e-3: [0.9, 0.1]}, (101, 102))
    sel = study.select_lrs(plan, task, out)
    assert sel["dapo"]["lr"] == 1e-3
    assert sel["dapo"]["mean_auc"] == {"0.0003": 0.25, "0.001": 0.6, "0.003": 0.5}
    assert sel["dapo"]["tune_seeds"] == [101, 102]
    plan, task, out = write_tuning(tmp_path / "b", {1e-3: [0.1234567, 0.1234567]}, (101, 102))
    assert study.select_lrs(plan, task, out)["dapo"]["mean_auc"] == {"0.001": 0.12346}  # 5 decimals in the file


def test_run_files_are_where_the_docstring_says():
    """runs/<phase>/<task>/<variant>/seed<k>.json, tuning runs with their rate, warm starts without a variant."""
    assert study.Job("report", "copy", "gcpo", 3).path("out") == "out/runs/report/copy/gcpo/seed3.json"
    assert study.Job("tune", "copy", "gcpo", 101, 3e-4).path("out") == "out/runs/tune/copy/gcpo/seed101_lr0.0003.json"
    assert study.Job("warm", "copy", "", 3).path("out") == "out/runs/warm/copy/seed3.json"


@pytest.mark.parametrize("grid", [(5e-4, 1e-3, 2e-3), (2e-3, 1e-3, 5e-4), (1e-3, 5e-4, 2e-3)])
def test_select_lrs_breaks_a_tie_towards_the_smaller_rate(tmp_path, grid):
    """5e-4 and 1e-3 tie on mean AUC (0.25 + 0.75 and 0.5 + 0.5, exact in floating point) above 2e-3, in any grid
    order: the smaller rate is chosen (the documented rule; the study's needle-128 grpo once tied like this)."""
    table = {5e-4: [0.25, 0.75], 1e-3: [0.5, 0.5], 2e-3: [0.1, 0.2]}
    plan, task, out = write_tuning(tmp_path, {lr: table[lr] for lr in grid}, (101, 102))
    assert study.select_lrs(plan, task, out)["dapo"]["lr"] == 5e-4


def test_nanmean_keys_by_hand():
    """The first-10 and last-10 step means of a run file: absent, NaN and infinite values are left out of a key's
    mean, 'step' and non-numbers are not keys, and a key with no value at all is absent."""
    history = [
        {"step": 0, "a": 1.0, "b": float("nan"), "c": "text"},
        {"step": 1, "a": 3.0, "b": 2.0},
        {"step": 2, "b": float("inf"), "d": float("nan")},
    ]
    assert study.nanmean_keys(history) == {"a": 2.0, "b": 2.0}
    assert study.nanmean_keys(history, ["b", "z"]) == {"b": 2.0}


# ---- the credit kit's quality statistics (python -m credit_kit quality) --------------------------------------
def test_quality_per_response_matches_pair_counting():
    import torch

    from credit_kit.quality import per_response

    g = torch.Generator().manual_seed(0)
    w = torch.randint(0, 4, (6, 7), generator=g).float()  # ties
    mask = (torch.arange(7)[None] < torch.tensor([7, 5, 3, 1, 0, 6])[:, None]).long()
    key = torch.rand(6, 7, generator=g) < 0.4
    key[0, :2] = torch.tensor([True, False])
    auc, on_key, total = per_response(w, key, mask)
    by_hand = per_response(
        torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0]]),
        torch.tensor([[True, False, False], [True, True, False]]),
        torch.tensor([[1, 1, 0], [1, 1, 0]]),
    )
    assert by_hand[0][0] == 1.0 and math.isnan(by_hand[0][1])  # one key against one other: 1; only key tokens: NaN
    for i in range(6):
        kw = [w[i, t].item() for t in range(7) if mask[i, t] and key[i, t]]
        ow = [w[i, t].item() for t in range(7) if mask[i, t] and not key[i, t]]
        if kw and ow:
            want = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in kw for b in ow) / (len(kw) * len(ow))
            assert auc[i] == pytest.approx(want, abs=1e-12)
        else:
            assert math.isnan(auc[i])
        assert on_key[i] == pytest.approx(sum(kw)) and total[i] == pytest.approx(sum(kw) + sum(ow))


def test_quality_bootstrap_resamples_whole_prompts_and_matches_the_exact_distribution():
    """6 prompts of G = 2 responses: the share's interval against the exact distribution over all 6^6 prompt
    resamples (20,000 draws: one percentile point is ~9 standard errors); the AUC's estimate is the mean over the
    responses that have one (NaN left out); the defaults are 1,000 draws from seed 0."""
    from credit_kit.quality import bootstrap

    auc = np.array([0.5, np.nan, 1.0, 0.75, 0.25, 0.0, 1.0, 1.0, 0.6, 0.9, 0.3, np.nan])
    on_key = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 0.0, 3.0, 1.0, 0.7, 0.2, 1.3, 0.4])
    total = np.array([2.0, 1.0, 2.0, 4.0, 3.0, 2.0, 4.0, 2.0, 1.5, 2.5, 3.5, 1.0])
    out = bootstrap(auc, on_key, total, G=2, boots=20_000)
    assert out["auc"][0] == pytest.approx(np.nanmean(auc)) and out["share"][0] == pytest.approx(11.1 / 28.5)
    idx = np.array(list(itertools.product(range(6), repeat=6)))  # (46656, 6): every resample, equally likely
    per_prompt_key, per_prompt_total = on_key.reshape(6, 2).sum(1), total.reshape(6, 2).sum(1)
    shares = np.sort(per_prompt_key[idx].sum(1) / per_prompt_total[idx].sum(1))
    q = lambda p: shares[min(max(math.ceil(p * len(shares)) - 1, 0), len(shares) - 1)]
    _, lo, hi = out["share"]
    assert q(0.025 - 0.004) <= lo <= q(0.025 + 0.004) and q(0.975 - 0.004) <= hi <= q(0.975 + 0.004)
    default = bootstrap(auc, on_key, total, G=2)
    assert default == bootstrap(auc, on_key, total, G=2, boots=1000, seed=0) == bootstrap(auc, on_key, total, G=2)
    small = bootstrap(auc, on_key / 100, total / 100, G=2)  # weights summing to less than 1: the same share
    assert small["share"] == pytest.approx(default["share"])
    none = bootstrap(np.full(12, np.nan), on_key, total, G=2)  # no response has both kinds of token
    assert all(math.isnan(x) for x in none["auc"]) and none["share"] == pytest.approx(default["share"])


def test_quality_bootstrap_keeps_a_prompts_responses_together():
    """Each prompt's two responses put all and none of their weight on key tokens: every prompt's share is 1/2,
    so every resample of whole prompts gives 1/2 (resampling responses apart would spread it)."""
    from credit_kit.quality import bootstrap

    n = 6
    out = bootstrap(np.full(2 * n, 0.5), np.tile([1.0, 0.0], n), np.ones(2 * n), G=2)
    assert out["share"] == pytest.approx((0.5, 0.5, 0.5))


def test_select_lrs_tunes_the_owner_of_a_task_only_variant(tmp_path):
    """--variants gcpo+entropy0.02 (sentiment only, at gcpo's rate): gcpo is tuned and selected on sentiment."""
    plan, task, out = write_tuning(
        tmp_path, {1e-4: [0.1], 3e-4: [0.3]}, (101,), "gcpo+entropy0.02", "gcpo", "sentiment"
    )
    assert study.select_lrs(plan, task, out)["gcpo"]["lr"] == 3e-4
