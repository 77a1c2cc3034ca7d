"""Time, memory and FLOPs of `dapo` and `gcpo` steps side by side, through the same code as `python gcpo.py`.

    python benchmarks/bench_gpt2.py                          # random-init GPT-2 (124M) + stand-in BPE, 4x4 and 16x8
    python benchmarks/bench_gpt2.py --shapes 16x8 --threads 2
    python benchmarks/bench_gpt2.py --tiny --steps 20        # gcpo's tiny model (2 layers, width 64) + 580-token BPE
    python benchmarks/bench_gpt2.py --model DIR              # any saved causal LM with its tokenizer
    python benchmarks/bench_gpt2.py --device cuda --dtype bfloat16
    python benchmarks/bench_gpt2.py --save-model DIR         # save the random-init GPT-2 (or --tiny) for others
    python benchmarks/bench_gpt2.py --decode --shapes 16x4 --max-new-tokens 64 --threads 2   # the KV caches

Without --model it needs no download: it saves a randomly initialised GPT-2 of the real size (12 layers,
768 wide, 50257-token vocabulary) with a byte-level BPE of the same vocabulary size trained offline
(toy_envs.text.stand_in_tokenizer). The shapes, and so the time, memory and FLOPs, are GPT-2's; the text is
not. --tiny saves gcpo's own tiny architecture (`gcpo.build_policy` with model='tiny': n_layer, n_embd,
n_head from Config, fused tanh-GELU) with a 600-merge stand-in BPE (580 tokens) instead.

--decode times only the sampler's decode loop (`decode_rollout`) with each KV cache, the caches taking turns,
on a random-init GPT-2 of the real size built from GPT2Config() (or, with --tiny, gcpo's tiny model): the
rollout's wall seconds, the median over --repeats, and the ratios.

One step = gcpo.rollout (B prompts x G responses of up to --max-new-tokens tokens, one rollout: dynamic
sampling off) + gcpo.update (one optimizer step). The algorithms take turns step by step on ONE model and
optimizer: the work of a step depends on the shapes, not on the weights' values, and taking turns puts both
under the same load when other programs share the cores. Each row is the mean over --steps timed steps per
algorithm, after --warmup untimed ones.

Columns: rollout, update and contrast wall seconds (contrast = time inside gcpo.credit_inputs, the no-grad
forwards a credit scheme needs beyond the training pass: GCPO's negative-prompt pass; it is part of update with
weights_from=current and of rollout with weights_from=rollout), the step's wall and process-CPU seconds,
tokens/s (valid response tokens sampled per wall second of the step), the step's FLOPs split into rollout
(sampler), update (training forward and backward) and contrast (GCPO's extra forwards), the FLOP limit (FLOPs /
measured matmul peak: the time the arithmetic alone needs), the step's wall time over that limit, and the peak
memory of the step (process RSS high-water mark, reset before each step, and its rise above the RSS at the
step's start; CUDA: allocated).
Wall seconds grow when other programs share the cores; CPU seconds / threads then estimates the step on
idle cores, from above (OpenMP threads that wait for each other spin, and the spinning counts).

FLOPs are counted from the shapes of every forward the step actually runs (hooks on the model's token
embedding and LM head record each forward's rows R, sequence width S, kept LM-head positions K and whether
gradients are on):

    forward  = 2·P_body·R·S + 2·d·V·R·K          (P_body: parameters outside the token and position embeddings;
                                                 d·V: the LM head, only on the kept positions)
    step     = Σ_no-grad forwards + 3·Σ_grad forwards    (backward ≈ 2 × forward)

Padding tokens count (the model processes them). Attention-score FLOPs (4·n_layer·d per query-key pair),
softmax/logsumexp and the optimizer are left out: under 1% of a GPT-2-size step at these lengths.
The peak is the best of several fp32 (or, with --dtype bfloat16, bf16) n×n torch.matmul calls at the same
thread count, measured in the same run before and after the timed steps.
"""

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import gcpo  # noqa: E402 (after the path insert)
from gcpo_support import kernels, loading  # noqa: E402
from gcpo_support.kernels import CACHE  # noqa: E402


