"""GCPO: Guidance Contrastive Policy Optimization, one readable file.

Paper: Li, Kallidromitis, Gokul, Kyuragi, Grover, 2026, arXiv 2605.29198 (https://arxiv.org/abs/2605.29198).
Official code: https://github.com/jacklishufan/gcpo at commit e0f183d (EasyR1/verl fork for reasoning, and a
text-to-image trainer). docs/algorithm.md states every equation below, where each default comes from, and where
the paper and the official code differ (both are options here).

GRPO and DAPO give every token of a response the same group advantage A_i. GCPO keeps the total but moves it
between tokens: each token's advantage becomes w_{i,t}·A_i, where w measures how much the token's log-prob
changes when the prompt x is swapped for a negative prompt x⁻ (the CFG null prompt, or "answer wrongly").

    python gcpo.py                               # warm start + GCPO on the Needle toy task (~40 CPU-seconds)
    python gcpo.py --algo dapo --env chainsum    # a baseline on another task; --help lists every knob
    python gcpo.py --model gpt2 --env topic --steps 0 --show 4   # GPT-2 completions shaded by GCPO weight

Data flows top to bottom: config → policy → sampling → rewards → group advantage → contrastive token
weights (THE GCPO PART) → loss → rollout → update → training loop. The math is pure functions on (N, T)
tensors: B prompts per rollout, G responses per prompt, N = B·G responses, P prompt length, T response length,
V vocabulary size. The gcpo_support/ package holds what a reader can skip, one concern per module (checks,
variants, schemes, kernels, loading, metrics, render, cli); it never imports this file. Token credit is a plain
function whose parameter names say what it needs (gcpo_support/schemes.py): `--credit` takes GCPO's, a peer's,
or your own (module:function or path/file.py:function), and credit_kit checks its properties.

Simplified: one process, no vLLM, no FSDP (gcpo_trl.py runs the same weights inside TRL's trainer for that); the
toy policy is a tiny GPT-2 trained from scratch after a supervised warm start (§9); no dropout, so ρ ≡ 1 at first.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import tqdm

from gcpo_support import schemes
from gcpo_support.checks import (check_aggregate_inputs, check_groups, check_hist_params, check_logprob_inputs,
                                 check_loss_inputs, check_overlong_inputs, check_positions, check_rewards,
                                 check_rewards_for_groups, check_sample_inputs, check_score_inputs,
                                 check_task_options, check_weight_inputs, validate_config)
from gcpo_support.cli import parse_args
from gcpo_support.kernels import CACHE, ChosenLogProbs, fuse_gelu
from gcpo_support.loading import build_task, from_pretrained, load_object
from gcpo_support.metrics import RunOutput, clip_fractions, token_moves, weight_metrics
from gcpo_support.render import show_sample, summarize
from gcpo_support.variants import hist_official, variant_scores, variant_weights

# ---------------------------------------------------------------------------------------------------------
# CONFIG


@dataclass
class Config:
    # experiment
    algo: str = "gcpo"  # preset: grpo | dr_grpo | dapo | gcpo | pcpo (§6); options given explicitly override it
    env: str = "needle"
    """task: needle | copy | gridpaint | chainsum | topic | sentiment (or its gymnasium id, e.g. toy_envs/Needle-v0)"""
    task_args: str = ""  # task parameters as k=v,k=v (e.g. length=16,num_symbols=8); see the task's docstring
    model: str = "tiny"  # 'tiny' (random-init GPT-2) or a hub name (gpt2) / directory; text tasks use its tokenizer
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 (autocast for the forward passes, for GPUs; parameters stay float32)
    seed: int = 1  # seeds model init, demonstrations, prompts and sampling (all derived from it)
    steps: int = 150  # RL steps (one rollout + its updates each)
    out: str = ""  # folder for metrics.jsonl, config.json and the final model (empty: write nothing)
    show: int = 1  # held-out prompts whose sampled response is printed at the end, shaded by GCPO weight (0: none)
    html: str = ""  # also write those weight-shaded responses to this HTML file
    # tiny policy
    n_layer: int = 2  # tiny GPT-2 layers
    n_embd: int = 64  # tiny GPT-2 width
    n_head: int = 4  # tiny GPT-2 attention heads
    # warm start (§9)
    warm_steps: int = -1  # supervised steps on flawed demos before RL (0: none; -1: 1200 tiny, 0 pretrained)
    warm_batch: int = 64  # demonstrations per warm-start step
    warm_lr: float = 1e-3  # warm-start learning rate (AdamW)
    demo_accuracy: float = 0.3  # fraction of demonstrations that are correct, so RL has room to improve
    null_prob: float = 0.1  # prompt dropout to the null prompt during the warm start (as in CFG training)
    # rollout (§1)
    batch_prompts: int = 16  # B: prompts per rollout
    group_size: int = 8  # G: responses per prompt (at least 2)
    temperature: float = 1.0  # sampling temperature; log-probs everywhere use the same logits / temperature
    top_p: float = 1.0  # nucleus sampling threshold (1: off)
    max_new_tokens: int = 0  # response length cap L_max (0: the task's own length + EOS)
    guidance_scale: float = 1.0
    """classifier-free-guided sampling scale s (1: plain sampling; >1 samples off-policy, trains on π(·|x))"""
    # rewards (§2)
    overlong_buffer: int = 0  # DAPO soft overlong punishment buffer L_cache (0: off)
    overlong_filter: bool = False  # DAPO overlong filtering: truncated responses get loss mask 0
    dynamic_sampling: bool = True  # DAPO dynamic sampling: drop all-equal-reward groups, sample more prompts
    max_sampling_tries: int = 4  # dynamic sampling: most rollouts per step before training on what was kept
    # group advantage (§3)
    adv_scale: str = "group"
    """group: z-score within the group (GRPO) | batch: r − mean_G over batch std | none: r − mean_G (Dr. GRPO)"""
    adv_eps: float = 1e-6  # ε in (r − mean)/(std + ε) (official EasyR1; TRL uses 1e-4)
    # contrastive token credit (§4): THE GCPO PART
    credit: str = "contrast"
    """token credit: uniform (w ≡ 1) | contrast (GCPO) | shuffled (GCPO's w permuted: the control) | oracle (hist w
    on the key tokens) | entropy_top20 | gtpo_entropy | vppo_top40 | your module:fn or file.py:fn; Ã = w·A"""
    negative: str = ""
    """negative prompt kind, one the task offers ('': its first): null (CFG unconditional) | wrong (another
    answer) for symbolic tasks; notopic | other (topic), opposite | neutral (sentiment)"""
    divergence: str = "kl"  # token score: kl (official k3) | full_kl (paper: exact KL over V) | abs | info_gain
    normalization: str = "hist"  # scores → weights: hist (official rank power law) | softmax | minmax | none
    ties: str = "average"  # hist ties: average (x⁻ = x gives w ≡ 1) | official (argsort order, bit-exact)
    top_fraction: float = 0.4  # hist x: the top fraction of tokens ...
    target_mass: float = 0.8  # hist y: ... that carries this fraction of the weight (official 0.4 → 0.8)
    softmax_temp: float = 1.0  # softmax normalization temperature τ_w
    weights_from: str = "current"  # policy scoring the contrast: current (official) | rollout (old policy, once)
    # loss (§5)
    surrogate: str = "clip"
    """clip (PPO) | log_hinge (PCPO: max(0, ξ|Ã| − Ã·log ρ), the same trust region, no ρ factor in the gradient)"""
    eps_low: float = 0.2  # PPO clip ε_low
    eps_high: float = 0.28  # PPO clip ε_high (DAPO clip-higher 0.28; GRPO 0.2)
    dual_clip: float = 3.0  # dual-clip constant c for negative advantages (0: off)
    loss_agg: str = "token-mean"  # token-mean (DAPO) | seq-mean-token-mean (GRPO) | seq-mean-token-sum-norm (Dr. GRPO)
    beta: float = 0.0  # KL-to-reference coefficient (GRPO 0.04; DAPO and official reasoning 0)
    kl_estimator: str = "k3"  # k3 | k1
    kl_reweight: bool = False  # official T2I variant: per-token KL × (0.5 + 0.5·clamp(2 − 2w, 0, 1))
    entropy_penalty: float = 0.0  # + c·mean(−logp) in the loss (official reasoning runs; c > 0 lowers entropy)
    # optimisation
    lr: float = 1e-3  # RL learning rate (AdamW)
    epochs: int = 1  # passes over each rollout
    minibatches: int = 1  # optimizer steps per epoch (the rollout is split into this many mini-batches)
    micro_batch: int = 0  # responses per forward/backward within a mini-batch (0: the whole mini-batch)
    max_grad_norm: float = 1.0  # gradient clipping norm; a non-finite norm skips the step
    eval_prompts: int = 256  # held-out prompts for the before/after evaluation
    eval_every: int = 0  # also evaluate every K RL steps (a learning curve in metrics.jsonl; 0: only before and after)
    log_token_moves: bool = False  # log |Δ log π| per update on high- (w > 1) vs low-weight tokens (one more forward)


PRESETS = {  # docs/algorithm.md §6; every value can be overridden
    "grpo": dict(adv_scale="group", eps_low=0.2, eps_high=0.2, dual_clip=0.0, loss_agg="seq-mean-token-mean",
                 dynamic_sampling=False, beta=0.04, credit="uniform"),
    "dr_grpo": dict(adv_scale="none", eps_low=0.2, eps_high=0.2, dual_clip=0.0,
                    loss_agg="seq-mean-token-sum-norm", dynamic_sampling=False, beta=0.0, credit="uniform"),
    "dapo": dict(adv_scale="group", eps_low=0.2, eps_high=0.28, dual_clip=3.0, loss_agg="token-mean",
                 dynamic_sampling=True, beta=0.0, credit="uniform"),
    "gcpo": dict(adv_scale="group", eps_low=0.2, eps_high=0.28, dual_clip=3.0, loss_agg="token-mean",
                 dynamic_sampling=True, beta=0.0, credit="contrast", divergence="kl", normalization="hist"),
    "pcpo": dict(adv_scale="group", eps_low=0.2, eps_high=0.28, dual_clip=0.0, loss_agg="token-mean",
                 dynamic_sampling=True, beta=0.0, credit="uniform", surrogate="log_hinge"),
}


def make_config(algo: str = "gcpo", **overrides) -> Config:
    """The preset's Config with `overrides` applied, validated."""
    if algo not in PRESETS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {list(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; see `python gcpo.py --help`")
    preset = dict(PRESETS[algo])
    if overrides.get("surrogate") == "log_hinge" and "dual_clip" not in overrides:
        preset["dual_clip"] = 0.0  # the dual clip bounds PPO's ρ-scaled gradient; the log-hinge has no ρ factor
    cfg = Config(algo=algo, **{**preset, **overrides})
    validate_config(cfg)
    return cfg




# ---------------------------------------------------------------------------------------------------------
# POLICY: any Hugging Face causal LM; toy tasks get a tiny GPT-2 sized to their vocabulary


def build_policy(cfg: Config, vocab_size: int, n_positions: int, special: dict):
    """A tiny randomly initialised GPT-2 (cfg.model == 'tiny') or a pretrained model by name/path."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if cfg.model == "tiny":
        conf = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          activation_function="gelu_pytorch_tanh", **special)  # GPT-2's tanh-GELU, fused
        return GPT2LMHeadModel(conf)
    model = fuse_gelu(from_pretrained(AutoModelForCausalLM, cfg.model))  # GPT-2's GELU, one fused kernel
    if model.config.vocab_size < vocab_size:
        raise ValueError(f"model {cfg.model!r} has {model.config.vocab_size} tokens but the task needs {vocab_size}; "
                         "use a task whose vocabulary the model covers (a text task with the model's own tokenizer), "
                         "or --model tiny")
    return model


def autocast(cfg: Config):
    """Mixed precision for forward passes when cfg.dtype == 'bfloat16'; parameters, gradients and the
    optimizer stay float32, and log-probs are always taken in float32 (response_logprobs, sample)."""
    return torch.autocast(cfg.device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: (N, S) mask → (N, S) positions, 0 at the first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logprobs(model, prompts, prompt_mask, responses, temperature=1.0, full=False):
    """log π(y_t | x, y_<t) for every response token, in one forward pass.

    prompts (N, P) left-padded, prompt_mask (N, P), responses (N, T).
    Returns logp (N, T) float32 and, if full, the whole log-softmax (N, T, V) (for `full_kl`).
    Only the T positions that predict response tokens go through the LM head (`logits_to_keep`), and
    logp_t = ℓ_t[y_t] − logsumexp(ℓ_t) never materialises the (N, T, V) log-softmax unless `full` asks for it."""
    (N, P), T = check_logprob_inputs(model, prompts, prompt_mask, responses, temperature)
    if N == 0:
        V = model.get_output_embeddings().weight.shape[0]
        return torch.zeros(0, T), (torch.zeros(0, T, V) if full else None)
    ids = torch.cat([prompts, responses], dim=1)  # (N, P+T)
    attn = torch.cat([prompt_mask, torch.ones_like(responses)], dim=1)  # (N, P+T); the loss masks padding after EOS
    out = model(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn), logits_to_keep=T + 1)
    logits = out.logits.float()  # (N, T+1, V): position P−1+t predicts y_t; the last one predicts nothing
    if temperature != 1.0:
        logits = logits / temperature
    if full:
        logp_all = F.log_softmax(logits[:, :-1], dim=-1)  # (N, T, V)
        return logp_all.gather(-1, responses.unsqueeze(-1)).squeeze(-1), logp_all
    return ChosenLogProbs.apply(logits, responses), None  # (N, T): ℓ[y_t] − logsumexp(ℓ), a lean backward


# ---------------------------------------------------------------------------------------------------------
# SAMPLING (§1)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches top_p; others → −inf. (N, V) → (N, V)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = logits.sort(dim=-1, descending=True)  # (N, V)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
    drop[..., 0] = False  # the most likely token always stays (a top_p below float32's range would drop it)
    return logits.scatter(-1, idx, sorted_logits.masked_fill(drop, float("-inf")))


def draw(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One token per row of (N, V) probabilities by inverse CDF: u ~ U[0, 1) per row, the first token v whose
    cumulative mass passes u, cdf_v > u·cdf_V (so never a zero-probability token). (N, V) → (N,) long."""
    cdf = probs.cumsum(-1)  # (N, V)
    u = torch.rand(len(probs), 1, generator=generator, device=probs.device, dtype=cdf.dtype)  # (N, 1)
    tok = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)  # (N,)
    last = probs.shape[1] - 1 - (probs.flip(-1) > 0).int().argmax(-1)  # (N,): if rounding runs past the end
    return torch.minimum(tok, last)


@torch.no_grad()
def sample(model, prompts, prompt_mask, max_new_tokens, eos_id, pad_id, temperature=1.0, top_p=1.0,
           generator=None, neg_prompts=None, neg_mask=None, guidance_scale=1.0):
    """Batched autoregressive sampling with a KV cache. One call samples one response per prompt row (repeat
    the rows G times for a group).

    prompts (N, P) left-padded with prompt_mask (N, P). With guidance_scale s != 1, the next-token logits are
    ℓ = ℓ(·|x⁻) + s·(ℓ(·|x) − ℓ(·|x⁻)) (classifier-free guidance, needs neg_prompts (N, P⁻)).
    Returns responses (N, T) with pad after EOS, mask (N, T) = 1 on real tokens incl. EOS, the *conditional*
    sampling log-probs logp (N, T) (what the loss trains on; off-policy when s != 1 or top_p < 1), and
    truncated (N,) = no EOS within max_new_tokens."""
    check_sample_inputs(model, prompts, prompt_mask, max_new_tokens, eos_id, pad_id, temperature, top_p,
                        neg_prompts, neg_mask, guidance_scale)
    N, guided = prompts.shape[0], guidance_scale != 1.0
    if N == 0:
        return (torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0),
                torch.zeros(0, dtype=torch.bool))
    if guided:
        width = max(prompts.shape[1], neg_prompts.shape[1])  # left-pad both to one width
        left_pad = lambda t, v: F.pad(t, (width - t.shape[1], 0), value=v)
        ids = torch.cat([left_pad(prompts, pad_id), left_pad(neg_prompts, pad_id)])  # (2N, P')
        attn = torch.cat([left_pad(prompt_mask, 0), left_pad(neg_mask, 0)])  # (2N, P')
    else:
        ids, attn = prompts, prompt_mask
    pos = position_ids(attn)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    logits, past, next_pos = out.logits[:, -1], out[CACHE], pos[:, -1] + 1  # past: the prefill's KV cache

    device = prompts.device
    responses = torch.full((N, max_new_tokens), pad_id, dtype=torch.long, device=device)  # (N, T)
    logp = torch.zeros(N, max_new_tokens, device=device)  # (N, T)
    mask = torch.zeros(N, max_new_tokens, dtype=torch.long, device=device)  # (N, T)
    done = torch.zeros(N, dtype=torch.bool, device=device)  # (N,)
    scale = (lambda x: x) if temperature == 1.0 else (lambda x: x / temperature)  # ℓ/1 is ℓ: skip a (N, V) pass
    for t in range(max_new_tokens):
        cond = F.log_softmax(scale(logits[:N].float()), dim=-1)  # (N, V)
        if guided:
            uncond = F.log_softmax(scale(logits[N:].float()), dim=-1)
            draw_from = uncond + guidance_scale * (cond - uncond)
        else:
            draw_from = cond
        probs = top_p_filter(draw_from, top_p).softmax(-1)  # (N, V)
        tok = draw(probs, generator).masked_fill(done, pad_id)  # (N,)
        responses[:, t] = tok
        logp[:, t] = cond.gather(-1, tok.unsqueeze(-1)).squeeze(-1).masked_fill(done, 0.0)
        mask[:, t] = (~done).long()
        done = done | (tok == eos_id)
        if t == max_new_tokens - 1 or bool(done.all()):
            break  # (no forward for logits that would never be used)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)  # (R, P' + t + 1): the new token is real
        out = model(input_ids=(torch.cat([tok, tok]) if guided else tok)[:, None], attention_mask=attn,
                    position_ids=next_pos[:, None], use_cache=True, **{CACHE: past})
        logits, past, next_pos = out.logits[:, -1], out[CACHE], next_pos + 1
    T = int(mask.sum(1).max()) if N else 0  # drop all-padding columns
    return responses[:, :T], mask[:, :T], logp[:, :T], ~done


