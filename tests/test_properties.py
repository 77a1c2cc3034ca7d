"""Properties of the pure functions that a realistic one-line bug would break (docs/algorithm.md §3–§5).

Each test names a property, not a line, and uses inputs that tell the right code from its likely mistakes:
float means that are inexact, ratios between 1 + ε_low and 1 + ε_high, weights inside a clamp, log-ratios
far outside the trust region, padding that carries weight, scores that are all distinct."""

import math

import numpy as np
import pytest
import torch

import gcpo
from gcpo_support import checks
from gcpo_support.metrics import key_token_auc, key_token_share

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


def test_full_kl_sums_over_the_support_of_the_prompt_distribution():
    """A token the policy never picks (log π = −inf) contributes 0·log 0 = 0, not NaN."""
    p = torch.tensor([0.6, 0.4, 0.0], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    la, lb = p.log()[None, None], q.log()[None, None]  # (1, 1, 3), la[..., 2] = −inf
    eta = gcpo.token_scores(la[..., 0], lb[..., 0], torch.ones(1, 1), "full_kl", la, lb)
    assert eta.item() == pytest.approx(0.6 * math.log(3) + 0.4 * math.log(4 / 3), rel=1e-12)


@pytest.mark.parametrize("given", ["logp_all", "logp_neg_all"])
def test_full_kl_needs_both_full_distributions(given):
    full = torch.randn(1, 2, 5).log_softmax(-1)
    with pytest.raises(ValueError, match="full_kl"):
        gcpo.token_scores(full[..., 0], full[..., 1], torch.ones(1, 2), "full_kl", **{given: full})


def test_hist_rejects_a_top_fraction_that_rounds_away():
    with pytest.raises(ValueError, match="top_fraction"):
        gcpo.hist_alpha(1e-17, 0.5)  # 1 − x == 1 in float64: α would divide by log(1) = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hist_with_a_huge_alpha_gives_the_whole_weight_to_the_top_tokens(dtype):
    """top_fraction = 1e-6 makes α ≈ 7·10⁵: p^α is 0 below p = 1 (and, with a tied top, everywhere), yet each
    response keeps mean-one weights, all on its top-scoring tokens, whatever the other responses are."""
    scores = torch.tensor([[0.1, 0.5, 0.9, 0.9], [0.1, 0.2, 0.3, 0.4]], dtype=dtype)
    w = gcpo.normalize_weights(scores, torch.ones(2, 4), "hist", top_fraction=1e-6, target_mass=0.5)
    assert w.tolist() == [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 4.0]]


# ---- weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", ["average", "official"])
def test_hist_weights_strictly_increase_with_the_score(ties):
    scores, mask = scores_and_mask()
    w = gcpo.normalize_weights(scores, mask, "hist", ties=ties)
    for i in range(len(mask)):
        n = int(mask[i].sum())
        by_score = w[i, :n][scores[i, :n].argsort()]
        assert (by_score.diff() > 0).all(), f"row {i}: weights not increasing in the score"


@pytest.mark.parametrize("target_mass", [0.8, 0.99])
def test_hist_weights_have_mean_one_with_a_tied_top_and_a_steep_law(target_mass):
    # nine tied top scores share rank 6 of 10: p = 0.6, so with α = 8.0 (target 0.99) Σu = 9·0.6^8 + 0.1^8 < 1
    scores = torch.tensor([[0.0] + [1.0] * 9, [0.3, 0.1, 0.2, 0.7, 0.5, 0.6, 0.4, 0.9, 0.8, 0.0]], dtype=torch.float64)
    w = gcpo.normalize_weights(scores, torch.ones(2, 10), "hist", target_mass=target_mass)
    torch.testing.assert_close(w.mean(1), torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=0)
    assert (w[0, 1:] == w[0, 1]).all() and w[0, 1] > w[0, 0]


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
    share, auc = key_token_share(w, key, mask), key_token_auc(w, key, mask)
    assert share.item() == pytest.approx((2.0 + 0.5) / (4.0 + 3.0))
    # padding that carries weight, and key flags on padding, change nothing
    w_junk, key_junk = w.clone(), key.clone()
    w_junk[mask == 0], key_junk[mask == 0] = 5.0, True
    assert key_token_share(w_junk, key_junk, mask).item() == share.item()
    assert key_token_auc(w_junk, key_junk, mask).item() == auc.item()


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


