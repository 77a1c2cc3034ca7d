"""What a reader of gcpo.py can skip: option ranges and input checks; the token-score and weight laws and the
study's credit controls that neither GCPO default uses; diagnostics of the weights; a leaner backward for
chosen-token log-probs, GPT-2's fused GELU, and the sampler's draw and GPT-2 decode loop (speed, not
arithmetic); the command line; loading pretrained models and tokenizers with one-line errors; the bit-exact
official weight loop; the printed samples and run summary. gcpo.py imports what it needs from here."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import json
import math
import os
import sys
import textwrap
import tokenize
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------
# OPTION RANGES AND INPUT CHECKS

@dataclass(frozen=True)
class Range:
    """A numeric option's valid values: lo..hi (open or closed ends), optionally integers only, plus `also`
    (single extra values, e.g. 0 = off). NaN and ±inf are never inside."""
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    also: tuple = ()

    def __contains__(self, x) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or (self.integer and not isinstance(x, int)):
            return False
        if x in self.also:
            return True
        return math.isfinite(x) and (self.lo < x if self.lo_open else self.lo <= x) and \
            (x < self.hi if self.hi_open else x <= self.hi)

    def __str__(self) -> str:
        fmt = lambda v: str(v) if isinstance(v, int) else f"{v:g}"  # inf, -inf, 0.5, 1e-09
        left = "(" if self.lo_open or self.lo == -math.inf else "["
        right = ")" if self.hi_open or self.hi == math.inf else "]"
        text = f"{left}{fmt(self.lo)}, {fmt(self.hi)}{right}"
        text = f"{' or '.join(f'{v:g}' for v in self.also)} or {text}" if self.also else text
        return f"int in {text}" if self.integer else text


def _int(lo, hi=math.inf):
    return Range(lo, hi, integer=True)


POSITIVE, NONNEG, UNIT = Range(0, lo_open=True), Range(0), Range(0, 1)
RANGES = {  # every numeric option's valid values (shown by --help, checked by validate_config)
    "seed": _int(0, 2**63 - 1), "steps": _int(0), "show": _int(0),
    "n_layer": _int(1), "n_embd": _int(1), "n_head": _int(1),
    "warm_steps": _int(-1), "warm_batch": _int(1), "warm_lr": Range(0, 1, lo_open=True),
    "demo_accuracy": UNIT, "null_prob": UNIT,
    "batch_prompts": _int(1), "group_size": _int(2), "temperature": Range(1e-3, 1e3),
    "top_p": Range(0, 1, lo_open=True), "max_new_tokens": _int(0), "guidance_scale": Range(0, 100),
    "overlong_buffer": _int(0), "max_sampling_tries": _int(1), "adv_eps": NONNEG,
    "top_fraction": Range(1e-9, 1, hi_open=True), "target_mass": Range(0, 1 - 1e-9, lo_open=True),
    "softmax_temp": POSITIVE, "eps_low": Range(0, 1, hi_open=True), "eps_high": Range(0, 10),
    "dual_clip": Range(1, lo_open=True, also=(0,)), "beta": Range(0, 100), "entropy_penalty": Range(-1, 1),
    "lr": Range(0, 1, lo_open=True), "epochs": _int(1), "minibatches": _int(1), "micro_batch": _int(0),
    "max_grad_norm": POSITIVE, "eval_prompts": _int(1), "eval_every": _int(0),
}


def check_value(name: str, value, valid: Range) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is outside its valid range {valid}")


def check_hist_params(top_fraction: float, target_mass: float) -> None:
    if not (0 < top_fraction < 1 and 0 < target_mass < 1 and 1.0 - top_fraction < 1.0 and 1.0 - target_mass > 0.0):
        raise ValueError(f"top_fraction={top_fraction} and target_mass={target_mass} must both be in (0, 1), "
                         "far enough from 0 and 1 that 1 − x is not rounded to 1 or 0")
    if target_mass < top_fraction:
        raise ValueError(f"target_mass={target_mass} < top_fraction={top_fraction} would favour low-contrast "
                         "tokens; use target_mass >= top_fraction (equal gives uniform weights)")


def check_rewards(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Rewards must be n finite numbers; anything else is an error, never silently fixed."""
    if rewards.shape != (n,):
        raise ValueError(f"expected one reward per response, shape ({n},), got {tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()[:5]
        raise ValueError(f"rewards must be finite; NaN/inf at responses {bad}: fix the reward function")
    return rewards


def check_shapes(ndim: int, **tensors) -> None:
    """The public functions' boundary check: the first tensor has `ndim` dimensions and every other one (None
    skipped) exactly its shape; no broadcasting, so (N,) where (N, T) is meant is an error even when N == T."""
    (first, ref), *rest = [(k, v) for k, v in tensors.items() if v is not None]
    if ref.ndim != ndim:
        raise ValueError(f"{first} must be {ndim}-D, got shape {tuple(ref.shape)}")
    for name, t in rest:
        if t.shape != ref.shape:
            raise ValueError(f"{name} must have {first}'s shape {tuple(ref.shape)}, got {tuple(t.shape)}")


def check_float(**tensors) -> None:
    for name, t in tensors.items():
        if t is not None and not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")


def validate_config(cfg) -> None:
    """Every option in its declared range or set, and no combination that cannot work; raises ValueError with
    one line naming the option and the fix. Checks that need the task live in `gcpo.resolve`."""
    from gcpo import CHOICES, Config

    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if f.name in CHOICES and value not in CHOICES[f.name]:
            raise ValueError(f"{f.name}={value!r} is not an option; choose one of {list(CHOICES[f.name])}")
        if f.name in RANGES and value not in RANGES[f.name]:
            raise ValueError(f"{f.name}={value!r} is outside its valid range {RANGES[f.name]}")
        if f.type == "bool" and not isinstance(value, bool):
            raise ValueError(f"{f.name}={value!r} must be true or false")
    check_hist_params(cfg.top_fraction, cfg.target_mass)
    if cfg.model == "tiny" and cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}; pick a width that is")
    if cfg.surrogate == "log_hinge" and cfg.dual_clip:
        raise ValueError("dual_clip bounds PPO's ρ-scaled gradient and has no meaning for surrogate=log_hinge; "
                         "use --dual-clip 0")
    if cfg.kl_reweight and (cfg.credit == "uniform" or cfg.beta == 0):
        raise ValueError("kl_reweight reweights the KL term by the token weights: it needs beta > 0 and "
                         "credit other than uniform")
    if cfg.log_token_moves and cfg.credit == "uniform":
        raise ValueError("log_token_moves compares high- and low-weight tokens; uniform credit has no weights")
    if cfg.show > cfg.eval_prompts:
        raise ValueError(f"show={cfg.show} exceeds eval_prompts={cfg.eval_prompts}; show at most that many")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available here; use --device cpu or auto")
    for name, is_dir in (("out", True), ("html", False)):
        path = os.path.abspath(os.path.expanduser(getattr(cfg, name))) if getattr(cfg, name) else ""
        if path and (os.path.isdir(path) != is_dir and os.path.exists(path)):
            raise ValueError(f"{name}={getattr(cfg, name)!r} exists and is not a {'directory' if is_dir else 'file'}")
        parent = path
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        writable = os.path.isdir(parent) and os.access(parent, os.W_OK)
        if path and (not writable or (not is_dir and parent != os.path.dirname(path))):
            raise ValueError(f"{name}={getattr(cfg, name)!r} cannot be written (its folder is missing or read-only)")


