"""Sampler, log-prob recomputation, padding, and GCPO ≡ DAPO when the negative prompt equals the prompt."""

import copy

import numpy as np
import pytest
import torch

import gcpo
import toy_envs
from tests.helpers import contrast_weights, micro_batch_loss

V, PAD, BOS, EOS = toy_envs.make_task("needle").vocab_size, 0, 1, 2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = gcpo.make_config("gcpo", n_embd=32, n_layer=2, n_head=2)
    return gcpo.build_policy(cfg, V, 40, dict(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)).eval()


def left_padded_prompts():
    rows = [[BOS, 5, 6, 7, 8], [BOS, 9], [BOS, 10, 11], [BOS, 12, 13, 14]]
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return rows, ids, mask


def test_stored_logprobs_equal_full_forward(model):
    _, ids, mask = left_padded_prompts()
    gen = torch.Generator().manual_seed(3)
    resp, rmask, logp, _ = gcpo.sample(model, ids, mask, 12, EOS, PAD, temperature=0.7, generator=gen)
    recomputed, _ = gcpo.response_logprobs(model, ids, mask, resp, temperature=0.7)
    torch.testing.assert_close(logp * rmask, recomputed * rmask, atol=1e-5, rtol=0)


def test_left_padding_does_not_change_logprobs(model):
    rows, ids, mask = left_padded_prompts()
    resp = torch.randint(4, V, (len(rows), 6), generator=torch.Generator().manual_seed(0))
    padded, _ = gcpo.response_logprobs(model, ids, mask, resp)
    for i, r in enumerate(rows):
        alone, _ = gcpo.response_logprobs(
            model, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long), resp[i : i + 1]
        )
        torch.testing.assert_close(padded[i], alone[0], atol=1e-5, rtol=0)


def test_eos_mask_and_truncation(model):
    ids = torch.tensor([[BOS, 5]] * 64)
    mask = torch.ones_like(ids)
    gen = torch.Generator().manual_seed(1)
    # make EOS likely so that both finished and truncated responses occur
    with torch.no_grad():
        m = copy.deepcopy(model)
        m.lm_head.weight[EOS] += 0.3 * m.transformer.wte.weight.std()
        bias = torch.zeros(V)
        bias[EOS] = 2.5
        m.lm_head.bias = torch.nn.Parameter(bias)
    resp, rmask, logp, truncated = gcpo.sample(m, ids, mask, 6, EOS, PAD, generator=gen)
    assert truncated.any() and (~truncated).any()
    for i in range(len(resp)):
        eos_at = (resp[i] == EOS).nonzero().flatten()
        if truncated[i]:
            assert len(eos_at) == 0 and rmask[i].sum() == 6
        else:
            e = int(eos_at[0])
            assert rmask[i, : e + 1].all() and not rmask[i, e + 1 :].any()  # mask includes EOS, not padding
            assert (resp[i, e + 1 :] == PAD).all() and (logp[i, e + 1 :] == 0).all()