@pytest.mark.parametrize("eps_low,eps_high,dual_clip", [(0.2, 0.28, 0.0), (0.28, 0.2, 0.0), (0.1, 0.5, 2.0)])
def test_clip_fractions_count_exactly_the_tokens_whose_gradient_is_removed(eps_low, eps_high, dual_clip):
    """high: Ã > 0 and no gradient; low: Ã < 0, ρ < 1 and no gradient; dual: Ã < 0, ρ > 1 and no gradient.
    The grid includes Ã = 0 (never clipped) and ratios exactly on 1 + ε_high, 1 − ε_low and c (not clipped)."""
    edge = lambda r: float(torch.tensor(r, dtype=torch.float64).log().exp())  # ρ = exp(log ρ) exactly
    hi, lo = edge(1 + eps_high), edge(1 - eps_low)
    eps_high, eps_low = hi - 1, 1 - lo  # so that 1 + ε_high and 1 − ε_low are exactly these ratios
    c = edge(dual_clip) if dual_clip else 0.0
    ratios = np.exp(np.linspace(-1.5, 1.5, 31)).tolist() + [hi, lo, c or 2.0]
    ratios, advs = ratios * 4, [1.0] * 34 + [-0.5] * 34 + [0.0] * 34 + [2.0] * 34
    grad, m = token_grads(ratios, advs, eps_low=eps_low, eps_high=eps_high, dual_clip=c)
    a, r, stopped = torch.tensor(advs), torch.tensor(ratios, dtype=torch.float64), grad == 0
    assert m["clipfrac_high"] == pytest.approx((stopped & (a > 0)).double().mean().item())
    assert m["clipfrac_low"] == pytest.approx((stopped & (a < 0) & (r < 1)).double().mean().item())
    assert m["clipfrac_dual"] == pytest.approx((stopped & (a < 0) & (r > 1)).double().mean().item())
    assert m["clipfrac_high"] > 0 and m["clipfrac_low"] > 0 and (m["clipfrac_dual"] > 0) == (dual_clip > 0)


def test_one_clipped_token_is_a_clip_fraction_of_one():
    _, m = token_grads([1.5], [1.0])
    assert m["clipfrac_high"] == 1.0


def test_log_hinge_loss_scales_with_the_advantage():
    log_ratio = torch.tensor([[0.1, -0.1, 0.3, -0.4]], dtype=torch.float64)
    adv = torch.tensor([[-0.5, 2.0, -3.0, 0.25]], dtype=torch.float64)
    xi = torch.tensor([[-math.log(0.8), math.log(1.28), -math.log(0.8), math.log(1.28)]], dtype=torch.float64)
    loss = gcpo.surrogate_loss(log_ratio, adv, 0.2, 0.28, 0.0, "log_hinge")
    torch.testing.assert_close(loss.double(), (xi * adv.abs() - adv * log_ratio).clamp(min=0), rtol=1e-7, atol=0)


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
    loss, m = gcpo.policy_loss(
        logp, torch.zeros_like(gaps), adv, torch.ones_like(adv), dual_clip=dual_clip, surrogate=surrogate
    )
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
    _, m = gcpo.policy_loss(logp, logp, torch.zeros_like(w), torch.ones_like(w), ref_logp=ref, beta=1.0, kl_weights=w)
    assert m["kl_ref"] == pytest.approx((k3[0] * torch.tensor(factor, dtype=torch.float64)).mean().item(), rel=1e-12)


def test_k3_is_an_unbiased_estimate_of_kl_and_k1_of_its_mean():
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    kl = (p * (p / q).log()).sum().item()
    y = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[y][None], q.log()[y][None]
    for est in ("k3", "k1"):
        assert gcpo.kl_penalty(logp, logq, est).mean().item() == pytest.approx(kl, abs=0.01)