def model_positions(model):
    """How many positions the model has (n_positions for GPT-2, max_position_embeddings for most others), or None."""
    return getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)


def check_model_inputs(model, length: int, **ids) -> None:
    """Token ids inside the model's vocabulary, at least one prompt token, and `length` (prompt + response)
    within the model's positions: a clear error instead of an index error deep inside the model."""
    V = model.get_input_embeddings().num_embeddings
    for name, t in ids.items():
        if t.is_floating_point() or (t.numel() and (t.min() < 0 or t.max() >= V)):
            raise ValueError(f"{name} must hold integer token ids in [0, {V}) of the model's vocabulary")
    if ids["prompts"].shape[1] == 0:
        raise ValueError("prompts need at least one token (position P−1 predicts the first response token)")
    positions = model_positions(model)
    if positions and length > positions:
        raise ValueError(f"prompt + response tokens = {length} exceed the model's {positions} positions (n_positions); "
                         "use shorter responses (max_new_tokens) or a model with more positions")


def check_key_mask(weights, key_mask, mask) -> torch.Tensor:
    check_shapes(2, weights=weights, key_mask=key_mask, mask=mask)
    if key_mask.dtype != torch.bool:
        raise ValueError(f"key_mask must be a bool tensor, got {key_mask.dtype}")
    return mask.bool()


def check_groups(rewards: torch.Tensor, group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size={group_size!r}: a group needs an int of at least 2 responses per prompt")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (B·G,) with group_size {group_size} dividing it, got {tuple(rewards.shape)}")


def check_logprob_inputs(model, prompts, prompt_mask, responses, temperature):
    """response_logprobs' boundary: shapes, temperature, token ids and positions. Returns ((N, P), T)."""
    check_shapes(2, prompts=prompts, prompt_mask=prompt_mask)
    check_value("temperature", temperature, RANGES["temperature"])
    (N, P), T = prompts.shape, responses.shape[-1]
    if responses.shape != (N, T):
        raise ValueError(f"responses must be (N={N}, T), got shape {tuple(responses.shape)}")
    if N:
        check_model_inputs(model, P + T, prompts=prompts, responses=responses)
    return (N, P), T


def check_sample_inputs(model, prompts, prompt_mask, max_new_tokens, eos_id, pad_id, temperature, top_p,
                        neg_prompts, neg_mask, guidance_scale):
    """sample's boundary: shapes, sampling parameters, special ids, token ids, positions, non-empty prompts."""
    check_shapes(2, prompts=prompts, prompt_mask=prompt_mask)
    check_value("max_new_tokens", max_new_tokens, RANGES["max_new_tokens"])
    for name, value in (("temperature", temperature), ("top_p", top_p), ("guidance_scale", guidance_scale)):
        check_value(name, value, RANGES[name])
    N, V = prompts.shape[0], model.get_input_embeddings().num_embeddings
    for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
        check_value(name, value, Range(0, V, hi_open=True, integer=True))
    if N == 0:
        return
    check_model_inputs(model, prompts.shape[1] + max_new_tokens, prompts=prompts)
    if not prompt_mask.bool().any(1).all():
        raise ValueError("every prompt needs at least one unmasked token (a prompt_mask row is all 0)")
    if guidance_scale != 1.0:
        if neg_prompts is None or neg_mask is None:
            raise ValueError("guidance_scale != 1 needs neg_prompts and neg_mask (the negative prompt it guides from)")
        check_shapes(2, neg_prompts=neg_prompts, neg_mask=neg_mask)
        if neg_prompts.shape[0] != N:
            raise ValueError(f"neg_prompts must have one row per prompt ({N}), got {neg_prompts.shape[0]}")
        check_model_inputs(model, neg_prompts.shape[1] + max_new_tokens, prompts=neg_prompts)


