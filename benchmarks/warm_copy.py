"""Does the warm start learn needle's copy? Why the study puts the key token first (position=0).

    python benchmarks/warm_copy.py                          # L = 8, 16, 32; position L // 2 and 0; seeds 1-2
    python benchmarks/warm_copy.py --lengths 64 --seeds 1-3

Needle's reward is decided by one response token, which must repeat the prompt's symbol. RL can only sharpen a
copy that the warm-started model already makes, however faintly: if the key token's distribution is the same for
every prompt symbol, the expected policy gradient at that token is the same for every symbol too (each is
rewarded for one prompt in eight), so no credit scheme, not even the oracle, can move the model off that saddle.

For each length L, key position and seed this prints the warm-started model's eval reward and its *prompt
dependence*: the mean total-variation distance between the key token's symbol distributions for two different
prompt symbols (0: the key token ignores the prompt; 1: a different symbol for every prompt). A study budget
measures credit only where that dependence is clearly above 0. One torch thread; about 20-60 CPU-seconds per row.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gcpo  # noqa: E402


def key_distributions(model, task, position: int) -> np.ndarray:
    """(S, S): row s is π(symbol | prompt with symbol s) at response index `position`, over the S symbols
    (renormalised over the symbols), with the demonstration's filler before it."""
    S = task.num_symbols
    prompts = np.array([[task.bos_id, task.pos0 + position, task.sym0 + s] for s in range(S)])
    responses = np.concatenate([task.solve(prompts), np.full((S, 1), task.eos_id)], axis=1)
    with torch.no_grad():
        _, logp_all = gcpo.response_logprobs(
            model,
            torch.tensor(prompts),
            torch.ones(prompts.shape, dtype=torch.bool),
            torch.tensor(responses),
            full=True,
        )
    p = logp_all[:, position, task.sym0 : task.sym0 + S].exp().double().numpy()
    return p / p.sum(1, keepdims=True)


def prompt_dependence(p: np.ndarray) -> float:
    """Mean total-variation distance ½·Σ|p_a − p_b| over the pairs a < b of rows of p (S, S)."""
    pairs = list(itertools.combinations(range(len(p)), 2))
    return float(np.mean([0.5 * np.abs(p[a] - p[b]).sum() for a, b in pairs]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="8,16,32", help="comma-separated response lengths L")
    ap.add_argument("--seeds", default="1-2", help="seeds, e.g. 1-3 or 1,4")
    args = ap.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1) if "," not in args.seeds else [int(x) for x in args.seeds.split(",")]
    torch.set_num_threads(1)
    print("| L | key position | seed | warm-start eval reward | prompt dependence |")
    print("|---|---|---|---|---|")
    for L in lengths:
        for position in (L // 2, 0):
            for seed in seeds:
                cfg = gcpo.make_config(
                    "gcpo", task_args=f"length={L},position={position}", seed=seed, steps=0, show=0, device="cpu"
                )
                r = gcpo.train(cfg, progress=False)
                dep = prompt_dependence(key_distributions(r["model"], r["task"], position))
                print(f"| {L} | {position} | {seed} | {r['reward_before']:.3f} | {dep:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
