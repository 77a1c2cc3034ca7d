"""Where a step's time goes: the sampler's draw beside torch.multinomial, and torch's profiler over a step.

    python benchmarks/profile_step.py                            # the draw table only (no model)
    python benchmarks/profile_step.py --tiny                     # + profile gcpo's tiny model + 580-token stand-in BPE
    python benchmarks/profile_step.py --model DIR --steps 10     # + profile a saved model (bench_gpt2.py --save-model)

Prints (1) the time of one draw of a token per row from (128, V) probabilities at V = 580 (the tiny model's
stand-in BPE) and V = 50,257 (GPT-2's), on 1 and 2 threads: `torch.multinomial` (one exponential random number
per vocabulary entry) and `gcpo.draw` (what gcpo.sample uses: one uniform per row and a search of the cumulative
sum), each the median over --repeats blocks of calls taken in turns, and their ratio; then, with a model,
(2) the mean rollout and update wall time per step and (3) the operators that took the most self CPU time over
the profiled steps, as a share of the total. Same setting as bench_gpt2.py: the topic task, one rollout per step
(dynamic sampling off), `--algo` preset, B x G = 16 x 8, 16 new tokens.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import gcpo  # noqa: E402 (after the path insert)
from benchmarks.bench_gpt2 import tiny_bpe_gpt2  # noqa: E402
from benchmarks.bench_trl import gcpo_loop  # noqa: E402


def draw_times(V: int, threads: int, rows: int = 128, repeats: int = 7) -> dict:
    """Median seconds per call of torch.multinomial and gcpo.draw on the same (rows, V) probabilities at `threads`
    torch threads: `repeats` blocks of calls, the two taking turns so that both see the same load."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(rows, V, generator=gen).softmax(-1)
    ways = {"multinomial": lambda: torch.multinomial(probs, 1, generator=gen), "draw": lambda: gcpo.draw(probs, gen)}
    calls = max(5, 2_000_000 // (rows * V))  # a block of ~20 ms or more
    blocks = {name: [] for name in ways}
    for f in ways.values():
        f()  # warm up
    for _ in range(repeats):
        for name, f in ways.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            blocks[name].append((time.perf_counter() - t0) / calls)
    return {name: statistics.median(b) for name, b in blocks.items()}


def draw_table(repeats: int) -> str:
    lines = [
        f"one token per row, 128 rows (median of {repeats} blocks, torch {torch.__version__}):",
        f"{'V':>7} | threads | multinomial ms | gcpo.draw ms | multinomial / draw",
    ]
    for V in (580, 50_257):
        for threads in (1, 2):
            t = draw_times(V, threads, repeats=repeats)
            lines.append(
                f"{V:>7,} | {threads:>7} | {t['multinomial'] * 1e3:14.3f} | {t['draw'] * 1e3:12.3f} | "
                f"{t['multinomial'] / t['draw']:17.1f}x"
            )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="", help="also profile a step of a saved model directory")
    p.add_argument("--tiny", action="store_true", help="also profile a step of gcpo's tiny model (2 layers, width 64)")
    p.add_argument("--algo", default="dapo", choices=list(gcpo.PRESETS))
    p.add_argument("--steps", type=int, default=10, help="profiled steps (after 3 warm-up steps)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the profiled steps")
    p.add_argument("--top", type=int, default=12, help="operators listed")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per draw (the median is printed)")
    args = p.parse_args(argv)
    if args.model and args.tiny:
        p.error("give at most one of --model DIR and --tiny")
    if args.steps < 1 or args.threads < 1 or args.repeats < 1:
        p.error("need --steps >= 1, --threads >= 1 and --repeats >= 1")
    print(draw_table(args.repeats))
    if not (args.model or args.tiny):
        return
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
    print(
        f"\nmodel={'tiny' if args.tiny else args.model}  V={V}  algo={args.algo}  16 x 8, 16 new tokens  "
        f"threads={args.threads}  steps={args.steps}"
    )
    print("per step: " + ", ".join(f"{k} {v / args.steps * 1000:.1f} ms" for k, v in times.items()))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{'operator':<48} | {'self CPU ms / step':>18} | share | calls / step")
    for e in events[: args.top]:
        print(
            f"{e.key[:48]:<48} | {e.self_cpu_time_total / 1000 / args.steps:18.2f} | "
            f"{e.self_cpu_time_total / total:5.0%} | {e.count / args.steps:.0f}"
        )


if __name__ == "__main__":
    main()
