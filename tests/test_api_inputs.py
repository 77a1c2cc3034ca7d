"""Bad and edge inputs at the boundary of gcpo's public functions.

Three rules, each checked on every function it applies to:
- an empty batch (N = 0 responses, or T = 0 response tokens) gives an empty result of the right shape, not an error;
- a masked position's value (NaN and ±inf included) never reaches a result or a gradient;
- a wrong shape, dtype or hyper-parameter is a one-line ValueError naming the argument, never a torch error from
  deep inside and never a silent broadcast (the classic: (N,) advantages where (N, T) is expected, with N == T).
"""

import math

import pytest
import torch

import gcpo
from gcpo_support.metrics import key_token_auc, key_token_share
from tests.helpers import oracle_weights

NORMS = ["hist", "softmax", "minmax", "none"]
DIVS = ["kl", "abs", "info_gain", "full_kl"]
V = 11  # vocabulary of the tiny model below


def batch(N=4, T=6, seed=0):
    """Log-probs under the prompt and the negative prompt, their full log-softmax (V = 7), and a mask whose
    rows have 6, 4, 1, 3 valid tokens (so padding sits at different places)."""
    g = torch.Generator().manual_seed(seed)
    logp_all = torch.randn(N, T, 7, generator=g).log_softmax(-1)
    logp_neg_all = torch.randn(N, T, 7, generator=g).log_softmax(-1)
    lengths = torch.tensor([6, 4, 1, 3][:N] + [T] * max(0, N - 4))
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    return logp_all[..., 0], logp_neg_all[..., 0], mask, logp_all, logp_neg_all


def poison(x, mask, value):
    """x with `value` written into every masked position (trailing dims broadcast)."""
    pad = ~mask.bool()
    return x.masked_fill(pad.reshape(pad.shape + (1,) * (x.dim() - pad.dim())), value)


def weights(logp, logp_neg, mask, divergence="kl", normalization="hist", logp_all=None, logp_neg_all=None, **kw):
    full = dict(logp_all=logp_all, logp_neg_all=logp_neg_all) if divergence == "full_kl" else {}
    return gcpo.token_weights(logp, logp_neg, mask, divergence=divergence, normalization=normalization, **full, **kw)


# ---- empty batches: N = 0 or T = 0 --------------------------------------------------------------------------
@pytest.mark.parametrize("N, T", [(0, 6), (4, 0), (0, 0)])
@pytest.mark.parametrize("divergence", DIVS)
@pytest.mark.parametrize("normalization", NORMS)
def test_token_weights_of_an_empty_batch_are_empty(N, T, divergence, normalization):
    lp, ln, _, la, lna = batch(4, 6)
    m = torch.ones(N, T, dtype=torch.long)
    w = weights(lp[:N, :T], ln[:N, :T], m, divergence, normalization, la[:N, :T], lna[:N, :T])
    assert w.shape == (N, T)


@pytest.mark.parametrize("N, T", [(0, 6), (4, 0)])
def test_scores_losses_and_metrics_of_an_empty_batch(N, T):
    lp, ln, _, _, _ = batch(4, 6)
    lp, ln, m = lp[:N, :T], ln[:N, :T], torch.ones(N, T, dtype=torch.long)
    for ties in ("average", "official"):
        assert gcpo.normalize_weights(lp.exp(), m, "hist", ties).shape == (N, T)
    assert oracle_weights(m.bool(), m).shape == (N, T)
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        assert gcpo.aggregate(lp, m, agg, max_len=6).item() == 0.0
    for surrogate, dual_clip in (("clip", 3.0), ("log_hinge", 0.0)):
        loss, metrics = gcpo.policy_loss(lp, ln, lp, m, surrogate=surrogate, dual_clip=dual_clip)
        assert loss.item() == 0.0 and all(math.isfinite(v) for v in metrics.values())
    assert key_token_share(lp, m.bool(), m).item() == 0.0
    assert math.isnan(key_token_auc(lp, m.bool(), m).item())  # no response has key and other tokens


def test_group_advantages_and_penalties_of_no_responses():
    assert gcpo.group_advantages(torch.zeros(0), 4).shape == (0,)
    assert gcpo.informative_groups(torch.zeros(0), 4).shape == (0,)
    assert gcpo.overlong_penalty(torch.zeros(0, dtype=torch.long), 8, 4).shape == (0,)