# ---------------------------------------------------------------------------------------------------------
# REWARDS (§2)


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO soft overlong punishment R_len(|y|), (N,) lengths → (N,) penalties:
    0 if |y| ≤ L_max − L_cache;  ((L_max − L_cache) − |y|)/L_cache inside the buffer;  −1 beyond L_max."""
    check_overlong_inputs(lengths, max_len, buffer)
    start = max_len - buffer
    pen = (start - lengths.double()) / buffer
    return torch.where(lengths <= start, 0.0, torch.where(lengths <= max_len, pen, -1.0))


# ---------------------------------------------------------------------------------------------------------
# GROUP ADVANTAGE (§3)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """(N,) rewards, each group of `group_size` contiguous → (N,) advantages.

    group: A_i = (r_i − mean_G r)/(std_G r + ε) (GRPO, unbiased std, ε = 1e-6 as EasyR1);
    batch: (r_i − mean_G r)/(std_batch r + ε); none: r_i − mean_G r (Dr. GRPO).
    A group whose rewards are all equal gets exactly 0."""
    rewards = check_rewards_for_groups(rewards, group_size, eps, scale)
    if rewards.numel() == 0:
        return rewards.clone()
    r = rewards.view(-1, group_size)  # (B, G)
    centered = r - r.mean(dim=1, keepdim=True)  # (B, G)
    if scale == "group":
        adv = centered / (r.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        adv = centered / (rewards.std() + eps)
    else:  # none
        adv = centered
    flat = r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values  # (B, 1)
    return adv.masked_fill(flat, 0.0).reshape(-1)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling filter: (B·G,) rewards → (B,) bool, False where a group's rewards are all equal
    (its advantages, and so its gradient, are exactly zero)."""
    check_groups(rewards, group_size)
    r = rewards.view(-1, group_size)
    return r.max(dim=1).values != r.min(dim=1).values


