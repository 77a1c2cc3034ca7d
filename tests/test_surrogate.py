"""PCPO's log-hinge surrogate against PPO-clip (docs/algorithm.md §5): gradients by autograd vs closed forms,
first-order agreement as ρ → 1, and the aggregation properties every surrogate must keep."""

import math

import pytest
import torch

import gcpo

EPS_LOW, EPS_HIGH = 0.2, 0.28


def grad_wrt_logp(log_ratio, adv, surrogate, dual_clip=0.0):
    """d ℓ / d logp per token (float64), ℓ the surrogate's per-token loss at log ρ = log_ratio."""
    lr = log_ratio.clone().double().requires_grad_(True)
    gcpo.surrogate_loss(lr, adv.double(), EPS_LOW, EPS_HIGH, dual_clip, surrogate).sum().backward()
    return lr.grad


def hinge_ppo(ratio, adv):
    """PPO-clip written as a hinge, max(0, ξ|A| − A(ρ − 1)) with ξ = ε_high for A > 0 and ε_low for A < 0."""
    xi = torch.where(adv > 0, torch.full_like(adv, EPS_HIGH), torch.full_like(adv, EPS_LOW))
    return (xi * adv.abs() - adv * (ratio - 1)).clamp(min=0)


# ratios on both sides of each clip edge, strictly between them where it matters: 1.25 lies inside
# [0.8, 1.28] and outside [0.8, 1.2] (so ε_low/ε_high swapped would show), 1.30 just beyond 1.28
RATIOS = torch.tensor([0.5, 0.79, 0.81, 0.9, 1.0, 1.1, 1.25, 1.27, 1.30, 1.6], dtype=torch.float64)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_hinge_form_of_ppo_clip_has_ppo_clips_gradient(sign):
    adv = torch.full_like(RATIOS, 0.7 * sign)
    ratio = RATIOS.clone().requires_grad_(True)
    hinge_ppo(ratio, adv).sum().backward()
    g_hinge = ratio.grad * RATIOS  # d/dlogp = d/dρ · ρ
    g_clip = grad_wrt_logp(RATIOS.log(), adv, "clip")
    torch.testing.assert_close(g_hinge, g_clip, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_log_hinge_gradient_is_minus_a_inside_and_zero_outside(sign):
    adv = torch.full_like(RATIOS, 0.7 * sign)
    g = grad_wrt_logp(RATIOS.log(), adv, "log_hinge")
    inside = (RATIOS < 1 + EPS_HIGH) if sign > 0 else (RATIOS > 1 - EPS_LOW)
    want = torch.where(inside, -adv, torch.zeros_like(adv))  # no ρ factor, unlike PPO's −Aρ
    torch.testing.assert_close(g, want, rtol=0, atol=1e-12)
    assert inside.any() and (~inside).any()
    # PPO-clip's gradient inside the region carries ρ: the two differ exactly by that factor
    g_clip = grad_wrt_logp(RATIOS.log(), adv, "clip")
    torch.testing.assert_close(g_clip[inside], g[inside] * RATIOS[inside], rtol=1e-12, atol=0)


def test_log_hinge_trust_region_is_ppo_clips_interval():
    for sign, edge in ((1.0, 1 + EPS_HIGH), (-1.0, 1 - EPS_LOW)):
        adv = torch.tensor([0.5 * sign] * 2, dtype=torch.float64)
        ratios = torch.tensor([edge * (1 - 1e-6 * sign), edge * (1 + 1e-6 * sign)], dtype=torch.float64)
        g = grad_wrt_logp(ratios.log(), adv, "log_hinge")
        assert g[0] != 0 and g[1] == 0  # just inside: gradient; just outside: none


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_log_hinge_agrees_with_the_hinge_form_to_first_order(sign):
    """log ρ = (ρ − 1) − (ρ − 1)²/2 + …, so the two losses differ by O(δ²) at ρ = 1 + δ: the error / δ² stays
    near |A|/2 while δ shrinks 100-fold (a zeroth-order mismatch would blow up, a first-order one grow as 1/δ)."""
    adv = torch.tensor([0.9 * sign], dtype=torch.float64)
    xi_hinge = EPS_HIGH if sign > 0 else EPS_LOW
    xi_log = math.log1p(EPS_HIGH) if sign > 0 else -math.log1p(-EPS_LOW)
    ratios = []
    for delta in (1e-1, 1e-2, 1e-3):
        rho = torch.tensor(
            [1 + delta * (-sign)], dtype=torch.float64
        )  # inside the region, toward improvement's opposite
        log_hinge = gcpo.surrogate_loss(rho.log(), adv, EPS_LOW, EPS_HIGH, 0.0, "log_hinge")
        # the constants ξ differ at O(ε²): compare the ρ-dependent parts
        diff = (log_hinge - xi_log * adv.abs()) - (hinge_ppo(rho, adv) - xi_hinge * adv.abs())
        ratios.append(abs(diff.item()) / delta**2)
    assert all(abs(r - 0.45) < 0.05 for r in ratios), ratios


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_log_hinge_microbatch_and_padding_invariance(loss_agg):
    torch.manual_seed(0)
    N, T, L_max = 6, 5, 7
    logp = (torch.randn(N, T) * 0.1 - 1.0).double()
    logp_old = logp + torch.randn(N, T).double() * 0.2  # ratios on both sides of the trust region
    adv = torch.randn(N, T).double()
    mask = (torch.arange(T)[None] < torch.tensor([5, 3, 1, 4, 2, 5])[:, None]).long()
    kw = dict(
        eps_low=EPS_LOW, eps_high=EPS_HIGH, dual_clip=0.0, loss_agg=loss_agg, max_len=L_max, surrogate="log_hinge"
    )

    def grad(lp, *args, **extra):
        lp = lp.clone().requires_grad_(True)
        loss, _ = gcpo.policy_loss(lp, *args, **kw, **extra)
        loss.backward()
        return loss.detach(), lp.grad

    loss, g = grad(logp, logp_old, adv, mask)
    parts = [
        grad(logp[i], logp_old[i], adv[i], mask[i], total_tokens=mask.sum(), total_seqs=N)
        for i in (slice(0, 2), slice(2, 6))
    ]
    torch.testing.assert_close(sum(p[0] for p in parts), loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([p[1] for p in parts]), g, rtol=1e-12, atol=1e-12)
    pad = lambda t, v: torch.cat([t, torch.full((N, 2), v, dtype=t.dtype)], 1)
    loss_p, g_p = grad(pad(logp, float("nan")), pad(logp_old, 3.0), pad(adv, 5.0), pad(mask, 0))
    torch.testing.assert_close(loss_p, loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_p[:, :T], g, rtol=1e-12, atol=1e-12)
    assert (g_p[:, T:] == 0).all()


def test_log_hinge_with_a_dual_clip_is_an_error():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="dual_clip"):
        gcpo.policy_loss(x, x, x, torch.ones(2, 3), surrogate="log_hinge", dual_clip=3.0)
    with pytest.raises(ValueError, match="surrogate"):
        gcpo.policy_loss(x, x, x, torch.ones(2, 3), surrogate="hinge")


def test_pcpo_preset_and_gcpo_with_the_log_hinge():
    pcpo = gcpo.make_config("pcpo")
    dapo = gcpo.make_config("dapo")
    changed = {f for f in vars(pcpo) if getattr(pcpo, f) != getattr(dapo, f)}
    assert changed == {"algo", "surrogate", "dual_clip"} and pcpo.surrogate == "log_hinge" and pcpo.dual_clip == 0
    combo = gcpo.make_config("gcpo", surrogate="log_hinge")  # the dual clip goes off with the log-hinge ...
    assert combo.credit == "contrast" and combo.dual_clip == 0
    with pytest.raises(ValueError, match="dual_clip"):  # ... unless asked for explicitly
        gcpo.make_config("gcpo", surrogate="log_hinge", dual_clip=3.0)
