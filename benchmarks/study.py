"""When does contrastive token credit help? A seeded study of GCPO against its baselines, with controls.

    python benchmarks/study.py --workers 2            # the full study into results/ (resumes; see --help)
    python benchmarks/study.py --quick                # a tiny grid into results_quick/, under two minutes
    python benchmarks/study.py --report-only          # rebuild results/report.md from the run files

Design
- Tasks (8): needle with response length 8, 32 and 128 (the credit-difficulty axis: one key token among L),
  copy, gridpaint, chainsum, and the two text tasks topic and sentiment (tiny model, word tokenizer).
- Variants (7 on every task): the base algorithms grpo, dr_grpo, dapo and gcpo; gcpo's controls gcpo+shuffled
  (its weights permuted within each response: same weight law, no information about which token mattered) and
  gcpo+oracle (the same weight law from the task's true key tokens), and gcpo+full_kl (divergence over the whole
  vocabulary), all three at gcpo's selected learning rate. Sentiment only (the instability study): gcpo with
  entropy_penalty 0.02 and 0.16, and gcpo with weights_from=rollout, at gcpo's selected rate. pcpo (dapo with
  PCPO's log-hinge) is tuned on every task but not reported, nor is gcpo+log_hinge: with one optimizer step per
  rollout the update sees ρ = 1, where the two surrogates have the same gradient (PCPO_NOTE below). The list is
  the VARIANTS table below.
- Fairness: each base algorithm picks its learning rate per task from a grid of three (the same grid for every
  algorithm on a task) by the area under its eval learning curve on the TUNING seed 101, which is never
  reported; every variant then runs on the REPORTING seeds 1..10. Every run on a (task, seed) starts from the
  same cached warm-started model (one warm start per task x seed), with the same prompts.
- Budget: per task, the same steps, batch (prompts x group size), evaluation schedule, warm-start length and
  learning-rate grid for every algorithm (the TASKS table below), sized so that the whole study (88 warm
  starts, 120 tuning and 590 reporting runs) fits in about 90 minutes with 2 worker processes on a 2-core x86
  CPU: a short budget, in which the needle-32 and needle-128 curves move little (read their results as "what a
  short run does", not as converged performance).
- Statistics (report.md): per (task, variant) the final eval reward and the area under the eval learning curve
  (AUC: the trapezoid area under (steps done, eval reward) divided by the steps, i.e. the curve's mean), each
  as a mean over the reporting seeds with a 95% percentile-bootstrap interval (10,000 resamples, fixed seed),
  and the paired difference to dapo on the same seeds with its 95% interval, said in words.

Outputs under --out: runs/<phase>/<task>/<variant>/seed<k>.json (one per run, written atomically: an
interrupted study resumes and skips what exists), lr_selection.json, study.json (command, wall time, compute),
report.md; cache/ holds the warm-started models (not results; safe to delete). `benchmarks/plots.py` draws the
figures from these files alone.
"""
from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: one thread per worker process

import argparse
import dataclasses
import json
import multiprocessing as mp
import platform
import queue
import shlex
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TUNE_SEEDS = (101,)
REPORT_SEEDS = tuple(range(1, 11))
BASE = ("grpo", "dr_grpo", "dapo", "gcpo", "pcpo")  # the algorithms that pick their own learning rate
BOOTSTRAP_SEED, BOOTSTRAP_RESAMPLES = 0, 10_000

