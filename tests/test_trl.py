"""GCPOTrainer (gcpo_trl.py) on TRL's GRPOTrainer, with a tiny GPT-2 and the stand-in BPE, on CPU.

The optional extra (requirements-trl.txt) is installed in CI, where a missing trl is an error; elsewhere these
tests are skipped without it."""

import math
import os
import socket
import subprocess
import sys

import pytest
import torch

if os.environ.get("CI", "").lower() == "true":
    import trl  # noqa: F401  (CI installs the extra: failing here is the point)
else:
    pytest.importorskip("trl", reason="optional extra: pip install -r requirements-trl.txt")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import gcpo  # noqa: E402
from gcpo_support import schemes  # noqa: E402
from gcpo_trl import GCPOConfig, GCPOTrainer  # noqa: E402
from toy_envs.text import save_stand_in_gpt2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["Here is a sentence about the ocean:", "Here is a positive review of the film:"]
NEGATIVES = ["Here is a sentence:", "Here is a negative review of the film:"]
CHAT = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# 2 prompts x 4 completions, 8 new tokens, one generation per optimizer step, float32 on CPU
BASE = dict(
    per_device_train_batch_size=8,
    num_generations=4,
    max_completion_length=8,
    max_steps=2,
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to="none",
    logging_steps=1,
    save_strategy="no",
    learning_rate=1e-2,
    seed=0,
    disable_dropout=True,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 2-layer GPT-2 (with GPT-2's dropout, so disable_dropout matters) and a 600-token byte-level BPE, saved."""
    return save_stand_in_gpt2(str(tmp_path_factory.mktemp("tiny_trl")))


def reward(completions, **kwargs):
    """Deterministic and varied within a group: distinct characters mod 4."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(len(set(t)) % 4) for t in texts]


def dataset(negative=True, chat=False):
    from datasets import Dataset

    prompts, negatives = PROMPTS * 4, NEGATIVES * 4
    if chat:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
        negatives = [[{"role": "user", "content": n}] for n in negatives]
    return Dataset.from_dict({"prompt": prompts, **({"negative_prompt": negatives} if negative else {})})


def trainer(cls, tiny_dir, tmp_path, train_dataset, chat=False, **options):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    if chat:
        tokenizer.chat_template = CHAT
    extra = {"negative_prompt_fn": options.pop("fn")} if "fn" in options else {}
    config = (GCPOConfig if cls is GCPOTrainer else GRPOConfig)(
        output_dir=str(tmp_path / cls.__name__), **BASE, **options
    )
    return cls(
        model=AutoModelForCausalLM.from_pretrained(tiny_dir),
        reward_funcs=reward,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        **extra,
    )


def generated_batch(t, train_dataset, shorten=False):
    """One generation batch (TRL's own generation and group advantages) in training mode, ready for the loss.
    shorten: every third completion keeps only its first 5 tokens, so padding is exercised."""
    t.model.train()
    t.current_gradient_accumulation_steps = 1  # Trainer.train() sets this in its loop; compute_loss reads it
    torch.manual_seed(0)
    out = t._generate_and_score_completions([train_dataset[i] for i in range(8)])
    if shorten:
        out["completion_mask"][::3, 5:] = 0
        out["completion_ids"][::3, 5:] = t.processing_class.pad_token_id
    assert (out["advantages"] != 0).any(), "the test batch needs non-zero advantages"
    return out


def plain_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, entropy=False):
    """log π(y_t | prompt, y_<t) (B, T) from one ordinary forward (logits → log-softmax), independent of TRL;
    with entropy=True also H(π(· | prompt, y_<t)) = −Σ_v π log π (B, T)."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attn = torch.cat([prompt_mask, completion_mask], 1)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, prompt_ids.shape[1] - 1 : -1].float()
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, completion_ids[..., None]).squeeze(-1)
    return (logp, -(logp_all.exp() * logp_all).sum(-1)) if entropy else logp


@pytest.fixture
def recorded(monkeypatch):
    """Every (A_i (B,), token advantages (B, T)) pair GCPOTrainer hands to TRL's loss."""
    calls = []
    original = GCPOTrainer.token_advantages

    def spy(self, batch, logp=None, logp_neg=None, entropy=None):
        out = original(self, batch, logp, logp_neg, entropy)
        calls.append((batch["advantages"].detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(GCPOTrainer, "token_advantages", spy)
    return calls


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("weights_from, chat", [("current", False), ("rollout", True)])
def test_two_training_steps_smoke(tiny_dir, tmp_path, weights_from, chat):
    """Two steps through Trainer.train(): finite losses, moved parameters, GCPO weight metrics in TRL's logs.
    The rollout case also runs chat prompts with a negative_prompt_fn and TRL's shuffling of (B, T) advantages."""
    fn = {"fn": lambda p: [{"role": "user", "content": "Write anything."}]} if chat else {}
    t = trainer(
        GCPOTrainer,
        tiny_dir,
        tmp_path,
        dataset(negative=not chat, chat=chat),
        chat=chat,
        weights_from=weights_from,
        **fn,
    )
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.train()
    logs = [h for h in t.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert any(not torch.equal(before[n], p) for n, p in t.model.named_parameters())
    for h in logs:  # hist weights have mean 1: a max above 1.5 and top-40% mass near 0.8 mean real contrast
        assert h["gcpo/weight_max"] > 1.5 and h["gcpo/weight_std"] > 0.3
        assert 0.7 < h["gcpo/weight_top40_mass"] < 0.95


def test_negative_equal_to_prompt_is_grpo(tiny_dir, tmp_path, recorded):
    """x⁻ = x: every weight is exactly 1, and the token advantages, the loss and every gradient equal a real
    GRPOTrainer's on the same batch (same seed, same initial model)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": PROMPTS * 4, "negative_prompt": PROMPTS * 4})
    g, r = trainer(GCPOTrainer, tiny_dir, tmp_path, ds), trainer(GRPOTrainer, tiny_dir, tmp_path, ds)
    batch = generated_batch(g, ds, shorten=True)
    r.model.train()
    r.current_gradient_accumulation_steps = 1
    loss_g = g.compute_loss(g.model, batch)
    loss_r = r.compute_loss(r.model, {k: v for k, v in batch.items() if not k.startswith("neg_")})
    loss_g.backward()
    loss_r.backward()

    ((a, token_adv),) = recorded
    mask = batch["completion_mask"].bool()
    assert torch.equal(a, batch["advantages"])
    assert torch.equal(token_adv, torch.where(mask, a[:, None], torch.zeros_like(token_adv)))  # w ≡ 1
    assert g._metrics["train"]["gcpo/weight_max"] == [1.0] and g._metrics["train"]["gcpo/weight_std"] == [0.0]
    assert torch.equal(loss_g, loss_r) and loss_g.item() != 0
    grads_g, grads_r = grads(g.model), grads(r.model)
    assert grads_g.keys() == grads_r.keys() and len(grads_g) > 0
    for name in grads_g:
        assert torch.equal(grads_g[name], grads_r[name]), name


@pytest.mark.parametrize("weights_from", ["current", "rollout"])
def test_token_advantages_are_w_times_A(tiny_dir, tmp_path, recorded, weights_from):
    """The advantages the trainer passes equal w·A_i with w from gcpo.token_weights on log-probs of a separate,
    ordinary forward pass over the same batch; and TRL's loss and gradient with them are GRPOTrainer's when
    GRPOTrainer is handed the same (B, T) advantages."""
    ds = dataset()
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, weights_from=weights_from)
    batch = generated_batch(g, ds, shorten=weights_from == "current")
    if weights_from == "current":
        loss_g = g.compute_loss(g.model, batch)
        loss_g.backward()
    ((a, token_adv),) = recorded
    if weights_from == "rollout":
        assert torch.equal(batch["advantages"], token_adv)  # already (B, T) in the generation batch

    mask = batch["completion_mask"]
    with torch.no_grad():
        logp = plain_logps(g.model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], mask)
        logp_neg = plain_logps(
            g.model, batch["neg_prompt_ids"], batch["neg_prompt_mask"], batch["completion_ids"], mask
        )
    w = gcpo.token_weights(logp, logp_neg, mask, divergence="kl", normalization="hist", ties="average")
    assert w[mask.bool()].max() > 1.5  # a real contrast, not w ≡ 1
    expected = a[:, None] * w
    torch.testing.assert_close(token_adv, expected, rtol=1e-5, atol=1e-6)

    if weights_from == "current":
        r = trainer(GRPOTrainer, tiny_dir, tmp_path, ds)
        r.model.train()
        r.current_gradient_accumulation_steps = 1
        inputs = {k: v for k, v in batch.items() if not k.startswith("neg_")}
        loss_r = r.compute_loss(r.model, {**inputs, "advantages": expected})
        loss_r.backward()
        torch.testing.assert_close(loss_g, loss_r, rtol=1e-5, atol=1e-7)
        grads_g, grads_r = grads(g.model), grads(r.model)
        for name in grads_g:
            torch.testing.assert_close(grads_g[name], grads_r[name], rtol=1e-4, atol=1e-7)


def test_uniform_credit_is_grpo(tiny_dir, tmp_path):
    """credit='uniform' needs no negative prompt and trains exactly as GRPOTrainer: same parameters after two
    steps."""
    ds = dataset(negative=False)
    runs = []
    for cls, options in ((GCPOTrainer, dict(credit="uniform")), (GRPOTrainer, {})):
        t = trainer(cls, tiny_dir, tmp_path, ds, **options)  # GRPOTrainer.__init__ seeds the global RNGs
        before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
        t.train()
        logs = [{k: v for k, v in h.items() if "time" not in k and "per_second" not in k} for h in t.state.log_history]
        runs.append((t, before, logs))
    (u, before, logs_u), (r, _, logs_r) = runs
    assert logs_u == logs_r and not any(k.startswith("gcpo/") for h in logs_u for k in h)
    assert any(not torch.equal(before[n], p) for n, p in u.model.named_parameters())
    for (name, p), q in zip(u.model.named_parameters(), r.model.parameters()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------------------------------------
# any credit scheme: the trainer computes only what the scheme names


def peaked(model, scale=10.0):
    """The random-init model predicts almost uniformly (every entropy ≈ log V); larger (tied) embeddings give
    it peaked, position-dependent predictions, so that entropy schemes see a signal."""
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)


@pytest.mark.parametrize("weights_from", ["current", "rollout"])
def test_entropy_scheme_gets_the_policy_entropy_and_needs_no_negative_prompt(
    tiny_dir, tmp_path, recorded, monkeypatch, weights_from
):
    """gtpo_entropy (w ∝ H_t, mean 1 per completion) on a dataset without negative prompts: the advantages equal
    w·A_i with w from the entropy of a separate, ordinary forward pass, and no negative forward runs."""
    monkeypatch.setattr(GCPOTrainer, "_negative_logps", lambda *a, **k: pytest.fail("a negative forward ran"))
    ds = dataset(negative=False)
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, credit="gtpo_entropy", weights_from=weights_from)
    peaked(g.model)
    batch = generated_batch(g, ds, shorten=weights_from == "current")  # (rollout: scored before it could)
    assert not any(k.startswith("neg_") for k in batch)
    if weights_from == "current":
        g.compute_loss(g.model, batch).backward()
    ((a, token_adv),) = recorded
    mask = batch["completion_mask"]
    with torch.no_grad():
        _, entropy = plain_logps(
            g.model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], mask, entropy=True
        )
    w = schemes.gtpo_entropy(entropy, mask)
    assert w[mask.bool()].std() > 0.03  # a real signal, not w ≡ 1
    torch.testing.assert_close(token_adv, a[:, None] * w, rtol=1e-4, atol=1e-5)
    assert g.credit_name == "gtpo_entropy" and len(g._metrics["train"]["gcpo/weight_std"]) == 1


def test_entropy_top20_keeps_the_batchs_top_fifth(tiny_dir, tmp_path, recorded):
    """entropy_top20: 0/1 weights, the 1s on the ~20% highest-entropy valid tokens of the micro-batch."""
    ds = dataset(negative=False)
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, credit="entropy_top20")
    peaked(g.model)
    batch = generated_batch(g, ds, shorten=True)
    g.compute_loss(g.model, batch)
    ((a, token_adv),) = recorded
    valid = batch["completion_mask"].bool()
    w = token_adv / a[:, None]
    assert set(w[valid].unique().tolist()) == {0.0, 1.0} and not w[~valid].any()
    assert 0.15 <= w[valid].mean() <= 0.3


def test_shuffled_permutes_gcpo_weights_within_each_completion(tiny_dir, tmp_path, recorded):
    """shuffled: each completion's weights are its GCPO weights in another order (the same multiset), seeded:
    the same step on a fresh trainer gives the same order."""
    ds = dataset()
    runs = []
    for credit in ("contrast", "shuffled", "shuffled"):
        g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, credit=credit)
        g.compute_loss(g.model, generated_batch(g, ds, shorten=True))
        runs.append(recorded.pop())
    (a, contrast), (_, shuffled), (_, again) = runs
    assert torch.equal(shuffled, again) and not torch.equal(shuffled, contrast)
    torch.testing.assert_close(shuffled.sort(1).values, contrast.sort(1).values, rtol=1e-5, atol=1e-6)


GROUP_SCHEME = '''
import torch

SEEN = []


def rank_in_group(adv, mask, group_size):
    """w = 1 + (the completion's rank by A_i within its group, ties in row order) / G on every valid token."""
    SEEN.append((adv.shape[0], group_size))
    rank = adv.view(-1, group_size).argsort(dim=1, stable=True).argsort(dim=1).view(-1)
    return (1 + rank / group_size)[:, None] * mask.float()
'''


def test_a_group_level_plugin_scheme_sees_whole_groups_once_per_generation(tiny_dir, tmp_path, recorded):
    """A path/file.py:function scheme that names group_size is scored once per generation batch, on the rows in
    group order (before TRL shuffles them), with group_size = num_generations; its weights reach TRL's loss."""
    path = tmp_path / "group_scheme.py"
    path.write_text(GROUP_SCHEME)
    ds = dataset(negative=False)
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, credit=f"{path}:rank_in_group")
    batch = generated_batch(g, ds)
    module = sys.modules["credit_plugin_group_scheme"]
    assert module.SEEN == [(8, 4)]
    ((a, token_adv),) = recorded
    assert torch.equal(batch["advantages"], token_adv)
    rank = torch.tensor(
        [
            sum(y < x or (y == x and j < i) for j, y in enumerate(group))  # by counting
            for group in a.view(-1, 4).tolist()
            for i, x in enumerate(group)
        ]
    )
    torch.testing.assert_close(token_adv, a[:, None] * (1 + rank / 4)[:, None] * batch["completion_mask"])
    g.compute_loss(g.model, batch)
    assert module.SEEN == [(8, 4)]  # not scored again in the loss


# ---------------------------------------------------------------------------------------------------------
# tool and environment masks: TRL's tool_mask (a rollout_func's env_mask becomes it) is the scheme's mask


def tool_batch(B=8, T=10, seed=0):
    """A batch as TRL's loss sees it, built by hand: uneven lengths (right padding) and tool output (tool_mask 0)
    inside most completions; advantages A_i != 0; logp, logp_neg (B, T) with a real contrast."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([10, 7, 3, 9, 1, 6, 10, 4])
    completion_mask = (torch.arange(T)[None] < lengths[:, None]).long()
    tool_mask = torch.ones(B, T, dtype=torch.long)
    tool_mask[0, 2:5] = tool_mask[1, 1:3] = tool_mask[3, 4:9] = tool_mask[5, 0] = tool_mask[6, 7:] = 0
    tool_mask[2, 0:3] = 0  # a completion that is all tool output: no weight at all
    logp = -torch.rand(B, T, generator=gen) * 3
    logp_neg = logp - torch.rand(B, T, generator=gen) * 2
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2, 0.3, 2.0, -0.8, 0.4])
    return dict(completion_mask=completion_mask, tool_mask=tool_mask, advantages=advantages), logp, logp_neg


@pytest.mark.parametrize("credit", ["contrast", "vppo_top40", "gtpo_entropy", "entropy_top20", "ones"])
def test_tool_tokens_get_weight_zero_and_no_say_in_the_others(tiny_dir, tmp_path, credit):
    """Straight through the advantage path: tool-output tokens get advantage 0; the other tokens' weights are
    those of the same completions with the tool tokens removed (changing the inputs at tool positions changes
    nothing), so a mean-1 scheme averages exactly 1 over each completion's own tokens. `ones`, a plug-in that
    puts 1 everywhere, padding and tool output included, still gets 0 there."""
    if credit == "ones":
        (tmp_path / "ones.py").write_text("import torch\n\ndef ones(mask):\n    return torch.ones(mask.shape)\n")
        credit = f"{tmp_path / 'ones.py'}:ones"
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, dataset(), credit=credit)
    g.model.train()
    batch, logp, logp_neg = tool_batch()
    own = (batch["completion_mask"] * batch["tool_mask"]).bool()  # (B, T): the model's own tokens
    tool = batch["completion_mask"].bool() & ~own
    entropy = -logp  # any non-negative signal
    adv = g.token_advantages(batch, logp, logp_neg, entropy)
    assert tool.any() and not adv[tool].any() and not adv[~batch["completion_mask"].bool()].any()

    noise = torch.randn(logp.shape, generator=torch.Generator().manual_seed(1)).abs() * 5
    moved = [torch.where(own, x, noise) for x in (logp, logp_neg, entropy)]  # other values on tool tokens
    assert torch.equal(g.token_advantages(batch, *moved), adv)

    w = adv / batch["advantages"][:, None]
    rows = own.any(1)
    if credit in ("contrast", "gtpo_entropy") or credit.endswith(":ones"):
        per_row = (w * own).sum(1)[rows] / own.sum(1)[rows]
        torch.testing.assert_close(per_row, torch.ones_like(per_row), rtol=1e-6, atol=1e-6)
        assert w[own].std() > 0.1 or credit.endswith(":ones")
    if credit == "contrast":  # the weights of the compacted completions, by gcpo.token_weights
        for i in range(len(w)):
            if rows[i]:
                keep = own[i]
                alone = gcpo.token_weights(logp[i, keep][None], logp_neg[i, keep][None], torch.ones(1, keep.sum()))
                torch.testing.assert_close(w[i, keep], alone[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weights_from", ["current", "rollout"])
def test_trl_tool_mask_reaches_the_scheme(tiny_dir, tmp_path, recorded, monkeypatch, weights_from):
    """TRL's generation with a tool_mask in its output (as its tool loop or a rollout_func's env_mask gives it):
    the token advantages TRL's loss gets are 0 on tool tokens and w·A_i elsewhere, with w the hist weights over
    the model's own tokens only."""
    original = GRPOTrainer._generate_and_score_completions

    def with_tools(self, inputs):
        out = original(self, inputs)
        out["tool_mask"] = torch.ones_like(out["completion_mask"])
        out["tool_mask"][::2, 2:5] = 0  # tool output in the middle of every other completion
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", with_tools)
    ds = dataset()
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, weights_from=weights_from)
    batch = generated_batch(g, ds)
    if weights_from == "current":
        g.compute_loss(g.model, batch)
    ((a, token_adv),) = recorded
    own = batch["completion_mask"] * batch["tool_mask"]
    with torch.no_grad():
        args = (batch["completion_ids"], batch["completion_mask"])
        logp = plain_logps(g.model, batch["prompt_ids"], batch["prompt_mask"], *args)
        logp_neg = plain_logps(g.model, batch["neg_prompt_ids"], batch["neg_prompt_mask"], *args)
    w = gcpo.token_weights(logp, logp_neg, own)
    assert not token_adv[(batch["tool_mask"] == 0)].any()
    torch.testing.assert_close(token_adv, a[:, None] * w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# bad input: one clear error each, before any model work


def test_no_negative_prompt_source_is_an_error(tmp_path):
    """The error comes before the model is loaded: the model path does not even exist."""
    with pytest.raises(ValueError, match="no 'negative_prompt' column and no negative_prompt_fn"):
        GCPOTrainer(
            model=str(tmp_path / "not-loaded"),
            reward_funcs=reward,
            train_dataset=dataset(negative=False),
            args=GCPOConfig(output_dir=str(tmp_path), **BASE),
        )


def test_two_negative_prompt_sources_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="keep one source"):
        GCPOTrainer(
            model=str(tmp_path / "not-loaded"),
            reward_funcs=reward,
            train_dataset=dataset(),
            args=GCPOConfig(output_dir=str(tmp_path), **BASE),
            negative_prompt_fn=lambda p: p,
        )


@pytest.mark.parametrize(
    "chat, fn, message",
    [
        (False, lambda p: [p], "must be a string"),
        (True, lambda p: p[0]["content"], "must be a list of"),
        (False, "Give a wrong answer.", "must be a function"),
    ],
)
def test_negative_prompt_fn_of_the_wrong_type_is_an_error(tmp_path, chat, fn, message):
    with pytest.raises(TypeError, match=message):
        GCPOTrainer(
            model=str(tmp_path / "not-loaded"),
            reward_funcs=reward,
            train_dataset=dataset(negative=False, chat=chat),
            args=GCPOConfig(output_dir=str(tmp_path), **BASE),
            negative_prompt_fn=fn,
        )


CONVERSATION = [{"role": "user", "content": "Write a review."}]


@pytest.mark.parametrize(
    "prompt, negative, ok",
    [
        ("Write a review.", "Write anything.", True),
        ("Write a review.", ["Write anything."], False),
        (CONVERSATION, [{"role": "system", "content": "Be wrong."}, {"role": "user", "content": "Write."}], True),
        (CONVERSATION, [], False),  # an empty conversation
        (CONVERSATION, "Write anything.", False),
        (CONVERSATION, ["Write anything."], False),  # messages that are not dicts
        (CONVERSATION, [{"role": "user"}], False),  # no content
        (CONVERSATION, [{"content": "Write anything."}], False),  # no role
        (CONVERSATION, [{"role": "user", "content": "Write."}, {"role": "user"}], False),  # one message without content
    ],
)
def test_a_negative_prompt_must_have_its_prompts_format(prompt, negative, ok):
    from gcpo_trl import check_negative

    if ok:
        check_negative(prompt, negative, "the negative_prompt column")
    else:
        with pytest.raises(TypeError, match="^the negative_prompt column gave a .* it must be "):
            check_negative(prompt, negative, "the negative_prompt column")


def test_first_row_of_a_sequence_an_iterable_and_an_empty_dataset():
    from datasets import Dataset, IterableDataset

    from gcpo_trl import first_row

    rows = [{"prompt": "a"}, {"prompt": "b"}]
    assert first_row(rows) == {"prompt": "a"} and first_row([]) is None
    assert (
        first_row(Dataset.from_list(rows)) == {"prompt": "a"} and first_row(Dataset.from_dict({"prompt": []})) is None
    )
    assert first_row(IterableDataset.from_generator(lambda: iter(rows))) == {"prompt": "a"}
    assert first_row(IterableDataset.from_generator(lambda: iter([]))) is None


def _source_checker(fn=None):
    from types import SimpleNamespace

    fake = SimpleNamespace(negative_prompt_fn=fn, credit_name="contrast", _negative_source="the negative_prompt column")
    fake._negative_of = lambda row: GCPOTrainer._negative_of(fake, row)
    return lambda ds: GCPOTrainer._check_negative_source(fake, ds, "train_dataset")


@pytest.mark.parametrize("kind", ["list", "dataset", "iterable"])
def test_the_negative_column_is_found_in_any_kind_of_dataset(kind):
    """The column is read from the dataset's column names, or from its first row where it has none (a list of
    dicts, an IterableDataset of unknown features); an empty Dataset still has its columns."""
    from datasets import Dataset, IterableDataset

    def make(rows):
        if kind == "list":
            return rows
        return Dataset.from_list(rows) if kind == "dataset" else IterableDataset.from_generator(lambda: iter(rows))

    check = _source_checker()
    check(make([{"prompt": "a", "negative_prompt": "x"}]))
    with pytest.raises(ValueError, match="^train_dataset has no 'negative_prompt' column"):
        check(make([{"prompt": "a"}]))
    with pytest.raises(TypeError, match="^the negative_prompt column gave a list"):
        check(make([{"prompt": "a", "negative_prompt": ["x"]}]))  # the first row is checked
    check(Dataset.from_dict({"prompt": [], "negative_prompt": []}))
    with pytest.raises(ValueError, match="no 'negative_prompt' column"):
        check([])
    _source_checker(fn=lambda p: p + " Give a wrong answer.")([])  # nothing to check, and a function is a source


@pytest.mark.parametrize("processor", [False, True])
@pytest.mark.parametrize("multiple", [None, 4])
def test_negative_prompts_are_left_padded_with_the_pad_id_to_trls_multiple(processor, multiple):
    """_add_negative_prompts on token ids of lengths 2, 5, 3: (B, P⁻) ids left-padded with the tokenizer's pad id
    (7 here, not 0) to the longest, rounded up to pad_to_multiple_of; the mask is 1 on the tokens and 0 on the
    padding; the tokenizer may sit inside a processor (`processing_class.tokenizer`)."""
    from types import SimpleNamespace

    rows = [{"prompt": "a", "negative_prompt": "x"}, {"prompt": "b", "negative_prompt": "y"}]
    rows.append({"prompt": "c", "negative_prompt": "z"})
    tokens = {"x": [11, 12], "y": [21, 22, 23, 24, 25], "z": [31, 32, 33]}
    tokenizer = SimpleNamespace(pad_token_id=7)
    fake = SimpleNamespace(
        _negative_of=lambda row: row["negative_prompt"],
        _negative_source="the negative_prompt column",
        _tokenize_prompts=lambda negatives: ([tokens[n] for n in negatives], None, None),
        processing_class=SimpleNamespace(tokenizer=tokenizer) if processor else tokenizer,
        pad_to_multiple_of=multiple,
    )
    output = {"prompt_ids": torch.zeros(3, 4, dtype=torch.long)}
    GCPOTrainer._add_negative_prompts(fake, rows, output)
    width = 5 if multiple is None else 8
    want_ids = torch.full((3, width), 7)
    want_mask = torch.zeros(3, width, dtype=torch.long)
    for i, n in enumerate("xyz"):
        want_ids[i, width - len(tokens[n]) :] = torch.tensor(tokens[n])
        want_mask[i, width - len(tokens[n]) :] = 1
    assert torch.equal(output["neg_prompt_ids"], want_ids)
    assert torch.equal(output["neg_prompt_mask"], want_mask)


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(divergence="kll"), "divergence='kll' is not an option"),
        (dict(normalization="rank"), "normalization='rank' is not an option"),
        (dict(weights_from="old"), "weights_from='old' is not an option"),
        (dict(credit="oracle"), "'oracle' needs 'key_mask', which GCPOTrainer cannot supply"),
        (dict(credit="oracel"), "unknown credit scheme 'oracel'"),
        (dict(credit="no_such_module_xyz:scheme"), "cannot import no_such_module_xyz"),
        (dict(ties="first"), "ties='first' is not an option"),
        (dict(divergence="full_kl"), "'contrast' needs 'logp_all'.*use divergence='kl'"),
        (dict(top_fraction=0.5, target_mass=0.3), "target_mass=0.3 < top_fraction=0.5"),
        (dict(softmax_temp=0.0), "softmax_temp=0.0"),
    ],
)
def test_unknown_option_value_is_an_error(tmp_path, option, message):
    with pytest.raises(ValueError, match=message):
        GCPOConfig(output_dir=str(tmp_path), **option)


@pytest.mark.parametrize(
    "params, need",
    [
        ("rewards, mask", "rewards"),
        ("logp_neg_all, mask", "logp_neg_all"),
        ("key_mask, mask", "key_mask"),
        ("logp_all", "logp_all"),
    ],
)
def test_a_scheme_naming_an_input_trl_lacks_is_an_error(tmp_path, params, need):
    """The error names the input and the fix: divergence='kl' under full_kl, gcpo.py's toy tasks otherwise."""
    (tmp_path / "lacking.py").write_text(f"def scheme({params}):\n    return mask.float()\n")
    for divergence, fix in (
        ("kl", "; run this scheme with gcpo.py on a toy task$"),
        ("full_kl", "; use divergence='kl' \\(the official token estimate\\) or gcpo.py$"),
    ):
        with pytest.raises(
            ValueError, match=f"^credit scheme 'scheme' needs '{need}', which GCPOTrainer cannot supply"
        ):
            GCPOConfig(output_dir=str(tmp_path), credit=f"{tmp_path / 'lacking.py'}:scheme", divergence=divergence)
        with pytest.raises(ValueError, match=fix):
            GCPOConfig(output_dir=str(tmp_path), credit=f"{tmp_path / 'lacking.py'}:scheme", divergence=divergence)


def test_every_dataset_is_checked_for_its_negative_prompts_and_named(tmp_path):
    """The train dataset and each eval dataset (one, or a dict of them) need negative prompts; the error names the
    one that lacks them, before the model is loaded."""

    def make(**datasets):
        GCPOTrainer(
            model=str(tmp_path / "not-loaded"), reward_funcs=reward, args=GCPOConfig(output_dir=str(tmp_path), **BASE),
            **datasets,
        )  # fmt: skip

    for datasets, name in (
        (dict(train_dataset=dataset(negative=False)), "train_dataset"),
        (dict(train_dataset=dataset(), eval_dataset=dataset(negative=False)), "eval_dataset"),
        (dict(train_dataset=dataset(), eval_dataset={"ok": dataset(), "held": dataset(negative=False)}), "held"),
    ):
        with pytest.raises(ValueError, match=f"^{name} has no 'negative_prompt' column"):
            make(**datasets)


def test_a_scheme_returning_the_wrong_shape_is_one_line(tiny_dir, tmp_path):
    (tmp_path / "bad.py").write_text("def bad(mask):\n    return mask[:, :1].float()\n")
    ds = dataset(negative=False)
    g = trainer(GCPOTrainer, tiny_dir, tmp_path, ds, credit=f"{tmp_path / 'bad.py'}:bad")
    with pytest.raises(ValueError, match=r"^credit scheme 'bad' returned shape \(8, 1\); it must return one weight"):
        g.compute_loss(g.model, generated_batch(g, ds))


def test_grpo_config_is_refused(tmp_path):
    with pytest.raises(TypeError, match="needs a GCPOConfig"):
        GCPOTrainer(
            model=str(tmp_path / "not-loaded"),
            reward_funcs=reward,
            train_dataset=dataset(),
            args=GRPOConfig(output_dir=str(tmp_path), **BASE),
        )


# ---------------------------------------------------------------------------------------------------------
# distributed: two processes (gloo on CPU) through accelerate, the example script end to end


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_end_with_identical_parameters(tiny_dir, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` with the script's `--use_cpu True` runs two CPU
    processes over gloo (accelerate's `--cpu` flag alone starts one process unless MPI is set up). Two steps of
    examples/gcpo_trl_math.py; each rank writes a SHA-256 of its parameters before and after."""
    digest = tmp_path / "params"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),  # no user accelerate config, no cache outside tmp_path
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": ROOT,
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        os.path.join(ROOT, "examples", "gcpo_trl_math.py"),
        "--model",
        tiny_dir,
        "--num_prompts",
        "16",
        "--output_dir",
        str(tmp_path / "out"),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--num_generations",
        "8",
        "--max_completion_length",
        "16",
        "--learning_rate",
        "1e-3",
        "--use_cpu",
        "True",
        "--bf16",
        "False",
        "--gradient_checkpointing",
        "False",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--param_digest",
        str(digest),
    ]
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"accelerate launch did not finish in 300 s; last output:\n{(e.stdout or '')[-3000:]}"
            f"\n{(e.stderr or '')[-3000:]}"
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"accelerate launch failed (exit {proc.returncode}):\n{output[-4000:]}"
    assert "2 process(es), MULTI_CPU, backend gloo" in proc.stdout, output[-4000:]
    assert "credit scheme contrast" in proc.stdout and "contrast weights (last log): max" in proc.stdout, output[-4000:]
    ranks = [dict(line.split() for line in open(f"{digest}.rank{r}")) for r in (0, 1)]
    assert ranks[0]["after"] == ranks[1]["after"], "the two processes ended with different parameters"
    assert ranks[0]["before"] == ranks[1]["before"] != ranks[0]["after"], "training did not change the parameters"


def test_example_math_reward():
    """The example's reward reads the last integer of the completion (text or chat), negatives and commas
    included; its negative prompt is the question plus 'Give a wrong answer.'."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gcpo_trl_math", os.path.join(ROOT, "examples", "gcpo_trl_math.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    completions = [
        "3 * 4 = 12, so Answer: -5",
        [{"role": "assistant", "content": "Answer: 1,204"}],
        "no idea",
        "Answer: 7",
    ]
    assert example.correct(completions, answer=[-5, 1204, 0, 8]) == [1.0, 1.0, 0.0, 0.0]
    assert example.gives_number(completions) == [0.1, 0.1, 0.0, 0.1]
    questions, answers = example.arithmetic(50, seed=0)
    assert all(eval(q[len("What is ") : -1]) == a for q, a in zip(questions, answers))  # noqa: S307 (our own text)
    questions, ds = example.arithmetic(3, seed=0)[0], example.build_dataset(3, seed=0, chat=False)
    assert all(
        n.startswith(q) and "Give a wrong answer." in n and "Give a wrong answer." not in p
        for q, p, n in zip(questions, ds["prompt"], ds["negative_prompt"])
    )


def test_token_advantages_draw_from_the_trainers_generator_and_log_under_the_models_mode():
    """A random scheme (the shuffled control) draws from the trainer's seeded generator, not torch's global one: the
    same step gives the same weights whatever the global seed. The weight statistics go to TRL's metrics under the
    model's mode, "train" or "eval", and nowhere else."""
    from collections import defaultdict
    from types import SimpleNamespace

    credit = gcpo.credit_scheme(gcpo.make_config("gcpo", credit="shuffled"))
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    logp = -torch.arange(20.0).reshape(4, 5) / 10
    batch = {"completion_mask": mask, "advantages": torch.tensor([1.0, -1.0, 0.5, 2.0])}
    trainer = SimpleNamespace(
        credit=credit,
        _needs=schemes.needs(credit),
        num_generations=2,
        args=SimpleNamespace(seed=0),
        accelerator=SimpleNamespace(process_index=0, gather=lambda x: x),
        _step=3,
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    trainer._generator = lambda device: GCPOTrainer._generator(trainer, device)

    def advantages(global_seed):
        torch.manual_seed(global_seed)
        return GCPOTrainer.token_advantages(trainer, batch, logp=logp, logp_neg=logp.flip(1))

    first = advantages(0)
    assert torch.equal(first, advantages(1))
    assert not torch.equal(first, GCPOTrainer.token_advantages(trainer, batch, logp=logp, logp_neg=logp))
    keys = ["gcpo/weight_max", "gcpo/weight_std", "gcpo/weight_top40_mass"]
    assert sorted(trainer._metrics["train"]) == keys and not trainer._metrics["eval"]
    assert [len(v) for v in trainer._metrics["train"].values()] == [3, 3, 3]
    trainer.model.training = False
    advantages(0)
    assert sorted(trainer._metrics["eval"]) == keys
    assert [len(v) for v in trainer._metrics["eval"].values()] == [1, 1, 1]
    assert trainer._metrics["eval"]["gcpo/weight_max"] == trainer._metrics["train"]["gcpo/weight_max"][:1]


def test_the_no_grad_passes_turn_gradient_checkpointing_off_and_back_on_with_the_runs_options():
    """The negative prompts' pass and the rollout pass run without gradient checkpointing (no grad: nothing to
    recompute) and turn it back on afterwards with the run's `gradient_checkpointing_kwargs`."""
    from types import SimpleNamespace

    class Model:
        is_gradient_checkpointing, calls = True, []

        def gradient_checkpointing_disable(self):
            self.is_gradient_checkpointing = False
            self.calls.append("off")

        def gradient_checkpointing_enable(self, kwargs=None):
            self.is_gradient_checkpointing = True
            self.calls.append(("on", kwargs))

    model, seen = Model(), []

    def logps(m, ids, attn, width, batch_size=None, compute_entropy=False):
        seen.append((m, model.is_gradient_checkpointing, ids.shape, width, batch_size))
        return torch.zeros(ids.size(0), width), None

    options = {"use_reentrant": False}
    trainer = SimpleNamespace(
        model=model,
        args=SimpleNamespace(gradient_checkpointing_kwargs=options),
        _get_per_token_logps_and_entropies=logps,
    )
    x = {"completion_ids": torch.ones(2, 3, dtype=torch.long), "completion_mask": torch.ones(2, 3)}
    x |= {k: v[:, :2] for k, v in (("neg_prompt_ids", x["completion_ids"]), ("neg_prompt_mask", x["completion_mask"]))}
    x |= {"prompt_ids": x["neg_prompt_ids"], "prompt_mask": x["neg_prompt_mask"]}
    assert GCPOTrainer._negative_logps(trainer, "wrapped", x, batch_size=4).shape == (2, 3)
    GCPOTrainer._rollout_logps(trainer, x, batch_size=4)
    assert seen == [("wrapped", False, (2, 5), 3, 4), (model, False, (2, 5), 3, 4)]
    assert model.calls == ["off", ("on", options)] * 2


def test_a_schemes_generator_is_seeded_by_seed_process_and_step():
    """GCPOTrainer._generator: the same (args.seed, process index, step) gives the same stream, so a run repeats;
    another step or another process gives another stream, so a random scheme (the shuffled control) draws anew
    at each step and no two processes share its draws."""
    from types import SimpleNamespace

    def draws(seed=0, process=0, step=3):
        fake = SimpleNamespace(
            args=SimpleNamespace(seed=seed), accelerator=SimpleNamespace(process_index=process), _step=step
        )
        return torch.rand(4, generator=GCPOTrainer._generator(fake, "cpu"))

    assert torch.equal(draws(), draws())
    for other in (draws(seed=1), draws(process=1), draws(step=4)):
        assert not torch.equal(draws(), other)


# ---------------------------------------------------------------------------------------------------------
# the trainer's own plumbing, on a bare GCPOTrainer (no model): TRL's side replaced by recording stand-ins


def test_positional_arguments_reach_the_config_check(tmp_path):
    """GCPOTrainer takes GRPOTrainer's arguments positionally too: a GRPOConfig given third is still refused."""
    with pytest.raises(TypeError, match="needs a GCPOConfig"):
        GCPOTrainer(str(tmp_path / "not-loaded"), reward, GRPOConfig(output_dir=str(tmp_path), **BASE), dataset())


def test_liger_kernel_is_refused_only_where_trl_fuses_its_loss_in_liger(tmp_path, monkeypatch):
    """A TRL whose GRPOTrainer has compute_liger_loss would compute the loss with one advantage per sequence under
    use_liger_kernel=True: refused for token credit, accepted for uniform credit and without the option (the
    check goes on to the datasets: here, the missing negative prompts)."""
    monkeypatch.setattr(GRPOTrainer, "compute_liger_loss", lambda *a, **k: None, raising=False)

    def make(**options):
        config = GCPOConfig(output_dir=str(tmp_path), **BASE, **options)
        GCPOTrainer(model=str(tmp_path / "not-loaded"), reward_funcs=reward, args=config, train_dataset=dataset(False))

    with pytest.raises(ValueError, match="^use_liger_kernel=True computes"):
        make(use_liger_kernel=True)
    with pytest.raises(ValueError, match="has no 'negative_prompt' column"):
        make(use_liger_kernel=False)


def bare_trainer(credit, calls, B=8, T=3, training=True):
    """A GCPOTrainer without __init__: the credit scheme, 2 generations per prompt, batch sizes 3 (train) and 5
    (eval), and the model passes and token_advantages replaced by stand-ins that record their arguments."""
    from types import SimpleNamespace

    t = object.__new__(GCPOTrainer)
    t.credit = gcpo.credit_scheme(gcpo.make_config("gcpo", credit=credit))
    t.credit_name = schemes.info(t.credit).name
    t._needs, t._uniform, t._once, t.num_generations = schemes.needs(t.credit), False, True, 2
    t.model = SimpleNamespace(training=training)
    t.args = SimpleNamespace(per_device_train_batch_size=3, per_device_eval_batch_size=5)
    t._add_negative_prompts = lambda inputs, output: calls.append("negative prompts")

    def rollout_logps(output, batch_size=None, compute_entropy=False):
        calls.append(("rollout", batch_size, compute_entropy))
        return torch.full((B, T), -1.0), torch.ones(B, T) if compute_entropy else None

    def negative_logps(model, output, batch_size=None):
        calls.append(("negative", model is t.model, batch_size))
        return torch.full((B, T), -2.0)

    t._rollout_logps, t._negative_logps = rollout_logps, negative_logps
    t.token_advantages = lambda output, logp, logp_neg, entropy: calls.append(("advantages", logp, logp_neg, entropy))
    return t


def generate(t, monkeypatch, **output):
    output = {"completion_ids": torch.zeros(8, 3, dtype=torch.long), **output}
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", lambda self, inputs: dict(output))
    return t._generate_and_score_completions([{}] * 8)


@pytest.mark.parametrize("images", [{"pixel_values": torch.zeros(1)}, {"num_images": [1] * 8}])
def test_image_prompts_are_refused_for_token_credit(images, monkeypatch):
    with pytest.raises(ValueError, match="supports text prompts only"):
        generate(bare_trainer("contrast", []), monkeypatch, **images)
    generate(bare_trainer("contrast", []), monkeypatch, num_images=None)


def test_a_group_scheme_needs_whole_groups_of_completions_not_of_tokens(tmp_path, monkeypatch):
    """rows % num_generations is checked on the completions (8 rows of 3 tokens: whole groups of 2), and only for
    a scheme that names group_size."""
    scheme = tmp_path / "group.py"
    scheme.write_text("import torch\ndef by_group(mask, group_size):\n    return mask.float()\n")
    generate(bare_trainer(f"{scheme}:by_group", []), monkeypatch)
    with pytest.raises(ValueError, match="holds 7 completions, not a multiple of num_generations=2"):
        generate(bare_trainer(f"{scheme}:by_group", []), monkeypatch, completion_ids=torch.zeros(7, 4))
    generate(bare_trainer("contrast", []), monkeypatch, completion_ids=torch.zeros(7, 4))


@pytest.mark.parametrize("training, batch_size", [(True, 3), (False, 5)])
def test_the_rollout_passes_chunk_as_trl_does_and_reuse_trls_log_probs(training, batch_size, monkeypatch):
    """The no-grad passes get TRL's chunk size (train or eval batch size by the model's mode); TRL's own
    old_per_token_logps are reused when present, and the rollout pass runs only when the scheme needs what they
    lack (the entropy)."""
    calls = []
    generate(bare_trainer("contrast", calls, training=training), monkeypatch)
    assert calls[:3] == ["negative prompts", ("rollout", batch_size, False), ("negative", True, batch_size)]
    assert torch.equal(calls[3][1], torch.full((8, 3), -1.0)) and calls[3][3] is None

    calls, old = [], torch.full((8, 3), -0.5)
    generate(bare_trainer("contrast", calls, training=training), monkeypatch, old_per_token_logps=old)
    assert calls[:2] == ["negative prompts", ("negative", True, batch_size)] and calls[2][1] is old

    calls = []
    generate(bare_trainer("entropy_top20", calls, training=training), monkeypatch, old_per_token_logps=old)
    assert calls[0] == ("rollout", batch_size, True) and torch.equal(calls[1][3], torch.ones(8, 3))


def per_token(t, monkeypatch, pending, out, *args):
    """_get_per_token_logps_and_entropies with TRL's forward replaced: returns what it passes on and the kwargs
    TRL's forward got."""
    seen = {}

    def trl_forward(self, model, ids, attn, keep, *a, **kw):
        seen.update(args=a, kwargs=kw)
        return out

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", trl_forward)
    t._pending = pending
    return t._get_per_token_logps_and_entropies("model", "ids", "attn", 3, *args), seen


def test_the_policy_forward_in_the_loss_scores_the_pending_batch_and_asks_for_the_entropy_it_needs(monkeypatch):
    """Only the forward inside _compute_loss (a pending batch) replaces the advantages, with TRL's log-probs
    (detached) and, for a scheme that names it, the entropy (asked for unless TRL passed extra arguments); other
    forwards pass through untouched. A forward of another shape, or without a needed entropy, is an error."""
    logp, entropy = torch.full((8, 3), -1.0, requires_grad=True), torch.ones(8, 3)
    inputs = {"completion_mask": torch.ones(8, 3)}
    for credit, needs_entropy in (("contrast", False), ("entropy_top20", True)):
        calls = []
        t = bare_trainer(credit, calls)
        out, seen = per_token(t, monkeypatch, None, (logp, entropy))
        assert out == (logp, entropy) and seen == {"args": (), "kwargs": {}} and calls == []
        out, seen = per_token(t, monkeypatch, (inputs, "neg"), (logp, entropy if needs_entropy else None))
        assert seen["kwargs"] == ({"compute_entropy": True} if needs_entropy else {}) and t._pending is None
        (_, got, neg, ent), want = calls[0], entropy if needs_entropy else None
        assert torch.equal(got, logp) and not got.requires_grad and neg == "neg"
        assert ent is want or torch.equal(ent, want)
        _, seen = per_token(t, monkeypatch, (inputs, "neg"), (logp, entropy), 4)
        assert seen == {"args": (4,), "kwargs": {}}
    with pytest.raises(RuntimeError, match="expected TRL's policy forward to score \\(8, 3\\)"):
        per_token(bare_trainer("contrast", []), monkeypatch, (inputs, None), (logp[:, :2], None))
    with pytest.raises(RuntimeError, match="with their entropy"):
        per_token(bare_trainer("entropy_top20", []), monkeypatch, (inputs, None), (logp, None))