# ---- documented defaults: a caller who passes nothing gets the official / DAPO values ------------------------
def test_defaults_are_the_documented_values():
    g = torch.Generator().manual_seed(4)
    logp, logp_neg = -torch.rand(3, 6, generator=g, dtype=torch.float64) * 3, -torch.rand(3, 6, generator=g) * 3
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    assert torch.equal(
        gcpo.token_scores(logp, logp_neg.double(), mask), gcpo.token_scores(logp, logp_neg.double(), mask, "kl")
    )
    assert gcpo.hist_alpha() == gcpo.hist_alpha(0.4, 0.8)
    s = gcpo.token_scores(logp, logp_neg.double(), mask, "abs")
    assert torch.equal(
        gcpo.normalize_weights(s, mask, "softmax"), gcpo.normalize_weights(s, mask, "softmax", softmax_temp=1.0)
    )
    ref = logp + torch.randn(3, 6, generator=g, dtype=torch.float64)
    assert torch.equal(gcpo.kl_penalty(logp, ref), gcpo.kl_penalty(logp, ref, "k3"))
    assert gcpo.aggregate(logp, mask).item() == gcpo.aggregate(logp, mask, "token-mean").item()
    # ratios at 0.79, 1.25, 1.30 and 3.5 with both signs of Ã: each default (0.2, 0.28, 3) changes the result
    ratios = torch.tensor([[0.79, 1.25, 1.30, 3.5, 0.79, 1.25, 1.30, 3.5]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    lr = ratios.log().requires_grad_(True)
    loss, m = gcpo.policy_loss(lr, torch.zeros_like(lr), adv, torch.ones_like(adv))
    want, m_want = gcpo.policy_loss(
        lr,
        torch.zeros_like(lr),
        adv,
        torch.ones_like(adv),
        eps_low=0.2,
        eps_high=0.28,
        dual_clip=3.0,
        loss_agg="token-mean",
        surrogate="clip",
    )
    assert loss.item() == want.item() and m == m_want
    assert torch.equal(gcpo.surrogate_loss(lr, adv), gcpo.surrogate_loss(lr, adv, 0.2, 0.28, 3.0, "clip"))


# ---- sampling filter --------------------------------------------------------------------------------------
def test_top_p_one_keeps_every_token_however_unlikely():
    logits = torch.tensor([[0.0, -30.0, -60.0, 5.0]])
    assert torch.equal(gcpo.top_p_filter(logits, 1.0), logits)


def test_top_p_drops_a_token_once_the_mass_before_it_reaches_top_p():
    logits = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()
    assert logits.softmax(-1).tolist() == [[0.5, 0.25, 0.125, 0.125]]  # exact in float32, so the tie is exact
    kept = torch.isfinite(gcpo.top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.25 reaches 0.75: the third token is not needed


def test_top_p_always_keeps_the_most_likely_token_and_only_it_when_it_suffices():
    logits = torch.tensor([[0.1, 0.6, 0.3]]).log()
    for top_p in (0.5, 1e-30):
        assert torch.isfinite(gcpo.top_p_filter(logits, top_p)).tolist() == [[False, True, False]]


# ---- rewards and advantages -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: gcpo.group_advantages(torch.zeros(0), 2, "median"),
        lambda: gcpo.token_scores(torch.zeros(0, 3), torch.zeros(0, 3), torch.ones(0, 3), "js"),
        lambda: gcpo.normalize_weights(torch.zeros(2, 0), torch.ones(2, 0), "rank"),
    ],
    ids=["group_advantages-scale", "token_scores-divergence", "normalize_weights-normalization"],
)
def test_an_unknown_option_name_is_an_error_even_on_an_empty_batch(call):
    with pytest.raises(ValueError, match="unknown"):
        call()


def test_non_finite_rewards_are_named_by_position():
    r = torch.tensor([0.0, float("nan"), float("inf"), 1.0, float("-inf"), float("nan"), float("nan"), float("nan")])
    with pytest.raises(ValueError, match=r"at responses \[1, 2, 4, 5, 6\]:"):  # the first five
        checks.check_rewards(r, 8)


def test_integer_rewards_give_the_advantages_of_their_float_values():
    r = torch.tensor([0, 1, 1, 1, 2, 0])
    assert torch.equal(gcpo.group_advantages(r, 3), gcpo.group_advantages(r.float(), 3))


@pytest.mark.parametrize(
    "bad",
    [
        dict(buffer=0),
        dict(buffer=11),
        dict(buffer=2.5),
        dict(max_len=-3),
        dict(lengths=torch.tensor([3.0, 4.0])),
        dict(lengths=torch.tensor([[3, 4]])),
        dict(lengths=torch.tensor([3, -1])),
    ],
)
def test_overlong_penalty_rejects_what_it_cannot_score(bad):
    args = {**dict(lengths=torch.tensor([0, 5, 12]), max_len=10, buffer=4), **bad}
    with pytest.raises(ValueError, match="max_len" if "max_len" in bad else "buffer" if "buffer" in bad else "lengths"):
        gcpo.overlong_penalty(**args)
    assert gcpo.overlong_penalty(torch.tensor([0, 5, 12]), 10, 4).tolist() == [0.0, 0.0, -1.0]  # length 0 is fine


def test_overlong_buffer_may_be_one_token_or_the_whole_length():
    lengths = torch.tensor([3, 9, 10, 11])
    assert gcpo.overlong_penalty(lengths, 10, 1).tolist() == [0.0, 0.0, -1.0, -1.0]
    assert gcpo.overlong_penalty(lengths, 10, 10).tolist() == [-0.3, -0.9, -1.0, -1.0]


@pytest.mark.parametrize("scale", ["group", "batch"])
def test_advantage_denominator_adds_eps_to_the_std(scale):
    r = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    std = r.view(2, 4).std(1, keepdim=True) if scale == "group" else r.std()
    centred = r.view(2, 4) - r.view(2, 4).mean(1, keepdim=True)
    want = (centred / (std + 0.25)).reshape(-1)
    torch.testing.assert_close(gcpo.group_advantages(r, 4, scale, eps=0.25), want, rtol=1e-12, atol=0)


# ---- weights and key metrics: scale invariances -----------------------------------------------------------
@pytest.mark.parametrize("norm", ["softmax", "minmax", "hist"])
def test_softmax_minmax_and_hist_depend_on_scores_only_up_to_scale(norm):
    scores, mask = scores_and_mask(seed=6)
    big, small = gcpo.normalize_weights(scores * 4, mask, norm), gcpo.normalize_weights(scores * 0.05, mask, norm)
    torch.testing.assert_close(small, big, rtol=1e-6, atol=1e-7)


def test_key_metrics_do_not_depend_on_the_scale_of_the_weights():
    w = torch.tensor([[2.0, 0.5, 0.5, 1.0], [1.5, 0.5, 1.0, 1.0]], dtype=torch.float64)
    key = torch.tensor([[True, False, False, False], [False, True, True, False]])
    mask = torch.ones(2, 4)
    for f in (1e-3, 1e3):
        share = key_token_share(w, key, mask).item()
        assert key_token_share(w * f, key, mask).item() == pytest.approx(share)
        assert key_token_auc(w * f, key, mask).item() == key_token_auc(w, key, mask).item()


def test_key_auc_averages_only_responses_with_both_kinds_of_token():
    w = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    key = torch.tensor([[True, False, False], [True, True, True], [False, False, False]])
    mask = torch.ones(3, 3)
    assert key_token_auc(w, key, mask).item() == 1.0  # rows 1 (all key) and 2 (no key) are left out
    assert math.isnan(key_token_auc(w[1:], key[1:], mask[1:]).item())  # no response has both: NaN


# ---- aggregation, KL and the log-ratio clamp --------------------------------------------------------------
@pytest.mark.parametrize("agg", AGGS)
def test_one_token_or_one_response_is_its_own_mean(agg):
    x = torch.tensor([[0.7, 5.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0]])
    want = {"token-mean": 0.7, "seq-mean-token-mean": 0.7, "seq-mean-token-sum-norm": 0.7 / 4}[agg]
    assert gcpo.aggregate(x, mask, agg, max_len=4).item() == pytest.approx(want, rel=1e-12)


def test_k3_gap_is_clamped_at_twenty_and_k1_is_the_plain_difference():
    logp = torch.zeros(1, 4, dtype=torch.float64)
    ref = torch.tensor([[-25.0, 25.0, -3.0, 2.0]], dtype=torch.float64)
    clamped = ref.clamp(-20, 20)
    torch.testing.assert_close(gcpo.kl_penalty(logp, ref, "k3"), clamped.exp() - clamped - 1, rtol=1e-12, atol=0)
    _, m = gcpo.policy_loss(
        logp, logp, torch.zeros_like(logp), torch.ones_like(logp), ref_logp=ref, beta=0.5, kl_estimator="k1"
    )
    assert m["kl_ref"] == pytest.approx((logp - ref).mean().item(), rel=1e-12)


def test_log_ratio_is_clamped_at_twenty_as_documented():
    logp = torch.tensor([[25.0, -25.0]], dtype=torch.float64)
    adv = torch.tensor([[-1.0, 1.0]], dtype=torch.float64)
    mask = torch.ones_like(adv)
    loss, _ = gcpo.policy_loss(logp, torch.zeros_like(logp), adv, mask, dual_clip=0.0)
    assert loss.item() == pytest.approx((math.exp(20) - math.exp(-20)) / 2, rel=1e-12)  # ρ = e^20 and e^−20
    hinge, _ = gcpo.policy_loss(logp, torch.zeros_like(logp), adv, mask, dual_clip=0.0, surrogate="log_hinge")
    assert hinge.item() == pytest.approx((-math.log(0.8) + 20 + math.log(1.28) + 20) / 2, rel=1e-7)


def test_log_hinge_computes_in_the_dtype_of_its_inputs():
    log_ratio = torch.tensor([[0.1, -0.1, 0.3]], dtype=torch.float64)
    adv = torch.tensor([[-1.0, 1.0, -0.5]], dtype=torch.float64)
    loss = gcpo.surrogate_loss(log_ratio, adv, 0.2, 0.28, 0.0, "log_hinge")
    xi = torch.tensor([[-math.log(0.8), math.log(1.28), -math.log(0.8)]], dtype=torch.float64)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, (xi * adv.abs() - adv * log_ratio).clamp(min=0), rtol=1e-12, atol=0)