# ---------------------------------------------------------------------------------------------------------
# CONTRASTIVE TOKEN WEIGHTS (§4): THE GCPO PART


def token_scores(logp, logp_neg, mask, divergence="kl", logp_all=None, logp_neg_all=None):
    """Per-token contrast η between the prompt and the negative prompt, (N, T) → (N, T), 0 on padding.

    d = clamp(logp⁻ − logp, −20, 20);
    kl (official): η = min(exp(d) − d − 1, 10), the one-sample k3 estimate of KL(π(·|x) ‖ π(·|x⁻));
    full_kl (paper): η = Σ_v π(v|x)(log π(v|x) − log π(v|x⁻)), needs logp_all, logp_neg_all (N, T, V);
    abs, info_gain: ablations, gcpo_support/variants.py."""
    inputs = check_score_inputs(logp, logp_neg, mask, divergence, logp_all, logp_neg_all)  # half → float32
    (logp, logp_neg, logp_all, logp_neg_all), valid = inputs, mask.bool()
    if logp.numel() == 0:
        return torch.zeros_like(logp)
    d = (logp_neg - logp).clamp(-20.0, 20.0)  # (N, T)
    if divergence == "kl":
        eta = (d.exp() - d - 1.0).clamp(max=10.0)
    elif divergence == "full_kl":
        p = logp_all.exp()  # (N, T, V); a token with π(v|x) = 0 contributes 0 (0·log 0 = 0)
        eta = torch.where(p > 0, p * (logp_all - logp_neg_all), 0.0).sum(-1).clamp(min=0.0)  # (N, T), KL ≥ 0 (rounding)
    else:
        eta = variant_scores(logp, logp_neg, d, valid, divergence)
    return eta.masked_fill(~valid, 0.0)


