"""The spread of one command over seeds: `python gcpo.py --seed K --show 0` for each seed, one after another, each
in its own process (so each run is exactly the command a user types, with torch's default thread count).

    python benchmarks/seeds.py                            # the default run (gcpo on needle), seeds 1-5
    python benchmarks/seeds.py --seeds 1 2 3 --args="--algo dapo --steps 50"

Prints each run's summary, wall and CPU seconds, then the range of the eval reward before RL and after it. Another
CPU, thread count or library build gives other trajectories: the range, not one seed, is what to expect.

The runs get OMP_WAIT_POLICY=PASSIVE (unless it is set): torch's threads then sleep instead of spinning while they
wait for each other. The numbers are the same; the runs are much faster when other programs share the cores.
"""

import argparse
import os
import re
import resource
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY = re.compile(r"eval reward (?P<before>[-\d.]+) before RL .*?-> (?P<after>[-\d.]+) after")


def parse_summary(printed: str) -> tuple[float, float]:
    """(eval reward before RL, after RL) from what `python gcpo.py` prints (gcpo_support.render.summarize)."""
    found = SUMMARY.search(printed)
    if found is None:
        raise ValueError("no 'eval reward X before RL ... -> Y after' line in the output of gcpo.py")
    return float(found["before"]), float(found["after"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="seeds to run (default 1-5)")
    p.add_argument("--args", default="", help='more options for gcpo.py, in quotes (e.g. --args="--algo dapo")')
    args = p.parse_args(argv)
    rows = []
    for seed in args.seeds:
        command = [sys.executable, "gcpo.py", "--seed", str(seed), "--show", "0", *shlex.split(args.args)]
        start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        wall, cpu_end = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"seeds.py: {' '.join(command[1:])} failed: {done.stderr.strip().splitlines()[-1:]}")
        cpu = cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime
        before, after = parse_summary(done.stdout)
        rows.append((before, after))
        summary = "\n".join("    " + line for line in done.stdout.strip().splitlines())
        print(
            f"seed {seed}: eval reward {before:.3f} -> {after:.3f} ({wall:.0f} s wall, {cpu:.0f} CPU-s)\n{summary}",
            flush=True,
        )
    befores, afters = [b for b, _ in rows], [a for _, a in rows]
    print(
        f"over seeds {', '.join(map(str, args.seeds))}: before RL {min(befores):.3f}-{max(befores):.3f}, "
        f"after {min(afters):.3f}-{max(afters):.3f}"
    )


if __name__ == "__main__":
    main()
