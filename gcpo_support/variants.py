"""The token-score and weight laws that neither GCPO default uses (the ablations of docs/algorithm.md §4), and
the official code's hist loop reproduced bit for bit. gcpo.token_scores and gcpo.normalize_weights dispatch here."""

from __future__ import annotations

import torch


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
            1, vals.argsort(dim=1), torch.arange(1, n + 1, dtype=vals.dtype, device=vals.device).expand_as(vals)
        )
        pct = torch.zeros(len(rows), n + 1, dtype=vals.dtype, device=vals.device)
        pct[:, :n] = ranks / n
        u = pct[:, :n].pow(alpha)  # a strided view: pow runs row by row with the official 1-D rounding
        weights[rows] = torch.zeros_like(scores[rows]).scatter_(1, cols, u / u.sum(1, keepdim=True) * n)
    return weights