def hist_alpha(top_fraction: float = 0.4, target_mass: float = 0.8) -> float:
    """α = ln(1 − y)/ln(1 − x) − 1: with u = p^α, the top x of percentiles carry the fraction y of Σu
    (continuous limit). x = 0.4, y = 0.8 → α = 2.15066; y = x → α = 0 (uniform)."""
    check_hist_params(top_fraction, target_mass)
    return math.log(1.0 - target_mass) / math.log(1.0 - top_fraction) - 1.0


def sorted_ranks(scores: torch.Tensor, valid: torch.Tensor):
    """Each row's scores sorted ascending, valid first, with their mean ranks 1..N_i (ties share the mean of
    their ranks). Returns (sorted scores (N, T), order (N, T) with sorted[:, j] = scores[order[:, j]], mean
    ranks (N, T) in sorted order; meaningless past N_i). One sort for the batch; equal scores form runs, and a
    run of length ℓ that ends at rank r gives each member the rank r − (ℓ − 1)/2."""
    sorted_s, order = scores.masked_fill(~valid, float("inf")).sort(dim=1)  # (N, T): invalid sort last
    new = sorted_s[:, 1:] != sorted_s[:, :-1]  # (N, T-1): a new run starts at j+1
    run = torch.cat([new.new_zeros(len(new), 1), new], 1).cumsum(1)  # (N, T): run index of sorted position j
    length = torch.zeros_like(scores).scatter_add_(1, run, torch.ones_like(scores))  # (N, T): ℓ of run k
    return sorted_s, order, (length.cumsum(1) - (length - 1) / 2).gather(1, run)


def normalize_weights(scores, mask, normalization="hist", ties="average", top_fraction=0.4, target_mass=0.8,
                      softmax_temp=1.0):
    """Token scores η (N, T) → weights w (N, T), per response over its valid tokens only; 0 on padding.

    hist (official): rank the N valid scores ascending, p = rank/N, u = p^α (α = hist_alpha(x, y)),
        w = u·N/Σu. Mean 1; the top x = 40% of tokens carry ≈ y = 80% of the weight; max w → α + 1.
        ties='average': tied scores share their mean rank (x⁻ = x → w ≡ 1); 'official': argsort order.
    softmax, minmax, none: other laws, gcpo_support/variants.py.
    A response with no valid token gets all-zero weights, never NaN. Half-precision scores are ranked and
    normalised in float32 (bfloat16 cannot count ranks past 256)."""
    scores = check_weight_inputs(scores, mask, normalization, ties, softmax_temp)  # (half precision → float32)
    valid = mask.bool()
    if scores.shape[1] == 0:
        return torch.zeros_like(scores)
    n_valid = valid.sum(1, keepdim=True).to(scores.dtype)  # (N, 1)
    if normalization != "hist":
        return variant_weights(scores, valid, n_valid, normalization, softmax_temp)
    alpha = hist_alpha(top_fraction, target_mass)
    if ties == "official":
        return hist_official(scores, valid, alpha)
    sorted_s, order, ranks = sorted_ranks(scores, valid)  # (N, T) each, in sorted order: valid tokens first
    ranks = torch.empty_like(ranks).scatter_(1, order, ranks)  # (N, T), token order, so pow and Σ round alike
    u = (ranks / n_valid.clamp(min=1)).pow(alpha).masked_fill(~valid, 0.0)  # (N, T)
    underflow = (u.sum(1, keepdim=True) == 0) & (n_valid > 0)  # a huge α: p^α = 0 below the top
    if underflow.any():  # then only the tied top ranks keep weight
        top = (ranks == ranks.masked_fill(~valid, 0).amax(1, keepdim=True)) & valid
        u = torch.where(underflow, top.to(u.dtype), u)
    w = u / u.sum(1, keepdim=True).clamp(min=1e-30) * n_valid  # (N, T)
    largest = sorted_s.gather(1, (n_valid.long() - 1).clamp(min=0))  # (N, 1): the largest valid score
    return torch.where(sorted_s[:, :1] == largest, valid.to(w.dtype), w)  # all tied (x⁻ = x): exactly 1


@torch.no_grad()
def token_weights(logp, logp_neg, mask, *, divergence="kl", normalization="hist", ties="average", top_fraction=0.4,
                  target_mass=0.8, softmax_temp=1.0, logp_all=None, logp_neg_all=None):
    """GCPO token weights w (N, T) from the response's log-probs under the prompt, logp (N, T), and under the
    negative prompt, logp_neg (N, T): normalize_weights(token_scores(...)). No gradient flows through them.
    The token advantage is then Ã_{i,t} = w_{i,t}·A_i: signs are kept and Σ_t w_{i,t} = N_i."""
    scores = token_scores(logp.detach(), logp_neg.detach(), mask, divergence,
                          None if logp_all is None else logp_all.detach(),
                          None if logp_neg_all is None else logp_neg_all.detach())
    return normalize_weights(scores, mask, normalization, ties, top_fraction, target_mass, softmax_temp)


