"""The equivalences gcpo's speed-ups rely on, each against a slow reference written here.

- response_logprobs runs the LM head only on the T + 1 last positions and takes ℓ[y] − logsumexp(ℓ): equal to
  the full computation (logits at every position, log_softmax, gather) on left-padded prompts and
  right-padded responses, at any temperature; full=True still returns the exact (N, T, V) log-softmax.
- GCPO's contrast pass reuses log-probs it is handed (the training pass's, or the sampler's logp_old with
  weights_from=rollout) and gives the weights the full recomputation gives.
- The sampler's prefill keeps only the last position's logits: the same tokens as a loop that recomputes
  full logits over the whole sequence at every step.

The models are tiny random GPT-2s whose weights are drawn wider than GPT-2's init (std 0.02 gives almost
uniform next-token distributions, so contrast scores would sit within rounding of each other and their
ranks, hence the hist weights, would be decided by rounding). Every weight comparison first checks that no
two valid scores of a response are within 1e-4 of each other, so equal weights are the expected outcome.
"""

import pytest
import torch
import torch.nn.functional as F

import gcpo
from gcpo_support import kernels, loading
from tests.helpers import contrast_weights, micro_batch_loss

pytestmark = pytest.mark.cpu_sensitive  # bit-for-bit equalities: they must hold with every CPU's kernels

V, PAD, EOS, BOS = 53, 0, 1, 2


