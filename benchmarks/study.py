"""Does contrastive token credit help more as the key token gets sparser? A seeded study of GCPO against uniform
credit, its own controls and the other token-credit schemes.

    python benchmarks/study.py --workers 2            # the whole study into results/ (resumes; see --help)
    python benchmarks/study.py --tasks needle-32 --variants gcpo,dapo --seeds 1-3    # one corner of it
    python benchmarks/study.py --variants my_credit.py:weights --tasks needle-8      # your scheme beside it
    python benchmarks/study.py --report-only          # rebuild results/report.md from the run files
    python benchmarks/study.py --quick                # a tiny grid into results_quick/, about two minutes

Design
- Tasks: needle with response length L = 8, 16, 32 and 64 (the credit-difficulty axis: one key token among L),
  copy, gridpaint, chainsum, and the two text tasks topic and sentiment (tiny model, word tokenizer). On the
  axis the key token is the first response token (position=0), so the copy it needs is the same at every L and
  only the number of filler tokens sharing the reward grows. At the task's default position L // 2 the warm start
  learns no copy from L = 16 on (the key token's distribution is then the same for every prompt symbol), and no
  scheme, the oracle included, can move a policy off that saddle: `python benchmarks/warm_copy.py` measures it.
- Variants: the base algorithms grpo, dr_grpo, dapo and gcpo; gcpo's controls gcpo+shuffled (its weights permuted
  within each response: the same weight law and step sizes, no information about which token mattered) and
  gcpo+oracle (the same weight law on the task's true key tokens), and gcpo+full_kl (the paper's exact KL over
  the vocabulary), all three at gcpo's selected learning rate; and the peer token-credit schemes, each on the dapo
  preset with its own learning rate: dapo+entropy_top20 (the top-20% entropy mask, arXiv 2506.01939),
  dapo+gtpo_entropy (entropy-proportional weights, GTPO, arXiv 2508.04349) and dapo+vppo_top40 (VPPO's top-40%
  contrast mask, arXiv 2510.09285). Any credit scheme (a built-in name, module:function or path/file.py:function)
  given to --variants joins as dapo+<name> the same way. Not run by default: pcpo and gcpo+log_hinge (with one
  optimizer step per rollout they are dapo and gcpo up to rounding: PCPO_NOTE below) and the sentiment-only
  instability variants gcpo+entropy0.02, gcpo+entropy0.16 and gcpo+rollout_w (left out to fit the budget;
  --variants runs them).
- Fairness: each base algorithm and each scheme picks its learning rate per task from the task's grid (three
  rates, four on needle; the same grid for every variant on a task) by the mean area under its eval learning
  curve over the TUNING seeds 101 and 102 (ties: the smaller rate), which are never reported; every variant then
  runs on the REPORTING seeds 1..10. Every run on a (task, seed) starts from the same cached warm-started model,
  with the same eval prompts.
- Budget: per task, the same steps, batch (prompts x group size), evaluation schedule, warm-start length and
  learning-rate grid for every variant (the TASKS table). The needle budgets are sized so that gcpo+oracle (perfect
  credit) lifts the mean final eval reward at least 0.4 above the warm start; the report says at which lengths it
  does. The other tasks get budgets in which at least the best variant learns.
- Statistics (report.md): per (task, variant) the final eval reward and the area under the eval learning curve
  (AUC: the trapezoid area under (steps done, eval reward) divided by the steps, i.e. the curve's mean), each as a
  mean over the reporting seeds with a 95% Student-t interval, and the paired difference to dapo on the same
  seeds (the mean of the per-seed differences) with its 95% t interval. The t interval is exact for normal data;
  at 10 seeds a percentile bootstrap covers only about 91% where it says 95%. Per needle length, the share of the
  oracle's gain a scheme recovers, (scheme − dapo)/(oracle − dapo), with a paired percentile-bootstrap interval
  (10,000 resamples, fixed seed; a ratio has no t interval).

Outputs under --out: runs/<phase>/<task>/<variant>/seed<k>.json (one per run, written atomically, with the budget
it ran under: an interrupted study resumes and skips every run whose file matches), lr_selection.json, study.json
(the invocations, wall time, the cells the last invocation computed), report.md; cache/ holds the warm-started
models (not results; safe to delete: a run that needs one rebuilds it). `benchmarks/plots.py` draws the figures
from these files alone.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: one thread per worker process

import argparse
import dataclasses
import functools
import json
import math
import multiprocessing as mp
import queue
import shlex
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TUNE_SEEDS = (101, 102)
REPORT_SEEDS = tuple(range(1, 11))
BOOTSTRAP_SEED, BOOTSTRAP_RESAMPLES = 0, 10_000
HARDWARE = "2-core x86 CPU"
ORACLE_MARGIN = 0.4  # a needle budget is long enough when gcpo+oracle's mean final reward ≥ warm start + this

SYMBOLIC_LRS = (3e-4, 1e-3, 3e-3)
NEEDLE_LRS = (5e-4, 1e-3, 2e-3, 4e-3)  # dapo's best rate on needle-8 is 2e-3: the grid reaches past it
TEXT_LRS = (1e-4, 3e-4, 1e-3)  # the README's sentiment runs: unstable at 1e-3, level at 1e-4


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of the study and its budget, the same for every variant on it."""

    env: str
    task_args: str = ""
    steps: int = 60
    batch_prompts: int = 8
    group_size: int = 8
    eval_every: int = 10
    eval_prompts: int = 128
    warm_steps: int = 1200
    lrs: tuple = SYMBOLIC_LRS

    def budget(self) -> dict:
        """What a run file records and a resumed study compares: the task and its budget (not the lr grid)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "lrs"}


TASKS = {
    "needle-8": TaskSpec("needle", "length=8,position=0", steps=100, lrs=NEEDLE_LRS),
    "needle-16": TaskSpec("needle", "length=16,position=0", steps=100, lrs=NEEDLE_LRS),
    "needle-32": TaskSpec("needle", "length=32,position=0", steps=100, lrs=NEEDLE_LRS),
    "needle-64": TaskSpec("needle", "length=64,position=0", steps=100, lrs=NEEDLE_LRS),
    "copy": TaskSpec("copy", steps=80, warm_steps=600),
    "gridpaint": TaskSpec("gridpaint", steps=60, warm_steps=600),
    # chainsum's warm start passes a threshold between 1500 and 2200 steps (seed 101: eval reward 0.13 at 1500, where
    # no variant learns in 100 RL steps, the answer being a 1-in-10 guess; 0.44 at 2200, from where both dapo and the
    # oracle reach 0.95 in 70 steps)
    "chainsum": TaskSpec("chainsum", steps=100, warm_steps=2400),
    "topic": TaskSpec("topic", steps=40, eval_every=8, warm_steps=600, lrs=TEXT_LRS),
    "sentiment": TaskSpec("sentiment", steps=40, eval_every=8, warm_steps=600, lrs=TEXT_LRS),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """A reported configuration: a preset, the options it overrides, whose selected learning rate it runs at
    (its own name for a tuned variant) and the tasks it runs on (None: all)."""

    preset: str
    overrides: tuple = ()  # ((option, value), ...)
    lr_from: str = ""
    tasks: tuple | None = None

    @property
    def options(self) -> dict:
        return dict(self.overrides)


# PCPO_NOTE: pcpo and gcpo+log_hinge are not run by default. With one optimizer step per rollout (every task here),
# the update sees ρ = 1 up to rounding, where PPO-clip's gradient −Aρ∇log π and the log-hinge's −A∇log π are the
# same, and the dual clip never acts: pcpo is dapo and gcpo+log_hinge is gcpo, up to float rounding. The surrogates
# differ only when the policy moves within a rollout (--minibatches or --epochs > 1), which this study does not cover.
VARIANTS = {
    "dapo": Variant("dapo", (), "dapo"),
    "gcpo": Variant("gcpo", (), "gcpo"),
    "gcpo+shuffled": Variant("gcpo", (("credit", "shuffled"),), "gcpo"),
    "gcpo+oracle": Variant("gcpo", (("credit", "oracle"),), "gcpo"),
    "dapo+entropy_top20": Variant("dapo", (("credit", "entropy_top20"),), "dapo+entropy_top20"),
    "dapo+gtpo_entropy": Variant("dapo", (("credit", "gtpo_entropy"),), "dapo+gtpo_entropy"),
    "dapo+vppo_top40": Variant("dapo", (("credit", "vppo_top40"),), "dapo+vppo_top40"),
    "grpo": Variant("grpo", (), "grpo"),
    "dr_grpo": Variant("dr_grpo", (), "dr_grpo"),
    "gcpo+full_kl": Variant("gcpo", (("divergence", "full_kl"),), "gcpo"),
    "pcpo": Variant("pcpo", (), "pcpo"),
    "gcpo+log_hinge": Variant("gcpo", (("surrogate", "log_hinge"), ("dual_clip", 0.0)), "pcpo"),
    "gcpo+entropy0.02": Variant("gcpo", (("entropy_penalty", 0.02),), "gcpo", ("sentiment",)),
    "gcpo+entropy0.16": Variant("gcpo", (("entropy_penalty", 0.16),), "gcpo", ("sentiment",)),
    "gcpo+rollout_w": Variant("gcpo", (("weights_from", "rollout"),), "gcpo", ("sentiment",)),
}
DEFAULT_VARIANTS = (
    "dapo",
    "gcpo",
    "gcpo+shuffled",
    "gcpo+oracle",
    "dapo+entropy_top20",
    "dapo+gtpo_entropy",
    "dapo+vppo_top40",
    "grpo",
    "dr_grpo",
    "gcpo+full_kl",
)
PEERS = ("dapo+entropy_top20", "dapo+gtpo_entropy", "dapo+vppo_top40")
AXIS = ("gcpo", "gcpo+shuffled", "gcpo+oracle", *PEERS)  # compared with dapo along the needle axis

# --quick: a tiny grid that exercises every phase, both task families, a peer scheme and a sentiment-only variant
QUICK_TASKS = {
    "needle-8": TaskSpec(
        "needle",
        "length=8",
        steps=4,
        batch_prompts=4,
        group_size=4,
        eval_every=2,
        eval_prompts=16,
        warm_steps=20,
        lrs=(1e-3, 3e-3),
    ),
    "sentiment": TaskSpec(
        "sentiment",
        steps=4,
        batch_prompts=4,
        group_size=4,
        eval_every=2,
        eval_prompts=16,
        warm_steps=20,
        lrs=(3e-4, 1e-3),
    ),
}
QUICK_VARIANTS = ("dapo", "gcpo", "gcpo+shuffled", "gcpo+oracle", "dapo+entropy_top20", "gcpo+entropy0.02")
QUICK_TUNE_SEEDS, QUICK_REPORT_SEEDS = (101, 102), (1, 2)

# per-step metrics kept as whole curves in each run file (the rest only as first/last-10-step means)
CURVE_KEYS = ("reward_mean", "entropy", "key_weight_auc", "key_weight_share", "key_token_frac")
SENTIMENT_CURVE_KEYS = (
    "weight_max",
    "weight_std",
    "logp_move_high_w",
    "logp_move_low_w",
    "neglogp_high_w",
    "neglogp_low_w",
    "response_len",
    "zero_std_frac",
    "grad_norm",
    "clipfrac_low",
    "clipfrac_high",
)


# ---------------------------------------------------------------------------------------------------------
# statistics: small pure functions


def curve_auc(evals) -> float:
    """Area under the eval learning curve per step: (1/S)·Σ_k (s_{k+1} − s_k)(r_k + r_{k+1})/2 over the
    (steps done s_k, eval reward r_k) points, S = the last s. The curve's mean height; a flat curve at r gives r."""
    s = np.array([e[0] for e in evals], dtype=float)
    r = np.array([e[1] for e in evals], dtype=float)
    if len(s) < 2 or s[-1] <= s[0]:
        return float(r[-1])
    return float(np.sum(np.diff(s) * (r[1:] + r[:-1]) / 2) / (s[-1] - s[0]))