def credit_scheme(cfg: Config):
    """The run's credit scheme, a function on the contract of gcpo_support/schemes.py: its parameter names say what
    it needs, it returns w (N, T), and Ã = w·A. cfg.credit is one of GCPO's own below, a peer scheme
    (entropy_top20, gtpo_entropy, vppo_top40), or a plugged-in module:function or path/file.py:function."""
    law = dict(divergence=cfg.divergence, normalization=cfg.normalization, ties=cfg.ties,
               top_fraction=cfg.top_fraction, target_mass=cfg.target_mass, softmax_temp=cfg.softmax_temp)
    even = cfg.normalization in ("softmax", "minmax") or (cfg.normalization, cfg.ties) == ("hist", "average")
    claims = ("uniform_when_uninformative",) * even + ("monotone",) * (cfg.divergence in ("kl", "full_kl"))
    declared = dict(claims=claims, signal="full_kl" if cfg.divergence == "full_kl" else "contrast")

    @schemes.credit_scheme("uniform", claims=("uniform_when_uninformative",))
    def uniform(mask):  # every token gets A_i (GRPO, Dr. GRPO, DAPO)
        return mask.float()

    @schemes.credit_scheme("contrast", **declared)
    def contrast(logp, logp_neg, mask):  # GCPO
        return token_weights(logp, logp_neg, mask, **law)

    @schemes.credit_scheme("contrast", **declared)
    def contrast_full_kl(logp, logp_neg, mask, logp_all, logp_neg_all):  # the paper's exact KL: all of π and π⁻
        return token_weights(logp, logp_neg, mask, **law, logp_all=logp_all, logp_neg_all=logp_neg_all)

    @schemes.credit_scheme("oracle", claims=("uniform_when_uninformative", "monotone"), signal="key")
    @torch.no_grad()
    def oracle(key_mask, mask):  # the upper bound: the hist law on the ground truth (score 1 on key tokens)
        scores = (key_mask & mask.bool()).float()
        return normalize_weights(scores, mask, "hist", "average", cfg.top_fraction, cfg.target_mass)

    contrast = contrast_full_kl if cfg.divergence == "full_kl" else contrast
    shuffled = schemes.shuffled(contrast)  # the control: GCPO's weights permuted within each response
    builtins = {"uniform": uniform, "contrast": contrast, "shuffled": shuffled, "oracle": oracle, **schemes.PEERS}
    if cfg.credit in builtins:
        return builtins[cfg.credit]
    if ":" not in cfg.credit:
        raise ValueError(f"unknown credit scheme {cfg.credit!r}; choose one of {list(builtins)}, or your own as "
                         "module:function or path/file.py:function")
    return load_object(cfg.credit, "credit scheme")


# ---------------------------------------------------------------------------------------------------------
# LOSS (§5)


def aggregate(x, mask, loss_agg="token-mean", total_tokens=None, total_seqs=None, max_len=None):
    """Per-token values x (N, T) → scalar, correct under gradient accumulation: pass the whole mini-batch's
    total_tokens (token-mean) or total_seqs (the seq modes); by default this micro-batch's own.
    token-mean (DAPO): Σ m·x / total_tokens.   seq-mean-token-mean (GRPO): Σ_i (Σ_t m·x / |y_i|) / total_seqs.
    seq-mean-token-sum-norm (Dr. GRPO): Σ m·x / (total_seqs · L_max), max_len = L_max required."""
    check_aggregate_inputs(x, mask, loss_agg, total_tokens, total_seqs, max_len)
    x, m = x.masked_fill(~mask.bool(), 0.0), mask.to(x.dtype)  # a masked value never counts, NaN included
    if loss_agg == "token-mean":
        total = m.sum() if total_tokens is None else torch.as_tensor(total_tokens, dtype=x.dtype)
        return (x * m).sum() / total.clamp(min=1)  # no valid token at all: loss 0, gradient 0
    seqs = x.shape[0] if total_seqs is None else total_seqs
    if loss_agg == "seq-mean-token-mean":
        return ((x * m).sum(1) / m.sum(1).clamp(min=1)).sum() / max(seqs, 1)
    return (x * m).sum() / (max(seqs, 1) * max_len)  # seq-mean-token-sum-norm


def kl_penalty(logp, ref_logp, estimator="k3"):
    """Per-token KL to the reference, (N, T): k3 = exp(r − logp) − (r − logp) − 1 (≥ 0) or k1 = logp − r."""
    if estimator == "k3":
        delta = (ref_logp - logp).clamp(-20.0, 20.0)
        return delta.exp() - delta - 1.0
    if estimator == "k1":
        return logp - ref_logp
    raise ValueError(f"unknown kl_estimator {estimator!r}; choose k3 or k1")


def surrogate_loss(log_ratio, advantages, eps_low=0.2, eps_high=0.28, dual_clip=3.0, surrogate="clip"):
    """Per-token policy loss ℓ (N, T) from log ρ = logp − logp_old (N, T) and Ã (N, T).

    clip (PPO):  ρ = exp(log ρ);  ℓ = max(−Ã ρ, −Ã clip(ρ, 1 − ε_low, 1 + ε_high)); dual clip (c > 0, Ã < 0):
        ℓ ← min(ℓ, −c Ã).  Gradient inside the trust region: −Ã ρ ∇log π.
    log_hinge (PCPO, arXiv 2509.25774):  ℓ = max(0, ξ|Ã| − Ã log ρ) with ξ = log(1 + ε_high) for Ã > 0 and
        ξ = −log(1 − ε_low) for Ã < 0, so the trust region in ρ is exactly PPO's [1 − ε_low, 1 + ε_high]; the
        gradient inside it is −Ã ∇log π (no ρ factor) and 0 outside, on the side that already improved."""
    if surrogate == "clip":
        ratio = log_ratio.exp()
        pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - eps_low, 1 + eps_high))
        if dual_clip > 0:
            pg = torch.where(advantages < 0, torch.minimum(pg, -dual_clip * advantages), pg)
        return pg
    if surrogate == "log_hinge":
        xi = torch.full_like(advantages, math.log1p(eps_high)).masked_fill(advantages <= 0, -math.log1p(-eps_low))
        return (xi * advantages.abs() - advantages * log_ratio).clamp(min=0.0)
    raise ValueError(f"unknown surrogate {surrogate!r}; choose clip or log_hinge")


