"""Group advantages, rewards shaping and the clipped policy loss: closed forms, float64, invariances."""

import numpy as np
import pytest
import torch

import gcpo
from gcpo_support import checks


# ---- group advantage (docs/algorithm.md §3) ---------------------------------------------------------------
def test_group_advantage_matches_float64_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.2, 0.9, 0.1])
    adv = gcpo.group_advantages(r, 4)
    for g in range(2):
        x = r[4 * g : 4 * g + 4].double().numpy()
        want = (x - x.mean()) / (x.std(ddof=1) + 1e-6)
        np.testing.assert_allclose(adv[4 * g : 4 * g + 4].numpy(), want, rtol=1e-6)
    torch.testing.assert_close(adv.view(2, 4).sum(1), torch.zeros(2), atol=1e-6, rtol=0)


def test_group_advantage_scales():
    r = torch.tensor([1.0, 0.0, 3.0, 1.0])
    torch.testing.assert_close(gcpo.group_advantages(r, 2, "none"), torch.tensor([0.5, -0.5, 1.0, -1.0]))
    torch.testing.assert_close(
        gcpo.group_advantages(r, 2, "batch"), torch.tensor([0.5, -0.5, 1.0, -1.0]) / (r.std() + 1e-6)
    )


def test_flat_group_is_exactly_zero():
    r = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.0, 1.0, 0.0])
    for scale in ("group", "batch", "none"):
        adv = gcpo.group_advantages(r, 3, scale)
        assert (adv[:6] == 0).all() and torch.isfinite(adv).all()
    assert gcpo.informative_groups(r, 3).tolist() == [False, False, True]


def test_group_advantage_errors():
    with pytest.raises(ValueError, match="at least 2"):
        gcpo.group_advantages(torch.ones(4), 1)
    with pytest.raises(ValueError, match="dividing"):
        gcpo.group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError, match="scale"):
        gcpo.group_advantages(torch.ones(4), 2, "median")


def test_rewards_checked():
    with pytest.raises(ValueError, match="finite"):
        checks.check_rewards(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="shape"):
        checks.check_rewards(torch.ones(3), 2)


def test_overlong_penalty():
    lengths = torch.tensor([50, 80, 90, 100, 101])
    pen = gcpo.overlong_penalty(lengths, 100, 20)
    assert pen.tolist() == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="L_cache"):
        gcpo.overlong_penalty(lengths, 100, 0)


# ---- policy loss (docs/algorithm.md §5) ----------------------------------------------------------------
def grad_of(logp_values, logp_old, adv, mask, **kw):
    logp = logp_values.clone().double().requires_grad_(True)
    loss, metrics = gcpo.policy_loss(logp, logp_old.double(), adv.double(), mask, **kw)
    loss.backward()
    return loss, logp.grad, metrics


def test_clipping_zeroes_gradient():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.1, 0.5, 0.9]]))  # ρ
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    _, g, m = grad_of(logp, old, adv, torch.ones(1, 4), eps_low=0.2, eps_high=0.28, dual_clip=0)
    assert g[0, 0] == 0 and g[0, 2] == 0  # A>0, ρ>1.28 and A<0, ρ<0.8 → no gradient
    assert g[0, 1] != 0 and g[0, 3] != 0
    assert m["clipfrac_high"] == 0.25 and m["clipfrac_low"] == 0.25


def test_dual_clip_caps_loss():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[5.0, 2.0]]))
    adv = torch.tensor([[-2.0, -2.0]])
    loss, g, m = grad_of(logp, old, adv, torch.ones(1, 2), dual_clip=3.0)
    # token 0: ρ=5 > c: loss capped at c·|A| = 6, no gradient; token 1: ρ·|A| = 4
    assert loss.item() == pytest.approx((6.0 + 4.0) / 2)
    assert g[0, 0] == 0 and g[0, 1] != 0 and m["clipfrac_dual"] == 0.5


def test_on_policy_gradient_is_minus_mean_adv():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 5, generator=g)
    adv = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    _, grad, _ = grad_of(logp, logp, adv, mask)
    torch.testing.assert_close(grad, -adv * mask / mask.sum())  # ρ ≡ 1: ∇ = −Σ Ã ∇logp / Σ|y|


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_aggregation_closed_form_microbatch_and_padding(agg):
    g = torch.Generator().manual_seed(1)
    N, T, L_max = 6, 7, 10
    logp = -torch.rand(N, T, generator=g)
    A = torch.randn(N, generator=g, dtype=torch.float64)
    adv = A[:, None].expand(N, T)
    lengths = torch.tensor([7, 1, 3, 5, 2, 6])
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    _, grad, _ = grad_of(logp, logp, adv, mask, loss_agg=agg, max_len=L_max)
    per_token = {
        "token-mean": A / lengths.sum(),
        "seq-mean-token-mean": A / (N * lengths),
        "seq-mean-token-sum-norm": A / (N * L_max),
    }[agg]
    torch.testing.assert_close(grad, -(per_token[:, None] * mask))
    # split into micro-batches of 2, each told the mini-batch totals: same gradient
    acc = torch.zeros_like(grad)
    for idx in torch.arange(N).split(2):
        _, gi, _ = grad_of(
            logp[idx],
            logp[idx],
            adv[idx],
            mask[idx],
            loss_agg=agg,
            max_len=L_max,
            total_tokens=mask.sum(),
            total_seqs=N,
        )
        acc[idx] = gi
    torch.testing.assert_close(acc, grad)
    # extra right padding: same gradient on the real tokens
    pad = lambda t: torch.nn.functional.pad(t, (0, 4))
    _, gp, _ = grad_of(pad(logp), pad(logp), pad(adv), pad(mask), loss_agg=agg, max_len=L_max)
    torch.testing.assert_close(gp[:, :T], grad)
    assert (gp[:, T:] == 0).all()


def test_dr_grpo_needs_max_len():
    with pytest.raises(ValueError, match="max_len"):
        gcpo.policy_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), loss_agg="seq-mean-token-sum-norm"
        )


def test_kl_terms():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    k3 = gcpo.kl_penalty(logp, ref, "k3")
    d = ref - logp
    torch.testing.assert_close(k3, d.exp() - d - 1)
    torch.testing.assert_close(gcpo.kl_penalty(logp, ref, "k1"), logp - ref)
    mask, adv = torch.ones(1, 2), torch.zeros(1, 2)
    w = torch.tensor([[0.25, 2.0]])  # reweight factors 0.5 + 0.5·clamp(2 − 2w, 0, 1) = 1.0 and 0.5
    loss, m = gcpo.policy_loss(logp, logp, adv, mask, beta=0.1, ref_logp=ref, kl_weights=w)
    assert loss.item() == pytest.approx(0.1 * (k3[0, 0] * 1.0 + k3[0, 1] * 0.5).item() / 2, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logp"):
        gcpo.policy_loss(logp, logp, adv, mask, beta=0.1)


def test_entropy_penalty_term():
    logp = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    loss, _ = gcpo.policy_loss(logp, logp.detach(), torch.zeros(1, 2), torch.ones(1, 2), entropy_penalty=0.5)
    assert loss.item() == pytest.approx(0.5 * 2.0)  # c · mean(−logp)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.full((1, 2), -0.25))