# ---- a masked position's value never reaches a result --------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("divergence", DIVS)
@pytest.mark.parametrize("normalization", NORMS)
def test_masked_logprobs_never_reach_the_weights(value, divergence, normalization):
    lp, ln, m, la, lna = batch()
    clean = weights(lp, ln, m, divergence, normalization, la, lna)
    dirty = weights(
        poison(lp, m, value),
        poison(ln, m, value),
        m,
        divergence,
        normalization,
        poison(la, m, value),
        poison(lna, m, value),
    )
    assert torch.equal(clean, dirty)


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_masked_values_never_reach_the_aggregate(loss_agg, value):
    x, _, m, _, _ = batch()
    clean = gcpo.aggregate(x, m, loss_agg, max_len=6)
    assert clean.isfinite() and torch.equal(gcpo.aggregate(poison(x, m, value), m, loss_agg, max_len=6), clean)


@pytest.mark.parametrize("surrogate, dual_clip", [("clip", 3.0), ("log_hinge", 0.0)])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_masked_values_never_reach_the_loss_or_its_gradient(surrogate, dual_clip, value):
    lp, ln, m, _, _ = batch()
    adv = torch.linspace(-1.5, 1.3, lp.numel()).view_as(lp)  # both signs, none zero
    w = torch.rand(lp.shape, generator=torch.Generator().manual_seed(1)) * 2

    def loss_and_grad(dirty):
        f = (lambda t: poison(t, m, value)) if dirty else (lambda t: t)
        logp = f(lp).clone().requires_grad_(True)
        loss, metrics = gcpo.policy_loss(
            logp,
            f(lp + 0.1),
            f(adv),
            m,
            surrogate=surrogate,
            dual_clip=dual_clip,
            ref_logp=f(ln),
            beta=0.04,
            kl_weights=f(w),
            entropy_penalty=1e-3,
        )
        loss.backward()
        return loss, metrics, logp.grad

    (l0, m0, g0), (l1, m1, g1) = loss_and_grad(False), loss_and_grad(True)
    assert l0.isfinite() and torch.equal(l0, l1) and m0 == m1
    assert torch.equal(g0, g1) and (g1[~m.bool()] == 0).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_masked_weights_never_reach_the_key_metrics(value):
    _, _, m, _, _ = batch()
    w = torch.rand(m.shape, generator=torch.Generator().manual_seed(2)) * 2
    key = torch.zeros_like(m, dtype=torch.bool)
    key[:, 0] = True
    for metric in (key_token_share, key_token_auc):
        clean = metric(w, key, m)
        assert clean.isfinite() and torch.equal(metric(poison(w, m, value), key, m), clean)


# ---- shapes: exact, never broadcast ---------------------------------------------------------------------------
def test_per_response_advantages_are_rejected_even_when_N_equals_T():
    lp, _, m, _, _ = batch(6, 6)  # N == T: (N,) advantages would broadcast along T without a word
    for adv in (torch.ones(6), torch.ones(6, 1), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="advantages"):
            gcpo.policy_loss(lp, lp, adv, m)


@pytest.mark.parametrize("name", ["logp_old", "advantages", "mask", "ref_logp", "kl_weights"])
@pytest.mark.parametrize("bad_shape", [(4, 5), (6,)])
def test_policy_loss_inputs_must_share_one_shape(name, bad_shape):
    lp, _, m, _, _ = batch()
    args = dict(logp_old=lp, advantages=torch.ones_like(lp), mask=m, ref_logp=lp, kl_weights=torch.ones_like(lp))
    args[name] = torch.ones(bad_shape, dtype=args[name].dtype)
    with pytest.raises(ValueError, match=name):
        gcpo.policy_loss(lp, args.pop("logp_old"), args.pop("advantages"), args.pop("mask"), beta=0.1, **args)