SYMBOLIC_LRS = (3e-4, 1e-3, 3e-3)
NEEDLE_LRS = (5e-4, 1e-3, 2e-3)  # 3e-3 collapses the needle policies to reward 0 within 20 steps
TEXT_LRS = (1e-4, 3e-4, 1e-3)  # the README's sentiment runs: unstable at 1e-3, level at 1e-4


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of the study and its budget, the same for every algorithm on it."""
    env: str
    task_args: str = ""
    steps: int = 60
    batch_prompts: int = 8
    group_size: int = 8
    eval_every: int = 10
    eval_prompts: int = 128
    warm_steps: int = 1200
    lrs: tuple = SYMBOLIC_LRS


TASKS = {
    "needle-8": TaskSpec("needle", "length=8", steps=60, batch_prompts=16, warm_steps=600, lrs=NEEDLE_LRS),
    "needle-32": TaskSpec("needle", "length=32", steps=40, warm_steps=600, lrs=NEEDLE_LRS),
    "needle-128": TaskSpec("needle", "length=128", steps=20, batch_prompts=4, eval_every=5, eval_prompts=64,
                           warm_steps=400, lrs=NEEDLE_LRS),
    "copy": TaskSpec("copy", steps=50, warm_steps=600),
    "gridpaint": TaskSpec("gridpaint", steps=30, warm_steps=600),
    "chainsum": TaskSpec("chainsum", steps=50, warm_steps=600),
    "topic": TaskSpec("topic", steps=30, eval_every=6, warm_steps=600, lrs=TEXT_LRS),
    "sentiment": TaskSpec("sentiment", steps=40, eval_every=8, warm_steps=600, lrs=TEXT_LRS),
}

# name: (preset, option overrides, whose selected learning rate it uses, tasks (None: all; (): tuned, not reported))
# PCPO_NOTE: pcpo and gcpo+log_hinge are tuned but not reported. With one optimizer step per rollout (every task
# here), the update sees ρ = 1 up to rounding, where PPO-clip's gradient −Aρ∇log π and the log-hinge's −A∇log π
# are the same, and the dual clip never acts: pcpo is dapo and gcpo+log_hinge is gcpo, up to float rounding. The
# tuning runs show it (pcpo's AUC equals dapo's on most grid points); the surrogates differ only when the policy
# moves within a rollout (--minibatches or --epochs > 1), which this study does not cover.
VARIANTS = {
    "grpo": ("grpo", {}, "grpo", None),
    "dr_grpo": ("dr_grpo", {}, "dr_grpo", None),
    "dapo": ("dapo", {}, "dapo", None),
    "gcpo": ("gcpo", {}, "gcpo", None),
    "pcpo": ("pcpo", {}, "pcpo", ()),  # tuned on every task, not reported (see PCPO_NOTE)
    "gcpo+shuffled": ("gcpo", {"credit": "shuffled"}, "gcpo", None),
    "gcpo+oracle": ("gcpo", {"credit": "oracle"}, "gcpo", None),
    "gcpo+full_kl": ("gcpo", {"divergence": "full_kl"}, "gcpo", None),
    "gcpo+log_hinge": ("gcpo", {"surrogate": "log_hinge", "dual_clip": 0.0}, "pcpo", ()),  # not reported
    "gcpo+entropy0.02": ("gcpo", {"entropy_penalty": 0.02}, "gcpo", ("sentiment",)),
    "gcpo+entropy0.16": ("gcpo", {"entropy_penalty": 0.16}, "gcpo", ("sentiment",)),
    "gcpo+rollout_w": ("gcpo", {"weights_from": "rollout"}, "gcpo", ("sentiment",)),
}

# --quick: a tiny grid that exercises every phase, both task families and the sentiment-only path
QUICK_TASKS = {
    "needle-8": TaskSpec("needle", "length=8", steps=4, batch_prompts=4, group_size=4, eval_every=2,
                         eval_prompts=16, warm_steps=20, lrs=(1e-3, 3e-3)),
    "sentiment": TaskSpec("sentiment", steps=4, batch_prompts=4, group_size=4, eval_every=2, eval_prompts=16,
                          warm_steps=20, lrs=(3e-4, 1e-3)),
}
QUICK_VARIANTS = ("dapo", "gcpo", "gcpo+shuffled", "gcpo+oracle", "gcpo+entropy0.02")
QUICK_TUNE_SEEDS, QUICK_REPORT_SEEDS = (101,), (1, 2)

# per-step metrics kept as whole curves in each run file (the rest only as first/last-10-step means)
CURVE_KEYS = ("reward_mean", "entropy", "key_weight_auc", "key_weight_share", "key_token_frac")
SENTIMENT_CURVE_KEYS = ("weight_max", "weight_std", "logp_move_high_w", "logp_move_low_w",
                        "neglogp_high_w", "neglogp_low_w", "response_len", "zero_std_frac", "grad_norm",
                        "clipfrac_low", "clipfrac_high")


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


def bootstrap_mean_ci(x, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """Mean of x (n,) and its percentile-bootstrap interval: resample n values with replacement `resamples`
    times, take the (1−level)/2 and (1+level)/2 quantiles of the resampled means. Returns (mean, lo, hi)."""
    x = np.asarray(x, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


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


# ---------------------------------------------------------------------------------------------------------
# the grid


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
    tasks: dict
    variants: tuple
    tune_seeds: tuple
    report_seeds: tuple

    def jobs(self) -> list[Job]:
        out = []
        for t, spec in self.tasks.items():
            out += [Job("warm", t, "", s) for s in (*self.tune_seeds, *self.report_seeds)]
            tuned = self.tuned_algos(t)
            out += [Job("tune", t, a, s, lr) for a in tuned for lr in spec.lrs for s in self.tune_seeds]
            out += [Job("report", t, v, s) for v in self.variants_of(t) for s in self.report_seeds]
        return out

    def variants_of(self, task: str) -> list[str]:
        return [v for v in self.variants if VARIANTS[v][3] is None or task in VARIANTS[v][3]]

    def tuned_algos(self, task: str) -> list[str]:
        """The base algorithms tuned on `task`: those its reported variants use, and the tune-only ones."""
        chosen = {VARIANTS[v][2] for v in self.variants if VARIANTS[v][3] == () or v in self.variants_of(task)}
        return sorted(chosen, key=BASE.index)


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(QUICK_TASKS, QUICK_VARIANTS, QUICK_TUNE_SEEDS, QUICK_REPORT_SEEDS)
    return Plan(TASKS, tuple(VARIANTS), TUNE_SEEDS, REPORT_SEEDS)


# ---------------------------------------------------------------------------------------------------------
# one run (in a worker process)


def write_json(path: str, obj) -> None:
    """Write atomically: a temporary file in the same folder, then rename over the target."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def warm_dir(out: str, task: str, seed: int) -> str:
    return os.path.join(out, "cache", task, f"seed{seed}")