def policy_loss(logp, logp_old, advantages, mask, *, eps_low=0.2, eps_high=0.28, dual_clip=3.0,
                loss_agg="token-mean", total_tokens=None, total_seqs=None, max_len=None, ref_logp=None, beta=0.0,
                kl_estimator="k3", kl_weights=None, entropy_penalty=0.0, surrogate="clip"):
    """The policy loss with per-token advantages Ã (N, T). Returns (loss, metrics).

    log ρ = clamp(logp − logp_old, −20, 20);  ℓ = surrogate_loss(log ρ, Ã) (PPO clip or PCPO's log-hinge);
    loss = agg(ℓ) + β·agg(KL) + entropy_penalty·agg_tok(−logp), with kl_weights (GCPO weights w) the official
    T2I reweighting KL·(0.5 + 0.5·clamp(2 − 2w, 0, 1)). Values at masked positions (mask 0) never reach the
    loss or its gradient, NaN included."""
    check_loss_inputs(logp, logp_old, advantages, mask, ref_logp, kl_weights, eps_low=eps_low, eps_high=eps_high,
                      dual_clip=dual_clip, beta=beta, entropy_penalty=entropy_penalty, surrogate=surrogate,
                      kl_estimator=kl_estimator)
    valid = mask.bool()
    clean = lambda t: None if t is None else t.masked_fill(~valid, 0.0)  # padding never reaches the loss
    logp, logp_old, advantages, ref_logp, kl_weights = map(clean, (logp, logp_old, advantages, ref_logp, kl_weights))
    log_ratio = (logp - logp_old).clamp(-20.0, 20.0)  # (N, T)
    pg = surrogate_loss(log_ratio, advantages, eps_low, eps_high, dual_clip, surrogate)  # (N, T)
    agg = dict(loss_agg=loss_agg, total_tokens=total_tokens, total_seqs=total_seqs, max_len=max_len)
    loss = aggregate(pg, mask, **agg)
    n = valid.sum().clamp(min=1)
    metrics = {"pg_loss": loss.item(),
               **clip_fractions(log_ratio.detach().exp(), advantages, mask, eps_low, eps_high, dual_clip),
               "entropy": (-(logp.detach() * valid).sum() / n).item()}
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp, the frozen reference policy's log-probs")
        kl = kl_penalty(logp, ref_logp, kl_estimator)  # (N, T)
        if kl_weights is not None:
            kl = kl * (0.5 + 0.5 * (2.0 - 2.0 * kl_weights).clamp(0.0, 1.0))
        kl_term = aggregate(kl, mask, **agg)
        loss = loss + beta * kl_term
        metrics["kl_ref"] = kl_term.item()
    if entropy_penalty != 0:
        loss = loss + entropy_penalty * aggregate(-logp, mask, "token-mean", total_tokens)
    return loss, metrics


# ---------------------------------------------------------------------------------------------------------
# ROLLOUT (§1–§3): B prompts × G responses → rewards → dynamic sampling → advantages


def seeded(cfg: Config, *keys: int):
    """Derived, not global, randomness: a numpy Generator and a torch Generator for (seed, *keys)."""
    np_rng = np.random.default_rng([cfg.seed, *keys])
    gen = torch.Generator(device=cfg.device).manual_seed(int(np_rng.integers(2**62)))
    return np_rng, gen


def prompt_tensors(task, prompts_np: np.ndarray, device):
    """(n, P) prompt ids and their attention mask (0 on left padding) as tensors on the device."""
    return torch.as_tensor(prompts_np, device=device), torch.as_tensor(task.prompt_mask(prompts_np), device=device)


@torch.no_grad()
def rollout(model, task, cfg: Config, step: int) -> tuple[dict | None, dict]:
    """Sample, score and (with dynamic sampling) filter one training batch. Returns (batch, metrics): batch is a
    dict of (N, ...) tensors (prompts, prompt_mask, neg_prompts, neg_mask, responses, mask, logp_old, rewards,
    truncated, key_mask, adv, and w_rollout when the weights come from the rollout policy), or None when no
    group was informative; metrics describe everything sampled this step."""
    G, T, dev = cfg.group_size, cfg.max_new_tokens, cfg.device
    kept, informative, tries, n_kept = [], [], 0, 0
    while tries < (cfg.max_sampling_tries if cfg.dynamic_sampling else 1) and n_kept < cfg.batch_prompts:
        np_rng, gen = seeded(cfg, step, tries)
        tries += 1
        prompts_np = np.repeat(task.sample_prompts(cfg.batch_prompts, np_rng), G, axis=0)  # (N, P)
        neg_np = task.negative_prompts(prompts_np, cfg.negative)  # (N, P)
        (prompts, pmask), (neg, nmask) = prompt_tensors(task, prompts_np, dev), prompt_tensors(task, neg_np, dev)
        responses, mask, logp_old, truncated = sample(
            model, prompts, pmask, T, task.eos_id, task.pad_id, cfg.temperature, cfg.top_p, gen, neg, nmask,
            cfg.guidance_scale)
        score = task.score(prompts_np, responses.cpu().numpy(), rng=np_rng)
        rewards = check_rewards(torch.as_tensor(score.reward, dtype=torch.float64), len(prompts_np)).to(dev)
        if cfg.overlong_buffer > 0:
            rewards = rewards + overlong_penalty(mask.sum(1), T, cfg.overlong_buffer)
        if cfg.overlong_filter:
            mask = mask * (~truncated).long()[:, None]
        informative.append(informative_groups(rewards, G))  # (B,)
        keep = (informative[-1] if cfg.dynamic_sampling else torch.ones_like(informative[-1])).repeat_interleave(G)
        kept.append(dict(prompts=prompts, prompt_mask=pmask, neg_prompts=neg, neg_mask=nmask, responses=responses,
                         mask=mask, logp_old=logp_old, rewards=rewards, truncated=truncated,
                         key_mask=torch.as_tensor(score.key_mask, device=dev), keep=keep))
        n_kept += int(keep.sum()) // G
    width, n_groups = max(b["responses"].shape[1] for b in kept), min(n_kept, cfg.batch_prompts)
    fill = {"responses": task.pad_id, "mask": 0, "logp_old": 0.0, "key_mask": False}  # the (n, T) ones: pad to width
    pad = lambda k, t: F.pad(t, (0, width - t.shape[1]), value=fill[k]) if k in fill else t
    batch = {k: torch.cat([pad(k, b[k])[b["keep"]] for b in kept])[: n_groups * G]  # a full batch: exactly B groups
             for k in kept[0] if k != "keep"}
    rewards_seen = torch.cat([b["rewards"] for b in kept])  # every try's, kept or not
    metrics = {"reward_mean": rewards_seen.mean().item(), "reward_std": rewards_seen.std().item(),
               "zero_std_frac": 1.0 - torch.cat(informative).double().mean().item(),
               "response_len": torch.cat([b["mask"].sum(1) for b in kept]).double().mean().item(),
               "truncated_frac": torch.cat([b["truncated"] for b in kept]).double().mean().item(),
               "sampling_tries": tries, "groups_kept": n_groups}
    if n_groups == 0:
        return None, metrics
    batch["adv"] = group_advantages(batch["rewards"], G, cfg.adv_scale, cfg.adv_eps).float()  # (N,)
    scheme = credit_scheme(cfg)
    if cfg.weights_from == "rollout" or schemes.is_group_level(scheme):  # scored once, by the sampling policy
        batch["w_rollout"] = credit_weights(model, batch, cfg, scheme, seeded(cfg, step, 2_000_003)[1],
                                            logp=batch["logp_old"])
    return batch, metrics


