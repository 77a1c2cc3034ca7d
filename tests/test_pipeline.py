"""Properties of the pipeline around the pure functions: sampling, rollout, micro-batch loss and update, each
called directly on a stand-in policy whose next-token distribution is a table lookup on the prompt, so every
expected value can be written down by hand (and every test runs in well under a second)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gcpo
import toy_envs
from gcpo_support.kernels import CACHE
from tests.helpers import micro_batch_loss

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
# Needle with one content slot: prompt <bos> @0 s, reward 1 iff the first response token is s (no EOS needed)
TASK = toy_envs.make_task("needle", length=1, num_symbols=4, require_eos=False)
V, EOS, NULL = TASK.vocab_size, TASK.eos_id, toy_envs.NULL
A, B, C, D = range(TASK.sym0, TASK.sym0 + 4)  # the four symbols
FILL = TASK.filler0


class PromptLookupLM(torch.nn.Module):
    """A causal LM whose next-token logits depend only on the prompt: logits = table[k] at every position, where
    k is the token at position 2 (the symbol of a Needle prompt, NULL in its null prompt; left padding skipped).
    It follows the Hugging Face calling convention gcpo uses (position_ids, a KV cache, logits_to_keep); the
    cache only carries k."""

    config = SimpleNamespace(n_positions=64)

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone().float())

    def get_input_embeddings(self):  # gcpo reads the vocabulary size from here
        return SimpleNamespace(num_embeddings=self.table.shape[0])

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0, **cache):
        past_key_values = cache.get(CACHE)  # transformers' name for the KV cache: `cache` (5.x) or past_key_values
        if past_key_values is None:
            at_key = position_ids == 2
            assert (at_key.sum(1) == 1).all(), "every prompt needs a token at position 2"
            key = input_ids[at_key]  # (N,): one per row, in row order
        else:
            key = past_key_values
        logits = self.table[key][:, None, :].expand(-1, input_ids.shape[1], -1)  # (N, S, V)
        return Output({"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits, CACHE: key})


class Output(dict):
    """A model output read by key or attribute, as Hugging Face's ModelOutput."""

    __getattr__ = dict.__getitem__


def lookup_table(rows: dict) -> torch.Tensor:
    """(V, V) logits: row k puts probability p on token v for each (v, p) in rows[k] (−30 elsewhere);
    keys not given get a uniform row."""
    table = torch.zeros(V, V)
    for key, probs in rows.items():
        table[key] = -30.0
        for v, p in probs.items():
            table[key, v] = float(np.log(p))
    return table


# A: always right (a flat group of 1s); B and C: right half the time (informative), C ends with EOS half the
# time; D: always wrong (a flat group of 0s); the null prompt spreads its mass over every symbol.
POLICY = lookup_table(
    {
        A: {A: 1.0},
        B: {B: 0.5, FILL: 0.5},
        C: {C: 0.5, EOS: 0.5},
        D: {FILL: 1.0},
        NULL: {A: 0.25, B: 0.25, C: 0.25, D: 0.25},
    }
)


def config(algo="dapo", **kw):
    base = dict(device="cpu", negative="null", max_new_tokens=3, batch_prompts=4, group_size=6)
    return gcpo.make_config(algo, **{**base, **kw})


def handmade_batch(n=8, seed=0):
    """A batch sampled from POLICY for prompts with symbols B and C (ρ ≡ 1: logp_old is the current logp)."""
    model = PromptLookupLM(POLICY)
    prompts = torch.tensor([[toy_envs.BOS, TASK.pos0, (B, C)[i % 2]] for i in range(n)])
    neg = torch.as_tensor(TASK.negative_prompts(prompts.numpy(), "null"))
    gen = torch.Generator().manual_seed(seed)
    responses, mask, logp, _ = gcpo.sample(model, prompts, torch.ones_like(prompts), 3, EOS, TASK.pad_id, generator=gen)
    return model, dict(
        prompts=prompts,
        prompt_mask=torch.ones_like(prompts),
        neg_prompts=neg,
        neg_mask=torch.ones_like(neg),
        responses=responses,
        mask=mask,
        logp_old=logp,
        key_mask=torch.zeros_like(mask, dtype=torch.bool),
        adv=torch.tensor([1.0, -0.5, 0.25, 2.0, -1.5, 0.75, -0.25, 0.5])[:n],
    )


def logp_by_hand(table, prompts, responses):
    """log π(y_t | x) of the lookup policy, straight from its table: (N, T), float64."""
    return table.double().log_softmax(-1)[prompts[:, 2]].gather(1, responses)


