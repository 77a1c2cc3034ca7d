"""Figures of the GCPO study, drawn from the run files of `benchmarks/study.py` alone.

    python benchmarks/plots.py                         # results/ -> results/figures/*.png
    python benchmarks/plots.py --results results_quick

Writes: credit_difficulty.png (THE question: does contrastive credit help more as the key token gets sparser?
AUC and final reward minus dapo's on the same seeds vs needle length L, 95% paired intervals, one line per credit
scheme); learning_curves.png (eval reward vs RL steps, mean over the reporting seeds with a 95% t band,
one panel per task); paired_difference.png (AUC and final reward minus dapo's on the same seeds, 95% intervals,
every task); key_token_auc.png
(how well GCPO's contrast weights rank the true key tokens over training); sentiment_mechanism.png (entropy,
the high- vs low-weight tokens' −log π, response length and the informative-group share over steps on sentiment).
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study import AXIS, VARIANTS, collect, paired, t_mean_ci, variant_order  # noqa: E402

COLOURS = {
    "grpo": "#8c8c8c",
    "dr_grpo": "#bcbd22",
    "dapo": "#1f77b4",
    "gcpo": "#d62728",
    "pcpo": "#17becf",
    "gcpo+shuffled": "#ff7f0e",
    "gcpo+oracle": "#2ca02c",
    "gcpo+full_kl": "#9467bd",
    "dapo+entropy_top20": "#e377c2",
    "dapo+gtpo_entropy": "#8c564b",
    "dapo+vppo_top40": "#17becf",
    "gcpo+log_hinge": "#7f7f7f",
    "gcpo+entropy0.02": "#c49c94",
    "gcpo+entropy0.16": "#7f7f7f",
    "gcpo+rollout_w": "#000000",
}
CREDIT = {
    "gcpo": "contrast (gcpo)",
    "gcpo+shuffled": "shuffled contrast (control)",
    "gcpo+oracle": "oracle (true key tokens)",
    "dapo+entropy_top20": "top-20% entropy mask",
    "dapo+gtpo_entropy": "entropy weights (GTPO)",
    "dapo+vppo_top40": "top-40% contrast mask (VPPO)",
}


def task_order(tasks):
    """Needle lengths in increasing order, then the others as written by the study."""

    def key(t):
        return (0, int(t.split("-")[1])) if t.startswith("needle-") else (1, 0)

    return sorted(tasks, key=key)


def mean_band(rows):
    """rows (seeds, points) → mean, lo, hi per point (95% Student-t interval over seeds)."""
    rows = np.asarray(rows, dtype=float)
    stats = [
        t_mean_ci(rows[:, j][np.isfinite(rows[:, j])]) if np.isfinite(rows[:, j]).any() else (np.nan,) * 3
        for j in range(rows.shape[1])
    ]
    return tuple(np.array(s) for s in zip(*stats))


def panel_grid(n, width=4.2, height=3.2, ncols=4):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.8), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def learning_curves(runs, path):
    tasks = task_order(runs)
    fig, axes = panel_grid(len(tasks))
    handles = {}
    for ax, task in zip(axes, tasks):
        for variant in [v for v in variant_order(runs[task]) if v not in VARIANTS or VARIANTS[v].tasks is None]:
            by_seed = runs[task][variant]
            steps = [s for s, _ in next(iter(by_seed.values()))["evals"]]
            curves = [
                [r for _, r in by_seed[s]["evals"]] for s in sorted(by_seed) if len(by_seed[s]["evals"]) == len(steps)
            ]
            m, lo, hi = mean_band(curves)
            (line,) = ax.plot(
                steps, m, color=COLOURS.get(variant), lw=1.6 if variant in ("dapo", "gcpo") else 1.0, label=variant
            )
            ax.fill_between(steps, lo, hi, color=COLOURS.get(variant), alpha=0.12, lw=0)
            handles[variant] = line
        ax.set_title(f"{task} ({len(next(iter(runs[task].values())))} seeds)")
        ax.set_xlabel("RL steps")
        ax.set_ylabel("eval reward")
        ax.grid(alpha=0.3)
    fig.suptitle("Learning curves: mean eval reward over the reporting seeds, 95% t band", y=0.995)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 9), frameon=False)
    fig.tight_layout(rect=(0, 0.07 if len(tasks) > 4 else 0.12, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_difference(runs, path):
    tasks = [t for t in task_order(runs) if "dapo" in runs[t]]
    variants = [v for v in variant_order({v for t in tasks for v in runs[t]}) if v != "dapo"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.32 * len(tasks) * len(variants) + 1.8), sharey=True)
    labels, y = [], 0
    for task in tasks:
        for variant in [v for v in variants if v in runs[task]]:
            ref, by_seed = runs[task]["dapo"], runs[task][variant]
            common = sorted(set(ref) & set(by_seed))
            for ax, metric in zip(axes, ("auc", "final")):
                m, lo, hi = t_mean_ci([by_seed[s][metric] - ref[s][metric] for s in common])
                colour = COLOURS.get(variant)
                ax.errorbar(
                    m,
                    -y,
                    xerr=[[m - lo], [hi - m]],
                    fmt="o",
                    color=colour,
                    ms=4,
                    capsize=2,
                    mfc=colour if lo > 0 or hi < 0 else "white",
                )
            labels.append(f"{task}  {variant}")
            y += 1
        y += 0.6
        for ax in axes:
            ax.axhline(-y + 0.8, color="0.85", lw=0.8)
    ticks = []
    y = 0
    for task in tasks:
        for _ in [v for v in variants if v in runs[task]]:
            ticks.append(-y)
            y += 1
        y += 0.6
    for ax, metric in zip(axes, ("area under the eval curve", "final eval reward")):
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(f"difference to dapo, {metric} (same seeds)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ticks, labels, fontsize=8)
    axes[0].set_title("AUC − dapo's AUC")
    axes[1].set_title("final reward − dapo's")
    fig.suptitle("Paired difference to dapo with 95% t interval (filled: the interval excludes 0)", y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def credit_difficulty(runs, path):
    """Δ to dapo (same seeds, 95% paired interval) vs needle length, one line per credit scheme: a line that
    rises with L says the scheme helps more as the key token gets sparser. Left: AUC; right: final reward."""
    lengths = sorted(int(t.split("-")[1]) for t in runs if t.startswith("needle-") and "dapo" in runs[t])
    if not lengths:
        return False
    schemes = [
        v
        for v in variant_order({v for L in lengths for v in runs[f"needle-{L}"]})
        if v in AXIS or (v.startswith("dapo+") and v not in VARIANTS)
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, metric, name in zip(axes, ("auc", "final"), ("area under the eval curve", "final eval reward")):
        for k, variant in enumerate(schemes):
            pts = [(L, paired(runs[f"needle-{L}"], variant, "dapo", metric)[0]) for L in lengths]
            pts = [(L, d) for L, d in pts if d is not None]
            if not pts:
                continue
            x = np.array([L for L, _ in pts]) * (1 + 0.025 * (k - (len(schemes) - 1) / 2))  # keeps bars apart
            m = np.array([d[0] for _, d in pts])
            err = np.array([[d[0] - d[1], d[2] - d[0]] for _, d in pts]).T
            ax.errorbar(
                x,
                m,
                yerr=err,
                marker="o",
                ms=4,
                capsize=3,
                color=COLOURS.get(variant),
                lw=2.0 if variant in ("gcpo", "gcpo+oracle") else 1.2,
                ls="--" if variant == "gcpo+shuffled" else "-",
                label=CREDIT.get(variant, variant),
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(L) for L in lengths])
        ax.set_xlabel("needle response length L (one key token among L)")
        ax.set_ylabel(f"{name} minus dapo's")
        ax.grid(alpha=0.3)
    axes[0].legend(title="token credit (vs uniform, dapo)", fontsize=8, title_fontsize=8)
    fig.suptitle(
        "Does contrastive credit help more as the key token gets sparser? Difference to uniform credit "
        "(dapo)\non the same seeds, mean with 95% paired t interval, per needle length",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def key_token_auc(runs, path):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task in task_order(runs):
        by_seed = runs[task].get("gcpo", {})
        curves = [r["curves"]["key_weight_auc"] for r in by_seed.values() if "key_weight_auc" in r.get("curves", {})]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        m, lo, hi = mean_band([[np.nan if v is None else v for v in c[:n]] for c in curves])
        (line,) = ax.plot(np.arange(1, n + 1), m, label=task)
        ax.fill_between(np.arange(1, n + 1), lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0.5, color="k", lw=0.8, ls="--", label="chance (0.5)")
    ax.set_xlabel("RL step")
    ax.set_ylabel("key-token AUC of the weights\n(1: every key token outranks the rest)")
    ax.set_ylim(0, 1.02)
    ax.set_title("GCPO (contrast credit): how well its weights rank the true key tokens")
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SENTIMENT_PANELS = (
    ("eval", "eval reward"),
    ("entropy", "entropy estimate (mean −log π)"),
    ("neglogp_high_w", "−log π on high-weight tokens (w > 1)"),
    ("neglogp_low_w", "−log π on low-weight tokens (w ≤ 1)"),
    ("response_len", "response length (tokens)"),
    ("zero_std_frac", "share of groups with equal rewards"),
)
SENTIMENT_VARIANTS = (
    "dapo",
    "gcpo",
    "gcpo+shuffled",
    "gcpo+oracle",
    "gcpo+entropy0.02",
    "gcpo+entropy0.16",
    "gcpo+rollout_w",
)


def sentiment_mechanism(runs, path):
    if "sentiment" not in runs:
        return False
    fig, axes = panel_grid(len(SENTIMENT_PANELS), width=4.6, height=3.3, ncols=3)
    handles = {}
    for ax, (key, label) in zip(axes, SENTIMENT_PANELS):
        for variant in [v for v in SENTIMENT_VARIANTS if v in runs["sentiment"]]:
            by_seed = runs["sentiment"][variant]
            if key == "eval":
                x = [s for s, _ in next(iter(by_seed.values()))["evals"]]
                rows = [[r for _, r in run["evals"]] for run in by_seed.values()]
            else:
                rows = [run["curves"][key] for run in by_seed.values() if key in run.get("curves", {})]
                if not rows:
                    continue
                n = min(len(r) for r in rows)
                rows, x = [[np.nan if v is None else v for v in r[:n]] for r in rows], np.arange(1, n + 1)
            m, lo, hi = mean_band(rows)
            (line,) = ax.plot(x, m, color=COLOURS.get(variant), label=variant, lw=1.2)
            ax.fill_between(x, lo, hi, color=COLOURS.get(variant), alpha=0.12, lw=0)
            handles[variant] = line
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    fig.suptitle("Sentiment: entropy, weights, length and tied groups per variant (mean over seeds, 95% band)")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(root, "results"), help="the study's --out folder")
    p.add_argument("--figures", default=None, help="where the PNGs go (default RESULTS/figures)")
    args = p.parse_args(argv)
    runs = collect(args.results, "report")
    if not runs:
        print(
            f"plots.py: error: no run files under {args.results}/runs/report; run benchmarks/study.py first",
            file=sys.stderr,
        )
        return 2
    out = args.figures or os.path.join(args.results, "figures")
    os.makedirs(out, exist_ok=True)
    written = []
    for name, fn in (
        ("credit_difficulty", credit_difficulty),
        ("learning_curves", learning_curves),
        ("paired_difference", paired_difference),
        ("key_token_auc", key_token_auc),
        ("sentiment_mechanism", sentiment_mechanism),
    ):
        path = os.path.join(out, f"{name}.png")
        if fn(runs, path) is not False:
            written.append(path)
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