@pytest.mark.parametrize("divergence", DIVS)
def test_token_weights_inputs_must_share_one_shape(divergence):
    lp, ln, m, la, lna = batch()
    with pytest.raises(ValueError, match="logp_neg"):
        weights(lp, ln[:, :5], m, divergence, logp_all=la, logp_neg_all=lna[:, :5])
    with pytest.raises(ValueError, match="mask"):
        weights(lp, ln, m[0], divergence, logp_all=la, logp_neg_all=lna)
    with pytest.raises(ValueError, match="mask"):
        weights(lp, ln, m[:, :5], divergence, logp_all=la, logp_neg_all=lna)
    with pytest.raises(ValueError, match="logp"):  # (T,) is one response: the caller must say (1, T)
        weights(lp[0], ln[0], m[0], divergence, logp_all=la[0], logp_neg_all=lna[0])
    if divergence == "full_kl":
        with pytest.raises(ValueError, match="logp_neg_all"):
            weights(lp, ln, m, divergence, logp_all=la, logp_neg_all=lna[..., :6])


@pytest.mark.parametrize("normalization", NORMS)
def test_normalize_weights_needs_2d_scores_and_a_mask_of_their_shape(normalization):
    s, _, m, _, _ = batch()
    s = s.exp()
    for scores, mask in ((s, m[0]), (s, m[:, :5]), (s[0], m[0]), (s[None], m[None])):
        with pytest.raises(ValueError):
            gcpo.normalize_weights(scores, mask, normalization)


def test_aggregate_and_key_metrics_reject_broadcast_masks():
    x, _, m, _, _ = batch()
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        for bad in (m[0], m[:, :1], m[:, :5]):
            with pytest.raises(ValueError, match="mask"):
                gcpo.aggregate(x, bad, agg, max_len=6)
    key = m.bool()
    for metric in (key_token_share, key_token_auc):
        with pytest.raises(ValueError, match="key_mask"):
            metric(x, key[0], m)
        with pytest.raises(ValueError, match="key_mask"):
            metric(x, key.float(), m)
        with pytest.raises(ValueError, match="mask"):
            metric(x, key, m[:, :5])


# ---- dtypes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("divergence", DIVS)
def test_half_precision_logprobs_give_weights_of_mean_one(dtype, divergence):
    """(Rounding may reorder close scores, so the weights are not compared with float32 ones value by value.)"""
    lp, ln, m, la, lna = batch()
    w = weights(lp.to(dtype), ln.to(dtype), m, divergence, logp_all=la.to(dtype), logp_neg_all=lna.to(dtype))
    assert w.shape == m.shape and w.isfinite().all() and (w[m == 0] == 0).all()
    torch.testing.assert_close(w.float().sum(1), m.sum(1).float(), atol=1e-3, rtol=1e-3)


def test_integer_logprobs_and_scores_are_rejected():
    lp, ln, m, _, _ = batch()
    with pytest.raises(ValueError, match="float"):
        gcpo.token_weights(lp.long(), ln.long(), m)
    for normalization in NORMS:
        with pytest.raises(ValueError, match="float"):
            gcpo.normalize_weights((lp.exp() * 10).long(), m, normalization)


def test_full_kl_ignores_tokens_the_policy_never_picks():
    """A token with π(v|x) = 0 (log-prob −inf) adds 0 to KL(π(·|x) ‖ π(·|x⁻)), not NaN (0·log 0 = 0)."""
    lp, ln, m, la, lna = batch()
    la0 = la.masked_fill(torch.arange(7) == 0, float("-inf")).log_softmax(-1)
    eta = gcpo.token_scores(lp, ln, m, "full_kl", la0, lna)
    want = (la0.exp() * (la0 - lna)).nan_to_num(0.0).sum(-1).clamp(min=0) * m
    torch.testing.assert_close(eta, want)


def test_integer_rewards_are_exact():
    r = torch.tensor([1, 0, 1, 1, 0, 0])
    torch.testing.assert_close(gcpo.group_advantages(r, 3), gcpo.group_advantages(r.float(), 3), check_dtype=False)


# ---- hyper-parameters: out of range or non-finite is an error, never a silent change of meaning ---------------
BAD_LOSS_ARGS = [
    ("eps_low", -0.1),
    ("eps_low", 1.0),
    ("eps_low", 1.5),
    ("eps_low", math.nan),
    ("eps_high", -0.1),
    ("eps_high", math.inf),
    ("dual_clip", 0.5),
    ("dual_clip", 1.0),
    ("dual_clip", -1.0),
    ("dual_clip", math.nan),
    ("beta", -0.1),
    ("beta", math.nan),
    ("entropy_penalty", math.nan),
    ("entropy_penalty", math.inf),
    ("total_tokens", 0),
    ("total_tokens", -3),
    ("total_tokens", 2),  # fewer than this micro-batch's 14 tokens
]


