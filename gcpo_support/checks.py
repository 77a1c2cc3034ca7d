"""Option ranges and input checks: every public function of gcpo.py checks its inputs here, once, at its
boundary, and a user's mistake becomes one line naming the problem and the fix. A reader can skip it."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch


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
        return (
            math.isfinite(x)
            and (self.lo < x if self.lo_open else self.lo <= x)
            and (x < self.hi if self.hi_open else x <= self.hi)
        )

    def __str__(self) -> str:
        fmt = lambda v: str(v) if isinstance(v, int) else f"{v:g}" if float(f"{v:g}") == v else repr(v)  # 1e-09, inf
        left = "(" if self.lo_open or self.lo == -math.inf else "["
        right = ")" if self.hi_open or self.hi == math.inf else "]"
        text = f"{left}{fmt(self.lo)}, {fmt(self.hi)}{right}"
        text = f"{' or '.join(f'{v:g}' for v in self.also)} or {text}" if self.also else text
        return f"int in {text}" if self.integer else text


def _int(lo, hi=math.inf):
    return Range(lo, hi, integer=True)


POSITIVE, NONNEG, UNIT = Range(0, lo_open=True), Range(0), Range(0, 1)


RANGES = {  # every numeric option's valid values (shown by --help, checked by validate_config)
    "seed": _int(0, 2**63 - 1),
    "steps": _int(0),
    "show": _int(0),
    "n_layer": _int(1),
    "n_embd": _int(1),
    "n_head": _int(1),
    "warm_steps": _int(-1),
    "warm_batch": _int(1),
    "warm_lr": Range(0, 1, lo_open=True),
    "demo_accuracy": UNIT,
    "null_prob": UNIT,
    "batch_prompts": _int(1),
    "group_size": _int(2),
    "temperature": Range(1e-3, 1e3),
    "top_p": Range(0, 1, lo_open=True),
    "max_new_tokens": _int(0),
    "guidance_scale": Range(0, 100),
    "overlong_buffer": _int(0),
    "max_sampling_tries": _int(1),
    "adv_eps": NONNEG,
    "top_fraction": Range(1e-9, 1, hi_open=True),
    "target_mass": Range(0, 1 - 1e-9, lo_open=True),
    "softmax_temp": POSITIVE,
    "eps_low": Range(0, 1, hi_open=True),
    "eps_high": Range(0, 10),
    "dual_clip": Range(1, lo_open=True, also=(0,)),
    "beta": Range(0, 100),
    "entropy_penalty": Range(-1, 1),
    "lr": Range(0, 1, lo_open=True),
    "epochs": _int(1),
    "minibatches": _int(1),
    "micro_batch": _int(0),
    "max_grad_norm": POSITIVE,
    "eval_prompts": _int(1),
    "eval_every": _int(0),
}


CHOICES = {  # every option that takes one of a few words (credit takes a scheme: gcpo_support.schemes)
    "algo": ("grpo", "dr_grpo", "dapo", "gcpo", "pcpo"),
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("float32", "bfloat16"),
    "adv_scale": ("group", "batch", "none"),
    "divergence": ("kl", "full_kl", "abs", "info_gain"),
    "normalization": ("hist", "softmax", "minmax", "none"),
    "ties": ("average", "official"),
    "weights_from": ("current", "rollout"),
    "kl_estimator": ("k3", "k1"),
    "loss_agg": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"),
    "surrogate": ("clip", "log_hinge"),
}


def check_value(name: str, value, valid: Range) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is outside its valid range {valid}")


def check_hist_params(top_fraction: float, target_mass: float) -> None:
    if not (0 < top_fraction < 1 and 0 < target_mass < 1 and 1.0 - top_fraction < 1.0 and 1.0 - target_mass > 0.0):
        raise ValueError(
            f"top_fraction={top_fraction} and target_mass={target_mass} must both be in (0, 1), "
            "far enough from 0 and 1 that 1 − x is not rounded to 1 or 0"
        )
    if target_mass < top_fraction:
        raise ValueError(
            f"target_mass={target_mass} < top_fraction={top_fraction} would favour low-contrast "
            "tokens; use target_mass >= top_fraction (equal gives uniform weights)"
        )


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
    for f in dataclasses.fields(cfg):
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
        raise ValueError(
            "dual_clip bounds PPO's ρ-scaled gradient and has no meaning for surrogate=log_hinge; use --dual-clip 0"
        )
    if cfg.kl_reweight and (cfg.credit == "uniform" or cfg.beta == 0):
        raise ValueError(
            "kl_reweight reweights the KL term by the token weights: it needs beta > 0 and credit other than uniform"
        )
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
        parent = path if is_dir else os.path.dirname(path)  # an existing page is overwritten: its folder decides
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        writable = os.path.isdir(parent) and os.access(parent, os.W_OK)
        if path and not writable:
            raise ValueError(f"{name}={getattr(cfg, name)!r} cannot be written (its folder is read-only)")


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
        raise ValueError(
            f"prompt + response tokens = {length} exceed the model's {positions} positions (n_positions); "
            "use shorter responses (max_new_tokens) or a model with more positions"
        )


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


def check_sample_inputs(
    model,
    prompts,
    prompt_mask,
    max_new_tokens,
    eos_id,
    pad_id,
    temperature,
    top_p,
    neg_prompts,
    neg_mask,
    guidance_scale,
):
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
    check_shapes(
        2, logp=logp, logp_old=logp_old, advantages=advantages, mask=mask, ref_logp=ref_logp, kl_weights=kl_weights
    )
    for name, value in params.items():
        check_value(name, value, RANGES[name])
    if surrogate == "log_hinge" and params["dual_clip"]:
        raise ValueError("dual_clip has no meaning for surrogate='log_hinge'; pass dual_clip=0")
    if kl_estimator not in ("k3", "k1"):
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; choose k3 or k1")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose {', '.join(map(str, choices[:-1]))} or {choices[-1]}")


def check_score_inputs(logp, logp_neg, mask, divergence, logp_all, logp_neg_all) -> tuple:
    """token_scores' boundary: (N, T) log-probs of one shape, a known divergence, and for full_kl both (N, T, V)
    log-softmaxes. Returns the four log-prob tensors, half precision promoted to float32 (in bfloat16 a small
    contrast logp⁻ − logp rounds to 0 and every weight would come out 1)."""
    check_shapes(2, logp=logp, logp_neg=logp_neg, mask=mask)
    check_float(logp=logp, logp_neg=logp_neg)
    check_choice("divergence", divergence, CHOICES["divergence"])
    if divergence == "full_kl" and logp.numel():
        if logp_all is None or logp_neg_all is None:
            raise ValueError("divergence='full_kl' needs the full log-softmax of both prompts (logp_all, logp_neg_all)")
        check_shapes(3, logp_all=logp_all, logp_neg_all=logp_neg_all)
        if logp_all.shape[:2] != logp.shape:
            raise ValueError(f"logp_all must be (N, T, V), (N, T) = {tuple(logp.shape)}, got {tuple(logp_all.shape)}")
    half = (torch.float16, torch.bfloat16)
    return tuple(
        t.float() if t is not None and t.dtype in half else t for t in (logp, logp_neg, logp_all, logp_neg_all)
    )


def check_weight_inputs(scores, mask, normalization, ties, softmax_temp) -> torch.Tensor:
    """normalize_weights' boundary: (N, T) floating scores, finite on valid tokens, a known law and tie rule.
    Returns the scores, half precision promoted to float32 (bfloat16 cannot count ranks past 256)."""
    check_shapes(2, scores=scores, mask=mask)
    check_float(scores=scores)
    check_value("softmax_temp", softmax_temp, RANGES["softmax_temp"])
    check_choice("normalization", normalization, CHOICES["normalization"])
    check_choice("ties", ties, CHOICES["ties"])
    if not (scores.isfinite() | ~mask.bool()).all():
        raise ValueError("token scores must be finite on valid tokens; check the log-probs for NaN/inf")
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def check_rewards_for_groups(rewards, group_size, eps, scale="group"):
    """group_advantages' boundary; integer (0/1) rewards are promoted to float losslessly."""
    check_groups(rewards, group_size)
    check_choice("advantage scale", scale, CHOICES["adv_scale"])
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
        raise ValueError(
            f"lengths must be a 1-D tensor of token counts >= 0, got {lengths.dtype} {tuple(lengths.shape)}"
        )


