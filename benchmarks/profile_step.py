"""Where a step's time goes: torch's profiler over `gcpo.rollout` + `gcpo.update`, and the sampler's draw.

    python benchmarks/profile_step.py --model DIR --steps 10     # a saved model (bench_gpt2.py --save-model DIR)
    python benchmarks/profile_step.py --tiny                     # gcpo's tiny model + 580-token stand-in BPE

Prints (1) the mean rollout and update wall time per step, (2) the operators that took the most self CPU time
over the profiled steps, as a share of the total, and (3) the time of one draw of a token per row for 128 rows
at the model's vocabulary size: `torch.multinomial` (one exponential random number per vocabulary entry, its
log taken one element at a time), `gcpo_support.draw_tokens` (what gcpo.sample uses: the same tokens, the logs
vectorised) and inverse-CDF sampling (one uniform number per row; not used, because it draws other tokens from
the same seed). Same setting as bench_gpt2.py: the topic task, one rollout per step
(dynamic sampling off), `--algo` preset, B x G = 16 x 8, 16 new tokens.
"""
import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import gcpo  # noqa: E402 (after the path insert)
import gcpo_support  # noqa: E402
from benchmarks.bench_gpt2 import tiny_bpe_gpt2  # noqa: E402
from benchmarks.bench_trl import gcpo_loop  # noqa: E402


def draw_times(V: int, rows: int = 128, repeats: int = 50) -> dict:
    """Seconds per call of each way to draw one token per row from (rows, V) probabilities."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(rows, V, generator=gen).softmax(-1)

    def multinomial():
        return torch.multinomial(probs, 1, generator=gen)

    def draw_tokens():
        return gcpo_support.draw_tokens(probs, gen)

    def inverse_cdf():
        cdf = probs.cumsum(-1)
        return torch.searchsorted(cdf, torch.rand(rows, 1, generator=gen) * cdf[:, -1:]).clamp(max=V - 1)

    out = {}
    for f in (multinomial, draw_tokens, inverse_cdf):
        f()
        t0 = time.perf_counter()
        for _ in range(repeats):
            f()
        out[f.__name__] = (time.perf_counter() - t0) / repeats
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="", help="a saved model directory (default with --tiny: gcpo's tiny model)")
    p.add_argument("--tiny", action="store_true", help="save and use gcpo's tiny model (2 layers, width 64)")
    p.add_argument("--algo", default="dapo", choices=list(gcpo.PRESETS))
    p.add_argument("--steps", type=int, default=10, help="profiled steps (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=12, help="operators listed")
    args = p.parse_args(argv)
    if bool(args.model) == args.tiny:
        p.error("give exactly one of --model DIR and --tiny")
    if args.steps < 1 or args.threads < 1:
        p.error("need --steps >= 1 and --threads >= 1")
    torch.set_num_threads(args.threads)
    import transformers
    from torch.profiler import ProfilerActivity, profile

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_bpe_gpt2(tmp) if args.tiny else args.model
        cfg, task, model, optimizer = gcpo_loop(args.algo, path, 16, 8)
        times = {"rollout": 0.0, "update": 0.0}

        def step(s, timed=False):
            t0 = time.perf_counter()
            batch, _ = gcpo.rollout(model, task, cfg, s)
            t1 = time.perf_counter()
            gcpo.update(model, optimizer, None, batch, cfg, s)
            if timed:
                times["rollout"] += t1 - t0
                times["update"] += time.perf_counter() - t1

        for s in range(3):
            step(s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(3, 3 + args.steps):
                step(s, timed=True)
        V = model.get_output_embeddings().weight.shape[0]
    print(f"model={'tiny' if args.tiny else args.model}  V={V}  algo={args.algo}  16 x 8, 16 new tokens  "
          f"threads={args.threads}  steps={args.steps}  torch={torch.__version__}")
    print("per step: " + ", ".join(f"{k} {v / args.steps * 1000:.1f} ms" for k, v in times.items()))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{'operator':<48} | {'self CPU ms / step':>18} | share | calls / step")
    for e in events[: args.top]:
        print(f"{e.key[:48]:<48} | {e.self_cpu_time_total / 1000 / args.steps:18.2f} | "
              f"{e.self_cpu_time_total / total:5.0%} | {e.count / args.steps:.0f}")
    draws = draw_times(V)
    print(f"one token per row, 128 rows, V={V}: " + ", ".join(f"{k} {v * 1000:.3f} ms" for k, v in draws.items()))


if __name__ == "__main__":
    main()