@pytest.mark.parametrize(
    "surrogate, name, value",
    [("clip", *a) for a in BAD_LOSS_ARGS] + [("log_hinge", *a) for a in BAD_LOSS_ARGS if a[0] != "dual_clip"],
)  # log_hinge: test_log_hinge_has_no_dual_clip
def test_policy_loss_rejects_bad_hyperparameters(surrogate, name, value):
    lp, ln, m, _, _ = batch()
    kw = {"dual_clip": 0.0} if surrogate == "log_hinge" else {}
    with pytest.raises(ValueError, match=name):
        gcpo.policy_loss(lp, lp + 0.1, torch.ones_like(lp), m, surrogate=surrogate, ref_logp=ln, **{**kw, name: value})


def test_log_hinge_has_no_dual_clip():
    lp, _, m, _, _ = batch()
    with pytest.raises(ValueError, match="dual_clip"):
        gcpo.policy_loss(lp, lp, torch.ones_like(lp), m, surrogate="log_hinge", dual_clip=3.0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(max_len=0),
        dict(max_len=-1),
        dict(max_len=5),
        dict(max_len=math.nan),
        dict(total_seqs=0),
        dict(total_seqs=3),
    ],
)  # T = 6 columns, N = 4 rows
def test_aggregate_rejects_impossible_normalisers(kw):
    x, _, m, _, _ = batch()
    with pytest.raises(ValueError, match=next(iter(kw))):
        gcpo.aggregate(x, m, "seq-mean-token-sum-norm", **{"max_len": 6, **kw})


@pytest.mark.parametrize("softmax_temp", [0.0, -1.0, math.nan])
@pytest.mark.parametrize("normalization", ["softmax", "hist"])
def test_softmax_temperature_must_be_positive(softmax_temp, normalization):
    """Checked whatever the normalization, and on an empty batch too (never silently accepted)."""
    lp, ln, m, _, _ = batch()
    with pytest.raises(ValueError, match="softmax_temp"):
        gcpo.token_weights(lp, ln, m, normalization=normalization, softmax_temp=softmax_temp)
    with pytest.raises(ValueError, match="softmax_temp"):
        gcpo.normalize_weights(torch.zeros(2, 0), torch.zeros(2, 0), normalization, softmax_temp=softmax_temp)


def test_tiny_top_fraction_is_a_clear_error_or_finite_weights():
    s, _, m, _, _ = batch()
    try:
        w = gcpo.normalize_weights(s.exp(), m, "hist", top_fraction=1e-20, target_mass=0.5)
    except ValueError as e:
        assert "top_fraction" in str(e)
    else:
        torch.testing.assert_close(w.sum(1), m.sum(1).float())


def test_hist_weights_keep_their_sum_when_the_top_score_is_tied():
    """A steep law (α ≈ 6900) must not underflow every p^α to 0 when the largest score is shared."""
    scores = torch.tensor([[0.1, 0.2, 0.5, 0.5], [0.3, 0.1, 0.9, 0.2]])
    w = gcpo.normalize_weights(scores, torch.ones(2, 4), "hist", top_fraction=1e-3, target_mass=0.999)
    torch.testing.assert_close(w.sum(1), torch.tensor([4.0, 4.0]))
    assert w[0, 2] == w[0, 3] > w[0, 1] and w[1].argmax() == 2


@pytest.mark.parametrize(
    "kw, name", [(dict(eps=-1.0), "eps"), (dict(eps=math.nan), "eps"), (dict(group_size=3.0), "group_size")]
)
def test_group_advantages_reject_bad_parameters(kw, name):
    with pytest.raises(ValueError, match=name):
        gcpo.group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.2, 0.9, 0.1]), **{"group_size": 3, **kw})