def check_loss_inputs(logp, logp_old, advantages, mask, ref_logp, kl_weights, surrogate, kl_estimator, **params):
    """policy_loss's boundary: every (N, T) input exactly logp's shape, every coefficient in its range."""
    check_shapes(2, logp=logp, logp_old=logp_old, advantages=advantages, mask=mask, ref_logp=ref_logp,
                 kl_weights=kl_weights)
    for name, value in params.items():
        check_value(name, value, RANGES[name])
    if surrogate == "log_hinge" and params["dual_clip"]:
        raise ValueError("dual_clip has no meaning for surrogate='log_hinge'; pass dual_clip=0")
    if kl_estimator not in ("k3", "k1"):
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; choose k3 or k1")


def check_rewards_for_groups(rewards, group_size, eps):
    """group_advantages' boundary; integer (0/1) rewards are promoted to float losslessly."""
    check_groups(rewards, group_size)
    check_value("eps", eps, RANGES["adv_eps"])
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    if not rewards.isfinite().all():
        raise ValueError("rewards must be finite; NaN/inf found: fix the reward function")
    return rewards


def check_overlong_inputs(lengths, max_len, buffer) -> None:
    check_value("max_len", max_len, RANGES["max_new_tokens"])
    if buffer not in Range(1, max_len, integer=True):
        raise ValueError(f"overlong buffer L_cache={buffer!r} must be an int in (0, L_max={max_len}]")
    if lengths.ndim != 1 or lengths.is_floating_point() or (lengths.numel() and lengths.min() < 0):
        raise ValueError(f"lengths must be a 1-D tensor of token counts >= 0, got {lengths.dtype} "
                         f"{tuple(lengths.shape)}")


def check_task_options(cfg, task) -> None:
    """The option combinations that only the task can judge: its negative prompts, its response length, EOS."""
    if cfg.negative and cfg.negative not in task.negative_kinds:
        raise ValueError(f"negative={cfg.negative!r} is not offered by {task.name}; choose from {task.negative_kinds}")
    if 0 < cfg.max_new_tokens < task.max_new_tokens and task.require_eos:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens} is shorter than a full {task.name} response "
                         f"({task.max_new_tokens} tokens with EOS), so every response would score 0; use at least "
                         "that, or 0 for the task's own")
    if cfg.overlong_buffer > (cfg.max_new_tokens or task.max_new_tokens):
        raise ValueError(f"overlong_buffer={cfg.overlong_buffer} exceeds the response cap "
                         f"{cfg.max_new_tokens or task.max_new_tokens}; use a buffer within it")
    if cfg.overlong_filter and not task.require_eos:
        raise ValueError(f"overlong_filter masks responses without EOS, but {task.name}'s responses need not end "
                         "with one (require_eos=False), so it would mask every token; drop --overlong-filter")


def check_positions(model, cfg, task) -> None:
    """The model must have positions for a prompt plus a full response, and for a demonstration if it warms up."""
    positions = model_positions(model)
    if positions and positions < max(task.prompt_len + cfg.max_new_tokens, task.demo_len if cfg.warm_steps else 0):
        raise ValueError(f"model {cfg.model!r} has {positions} positions, fewer than the prompt ({task.prompt_len}) "
                         f"plus response ({cfg.max_new_tokens}) tokens or a demonstration ({task.demo_len}); "
                         "use a shorter task or a model with more positions")


def check_aggregate_inputs(x, mask, loss_agg, total_tokens, total_seqs, max_len) -> None:
    """aggregate's boundary: shapes, and counts that can be the whole mini-batch's (never below this one's)."""
    check_shapes(2, x=x, mask=mask)
    m = mask.to(x.dtype)
    if loss_agg == "token-mean":
        if total_tokens is not None and not torch.as_tensor(total_tokens, dtype=x.dtype) >= m.sum():
            raise ValueError(f"total_tokens={float(total_tokens)} is below this micro-batch's {int(m.sum())} valid "
                             "tokens; pass the whole mini-batch's count")
        return
    seqs = x.shape[0] if total_seqs is None else total_seqs
    if not (isinstance(seqs, int) and seqs >= x.shape[0]):
        raise ValueError(f"total_seqs={seqs!r} must be an int >= this micro-batch's {x.shape[0]} responses")
    longest = int(m.sum(1).max()) if m.numel() else 0
    if loss_agg == "seq-mean-token-sum-norm" and not (isinstance(max_len, int) and max_len >= max(longest, 1)):
        raise ValueError(f"loss_agg='seq-mean-token-sum-norm' needs max_len = L_max, an int >= the longest "
                         f"response ({longest} tokens), got {max_len!r}")


class RunOutput:
    """What a run writes under cfg.out (nothing when it is empty): config.json (the resolved config),
    metrics.jsonl (one JSON object per RL step; an undefined value such as NaN is left out, so every line is valid
    JSON) and, at the end, the model (and a text task's tokenizer) with save_pretrained."""

    def __init__(self, cfg):
        self.out, self.file = cfg.out, None
        if self.out:
            os.makedirs(self.out, exist_ok=True)
            with open(os.path.join(self.out, "config.json"), "w") as f:
                json.dump(dataclasses.asdict(cfg), f, indent=1)
            self.file = open(os.path.join(self.out, "metrics.jsonl"), "w")

    def log(self, metrics: dict) -> None:
        if self.file:
            finite = {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}
            self.file.write(json.dumps(finite, allow_nan=False) + "\n")

    def close(self, model, tokenizer=None) -> None:
        if self.file:
            self.file.close()
        if self.out:
            model.save_pretrained(os.path.join(self.out, "model"))
            if tokenizer is not None:  # so that --model DIR/model loads both
                tokenizer.save_pretrained(os.path.join(self.out, "model"))


# ---------------------------------------------------------------------------------------------------------
# WEIGHT VARIANTS AND DIAGNOSTICS: the ablation laws, and what gcpo.update logs about the weights


