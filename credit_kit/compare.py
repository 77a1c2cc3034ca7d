"""Race a credit scheme against dapo (uniform credit) and gcpo (contrastive credit) under the study's protocol.

    python -m credit_kit compare entropy_top20 --tasks needle-8,needle-32 --seeds 1-5
    python -m credit_kit compare my_credit.py:weights --tasks needle-8 --seeds 1-10 --workers 2
    python -m credit_kit compare my_credit.py:weights --quick --tasks needle-8 --seeds 1-2   # tiny budget, a smoke test

The protocol is benchmarks/study.py's (the same machinery): per task the study's budget and learning-rate grid; the
scheme runs on the dapo preset with credit=SCHEME and picks its own learning rate by the mean area under the eval
curve over the tuning seeds (never reported); dapo and gcpo pick theirs the same way; every run on a (task, seed)
starts from the same cached warm start. Run files go under --out (default results/, the committed study): a
dapo or gcpo cell already there under the same budget is reused, and an interrupted comparison resumes where it
stopped. Prints, per task, the final eval reward and AUC with their paired 95% t intervals against dapo
and against gcpo, and writes a figure (OUT/figures/compare_<scheme>.png).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)
import study  # noqa: E402  (benchmarks/study.py; sets one torch thread per process before torch is imported)


def table(plan: study.Plan, name: str, out: str) -> str:
    """Per task: each of the scheme, gcpo and dapo with final reward and AUC (mean [95% interval]), then the
    scheme's paired differences to dapo and to gcpo on the same seeds."""
    runs = study.collect(out, "report")
    lines = []
    for task in plan.tasks:
        r = {
            v: {s: x for s, x in runs.get(task, {}).get(v, {}).items() if s in plan.report_seeds}
            for v in (name, "gcpo", "dapo")
        }
        if not all(r.values()):
            lines.append(f"{task}: incomplete (see the failed runs above)")
            continue
        lines += [f"{task} ({len(r[name])} seeds)", f"  {'variant':<28} {'final reward':>26} {'AUC':>26}"]
        for v in (name, "gcpo", "dapo"):
            cells = [study.fmt_ci(*study.t_mean_ci([r[v][s][m] for s in sorted(r[v])])) for m in ("final", "auc")]
            lines.append(f"  {v:<28} {cells[0]:>26} {cells[1]:>26}")
        for ref in ("dapo", "gcpo"):
            diffs = [study.paired(r, name, ref, m)[0] for m in ("final", "auc")]
            lines.append(
                f"  {'Δ ' + name + ' − ' + ref:<28} "
                + " ".join(
                    f"{study.fmt_ci(*d) + ' ' + ('*' if study.in_words(*d[1:]) == 'excludes 0' else ' '):>26}"
                    for d in diffs
                )
            )
        lines.append("")
    return "\n".join(lines + ["Δ: paired difference on the same seeds; *: its 95% interval excludes 0."])


def figure(plan: study.Plan, name: str, out: str) -> str:
    """Δ AUC and Δ final of the scheme to dapo and to gcpo per task (95% paired intervals); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = study.collect(out, "report")
    tasks = [t for t in plan.tasks if all(v in runs.get(t, {}) for v in (name, "gcpo", "dapo"))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.0 + 0.6 * max(len(tasks), 1)), sharey=True)
    for ax, metric, label in zip(axes, ("auc", "final"), ("area under the eval curve", "final eval reward")):
        for k, (ref, colour) in enumerate((("dapo", "#1f77b4"), ("gcpo", "#d62728"))):
            for i, task in enumerate(tasks):
                r = {v: {s: x for s, x in runs[task][v].items() if s in plan.report_seeds} for v in (name, ref)}
                d = study.paired(r, name, ref, metric)[0]
                if d is None:
                    continue
                ax.errorbar(
                    d[0],
                    -i - 0.15 + 0.3 * k,
                    xerr=[[d[0] - d[1]], [d[2] - d[0]]],
                    fmt="o",
                    capsize=3,
                    color=colour,
                    label=f"{name} − {ref}" if i == 0 else None,
                )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(f"difference in {label} (same seeds)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks([-i for i in range(len(tasks))], tasks)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{name}: paired difference to dapo and to gcpo, mean with 95% t interval", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "figures", f"compare_{name.replace('/', '_')}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m credit_kit compare", description=__doc__.split("\n\n")[0])
    p.add_argument("scheme", help="entropy_top20 | gtpo_entropy | vppo_top40 | module:function | path/file.py:function")
    p.add_argument("--tasks", default="needle-8", help=f"comma-separated study tasks ({', '.join(study.TASKS)})")
    p.add_argument("--seeds", default="1-5", help="reporting seeds, e.g. 1-5 or 1,3,8 (default 1-5)")
    p.add_argument("--tune-seeds", default="101,102", help="tuning seeds, never reported (default 101,102)")
    p.add_argument("--out", default=None, help="study folder (default results/, or results_quick/ with --quick)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one torch thread each (default 1)")
    p.add_argument("--quick", action="store_true", help="the study's tiny --quick budgets (a smoke test)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(ROOT, "results_quick" if args.quick else "results")
    try:
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: use 1 or more")
        name, _ = study.scheme_variant(args.scheme)
        plan = study.make_plan(
            args.quick,
            [t for t in args.tasks.split(",") if t],
            ["dapo", "gcpo", args.scheme],
            study.parse_seeds(args.seeds, "--seeds"),
            study.parse_seeds(args.tune_seeds, "--tune-seeds"),
        )
        if set(plan.tune_seeds) & set(plan.report_seeds):
            raise ValueError("--tune-seeds and --seeds overlap; tuning seeds are never reported")
    except ValueError as e:
        print(f"compare: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    res = study.run_study(plan, out, args.workers, desc=f"compare {name}")
    for job, err in res["failed"]:
        print(f"failed: {job.phase} {job.task} {job.variant} seed {job.seed}: {err}", file=sys.stderr)
    print(f"ran {len(res['ran'])} runs in {res['wall'] / 60:.1f} min (others reused from {out})\n")
    print(table(plan, name, out))
    print(f"\nwrote {figure(plan, name, out)}")
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