def rounded(x, digits=5):
    return None if x is None or not np.isfinite(x) else float(f"{x:.{digits}g}")


def run_job(job: Job, spec: TaskSpec, out: str, lr: float) -> dict:
    """Run one job, write its JSON file, return the file's content."""
    import torch

    import gcpo

    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    common = dict(env=spec.env, task_args=spec.task_args, seed=job.seed, device="cpu", eval_prompts=spec.eval_prompts)
    if job.phase == "warm":
        final = warm_dir(out, job.task, job.seed)
        tmp = f"{final}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        r = gcpo.train(gcpo.make_config("gcpo", steps=0, out=tmp, warm_steps=spec.warm_steps, **common),
                       progress=False)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        res = {"phase": "warm", "task": job.task, "seed": job.seed, "warm_steps": spec.warm_steps,
               "warm_loss": rounded(r["warm_loss"]), "reward_before": r["reward_before"]}
    else:
        algo, overrides, _, _ = VARIANTS[job.variant]
        cfg = gcpo.make_config(algo, steps=spec.steps, model=os.path.join(warm_dir(out, job.task, job.seed), "model"),
                               warm_steps=0, lr=lr, batch_prompts=spec.batch_prompts, group_size=spec.group_size,
                               eval_every=spec.eval_every, log_token_moves=spec.env == "sentiment" and
                               {**gcpo.PRESETS[algo], **overrides}.get("credit") != "uniform", **common,
                               **overrides)
        r = gcpo.train(cfg, progress=False)
        hist = r["history"]
        keys = CURVE_KEYS + (SENTIMENT_CURVE_KEYS if spec.env == "sentiment" else ())
        curves = {k: [rounded(h.get(k, float("nan"))) for h in hist] for k in keys if any(k in h for h in hist)}
        config = dataclasses.asdict(r["cfg"])
        config["model"] = os.path.relpath(config["model"], out)  # the cache, relative to --out
        res = {"phase": job.phase, "task": job.task, "variant": job.variant, "algo": algo, "overrides": overrides,
               "seed": job.seed, "lr": lr, "evals": [[int(s), float(v)] for s, v in r["evals"]],
               "reward_before": r["reward_before"], "final": r["reward_after"], "auc": curve_auc(r["evals"]),
               "first10": {k: rounded(v) for k, v in nanmean_keys(hist[:10]).items()},
               "last10": {k: rounded(v) for k, v in nanmean_keys(hist[-10:]).items()},
               "curves": curves, "config": config}
    res["seconds"], res["cpu_seconds"] = round(time.time() - t0, 3), round(time.process_time() - c0, 3)
    write_json(job.path(out), res)
    return res


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _worker(args):
    job, spec, out, lr = args
    try:
        return job, run_job(job, spec, out, lr), None
    except Exception as e:  # reported by the parent; the job's file is not written, so a rerun retries it
        return job, None, f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------------------
