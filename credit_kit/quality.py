"""`python -m credit_kit quality SCHEME`: how well a scheme's credit finds the tokens that decide the reward.

The symbolic toy tasks know their key tokens (the needle's answer, the copied symbols, the painted cells, the sum).
Responses are sampled from a trained policy of each task (G per held-out prompt, as in training); the scheme
weighs them as the trainer would (gcpo.credit_weights), and two numbers say how much of its credit lands on the
key tokens, beside uniform, contrast (GCPO), shuffled and oracle:

    key-token AUC: per response, P(w_key > w_other) over (key, other) token pairs, ties ½ (the Mann-Whitney U over
        n_key·n_other), averaged over the responses that have both kinds; 0.5 = no preference, 1 = key tokens first
    key weight share: Σ w on key tokens / Σ w on valid tokens, over all responses (uniform: the key-token fraction)

each with a 95% percentile bootstrap interval over prompts (a prompt's G responses resampled together).

The policies are made once, `python -m credit_kit quality --make-checkpoints` (a warm start and a short GCPO run per
task, a few minutes on a 2-core x86 CPU), and kept under results/cache/credit_kit/ (git-ignored)."""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import torch

from credit_kit.properties import BUILTIN, load_scheme
from gcpo_support import schemes
from gcpo_support.metrics import average_ranks

TASKS = ("needle", "copy", "gridpaint", "chainsum")
CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "cache", "credit_kit")
BESIDE = ("uniform", "contrast", "shuffled", "oracle")


def per_response(w, key_mask, mask):
    """Per response: AUC (N,) float64 (NaN without both key and other valid tokens), Σ w·key (N,), Σ w (N,)."""
    valid = mask.bool()
    key, other = key_mask & valid, ~key_mask & valid
    n_key, n_other = key.sum(1).double(), other.sum(1).double()
    ranks = average_ranks(w.double(), valid)  # (N, T): ascending, ties share their mean rank
    u = (ranks * key).sum(1) - n_key * (n_key + 1) / 2  # (key, other) pairs with the key token higher
    auc = torch.where((n_key > 0) & (n_other > 0), u / (n_key * n_other).clamp(min=1), torch.nan)
    w = w.double().masked_fill(~valid, 0.0)
    return auc.numpy(), (w * key).sum(1).numpy(), w.sum(1).numpy()


def bootstrap(auc, on_key, total, G: int, boots: int = 1000, seed: int = 0) -> dict:
    """Point estimates and 95% percentile intervals of the AUC and the key share, resampling prompts (groups of G
    consecutive responses) with replacement."""
    n = len(auc) // G
    stats = lambda rows: (
        np.nanmean(auc[rows]) if np.isfinite(auc[rows]).any() else np.nan,
        on_key[rows].sum() / max(total[rows].sum(), 1e-30),
    )
    rng = np.random.default_rng(seed)
    draws = np.array([stats((rng.integers(0, n, n)[:, None] * G + np.arange(G)).ravel()) for _ in range(boots)])
    est = stats(np.arange(n * G))
    out = {}
    for j, name in enumerate(("auc", "share")):
        lo, hi = np.nanpercentile(draws[:, j], [2.5, 97.5]) if np.isfinite(draws[:, j]).any() else (np.nan,) * 2
        out[name] = (float(est[j]), float(lo), float(hi))
    return out


def checkpoint(folder: str, task: str) -> str:
    path = os.path.join(folder, task, "model")
    if not os.path.isdir(path):
        raise ValueError(
            f"no trained {task} policy under {folder}; make them once with `python -m credit_kit "
            f"quality --make-checkpoints` (a few minutes; --checkpoints DIR to put them elsewhere)"
        )
    return path


def make_checkpoints(
    tasks=TASKS, folder: str = CACHE, warm_steps: int = -1, steps: int = 50, seed: int = 1, progress: bool = True
) -> None:
    """A trained toy policy per task: the default warm start, then `steps` GCPO steps; saved under folder/task/."""
    import gcpo

    for task in tasks:
        cfg = gcpo.make_config(
            "gcpo",
            env=task,
            steps=steps,
            warm_steps=warm_steps,
            seed=seed,
            show=0,
            eval_prompts=64,
            device="cpu",
            out=os.path.join(folder, task),
        )
        r = gcpo.train(cfg, progress=progress)
        print(
            f"{task}: eval reward {r['reward_before']:.3f} before RL -> {r['reward_after']:.3f} after {steps} GCPO "
            f"steps; saved in {os.path.join(folder, task)}"
        )