def variant_scores(logp, logp_neg, d, valid, divergence):
    """The token scores neither GCPO default uses (gcpo.token_scores; (N, T) in and out, d = clamp(logp⁻ − logp)):
    abs: η = |d|;  info_gain: η = logp − logp⁻ clamped to [0, its 0.9 quantile over the response's valid tokens]
    (per response; the official code takes the quantile over the whole batch)."""
    if divergence == "abs":
        return d.abs()
    if divergence == "info_gain":
        gain = (logp - logp_neg).float()  # (N, T); quantiles need float32 or float64
        cap = torch.nanquantile(gain.masked_fill(~valid, float("nan")), 0.9, dim=1, keepdim=True)  # (N, 1)
        return torch.minimum(gain.clamp(min=0.0), cap.nan_to_num(0.0).clamp(min=0.0))
    raise ValueError(f"unknown divergence {divergence!r}; choose kl, full_kl, abs or info_gain")


def variant_weights(scores, valid, n_valid, normalization, softmax_temp=1.0):
    """The score → weight laws besides `hist` (gcpo.normalize_weights; scores (N, T), n_valid (N, 1)):
    softmax: w = N·softmax_t(η_t / max_t η_t / τ_w);  minmax (official): (η − min)/(max − min + 1e-8) clamped to
    [0.2, 1], then rescaled to mean 1;  none: w = η. 0 on padding. (normalize_weights checks the inputs.)"""
    if normalization == "softmax":
        scale = scores.masked_fill(~valid, 0.0).max(1, keepdim=True).values.clamp(min=1e-8)  # (N, 1)
        z = (scores / scale / softmax_temp).masked_fill(~valid, float("-inf"))
        return torch.where(valid, z.softmax(1) * n_valid, torch.zeros_like(scores))
    if normalization == "minmax":
        lo = scores.masked_fill(~valid, float("inf")).min(1, keepdim=True).values
        hi = scores.masked_fill(~valid, float("-inf")).max(1, keepdim=True).values.clamp(min=1e-8)
        w = ((scores - lo) / (hi - lo + 1e-8)).clamp(0.2, 1.0).masked_fill(~valid, 0.0)
        return w / w.sum(1, keepdim=True).clamp(min=1e-30) * n_valid
    if normalization == "none":
        return scores.masked_fill(~valid, 0.0)
    raise ValueError(f"unknown normalization {normalization!r}; choose hist, softmax, minmax or none")


@torch.no_grad()
def shuffle_weights(weights, mask, generator=None):
    """The `shuffled` control: each response's valid weights permuted uniformly at random among its valid
    tokens, (N, T) → (N, T). The same weights (so the same distribution and step sizes), no information about
    which token they belong to; padding stays 0."""
    valid = mask.bool()
    noise = torch.rand(weights.shape, generator=generator, device=weights.device)  # (N, T)
    to = (~valid).long().argsort(dim=1, stable=True)  # (N, T): valid positions first, in order
    source = noise.masked_fill(~valid, 2.0).argsort(dim=1)  # (N, T): valid positions first, in random order
    return torch.zeros_like(weights).scatter_(1, to, weights.gather(1, source))


@torch.no_grad()
def oracle_weights(key_mask, mask, top_fraction=0.4, target_mass=0.8):
    """The `oracle` upper bound: GCPO's `hist` weight law applied to the task's ground truth, score 1 on key
    tokens and 0 elsewhere, ties averaged. (N, T) bool key_mask, (N, T) mask → (N, T) weights: key tokens share
    the largest weight; a response whose tokens are all keys, or none, gets w ≡ 1."""
    from gcpo import normalize_weights

    scores = (key_mask & mask.bool()).float()
    return normalize_weights(scores, mask, "hist", "average", top_fraction, target_mass)