# scheduling: warm starts before the runs that need them, a task's tuning before its reporting runs


def load_json(path: str):
    with open(path) as f:
        return json.load(f)


def select_lrs(plan: Plan, task: str, out: str) -> dict:
    """For each tuned algorithm on `task`: the grid value with the highest mean AUC over the tuning seeds
    (ties: the smaller rate). Returns {algo: {"lr": chosen, "mean_auc": {lr: mean AUC}}}."""
    spec, sel = plan.tasks[task], {}
    for algo in plan.tuned_algos(task):
        mean_auc = {}
        for lr in spec.lrs:
            mean_auc[lr] = float(np.mean([load_json(Job("tune", task, algo, s, lr).path(out))["auc"]
                                          for s in plan.tune_seeds]))
        best = max(spec.lrs, key=lambda lr: (mean_auc[lr], -lr))
        sel[algo] = {"lr": best, "mean_auc": {f"{lr:g}": round(a, 5) for lr, a in mean_auc.items()}}
    return sel


def run_study(plan: Plan, out: str, workers: int) -> dict:
    """Run every job of the plan not already on disk. Returns {"failed": [...], "wall": s, "ran": n}."""
    from tqdm import tqdm

    jobs = plan.jobs()
    done = {j for j in jobs if os.path.exists(j.path(out)) and
            (j.phase != "warm" or os.path.isdir(os.path.join(warm_dir(out, j.task, j.seed), "model")))}
    sel_path = os.path.join(out, "lr_selection.json")
    selection = load_json(sel_path) if os.path.exists(sel_path) else {}
    cost_rank = {t: i for i, t in enumerate(sorted(plan.tasks, key=lambda t: -task_cost(plan.tasks[t])))}
    order = {"warm": 0, "tune": 1, "report": 2}
    pending = sorted((j for j in jobs if j not in done),
                     key=lambda j: (order[j.phase] + (j.phase == "warm" and j.seed not in plan.tune_seeds) * 1.5,
                                    cost_rank[j.task], j.variant, j.seed, j.lr))

    def tuned(task):
        return all(j in done for j in jobs if j.task == task and j.phase == "tune")

    def ready(j):
        warm_ok = Job("warm", j.task, "", j.seed) in done
        return j.phase == "warm" or (warm_ok and (j.phase == "tune" or j.task in selection))

    for t in plan.tasks:  # resumed with every tuning run on disk
        if t not in selection and tuned(t):
            selection[t] = select_lrs(plan, t, out)
    write_json(sel_path, selection)

    failed, results, start, ran = [], queue.Queue(), time.time(), 0
    bar = tqdm(total=len(jobs), initial=len(done), desc="study runs", unit="run", dynamic_ncols=True)
    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init) if workers > 1 and pending else None
    in_flight = 0
    try:
        while pending or in_flight:
            while in_flight < workers:
                j = next((j for j in pending if ready(j)), None)
                if j is None:
                    break
                pending.remove(j)
                lr = j.lr if j.phase == "tune" else selection.get(j.task, {}).get(VARIANTS.get(j.variant, ("",) * 3)[2], {}).get("lr", 0.0)
                args = (j, plan.tasks[j.task], out, lr)
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
                tqdm.write(f"FAILED {job}: {err}")
                continue
            done.add(job)
            ran += 1
            if job.phase == "tune" and tuned(job.task):
                selection[job.task] = select_lrs(plan, job.task, out)
                write_json(sel_path, selection)
                tqdm.write(f"{job.task}: selected lr " + ", ".join(f"{a} {s['lr']:g}" for a, s in selection[job.task].items()))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return {"failed": failed, "wall": time.time() - start, "ran": ran}


