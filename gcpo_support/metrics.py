"""What a run measures and writes, never what it trains on: key-token share and AUC of the weights, weight
statistics, clip fractions, token moves, the run files. A reader of gcpo.py can skip it."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import torch

from gcpo_support.checks import check_key_mask
from gcpo_support.loading import quiet_transformers


def average_ranks(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Ascending ranks 1..N_i of each row's valid scores, ties sharing their mean rank. (N, T) → (N, T) float;
    the values on invalid positions are meaningless. By counting pairs: rank_t = #{s < s_t} + (#{s = s_t} + 1)/2
    over the row's valid tokens (O(T²) memory per row, fine for the diagnostics it serves)."""
    s, v = scores[:, :, None], valid[:, None, :]  # (N, T, 1) against (N, 1, T)
    below = ((scores[:, None, :] < s) & v).sum(-1)  # (N, T)
    equal = ((scores[:, None, :] == s) & v).sum(-1)
    return below.to(scores.dtype) + (equal.to(scores.dtype) + 1) / 2


def key_token_share(weights, key_mask, mask) -> torch.Tensor:
    """Σ w on key tokens / Σ w on valid tokens, over the whole batch (uniform weights give the key fraction)."""
    valid = check_key_mask(weights, key_mask, mask)
    weights = weights.masked_fill(~valid, 0.0)
    return (weights * key_mask).sum() / weights.sum().clamp(min=1e-30)


def key_token_auc(weights, key_mask, mask) -> torch.Tensor:
    """Ranking AUC of weights, key vs other valid tokens, per response (ties count ½), averaged over the
    responses that have both kinds; NaN if none has. 0.5 = no preference, 1 = every key token ranks first."""
    valid = check_key_mask(weights, key_mask, mask)
    if weights.shape[1] == 0:
        return torch.tensor(float("nan"))
    key, other = key_mask & valid, ~key_mask & valid
    n_key, n_other = key.sum(1).double(), other.sum(1).double()  # (N,)
    ranks = average_ranks(weights.double(), valid)  # (N, T)
    u_stat = (ranks * key).sum(1) - n_key * (n_key + 1) / 2  # (N,) Mann-Whitney U: (key, other) pairs, key higher
    both = (n_key > 0) & (n_other > 0)
    auc = u_stat[both] / (n_key[both] * n_other[both])
    return auc.mean() if both.any() else torch.tensor(float("nan"))


def weight_metrics(w, key_mask, mask, logp=None) -> dict:
    """Weight statistics logged for GCPO: mean of per-response max and std, share of the top 40% of tokens;
    when the task knows its key tokens, the weight share on key tokens and their ranking AUC; with the
    log-probs, the mean −log π (a one-sample entropy estimate) of high-weight (w > 1) and low-weight tokens.
    Per-response statistics are averaged over the responses with at least one valid token."""
    valid = mask.bool()
    rows = valid.any(1)  # (N,): responses that have a token (an overlong-filtered one has none)
    w = w.masked_fill(~valid, 0.0)  # (whatever a scheme leaves on padding never counts)
    n = valid.sum(1).clamp(min=1)
    mean = w.sum(1) / n
    std = ((w - mean[:, None]).masked_fill(~valid, 0.0) ** 2).sum(1).div(n).sqrt()
    top = w.masked_fill(~valid, -1.0).sort(1, descending=True).values  # (N, T)
    k = (0.4 * n.double()).ceil().long()  # (N,)
    in_top = torch.arange(w.shape[1], device=w.device)[None] < k[:, None]  # (N, T): the first k sorted positions
    top_mass = (top.clamp(min=0) * in_top).sum(1) / w.sum(1).clamp(min=1e-30)
    per_row = lambda x: x[rows].mean().item() if rows.any() else math.nan
    out = {
        "weight_max": per_row(w.masked_fill(~valid, -math.inf).max(1).values),
        "weight_std": per_row(std),
        "weight_top40_mass": per_row(top_mass),
    }
    if key_mask.any():
        out["key_weight_share"] = key_token_share(w, key_mask, mask).item()
        auc = key_token_auc(w, key_mask, mask).item()
        if math.isfinite(auc):  # undefined when no response has both key and other tokens: left out
            out["key_weight_auc"] = auc
    if logp is not None:
        for name, sel in (("high_w", valid & (w > 1)), ("low_w", valid & (w <= 1))):
            if sel.any():  # (uniform credit has no token with w > 1: left out, not 0)
                out[f"neglogp_{name}"] = (-logp * sel).sum().div(sel.sum()).item()
    return out


def clip_fractions(ratio, advantages, mask, eps_low, eps_high, dual_clip):
    """Fractions of valid tokens whose gradient the clip removes: high (Ã > 0, ρ > 1 + ε_high), low
    (Ã < 0, ρ < 1 − ε_low) and dual (Ã < 0, ρ > c). (N, T) inputs → dict of floats."""
    valid = mask.bool()
    n = valid.sum().clamp(min=1)
    frac = lambda b: ((b & valid).sum() / n).item()
    return {
        "clipfrac_high": frac((advantages > 0) & (ratio > 1 + eps_high)),
        "clipfrac_low": frac((advantages < 0) & (ratio < 1 - eps_low)),
        "clipfrac_dual": frac((advantages < 0) & (ratio > dual_clip)) if dual_clip > 0 else 0.0,
    }


def token_moves(logp_new, logp_old, w, mask) -> dict:
    """--log-token-moves: mean |log π_new − log π_old| over the high- (w > 1) and low-weight tokens, after the
    update. (n, T) tensors in, two floats out."""
    moved, valid = (logp_new - logp_old).abs(), mask.bool()  # (n, T)
    return {
        f"logp_move_{name}": ((moved * sel).sum() / sel.sum().clamp(min=1)).item()
        for name, sel in (("high_w", valid & (w > 1)), ("low_w", valid & (w <= 1)))
    }


def provenance() -> dict:
    """Everything besides the config that changes a run's float trajectory: versions, threads, CPU, commit."""
    import platform
    import subprocess

    import numpy
    import transformers

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "git_commit": commit,
    }


class RunOutput:
    """What a run writes under cfg.out (nothing when it is empty): config.json (the resolved config, and under
    "provenance" what else changes a trajectory: library versions, threads, CPU, git commit), metrics.jsonl (the
    evaluation before RL, then one JSON object per RL step; an undefined value such as NaN is left out, so every
    line is valid JSON) and, at the end, the model (and a text task's tokenizer) with save_pretrained."""

    def __init__(self, cfg):
        self.out, self.file = cfg.out, None
        if self.out:
            os.makedirs(self.out, exist_ok=True)
            with open(os.path.join(self.out, "config.json"), "w") as f:
                json.dump({**dataclasses.asdict(cfg), "provenance": provenance()}, f, indent=1)
            self.file = open(os.path.join(self.out, "metrics.jsonl"), "w")

    def log(self, metrics: dict) -> None:
        if self.file:
            finite = {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}
            self.file.write(json.dumps(finite, allow_nan=False) + "\n")

    def close(self, model, tokenizer=None) -> None:
        if self.file:
            self.file.close()
        if self.out:
            with quiet_transformers():
                model.save_pretrained(os.path.join(self.out, "model"))
            if tokenizer is not None:  # so that --model DIR/model loads both
                tokenizer.save_pretrained(os.path.join(self.out, "model"))