def test_non_finite_rewards_are_an_error_not_nan_advantages():
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            gcpo.group_advantages(torch.tensor([1.0, bad, 0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="group_size"):
        gcpo.informative_groups(torch.ones(5), 3)


@pytest.mark.parametrize(
    "lengths, max_len, buffer",
    [
        (torch.tensor([1, 5]), 8, 2.5),
        (torch.tensor([1, 5]), 8, True),
        (torch.tensor([-1, 5]), 8, 4),
        (torch.tensor([[1, 5]]), 8, 4),
    ],
)
def test_overlong_penalty_needs_integer_lengths_and_buffer(lengths, max_len, buffer):
    with pytest.raises(ValueError):
        gcpo.overlong_penalty(lengths, max_len, buffer)


# ---- sampling and log-probs through a tiny model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=V, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


def prompts(N=3, P=4):
    ids = torch.randint(3, V, (N, P), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones(N, P, dtype=torch.long)


def sample(model, ids, mask, T=5, **kw):
    return gcpo.sample(model, ids, mask, T, 2, 0, generator=torch.Generator().manual_seed(0), **kw)


def test_sampling_and_scoring_no_prompts(model):
    ids, mask = prompts(0)
    responses, rmask, logp, truncated = sample(model, ids, mask)
    assert responses.shape[0] == 0 and responses.shape == rmask.shape == logp.shape and truncated.shape == (0,)
    _, _, _, truncated = sample(model, ids, mask, guidance_scale=2.0, neg_prompts=ids, neg_mask=mask)
    assert truncated.shape == (0,)
    logp, logp_all = gcpo.response_logprobs(model, ids, mask, torch.zeros(0, 5, dtype=torch.long), full=True)
    assert logp.shape == (0, 5) and logp_all.shape == (0, 5, V)


def test_prompt_plus_response_longer_than_the_model_is_a_clear_error(model):
    ids, mask = prompts(2, 12)  # 12 + 5 > n_positions = 16
    with pytest.raises(ValueError, match="n_positions"):
        sample(model, ids, mask, T=5)
    with pytest.raises(ValueError, match="n_positions"):
        gcpo.response_logprobs(model, ids, mask, torch.full((2, 5), 3))
    sample(model, ids, mask, T=4)  # exactly 16 fits


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=math.nan), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=math.nan), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(guidance_scale=math.nan), "guidance_scale"),
        (dict(guidance_scale=-1.0), "guidance_scale"),
        (dict(guidance_scale=2.0), "neg_prompts"),
        (dict(guidance_scale=2.0, neg_prompts="same"), "neg_mask"),
        (dict(T=-1), "max_new_tokens"),
        (dict(T=2.5), "max_new_tokens"),
    ],
)
def test_sample_rejects_bad_settings(model, kw, name):
    ids, mask = prompts()
    if kw.get("neg_prompts") == "same":
        kw["neg_prompts"] = ids
    with pytest.raises(ValueError, match=name):
        sample(model, ids, mask, **kw)


MALFORMED = {  # (prompts, prompt mask, responses) → a call that must raise ValueError
    "empty prompts": lambda m, ids, mask, r: sample(m, ids[:, :0], mask[:, :0]),  # nothing to condition on
    "mask shape": lambda m, ids, mask, r: sample(m, ids, mask[:, :3]),
    "1-D prompts": lambda m, ids, mask, r: sample(m, ids[0], mask[0]),
    "float prompts": lambda m, ids, mask, r: sample(m, ids.float(), mask),
    "ids >= V": lambda m, ids, mask, r: sample(m, ids + V, mask),
    "eos_id >= V": lambda m, ids, mask, r: gcpo.sample(m, ids, mask, 5, V + 1, 0),
    "padding-only prompt": lambda m, ids, mask, r: sample(m, ids, mask.masked_fill(torch.arange(3)[:, None] == 1, 0)),
    "negatives of another N": lambda m, ids, mask, r: sample(
        m, ids, mask, guidance_scale=2.0, neg_prompts=ids[:2], neg_mask=mask[:2]
    ),
    "logprobs: empty prompts": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids[:, :0], mask[:, :0], r),
    "logprobs: responses of another N": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r[:2]),
    "logprobs: mask shape": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask[:, :3], r),
    "logprobs: 1-D responses": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r[0]),
    "logprobs: float responses": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r.float()),
    "logprobs: ids >= V": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r + V),
    "logprobs: temperature 0": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r, temperature=0.0),
    "logprobs: temperature < 0": lambda m, ids, mask, r: gcpo.response_logprobs(m, ids, mask, r, temperature=-1.0),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_sample_and_logprobs_reject_malformed_input(model, case):
    ids, mask = prompts()
    with pytest.raises(ValueError):
        MALFORMED[case](model, ids, mask, torch.full((3, 5), 3))
