"""Step time of GCPOTrainer against TRL's GRPOTrainer (DAPO loss), and of gcpo.py's own loop, on the same work.

    python benchmarks/bench_trl.py                                  # tiny GPT-2, 4x4 and 16x8
    python benchmarks/bench_trl.py --model gpt2-size --shapes 4x4 --steps 1   # random-init GPT-2 124M
    python benchmarks/bench_trl.py --model DIR --device cuda        # any saved causal LM with its tokenizer

One step = sample B prompts x G completions of exactly 16 new tokens (min_new_tokens = max = 16), score them,
one optimizer step on them (per_device_train_batch_size = B*G, no gradient accumulation). Both TRL trainers use
loss_type="dapo", epsilon 0.2 / epsilon_high 0.28, beta 0, no dropout, no gradient checkpointing, float32.
GCPO adds one no-grad forward of [negative prompt, completion] per micro-batch (weights_from="current"), or
two per generation batch (weights_from="rollout": on-policy, TRL computes no rollout log-probs to reuse); the
entropy_top20 row (credit="entropy_top20", the top-20% entropy mask) reads the entropy of TRL's own policy
forward and adds none. The prompts are the topic task's ("Here is a sentence about the ocean:", ...), the
negative prompt its `notopic` one ("Here is a sentence:"); the two gcpo.py rows run the same task through
gcpo.rollout and gcpo.update (dapo and gcpo presets without dynamic sampling, so one rollout per step), as
bench_gpt2.py does.

Columns, each the mean over the timed steps (after --warmup untimed ones): wall-clock seconds; CPU seconds of
the process (on a CPU with --threads 1 this is the work done, and unlike wall time it does not grow when other
programs share the cores); the CPU ratio to GRPOTrainer's step; how many times faster than GRPOTrainer's step
each row is in wall time (GRPO wall / wall); and the CPU seconds inside GCPO's extra no-grad forwards (timed
around them: GCPOTrainer's _negative_logps and _rollout_logps, gcpo.py's gcpo.credit_inputs) with their share
of the step. On CUDA only the wall columns mean much.
"""

import argparse
import os
import sys
import tempfile
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def tiny_gpt2(path: str) -> str:
    """The TRL tests' tiny GPT-2: 2 layers, width 32, a 600-token stand-in byte-level BPE."""
    from toy_envs.text import save_stand_in_gpt2

    return save_stand_in_gpt2(path)


def dataset(n: int):
    """n rows of the topic task's prompts, with its `notopic` negative prompt."""
    from datasets import Dataset

    from toy_envs.text import Topic

    prompts = [list(Topic.PROMPTS.values())[i % len(Topic.PROMPTS)] for i in range(n)]
    return Dataset.from_dict({"prompt": prompts, "negative_prompt": [Topic._negative_text(None, "notopic")] * n})


def reward(completions, **kwargs):
    return [float(len(set(c)) % 4) for c in completions]


class Clock:
    """Wall and process-CPU seconds per step, and the seconds spent inside GCPO's extra forwards."""

    def __init__(self, device: str):
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.steps, self.extra = [], [0.0, 0.0]

    def now(self):
        self.sync()
        return time.perf_counter(), time.process_time()

    def start(self):
        self.t0, self.extra = self.now(), [0.0, 0.0]

    def stop(self):
        t = self.now()
        self.steps.append((t[0] - self.t0[0], t[1] - self.t0[1], *self.extra))

    def timed(self, fn):
        """fn, with its wall and CPU time added to the current step's extra."""

        def wrapper(*args, **kwargs):
            t0 = self.now()
            out = fn(*args, **kwargs)
            t1 = self.now()
            self.extra = [self.extra[0] + t1[0] - t0[0], self.extra[1] + t1[1] - t0[1]]
            return out

        return wrapper

    def mean(self, warmup: int):
        kept = self.steps[warmup:]
        return [sum(s[i] for s in kept) / len(kept) for i in range(4)]