def random_gpt2(path: str) -> str:
    """Save a random-init GPT-2 of the real size (12 layers, width 768) with a 50257-token stand-in BPE."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from toy_envs.text import stand_in_tokenizer

    tokenizer = stand_in_tokenizer(50257, filler_words=400_000)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos))
    with loading.quiet_transformers():  # no "Writing model shards" bar
        model.save_pretrained(path)
    return path


def tiny_bpe_gpt2(path: str) -> str:
    """Save gcpo's tiny architecture (build_policy with model='tiny', Config's default sizes) with a 580-token
    stand-in BPE, so it loads through from_pretrained like any saved model."""
    from toy_envs.text import stand_in_tokenizer

    tokenizer = stand_in_tokenizer(600)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    special = dict(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = gcpo.build_policy(gcpo.make_config(model="tiny"), len(tokenizer), 128, special)
    with loading.quiet_transformers():
        model.save_pretrained(path)
    return path


def forward_flops(body_params: int, head_params: int, rows: int, width: int, kept: int) -> float:
    """FLOPs of one forward: 2·P_body·R·S (every token through the body) + 2·P_head·R·K (the LM head, d·V
    parameters, only on the K kept positions of each of the R rows of width S)."""
    return 2.0 * body_params * rows * width + 2.0 * head_params * rows * kept


def step_flops(calls, body_params: int, head_params: int) -> float:
    """FLOPs of a step from its forwards, calls = [(rows, width, kept, grad)]: no-grad forwards once,
    forwards with gradients 3× (forward + backward ≈ 2 × forward)."""
    return sum((3 if grad else 1) * forward_flops(body_params, head_params, r, s, k) for r, s, k, grad in calls)


def parameter_split(model):
    """(P_body, P_head): parameters outside the input/position embeddings, and those of the LM head (d·V;
    GPT-2 ties it to the token embedding, so it is counted once, where it is used: on the kept positions)."""
    head = model.get_output_embeddings().weight
    embeddings = {id(model.get_input_embeddings().weight), id(head)}
    for name, p in model.named_parameters():  # GPT-2's wpe and other position tables
        if name.endswith(("wpe.weight", "position_embeddings.weight", "embed_positions.weight")):
            embeddings.add(id(p))
    body = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    return body, head.numel()


class ForwardRecorder:
    """Records (phase, rows, width, kept LM-head positions, grad enabled) for every forward of the hooked
    models, from what passes through their token embedding (rows R, width S) and then their LM head (K kept
    positions). `phase` (rollout | update | contrast) is set by whoever drives the step."""

    def __init__(self, *models):
        self.calls, self.phase = [], "rollout"
        models = [m for m in models if m is not None]
        self.handles = [m.get_input_embeddings().register_forward_pre_hook(self.body) for m in models]
        self.handles += [m.get_output_embeddings().register_forward_pre_hook(self.head) for m in models]

    def body(self, module, args):
        rows, width = args[0].shape  # the token ids (R, S)
        self.calls.append([self.phase, rows, width, 0, torch.is_grad_enabled()])

    def head(self, module, args):
        self.calls[-1][3] = args[0].shape[1]  # the hidden states (R, K, d) of that forward's kept positions

    def flops(self, body_params: int, head_params: int, phase: str | None = None) -> float:
        """FLOPs of the recorded forwards (of one phase, or all)."""
        return step_flops([c[1:] for c in self.calls if phase in (None, c[0])], body_params, head_params)

    def remove(self):
        for h in self.handles:
            h.remove()


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, repeats: int = 6) -> float:
    """Best observed FLOP/s of an n×n by n×n torch.matmul (2n³ FLOPs) at the current thread count."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists("/proc/self/clear_refs"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the RSS high-water mark (VmHWM) to the current RSS


def memory(device: str, peak: bool = True) -> tuple[float, str]:
    """(GiB, what it is): CUDA peak (or current) allocated, or the process RSS high-water mark (or current)."""
    if device.startswith("cuda"):
        return (torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()) / 2**30, "CUDA allocated"
    if os.path.exists("/proc/self/status"):
        key = "VmHWM:" if peak else "VmRSS:"
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith(key))
        return kib / 2**20, "process RSS"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS, whole run"  # (Linux: KiB)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


class ContrastTimer:
    """Wraps gcpo.credit_inputs (looked up by name at each call, so credit_weights in update and rollout uses the
    wrapper), accumulates the wall seconds spent inside it and marks its forwards as the `contrast` phase."""

    def __init__(self, device: str, recorder: ForwardRecorder):
        self.device, self.recorder, self.inner = device, recorder, gcpo.credit_inputs
        self.seconds = self.system_seconds = self.page_faults = 0.0

    def __call__(self, *args, **kwargs):
        phase, self.recorder.phase = self.recorder.phase, "contrast"
        sync(self.device)
        t0, (s0, f0) = time.perf_counter(), kernel_usage()
        out = self.inner(*args, **kwargs)
        sync(self.device)
        s1, f1 = kernel_usage()
        self.seconds += time.perf_counter() - t0
        self.system_seconds, self.page_faults = self.system_seconds + s1 - s0, self.page_faults + f1 - f0
        self.recorder.phase = phase
        return out