def tiny_model(vocab_size=V, n_positions=64, std=0.3, seed=0, n_head=2):
    """A 2-layer width-32 GPT-2 with N(0, std²) weights (LayerNorms left at 1 and 0), eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    conf = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    model = GPT2LMHeadModel(conf).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" not in name and "ln_f" not in name:
                p.normal_(0.0, std)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def padded_batch(n_pad=(0, 1, 3, 6, 2, 0), P=7, T=9, eos_at=(8, 2, 5, 0, 9, 4), seed=1):
    """Left-padded prompts (N, P) with n_pad[i] pad tokens, their mask, and right-padded responses (N, T):
    EOS at eos_at[i] (T: none), pad after it, response mask 1 up to and including EOS."""
    g = torch.Generator().manual_seed(seed)
    N = len(n_pad)
    prompts = torch.randint(3, V, (N, P), generator=g)
    pmask = torch.ones(N, P, dtype=torch.long)
    responses = torch.randint(3, V, (N, T), generator=g)
    mask = torch.ones(N, T, dtype=torch.long)
    for i, (k, e) in enumerate(zip(n_pad, eos_at)):
        prompts[i, :k], pmask[i, :k] = PAD, 0
        if e < T:
            responses[i, e], responses[i, e + 1 :], mask[i, e + 1 :] = EOS, PAD, 0
    return prompts, pmask, responses, mask


def full_logprobs(model, prompts, pmask, responses, temperature=1.0):
    """The computation without any shortcut: logits at every position of [prompt, response], the response's
    predicting positions P−1 … P+T−2 sliced afterwards, log_softmax over the vocabulary, gather.
    Returns logp (N, T) and the log-softmax (N, T, V)."""
    P = prompts.shape[1]
    ids = torch.cat([prompts, responses], 1)
    attn = torch.cat([pmask, torch.ones_like(responses)], 1)
    pos = (attn.cumsum(1) - 1).clamp(min=0)  # left padding does not shift positions
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits  # (N, P+T, V)
    logp_all = F.log_softmax(logits[:, P - 1 : -1].float() / temperature, dim=-1)  # (N, T, V)
    return logp_all.gather(-1, responses[..., None]).squeeze(-1), logp_all


def min_score_gap(scores, mask):
    """Smallest difference between two valid scores of the same response (inf when none)."""
    gaps = [s[m.bool()].sort().values.diff().min() for s, m in zip(scores, mask) if m.sum() > 1]
    return min(gaps).item() if gaps else float("inf")


def assert_no_near_ties(logp, logp_neg, mask, divergence, logp_all=None, logp_neg_all=None):
    scores = gcpo.token_scores(logp, logp_neg, mask, divergence, logp_all, logp_neg_all)
    gap = min_score_gap(scores, mask)
    assert gap > 1e-4, f"test inputs have near-tied scores (gap {gap:.2e}); pick another seed"


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_sliced_logprobs_equal_full_computation(model, temperature):
    prompts, pmask, responses, _ = padded_batch()
    ref, _ = full_logprobs(model, prompts, pmask, responses, temperature)
    with torch.no_grad():
        logp, logp_all = gcpo.response_logprobs(model, prompts, pmask, responses, temperature)
    assert logp_all is None
    assert logp.dtype == torch.float32 and logp.shape == responses.shape
    torch.testing.assert_close(logp, ref, atol=1e-6, rtol=0)


def test_sliced_logprobs_keep_the_gradient(model):
    """The training pass back-propagates through ℓ[y] − logsumexp(ℓ): the same gradient as through the full
    log_softmax (a detach or a no_grad in the shortcut would break this)."""
    prompts, pmask, responses, mask = padded_batch()
    probe = torch.randn(responses.shape, generator=torch.Generator().manual_seed(5)) * mask
    grads = []
    for compute in (
        lambda: gcpo.response_logprobs(model, prompts, pmask, responses, 0.7)[0],
        lambda: full_logprobs(model, prompts, pmask, responses, 0.7)[0],
    ):
        model.zero_grad(set_to_none=True)
        (compute() * probe).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(3, 5, 7), (16, 9, 301)])
def test_chosen_logprobs_value_and_gradient_are_bit_identical_to_autograd(shape):
    """kernels.ChosenLogProbs (the lean backward) against autograd on the plain expression: torch.equal, not
    allclose, for the value and for the gradient under an upstream gradient with mixed signs, so the training
    trajectory cannot change. Logits drawn wide (std 4), some rows tied, so softmax terms span many magnitudes."""
    N, T, V = shape
    gen = torch.Generator().manual_seed(N * T)
    logits = torch.randn(N, T + 1, V, generator=gen) * 4.0
    logits[0, 1] = 0.25  # one position with all logits equal
    tokens = torch.randint(0, V, (N, T), generator=gen)
    upstream = torch.randn(N, T, generator=gen)
    a = logits.clone().requires_grad_(True)
    x = a[:, :-1]
    reference = x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - x.logsumexp(-1)
    reference.backward(upstream)
    b = logits.clone().requires_grad_(True)
    lean = kernels.ChosenLogProbs.apply(b, tokens)
    lean.backward(upstream)
    assert torch.equal(lean, reference)
    assert torch.equal(b.grad, a.grad)  # (+0 == −0 here) and every bit the same, except the sign of a zero:
    other_bits = b.grad.view(torch.int32) != a.grad.view(torch.int32)
    assert (b.grad[other_bits] == 0).all() and (a.grad[other_bits] == 0).all()
    assert torch.equal(b.grad[:, -1], torch.zeros(N, V))  # the last position predicts nothing
    with torch.no_grad():  # and the gradient is the textbook one: g·(onehot − softmax), to float64 rounding
        expected = upstream[..., None].double() * (F.one_hot(tokens, V).double() - x.double().softmax(-1))
    torch.testing.assert_close(b.grad[:, :-1].double(), expected, rtol=1e-5, atol=1e-6)
    c = logits.clone().requires_grad_(True)  # a second derivative is refused with an error, never silently wrong
    scale = upstream.clone().requires_grad_(True)
    (first,) = torch.autograd.grad((kernels.ChosenLogProbs.apply(c, tokens) * scale).sum(), c, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        first.sum().backward()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_full_returns_the_exact_log_softmax(model, temperature):
    prompts, pmask, responses, _ = padded_batch()
    ref, ref_all = full_logprobs(model, prompts, pmask, responses, temperature)
    with torch.no_grad():
        logp, logp_all = gcpo.response_logprobs(model, prompts, pmask, responses, temperature, full=True)
    assert logp_all.shape == (*responses.shape, V)
    torch.testing.assert_close(logp_all, ref_all, atol=1e-6, rtol=0)
    torch.testing.assert_close(logp, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(logp_all.logsumexp(-1), torch.zeros(responses.shape), atol=1e-6, rtol=0)


def contrast_batch():
    """A padded batch with a negative prompt of a different width (here: the prompt's last 3 real tokens)."""
    prompts, pmask, responses, mask = padded_batch()
    neg = torch.full((len(prompts), 4), PAD)
    neg_mask = torch.zeros_like(neg)
    for i in range(len(prompts)):
        real = prompts[i][pmask[i].bool()][-3:]
        neg[i, 4 - len(real) :], neg_mask[i, 4 - len(real) :] = real, 1
    return dict(prompts=prompts, prompt_mask=pmask, neg_prompts=neg, neg_mask=neg_mask, responses=responses, mask=mask)


@pytest.mark.parametrize("divergence", ["kl", "full_kl"])
def test_contrast_weights_with_given_logprobs_equal_recomputed_and_full(model, divergence):
    """contrast_weights(logp handed in) = contrast_weights(computed inside) = token_weights on the full
    computation of both branches (the weights before any shortcut)."""
    cfg = gcpo.make_config("gcpo", divergence=divergence, temperature=0.8)
    b = contrast_batch()
    ref, ref_all = full_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"], 0.8)
    ref_neg, ref_neg_all = full_logprobs(model, b["neg_prompts"], b["neg_mask"], b["responses"], 0.8)
    full = divergence == "full_kl"
    assert_no_near_ties(ref, ref_neg, b["mask"], divergence, ref_all, ref_neg_all)
    before = gcpo.token_weights(
        ref,
        ref_neg,
        b["mask"],
        divergence=divergence,
        logp_all=ref_all if full else None,
        logp_neg_all=ref_neg_all if full else None,
    )
    inside = contrast_weights(model, b, cfg)
    handed = contrast_weights(model, b, cfg, ref, ref_all if full else None)
    assert not torch.equal(before, b["mask"].float())  # not the trivial all-ones weights
    torch.testing.assert_close(inside, before, atol=1e-6, rtol=0)
    torch.testing.assert_close(handed, before, atol=1e-6, rtol=0)


class ForwardLog:
    """Records (input ids, grad enabled) for every forward of a model (the sampler's decode steps included)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls.append((kwargs["input_ids"].clone(), torch.is_grad_enabled()))


def runs(ids, prompts, responses):
    """Whether a forward's input ids are exactly [prompts, responses]."""
    return torch.equal(ids, torch.cat([prompts, responses], 1))


def rollout_setup(weights_from, divergence="kl", temperature=0.8):
    """gcpo's needle task with a tiny wide-init model, a resolved gcpo config (4 prompts x 4 responses, one
    rollout), its batch, and the model's forwards during the rollout."""
    cfg = gcpo.make_config(
        "gcpo",
        env="needle",
        batch_prompts=4,
        group_size=4,
        dynamic_sampling=False,
        weights_from=weights_from,
        divergence=divergence,
        temperature=temperature,
        device="cpu",
    )
    task, _ = loading.build_task(cfg)
    cfg = gcpo.resolve(cfg, task)
    model = tiny_model(task.vocab_size, task.prompt_len + cfg.max_new_tokens, std=0.3, seed=2)
    log = ForwardLog(model)
    batch, _ = gcpo.rollout(model, task, cfg, 0)
    log.handle.remove()
    return model, cfg, batch, log.calls


def test_rollout_weights_from_sampler_logprobs_equal_recomputed():
    """weights_from=rollout scores the prompt branch with the sampler's logp_old: equal to recomputing it
    (1e-5 on valid tokens), and the weights equal contrast_weights recomputing both branches. The rollout's
    only forward after the sampler's prefill and T − 1 decode steps is the negative-prompt branch."""
    model, cfg, batch, calls = rollout_setup("rollout")
    T = batch["responses"].shape[1]
    assert len(calls) == 1 + (T - 1) + 1 and not any(grad for _, grad in calls)
    assert runs(calls[-1][0], batch["neg_prompts"], batch["responses"])
    valid = batch["mask"].bool()
    assert valid.sum() > 20 and (~valid).any()  # responses of different lengths: padding is exercised
    recomputed, _ = gcpo.response_logprobs(
        model, batch["prompts"], batch["prompt_mask"], batch["responses"], cfg.temperature
    )
    torch.testing.assert_close(batch["logp_old"][valid], recomputed[valid], atol=1e-5, rtol=0)
    logp_neg, _ = gcpo.response_logprobs(
        model, batch["neg_prompts"], batch["neg_mask"], batch["responses"], cfg.temperature
    )
    assert_no_near_ties(recomputed, logp_neg, batch["mask"], "kl")
    w_recomputed = contrast_weights(model, batch, cfg)  # no logp handed in: both branches run here
    assert not torch.equal(w_recomputed, batch["mask"].float())
    torch.testing.assert_close(batch["w_rollout"], w_recomputed, atol=1e-6, rtol=0)


@pytest.mark.parametrize("divergence", ["kl", "full_kl"])
def test_training_pass_weights_equal_recomputed(divergence):
    """weights_from=current: micro_batch_loss hands the training pass's log-probs to the contrast pass, which
    then runs only the negative-prompt forward (no grad); its weights equal a full recomputation. The model
    is perturbed after the rollout, as an update would, so the current policy's log-probs differ from
    logp_old and weights from the wrong policy would show."""
    model, cfg, batch, _ = rollout_setup("current", divergence)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    log = ForwardLog(model)
    _, _, w, _ = micro_batch_loss(model, None, batch, cfg, batch["mask"].sum(), len(batch["mask"]))
    log.handle.remove()
    assert [grad for _, grad in log.calls] == [True, False]  # the training pass, then only the negative branch
    assert runs(log.calls[0][0], batch["prompts"], batch["responses"])
    assert runs(log.calls[1][0], batch["neg_prompts"], batch["responses"])
    logp, logp_all = gcpo.response_logprobs(
        model, batch["prompts"], batch["prompt_mask"], batch["responses"], cfg.temperature, full=True
    )
    logp_neg, logp_neg_all = gcpo.response_logprobs(
        model, batch["neg_prompts"], batch["neg_mask"], batch["responses"], cfg.temperature, full=True
    )
    assert (logp - batch["logp_old"]).abs()[batch["mask"].bool()].max() > 1e-2  # the policy has moved
    assert_no_near_ties(logp, logp_neg, batch["mask"], divergence, logp_all, logp_neg_all)
    if divergence == "kl":  # (full_kl reads only the full log-softmax) the rollout policy's weights differ
        assert not torch.equal(gcpo.token_weights(batch["logp_old"], logp_neg, batch["mask"]), w)
    torch.testing.assert_close(w, contrast_weights(model, batch, cfg), atol=1e-6, rtol=0)


@torch.no_grad()
def reference_sample(model, prompts, pmask, T, temperature, generator, neg=None, neg_mask=None, scale=1.0):
    """Sampling without a KV cache and without any logit slicing: at every step the whole sequence so far goes
    through the model and the logits of all positions are computed; the last one's are used. Guidance
    (scale != 1) runs the prompt and the negative prompt as two separate batches. Draws like gcpo.sample
    (one gcpo.draw per step from the same generator), stops when every row has emitted EOS."""

    def last_logp(ids, attn):
        logits = model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(1) - 1).clamp(min=0)).logits
        assert logits.shape[1] == ids.shape[1]  # every position's logits
        return F.log_softmax(logits[:, -1].float() / temperature, -1)

    N = len(prompts)
    seqs = [(prompts, pmask)] + ([(neg, neg_mask)] if scale != 1.0 else [])
    tokens, logps, masks = [], [], []
    done = torch.zeros(N, dtype=torch.bool)
    for _ in range(T):
        cond = last_logp(*seqs[0])
        if scale == 1.0:
            draw = cond
        else:
            uncond = last_logp(*seqs[1])
            draw = uncond + scale * (cond - uncond)
        tok = gcpo.draw(draw.softmax(-1), generator).masked_fill(done, PAD)
        tokens.append(tok)
        logps.append(cond.gather(-1, tok[:, None]).squeeze(-1).masked_fill(done, 0.0))
        masks.append((~done).long())
        done = done | (tok == EOS)
        seqs = [
            (torch.cat([ids, tok[:, None]], 1), torch.cat([attn, torch.ones(N, 1, dtype=attn.dtype)], 1))
            for ids, attn in seqs
        ]
        if done.all():
            break
    return torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(logps, 1), ~done


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_sampler_prefill_with_last_logits_samples_like_full_logits(scale):
    model = tiny_model(std=0.15, seed=3)  # softer than the fixture's model, so EOS is not drawn at once
    b = contrast_batch()
    prompts, pmask, neg, neg_mask = b["prompts"], b["prompt_mask"], b["neg_prompts"], b["neg_mask"]
    kwargs = dict(neg_prompts=neg, neg_mask=neg_mask, guidance_scale=scale) if scale != 1.0 else {}
    got = gcpo.sample(
        model, prompts, pmask, 12, EOS, PAD, temperature=0.9, generator=torch.Generator().manual_seed(7), **kwargs
    )
    ref = reference_sample(model, prompts, pmask, 12, 0.9, torch.Generator().manual_seed(7), neg, neg_mask, scale)
    responses, mask, logp, truncated = got
    assert mask.sum(1).min() < mask.shape[1] and mask.sum() > 20  # some responses end early, most do not
    assert torch.equal(responses, ref[0]) and torch.equal(mask, ref[1]) and torch.equal(truncated, ref[3])
    torch.testing.assert_close(logp, ref[2], atol=1e-5, rtol=0)


