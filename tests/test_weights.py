"""Contrastive token weights (docs/algorithm.md §4) against their defining properties and independent float64
computations."""

import math

import numpy as np
import pytest
import torch

import gcpo
from gcpo_support import metrics
from gcpo_support.variants import official_hist_loop  # the official per-row loop, written once

ALPHA = gcpo.hist_alpha(0.4, 0.8)
NORMS = ["hist", "softmax", "minmax", "none"]
DIVS = ["kl", "abs", "info_gain"]


def random_batch(N=6, T=12, seed=0, min_len=0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(N, T, generator=g) * 4
    logp_neg = -torch.rand(N, T, generator=g) * 4
    lengths = torch.randint(min_len, T + 1, (N,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    return logp, logp_neg, mask


def test_hist_alpha_values():
    assert ALPHA == pytest.approx(2.15066, abs=1e-5)
    assert gcpo.hist_alpha(0.3, 0.3) == 0.0


@pytest.mark.parametrize("bad", [(0.0, 0.8), (0.4, 1.0), (1.2, 0.5), (0.5, 0.4)])
def test_hist_params_rejected(bad):
    with pytest.raises(ValueError, match="top_fraction|target_mass"):
        gcpo.hist_alpha(*bad)


def test_k3_values_and_sign():
    d = torch.tensor([[2.0, -2.0, 0.0, 0.5, -0.5]])
    eta = gcpo.token_scores(torch.zeros(1, 5), d, torch.ones(1, 5), "kl")[0]
    assert eta[0].item() == pytest.approx(math.exp(2) - 3, abs=1e-4)  # 4.389
    assert eta[1].item() == pytest.approx(math.exp(-2) + 1, abs=1e-4)  # 1.135
    assert eta[2].item() == 0.0 and (eta[3:] > 0).all()
    big = gcpo.token_scores(torch.zeros(1, 2), torch.tensor([[2.5, 5.0]]), torch.ones(1, 2), "kl")
    assert big[0, 0].item() == pytest.approx(math.exp(2.5) - 3.5, abs=1e-4) and big[0, 1].item() == 10.0  # cap 10


def test_k3_monte_carlo_is_kl():
    """The official one-sample k3 score averages to the KL that the paper's full_kl score computes exactly."""
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.2, 0.5, 0.3])
    kl = float((p * np.log(p / q)).sum())  # 0.5838
    logp_all, logq_all = torch.tensor(np.log(p))[None, None], torch.tensor(np.log(q))[None, None]  # (1, 1, V)
    exact = gcpo.token_scores(logp_all[..., 0], logq_all[..., 0], torch.ones(1, 1), "full_kl", logp_all, logq_all)
    assert exact.item() == pytest.approx(kl, rel=1e-12)
    y = np.random.default_rng(0).choice(3, size=400_000, p=p)
    logp, logq = torch.tensor(np.log(p)[y]), torch.tensor(np.log(q)[y])
    eta = gcpo.token_scores(logp[None], logq[None], torch.ones(1, len(y)), "kl")
    assert eta.mean().item() == pytest.approx(kl, abs=0.01)  # the sampling error is about 0.002


def test_full_kl_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    la = torch.log_softmax(torch.randn(3, 5, 7, generator=g, dtype=torch.float64), -1)
    lb = torch.log_softmax(torch.randn(3, 5, 7, generator=g, dtype=torch.float64), -1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    eta = gcpo.token_scores(la[..., 0], lb[..., 0], mask, "full_kl", la, lb)
    for i in range(3):
        for t in range(5):
            want = (
                sum(math.exp(la[i, t, v]) * float(la[i, t, v] - lb[i, t, v]) for v in range(7)) if mask[i, t] else 0.0
            )
            assert eta[i, t].item() == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="full_kl"):
        gcpo.token_scores(la[..., 0], lb[..., 0], mask, "full_kl")


def test_info_gain_per_response_quantile():
    logp, logp_neg, mask = random_batch(seed=3, min_len=1)
    eta = gcpo.token_scores(logp, logp_neg, mask, "info_gain")
    for i in range(len(mask)):
        n = int(mask[i].sum())
        gain = (logp[i, :n] - logp_neg[i, :n]).double().numpy()
        cap = max(np.quantile(gain, 0.9), 0.0)
        np.testing.assert_allclose(eta[i, :n].numpy(), np.minimum(np.maximum(gain, 0), cap), atol=1e-6)


@pytest.mark.parametrize("N", [1, 2, 7, 31])
def test_hist_multiset_is_fixed(N):
    """The token of the k-th smallest score gets (k/N)^α / mean_j (j/N)^α, whatever the scores."""
    want = np.array([(k / N) ** ALPHA for k in range(1, N + 1)])
    want = want / want.mean()
    for seed in range(3):
        scores = torch.randn(1, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        w = gcpo.normalize_weights(scores, torch.ones(1, N), "hist")
        np.testing.assert_allclose(w[0, scores[0].argsort()].numpy(), want, rtol=1e-12)


def test_hist_invariant_to_increasing_transform():
    logp, logp_neg, mask = random_batch(seed=4)
    s = gcpo.token_scores(logp, logp_neg, mask, "kl").double()
    w = gcpo.normalize_weights(s, mask, "hist")
    for f in (torch.exp, lambda x: x**3 + 2 * x, lambda x: torch.log1p(x)):
        torch.testing.assert_close(gcpo.normalize_weights(f(s), mask, "hist"), w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("N,mass", [(10, 0.780), (100, 0.798), (2048, 0.800)])
def test_hist_top40_mass(N, mass):
    w = gcpo.normalize_weights(torch.randn(1, N, dtype=torch.float64), torch.ones(1, N), "hist")[0]
    top = torch.sort(w, descending=True).values[: math.ceil(0.4 * N)].sum() / w.sum()
    assert top.item() == pytest.approx(mass, abs=1.5e-3)
    if N == 2048:
        assert w.max().item() == pytest.approx(ALPHA + 1, abs=0.01)  # max w → α + 1 = 3.151


def test_hist_edge_lengths():
    scores = torch.tensor([[0.3, 0.1, 0.2], [5.0, 1.0, 1.0]])
    mask = torch.tensor([[0, 0, 0], [1, 0, 0]])
    for ties in ("average", "official"):
        w = gcpo.normalize_weights(scores, mask, "hist", ties=ties)
        assert torch.isfinite(w).all()
        assert w[0].tolist() == [0.0, 0.0, 0.0]  # N = 0: no weights, no NaN
        assert w[1].tolist() == [1.0, 0.0, 0.0]  # N = 1: w = 1


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("div", DIVS)
def test_masking_and_padding_invariance(norm, div):
    logp, logp_neg, mask = random_batch(seed=5)
    w = gcpo.token_weights(logp, logp_neg, mask, divergence=div, normalization=norm)
    valid = mask.bool()
    assert torch.isfinite(w).all() and (w[~valid] == 0).all()
    if norm != "none":  # hist, softmax and minmax keep every valid weight strictly positive
        assert (w[valid] > 0).all()
    # garbage under the mask changes nothing
    junk_lp, junk_neg = logp.clone(), logp_neg.clone()
    junk_lp[~valid], junk_neg[~valid] = -99.0, 3.0
    w_junk = gcpo.token_weights(junk_lp, junk_neg, mask, divergence=div, normalization=norm)
    torch.testing.assert_close(w_junk, w, rtol=0, atol=0)
    # extra right padding changes nothing
    pad = lambda t, v: torch.nn.functional.pad(t, (0, 5), value=v)
    w_pad = gcpo.token_weights(pad(logp, -1.0), pad(logp_neg, -7.0), pad(mask, 0), divergence=div, normalization=norm)
    torch.testing.assert_close(w_pad[:, :12], w, rtol=0, atol=1e-6)
    assert (w_pad[:, 12:] == 0).all()


@pytest.mark.parametrize("norm", ["hist", "softmax", "minmax"])
def test_mean_one_over_valid_tokens(norm):
    logp, logp_neg, mask = random_batch(seed=6, min_len=1)
    w = gcpo.token_weights(logp, logp_neg, mask, divergence="kl", normalization=norm)
    means = (w * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(means, torch.ones_like(means), rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_rows_are_independent(norm):
    logp, logp_neg, mask = random_batch(seed=7)
    w = gcpo.token_weights(logp, logp_neg, mask, divergence="kl", normalization=norm)
    for i in range(len(mask)):
        alone = gcpo.token_weights(logp[i : i + 1], logp_neg[i : i + 1], mask[i : i + 1], normalization=norm)
        torch.testing.assert_close(alone[0], w[i], rtol=0, atol=1e-6)


def test_identical_prompts_give_uniform_weights():
    logp, _, mask = random_batch(seed=8, min_len=1)
    w = gcpo.token_weights(logp, logp.clone(), mask, ties="average")
    assert (w[mask.bool()] == 1.0).all()
    # the official argsort ranking does not: tied scores get different weights
    w_off = gcpo.token_weights(logp, logp.clone(), mask, ties="official")
    assert w_off[mask.bool()].std() > 0.3


def test_target_equal_top_gives_uniform():
    logp, logp_neg, mask = random_batch(seed=9, min_len=1)
    w = gcpo.token_weights(logp, logp_neg, mask, top_fraction=0.3, target_mass=0.3)
    torch.testing.assert_close(w[mask.bool()], torch.ones(int(mask.sum())), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_official_ties_bit_exact(seed):
    g = torch.Generator().manual_seed(seed)
    N, T = 40, 64
    scores = torch.randint(0, 4, (N, T), generator=g).float() * 0.5  # heavy ties
    scores[::3] = torch.rand(len(scores[::3]), T, generator=g)  # some rows without ties
    mask = (torch.rand(N, T, generator=g) < 0.8).long()  # holes, varying lengths
    mask[0] = 0
    official = official_hist_loop(scores, mask, gcpo.hist_alpha())
    assert torch.equal(gcpo.normalize_weights(scores, mask, "hist", ties="official"), official)


def test_softmax_and_minmax_against_float64_reference():
    logp, logp_neg, mask = random_batch(seed=10, min_len=2)
    s = gcpo.token_scores(logp, logp_neg, mask, "kl").double()
    for norm in ("softmax", "minmax"):
        w = gcpo.normalize_weights(s, mask, norm, softmax_temp=0.5)
        for i in range(len(s)):
            v = s[i, mask[i].bool()].numpy()
            if norm == "softmax":
                z = np.exp(v / max(v.max(), 1e-8) / 0.5)
                want = z / z.sum() * len(v)
            else:
                u = np.clip((v - v.min()) / (max(v.max(), 1e-8) - v.min() + 1e-8), 0.2, 1.0)
                want = u / u.sum() * len(v)
            np.testing.assert_allclose(w[i, mask[i].bool()].numpy(), want, rtol=1e-9)


def test_no_gradient_through_weights():
    logp = torch.randn(3, 5, requires_grad=True)
    logp_neg = torch.randn(3, 5, requires_grad=True)
    w = gcpo.token_weights(logp, logp_neg, torch.ones(3, 5))
    assert not w.requires_grad
    # so the GCPO loss gradient is exactly the gradient with w treated as a constant
    adv = torch.tensor([1.0, -0.5, 2.0])[:, None] * w
    loss, _ = gcpo.policy_loss(logp, logp.detach(), adv, torch.ones(3, 5))
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv / 15)
    assert logp_neg.grad is None


def test_key_token_metrics_by_hand():
    w = torch.tensor([[3.0, 1.0, 0.5, 0.5], [1.0, 2.0, 1.0, 0.0]])
    key = torch.tensor([[True, False, False, False], [False, True, True, False]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    assert metrics.key_token_share(w, key, mask).item() == pytest.approx((3 + 2 + 1) / (5 + 4))
    # row 0: key beats all 3 others → 1; row 1: key {2, 1} vs other {1}: pairs (2>1)=1, (1=1)=½ → 0.75
    assert metrics.key_token_auc(w, key, mask).item() == pytest.approx((1.0 + 0.75) / 2)


def brute_force_average_ranks(values):
    """Mean rank of each value among a 1-D list: 1 + #smaller + (#equal − 1)/2, in O(n²)."""
    return [1 + sum(u < v for u in values) + (sum(u == v for u in values) - 1) / 2 for v in values]


@pytest.mark.parametrize("seed", range(3))
def test_average_ranks_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (7, 15), generator=g).double()  # heavy ties
    mask = torch.rand(7, 15, generator=g) < 0.7  # holes
    mask[0] = False
    ranks = metrics.average_ranks(scores, mask)
    for i in range(7):
        expected = brute_force_average_ranks(scores[i][mask[i]].tolist())
        assert ranks[i][mask[i]].tolist() == expected


def test_half_precision_scores_are_ranked_in_float32():
    N, T = 2, 600  # more ranks than bfloat16 can count
    scores = torch.rand(N, T, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(N, T, dtype=torch.long)
    w16 = gcpo.normalize_weights(scores.bfloat16(), mask)
    w32 = gcpo.normalize_weights(scores.bfloat16().float(), mask)
    assert w16.dtype == torch.float32 and torch.equal(w16, w32)


def test_non_finite_scores_rejected():
    scores = torch.rand(2, 4)
    scores[1, 2] = float("nan")
    mask = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="finite"):
        gcpo.normalize_weights(scores, mask)
    mask[1, 2] = 0  # NaN on padding is ignored
    assert gcpo.normalize_weights(scores, mask)[1, 2] == 0