def trl_steps(kind: str, model_dir: str, B: int, G: int, warmup: int, steps: int, device: str, out: str):
    """[wall s, CPU s, extra wall s, extra CPU s] per timed step of GRPOTrainer or GCPOTrainer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gcpo_trl import GCPOConfig, GCPOTrainer

    clock = Clock(device)

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.start()

        def on_step_end(self, args, state, control, **kwargs):
            clock.stop()

    class TimedGCPO(GCPOTrainer):  # times GCPO's extra no-grad forwards, and nothing else
        _negative_logps = clock.timed(GCPOTrainer._negative_logps)
        _rollout_logps = clock.timed(GCPOTrainer._rollout_logps)

    common = dict(
        output_dir=out,
        per_device_train_batch_size=B * G,
        num_generations=G,
        max_completion_length=16,
        generation_kwargs={"min_new_tokens": 16},
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        max_steps=warmup + steps,
        use_cpu=device == "cpu",
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        logging_steps=10**6,
        save_strategy="no",
        learning_rate=1e-6,
        seed=0,
        disable_dropout=True,
        disable_tqdm=True,
    )
    if kind == "grpo":
        cls, config = GRPOTrainer, GRPOConfig(**common)
    else:
        cls, config = TimedGCPO, GCPOConfig(**common, **GCPO_OPTIONS[kind])
    trainer = cls(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=reward,
        args=config,
        train_dataset=dataset((warmup + steps) * B),
        callbacks=[StepClock()],
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    trainer.remove_callback(PrinterCallback)  # the table is the output
    trainer.train()
    return clock.mean(warmup)


def gcpo_loop(algo: str, model_dir: str, B: int, G: int, device: str = "cpu"):
    """(cfg, task, model, optimizer) for gcpo.py's own loop on the topic task with a saved model: B x G, 16 new
    tokens, dynamic sampling off (one rollout per step). Also used by profile_step.py."""
    import gcpo
    from gcpo_support.loading import build_task

    cfg = gcpo.make_config(
        algo,
        model=model_dir,
        env="topic",
        batch_prompts=B,
        group_size=G,
        max_new_tokens=16,
        device=device,
        dynamic_sampling=False,
    )
    task, _ = build_task(cfg)
    cfg = gcpo.resolve(cfg, task)
    model = gcpo.build_policy(cfg, task.vocab_size, 0, {}).to(cfg.device).eval()
    return cfg, task, model, torch.optim.AdamW(model.parameters(), lr=cfg.lr)


def loop_steps(algo: str, model_dir: str, B: int, G: int, warmup: int, steps: int, device: str):
    """The same per-step numbers for gcpo.py's own loop (rollout with its KV-cache sampler, then update); the
    extra forwards are gcpo.credit_inputs (looked up by name at each call, so the wrapper is the one
    gcpo.credit_weights calls): the negative prompt's forward, as _negative_logps is for GCPOTrainer."""
    import gcpo

    clock = Clock(device)
    cfg, task, model, optimizer = gcpo_loop(algo, model_dir, B, G, device)
    original, gcpo.credit_inputs = gcpo.credit_inputs, clock.timed(gcpo.credit_inputs)
    try:
        for step in range(warmup + steps):
            clock.start()
            batch, _ = gcpo.rollout(model, task, cfg, step)
            gcpo.update(model, optimizer, None, batch, cfg, step)
            clock.stop()
    finally:
        gcpo.credit_inputs = original
    return clock.mean(warmup)


KINDS = {
    "grpo": "GRPOTrainer (dapo)",
    "gcpo-current": "GCPOTrainer, weights_from=current",
    "gcpo-rollout": "GCPOTrainer, weights_from=rollout",
    "entropy": "GCPOTrainer, credit=entropy_top20",
    "loop-dapo": "gcpo.py loop (dapo preset)",
    "loop": "gcpo.py loop (gcpo preset)",
}
GCPO_OPTIONS = {
    "gcpo-current": dict(weights_from="current"),
    "gcpo-rollout": dict(weights_from="rollout"),
    "entropy": dict(credit="entropy_top20"),
}  # the GCPOTrainer rows' GCPOConfig options


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | gpt2-size (random init, stand-in BPE) | a directory")
    p.add_argument("--shapes", default="4x4,16x8", help="B x G pairs, comma separated")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"rows to run, from {list(KINDS)}")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: CPU time = work)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        sys.exit(f"bench_trl.py: error: unknown --kinds {sorted(unknown)}; choose from {list(KINDS)}")
    if args.steps < 1 or args.warmup < 0:
        sys.exit("bench_trl.py: error: need --steps >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renaming notices
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "tiny":
            model_dir, name = tiny_gpt2(os.path.join(tmp, "model")), "tiny GPT-2 (2 layers, width 32, 600-token BPE)"
        elif args.model == "gpt2-size":
            from benchmarks.bench_gpt2 import random_gpt2

            model_dir = random_gpt2(os.path.join(tmp, "model"))
            name = "random-init GPT-2 124M (12 layers, width 768, 50,257-token stand-in BPE)"
        else:
            model_dir, name = args.model, args.model
        print(
            f"model={name}  max_new_tokens=16  device={args.device}  threads={args.threads}  "
            f"warmup={args.warmup}  timed steps={args.steps}  torch={torch.__version__}  "
            f"transformers={transformers.__version__}  trl={trl.__version__}"
        )
        print(
            f"{'B x G':>7} | {'trainer':<34} | {'wall s':>7} | {'CPU s':>7} | {'CPU vs GRPO':>11} | "
            f"{'GRPO wall / wall':>16} | GCPO extra forwards CPU s (share of step)"
        )
        for shape in args.shapes.split(","):
            B, G = (int(x) for x in shape.split("x"))
            base = base_wall = None
            for kind in kinds:
                if kind.startswith("loop"):
                    algo = "dapo" if kind == "loop-dapo" else "gcpo"
                    wall, cpu, _, extra = loop_steps(algo, model_dir, B, G, args.warmup, args.steps, args.device)
                else:
                    wall, cpu, _, extra = trl_steps(
                        kind, model_dir, B, G, args.warmup, args.steps, args.device, os.path.join(tmp, kind)
                    )
                base, base_wall = (cpu, wall) if kind == "grpo" else (base, base_wall)
                ratio = f"{cpu / base:.2f}x" if base else "-"
                speedup = f"{base_wall / wall:.2f}x" if base_wall else "-"
                more = f"{extra:.3f} ({extra / cpu:.0%})" if kind not in ("grpo", "loop-dapo") else ""
                print(
                    f"{B:>3} x {G:<2} | {KINDS[kind]:<34} | {wall:7.3f} | {cpu:7.3f} | {ratio:>11} | {speedup:>16} | "
                    f"{more}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