def test_fused_gelu_is_gpt2s_gelu_new():
    """kernels.fuse_gelu replaces every `gelu_new` module of a GPT-2 (the default activation of a pretrained
    GPT-2, and of GPT2Config) by the fused tanh-GELU: the same logits and gradients to float32 rounding, the config
    updated so a saved copy reloads with it; a model with another activation is left as it was."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.activations import NewGELUActivation

    torch.manual_seed(0)
    conf = GPT2Config(
        vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    assert conf.activation_function == "gelu_new"
    model = GPT2LMHeadModel(conf).eval()
    ids = torch.randint(0, V, (4, 9))
    before = model(input_ids=ids).logits
    before.square().sum().backward()
    grad_before = model.transformer.h[0].mlp.c_fc.weight.grad.clone()
    model.zero_grad()
    assert kernels.fuse_gelu(model) is model
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert sum(isinstance(m, torch.nn.GELU) for m in model.modules()) == 2
    assert model.config.activation_function == "gelu_pytorch_tanh"
    after = model(input_ids=ids).logits
    after.square().sum().backward()
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.transformer.h[0].mlp.c_fc.weight.grad, grad_before, rtol=1e-4, atol=1e-5)
    relu = GPT2LMHeadModel(
        GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=1, n_head=2, activation_function="relu")
    )
    acts = [type(m) for m in relu.modules()]
    assert [type(m) for m in kernels.fuse_gelu(relu).modules()] == acts
    assert relu.config.activation_function == "relu"


def test_fused_gelu_updates_a_config_that_names_its_activation_hidden_act():
    """Most non-GPT-2 configs name the activation `hidden_act`: it is updated the same way, and a config naming
    another activation keeps it."""
    from types import SimpleNamespace

    from transformers.activations import NewGELUActivation

    for act, want in (("gelu_new", "gelu_pytorch_tanh"), ("silu", "silu")):
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), NewGELUActivation())
        model.config = SimpleNamespace(hidden_act=act)
        kernels.fuse_gelu(model)
        assert model.config.hidden_act == want and isinstance(model[1], torch.nn.GELU)


def test_draw_is_the_inverse_cdf_of_each_row():
    """gcpo.draw against a float64 inverse CDF by hand on the same uniforms: token = the first v whose cumulative
    mass passes u·Σp. Rows have zeros inside and at both ends, and do not sum to 1."""
    probs = torch.rand(200, 37, generator=torch.Generator().manual_seed(0)) ** 3
    probs[:, ::5], probs[:, -1], probs[::3] = 0.0, 0.0, probs[::3] * 7
    got = gcpo.draw(probs, torch.Generator().manual_seed(1))
    u = torch.rand(200, 1, generator=torch.Generator().manual_seed(1)).double()
    cdf = probs.double().cumsum(-1)
    want = (cdf <= u * cdf[:, -1:]).sum(-1)
    near = ((cdf - u * cdf[:, -1:]).abs() < 1e-5).any(-1)  # float32 and float64 may part at a boundary
    assert (got == want)[~near].all() and (~near).sum() > 190
    assert (probs.gather(1, got[:, None]) > 0).all()


def test_draw_frequencies_match_the_probabilities():
    """200,000 draws from one row: every frequency within 5 standard errors of its probability, zeros never."""
    p = torch.tensor([0.0, 0.5, 0.25, 0.0, 0.125, 0.125, 0.0])
    tok = gcpo.draw(p.expand(200_000, -1).contiguous(), torch.Generator().manual_seed(3))
    freq = torch.bincount(tok, minlength=7).double() / len(tok)
    se = (p.double() * (1 - p.double()) / len(tok)).sqrt()
    assert ((freq - p.double()).abs() <= 5 * se + 1e-12).all()


@pytest.mark.parametrize("u", [0.0, 1 - 2**-24])
def test_draw_never_returns_a_zero_probability_token_at_the_ends(monkeypatch, u):
    """u = 0 must not pick a leading zero; u just below 1, where u·Σp can round up to Σp, must not run past
    the last token with mass onto trailing zeros."""
    probs = torch.tensor([[0.0, 0.3, 0.0, 0.7, 0.0, 0.0], [0.0, 0.0, 1e-3, 1e-7, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, u))
    tok = gcpo.draw(probs)
    assert (probs.gather(1, tok[:, None]) > 0).all()
    assert tok.tolist() == ([1, 2] if u == 0.0 else [3, 3])