def task_cost(spec: TaskSpec) -> float:
    """A rough relative cost of one run: tokens sampled per step x steps, plus the evaluations."""
    length = spec.steps * spec.batch_prompts * spec.group_size + (spec.steps // max(spec.eval_every, 1) + 1) * spec.eval_prompts
    return length * (int(spec.task_args.split("=")[1]) if "length=" in spec.task_args else 16)


# ---------------------------------------------------------------------------------------------------------
# report


def hardware() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def collect(out: str, phase: str = "report") -> dict:
    """{task: {variant: {seed: run dict}}} from the run files of one phase."""
    rows = {}
    base = os.path.join(out, "runs", phase)
    for task in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for variant in sorted(os.listdir(os.path.join(base, task))):
            for name in sorted(os.listdir(os.path.join(base, task, variant))):
                if name.endswith(".json"):
                    r = load_json(os.path.join(base, task, variant, name))
                    rows.setdefault(task, {}).setdefault(variant, {})[r["seed"]] = r
    return rows


def fmt_ci(m, lo, hi) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def summary_rows(runs: dict, metric: str) -> list[dict]:
    """Per variant: the mean and 95% interval of `metric` ('final' or 'auc') over seeds, and the paired
    difference to dapo on the seeds both have."""
    rows = []
    ref = runs.get("dapo", {})
    for variant, by_seed in runs.items():
        x = [by_seed[s][metric] for s in sorted(by_seed)]
        row = {"variant": variant, "n": len(x), "mean": bootstrap_mean_ci(x)}
        common = sorted(set(by_seed) & set(ref))
        if variant != "dapo" and common:
            row["diff"] = bootstrap_mean_ci([by_seed[s][metric] - ref[s][metric] for s in common])
            row["n_paired"] = len(common)
        rows.append(row)
    return rows


def write_report(out: str, plan: Plan) -> str:
    meta_path = os.path.join(out, "study.json")
    meta = load_json(meta_path) if os.path.exists(meta_path) else {}
    runs = collect(out, "report")
    all_runs = _all_run_files(out)
    compute = sum(r.get("seconds", 0.0) for r in all_runs)
    selection = load_json(os.path.join(out, "lr_selection.json")) if os.path.exists(os.path.join(out, "lr_selection.json")) else {}
    order = list(plan.variants)
    lines = ["# GCPO study: results", "",
             f"Command: `{meta.get('command', 'python benchmarks/study.py')}`  ",
             f"Wall time: {meta.get('wall_seconds', 0) / 60:.1f} min over {meta.get('invocations', 0)} invocation(s) "
             f"with {meta.get('workers', '?')} worker processes (1 torch thread each); total compute (sum of run "
             f"times): {compute / 60:.1f} min over {len(all_runs)} runs.  ",
             f"Hardware: {meta.get('hardware', hardware())}.  ",
             f"Tuning seeds: {', '.join(map(str, plan.tune_seeds))} (learning-rate selection only); "
             f"reporting seeds: {', '.join(map(str, plan.report_seeds))}.", "",
             "## Design", "", __doc__.split("Design\n", 1)[1].split("\nOutputs")[0].strip(), "",
             "## Budget per task (the same for every algorithm on a task)", "",
             "| task | env | task args | warm-start steps | RL steps | prompts x group | eval every | eval prompts | lr grid |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, s in plan.tasks.items():
        lines.append(f"| {t} | {s.env} | {s.task_args or '-'} | {s.warm_steps} | {s.steps} | {s.batch_prompts} x "
                     f"{s.group_size} | {s.eval_every} | {s.eval_prompts} | {', '.join(f'{x:g}' for x in s.lrs)} |")
    algos = [a for a in BASE if any(a in sel for sel in selection.values())]
    lines += ["", "## Selected learning rates (mean AUC on the tuning seeds)", "",
              "| task | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for t in plan.tasks:
        if t in selection:
            lines.append(f"| {t} | " + " | ".join(f"{selection[t][a]['lr']:g}" if a in selection[t] else "-"
                                                 for a in algos) + " |")
    lines += ["", "## Results on the reporting seeds", "",
              "Mean over seeds with its 95% bootstrap interval; Δ: the paired difference to dapo on the same seeds "
              "(positive: better than dapo), its 95% interval, and whether that interval excludes 0.", ""]
    for t in plan.tasks:
        if t not in runs:
            continue
        by_variant = {v: runs[t][v] for v in sorted(runs[t], key=lambda v: order.index(v) if v in order else 99)}
        final, auc = summary_rows(by_variant, "final"), summary_rows(by_variant, "auc")
        before = [r["reward_before"] for r in next(iter(by_variant.values())).values()]
        lines += [f"### {t}", "", f"Eval reward of the warm start: {np.mean(before):.3f} (mean over seeds).", "",
                  "| variant | n | final reward | Δ final vs dapo | | AUC | Δ AUC vs dapo | |",
                  "|---|---|---|---|---|---|---|---|"]
        for f_, a_ in zip(final, auc):
            cells = [f_["variant"], str(f_["n"]), fmt_ci(*f_["mean"])]
            cells += [fmt_ci(*f_["diff"]), in_words(*f_["diff"][1:])] if "diff" in f_ else ["-", ""]
            cells += [fmt_ci(*a_["mean"])]
            cells += [fmt_ci(*a_["diff"]), in_words(*a_["diff"][1:])] if "diff" in a_ else ["-", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    failed = meta.get("failed", [])
    if failed:
        lines += ["## Failed runs", ""] + [f"- {f}" for f in failed] + [""]
    text = "\n".join(lines)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def _all_run_files(out: str) -> list[dict]:
    found = []
    for dirpath, _, names in os.walk(os.path.join(out, "runs")):
        found += [load_json(os.path.join(dirpath, n)) for n in names if n.endswith(".json")]
    return found


# ---------------------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="results folder (default results/, or results_quick/ with --quick)")
    p.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each")
    p.add_argument("--quick", action="store_true", help="a tiny grid (2 tasks, 5 variants, 1+2 seeds, 4 steps)")
    p.add_argument("--report-only", action="store_true", help="rebuild report.md from the run files; run nothing")
    args = p.parse_args(argv)
    if args.workers < 1:
        print(f"study.py: error: --workers {args.workers}: use 1 or more", file=sys.stderr)
        return 2
    out = args.out or os.path.join(ROOT, "results_quick" if args.quick else "results")
    plan = make_plan(args.quick)
    print(__doc__.split("\nOutputs")[0].split("Design\n", 1)[1])
    print(f"{'task':>11} | warm | steps | B x G  | eval every | eval prompts | lr grid")
    for t, s in plan.tasks.items():
        print(f"{t:>11} | {s.warm_steps:4d} | {s.steps:5d} | {s.batch_prompts:2d} x {s.group_size:<2d}"
              f"| {s.eval_every:10d} | {s.eval_prompts:12d} | {', '.join(f'{x:g}' for x in s.lrs)}")
    os.makedirs(out, exist_ok=True)
    meta_path = os.path.join(out, "study.json")
    if not args.report_only:
        res = run_study(plan, out, args.workers)
        meta = load_json(meta_path) if os.path.exists(meta_path) else {}
        compute = sum(r.get("seconds", 0.0) for r in _all_run_files(out))
        meta.update(command="python benchmarks/study.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
                    workers=args.workers, hardware=hardware(),
                    wall_seconds=meta.get("wall_seconds", 0.0) + res["wall"],
                    invocations=meta.get("invocations", 0) + 1, compute_seconds=compute,
                    failed=[f"{j.phase} {j.task} {j.variant} seed {j.seed}: {e}" for j, e in res["failed"]])
        write_json(meta_path, meta)
        print(f"ran {res['ran']} runs in {res['wall'] / 60:.1f} min wall; total compute of all runs on disk "
              f"{compute / 60:.1f} min; {len(res['failed'])} failed")
    write_report(out, plan)
    print(f"wrote {os.path.join(out, 'report.md')}")
    failed = load_json(meta_path).get("failed", []) if os.path.exists(meta_path) else []
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