@functools.cache  # the report asks for the same few (p, df) hundreds of times
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (0.5 ≤ p < 1) of Student's t with df degrees of freedom: the t > 0 where
    F(t) = ½ + ∫_0^t c·(1 + u²/df)^(−(df+1)/2) du = p, c = Γ((df+1)/2) / (√(df·π)·Γ(df/2)); the integral by
    Simpson's rule (4,000 panels; error below 1e-9 for the levels reported), t by bisection."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t):
        u = np.linspace(0.0, t, 4001)
        f = c * (1 + u * u / df) ** (-(df + 1) / 2)
        return 0.5 + (u[1] - u[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def t_mean_ci(x, level=0.95):
    """Mean of x (n,) and its Student-t interval mean ± t_{n−1, (1+level)/2}·s/√n (s: the sample standard
    deviation, divisor n − 1). Exact for normal data at any n, where the percentile bootstrap covers less than it
    says at n = 10 (about 0.91 for a 95% interval). Returns (mean, lo, hi); (x, x, x) for one value."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = t_quantile((1 + level) / 2, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def bootstrap_mean_ci(x, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """Mean of x (n,) and its percentile-bootstrap interval: resample n values with replacement `resamples`
    times, take the (1−level)/2 and (1+level)/2 quantiles of the resampled means. Returns (mean, lo, hi)."""
    x = np.asarray(x, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def bootstrap_ratio_ci(num, den, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """The ratio of means mean(num)/mean(den) of paired samples num, den (n,) (here: a scheme's and the oracle's
    per-seed gains over dapo) and its percentile-bootstrap interval, resampling the n pairs together. Returns
    (ratio, lo, hi), or None when some resample's mean(den) is 0 or of the other sign than mean(den) (the ratio's
    interval is then unbounded)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(num), size=(resamples, len(num)))
    den_means = den[idx].mean(1)
    if not (np.all(den_means > 0) or np.all(den_means < 0)):
        return None
    ratios = num[idx].mean(1) / den_means
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(num.mean() / den.mean()), float(lo), float(hi)


