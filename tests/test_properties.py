"""Properties of the pure functions that a realistic one-line bug would break (SPEC §3–§5).

Each test names a property, not a line, and uses inputs that tell the right code from its likely mistakes:
float means that are inexact, ratios between 1 + ε_low and 1 + ε_high, weights inside a clamp, log-ratios
far outside the trust region, padding that carries weight, scores that are all distinct."""
import math

import numpy as np
import pytest
import torch

import gcpo

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
NORMS = ["hist", "softmax", "minmax", "none"]
DIVS = ["kl", "abs", "info_gain", "full_kl"]


def scores_and_mask(N=5, T=9, seed=0, dtype=torch.float64):
    """Distinct positive scores and a mask with 9, 6, 3, 1 and 7 valid tokens."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(N, T, generator=g, dtype=dtype) * 3
    lengths = torch.tensor([9, 6, 3, 1, 7][:N])
    return scores, (torch.arange(T)[None] < lengths[:, None]).long()


# ---- group advantage --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_equal_group_gets_exactly_zero_even_when_its_float_mean_is_inexact(scale, dtype):
    G = 7
    values = [0.1, 0.7, 1 / 3, 2.9]
    r = torch.tensor([v for v in values for _ in range(G)] + [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.5], dtype=dtype)
    flat = r[:-G].view(-1, G)
    assert (flat - flat.mean(1, keepdim=True) != 0).any()  # plain centring leaves rounding noise here ...
    adv = gcpo.group_advantages(r, G, scale)
    assert (adv[:-G] == 0).all()  # ... which the flat-group rule must remove exactly
    assert (adv[-G:] != 0).all() and adv[-G:].sum().abs() < 1e-5


def test_advantage_signs_follow_rewards_within_each_group():
    r = torch.tensor([0.3, 0.9, 0.1, 0.5, 2.0, -1.0, 0.25, 0.0])
    for scale in ("group", "batch", "none"):
        adv = gcpo.group_advantages(r, 4, scale).view(2, 4)
        centred = r.view(2, 4) - r.view(2, 4).mean(1, keepdim=True)
        assert torch.equal(adv.sign(), centred.sign())
        assert torch.equal(adv.argsort(1), r.view(2, 4).argsort(1))  # order within a group is kept


# ---- contrast scores --------------------------------------------------------------------------------------
def test_abs_score_is_the_log_prob_gap_up_to_twenty():
    gap = torch.tensor([[-25.0, -15.0, -12.0, -0.5, 0.5, 12.0, 15.0, 25.0]])  # logp⁻ − logp
    eta = gcpo.token_scores(torch.zeros_like(gap), gap, torch.ones_like(gap), "abs")
    assert eta.tolist() == [[20.0, 15.0, 12.0, 0.5, 0.5, 12.0, 15.0, 20.0]]  # distinct gaps stay distinct to 20


def test_k3_score_is_nonnegative_bounded_and_zero_only_without_contrast():
    gap = torch.linspace(-30, 30, 121)[None]
    eta = gcpo.token_scores(torch.zeros_like(gap), gap, torch.ones_like(gap), "kl")
    assert torch.isfinite(eta).all() and (eta >= 0).all() and (eta <= 10).all()
    assert ((eta == 0) == (gap == 0)).all()
    small = gap.abs() < 2  # below the cap at 10, k3 grows with |gap| on each side
    assert (eta[small & (gap > 0)].diff() > 0).all() and (eta[small & (gap < 0)].diff() < 0).all()


# ---- weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", ["average", "official"])
def test_hist_weights_strictly_increase_with_the_score(ties):
    scores, mask = scores_and_mask()
    w = gcpo.normalize_weights(scores, mask, "hist", ties=ties)
    for i in range(len(mask)):
        n = int(mask[i].sum())
        by_score = w[i, :n][scores[i, :n].argsort()]
        assert (by_score.diff() > 0).all(), f"row {i}: weights not increasing in the score"


@pytest.mark.parametrize("norm", NORMS)
def test_every_normalization_keeps_the_order_of_scores(norm):
    scores, mask = scores_and_mask(seed=1)
    w = gcpo.normalize_weights(scores, mask, norm)
    for i in range(len(mask)):
        n = int(mask[i].sum())
        by_score = w[i, :n][scores[i, :n].argsort()]
        assert (by_score.diff() >= 0).all()
        if norm != "minmax":  # minmax clamps its low end at 0.2, so only it may tie distinct scores
            assert (by_score.diff() > 0).all()


@pytest.mark.parametrize("norm", ["hist", "softmax", "minmax"])
def test_equal_scores_get_equal_weights(norm):
    scores = torch.tensor([[0.5, 2.0, 0.5, 1.5, 2.0, 0.5, 3.0]], dtype=torch.float64)
    w = gcpo.normalize_weights(scores, torch.ones_like(scores), norm)[0]
    for value in (0.5, 2.0):
        same = w[scores[0] == value]
        assert (same == same[0]).all()
    assert w[6] > w[1] > w[3] > w[0]


@pytest.mark.parametrize("div", DIVS)
@pytest.mark.parametrize("norm", NORMS)
def test_weights_carry_no_gradient_for_any_option(div, norm):
    g = torch.Generator().manual_seed(2)
    logp_all = torch.randn(3, 5, 6, generator=g, dtype=torch.float64).log_softmax(-1).requires_grad_(True)
    neg_all = torch.randn(3, 5, 6, generator=g, dtype=torch.float64).log_softmax(-1).requires_grad_(True)
    logp, logp_neg = logp_all[..., 0], neg_all[..., 0]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    full = dict(logp_all=logp_all, logp_neg_all=neg_all) if div == "full_kl" else {}
    w = gcpo.token_weights(logp, logp_neg, mask, divergence=div, normalization=norm, **full)
    assert not w.requires_grad
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)[:, None] * w
    loss, _ = gcpo.policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    # the gradient is exactly the one with w held constant: −Ã/Σ|y| on each log-prob, nothing through w
    assert neg_all.grad is None
    want = torch.zeros_like(logp_all)
    want[..., 0] = -adv * mask / mask.sum()
    torch.testing.assert_close(logp_all.grad, want, rtol=1e-12, atol=1e-12)


def test_key_metrics_ignore_everything_under_the_mask():
    w = torch.tensor([[2.0, 0.5, 0.5, 1.0, 0.0, 0.0], [1.5, 0.5, 1.0, 0.0, 0.0, 0.0]])
    key = torch.tensor([[True, False, False, False, False, False], [False, True, False, False, False, False]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    share, auc = gcpo.key_token_share(w, key, mask), gcpo.key_token_auc(w, key, mask)
    assert share.item() == pytest.approx((2.0 + 0.5) / (4.0 + 3.0))
    # padding that carries weight, and key flags on padding, change nothing
    w_junk, key_junk = w.clone(), key.clone()
    w_junk[mask == 0], key_junk[mask == 0] = 5.0, True
    assert gcpo.key_token_share(w_junk, key_junk, mask).item() == share.item()
    assert gcpo.key_token_auc(w_junk, key_junk, mask).item() == auc.item()


# ---- the surrogate's trust region (both surrogates share it) -----------------------------------------------
def token_grads(ratios, advs, **kw):
    """∂loss/∂logp of single-token responses with these ratios ρ and advantages Ã (float64)."""
    logp = torch.tensor(ratios, dtype=torch.float64).log()[None].requires_grad_(True)
    adv = torch.tensor(advs, dtype=torch.float64)[None]
    loss, metrics = gcpo.policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(adv), **kw)
    loss.backward()
    return logp.grad[0], metrics


@pytest.mark.parametrize("surrogate", ["clip", "log_hinge"])
def test_trust_region_is_one_minus_eps_low_to_one_plus_eps_high(surrogate):
    # ratios chosen between 1 + ε_low and 1 + ε_high (and between 1 − ε_high and 1 − ε_low), where a swap shows
    ratios = [1.25, 1.30, 0.81, 0.79, 0.75, 1.35]
    advs = [1.0, 1.0, -1.0, -1.0, 1.0, -1.0]
    grad, m = token_grads(ratios, advs, eps_low=0.2, eps_high=0.28, dual_clip=0.0, surrogate=surrogate)
    moves = [bool(g != 0) for g in grad]
    # Ã > 0: the gradient stays up to ρ = 1.28 and stops above it; Ã < 0: it stays down to 0.8 and stops below;
    # on the side that has not improved yet (Ã > 0 at ρ < 1, Ã < 0 at ρ > 1) it always stays
    assert moves == [True, False, True, False, True, True]
    n = len(ratios)
    inside = torch.tensor([r if surrogate == "clip" else 1.0 for r in ratios], dtype=torch.float64)
    want = -torch.tensor(advs, dtype=torch.float64) * inside / n * torch.tensor(moves)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)  # clip: −Ã ρ/n; log-hinge: −Ã/n (no ρ)
    assert m["clipfrac_high"] == pytest.approx(1 / n) and m["clipfrac_low"] == pytest.approx(1 / n)


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.28), (0.28, 0.2), (0.1, 0.5)])
def test_clip_fractions_count_exactly_the_tokens_whose_gradient_is_removed(eps_low, eps_high):
    ratios = np.exp(np.linspace(-0.7, 0.7, 29)).tolist() * 2
    advs = [1.0] * 29 + [-0.5] * 29
    grad, m = token_grads(ratios, advs, eps_low=eps_low, eps_high=eps_high, dual_clip=0.0)
    a = torch.tensor(advs)
    assert m["clipfrac_high"] == pytest.approx(((grad == 0) & (a > 0)).double().mean().item())
    assert m["clipfrac_low"] == pytest.approx(((grad == 0) & (a < 0)).double().mean().item())
    assert 0 < m["clipfrac_high"] and 0 < m["clipfrac_low"]


def test_dual_clip_removes_the_gradient_exactly_above_c():
    grad, m = token_grads([2.9, 3.1, 2.0], [-1.0, -1.0, -1.0], dual_clip=3.0)
    assert grad[0] != 0 and grad[1] == 0 and grad[2] != 0
    assert m["clipfrac_dual"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("surrogate,dual_clip", [("clip", 0.0), ("clip", 3.0), ("log_hinge", 0.0)])
def test_extreme_log_ratios_give_finite_loss_and_gradient(surrogate, dual_clip):
    # float32, as in training: exp(100) overflows unless the log-ratio is clamped before exp
    gaps = torch.tensor([[100.0, -100.0, 100.0, -100.0, 30.0, 0.1]])
    logp = gaps.clone().requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -2.0, 0.5]])
    loss, m = gcpo.policy_loss(logp, torch.zeros_like(gaps), adv, torch.ones_like(adv), dual_clip=dual_clip,
                               surrogate=surrogate)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert all(math.isfinite(v) for v in m.values())
    assert logp.grad[0, -1] != 0  # a token inside the trust region still learns


# ---- KL to the reference ----------------------------------------------------------------------------------
def by_hand(x, mask, agg, L_max):
    """The three aggregations written out row by row in float64."""
    x, m = x.double(), mask.double()
    rows = [(x[i] * m[i]).sum() for i in range(len(x))]
    if agg == "token-mean":
        return sum(rows) / m.sum()
    if agg == "seq-mean-token-mean":
        return sum(r / m[i].sum() for i, r in enumerate(rows)) / len(x)
    return sum(rows) / (len(x) * L_max)


@pytest.mark.parametrize("agg", AGGS)
def test_kl_to_reference_is_k3_aggregated_like_the_loss(agg):
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 3
    ref = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 3
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    zero = torch.zeros_like(logp)
    loss, m = gcpo.policy_loss(logp, logp, zero, mask, loss_agg=agg, max_len=10, ref_logp=ref, beta=0.3)
    k3 = (ref - logp).exp() - (ref - logp) - 1
    want = by_hand(k3, mask, agg, 10).item()
    assert m["kl_ref"] == pytest.approx(want, rel=1e-12)
    assert loss.item() == pytest.approx(0.3 * want, rel=1e-12)


def test_t2i_kl_reweighting_factor_falls_from_one_to_half_between_w_half_and_one():
    w = torch.tensor([[0.25, 0.5, 0.6, 0.75, 0.9, 1.0, 2.0]], dtype=torch.float64)
    factor = [1.0, 1.0, 0.9, 0.75, 0.6, 0.5, 0.5]  # 0.5 + 0.5·clamp(2 − 2w, 0, 1), most points inside the clamp
    logp = torch.full_like(w, -1.0)
    ref = torch.tensor([[-1.5, -0.5, -2.0, -0.2, -1.2, -0.9, -3.0]], dtype=torch.float64)
    k3 = (ref - logp).exp() - (ref - logp) - 1
    _, m = gcpo.policy_loss(logp, logp, torch.zeros_like(w), torch.ones_like(w), ref_logp=ref, beta=1.0,
                            kl_weights=w)
    assert m["kl_ref"] == pytest.approx((k3[0] * torch.tensor(factor, dtype=torch.float64)).mean().item(), rel=1e-12)


def test_k3_is_an_unbiased_estimate_of_kl_and_k1_of_its_mean():
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    kl = (p * (p / q).log()).sum().item()
    y = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[y][None], q.log()[y][None]
    for est in ("k3", "k1"):
        assert gcpo.kl_penalty(logp, logq, est).mean().item() == pytest.approx(kl, abs=0.01)