def test_metrics_report_the_surrogate_and_the_entropy_of_valid_tokens():
    logp = torch.tensor([[-0.5, -2.0, -9.0], [-1.0, -9.0, -9.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]], dtype=torch.float64)
    ref = logp - 0.5
    loss, m = gcpo.policy_loss(logp, logp, adv, mask, ref_logp=ref, beta=0.1, entropy_penalty=1.0)
    assert m["pg_loss"] == pytest.approx(-(1.0 + 1.0 - 2.0) / 3, abs=1e-12)  # the surrogate alone, ρ ≡ 1
    assert m["entropy"] == pytest.approx((0.5 + 2.0 + 1.0) / 3, rel=1e-12)
    k3 = math.exp(-0.5) + 0.5 - 1
    assert loss.item() == pytest.approx(m["pg_loss"] + 0.1 * k3 + 1.0 * m["entropy"], rel=1e-12)
    one, m1 = gcpo.policy_loss(logp[1:, :1], logp[1:, :1], adv[1:, :1], mask[1:, :1])
    assert m1["entropy"] == 1.0 and one.item() == 2.0  # one token: its own mean


def test_entropy_penalty_is_normalised_by_the_mini_batch_token_count():
    logp = torch.tensor([[-1.0, -3.0]], dtype=torch.float64)
    mask, zero = torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.float64)
    loss, _ = gcpo.policy_loss(logp, logp, zero, mask, entropy_penalty=0.5, total_tokens=8)
    assert loss.item() == pytest.approx(0.5 * 4.0 / 8)