def in_words(lo: float, hi: float) -> str:
    """'excludes 0' when the interval [lo, hi] lies strictly on one side of zero, else 'includes 0'."""
    return "excludes 0" if lo > 0 or hi < 0 else "includes 0"


def nanmean_keys(history, keys=None) -> dict:
    """Per-key mean over a list of per-step metric dicts, ignoring steps where the key is absent or NaN."""
    keys = keys or sorted({k for h in history for k, v in h.items() if isinstance(v, (int, float))} - {"step"})
    out = {}
    for k in keys:
        vals = [h[k] for h in history if isinstance(h.get(k), (int, float)) and np.isfinite(h[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def select_lr(mean_auc: dict) -> float:
    """The learning rate with the highest mean tuning AUC; among equal means, the smaller rate.
    mean_auc: {lr: mean AUC over the tuning seeds}."""
    return max(mean_auc, key=lambda lr: (mean_auc[lr], -lr))


# ---------------------------------------------------------------------------------------------------------
# what to run: tasks, variants (built-in or a credit scheme), seeds


def parse_seeds(text: str, flag: str) -> tuple:
    """'1-10' or '1,2,5' or '1-3,7' → (1, 2, 3, 7): ascending, without repeats; a one-line error otherwise."""
    seeds = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{flag} {text!r}: {part!r} is not a seed or a range like 1-10") from None
        if a < 0 or b < a:
            raise ValueError(f"{flag} {text!r}: {part!r} is not a range of non-negative seeds like 1-10")
        seeds.update(range(a, b + 1))
    if not seeds:
        raise ValueError(f"{flag} {text!r}: give at least one seed, e.g. 1-10")
    return tuple(sorted(seeds))


def scheme_variant(spec: str) -> tuple[str, Variant]:
    """A credit scheme as a study variant: the dapo preset with credit=spec, tuned on its own. Its name is
    dapo+<scheme name> (module:function → dapo+module.function; path/file.py:function → dapo+file.function).
    The scheme is loaded here, so that a bad spec fails before anything runs, with a one-line error."""
    from gcpo_support import schemes
    from gcpo_support.loading import load_object

    if spec in schemes.PEERS:
        name = spec
    else:
        fn = load_object(spec, "credit scheme")
        if not callable(fn):
            raise ValueError(f"credit scheme {spec!r} is not a function")
        target, _, attr = spec.rpartition(":")
        name = f"{os.path.splitext(os.path.basename(target))[0] if target.endswith('.py') else target}.{attr}"
    return f"dapo+{name}", Variant("dapo", (("credit", spec),), f"dapo+{name}")


def resolve_variants(names) -> dict:
    """Variant names or credit schemes → {name: Variant}, in the order given."""
    out = {}
    for n in names:
        if n in VARIANTS:
            out[n] = VARIANTS[n]
        elif n in {"uniform", "contrast", "shuffled", "oracle"}:
            raise ValueError(f"--variants {n!r} is GCPO's own credit; use dapo, gcpo, gcpo+shuffled or gcpo+oracle")
        elif ":" in n or _is_peer(n):
            name, v = scheme_variant(n)
            out[name] = v
        else:
            raise ValueError(
                f"--variants {n!r}: not a variant ({', '.join(VARIANTS)}) nor a credit scheme "
                "(entropy_top20, gtpo_entropy, vppo_top40, module:function or path/file.py:function)"
            )
    return out


def _is_peer(name: str) -> bool:
    from gcpo_support import schemes

    return name in schemes.PEERS


@dataclasses.dataclass(frozen=True)
class Job:
    phase: str  # "warm" | "tune" | "report"
    task: str
    variant: str  # "" for warm starts
    seed: int
    lr: float = 0.0  # tuning runs only; reporting runs take the selected rate at dispatch

    def path(self, out: str) -> str:
        if self.phase == "warm":
            return os.path.join(out, "runs", "warm", self.task, f"seed{self.seed}.json")
        name = f"seed{self.seed}_lr{self.lr:g}.json" if self.phase == "tune" else f"seed{self.seed}.json"
        return os.path.join(out, "runs", self.phase, self.task, self.variant, name)


@dataclasses.dataclass
class Plan:
    tasks: dict  # {name: TaskSpec}
    variants: dict  # {name: Variant}
    tune_seeds: tuple
    report_seeds: tuple

    def variants_of(self, task: str) -> list[str]:
        return [v for v, spec in self.variants.items() if spec.tasks is None or task in spec.tasks]

    def tuned_of(self, task: str) -> dict:
        """{lr owner: the Variant it tunes}: each variant reported on `task` needs its lr owner tuned; an owner
        tunes as the variant of that name (pcpo, a scheme) or its preset without overrides (gcpo for its controls)."""
        owners = {}
        for v in self.variants_of(task):
            owner = self.variants[v].lr_from
            owners.setdefault(owner, VARIANTS.get(owner) or self.variants.get(owner) or Variant(owner, (), owner))
        return owners

    def jobs(self) -> list[Job]:
        out = []
        for t, spec in self.tasks.items():
            out += [Job("warm", t, "", s) for s in (*self.tune_seeds, *self.report_seeds)]
            out += [Job("tune", t, a, s, lr) for a in self.tuned_of(t) for lr in spec.lrs for s in self.tune_seeds]
            out += [Job("report", t, v, s) for v in self.variants_of(t) for s in self.report_seeds]
        return out

    def variant(self, job: Job) -> Variant:
        return self.tuned_of(job.task)[job.variant] if job.phase == "tune" else self.variants[job.variant]


def make_plan(quick=False, tasks=None, variants=None, seeds=None, tune_seeds=None) -> Plan:
    """The full study (or --quick's tiny grid), narrowed to the given task names, variants and seeds."""
    all_tasks = QUICK_TASKS if quick else TASKS
    if tasks:
        unknown = [t for t in tasks if t not in all_tasks]
        if unknown:
            raise ValueError(f"--tasks {','.join(unknown)}: unknown; choose from {', '.join(all_tasks)}")
    chosen = resolve_variants(variants or (QUICK_VARIANTS if quick else DEFAULT_VARIANTS))
    return Plan(
        {t: s for t, s in all_tasks.items() if not tasks or t in tasks},
        chosen,
        tuple(tune_seeds or (QUICK_TUNE_SEEDS if quick else TUNE_SEEDS)),
        tuple(seeds or (QUICK_REPORT_SEEDS if quick else REPORT_SEEDS)),
    )


# ---------------------------------------------------------------------------------------------------------
# one run (in a worker process)


def write_json(path: str, obj) -> None:
    """Write atomically: a temporary file in the same folder, then rename over the target."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def load_json(path: str):
    with open(path) as f:
        return json.load(f)


def warm_dir(out: str, task: str, seed: int) -> str:
    return os.path.join(out, "cache", task, f"seed{seed}")


def rounded(x, digits=5):
    return None if x is None or not np.isfinite(x) else float(f"{x:.{digits}g}")


def run_job(job: Job, spec: TaskSpec, variant: Variant | None, out: str, lr: float) -> dict:
    """Run one job, write its JSON file, return the file's content."""
    import torch

    import gcpo

    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    common = dict(
        env=spec.env, task_args=spec.task_args, seed=job.seed, device="cpu", eval_prompts=spec.eval_prompts, show=0
    )
    if job.phase == "warm":
        final = warm_dir(out, job.task, job.seed)
        tmp = f"{final}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        r = gcpo.train(gcpo.make_config("gcpo", steps=0, out=tmp, warm_steps=spec.warm_steps, **common), progress=False)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        res = {
            "phase": "warm",
            "task": job.task,
            "seed": job.seed,
            "budget": spec.budget(),
            "warm_steps": spec.warm_steps,
            "warm_loss": rounded(r["warm_loss"]),
            "reward_before": r["reward_before"],
        }
    else:
        options = variant.options
        credit = {**gcpo.PRESETS[variant.preset], **options}.get("credit")
        cfg = gcpo.make_config(
            variant.preset,
            steps=spec.steps,
            model=os.path.join(warm_dir(out, job.task, job.seed), "model"),
            warm_steps=0,
            lr=lr,
            batch_prompts=spec.batch_prompts,
            group_size=spec.group_size,
            eval_every=spec.eval_every,
            log_token_moves=spec.env == "sentiment" and credit != "uniform",
            **common,
            **options,
        )
        r = gcpo.train(cfg, progress=False)
        hist = r["history"]
        keys = CURVE_KEYS + (SENTIMENT_CURVE_KEYS if spec.env == "sentiment" else ())
        curves = {k: [rounded(h.get(k, float("nan"))) for h in hist] for k in keys if any(k in h for h in hist)}
        config = dataclasses.asdict(r["cfg"])
        config["model"] = os.path.relpath(config["model"], out)  # the cache, relative to --out
        res = {
            "phase": job.phase,
            "task": job.task,
            "variant": job.variant,
            "algo": variant.preset,
            "overrides": options,
            "seed": job.seed,
            "lr": lr,
            "budget": spec.budget(),
            "evals": [[int(s), float(v)] for s, v in r["evals"]],
            "reward_before": r["reward_before"],
            "final": r["reward_after"],
            "auc": curve_auc(r["evals"]),
            "first10": {k: rounded(v) for k, v in nanmean_keys(hist[:10]).items()},
            "last10": {k: rounded(v) for k, v in nanmean_keys(hist[-10:]).items()},
            "curves": curves,
            "config": config,
        }
    res["seconds"], res["cpu_seconds"] = round(time.time() - t0, 3), round(time.process_time() - c0, 3)
    write_json(job.path(out), res)
    return res


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _worker(args):
    job, spec, variant, out, lr = args
    try:
        return job, run_job(job, spec, variant, out, lr), None
    except Exception as e:  # reported by the parent; the job's file is not written, so a rerun retries it
        return job, None, f"{type(e).__name__}: {' '.join(str(e).split())}"


# ---------------------------------------------------------------------------------------------------------
# scheduling: warm starts before the runs that need them, a task's tuning before its reporting runs


def matches(job: Job, plan: Plan, out: str, selection: dict) -> bool:
    """Is the job's file on disk, run under the same budget (and, for a reporting run, the same options and the
    learning rate selected now)? A warm start also needs its cached model."""
    path = job.path(out)
    if not os.path.exists(path):
        return False
    r = load_json(path)
    if r.get("budget") != plan.tasks[job.task].budget():
        return False
    if job.phase == "warm":
        return os.path.isdir(os.path.join(warm_dir(out, job.task, job.seed), "model"))
    v = plan.variant(job)
    if r.get("algo") != v.preset or r.get("overrides") != v.options:
        return False
    if job.phase == "report":
        return r.get("lr") == selection.get(job.task, {}).get(v.lr_from, {}).get("lr")
    return True


def select_lrs(plan: Plan, task: str, out: str, owners=None) -> dict:
    """For each tuned owner on `task` (or those given): select_lr over the grid's mean AUC across the tuning seeds.
    Returns {owner: {"lr": chosen, "mean_auc": {lr: mean AUC}, "tune_seeds": [...]}}."""
    spec, sel = plan.tasks[task], {}
    for owner in owners or plan.tuned_of(task):
        mean_auc = {
            lr: float(np.mean([load_json(Job("tune", task, owner, s, lr).path(out))["auc"] for s in plan.tune_seeds]))
            for lr in spec.lrs
        }
        sel[owner] = {
            "lr": select_lr(mean_auc),
            "mean_auc": {f"{lr:g}": round(a, 5) for lr, a in mean_auc.items()},
            "tune_seeds": list(plan.tune_seeds),
        }
    return sel


def run_study(plan: Plan, out: str, workers: int, desc: str = "study runs") -> dict:
    """Run every job of the plan whose file is not on disk with a matching budget: warm starts first, then the
    tuning runs, and a variant's reporting runs as soon as the owner of its learning rate is tuned. Returns
    {"failed": [(job, error)], "wall": seconds, "ran": [jobs run]}."""
    from tqdm import tqdm

    jobs = plan.jobs()
    sel_path = os.path.join(out, "lr_selection.json")
    done = {j for j in jobs if j.phase != "report" and matches(j, plan, out, {})}
    selection = {}  # {task: {owner: ...}}: selected in this invocation from the tuning files

    def owner(j):
        return plan.variant(j).lr_from

    def tuned(task, who):
        return all(j in done for j in jobs if j.task == task and j.phase == "tune" and j.variant == who)

    def select(task, who):
        selection.setdefault(task, {}).update(select_lrs(plan, task, out, [who]))
        # re-read before each write: another invocation on other tasks of the same folder may have added its own
        saved = load_json(sel_path) if os.path.exists(sel_path) else {}
        saved.setdefault(task, {}).update(selection[task])
        write_json(sel_path, saved)

    for t in plan.tasks:
        for who in plan.tuned_of(t):
            if tuned(t, who):
                select(t, who)
    done |= {
        j
        for j in jobs
        if j.phase == "report" and owner(j) in selection.get(j.task, {}) and matches(j, plan, out, selection)
    }

    # task by task: the tuning seeds' warm starts, the tuning runs, then seed by seed a reporting seed's warm start
    # and its runs (so that a study stopped early has whole seeds, every variant on each)
    task_rank = {t: i for i, t in enumerate(plan.tasks)}
    stage = {"warm": 0, "tune": 1, "report": 2}
    pending = sorted(
        (j for j in jobs if j not in done),
        key=lambda j: (
            task_rank[j.task],
            2 if j.phase == "warm" and j.seed not in plan.tune_seeds else stage[j.phase],
            j.seed,
            j.variant,
        ),
    )

    def ready(j):
        if j.phase == "warm":
            return True
        warm_ok = Job("warm", j.task, "", j.seed) in done
        return warm_ok and (j.phase == "tune" or owner(j) in selection.get(j.task, {}))

    failed, results, start, ran = [], queue.Queue(), time.time(), []
    bar = tqdm(total=len(jobs), initial=len(done), desc=desc, unit="run", dynamic_ncols=True)
    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init) if workers > 1 and pending else None
    in_flight, interrupted = 0, False
    try:
        while pending or in_flight:
            while in_flight < workers:
                j = next((j for j in pending if ready(j)), None)
                if j is None:
                    break
                pending.remove(j)
                v = None if j.phase == "warm" else plan.variant(j)
                lr = j.lr if j.phase != "report" else selection[j.task][v.lr_from]["lr"]
                args = (j, plan.tasks[j.task], v, out, lr)
                if pool is None:
                    results.put(_worker(args))
                else:
                    pool.apply_async(_worker, (args,), callback=results.put)
                in_flight += 1
            if not in_flight:  # what is left waits on a failed job
                failed += [(j, "skipped: a job it needs failed") for j in pending]
                break
            job, res, err = results.get()
            in_flight -= 1
            bar.update(1)
            if err:
                failed.append((job, err))
                tqdm.write(f"FAILED {job.phase} {job.task} {job.variant} seed {job.seed}: {err}")
                continue
            done.add(job)
            ran.append(job)
            if job.phase == "tune" and tuned(job.task, job.variant):
                select(job.task, job.variant)
                tqdm.write(f"{job.task}: selected lr {selection[job.task][job.variant]['lr']:g} for {job.variant}")
                # its reporting runs already on disk at the rate selected now (a rerun tuning file kept the rate)
                kept = [j for j in pending if j.phase == "report" and matches(j, plan, out, selection)]
                done.update(kept)
                pending = [j for j in pending if j not in kept]
                bar.update(len(kept))
    except KeyboardInterrupt:  # stopped: what finished is on disk, and the invocation is still recorded
        interrupted = True
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return {"failed": failed, "wall": time.time() - start, "ran": ran, "interrupted": interrupted}


# ---------------------------------------------------------------------------------------------------------
# report: from the run files alone


def collect(out: str, phase: str = "report") -> dict:
    """{task: {variant: {seed: run dict}}} from the run files of one phase (tuning files: {seed_lr: run})."""
    rows = {}
    base = os.path.join(out, "runs", phase)
    for task in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for variant in sorted(os.listdir(os.path.join(base, task))):
            for name in sorted(os.listdir(os.path.join(base, task, variant))):
                if name.endswith(".json"):
                    r = load_json(os.path.join(base, task, variant, name))
                    key = r["seed"] if phase == "report" else (r["seed"], r["lr"])
                    rows.setdefault(task, {}).setdefault(variant, {})[key] = r
    return rows


def all_run_files(out: str) -> list[dict]:
    found = []
    for dirpath, _, names in sorted(os.walk(os.path.join(out, "runs"))):
        found += [load_json(os.path.join(dirpath, n)) for n in sorted(names) if n.endswith(".json")]
    return found


def task_order(tasks) -> list:
    """The study's tasks in TASKS order (needle by length), then any others by name."""
    known = list(TASKS) + list(QUICK_TASKS)
    return sorted(tasks, key=lambda t: (known.index(t) if t in known else len(known), t))


def variant_order(variants) -> list:
    known = list(DEFAULT_VARIANTS) + list(VARIANTS)
    return sorted(variants, key=lambda v: (known.index(v) if v in known else len(known), v))


def selections_from_files(out: str) -> dict:
    """{task: {owner: {"lr", "mean_auc", "seeds"}}} re-derived from the tuning files with select_lr, so that the
    report never depends on a file other than the runs."""
    sel = {}
    for task, owners in collect(out, "tune").items():
        for owner, runs in owners.items():
            by_lr = {}
            for (seed, lr), r in runs.items():
                by_lr.setdefault(lr, {})[seed] = r["auc"]
            seeds = sorted(set.intersection(*(set(s) for s in by_lr.values())))
            mean_auc = {lr: float(np.mean([a[s] for s in seeds])) for lr, a in by_lr.items()}
            sel.setdefault(task, {})[owner] = {"lr": select_lr(mean_auc), "mean_auc": mean_auc, "seeds": seeds}
    return sel


def fmt_ci(m, lo, hi) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def paired(runs: dict, variant: str, ref: str, metric: str):
    """(mean, lo, hi) of variant − ref on the seeds both have, and that number of seeds; None if none."""
    a, b = runs.get(variant, {}), runs.get(ref, {})
    common = sorted(set(a) & set(b))
    if not common:
        return None, 0
    return t_mean_ci([a[s][metric] - b[s][metric] for s in common]), len(common)


def oracle_share(runs: dict, variant: str, metric: str):
    """(variant − dapo)/(gcpo+oracle − dapo) on the seeds all three have, with its paired interval (or None)."""
    common = sorted(set(runs.get(variant, {})) & set(runs.get("dapo", {})) & set(runs.get("gcpo+oracle", {})))
    if len(common) < 2:
        return None
    d = runs["dapo"]
    return bootstrap_ratio_ci(
        [runs[variant][s][metric] - d[s][metric] for s in common],
        [runs["gcpo+oracle"][s][metric] - d[s][metric] for s in common],
    )


def cell_mark(cells: set, task: str, variant: str) -> str:
    return " †" if f"{task}/{variant}" in cells else ""


def write_report(out: str) -> str:
    """report.md from the run files (and study.json for the wall time and the last invocation), all under out."""
    meta_path = os.path.join(out, "study.json")
    meta = load_json(meta_path) if os.path.exists(meta_path) else {}
    runs, files, selection = collect(out, "report"), all_run_files(out), selections_from_files(out)
    recent = set(meta.get("last_invocation", {}).get("cells", []))
    cpu_h = sum(r.get("cpu_seconds", 0.0) for r in files) / 3600
    busy_h = sum(r.get("seconds", 0.0) for r in files) / 3600
    tasks = task_order(runs)
    budgets = {t: next(iter(next(iter(runs[t].values())).values()))["budget"] for t in tasks}
    tune_seeds = sorted({s for t in selection.values() for o in t.values() for s in o["seeds"]})
    report_seeds = sorted({s for t in runs.values() for v in t.values() for s in v})
    invocations = meta.get("invocations", [])
    lines = [
        "# GCPO study: results",
        "",
        "Rebuilt from the run files under runs/ by `python benchmarks/study.py --report-only`; figures: "
        "`python benchmarks/plots.py`. † marks the cells (task, variant) that the last invocation "
        f"(`{meta.get('last_invocation', {}).get('command', '-')}`) computed or recomputed.",
        "",
        "## Cost",
        "",
        f"- Hardware: {HARDWARE}; {meta.get('workers', 2)} worker processes of one torch thread each.",
        (
            f"- Wall time: {sum(i['wall_seconds'] for i in invocations) / 3600:.2f} h over {len(invocations)} "
            "finished invocation(s) (other work shared the two cores for part of it)."
            if invocations
            else "- Wall time: no invocation has finished yet (each records its wall time in study.json when it ends)."
        ),
        f"- Compute: {cpu_h:.3f} CPU-hours (process CPU time summed over the {len(files)} run files: "
        f"warm starts, tuning and reporting runs); the runs' wall times add up to {busy_h:.3f} worker-hours.",
        "",
        f"Tuning seeds: {', '.join(map(str, tune_seeds)) or '-'} (learning-rate selection only); reporting seeds: "
        f"{', '.join(map(str, report_seeds)) or '-'}.",
        "",
        "## Design",
        "",
        __doc__.split("Design\n", 1)[1].split("\nOutputs")[0].strip(),
        "",
        "## Budget per task (the same for every variant on a task)",
        "",
        "| task | env | task args | warm-start steps | RL steps | prompts x group | eval every | eval prompts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tasks:
        s = budgets[t]
        lines.append(
            f"| {t} | {s['env']} | {s['task_args'] or '-'} | {s['warm_steps']} | {s['steps']} | "
            f"{s['batch_prompts']} x {s['group_size']} | {s['eval_every']} | {s['eval_prompts']} |"
        )
    lines += ["", "## Selected learning rates (mean AUC over the tuning seeds; ties: the smaller rate)", ""]
    for t in task_order(selection):
        lines.append(
            f"- {t}: "
            + "; ".join(
                f"{o} **{selection[t][o]['lr']:g}** ("
                + ", ".join(f"{lr:g}: {a:.3f}" for lr, a in sorted(selection[t][o]["mean_auc"].items()))
                + ")"
                for o in variant_order(selection[t])  # the study's order: dapo, gcpo, the peers, grpo, dr_grpo
            )
        )
    lines += needle_section(runs, recent)
    lines += [
        "## Results per task",
        "",
        "Mean over the reporting seeds with its 95% t interval; Δ: the paired difference to dapo on the "
        "same seeds (positive: better than dapo), its 95% interval, and whether that interval excludes 0.",
        "",
    ]
    for t in tasks:
        by_variant = runs[t]
        lines += [
            f"### {t}",
            "",
            learned_line(by_variant),
            "",
            "| variant | n | lr | final reward | Δ final vs dapo | | AUC | Δ AUC vs dapo | |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v in variant_order(by_variant):
            rs = by_variant[v]
            lrs = sorted({r["lr"] for r in rs.values()})
            cells = [v + cell_mark(recent, t, v), str(len(rs)), ", ".join(f"{x:g}" for x in lrs)]
            for metric in ("final", "auc"):
                cells.append(fmt_ci(*t_mean_ci([rs[s][metric] for s in sorted(rs)])))
                d, _ = paired(by_variant, v, "dapo", metric) if v != "dapo" else (None, 0)
                cells += [fmt_ci(*d), in_words(*d[1:])] if d else ["-", ""]
            lines.append("| " + " | ".join(cells) + " |")
        on_axis = t.startswith("needle-") and t in TASKS  # needle_section's lengths: their table is there
        mech = [] if on_axis else mechanism_rows(by_variant, t)
        if mech:
            lines += ["", MECHANISM_INTRO, "", MECHANISM_HEAD[0].replace("| L |", "| task |"), MECHANISM_HEAD[1]]
            lines += mech
        lines.append("")
    failed = meta.get("failed", [])
    if failed:
        lines += ["## Failed runs (last invocation)", ""] + [f"- {f}" for f in failed] + [""]
    text = "\n".join(lines)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


MECHANISM_INTRO = (
    "Mechanism, from the controls (paired differences on the same seeds, 95% intervals): the weight law "
    "without information (gcpo+shuffled − dapo: GCPO's uneven step sizes, placed at random), the value of "
    "GCPO's placement (gcpo − gcpo+shuffled: the same step sizes, on the tokens the contrast picks) and of "
    "perfect placement (gcpo+oracle − gcpo+shuffled); then GCPO against each peer scheme (gcpo − peer)."
)
MECHANISM_HEAD = ("| L | comparison | Δ AUC | | Δ final | |", "|---|---|---|---|---|---|")


def mechanism_rows(r: dict, label: str) -> list[str]:
    """The mechanism table's rows for one task's runs {variant: {seed: run}}: the controls' paired differences,
    then gcpo − each peer scheme; a comparison with a variant missing is left out."""
    peers = [v for v in variant_order(r) if v in PEERS or (v.startswith("dapo+") and v not in VARIANTS)]
    rows = []
    for name, a, b in (
        ("step sizes without information", "gcpo+shuffled", "dapo"),
        ("GCPO's placement", "gcpo", "gcpo+shuffled"),
        ("perfect placement", "gcpo+oracle", "gcpo+shuffled"),
        *(("GCPO vs a peer", "gcpo", v) for v in peers),
    ):
        cells = [label, f"{name}: {a} − {b}"]
        for metric in ("auc", "final"):
            d, _ = paired(r, a, b, metric)
            if not d:
                break
            cells += [fmt_ci(*d), in_words(*d[1:])]
        else:
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def learned_line(by_variant: dict) -> str:
    """Does the budget learn? The variant with the highest mean final reward, and its gain over the warm start
    (final − the warm start's eval reward, per seed) with a 95% t interval."""
    best = max(variant_order(by_variant), key=lambda v: np.mean([r["final"] for r in by_variant[v].values()]))
    rs = by_variant[best]
    before = np.mean([r["reward_before"] for r in rs.values()])
    gain = t_mean_ci([rs[s]["final"] - rs[s]["reward_before"] for s in sorted(rs)])
    verdict = "it learns" if gain[1] > 0 else "NOT shown to learn: the interval's lower end is not above 0"
    return (
        f"Eval reward of the warm start: {before:.3f} (mean over seeds). Best final reward: {best}, gain over the "
        f"warm start {fmt_ci(*gain)} ({verdict})."
    )


def needle_section(runs: dict, recent: set) -> list[str]:
    """The credit-difficulty axis: per needle length, the oracle criterion and each scheme's paired gain over
    dapo with the share of the oracle's gain it recovers."""
    lengths = sorted(int(t.split("-")[1]) for t in runs if t.startswith("needle-") and t in TASKS)
    if not lengths:
        return []
    lines = [
        "",
        "## The credit-difficulty axis: needle, one key token among L",
        "",
        f"Is the budget long enough to learn with perfect credit? Criterion: gcpo+oracle's mean final eval "
        f"reward ≥ the warm start's + {ORACLE_MARGIN}.",
        "",
        "| L | seeds | warm start | gcpo+oracle final | gain [95% interval] | criterion | dapo final |",
        "|---|---|---|---|---|---|---|",
    ]
    for L in lengths:
        r = runs[f"needle-{L}"]
        if "gcpo+oracle" not in r:
            continue
        o = r["gcpo+oracle"]
        gain = t_mean_ci([o[s]["final"] - o[s]["reward_before"] for s in sorted(o)])
        before = np.mean([o[s]["reward_before"] for s in o])
        dapo = f"{np.mean([x['final'] for x in r['dapo'].values()]):.3f}" if "dapo" in r else "-"
        lines.append(
            f"| {L} | {len(o)} | {before:.3f} | {np.mean([o[s]['final'] for s in o]):.3f} | "
            f"{fmt_ci(*gain)} | {'met' if gain[0] >= ORACLE_MARGIN else 'NOT met'} | {dapo} |"
        )
    lines += [
        "",
        "Per length: the paired difference to dapo on the same seeds (95% interval), and the share of the "
        "oracle's gain over dapo that the scheme recovers, (scheme − dapo)/(oracle − dapo), with a paired "
        "bootstrap interval ('-' where the resampled means of the oracle's gain over dapo do not all have one "
        "sign: the ratio is then unbounded). A share is only as stable as the oracle's gain is large.",
        "",
        "| L | variant | Δ AUC vs dapo | | Δ final vs dapo | | share of oracle gain (AUC) | "
        "share of oracle gain (final) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for L in lengths:
        r = runs[f"needle-{L}"]
        for v in variant_order(v for v in r if v != "dapo"):
            cells = [str(L), v + cell_mark(recent, f"needle-{L}", v)]
            for metric in ("auc", "final"):
                d, _ = paired(r, v, "dapo", metric)
                cells += [fmt_ci(*d), in_words(*d[1:])] if d else ["-", ""]
            for metric in ("auc", "final"):
                sh = oracle_share(r, v, metric) if v != "gcpo+oracle" else None
                cells.append(fmt_ci(*sh) if sh else "-")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", MECHANISM_INTRO, "", *MECHANISM_HEAD]
    for L in lengths:
        lines += mechanism_rows(runs[f"needle-{L}"], str(L))
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------
# CLI


def print_plan(plan: Plan) -> None:
    print(f"{'task':>11} | warm | steps | B x G  | eval every | eval prompts | lr grid")
    for t, s in plan.tasks.items():
        print(
            f"{t:>11} | {s.warm_steps:4d} | {s.steps:5d} | {s.batch_prompts:2d} x {s.group_size:<2d}"
            f"| {s.eval_every:10d} | {s.eval_prompts:12d} | {', '.join(f'{x:g}' for x in s.lrs)}"
        )
    print(
        f"variants: {', '.join(plan.variants)}; tuning seeds {', '.join(map(str, plan.tune_seeds))}; "
        f"reporting seeds {', '.join(map(str, plan.report_seeds))}; {len(plan.jobs())} runs in the plan"
    )


def record_invocation(out: str, command: str, workers: int, res: dict) -> dict:
    """study.json: every invocation's command and wall time, and the cells the last one computed."""
    meta_path = os.path.join(out, "study.json")
    meta = load_json(meta_path) if os.path.exists(meta_path) else {}
    meta.setdefault("invocations", []).append(
        {
            "command": command,
            "wall_seconds": round(res["wall"], 1),
            "runs": len(res["ran"]),
            "interrupted": res.get("interrupted", False),
        }
    )
    cells = sorted({f"{j.task}/{j.variant}" for j in res["ran"] if j.phase != "warm"})
    meta.update(
        workers=workers,
        hardware=HARDWARE,
        last_invocation={"command": command, "cells": cells},
        failed=[f"{j.phase} {j.task} {j.variant} seed {j.seed}: {e}" for j, e in res["failed"]],
    )
    write_json(meta_path, meta)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="results folder (default results/, or results_quick/ with --quick)")
    p.add_argument("--tasks", default="", help=f"comma-separated tasks (default all: {','.join(TASKS)})")
    p.add_argument(
        "--variants",
        default="",
        help="comma-separated variants or credit schemes: "
        f"{','.join(VARIANTS)}; entropy_top20, gtpo_entropy, vppo_top40, module:function or "
        f"path/file.py:function (as dapo+<name>) (default: {','.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument("--seeds", default="", help="reporting seeds, e.g. 1-10 or 1,4,7 (default 1-10)")
    p.add_argument("--tune-seeds", default="", help="tuning seeds, never reported (default 101,102)")
    p.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each")
    p.add_argument("--quick", action="store_true", help="a tiny grid (2 tasks, 6 variants, 2+2 seeds, 4 steps)")
    p.add_argument("--report-only", action="store_true", help="rebuild report.md from the run files; run nothing")
    args = p.parse_args(argv)
    out = args.out or os.path.join(ROOT, "results_quick" if args.quick else "results")
    try:
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: use 1 or more")
        if args.report_only:
            if not os.path.isdir(os.path.join(out, "runs", "report")):
                raise ValueError(f"no run files under {out}/runs/report; run benchmarks/study.py first")
            write_report(out)
            print(f"wrote {os.path.join(out, 'report.md')}")
            return 0
        plan = make_plan(
            args.quick,
            [t for t in args.tasks.split(",") if t],
            [v for v in args.variants.split(",") if v],
            args.seeds and parse_seeds(args.seeds, "--seeds"),
            args.tune_seeds and parse_seeds(args.tune_seeds, "--tune-seeds"),
        )
        if set(plan.tune_seeds) & set(plan.report_seeds):
            raise ValueError("--tune-seeds and --seeds overlap; tuning seeds are never reported")
    except ValueError as e:
        print(f"study.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print_plan(plan)
    res = run_study(plan, out, args.workers)
    command = "python benchmarks/study.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    record_invocation(out, command.strip(), args.workers, res)
    print(
        f"ran {len(res['ran'])} runs in {res['wall'] / 60:.1f} min wall; {len(res['failed'])} failed"
        + ("; interrupted (run the same command to resume)" if res["interrupted"] else "")
    )
    if os.path.isdir(os.path.join(out, "runs", "report")):
        write_report(out)
        print(f"wrote {os.path.join(out, 'report.md')}")
    return 130 if res["interrupted"] else 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
