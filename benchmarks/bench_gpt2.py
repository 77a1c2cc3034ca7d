"""Time and memory of GCPO steps with a GPT-2-sized policy, through the same code as `python gcpo.py`.

    python benchmarks/bench_gpt2.py                       # random-init GPT-2 (124M) + a stand-in tokenizer
    python benchmarks/bench_gpt2.py --model gpt2          # the real GPT-2 (downloads once from the hub)
    python benchmarks/bench_gpt2.py --device cuda --dtype bfloat16

Without --model it needs no download: it saves a randomly initialised GPT-2 of the real size (12 layers,
768 wide, 50257-token vocabulary) with a byte-level BPE of the same vocabulary size trained offline
(toy_envs.text.stand_in_tokenizer). The shapes, and so the time and memory, are GPT-2's; the text is not.
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import gcpo  # noqa: E402


def random_gpt2(path: str) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    from toy_envs.text import stand_in_tokenizer

    tokenizer = stand_in_tokenizer(50257, filler_words=400_000)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos)).save_pretrained(path)
    return path


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="", help="hub name or directory (default: random-init GPT-2 size)")
    p.add_argument("--env", default="topic")
    p.add_argument("--algo", default="gcpo")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one untimed warm-up step)")
    p.add_argument("--shapes", default="4x4,16x8", help="B x G pairs, comma separated")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=0, help="responses per forward/backward (0: whole batch)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or random_gpt2(tmp)
        print(f"model={args.model or 'random-init GPT-2 124M + stand-in BPE'}  env={args.env}  algo={args.algo}  "
              f"dtype={args.dtype}  max_new_tokens={args.max_new_tokens}  micro_batch={args.micro_batch}  "
              f"torch={torch.__version__}  "
              f"threads={torch.get_num_threads()}")
        print(f"{'device':>6} | {'B x G':>6} | {'rollout s':>9} | {'update s':>8} | {'step s':>7} | peak memory")
        for shape in args.shapes.split(","):
            B, G = (int(x) for x in shape.split("x"))
            cfg = gcpo.make_config(args.algo, model=model_path, env=args.env, batch_prompts=B, group_size=G,
                                   max_new_tokens=args.max_new_tokens, micro_batch=args.micro_batch,
                                   device=args.device, dtype=args.dtype,
                                   dynamic_sampling=False)  # one rollout per step, so steps are comparable
            cfg.device = gcpo.resolve_device(cfg.device)
            task, _ = gcpo.build_task(cfg)
            model = gcpo.build_policy(cfg, task.vocab_size, 0, {}).to(cfg.device).eval()
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
            if cfg.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            times = []
            with gcpo.autocast(cfg):
                for step in range(args.steps + 1):
                    sync(cfg.device)
                    t0 = time.perf_counter()
                    batch = gcpo.rollout(model, task, cfg, step)
                    sync(cfg.device)
                    t1 = time.perf_counter()
                    gcpo.update(model, optimizer, None, batch, cfg, step)
                    sync(cfg.device)
                    if step > 0:
                        times.append((t1 - t0, time.perf_counter() - t1))
            roll = sum(t[0] for t in times) / len(times)
            upd = sum(t[1] for t in times) / len(times)
            if cfg.device.startswith("cuda"):
                mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA, allocated)"
            else:
                mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)"
            print(f"{cfg.device:>6} | {B:>2} x {G:<2} | {roll:9.2f} | {upd:8.2f} | {roll + upd:7.2f} | {mem}")
            del model, optimizer


if __name__ == "__main__":
    main()