@torch.no_grad()
def responses(task: str, folder: str = CACHE, prompts: int = 64, seed: int = 0):
    """G sampled responses to each of `prompts` held-out prompts under the task's trained policy: (model, batch, cfg)
    with batch as the trainer's (prompts, negatives, responses, mask, key_mask, rewards, adv)."""
    import gcpo

    cfg = gcpo.make_config(
        "gcpo",
        env=task,
        model=checkpoint(folder, task),
        warm_steps=0,
        steps=0,
        show=0,
        eval_prompts=prompts,
        device="cpu",
        seed=seed + 1,
    )
    r = gcpo.train(cfg, progress=False)  # loads the policy (and evaluates it once)
    model, task_, cfg, G = r["model"], r["task"], r["cfg"], r["cfg"].group_size
    prompts_np = np.repeat(r["eval_prompts"], G, axis=0)  # (n·G, P)
    neg_np = task_.negative_prompts(prompts_np, cfg.negative)
    np_rng, gen = gcpo.seeded(cfg, 424242)
    (p, pm), (n, nm) = gcpo.prompt_tensors(task_, prompts_np, "cpu"), gcpo.prompt_tensors(task_, neg_np, "cpu")
    out, mask, _, _ = gcpo.sample(
        model, p, pm, cfg.max_new_tokens, task_.eos_id, task_.pad_id, cfg.temperature, cfg.top_p, gen
    )
    score = task_.score(prompts_np, out.numpy(), rng=np_rng)
    rewards = torch.as_tensor(score.reward, dtype=torch.float64)
    batch = dict(
        prompts=p,
        prompt_mask=pm,
        neg_prompts=n,
        neg_mask=nm,
        responses=out,
        mask=mask,
        key_mask=torch.as_tensor(score.key_mask),
        rewards=rewards,
        adv=gcpo.group_advantages(rewards, G, cfg.adv_scale, cfg.adv_eps).float(),
    )
    return model, batch, cfg


def score_schemes(
    named: dict, tasks=TASKS, folder: str = CACHE, prompts: int = 64, boots: int = 1000, seed: int = 0
) -> list[dict]:
    """One row per (task, scheme): {task, scheme, key_frac, auc: (est, lo, hi), share: (est, lo, hi)}."""
    import gcpo

    rows = []
    for task in tasks:
        model, b, cfg = responses(task, folder, prompts, seed)
        valid = b["mask"].bool()
        key_frac = float((b["key_mask"] & valid).sum() / valid.sum().clamp(min=1))
        for name, scheme in named.items():
            if scheme is None:  # a built-in: under the checkpoint's own config
                scheme = gcpo.credit_scheme(dataclasses.replace(cfg, credit=name))
            w = gcpo.credit_weights(model, b, cfg, scheme, torch.Generator().manual_seed(seed))
            stats = bootstrap(*per_response(w, b["key_mask"], b["mask"]), cfg.group_size, boots, seed)
            rows.append(dict(task=task, scheme=name, key_frac=key_frac, **stats))
    return rows


def table(rows: list[dict], prompts: int, G: int, boots: int, folder: str) -> str:
    ci = lambda t: f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]" if np.isfinite(t[0]) else "n/a"
    w = max(len(r["scheme"]) for r in rows)
    lines = [
        f"credit quality on {prompts} held-out prompts × {G} sampled responses per task, from the policies in "
        f"{folder};",
        f"95% bootstrap intervals over prompts ({boots} resamples)",
        f"{'task':<10} {'key frac':>8}  {'scheme':<{w}}  {'key-token AUC':<22}  key weight share",
    ]
    last = None
    for r in rows:
        task, frac = (r["task"], f"{r['key_frac']:.3f}") if r["task"] != last else ("", "")
        lines.append(f"{task:<10} {frac:>8}  {r['scheme']:<{w}}  {ci(r['auc']):<22}  {ci(r['share'])}")
        last = r["task"]
    lines += [
        "AUC 0.5: no preference for key tokens, 1: every key token above every other; the share under uniform",
        "credit is the key-token fraction; oracle reads the key tokens (a bound, not a method)",
    ]
    return "\n".join(lines)


def shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m credit_kit quality", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "scheme", nargs="?", default="", help="built-in name, package.module:function or path/file.py:function"
    )
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated symbolic tasks")
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts per task (G responses each)")
    p.add_argument("--boots", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoints", default=CACHE, help="folder of the trained policies")
    p.add_argument("--make-checkpoints", action="store_true", help="train the policies (once) and exit")
    p.add_argument("--warm-steps", type=int, default=-1, help="with --make-checkpoints (-1: gcpo.py's default)")
    p.add_argument("--steps", type=int, default=50, help="with --make-checkpoints: GCPO steps after the warm start")
    a = p.parse_args(argv)
    tasks = [t for t in a.tasks.split(",") if t]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(
            f"--tasks {sorted(unknown)}: quality needs tasks that know their key tokens: {', '.join(TASKS)}"
        )
    if a.make_checkpoints:
        make_checkpoints(tasks, a.checkpoints, a.warm_steps, a.steps)
        return 0
    if not a.scheme:
        raise ValueError("name a SCHEME to score (or --make-checkpoints)")
    for t in tasks:
        checkpoint(a.checkpoints, t)
    own = load_scheme(a.scheme)
    schemes.needs(own)
    name = a.scheme if a.scheme in BUILTIN else schemes.info(own).name
    name += " (yours)" if a.scheme not in BUILTIN and name in BESIDE else ""
    name += " (oracle)" if "key_mask" in schemes.needs(own) and name != "oracle" else ""
    named = {name: None if a.scheme in BUILTIN else own, **{b: None for b in BESIDE if b != name}}
    rows = score_schemes(named, tasks, a.checkpoints, a.prompts, a.boots, a.seed)
    import gcpo

    print(table(rows, a.prompts, gcpo.make_config().group_size, a.boots, shown(a.checkpoints)))
    return 0
