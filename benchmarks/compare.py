"""GCPO vs its baselines on a toy task over several seeds: eval reward after RL and the weight diagnostics.

    python benchmarks/compare.py                              # needle, seeds 1-3, 120 steps (~4 min on 2 cores)
    python benchmarks/compare.py --env chainsum --seeds 1 2 3 4 5 --steps 150
    python benchmarks/compare.py --env sentiment --steps 60 --set lr=3e-4 --algos dapo gcpo

Each seed warm-starts once; every algorithm then starts from that same saved model (same prompts too).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import gcpo  # noqa: E402
from gcpo_support import loading  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="needle")
    p.add_argument("--task-args", default="")
    p.add_argument("--algos", nargs="+", default=["grpo", "dapo", "gcpo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--set", default="", help="RL options for every algorithm, e.g. lr=3e-4,group_size=16")
    args = p.parse_args()
    overrides = loading.parse_task_args(args.set)
    rows = {a: [] for a in args.algos}
    before, diag = [], {"first": [], "last": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            warm = f"{tmp}/warm{seed}"
            gcpo.train(
                gcpo.make_config(
                    "gcpo", env=args.env, task_args=args.task_args, seed=seed, steps=0, out=warm, device="cpu"
                ),
                progress=False,
            )
            for algo in args.algos:
                cfg = gcpo.make_config(
                    algo,
                    env=args.env,
                    task_args=args.task_args,
                    seed=seed,
                    steps=args.steps,
                    model=f"{warm}/model",
                    warm_steps=0,
                    device="cpu",
                    **overrides,
                )
                r = gcpo.train(cfg, progress=False)
                rows[algo].append(r["reward_after"])
                if algo == args.algos[0]:
                    before.append(r["reward_before"])
                if cfg.credit != "uniform":
                    keys = ("key_weight_share", "key_token_frac", "key_weight_auc")
                    for when, hist in (("first", r["history"][:10]), ("last", r["history"][-10:])):
                        diag[when].append([np.nanmean([h.get(k, np.nan) for h in hist]) for k in keys])
    print(f"env={args.env} {args.task_args} seeds={args.seeds} steps={args.steps} {args.set}")
    print(f"{'algo':>8} | eval reward after RL, mean ± std over seeds | per seed")
    print(f"{'warm':>8} | {np.mean(before):.3f} ± {np.std(before):.3f} | " + " ".join(f"{x:.3f}" for x in before))
    for algo, v in rows.items():
        print(f"{algo:>8} | {np.mean(v):.3f} ± {np.std(v):.3f} | " + " ".join(f"{x:.3f}" for x in v))
    for when, rows_ in diag.items():
        if rows_:
            s, f, a = np.mean(rows_, axis=0)
            print(f"GCPO weights, {when} 10 steps: key-token share {s:.3f} (uniform credit: {f:.3f}), key AUC {a:.3f}")


if __name__ == "__main__":
    main()