def average_ranks(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Ascending ranks 1..N_i of each row's valid scores, ties sharing their mean rank. (N, T) → (N, T) float;
    the values on invalid positions are meaningless."""
    from gcpo import sorted_ranks

    _, order, mean_rank = sorted_ranks(scores, valid)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


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
    log-probs, the mean −log π (a one-sample entropy estimate) of high-weight (w > 1) and low-weight tokens."""
    valid = mask.bool()
    n = valid.sum(1).clamp(min=1)
    mean = (w * valid).sum(1) / n
    std = (((w - mean[:, None]) ** 2 * valid).sum(1) / n).sqrt()
    top = w.masked_fill(~valid, -1.0).sort(1, descending=True).values  # (N, T)
    k = (0.4 * n.double()).ceil().long()  # (N,)
    in_top = torch.arange(w.shape[1], device=w.device)[None] < k[:, None]  # (N, T): the first k sorted positions
    top_mass = (top.clamp(min=0) * in_top).sum(1) / (w * valid).sum(1).clamp(min=1e-30)
    out = {"weight_max": w.masked_fill(~valid, 0).max(1).values.mean().item(), "weight_std": std.mean().item(),
           "weight_top40_mass": top_mass.mean().item()}
    if key_mask.any():
        out["key_weight_share"] = key_token_share(w, key_mask, mask).item()
        auc = key_token_auc(w, key_mask, mask).item()
        if math.isfinite(auc):  # undefined when no response has both key and other tokens: left out
            out["key_weight_auc"] = auc
    if logp is not None:
        for name, sel in (("high_w", valid & (w > 1)), ("low_w", valid & (w <= 1))):
            count = sel.sum().clamp(min=1)
            out[f"neglogp_{name}"] = (-logp * sel).sum().div(count).item()
    return out


def clip_fractions(ratio, advantages, mask, eps_low, eps_high, dual_clip):
    """Fractions of valid tokens whose gradient the clip removes: high (Ã > 0, ρ > 1 + ε_high), low
    (Ã < 0, ρ < 1 − ε_low) and dual (Ã < 0, ρ > c). (N, T) inputs → dict of floats."""
    valid = mask.bool()
    n = valid.sum().clamp(min=1)
    frac = lambda b: ((b & valid).sum() / n).item()
    return {"clipfrac_high": frac((advantages > 0) & (ratio > 1 + eps_high)),
            "clipfrac_low": frac((advantages < 0) & (ratio < 1 - eps_low)),
            "clipfrac_dual": frac((advantages < 0) & (ratio > dual_clip)) if dual_clip > 0 else 0.0}


@torch.no_grad()
def token_moves(model, batch, w, idx, temperature) -> dict:
    """--log-token-moves: mean |log π_new − log π_old| over the batch's high- (w > 1) and low-weight tokens,
    after the update. w (n, T) holds the weights of the batch rows idx (n,)."""
    from gcpo import response_logprobs

    new, _ = response_logprobs(model, batch["prompts"], batch["prompt_mask"], batch["responses"], temperature)
    moved, valid = (new - batch["logp_old"]).abs()[idx], batch["mask"][idx].bool()  # (n, T)
    return {f"logp_move_{name}": ((moved * sel).sum() / sel.sum().clamp(min=1)).item()
            for name, sel in (("high_w", valid & (w > 1)), ("low_w", valid & (w <= 1)))}


# ---------------------------------------------------------------------------------------------------------
# A LEANER BACKWARD FOR CHOSEN-TOKEN LOG-PROBS (gcpo.response_logprobs)


class ChosenLogProbs(torch.autograd.Function):
    """logp (N, T) = ℓ[:, t, y_t] − logsumexp(ℓ[:, t]) for t < T, from logits ℓ (N, T+1, V) whose last position
    predicts nothing (Hugging Face's `logits_to_keep=T+1` keeps it), and tokens y (N, T).

    The value and the gradient equal autograd's on `ℓ[:, :-1].gather(y) − ℓ[:, :-1].logsumexp()` bit for bit, up
    to the sign of a zero (tests/test_logprob_equiv.py): ∂/∂ℓ_v = g·(1[v = y_t] − exp(ℓ_v − lse)) is computed as
    (−g)·exp(ℓ − lse) plus g at y_t, autograd's own floating-point operations, except that autograd also adds
    the +0 of its scatter everywhere, which turns an underflowed −0 into +0 (sums, norms and the optimizer give
    the same result for either). The saving is memory traffic at a large vocabulary: autograd writes four
    (N, T+1, V)-sized tensors in the backward (the gather's zero-filled scatter, the logsumexp term, their sum,
    the slice's zero-padded copy); this writes one, in place."""

    @staticmethod
    def forward(ctx, logits, tokens):
        x = logits[:, :-1]  # (N, T, V): position t predicts y_t
        lse = x.logsumexp(-1)  # (N, T)
        ctx.save_for_backward(logits, tokens, lse)
        return x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        logits, tokens, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)  # (N, T+1, V)
        grad[:, -1].zero_()  # the last position predicts nothing
        x = grad[:, :-1]
        torch.sub(logits[:, :-1], lse.unsqueeze(-1), out=x)
        x.exp_().mul_(-g.unsqueeze(-1))  # −g·softmax
        x.scatter_add_(-1, tokens.unsqueeze(-1), g.unsqueeze(-1))  # + g at the chosen token
        return grad, None


# ---------------------------------------------------------------------------------------------------------
# THE SAMPLER'S DECODE LOOP, WITHOUT ITS OVERHEAD (gcpo.sample): same numbers, less work


def draw_tokens(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One token per row from (N, V) probabilities (rows need not sum to 1): exactly the tokens
    `torch.multinomial(probs, 1, generator=generator).squeeze(-1)` returns, and the generator ends in the same
    state, in less time on CPU (benchmarks/profile_step.py times both; 1.3–2× at 128 rows of 580 to 50,257
    entries, one or two threads).

    torch (CPU, one sample) draws u ~ U[0, 1) per entry as a 53-bit double, in memory order, q = float32(−log1p(−u))
    ~ Exp(1), and returns the first argmax of p/q in float32 (the exponential race: P(v wins) = p_v / Σp). Its
    kernel calls the C library's log1p one element at a time. Here the same uniforms come from `uniform_` on a
    double tensor of the same layout (the same generator calls in the same order), a vectorised log1p gives every
    q to within one float32 ulp, and only the entries whose p/q is within 1e-5 of their row's best (usually one)
    get the C library's exact q before the argmax; a row whose best is not a normal float (below 1e-30, infinite
    or NaN) is recomputed whole. A contiguous input goes in pieces of about a million entries, so the buffers stay
    small; the draws are the same. Tests check the tokens and the generator state against torch.multinomial.
    Other devices and dtypes, empty or grad-requiring input and invalid rows (torch raises its own error) go to
    torch.multinomial itself."""
    if (probs.device.type != "cpu" or probs.dtype != torch.float32 or probs.dim() != 2 or 0 in probs.shape
            or probs.requires_grad):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if not bool((probs.max() < math.inf) & (probs.min() >= 0)) or bool((probs.sum(-1) == 0).any()):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # raises torch's error
    if not probs.is_contiguous():  # one piece, its uniforms in the input's own memory order, as torch's
        return exponential_race(probs, generator)
    return torch.cat([exponential_race(p, generator) for p in probs.split(max(1, 2**20 // probs.shape[1]))])


def exponential_race(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """draw_tokens for valid (n, V) float32 CPU probabilities: argmax_v p_v / q_v with torch's exponentials q."""
    minus_u = torch.empty_like(probs, dtype=torch.float64).uniform_(generator=generator).neg_()  # (n, V): −u
    race = torch.log1p(minus_u).neg_().float()  # (n, V): q̃, within one float32 ulp of torch's q
    race = torch.div(probs, race, out=race)  # p/q̃
    best = race.max(-1, keepdim=True).values  # (n, 1)
    near = (race >= best * (1 - 1e-5)) | ~torch.isfinite(best) | (best < 1e-30)  # (n, V): could be the argmax
    rows, cols = near.nonzero(as_tuple=True)
    q = torch.tensor([-math.log1p(x) for x in minus_u[rows, cols].tolist()], dtype=torch.float64).float()
    race.fill_(-math.inf)[rows, cols] = probs[rows, cols] / q  # exact p/q at the candidates, −∞ elsewhere
    return race.argmax(-1)  # (n,); the first maximum, as torch's