def check_task_options(cfg, task) -> None:
    """The option combinations that only the task can judge: its negative prompts, its response length, EOS."""
    if cfg.negative and cfg.negative not in task.negative_kinds:
        raise ValueError(f"negative={cfg.negative!r} is not offered by {task.name}; choose from {task.negative_kinds}")
    if 0 < cfg.max_new_tokens < task.max_new_tokens and task.require_eos:
        raise ValueError(
            f"max_new_tokens={cfg.max_new_tokens} is shorter than a full {task.name} response "
            f"({task.max_new_tokens} tokens with EOS), so every response would score 0; use at least "
            "that, or 0 for the task's own"
        )
    if cfg.overlong_buffer > (cfg.max_new_tokens or task.max_new_tokens):
        raise ValueError(
            f"overlong_buffer={cfg.overlong_buffer} exceeds the response cap "
            f"{cfg.max_new_tokens or task.max_new_tokens}; use a buffer within it"
        )
    if cfg.overlong_filter and not task.require_eos:
        raise ValueError(
            f"overlong_filter masks responses without EOS, but {task.name}'s responses need not end "
            "with one (require_eos=False), so it would mask every token; drop --overlong-filter"
        )


def check_positions(model, cfg, task) -> None:
    """The model must have positions for a prompt plus a full response, and for a demonstration if it warms up."""
    positions = model_positions(model)
    if positions and positions < max(task.prompt_len + cfg.max_new_tokens, task.demo_len if cfg.warm_steps else 0):
        raise ValueError(
            f"model {cfg.model!r} has {positions} positions, fewer than the prompt ({task.prompt_len}) "
            f"plus response ({cfg.max_new_tokens}) tokens or a demonstration ({task.demo_len}); "
            "use a shorter task or a model with more positions"
        )