# ---- sampling ---------------------------------------------------------------------------------------------
def test_guidance_scale_zero_samples_exactly_what_the_negative_prompt_alone_would():
    model = PromptLookupLM(POLICY)
    prompts = torch.tensor([[toy_envs.BOS, TASK.pos0, s] for s in (A, B, C, D)] * 8)
    neg = torch.as_tensor(TASK.negative_prompts(prompts.numpy(), "null"))
    ones = torch.ones_like(prompts)
    draw = lambda ids, **kw: gcpo.sample(
        model, ids, ones, 3, EOS, TASK.pad_id, generator=torch.Generator().manual_seed(4), **kw
    )
    guided, _, logp, _ = draw(prompts, neg_prompts=neg, neg_mask=ones, guidance_scale=0.0)
    alone, *_ = draw(neg)
    assert torch.equal(guided, alone)
    assert not torch.equal(guided, draw(prompts)[0])  # the prompt alone would sample something else
    valid = guided != TASK.pad_id
    torch.testing.assert_close(logp[valid], logp_by_hand(POLICY, prompts, guided).float()[valid])  # stored: π(·|x)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_guided_tokens_follow_the_cfg_distribution(scale):
    """One token drawn 20 000 times: its frequencies match softmax(ℓ⁻ + s(ℓ − ℓ⁻)), ℓ the log-softmax."""
    g = torch.Generator().manual_seed(5)
    table = torch.randn(V, V, generator=g) * 1.5
    model = PromptLookupLM(table)
    n = 20_000
    prompts = torch.tensor([[toy_envs.BOS, TASK.pos0, B]]).expand(n, 3)
    neg = torch.as_tensor(TASK.negative_prompts(prompts.numpy(), "null"))
    tokens, *_ = gcpo.sample(
        model,
        prompts,
        torch.ones_like(prompts),
        1,
        EOS,
        TASK.pad_id,
        temperature=0.8,
        generator=torch.Generator().manual_seed(6),
        neg_prompts=neg,
        neg_mask=torch.ones_like(neg),
        guidance_scale=scale,
    )
    cond, uncond = (table[B].double() / 0.8).log_softmax(-1), (table[NULL].double() / 0.8).log_softmax(-1)
    want = (uncond + scale * (cond - uncond)).softmax(-1)
    freq = torch.bincount(tokens[:, 0], minlength=V).double() / n
    sigma = (want * (1 - want) / n).sqrt()
    assert ((freq - want).abs() <= 5 * sigma + 1e-4).all(), (freq - want).abs().max()


# ---- rollout ----------------------------------------------------------------------------------------------
def test_dynamic_sampling_keeps_whole_informative_groups_each_with_one_prompt():
    cfg = config(dynamic_sampling=True, max_sampling_tries=4)
    batch, metrics = gcpo.rollout(PromptLookupLM(POLICY), TASK, cfg, step=0)
    G = cfg.group_size
    assert 0 < metrics["zero_std_frac"] < 1  # some groups were dropped, some kept: the filter had work to do
    assert batch["responses"].shape[0] == G * metrics["groups_kept"] and metrics["groups_kept"] >= 2
    for k in ("prompts", "neg_prompts"):
        groups = batch[k].view(-1, G, batch[k].shape[1])
        assert (groups == groups[:, :1]).all(), f"a group of the batch mixes {k}"
    assert set(batch["prompts"][:, 2].tolist()) <= {B, C}  # only the symbols that can give unequal rewards
    rewards = batch["rewards"].view(-1, G)
    assert (rewards.max(1).values > rewards.min(1).values).all()
    rescored = TASK.score(batch["prompts"].numpy(), batch["responses"].numpy()).reward
    np.testing.assert_array_equal(batch["rewards"].numpy(), rescored)  # each reward belongs to its own row


def test_overlong_filter_masks_exactly_the_truncated_responses():
    cfg = config(dynamic_sampling=False, overlong_filter=True, batch_prompts=8)
    batch, _ = gcpo.rollout(PromptLookupLM(POLICY), TASK, cfg, step=1)
    ended = (batch["responses"] == EOS).any(1)
    assert ended.any() and (~ended).any()
    assert (batch["mask"][~ended] == 0).all()
    first_eos = (batch["responses"] == EOS).int().argmax(1)
    for i in ended.nonzero().flatten().tolist():  # a response that ended keeps its tokens up to and with EOS
        assert batch["mask"][i].tolist() == [int(t <= first_eos[i]) for t in range(batch["mask"].shape[1])]


def test_rollout_weights_are_the_contrast_of_the_rollout_policy():
    cfg = config("gcpo", weights_from="rollout", dynamic_sampling=False)
    model = PromptLookupLM(POLICY)
    batch, _ = gcpo.rollout(model, TASK, cfg, step=0)
    lp = logp_by_hand(POLICY, batch["prompts"], batch["responses"])
    ln = logp_by_hand(POLICY, batch["neg_prompts"], batch["responses"])
    torch.testing.assert_close(batch["w_rollout"], gcpo.token_weights(lp, ln, batch["mask"]).float())