class Decoder:
    """Next-token logits after a prefill, one token per row per call: the loop of gcpo.sample.

    decoder = Decoder(model, prefill.past_key_values, attention_mask (R, P), max_new_tokens)
    decoder(tokens (R,), positions (R,)) → logits (R, V) of the token after `tokens`.

    Any causal LM runs its own forward with its cache. A GPT-2 on CPU (GPT2LMHeadModel in eval mode with SDPA
    attention and no hooks on the modules whose forward this skips: what gcpo builds for toy tasks and loads for
    `gpt2`) runs the same modules and the same operations, with one change: each layer's keys and values go into
    one buffer allocated for the whole response, where the Hugging Face cache concatenates, i.e. copies, the
    whole cache at every token (the README's speed section measures the rollout with and without it). The
    logits are the same bit for bit (tests/test_logprob_equiv.py, on CPU, which is why other devices keep the
    model's own forward)."""

    def __init__(self, model, past, attention_mask: torch.Tensor, max_new_tokens: int):
        self.model, self.past, self.attn = model, past, attention_mask
        if not self.plain_gpt2(model) or not hasattr(past, "layers"):  # (older transformers: another cache API)
            return
        keys = [layer.keys for layer in past.layers]  # each (R, H, P, D)
        values = [layer.values for layer in past.layers]
        R, H, P, D = keys[0].shape
        self.kv = keys[0].new_empty(len(keys), 2, R, H, P + max_new_tokens, D)  # every layer's K and V, allocated once
        self.kv[:, 0, :, :, :P] = torch.stack(keys)
        self.kv[:, 1, :, :, :P] = torch.stack(values)
        self.length, self.past = P, None
        pad = attention_mask == 0  # (R, P); Hugging Face passes SDPA no mask when no prompt has padding
        self.mask = None if not bool(pad.any()) else F.pad(~pad, (0, max_new_tokens), value=True)[:, None, None, :]

    @staticmethod
    def plain_gpt2(model) -> bool:
        from transformers import GPT2LMHeadModel

        if type(model) is not GPT2LMHeadModel or model.training or model.device.type != "cpu":
            return False
        c = model.config
        skipped = [model, model.transformer, *model.transformer.h, *(block.attn for block in model.transformer.h)]
        hooked = any(m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m) for m in skipped)
        return (c._attn_implementation == "sdpa" and not c.add_cross_attention and not hooked
                and hasattr(model.transformer.h[0].attn, "scaling"))  # (older transformers scale elsewhere)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.past is not None:  # any model: its own forward
            self.attn = torch.cat([self.attn, torch.ones_like(self.attn[:, :1])], dim=1)
            out = self.model(input_ids=tokens[:, None], attention_mask=self.attn, position_ids=positions[:, None],
                             past_key_values=self.past, use_cache=True)
            self.past = out.past_key_values
            return out.logits[:, -1]
        gpt, S, R = self.model.transformer, self.length + 1, tokens.shape[0]  # S: keys after this token
        if S > self.kv.shape[-2]:
            raise ValueError(f"Decoder was built for {self.kv.shape[-2]} positions (prompt + max_new_tokens); "
                             "build it with a larger max_new_tokens")
        mask = None if self.mask is None else self.mask[..., :S]  # (R, 1, 1, S)
        x = gpt.wte(tokens[:, None]) + gpt.wpe(positions[:, None])  # (R, 1, C)
        for kv, block in zip(self.kv, gpt.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=2)  # (R, 1, C) each
            q, k, v = (t.view(R, 1, -1, attn.head_dim).transpose(1, 2) for t in (q, k, v))  # (R, H, 1, D)
            kv[0, :, :, S - 1:S], kv[1, :, :, S - 1:S] = k, v
            a = F.scaled_dot_product_attention(q, kv[0, :, :, :S], kv[1, :, :, :S], attn_mask=mask,
                                               scale=attn.scaling)  # (R, H, 1, D)
            x = x + attn.c_proj(a.transpose(1, 2).reshape(R, 1, -1))
            x = x + block.mlp(block.ln_2(x))
        self.length = S
        return self.model.lm_head(gpt.ln_f(x))[:, -1]  # (R, V)


# ---------------------------------------------------------------------------------------------------------
# COMMAND LINE