@torch.no_grad()
def credit_inputs(model, b: dict, cfg: Config, need: tuple, generator=None, logp=None, logp_all=None) -> dict:
    """What a credit scheme names (gcpo_support.schemes.INPUTS) for the responses of batch b, computing only that:
    the prompt's log-probs unless given (the training pass's), the whole log-softmax only for logp_all or entropy,
    the negative prompt's forward only for logp_neg or logp_neg_all. The rest is read from b."""
    full = "logp_all" in need or "entropy" in need
    if (logp is None and "logp" in need) or (logp_all is None and full):
        logp, logp_all = response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"], cfg.temperature,
                                           full=full)
    x = dict(logp=logp, logp_all=logp_all, group_size=cfg.group_size, generator=generator)
    if "entropy" in need:  # H = −Σ_v π log π, with 0·log 0 = 0
        x["entropy"] = -torch.where(logp_all > -math.inf, logp_all.exp() * logp_all, 0.0).sum(-1)  # (n, T)
    if "logp_neg" in need or "logp_neg_all" in need:
        x["logp_neg"], x["logp_neg_all"] = response_logprobs(
            model, b["neg_prompts"], b["neg_mask"], b["responses"], cfg.temperature, full="logp_neg_all" in need)
    return {k: x[k] if k in x else b[k] for k in need}  # mask, key_mask, adv, rewards: the batch's


def credit_weights(model, b: dict, cfg: Config, scheme, generator=None, logp=None, logp_all=None) -> torch.Tensor:
    """The token weights w (n, T) the run's credit scheme gives the responses of b: Ã_{i,t} = w_{i,t}·A_i."""
    return schemes.call(scheme, {"mask": b["mask"], **credit_inputs(model, b, cfg, schemes.needs(scheme), generator,
                                                                      logp, logp_all)})


def micro_batch_loss(model, ref_model, b: dict, cfg: Config, scheme, total_tokens, total_seqs, generator=None):
    """Loss of one micro-batch b (dict of (n, ...) tensors). GCPO's only change to DAPO is here: the advantage
    A_i (n,) becomes Ã = w · A_i (n, T), with w from the credit scheme (GCPO: the contrast against the negative
    prompt; DAPO: w ≡ 1). Returns (loss, metrics, w, logp)."""
    scored = cfg.weights_from == "rollout" or schemes.is_group_level(scheme)  # once, in rollout: b["w_rollout"]
    full = not scored and bool({"logp_all", "entropy"} & set(schemes.needs(scheme)))
    logp, logp_all = response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"],
                                       cfg.temperature, full=full)  # (n, T), with grad
    w = b["w_rollout"] if scored else credit_weights(
        model, b, cfg, scheme, generator, logp.detach(), None if logp_all is None else logp_all.detach())
    adv = b["adv"][:, None] * w  # (n, T): Ã_{i,t} = w_{i,t}·A_i
    ref_logp = None
    if ref_model is not None:
        with torch.no_grad():
            ref_logp, _ = response_logprobs(ref_model, b["prompts"], b["prompt_mask"], b["responses"], cfg.temperature)
    loss, metrics = policy_loss(
        logp, b["logp_old"], adv, b["mask"], eps_low=cfg.eps_low, eps_high=cfg.eps_high, dual_clip=cfg.dual_clip,
        loss_agg=cfg.loss_agg, total_tokens=total_tokens, total_seqs=total_seqs, max_len=cfg.max_new_tokens,
        ref_logp=ref_logp, beta=cfg.beta, kl_estimator=cfg.kl_estimator, kl_weights=w if cfg.kl_reweight else None,
        entropy_penalty=cfg.entropy_penalty, surrogate=cfg.surrogate)
    return loss, metrics, w, logp.detach()


def update(model, optimizer, ref_model, batch: dict, cfg: Config, step: int) -> dict:
    """PPO-style update on one rollout: epochs × mini-batches (one optimizer step each) × micro-batches
    (gradient accumulation, each divided by the whole mini-batch's token or sequence count)."""
    N = batch["responses"].shape[0]
    _, gen = seeded(cfg, step, 1_000_003)
    _, w_gen = seeded(cfg, step, 2_000_003)  # a credit scheme's own randomness (the `shuffled` control's)
    scheme = credit_scheme(cfg)
    sums, weight_stats, grad_norms, skipped = {}, [], [], 0
    for _ in range(cfg.epochs):
        order = torch.randperm(N, generator=gen, device=cfg.device)
        for mb in order.chunk(cfg.minibatches):
            total_tokens, total_seqs = batch["mask"][mb].sum(), len(mb)
            for idx in mb.split(cfg.micro_batch or len(mb)):
                b = {k: v[idx] for k, v in batch.items()}
                loss, m, w, logp = micro_batch_loss(model, ref_model, b, cfg, scheme, total_tokens, total_seqs, w_gen)
                loss.backward()
                weight_stats.append((w, logp, idx))
                share = b["mask"].sum().item() / max(total_tokens.item(), 1) / (cfg.epochs * cfg.minibatches)
                for k, v in m.items():  # token-weighted average over the whole update
                    sums[k] = sums.get(k, 0.0) + v * share
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            if torch.isfinite(grad_norm):
                optimizer.step()
            else:
                skipped += 1  # a non-finite gradient never reaches the weights
            optimizer.zero_grad(set_to_none=True)
            grad_norms.append(grad_norm.item())
    metrics = {**sums, "grad_norm": float(np.mean(grad_norms)), "skipped_steps": skipped}
    metrics["key_token_frac"] = ((batch["key_mask"] & batch["mask"].bool()).sum() / batch["mask"].sum()).item()
    if weight_stats:
        w, logp, idx = (torch.cat(parts) for parts in zip(*weight_stats))  # rows idx of the batch
        metrics.update(weight_metrics(w, batch["key_mask"][idx], batch["mask"][idx], logp))
        if cfg.log_token_moves:  # |log π_new − log π_old| after the update, on high- vs low-weight tokens
            new, _ = response_logprobs(model, batch["prompts"], batch["prompt_mask"], batch["responses"],
                                       cfg.temperature)
            metrics.update(token_moves(new[idx], batch["logp_old"][idx], w, batch["mask"][idx]))
    return metrics


# ---------------------------------------------------------------------------------------------------------
# TRAINING LOOP


def warm_start(model, task, cfg: Config, progress: bool = False) -> float:
    """Supervised phase on imperfect demonstrations with prompt dropout to the null prompt (§9), so the
    policy models both p(y|x) and p(y|null) and the contrast means something. Returns the last loss."""
    if cfg.warm_steps == 0:
        return float("nan")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warm_lr)
    np_rng = np.random.default_rng([cfg.seed, 7])
    loss = torch.tensor(float("nan"))
    for _ in tqdm.trange(cfg.warm_steps, disable=not progress, desc=f"warm start on {task.name}", leave=False):
        prompts_np, completions_np = task.demonstrations(cfg.warm_batch, np_rng, cfg.demo_accuracy, cfg.null_prob)
        prompts, pmask = prompt_tensors(task, prompts_np, cfg.device)
        completions = torch.as_tensor(completions_np, device=cfg.device)
        logp, _ = response_logprobs(model, prompts, pmask, completions)
        loss = -(logp * (completions != task.pad_id)).sum() / (completions != task.pad_id).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)  # no stale warm-start gradient may leak into the first RL step
    return loss.item()