def kernel_usage() -> tuple[float, int]:
    """(system CPU seconds, minor page faults) of this process so far; (0, 0) where `resource` is missing."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0, 0
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_stime, r.ru_minflt


def timed_step(model, optimizer, ref_model, task, cfg, step: int, timer: ContrastTimer, flop_args) -> dict:
    """One rollout + update; returns its wall/CPU seconds, contrast seconds, tokens, FLOPs and memory."""
    recorder = timer.recorder
    recorder.calls.clear()
    timer.seconds = timer.system_seconds = timer.page_faults = 0.0
    reset_peak_memory(cfg.device)
    start_memory, _ = memory(cfg.device, peak=False)
    sync(cfg.device)
    t0, c0 = time.perf_counter(), time.process_time()
    recorder.phase = "rollout"
    batch, _ = gcpo.rollout(model, task, cfg, step)
    sync(cfg.device)
    t1 = time.perf_counter()
    recorder.phase = "update"
    if batch is not None:
        gcpo.update(model, optimizer, ref_model, batch, cfg, step)
    sync(cfg.device)
    t2, c2 = time.perf_counter(), time.process_time()
    peak, kind = memory(cfg.device)
    return dict(
        rollout=t1 - t0,
        update=t2 - t1,
        contrast=timer.seconds,
        step=t2 - t0,
        cpu=c2 - c0,
        contrast_system=timer.system_seconds,
        contrast_faults=timer.page_faults,
        tokens=0 if batch is None else int(batch["mask"].sum()),
        **{f"flops_{k}": recorder.flops(*flop_args, k) for k in ("rollout", "update", "contrast")},
        memory=peak,
        memory_rise=peak - start_memory,
        memory_kind=kind,
    )


def decode_rollout(model, ids, attn, max_new_tokens: int, cache: str, generator) -> torch.Tensor:
    """gcpo.sample's loop without its bookkeeping: a prefill, then max_new_tokens − 1 forwards of one token per
    row (drawn with gcpo.draw; no stop at EOS, so every way does the same work), through the model's forward with
    the KV cache `cache`: dynamic (Hugging Face's default cache, which grows by concatenation: what gcpo.sample
    uses) or static (a StaticCache allocated for prompt + max_new_tokens). (R, T) tokens."""
    from transformers import StaticCache

    pos = gcpo.position_ids(attn)
    extra = {CACHE: StaticCache(config=model.config, max_cache_len=ids.shape[1] + max_new_tokens)}
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=pos,
        use_cache=True,
        logits_to_keep=1,
        **(extra if cache == "static" else {}),
    )
    logits, nxt, past = out.logits[:, -1], pos[:, -1] + 1, out[CACHE]
    del out
    tokens = []
    for t in range(max_new_tokens):
        tokens.append(gcpo.draw(torch.softmax(logits.float(), -1), generator))  # (R,)
        if t == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
        out = model(
            input_ids=tokens[-1][:, None],
            attention_mask=attn,
            position_ids=nxt[:, None],
            use_cache=True,
            **{CACHE: past},
        )
        logits, past, nxt = out.logits[:, -1], out[CACHE], nxt + 1
    return torch.stack(tokens, 1)


def decode_model(tiny: bool):
    """gcpo's tiny model over the 580-token stand-in BPE, or a random-init GPT-2 of the real size (GPT2Config())
    with the fused GELU gcpo loads GPT-2 with; eval mode, SDPA attention, as gcpo builds them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if tiny:
        return gcpo.build_policy(gcpo.make_config(model="tiny"), 580, 128, dict(bos_token_id=0, eos_token_id=0)).eval()
    return kernels.fuse_gelu(GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa"))).eval()


def decode_bench(model, B: int, G: int, prompt_len: int, max_new_tokens: int, repeats: int) -> list[str]:
    """Seconds per rollout of B prompts x G responses with each KV cache, the caches taking turns: the median over
    `repeats` and the ratio static / dynamic. Prompts are random tokens left-padded by 0..7 positions."""
    ways = ("dynamic", "static")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (B, prompt_len), generator=g)
    attn = (torch.arange(prompt_len) >= (torch.arange(B) % 8)[:, None]).long()  # (B, P): left padding
    ids, attn = (ids * attn).repeat_interleave(G, 0), attn.repeat_interleave(G, 0)
    seconds = {w: [] for w in ways}
    with torch.no_grad():
        for w in ways:  # warm up
            decode_rollout(model, ids, attn, 4, w, torch.Generator().manual_seed(1))
        for _ in range(repeats):
            for w in ways:
                t0 = time.perf_counter()
                decode_rollout(model, ids, attn, max_new_tokens, w, torch.Generator().manual_seed(1))
                seconds[w].append(time.perf_counter() - t0)
                print(f"  {w}: {seconds[w][-1]:.3f} s", file=sys.stderr, flush=True)
    med = {w: statistics.median(v) for w, v in seconds.items()}
    return [
        f"rollout of {B} prompts x {G} responses x {max_new_tokens} new tokens, prompts of {prompt_len} positions "
        f"(left padding 0-7), {torch.get_num_threads()} threads, median of {repeats} (load average "
        f"{load_average()}):",
        f"dynamic s | static s | static / dynamic\n{med['dynamic']:9.3f} | {med['static']:8.3f} | "
        f"{med['static'] / med['dynamic']:16.2f}",
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="", help="hub name or saved directory (default: random-init GPT-2 size)")
    p.add_argument("--tiny", action="store_true", help="gcpo's tiny model (2 layers, width 64) + 580-token BPE")
    p.add_argument("--env", default="topic")
    p.add_argument("--algos", default="dapo,gcpo", help="presets run side by side, comma separated")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per algorithm")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per algorithm first")
    p.add_argument("--shapes", default="4x4,16x8", help="B x G pairs, comma separated")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=0, help="responses per forward/backward (0: whole batch)")
    p.add_argument(
        "--save-model",
        default="",
        metavar="DIR",
        help="only save the model this run would build (GPT-2 size, or --tiny) to DIR and stop; other "
        "programs (bench_trl.py, an older commit's bench_gpt2.py) can then time the same model",
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="only time the sampler's decode loop with each KV cache (GPT-2 size, or --tiny; no download)",
    )
    p.add_argument("--repeats", type=int, default=3, help="with --decode: rollouts per cache (the median is printed)")
    args = p.parse_args(argv)
    if args.model and (args.tiny or args.save_model or args.decode):
        p.error("--tiny, --save-model and --decode build their own model; drop --model")
    if args.save_model:
        (tiny_bpe_gpt2 if args.tiny else random_gpt2)(args.save_model)
        print(f"saved {'the tiny model' if args.tiny else 'a random-init GPT-2 (124M)'} to {args.save_model}")
        return
    if args.steps < 1 or args.warmup < 0 or args.threads < 0:
        p.error("need --steps >= 1, --warmup >= 0 and --threads >= 0")
    try:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        assert all(len(s) == 2 for s in shapes)
    except (ValueError, AssertionError):
        p.error(f"--shapes {args.shapes!r}: write B x G pairs like 4x4,16x8")
    algos = args.algos.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.decode:
        if args.repeats < 1 or args.max_new_tokens < 2:
            p.error("--decode needs --repeats >= 1 and --max-new-tokens >= 2")
        print(
            f"model={'gcpo tiny' if args.tiny else 'random-init GPT-2 124M'}  torch={torch.__version__}  "
            f"cpu={cpu_model()}"
        )
        B, G = shapes[0]
        print("\n".join(decode_bench(decode_model(args.tiny), B, G, 24, args.max_new_tokens, args.repeats)))
        return

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            model_path, name = tiny_bpe_gpt2(tmp), "gcpo tiny GPT-2 (2 layers, width 64) + 580-token stand-in BPE"
        else:
            model_path = args.model or random_gpt2(tmp)
            name = args.model or "random-init GPT-2 124M + 50257-token stand-in BPE"
        try:
            cfgs = {
                a: gcpo.make_config(
                    a,
                    model=model_path,
                    env=args.env,
                    max_new_tokens=args.max_new_tokens,
                    micro_batch=args.micro_batch,
                    device=args.device,
                    dtype=args.dtype,
                    dynamic_sampling=False,
                )  # one rollout per step, so steps are comparable
                for a in algos
            }
            task, _ = loading.build_task(cfgs[algos[0]])
            cfgs = {a: gcpo.resolve(c, task) for a, c in cfgs.items()}
        except ValueError as e:
            p.error(str(e))
        device = cfgs[algos[0]].device
        peak_dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
        peak_before = matmul_peak(device, peak_dtype)
        print(
            f"model={name}  env={args.env}  dtype={args.dtype}  max_new_tokens={args.max_new_tokens}  "
            f"micro_batch={args.micro_batch}  steps={args.steps} (+{args.warmup} warm-up) per algorithm"
        )
        print(
            f"torch={torch.__version__}  transformers={transformers.__version__}  threads={torch.get_num_threads()}  "
            f"device={device}  cpu={cpu_model()} ({os.cpu_count()} logical)  load average={load_average()}"
        )
        print(
            f"{'B x G':>8} | {'algo':<5} | {'rollout s':>9} | {'update s':>8} | {'contrast s':>10} | {'step s':>6} | "
            f"{'CPU s':>6} | {'tokens/s':>8} | {'GFLOP (rollout + update + contrast)':>35} | {'limit s':>7} | "
            f"{'x limit':>7} | peak memory (rise in the step)"
        )
        rows = []
        for B, G in shapes:
            cfgs_bg = {a: dataclasses.replace(c, batch_prompts=B, group_size=G) for a, c in cfgs.items()}
            model = gcpo.build_policy(cfgs_bg[algos[0]], task.vocab_size, 0, {}).to(device).eval()
            body_params, head_params = parameter_split(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfgs_bg[algos[0]].lr)
            ref_model = None
            if any(c.beta > 0 for c in cfgs_bg.values()):
                ref_model = copy.deepcopy(model).requires_grad_(False)
            recorder = ForwardRecorder(model, ref_model)
            timer = ContrastTimer(device, recorder)
            results = {a: [] for a in algos}
            gcpo.credit_inputs = timer
            try:
                with gcpo.autocast(cfgs_bg[algos[0]]):
                    for step in range(args.warmup + args.steps):
                        for a in algos:  # take turns, so every algorithm sees the same load
                            r = timed_step(
                                model,
                                optimizer,
                                ref_model if cfgs_bg[a].beta > 0 else None,
                                task,
                                cfgs_bg[a],
                                step,
                                timer,
                                (body_params, head_params),
                            )
                            if step >= args.warmup:
                                results[a].append(r)
            finally:
                gcpo.credit_inputs = timer.inner
                recorder.remove()
            for a, rs in results.items():
                peak = max(rs, key=lambda r: r["memory"])
                means = {
                    k: sum(r[k] for r in rs) / len(rs)
                    for k in (
                        "rollout",
                        "update",
                        "contrast",
                        "step",
                        "cpu",
                        "flops_rollout",
                        "flops_update",
                        "flops_contrast",
                        "contrast_system",
                        "contrast_faults",
                    )
                }
                rows.append(
                    dict(
                        B=B,
                        G=G,
                        algo=a,
                        **means,
                        tokens_per_s=sum(r["tokens"] for r in rs) / sum(r["step"] for r in rs),
                        memory=peak["memory"],
                        memory_rise=peak["memory_rise"],
                        memory_kind=peak["memory_kind"],
                    )
                )
            del model, optimizer, ref_model
        peak = max(peak_before, matmul_peak(device, peak_dtype))
        for r in rows:
            flops = r["flops_rollout"] + r["flops_update"] + r["flops_contrast"]
            limit = flops / peak
            split = (
                f"{flops / 1e9:.4g} ({r['flops_rollout'] / 1e9:.4g} + {r['flops_update'] / 1e9:.4g} + "
                f"{r['flops_contrast'] / 1e9:.4g})"
            )
            d = 2 if r["step"] >= 1 else 3  # seconds: a tiny model's step needs a third decimal
            print(
                f"{r['B']:>3} x {r['G']:<2} | {r['algo']:<5} | {r['rollout']:9.{d}f} | {r['update']:8.{d}f} | "
                f"{r['contrast']:10.{d}f} | {r['step']:6.{d}f} | {r['cpu']:6.{d}f} | {r['tokens_per_s']:8.0f} | "
                f"{split:>35} | {limit:7.{d}f} | {r['step'] / limit:7.2f} | "
                f"{r['memory']:.2f} GiB {r['memory_kind']} (+{r['memory_rise']:.2f})"
            )
        for r in rows:
            if r["flops_contrast"] > 0:
                print(
                    f"{r['B']} x {r['G']} {r['algo']}: per step the contrast pass spent {r['contrast_system']:.2f} s "
                    f"of system CPU time (the kernel's, e.g. serving page faults) and had "
                    f"{r['contrast_faults']:,.0f} minor page faults"
                )
        print(
            f"matmul peak ({'bf16' if args.dtype == 'bfloat16' else 'fp32'}, 2048x2048, "
            f"{torch.get_num_threads()} threads): {peak / 1e9:.1f} GFLOP/s (before the steps "
            f"{peak_before / 1e9:.1f}); load average after={load_average()}"
        )
    return rows


if __name__ == "__main__":
    main()