def test_sampling_is_seeded(model):
    _, ids, mask = left_padded_prompts()
    a = gcpo.sample(model, ids, mask, 8, EOS, PAD, generator=torch.Generator().manual_seed(5))
    b = gcpo.sample(model, ids, mask, 8, EOS, PAD, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_guided_sampling(model):
    _, ids, mask = left_padded_prompts()
    neg = torch.full((4, 2), PAD)
    neg[:, -1] = BOS
    neg_mask = (neg != PAD).long()
    plain = gcpo.sample(model, ids, mask, 8, EOS, PAD, generator=torch.Generator().manual_seed(2))
    same = gcpo.sample(
        model,
        ids,
        mask,
        8,
        EOS,
        PAD,
        generator=torch.Generator().manual_seed(2),
        neg_prompts=neg,
        neg_mask=neg_mask,
        guidance_scale=1.0,
    )
    assert all(torch.equal(x, y) for x, y in zip(plain, same))  # s = 1 is plain sampling
    resp, rmask, logp, _ = gcpo.sample(
        model,
        ids,
        mask,
        8,
        EOS,
        PAD,
        generator=torch.Generator().manual_seed(2),
        neg_prompts=neg,
        neg_mask=neg_mask,
        guidance_scale=4.0,
    )
    cond, _ = gcpo.response_logprobs(model, ids, mask, resp)
    torch.testing.assert_close(logp * rmask, cond * rmask, atol=1e-5, rtol=0)  # stored: conditional log-probs
    with pytest.raises(ValueError, match="neg_prompts"):
        gcpo.sample(model, ids, mask, 8, EOS, PAD, guidance_scale=3.0)


def test_top_p_filter_by_hand():
    logits = torch.log(torch.tensor([[0.15, 0.6, 0.05, 0.2]]))
    kept = torch.isfinite(gcpo.top_p_filter(logits, 0.7))
    assert kept.tolist() == [[False, True, False, True]]  # 0.6 < 0.7 ≤ 0.6 + 0.2
    assert torch.isfinite(gcpo.top_p_filter(logits, 0.55)).tolist() == [[False, True, False, False]]
    assert torch.equal(gcpo.top_p_filter(logits, 1.0), logits)


def toy_batch(model, task, cfg, same_negative):
    rng = np.random.default_rng(0)
    prompts_np = np.repeat(task.sample_prompts(4, rng), cfg.group_size, axis=0)
    ids = torch.as_tensor(prompts_np)
    mask = torch.ones_like(ids)
    resp, rmask, logp, _ = gcpo.sample(
        model, ids, mask, task.max_new_tokens, EOS, PAD, generator=torch.Generator().manual_seed(0)
    )
    neg = ids.clone() if same_negative else torch.as_tensor(task.negative_prompts(prompts_np, "null"))
    rewards = torch.as_tensor(task.score(prompts_np, resp.numpy()).reward).float()
    return dict(
        prompts=ids,
        prompt_mask=mask,
        neg_prompts=neg,
        neg_mask=torch.ones_like(neg),
        responses=resp,
        mask=rmask,
        logp_old=logp,
        rewards=rewards,
        adv=torch.linspace(-1.5, 1.5, len(ids)),  # an untrained policy rarely scores: fixed, non-zero A
        key_mask=torch.zeros_like(rmask, dtype=torch.bool),
    )


def loss_and_grad(model, b, cfg):
    m = copy.deepcopy(model)
    loss, _, w, _ = micro_batch_loss(m, None, b, cfg, b["mask"].sum(), len(b["mask"]))
    loss.backward()
    return loss, [p.grad.clone() for p in m.parameters()], w


def test_gcpo_equals_dapo_when_negative_is_prompt():
    task = toy_envs.make_task("needle")
    torch.manual_seed(0)
    cfg = gcpo.make_config("gcpo", max_new_tokens=task.max_new_tokens, device="cpu")
    model = gcpo.build_policy(
        cfg, task.vocab_size, 16, dict(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    ).eval()
    b = toy_batch(model, task, cfg, same_negative=True)
    loss_g, grads_g, w = loss_and_grad(model, b, cfg)
    loss_d, grads_d, _ = loss_and_grad(model, b, gcpo.make_config("dapo", max_new_tokens=task.max_new_tokens))
    assert (w[b["mask"].bool()] == 1).all()
    assert loss_g.item() == loss_d.item()
    assert all(torch.equal(a, c) for a, c in zip(grads_g, grads_d))
    # and with the real null prompt the weights (and so the gradient) differ
    b_null = toy_batch(model, task, cfg, same_negative=False)
    _, grads_n, w_n = loss_and_grad(model, b_null, cfg)
    assert w_n[b_null["mask"].bool()].std() > 0.1
    assert not all(torch.equal(a, c) for a, c in zip(grads_n, grads_d))


def test_contrast_weights_use_same_response_tokens(model):
    task = toy_envs.make_task("needle")
    cfg = gcpo.make_config("gcpo", max_new_tokens=9)
    b = toy_batch(model, task, cfg, same_negative=False)
    w = contrast_weights(model, b, cfg)
    lp, _ = gcpo.response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"])
    ln, _ = gcpo.response_logprobs(model, b["neg_prompts"], b["neg_mask"], b["responses"])
    torch.testing.assert_close(w, gcpo.token_weights(lp, ln, b["mask"]))
    assert not w.requires_grad
