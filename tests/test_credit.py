"""The study's credit sources (docs/algorithm.md §8): the shuffled control and the oracle upper bound keep their
defining properties, all four go through the same loss, and --eval-every writes a learning curve."""

import json

import pytest
import torch

import gcpo
from gcpo_support import schemes
from tests.helpers import contrast_weights, micro_batch_loss, oracle_weights


def contrast_batch(seed=0, N=6, T=9):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(N, T, generator=g) * 3
    logp_neg = logp + torch.randn(N, T, generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([9, 7, 1, 0, 4, 9])[:, None]).long()
    return logp, logp_neg, mask


def test_shuffled_weights_are_a_per_response_permutation():
    logp, logp_neg, mask = contrast_batch()
    w = gcpo.token_weights(logp, logp_neg, mask)
    s = schemes.shuffle_weights(w, mask, torch.Generator().manual_seed(1))
    valid = mask.bool()
    for i in range(len(w)):  # the same multiset of weights on each response's valid tokens ...
        torch.testing.assert_close(s[i][valid[i]].sort().values, w[i][valid[i]].sort().values, rtol=0, atol=0)
    assert (s[~valid] == 0).all()  # ... padding stays 0 ...
    assert not torch.equal(s, w)  # ... but moved: tokens no longer get their own contrast's weight
    moved = [(s[i][valid[i]] != w[i][valid[i]]).any().item() for i in (0, 1, 5)]
    assert all(moved)
    again = schemes.shuffle_weights(w, mask, torch.Generator().manual_seed(1))
    assert torch.equal(s, again)  # seeded


def test_shuffled_permutation_is_uniform():
    """Each valid position receives each weight equally often (a biased shuffle, e.g. one that never moves
    the first token, fails)."""
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(4, 4)
    for _ in range(4000):
        s = schemes.shuffle_weights(w, mask, gen)[0, :4]
        counts[torch.arange(4), (s - 1).long()] += 1
    assert (counts / 4000 - 0.25).abs().max() < 0.03


def test_oracle_puts_its_largest_weights_exactly_on_key_tokens():
    key = torch.tensor([[0, 1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    w = oracle_weights(key, mask)
    for i in range(2):
        valid = mask[i].bool()
        k, other = w[i][key[i] & valid], w[i][~key[i] & valid]
        assert k.min() > other.max()  # every key token outranks every other token
        assert torch.allclose(k, k[0].expand_as(k)) and torch.allclose(other, other[0].expand_as(other))  # ties shared
        torch.testing.assert_close(w[i][valid].sum(), valid.sum().float())  # mean 1: credit moves, total kept
    # the same weight law as GCPO's: equal to hist weights of a 0/1 score with averaged ties
    torch.testing.assert_close(w, gcpo.normalize_weights(key.float(), mask, "hist", "average"))


def test_oracle_is_uniform_when_every_or_no_token_is_a_key():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    for key in (mask.bool(), torch.zeros(2, 4, dtype=torch.bool)):
        torch.testing.assert_close(oracle_weights(key, mask), mask.float(), rtol=0, atol=0)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    out = tmp_path_factory.mktemp("credit_warm")
    gcpo.train(
        gcpo.make_config("gcpo", steps=0, warm_steps=150, out=str(out), device="cpu", eval_prompts=8), progress=False
    )
    return str(out / "model")


def one_update(warm, credit, weights_from="current"):
    cfg = gcpo.make_config(
        "gcpo",
        model=warm,
        warm_steps=0,
        steps=0,
        credit=credit,
        weights_from=weights_from,
        batch_prompts=4,
        group_size=4,
        device="cpu",
        eval_prompts=4,
    )
    r = gcpo.train(cfg, progress=False)
    model, task, cfg = r["model"], r["task"], r["cfg"]
    batch, _ = gcpo.rollout(model, task, cfg, 0)
    b = {k: v for k, v in batch.items()}
    loss, metrics, w, _ = micro_batch_loss(
        model, None, b, cfg, b["mask"].sum(), len(b["mask"]), torch.Generator().manual_seed(0)
    )
    return b, loss, w, cfg, model


def test_every_credit_source_goes_through_the_same_loss(warm):
    """The loss equals policy_loss with Ã = w·A for the weights each source defines; uniform is w ≡ 1."""
    for credit in ("uniform", "contrast", "shuffled", "oracle"):
        b, loss, w, cfg, model = one_update(warm, credit)
        valid = b["mask"].bool()
        if credit == "uniform":
            torch.testing.assert_close(w, b["mask"].float(), rtol=0, atol=0)
        elif credit == "oracle":
            torch.testing.assert_close(w, oracle_weights(b["key_mask"], b["mask"]))
        else:
            want = contrast_weights(model, b, cfg)
            if credit == "contrast":
                torch.testing.assert_close(w, want)
            else:
                for i in range(len(w)):
                    torch.testing.assert_close(w[i][valid[i]].sort().values, want[i][valid[i]].sort().values)
        logp, _ = gcpo.response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"])
        want_loss, _ = gcpo.policy_loss(
            logp,
            b["logp_old"],
            b["adv"][:, None] * w,
            b["mask"],
            total_tokens=b["mask"].sum(),
            total_seqs=len(w),
            max_len=cfg.max_new_tokens,
        )
        torch.testing.assert_close(loss, want_loss)


@pytest.mark.parametrize(
    "credit, passes",
    [
        ("oracle", [False]),
        ("uniform", [False]),
        ("contrast", [False, False]),
        ("entropy_top20", [True]),
        ("vppo_top40", [False, False]),
    ],
)
def test_the_trainer_computes_only_what_the_scheme_names(warm, monkeypatch, credit, passes):
    """One training forward per micro-batch, the whole log-softmax only for a scheme that names entropy or
    logp_all, and the negative prompt's forward only for one that names logp_neg (the list: `full` per pass)."""
    b, _, _, cfg, model = one_update(warm, credit)
    calls, original = [], gcpo.response_logprobs
    monkeypatch.setattr(
        gcpo, "response_logprobs", lambda *a, **k: calls.append(k.get("full", False)) or original(*a, **k)
    )
    micro_batch_loss(model, None, b, cfg, b["mask"].sum(), len(b["mask"]), torch.Generator().manual_seed(0))
    assert calls == passes


def test_eval_every_writes_a_learning_curve(warm, tmp_path):
    cfg = gcpo.make_config(
        "dapo",
        model=warm,
        warm_steps=0,
        steps=5,
        eval_every=2,
        batch_prompts=4,
        group_size=4,
        device="cpu",
        eval_prompts=16,
        out=str(tmp_path / "run"),
    )
    r = gcpo.train(cfg, progress=False)
    assert [s for s, _ in r["evals"]] == [0, 2, 4, 5]  # before, every 2 steps, and after the last
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [(m["step"] + 1, m["eval_reward"]) for m in lines if "eval_reward" in m]
    assert logged == [tuple(e) for e in r["evals"]]  # the first line: step −1, the evaluation before RL
    assert lines[0]["phase"] == "before RL" and all("phase" not in m for m in lines[1:])
    # the same fixed sampling seed each time: evaluating an unchanged model twice gives the same number
    again = gcpo.train(
        gcpo.make_config("dapo", model=warm, warm_steps=0, steps=0, device="cpu", eval_prompts=16), progress=False
    )
    assert again["evals"] == [r["evals"][0]]