def parse_task_args(text: str) -> dict:
    """'length=16,num_symbols=8' → {'length': 16, 'num_symbols': 8} (values parsed as Python literals)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"task_args item {item!r} is not k=v (e.g. --task-args length=16,num_symbols=8)")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def build_task(cfg):
    """The task for cfg.env; a text task gets the pretrained model's tokenizer (the tiny model: the task's
    own word tokenizer). Returns (task, the text task's tokenizer or None)."""
    import toy_envs

    cls = toy_envs.TASKS[toy_envs.task_name(cfg.env)]
    kwargs = parse_task_args(cfg.task_args)
    if issubclass(cls, toy_envs.TextTask) and cfg.model != "tiny":
        kwargs["tokenizer"] = load_tokenizer(cfg.model)
    task = toy_envs.make_task(cfg.env, **kwargs)  # (unknown or ill-typed arguments: one-line errors)
    return task, getattr(task, "tokenizer", None)


# ---------------------------------------------------------------------------------------------------------
# PRETRAINED MODELS AND TOKENIZERS


def from_pretrained(cls, name: str):
    """cls.from_pretrained(name) (never trust_remote_code), with one clear error instead of a stack of hub
    errors. A name that starts with '.', '/' or '~' is a local directory; anything else may be a hub name."""
    if name.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(f"model directory {name!r} does not exist; pass a directory written by save_pretrained "
                         "(e.g. runs/x/model) or a hub name such as gpt2")
    try:
        return cls.from_pretrained(os.path.expanduser(name))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot load {name!r} with {cls.__name__}: {first}. A hub name (e.g. gpt2) downloads once "
                         "and needs internet the first time; a local directory needs the files save_pretrained "
                         "writes") from None


def fuse_gelu(model):
    """Swap GPT-2's `gelu_new` activation, written out in Python (a cube, a tanh and five elementwise products, each a
    pass over memory, and as many again in the backward), for torch's fused tanh-GELU: the same formula,
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in one kernel; outputs agree to float32 rounding. The config
    says so too, so a saved model reloads the same way. Other activations are left alone. Returns the model."""
    from transformers.activations import NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, torch.nn.GELU(approximate="tanh"))
    for key in ("activation_function", "hidden_act"):  # GPT-2's name for it, and most other models'
        if getattr(model.config, key, None) == "gelu_new":
            setattr(model.config, key, "gelu_pytorch_tanh")
    return model


def load_tokenizer(name: str):
    """The pretrained model's tokenizer, left-padded, with a pad token (EOS when it has none, as GPT-2)."""
    from transformers import AutoTokenizer

    from toy_envs import WordTokenizer

    if os.path.isfile(os.path.join(os.path.expanduser(name), WordTokenizer.FILE)):  # a saved tiny text-task model
        return WordTokenizer.from_pretrained(os.path.expanduser(name))
    tokenizer = from_pretrained(AutoTokenizer, name)
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer of {name!r} has no EOS token, so responses cannot end; set eos_token "
                         "(GPT-2: '<|endoftext|>') and save it again")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---------------------------------------------------------------------------------------------------------
# THE OFFICIAL CODE'S hist WEIGHTS, BIT FOR BIT


def official_hist_loop(scores, mask, alpha):
    """The official code's hist weights as it computes them: a Python loop over responses, each ranking its valid
    scores with a plain argsort (ranks 1..N), u = (rank/N)^α, w = u/Σu·N. The reference for `hist_official`'s
    bit-exactness and the peer of the speed benchmark; (N, T) → (N, T)."""
    w = torch.zeros_like(scores)
    for i in range(scores.size(0)):
        valid = mask[i].bool()
        v = scores[i][valid]
        n = v.size(0)
        if n == 0:
            continue
        ranks = torch.empty(n, dtype=scores.dtype, device=scores.device)
        ranks[v.argsort()] = torch.arange(1, n + 1, dtype=scores.dtype, device=scores.device)
        u = (ranks / n).pow(alpha)
        w[i][valid] = u / u.sum() * n
    return w


def hist_official(scores, valid, alpha):
    """The official per-row loop, vectorised over rows of equal length so each row sees exactly the official
    ops (argsort of its N valid scores, ranks/N, pow, w/Σw·N) and the weights match bit for bit."""
    weights = torch.zeros_like(scores)
    lengths = valid.sum(1)  # (N,)
    for n in lengths.unique().tolist():  # a loop over distinct lengths, not over responses
        if n == 0:
            continue
        rows = (lengths == n).nonzero().squeeze(1)  # (R,)
        cols = valid[rows].long().argsort(dim=1, descending=True, stable=True)[:, :n].sort(dim=1).values  # (R, n)
        vals = scores[rows].gather(1, cols)  # (R, n): the valid scores, in order
        ranks = torch.empty_like(vals).scatter_(
            1, vals.argsort(dim=1), torch.arange(1, n + 1, dtype=vals.dtype, device=vals.device).expand_as(vals))
        pct = torch.zeros(len(rows), n + 1, dtype=vals.dtype, device=vals.device)
        pct[:, :n] = ranks / n
        u = pct[:, :n].pow(alpha)  # a strided view: pow runs row by row with the official 1-D rounding
        weights[rows] = torch.zeros_like(scores[rows]).scatter_(1, cols, u / u.sum(1, keepdim=True) * n)
    return weights