# ---- micro-batch loss -------------------------------------------------------------------------------------
def test_weights_from_rollout_are_the_ones_the_loss_uses():
    model, b = handmade_batch()
    b["w_rollout"] = (torch.rand(b["mask"].shape, generator=torch.Generator().manual_seed(1)) + 0.5) * b["mask"]
    cfg = config("gcpo", weights_from="rollout")
    loss, _, w, _ = micro_batch_loss(model, None, b, cfg, b["mask"].sum(), len(b["mask"]))
    assert torch.equal(w, b["w_rollout"])
    current, _, w_now, _ = micro_batch_loss(model, None, b, config("gcpo"), b["mask"].sum(), len(b["mask"]))
    assert not torch.equal(w_now, w) and loss.item() != current.item()
    want = -(b["adv"][:, None] * b["w_rollout"] * b["mask"]).sum() / b["mask"].sum()  # ρ ≡ 1
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_dr_grpo_divides_by_the_generation_cap_not_the_batch_width():
    model, b = handmade_batch()
    cfg = config("dr_grpo", max_new_tokens=12)
    assert b["responses"].shape[1] < 12
    loss, *_ = micro_batch_loss(model, None, b, cfg, b["mask"].sum(), len(b["mask"]))
    want = -(b["adv"] * b["mask"].sum(1)).sum() / (len(b["mask"]) * 12)  # ρ ≡ 1: ℓ = −A_i on each token
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("agg", AGGS)
def test_kl_to_reference_is_the_k3_of_the_frozen_reference(agg):
    model, b = handmade_batch()
    ref_table = POLICY + torch.randn(V, V, generator=torch.Generator().manual_seed(2))
    ref = PromptLookupLM(ref_table).requires_grad_(False)
    cfg = config("grpo", loss_agg=agg, beta=0.04)
    _, metrics, *_ = micro_batch_loss(model, ref, b, cfg, b["mask"].sum(), len(b["mask"]))
    logp = logp_by_hand(POLICY, b["prompts"], b["responses"])
    delta = logp_by_hand(ref_table, b["prompts"], b["responses"]) - logp
    k3, m = delta.exp() - delta - 1, b["mask"].double()
    want = {
        "token-mean": (k3 * m).sum() / m.sum(),
        "seq-mean-token-mean": ((k3 * m).sum(1) / m.sum(1)).mean(),
        "seq-mean-token-sum-norm": (k3 * m).sum() / (len(m) * cfg.max_new_tokens),
    }[agg]
    assert want > 0.01 and metrics["kl_ref"] == pytest.approx(want.item(), rel=1e-5)


# ---- update -----------------------------------------------------------------------------------------------
class RecordingOptimizer:
    """Stands in for the optimizer: records the gradient each step() sees and, with lr > 0, takes a plain SGD
    step p ← p − lr·∇p (lr = 0: the parameters stay as they are)."""

    def __init__(self, params, lr=0.0):
        self.params, self.lr, self.steps = list(params), lr, []

    @torch.no_grad()
    def step(self):
        self.steps.append([p.grad.clone() for p in self.params])
        for p in self.params:
            p -= self.lr * p.grad

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("agg", AGGS)
def test_each_optimizer_step_normalises_by_its_own_mini_batch(agg):
    """With every response identical, each mini-batch's mean is the whole batch's: every optimizer step must
    see the full-batch gradient, however the rollout is split into mini- and micro-batches."""
    model, one = handmade_batch(n=1, seed=3)
    n = 8
    batch = {k: v.expand(n, *v.shape[1:]).clone() for k, v in one.items()}
    cfg = config(loss_agg=agg, minibatches=2, micro_batch=3, max_grad_norm=1e9)
    loss, *_ = micro_batch_loss(model, None, batch, cfg, batch["mask"].sum(), n)
    loss.backward()
    full = model.table.grad.clone()
    model.table.grad = None
    opt = RecordingOptimizer(model.parameters())
    gcpo.update(model, opt, None, batch, cfg, step=0)
    assert len(opt.steps) == 2 and full.abs().sum() > 0
    for (grad,) in opt.steps:
        torch.testing.assert_close(grad, full, rtol=1e-5, atol=1e-7)


def test_a_non_finite_gradient_leaves_the_parameters_unchanged():
    model, b = handmade_batch()
    cfg = config()
    opt = RecordingOptimizer(model.parameters(), lr=0.1)
    before = model.table.detach().clone()
    bad = {**b, "adv": b["adv"].clone()}
    bad["adv"][0] = float("inf")
    metrics = gcpo.update(model, opt, None, bad, cfg, step=0)
    assert metrics["skipped_steps"] == 1 and not np.isfinite(metrics["grad_norm"])
    assert torch.equal(model.table.detach(), before)
    metrics = gcpo.update(model, opt, None, b, cfg, step=1)  # the same batch with finite advantages does step
    assert metrics["skipped_steps"] == 0 and not torch.equal(model.table.detach(), before)
    assert torch.isfinite(model.table).all()
