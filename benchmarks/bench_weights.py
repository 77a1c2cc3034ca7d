"""Speed of the GCPO weight computation: the vectorised reference vs the official per-row loop.

python benchmarks/bench_weights.py            # prints a table; --device cuda for the GPU
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import gcpo  # noqa: E402
from gcpo_support.variants import official_hist_loop as official_loop  # noqa: E402


def timeit(fn, repeats):
    fn()  # warm up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    alpha = gcpo.hist_alpha(0.4, 0.8)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'N x T':>12} | {'official loop ms':>16} | {'ties=average ms':>15} | {'ties=official ms':>16} | speed-up")
    for N, T in [(64, 128), (512, 1024)]:
        g = torch.Generator().manual_seed(0)
        logp = (-torch.rand(N, T, generator=g) * 3).to(args.device)
        logp_neg = (-torch.rand(N, T, generator=g) * 3).to(args.device)
        lengths = torch.randint(T // 4, T + 1, (N,), generator=g).to(args.device)
        mask = (torch.arange(T, device=args.device)[None] < lengths[:, None]).long()
        div = gcpo.token_scores(logp, logp_neg, mask, "kl")
        t_loop = timeit(lambda d=div, m=mask: official_loop(d, m, alpha), max(1, args.repeats // 2))
        t_avg = timeit(lambda d=div, m=mask: gcpo.normalize_weights(d, m, "hist"), args.repeats)
        t_off = timeit(lambda d=div, m=mask: gcpo.normalize_weights(d, m, "hist", ties="official"), args.repeats)
        same = torch.equal(gcpo.normalize_weights(div, mask, "hist", ties="official"), official_loop(div, mask, alpha))
        print(
            f"{N:>5} x {T:<5} | {t_loop:16.1f} | {t_avg:15.1f} | {t_off:16.1f} | {t_loop / t_avg:6.1f}x"
            f"  (official weights bit-equal: {same})"
        )


if __name__ == "__main__":
    main()