@functools.lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """Each dataclass field's help text, for --help and the README table: the comment on the field's line
    (nanoGPT style) or, for longer text, the docstring under it (CleanRL style)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {t.start[0]: t.string[1:].strip() for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body
    docs = {}
    for node, nxt in zip(body, [*body[1:], None]):
        if not isinstance(node, ast.AnnAssign):
            continue
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(nxt.value.value.split())
        elif node.lineno in comments:
            docs[node.target.id] = comments[node.lineno]
    return docs


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line through the CLI's error path, not argparse's usage block
        raise ValueError(message)


def parse_bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")
    return value


def parse_args(argv=None):
    """Every Config field is a --flag (a bare boolean flag means true); unset flags take the preset's value.
    --help shows each option's valid values and its value under the chosen --algo."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1, 0, -1):  # "--flag -1e-3" → "--flag=-1e-3" (argparse reads -1e-3 as a flag)
        if argv[i - 1].startswith("--") and "=" not in argv[i - 1] and argv[i].startswith("-") and _is_number(argv[i]):
            argv[i - 1:i + 1] = [f"{argv[i - 1]}={argv[i]}"]
    algo = _preset_of(argv)
    from gcpo import CHOICES, PRESETS, Config, make_config

    shown = {**dataclasses.asdict(Config()), **PRESETS.get(algo, {})}
    import gcpo

    p = _Parser(description=gcpo.__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    docs = field_docs(Config)
    for f in dataclasses.fields(Config):
        valid = f"; valid: {RANGES[f.name]}" if f.name in RANGES else ""
        extra = dict(nargs="?", const=True, type=parse_bool, metavar="BOOL") if f.type == "bool" else \
            dict(type={"int": int, "float": float, "str": str}[f.type], choices=CHOICES.get(f.name),
                 metavar=None if f.name in CHOICES else f.type.upper())
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, **extra,
                       help=f"{docs.get(f.name, '')}{valid} (under --algo {algo}: {shown[f.name]!r})")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    return make_config(args.pop("algo", "gcpo"), **args)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _preset_of(argv) -> str:
    """The --algo value in argv (for --help's preset column), 'gcpo' if absent."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--algo", default="gcpo")
    return p.parse_known_args(argv)[0].algo


# ---------------------------------------------------------------------------------------------------------
# PRINTED SAMPLES AND THE RUN SUMMARY


def show_sample(result: dict, n: int = 1, html_path: str = "") -> str:
    """Sampled responses to the first n held-out prompts, each token shaded by its GCPO weight under the final
    policy: the contrast between the prompt and its negative, shown above it. Optionally as an HTML page."""
    from toy_envs.render import html_page

    model, task, cfg = result["model"], result["task"], result["cfg"]
    prompts_np = result["eval_prompts"][:n]
    neg_np = task.negative_prompts(prompts_np, cfg.negative)
    from gcpo import autocast, contrast_weights, prompt_tensors, sample, seeded

    _, gen = seeded(cfg, 424242)
    with autocast(cfg):
        prompts, pmask = prompt_tensors(task, prompts_np, cfg.device)
        neg, nmask = prompt_tensors(task, neg_np, cfg.device)
        responses, mask, _, _ = sample(model, prompts, pmask, cfg.max_new_tokens, task.eos_id, task.pad_id,
                                       cfg.temperature, cfg.top_p, gen)
        batch = dict(prompts=prompts, prompt_mask=pmask, responses=responses, mask=mask,
                     neg_prompts=neg, neg_mask=nmask)
        w = contrast_weights(model, batch, cfg).cpu().numpy()  # (n, T)
    score = task.score(prompts_np, responses.cpu().numpy(), rng=np.random.default_rng(0))
    blocks, sections = [], []
    for i in range(len(prompts_np)):
        k = int(mask[i].sum())
        resp, wi = responses[i, :k].cpu().numpy(), w[i, :k]
        prompt_line, rest = task.render(prompts_np[i], resp, wi).split("\n", 1)
        blocks.append(f"{prompt_line}\nnegative: {task.prompt_string(neg_np[i])}\n{rest}"
                      f"\nweights:  {' '.join(f'{x:.2f}' for x in wi)}"
                      f"\nkey:      {' '.join('^' if key else '.' for key in score.key_mask[i, :k])}"
                      f"\nreward:   {score.reward[i]:.3f}")
        sections.append((f"prompt: {task.prompt_string(prompts_np[i])}  |  negative ({cfg.negative}): "
                         f"{task.prompt_string(neg_np[i])}  |  reward {score.reward[i]:.3f}", task.decode(resp), wi))
    if html_path:
        with open(html_path, "w") as f:
            f.write(html_page(f"GCPO token weights ({cfg.divergence}/{cfg.normalization}): {cfg.algo} on "
                              f"{task.name}, model {cfg.model}", sections))
    return "\n\n".join(blocks)


def summarize(result: dict) -> str:
    cfg, hist = result["cfg"], result["history"]
    last = hist[-10:] if hist else []
    mean = lambda k: np.nanmean([h[k] for h in last if k in h]) if any(k in h for h in last) else float("nan")
    lines = [f"{cfg.algo} on {cfg.env}: eval reward {result['reward_before']:.3f} (warm start) -> "
             f"{result['reward_after']:.3f} after {cfg.steps} steps (seed {cfg.seed})"]
    if any("weight_max" in h for h in hist):
        lines.append(f"weights (last 10 steps): max {mean('weight_max'):.2f}, std {mean('weight_std'):.2f}, "
                     f"top-40% mass {mean('weight_top40_mass'):.3f}; key-token share {mean('key_weight_share'):.3f} "
                     f"vs uniform {mean('key_token_frac'):.3f}, key AUC {mean('key_weight_auc'):.3f}")
    return "\n".join(lines)


def options_markdown() -> str:
    """The README's options table, generated from Config, RANGES and CHOICES (a test keeps the README in sync):
    each option, its valid values, its default under the gcpo preset and the presets that change it."""
    from gcpo import CHOICES, PRESETS, Config

    docs, base = field_docs(Config), dataclasses.asdict(Config())
    rows = ["| option | valid values | default (`gcpo`) | other presets | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        valid = (" \\| ".join(map(str, CHOICES[f.name])) if f.name in CHOICES else str(RANGES[f.name])
                 if f.name in RANGES else "true \\| false" if f.type == "bool" else "text")
        others = ", ".join(f"{a}: {p[f.name]}" for a, p in PRESETS.items() if a != "gcpo" and f.name in p
                           and p[f.name] != PRESETS["gcpo"].get(f.name, base[f.name]))
        default = PRESETS["gcpo"].get(f.name, base[f.name])
        meaning = docs.get(f.name, "").replace("|", "\\|")  # a literal | inside a table cell
        rows.append(f"| `--{f.name.replace('_', '-')}` | {valid} | {default!r} | {others} | {meaning} |")
    return "\n".join(rows)