def check_aggregate_inputs(x, mask, loss_agg, total_tokens, total_seqs, max_len) -> None:
    """aggregate's boundary: shapes, and counts that can be the whole mini-batch's (never below this one's)."""
    check_shapes(2, x=x, mask=mask)
    check_choice("loss_agg", loss_agg, CHOICES["loss_agg"])
    m = mask.to(x.dtype)
    if loss_agg == "token-mean":
        if total_tokens is not None and not torch.as_tensor(total_tokens, dtype=x.dtype) >= m.sum():
            raise ValueError(
                f"total_tokens={float(total_tokens)} is below this micro-batch's {int(m.sum())} valid "
                "tokens; pass the whole mini-batch's count"
            )
        return
    seqs = x.shape[0] if total_seqs is None else total_seqs
    if not (isinstance(seqs, int) and seqs >= x.shape[0]):
        raise ValueError(f"total_seqs={seqs!r} must be an int >= this micro-batch's {x.shape[0]} responses")
    longest = int(m.sum(1).max()) if m.numel() else 0
    if loss_agg == "seq-mean-token-sum-norm" and not (isinstance(max_len, int) and max_len >= max(longest, 1)):
        raise ValueError(
            f"loss_agg='seq-mean-token-sum-norm' needs max_len = L_max, an int >= the longest "
            f"response ({longest} tokens), got {max_len!r}"
        )