@torch.no_grad()
def evaluate(model, task, cfg: Config, prompts_np: np.ndarray) -> float:
    """Mean reward of one sampled response per held-out prompt (fixed sampling seed, so repeatable)."""
    _, gen = seeded(cfg, 999_999)
    prompts, pmask = prompt_tensors(task, prompts_np, cfg.device)
    responses, *_ = sample(model, prompts, pmask, cfg.max_new_tokens, task.eos_id, task.pad_id, cfg.temperature,
                           cfg.top_p, gen)
    score = task.score(prompts_np, responses.cpu().numpy(), rng=np.random.default_rng([cfg.seed, 5]))
    return float(score.reward.mean())


def resolve(cfg: Config, task) -> Config:
    """The run's config with every derived value filled in (a copy; the caller's cfg is left as given):
    device 'auto' → cuda or cpu, max_new_tokens 0 → the task's own, warm_steps −1 → 1200 (tiny) or 0,
    negative '' → the task's first kind."""
    check_task_options(cfg, task)
    schemes.needs(credit_scheme(cfg))  # a scheme that cannot be loaded or asks for an unknown input: one line, now
    negative = cfg.negative or task.negative_kinds[0]
    return dataclasses.replace(
        cfg, device=("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device,
        max_new_tokens=cfg.max_new_tokens or task.max_new_tokens, negative=negative,
        warm_steps=(1200 if cfg.model == "tiny" else 0) if cfg.warm_steps < 0 else cfg.warm_steps)


def train(cfg: Config, progress: bool = True) -> dict:
    """Warm start, then `cfg.steps` RL steps. Returns a summary dict: reward_before/after, evals (the learning
    curve, (steps done, eval reward) pairs), history (per-step metrics), and the model, task, resolved cfg."""
    validate_config(cfg)
    task, tokenizer = build_task(cfg)
    cfg = resolve(cfg, task)
    torch.manual_seed(cfg.seed)
    model = build_policy(cfg, task.vocab_size, max(task.prompt_len + cfg.max_new_tokens, task.demo_len),
                         dict(bos_token_id=task.bos_id, eos_token_id=task.eos_id, pad_token_id=task.pad_id))
    check_positions(model, cfg, task)
    model.to(cfg.device).eval()  # eval(): no dropout, so ρ ≡ 1 on the first mini-batch
    with autocast(cfg):
        warm_loss = warm_start(model, task, cfg, progress)
        ref_model = copy.deepcopy(model).requires_grad_(False) if cfg.beta > 0 else None
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        eval_prompts = task.sample_prompts(cfg.eval_prompts, np.random.default_rng([cfg.seed, 31337]))
        evals = [(0, evaluate(model, task, cfg, eval_prompts))]

        output = RunOutput(cfg)  # config.json, metrics.jsonl and the model under cfg.out (nothing if empty)
        output.log({"step": -1, "phase": "before RL", "eval_reward": evals[0][1], "warm_loss": warm_loss})
        history = []
        bar = tqdm.trange(cfg.steps, disable=not progress, desc=f"{cfg.algo} on {task.name}")
        for step in bar:
            batch, metrics = rollout(model, task, cfg, step)
            metrics = {"step": step, **metrics}
            if batch is None:
                metrics["skipped_steps"] = 1  # every group had equal rewards: nothing to learn from
            else:
                metrics.update(update(model, optimizer, ref_model, batch, cfg, step))
            done = step + 1
            if done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0):
                evals.append((done, evaluate(model, task, cfg, eval_prompts)))
                metrics["eval_reward"] = evals[-1][1]
            history.append(metrics)
            output.log(metrics)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}")
    output.close(model, tokenizer)
    return {"reward_before": evals[0][1], "reward_after": evals[-1][1], "evals": evals, "warm_loss": warm_loss,
            "history": history, "model": model, "task": task, "cfg": cfg, "eval_prompts": eval_prompts}


@torch.no_grad()
def sample_credit(result: dict, n: int) -> dict:
    """Responses to the first n held-out prompts under the final policy, with the weights the run's credit scheme
    gives them. Each prompt is sampled G times, as in training, so that a scheme that reads rewards or groups
    sees what it saw there; the first response of each group is kept. Returns numpy arrays for printing."""
    model, task, cfg, G = result["model"], result["task"], result["cfg"], result["cfg"].group_size
    prompts_np = np.repeat(result["eval_prompts"][:n], G, axis=0)  # (n·G, P)
    neg_np = task.negative_prompts(prompts_np, cfg.negative)
    (np_rng, gen), scheme, dev = seeded(cfg, 424242), credit_scheme(cfg), cfg.device
    with autocast(cfg):
        (prompts, pmask), (neg, nmask) = prompt_tensors(task, prompts_np, dev), prompt_tensors(task, neg_np, dev)
        responses, mask, _, _ = sample(model, prompts, pmask, cfg.max_new_tokens, task.eos_id, task.pad_id,
                                       cfg.temperature, cfg.top_p, gen)
        score = task.score(prompts_np, responses.cpu().numpy(), rng=np_rng)
        rewards = torch.as_tensor(score.reward, dtype=torch.float64, device=dev)
        b = dict(prompts=prompts, prompt_mask=pmask, neg_prompts=neg, neg_mask=nmask, responses=responses, mask=mask,
                 key_mask=torch.as_tensor(score.key_mask, device=dev), rewards=rewards,
                 adv=group_advantages(rewards, G, cfg.adv_scale, cfg.adv_eps).float())
        w = credit_weights(model, b, cfg, scheme, seeded(cfg, 424243)[1])  # (n·G, T)
    keep = slice(None, None, G)
    return dict(scheme=schemes.info(scheme).name, prompts=prompts_np[keep], negatives=neg_np[keep],
                responses=responses[keep].cpu().numpy(), mask=mask[keep].cpu().numpy(),
                weights=w[keep].float().cpu().numpy(), key_mask=score.key_mask[keep], rewards=score.reward[keep])


# ---------------------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> dict:
    cfg = parse_args(argv, Config, PRESETS, make_config, __doc__)
    result = train(cfg)
    print(summarize(result, credit_scheme(result["cfg"])))
    if cfg.show > 0:
        print(show_sample(sample_credit(result, cfg.show), result["task"], result["cfg"], cfg.html))
    return result


def cli(argv=None) -> int:
    """`python gcpo.py ...`: returns the exit status; a user's mistake is one line on stderr, no traceback."""
    try:
        main(argv)
    except ValueError as e:
        print("gcpo.py: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("gcpo", sys.modules["__main__"])  # a plugged-in scheme's `import gcpo` finds this module
    sys.exit(cli())
