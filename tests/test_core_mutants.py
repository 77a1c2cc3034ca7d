"""Properties of gcpo.update's derived randomness, the quality bootstrap, load_tokenizer's pad token and
GCPOTrainer._rollout_logps that the other tests leave open: each expected value comes from a hand count or an
independent plain computation (numpy / a direct forward), never from the code under test."""

import re
import warnings

import numpy as np
import pytest
import torch

import gcpo
from credit_kit.quality import bootstrap
from gcpo_support import loading
from gcpo_support.metrics import weight_metrics
from tests.helpers import small_policy
from tests.test_pipeline import POLICY, TASK, PromptLookupLM, RecordingOptimizer, config, handmade_batch
from toy_envs.text import stand_in_tokenizer


# ---- update: the mini-batch order and the credit scheme's generator ---------------------------------------
def stream(seed, *keys):
    """The documented derivation of seeded(cfg, *keys)'s torch generator, written out independently: numpy's
    default_rng over [seed, *keys] draws a 62-bit integer that seeds a CPU torch.Generator."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, *keys]).integers(2**62)))


def run_update(step, cfg, global_seed=0):
    """One gcpo.update (lr 0) on 8 hand-made responses, each carrying its row number; returns the rows of the
    micro-batches in the order update visits them, and the state of the credit generator the first micro-batch
    gets (before anything has drawn from it)."""
    model, batch = handmade_batch(n=8)
    batch["row"] = torch.arange(8)
    rows, states = [], []
    original = gcpo.micro_batch_loss

    def spy(model, ref_model, b, cfg, scheme, total_tokens, total_seqs, generator=None):
        rows.append(b["row"].clone())
        states.append(generator.get_state().clone())
        return original(model, ref_model, b, cfg, scheme, total_tokens, total_seqs, generator)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gcpo, "micro_batch_loss", spy)
        torch.manual_seed(global_seed)
        gcpo.update(model, RecordingOptimizer(model.parameters()), None, batch, cfg, step=step)
    return torch.cat(rows), states[0]


def test_update_order_is_the_steps_own_derived_permutation_each_epoch():
    """Two epochs of 4 mini-batches of 1-row micro-batches: the rows are visited in the two successive
    permutations of the (seed, step, 1_000_003) stream, so a run reproduces; the order changes with the step,
    ignores torch's global seed, and is not the rollout's sampling stream (seed, step, 0)."""
    cfg = config(minibatches=4, micro_batch=1, epochs=2, seed=5)
    for step in (0, 3):
        order, _ = run_update(step, cfg)
        gen = stream(5, step, 1_000_003)
        want = torch.cat([torch.randperm(8, generator=gen) for _ in range(2)])
        assert torch.equal(order, want), (step, order, want)
        sampling = stream(5, step, 0)
        assert not torch.equal(order, torch.cat([torch.randperm(8, generator=sampling) for _ in range(2)]))
    assert not torch.equal(run_update(0, cfg)[0], run_update(3, cfg)[0])  # the step is part of the stream
    assert torch.equal(run_update(3, cfg, global_seed=0)[0], run_update(3, cfg, global_seed=123)[0])


def rollout_credit_generator(step, cfg):
    """The state of the generator gcpo.rollout hands to the credit scheme (weights from the rollout policy)."""
    seen, original = [], gcpo.credit_weights

    def spy(model, b, cfg, scheme, generator=None, logp=None, logp_all=None):
        seen.append(generator.get_state().clone())
        return original(model, b, cfg, scheme, generator, logp, logp_all)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gcpo, "credit_weights", spy)
        gcpo.rollout(PromptLookupLM(POLICY), TASK, cfg, step)
    assert len(seen) == 1
    return seen[0]


def test_update_credit_generator_is_the_one_the_rollout_scores_with():
    """The credit scheme's randomness (the `shuffled` control's) in update is the (seed, step, 2_000_003)
    stream, the one rollout hands to the scheme when the weights come from the rollout policy; it changes with
    the step."""
    cfg = config("gcpo", credit="shuffled", seed=7, dynamic_sampling=False)
    rollout_cfg = config("gcpo", credit="shuffled", seed=7, weights_from="rollout", dynamic_sampling=False)
    for step in (0, 2):
        _, state = run_update(step, cfg)
        assert torch.equal(state, stream(7, step, 2_000_003).get_state())
        assert torch.equal(state, rollout_credit_generator(step, rollout_cfg))
    assert not torch.equal(run_update(0, cfg)[1], run_update(2, cfg)[1])


# ---- update: what it logs ---------------------------------------------------------------------------------
def logged_update(cfg, ref_model=None, nan_loss=False):
    """One gcpo.update (lr 0) on 8 sampled responses of uneven lengths, some first tokens marked key; returns the
    logged metrics, the batch, and per micro-batch call: (the reference model it got, its valid-token count, its
    metrics, w, logp, the rows). nan_loss: every loss is NaN, so every gradient is non-finite."""
    model, batch = handmade_batch(n=8)
    batch["key_mask"] = torch.zeros_like(batch["mask"], dtype=torch.bool)
    batch["key_mask"][::3, 0] = True
    batch["row"] = torch.arange(8)
    calls, original = [], gcpo.micro_batch_loss

    def spy(model, ref_model_, b, cfg, scheme, total_tokens, total_seqs, generator=None):
        loss, m, w, logp = original(model, ref_model_, b, cfg, scheme, total_tokens, total_seqs, generator)
        calls.append((ref_model_, b["mask"].sum().item(), m, w, logp, b["row"].clone()))
        return (loss * float("nan") if nan_loss else loss), m, w, logp

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gcpo, "micro_batch_loss", spy)
        metrics = gcpo.update(model, RecordingOptimizer(model.parameters()), ref_model, batch, cfg, step=0)
    return metrics, batch, calls


def test_update_logs_the_mean_over_its_steps_of_each_steps_token_weighted_loss_terms():
    """2 epochs × 2 mini-batches of 4 one-row micro-batches: each logged loss term is the mean over the 4
    optimizer steps of that step's token-weighted mean over its micro-batches (written here as a plain average of
    per-step averages, not as update's running share)."""
    cfg = config("gcpo", epochs=2, minibatches=2, micro_batch=1)
    metrics, batch, calls = logged_update(cfg)
    assert len(calls) == 16 and len({c[1] for c in calls}) > 1  # uneven token counts tell the weightings apart
    keys = calls[0][2].keys()
    assert keys and all(k in metrics for k in keys)
    for k in keys:
        per_step = []
        for s in range(4):
            step = calls[4 * s : 4 * s + 4]
            tokens = np.array([c[1] for c in step], dtype=np.float64)
            values = np.array([float(c[2][k]) for c in step], dtype=np.float64)
            per_step.append((values * tokens).sum() / tokens.sum())
        assert metrics[k] == pytest.approx(np.mean(per_step), rel=1e-9, abs=1e-12), k
    assert metrics["skipped_steps"] == 0
    valid = batch["mask"].bool().numpy()
    assert metrics["key_token_frac"] == pytest.approx((batch["key_mask"].numpy() & valid).sum() / valid.sum())
    assert 0 < metrics["key_token_frac"] < 1


def test_update_counts_every_skipped_step_and_hands_the_reference_to_every_micro_batch():
    cfg = config("gcpo", epochs=2, minibatches=2, micro_batch=2)
    ref = PromptLookupLM(POLICY)
    metrics, _, calls = logged_update(cfg, ref_model=ref, nan_loss=True)
    assert metrics["skipped_steps"] == 4  # every one of the 2 × 2 optimizer steps had a NaN gradient
    assert all(c[0] is ref for c in calls)


def test_update_logs_the_weight_statistics_and_the_token_nll_of_every_response_it_trained_on():
    """weight_max, …, neglogp_high_w / neglogp_low_w over the responses of the whole update, from the weights and
    log-probs its micro-batches used (the row order of the concatenation does not matter to any of them)."""
    cfg = config("gcpo", epochs=1, minibatches=2, micro_batch=1)
    metrics, batch, calls = logged_update(cfg)
    w = torch.cat([c[3] for c in calls])
    logp = torch.cat([c[4] for c in calls])
    rows = torch.cat([c[5] for c in calls])
    want = weight_metrics(w, batch["key_mask"][rows], batch["mask"][rows], logp)
    assert {"neglogp_high_w", "neglogp_low_w", "weight_max"} <= want.keys()
    for k, v in want.items():
        assert metrics[k] == pytest.approx(v, rel=1e-9, nan_ok=True), k


# ---- the quality bootstrap --------------------------------------------------------------------------------
def test_quality_bootstrap_against_every_resample_of_two_prompts():
    """2 prompts of G = 2: the 4 equally likely prompt resamples (0,0), (0,1), (1,0), (1,1) give the AUC
    0.4, 17/30, 17/30, 0.9 (NaN left out) and the share 4/12, 7/14, 7/14, 10/16; each extreme has probability
    1/4, so the 2.5% and 97.5% points of 1,000 draws are the smallest and the largest. The estimates are the
    whole sample's: AUC 17/30, share 7/14."""
    auc = np.array([0.2, 0.6, 0.9, np.nan])
    on_key, total = np.array([1.0, 1.0, 3.0, 2.0]), np.array([4.0, 2.0, 4.0, 4.0])
    out = bootstrap(auc, on_key, total, G=2)
    assert out["auc"] == pytest.approx((17 / 30, 0.4, 0.9), rel=1e-12)
    assert out["share"] == pytest.approx((7 / 14, 4 / 12, 10 / 16), rel=1e-12)


def test_quality_bootstrap_estimates_over_the_whole_prompts_it_resamples():
    """A trailing partial group (5 responses, G = 2) is no prompt: the point estimates use the 2 whole prompts
    that the intervals resample, as if the fifth response were not there."""
    auc = np.array([0.2, 0.6, 0.9, np.nan, 0.0])
    on_key, total = np.array([1.0, 1.0, 3.0, 2.0, 9.0]), np.array([4.0, 2.0, 4.0, 4.0, 9.0])
    out = bootstrap(auc, on_key, total, G=2)
    assert out["auc"][0] == pytest.approx(17 / 30, rel=1e-12) and out["share"][0] == pytest.approx(7 / 14, rel=1e-12)
    assert out == bootstrap(auc[:4], on_key[:4], total[:4], G=2)


def test_quality_bootstrap_of_an_undefined_auc_is_nan_without_warnings():
    """No response with both kinds of token: the AUC's estimate and interval are NaN, with no numpy
    'Mean of empty slice' / 'All-NaN slice' warning; one prompt without an AUC only drops the resamples made of
    it alone (the other prompt's AUC is 0.5 in every remaining resample)."""
    on_key, total = np.array([1.0, 0.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = bootstrap(np.full(4, np.nan), on_key, total, G=2)
        half = bootstrap(np.array([np.nan, np.nan, 0.3, 0.7]), on_key, total, G=2)
    assert all(np.isnan(x) for x in none["auc"]) and none["share"][0] == pytest.approx(3 / 8)
    assert half["auc"] == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)


# ---- load_tokenizer -----------------------------------------------------------------------------------------
def test_load_tokenizer_pads_with_eos_only_when_there_is_no_pad_token(tmp_path):
    """A tokenizer saved without a pad token (as GPT-2) gets EOS as its pad; one with its own pad token keeps it;
    both pad on the left."""
    bare = stand_in_tokenizer(300)
    bare.pad_token = None
    bare.save_pretrained(tmp_path / "bare")
    own = stand_in_tokenizer(300)
    own.add_special_tokens({"pad_token": "<pad>"})
    own.save_pretrained(tmp_path / "own")
    tok = loading.load_tokenizer(str(tmp_path / "bare"))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>" and tok.padding_side == "left"
    tok = loading.load_tokenizer(str(tmp_path / "own"))
    assert tok.pad_token == "<pad>" and tok.eos_token == "<|endoftext|>" and tok.padding_side == "left"
    assert tok.pad_token_id != tok.eos_token_id


# ---- GCPOTrainer._rollout_logps -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trl_tiny(tmp_path_factory):
    pytest.importorskip("trl", reason="optional extra: pip install -r requirements-trl.txt")
    from toy_envs.text import save_stand_in_gpt2

    return save_stand_in_gpt2(str(tmp_path_factory.mktemp("tiny_trl_core")))


def test_rollout_logps_are_a_plain_forwards_in_chunks_of_the_batch_size(trl_tiny, tmp_path):
    """The rollout log-probs equal one ordinary forward's log-softmax at the completion tokens; the entropy is
    computed only when asked (then H = −Σ π log π); the forward runs in chunks of batch_size rows (8 rows, 3 at a
    time: 3, 3, 2), whole when none is given."""
    from gcpo_trl import GCPOTrainer
    from tests.test_trl import dataset, generated_batch, plain_logps, trainer

    data = dataset()
    t = trainer(GCPOTrainer, trl_tiny, tmp_path, data)
    out = generated_batch(t, data)
    t.model.eval()
    with torch.no_grad():
        want, want_h = plain_logps(
            t.model, out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"], entropy=True
        )
    m = out["completion_mask"].bool()
    sizes = []
    hook = t.model.register_forward_pre_hook(
        lambda mod, args, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        logp, entropy = t._rollout_logps(out)
        assert entropy is None and sizes == [8]
        sizes.clear()
        chunked, chunked_h = t._rollout_logps(out, batch_size=3, compute_entropy=True)
        assert sizes == [3, 3, 2]
    finally:
        hook.remove()
    torch.testing.assert_close(logp[m], want[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked[m], want[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked_h[m], want_h[m], rtol=1e-5, atol=1e-5)


def test_rollout_logps_restore_gradient_checkpointing_with_the_configured_kwargs(trl_tiny, tmp_path):
    """The no-grad rollout forward turns gradient checkpointing off and back on with the trainer's
    gradient_checkpointing_kwargs (use_reentrant=True here, not transformers' default False)."""
    from gcpo_trl import GCPOTrainer
    from tests.test_trl import dataset, generated_batch, trainer

    data = dataset()
    t = trainer(GCPOTrainer, trl_tiny, tmp_path, data)
    out = generated_batch(t, data)
    kwargs = {"use_reentrant": True}
    t.args.gradient_checkpointing_kwargs = kwargs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames it activation checkpointing
        t.model.gradient_checkpointing_enable(kwargs)
        t._rollout_logps(out)
    assert t.model.is_gradient_checkpointing
    funcs = [m._gradient_checkpointing_func for m in t.model.modules() if hasattr(m, "_gradient_checkpointing_func")]
    assert funcs and all(f.keywords == kwargs for f in funcs), [getattr(f, "keywords", f) for f in funcs]


# ---- from_pretrained: which path a name takes, and the one-line error ---------------------------------------------


class FakePretrained:
    """Stands in for a transformers class: records each from_pretrained call and answers from `outcomes`, a list
    of return values or exceptions taken in order."""

    calls: list = []
    outcomes: list = []

    @classmethod
    def from_pretrained(cls, name, **kw):
        cls.calls.append((name, kw))
        out = cls.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


def _load(name, *outcomes, monkeypatch, reachable=False):
    FakePretrained.calls, FakePretrained.outcomes = [], list(outcomes)
    monkeypatch.setattr(loading, "hub_reachable", lambda: reachable)
    return loading.from_pretrained(FakePretrained, name), FakePretrained.calls


def test_a_local_directory_loads_directly_and_a_hub_name_tries_the_cache_first(tmp_path, monkeypatch):
    """A name starting with '.', '/' or '~', or naming an existing directory, is read from disk (expanded) in one
    call; any other name is tried in the local cache only (offline it fails in seconds), then on the hub if the
    hub answers."""
    (tmp_path / "home" / "m").mkdir(parents=True)
    (tmp_path / "rel").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for name, path in [
        (str(tmp_path / "rel"), str(tmp_path / "rel")),
        ("./rel", "./rel"),
        ("~/m", str(tmp_path / "home" / "m")),
        ("rel", "rel"),  # an existing directory without a leading '.' is local too
    ]:
        assert _load(name, "model", monkeypatch=monkeypatch) == ("model", [(path, {})])
    assert _load("gpt2", "cached", monkeypatch=monkeypatch) == ("cached", [("gpt2", {"local_files_only": True})])
    missing = OSError("not cached")
    got = _load("gpt2", missing, "downloaded", reachable=True, monkeypatch=monkeypatch)
    assert got == ("downloaded", [("gpt2", {"local_files_only": True}), ("gpt2", {})])
    for name in ("./nope", "/nope/at/all", "~/nope"):
        with pytest.raises(ValueError, match=f"^model directory '{re.escape(name)}' does not exist; pass"):
            _load(name, monkeypatch=monkeypatch)


def test_a_failed_load_is_one_line_naming_the_first_line_of_the_cause(tmp_path, monkeypatch):
    """Offline and not cached: the hub is not tried and the error says so; any other OSError or ValueError gives
    its first line (without its final period, not its leading one) or, when it has no message, its type."""
    with pytest.raises(ValueError) as err:
        _load("gpt2", OSError("not cached"), monkeypatch=monkeypatch)
    assert str(err.value).startswith(
        "cannot load 'gpt2' with FakePretrained: 'gpt2' is not in the local Hugging Face cache and the hub cannot "
        "be reached (offline?). A hub name (e.g. gpt2) downloads once"
    )
    assert len(FakePretrained.calls) == 1
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^cannot load '\./m' with FakePretrained: \.bad vocab size MAX\. A hub name"):
        _load("./m", ValueError(".bad vocab size MAX.\nsecond line"), monkeypatch=monkeypatch)
    with pytest.raises(ValueError, match=r"^cannot load '\./m' with FakePretrained: OSError\. A hub name"):
        _load("./m", OSError(" "), monkeypatch=monkeypatch)


# ---- micro_batch_loss: every loss option reaches policy_loss -----------------------------------------------
REF = POLICY + torch.randn(POLICY.shape, generator=torch.Generator().manual_seed(2))
LOSS_OPTIONS = [  # (the base options, one option at another value than its default)
    ({}, dict(eps_low=0.05)),
    ({}, dict(eps_high=0.05)),
    ({}, dict(dual_clip=1.5)),
    ({}, dict(surrogate="log_hinge", dual_clip=0)),
    ({}, dict(entropy_penalty=0.05)),
    ({}, dict(loss_agg="seq-mean-token-sum-norm", max_new_tokens=5)),
    (dict(beta=0.1), dict(kl_estimator="k1")),
    (dict(beta=0.1), dict(kl_reweight=True)),
    (dict(beta=0.1), dict(temperature=0.7)),
]


@pytest.mark.parametrize("base, option", LOSS_OPTIONS)
def test_micro_batch_loss_hands_each_loss_option_to_policy_loss(base, option):
    """micro_batch_loss is policy_loss on log-probs taken at cfg.temperature (the reference's too) with the run's
    clip, surrogate, aggregation, KL and entropy options: equal to policy_loss called with them written out, on a
    batch whose ratios reach both clips and the dual clip, and different from the loss without the option."""
    model, b = handmade_batch()
    offsets = torch.tensor([-1.5, -0.3, 0.0, 0.3, 1.5])[torch.arange(b["mask"].numel()) % 5].view_as(b["logp_old"])
    b["logp_old"] = b["logp_old"] + offsets * b["mask"]

    def loss_of(options):
        cfg = config("gcpo", **options)
        ref = PromptLookupLM(REF).requires_grad_(False) if cfg.beta else None
        loss, _, w, _ = gcpo.micro_batch_loss(
            model, ref, b, cfg, gcpo.credit_scheme(cfg), b["mask"].sum(), len(b["mask"]), torch.Generator()
        )
        return loss.item(), w, cfg

    got, w, cfg = loss_of({**base, **option})
    T = cfg.temperature
    logp = (POLICY / T).log_softmax(-1)[b["prompts"][:, 2]].gather(1, b["responses"])
    ref_logp = (REF / T).log_softmax(-1)[b["prompts"][:, 2]].gather(1, b["responses"]) if cfg.beta else None
    want, _ = gcpo.policy_loss(
        logp, b["logp_old"], b["adv"][:, None] * w, b["mask"], eps_low=cfg.eps_low, eps_high=cfg.eps_high,
        dual_clip=cfg.dual_clip, loss_agg=cfg.loss_agg, total_tokens=b["mask"].sum(), total_seqs=len(b["mask"]),
        max_len=cfg.max_new_tokens, ref_logp=ref_logp, beta=cfg.beta, kl_estimator=cfg.kl_estimator,
        kl_weights=w if cfg.kl_reweight else None, entropy_penalty=cfg.entropy_penalty, surrogate=cfg.surrogate,
    )  # fmt: skip
    assert got == pytest.approx(want.item(), rel=1e-5)
    assert got != pytest.approx(loss_of(base)[0], rel=1e-4)


def test_micro_batch_loss_hands_its_generator_to_a_random_scheme():
    """The shuffled control draws its permutations from the generator micro_batch_loss is given, never from
    torch's global one: the same generator seed gives the same weights whatever the global seed."""
    model, b = handmade_batch()
    cfg = config("gcpo", credit="shuffled")

    def weights(global_seed, seed):
        torch.manual_seed(global_seed)
        gen = torch.Generator().manual_seed(seed)
        return gcpo.micro_batch_loss(model, None, b, cfg, gcpo.credit_scheme(cfg), b["mask"].sum(), 8, gen)[2]

    assert torch.equal(weights(0, 5), weights(1, 5))
    assert not torch.equal(weights(0, 5), weights(0, 6))


# ---- warm_start by hand -----------------------------------------------------------------------------------
def test_warm_start_is_adamw_on_the_mean_token_nll_of_seeded_demonstrations():
    """Each step draws warm_batch demonstrations from default_rng([seed, 7]) at the run's demo_accuracy and
    null_prob, takes the mean negative log-likelihood over the response tokens that are not padding and steps AdamW
    at warm_lr; warm_start returns the last step's loss. warm_steps=0 changes nothing and returns NaN."""
    import copy
    import math

    task = gcpo.build_task(gcpo.make_config("gcpo", env="topic"))[0]
    assert (task.demonstrations(5, np.random.default_rng([5, 7]), 0.3, 0.6)[1] == task.pad_id).any()  # padded
    cfg = gcpo.make_config(
        "gcpo", env="topic", warm_steps=2, warm_batch=5, warm_lr=0.02, demo_accuracy=0.3, null_prob=0.6, seed=5,
        n_layer=1, n_embd=16, n_head=2, device="cpu",
    )  # fmt: skip
    torch.manual_seed(0)
    model = gcpo.build_policy(cfg, task.vocab_size, 40, {})
    twin = copy.deepcopy(model)
    assert math.isnan(gcpo.warm_start(model, task, gcpo.make_config("gcpo", env="topic", warm_steps=0)))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))

    got = gcpo.warm_start(model, task, cfg)
    rng, opt = np.random.default_rng([5, 7]), torch.optim.AdamW(twin.parameters(), lr=0.02)
    for _ in range(2):
        prompts_np, completions_np = task.demonstrations(5, rng, 0.3, 0.6)
        prompts, prompt_mask = gcpo.prompt_tensors(task, prompts_np, "cpu")
        completions = torch.as_tensor(completions_np)
        logp, _ = gcpo.response_logprobs(twin, prompts, prompt_mask, completions)  # (checked on its own elsewhere)
        loss = -logp[completions != task.pad_id].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert got == pytest.approx(loss.item(), rel=1e-4)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert math.isfinite(
        gcpo.warm_start(model, task, gcpo.make_config("gcpo", env="topic", warm_steps=1, device="cpu"))
    )


def test_update_logs_a_one_token_mini_batchs_own_loss_terms():
    """The logged loss terms are token-weighted over the update: a mini-batch of one valid token logs that token's
    terms at full weight."""
    model, b = handmade_batch(n=1)
    b["mask"] = torch.zeros_like(b["mask"])
    b["mask"][0, 0] = 1
    cfg = config("gcpo")
    _, want, *_ = gcpo.micro_batch_loss(model, None, b, cfg, gcpo.credit_scheme(cfg), b["mask"].sum(), 1)
    got = gcpo.update(model, RecordingOptimizer(model.parameters()), None, b, cfg, step=0)
    assert got["pg_loss"] == pytest.approx(want["pg_loss"]) and got["entropy"] == pytest.approx(want["entropy"]) != 0


# ---- main: what the command line prints ---------------------------------------------------------------------
@pytest.mark.parametrize("show", [0, 1, 2])
def test_main_prints_the_summary_with_the_schemes_name_then_show_samples(show, capsys):
    """The summary line names the credit scheme as the scheme itself says (an oracle is called one), and --show N
    prints N sampled responses with their weights after it (none for 0)."""
    tiny = ["--steps", "1", "--warm-steps", "0", "--batch-prompts", "2", "--group-size", "2", "--eval-prompts", "2"]
    tiny += ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--credit", "oracle", "--show", str(show)]
    gcpo.main(tiny + ["--out", ""])
    out = capsys.readouterr().out
    assert out.startswith("gcpo, oracle (an oracle: it reads the task's key tokens) credit, on needle")
    assert out.count("\nprompt: ") == out.count("\nweights: ") == show
    assert show or not out.endswith("\n\n")  # --show 0 prints nothing after the summary, not even a blank line


# ---- small pure pieces: by hand ----------------------------------------------------------------------------------
def test_sorted_ranks_give_ties_the_mean_of_their_ranks_by_hand():
    scores = torch.tensor([[0.5, 0.2, 0.5, 0.9, 0.5], [0.3, 0.3, 0.1, 0.7, 0.3]])
    valid = torch.tensor([[True] * 5, [True, True, True, True, False]])
    sorted_s, order, ranks = gcpo.sorted_ranks(scores, valid)
    assert sorted_s[0].tolist() == pytest.approx([0.2, 0.5, 0.5, 0.5, 0.9])
    assert ranks[0].tolist() == [1.0, 3.0, 3.0, 3.0, 5.0]  # three tied at ranks 2, 3, 4
    assert ranks[1, :4].tolist() == [1.0, 2.5, 2.5, 4.0]  # two valid 0.3s at ranks 2, 3; the padded 0.3 sorts last
    assert torch.equal(scores.gather(1, order)[0], sorted_s[0])


def test_response_logprobs_divide_the_logits_by_any_temperature_but_one():
    model, b = handmade_batch()
    for T in (0.5, 1.0, 2.0):
        logp, _ = gcpo.response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"], T)
        want = (POLICY.double() / T).log_softmax(-1)[b["prompts"][:, 2]].gather(1, b["responses"])
        torch.testing.assert_close(logp.double(), want, rtol=1e-5, atol=1e-6)


def test_response_logprobs_of_no_responses_are_empty_and_full_only_when_asked():
    model = small_policy()
    prompts, responses = torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long)
    logp, logp_all = gcpo.response_logprobs(model, prompts, torch.ones_like(prompts), responses)
    assert logp.shape == (0, 3) and logp_all is None
    _, logp_all = gcpo.response_logprobs(model, prompts, torch.ones_like(prompts), responses, full=True)
    assert logp_all.shape == (0, 3, 11)


def test_a_scheme_that_does_not_name_the_mask_still_has_its_weights_checked_against_it():
    """credit_weights hands schemes.call the batch's mask whatever the scheme names: weights of another shape than
    the mask are a one-line error, weights of its shape pass."""
    model, b = handmade_batch()
    cfg = config("gcpo")

    def from_logp(logp):
        return torch.ones_like(logp)

    def wrong(logp):
        return torch.ones(2, 2)

    assert torch.equal(gcpo.credit_weights(model, b, cfg, from_logp), torch.ones(b["mask"].shape))
    with pytest.raises(ValueError, match="the mask's shape"):
        gcpo.credit_weights(model, b, cfg, wrong)


def test_build_policy_tiny_has_the_asked_positions_no_dropout_the_fused_gelu_and_the_tasks_special_ids():
    """The tiny GPT-2: n_positions as asked (what check_positions reads), no dropout (so training mode gives
    eval mode's forward, and ρ ≡ 1 on the first mini-batch), the fused tanh-GELU, and the task's BOS/EOS/pad ids."""
    cfg = gcpo.make_config("gcpo", n_layer=1, n_embd=16, n_head=2)
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = gcpo.build_policy(cfg, 11, 37, special).train()
    c = model.config
    assert (c.vocab_size, c.n_positions, c.n_layer, c.n_embd, c.n_head) == (11, 37, 1, 16, 2)
    assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (1, 2, 3)
    assert c.activation_function == "gelu_pytorch_tanh"
    ids = torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.train()(ids).logits, model.eval()(ids).logits)


@pytest.mark.parametrize("u, want", [(1.0, [2, 3, 1]), (0.0, [0, 0, 1])])
def test_draw_never_returns_a_token_without_mass_even_at_the_ends_of_u(u, want, monkeypatch):
    """u = 1 (where float rounding of u·cdf_V can land) takes the last token that has mass, not one past it or a
    zero-probability one after it; u = 0 takes the first token that has mass."""
    probs = torch.tensor([[0.2, 0.3, 0.5, 0.0, 0.0], [0.1, 0.0, 0.0, 0.9, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, u, dtype=kw.get("dtype")))
    assert gcpo.draw(probs).tolist() == want


def test_train_builds_what_its_options_ask_and_logs_the_warm_start(tmp_path):
    """One short run with a frozen reference (beta > 0), a response cap past the demonstrations' width and a chosen
    learning rate: the model has positions for prompt + cap and carries the task's special ids into its saved
    config; the reference stays where the warm start left it (its KL to the policy, which the entropy term moves
    after the first mini-batch, is positive); the first metrics line holds the warm-start loss; and the learning
    rate is the one asked for."""
    import json

    def run(lr, out):
        cfg = gcpo.make_config(
            "gcpo", steps=1, warm_steps=2, batch_prompts=2, group_size=4, eval_prompts=2, n_layer=1, n_embd=16,
            n_head=2, beta=0.5, minibatches=2, max_new_tokens=12, lr=lr, out=str(out), seed=3, dynamic_sampling=False,
            entropy_penalty=0.1,
        )  # fmt: skip
        return gcpo.train(cfg, progress=False)

    result = run(0.05, tmp_path / "a")
    task, model = result["task"], result["model"]
    assert task.demo_len < task.prompt_len + 12 == model.config.n_positions
    saved = json.load(open(tmp_path / "a" / "model" / "config.json"))
    assert (saved["bos_token_id"], saved["eos_token_id"], saved["pad_token_id"]) == (
        task.bos_id,
        task.eos_id,
        task.pad_id,
    )
    lines = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert lines[0]["warm_loss"] == result["warm_loss"] > 0
    assert result["history"][0]["kl_ref"] > 0
    slow = run(1e-5, tmp_path / "b")["model"]
    moved = [(p - q).abs().max().item() for p, q in zip(model.parameters(), slow.parameters())]
    assert max(moved) > 1e-3  # the same run but for lr: the parameters end apart


def test_a_step_where_every_group_is_flat_is_logged_as_one_skipped_step():
    """No warm start: the tiny model never finds the needle, every group's rewards are equal, so the step has
    nothing to learn from; it is logged with skipped_steps = 1 and no update's metrics."""
    cfg = gcpo.make_config(
        "gcpo", steps=2, warm_steps=0, batch_prompts=2, group_size=2, eval_prompts=2, n_layer=1, n_embd=16, n_head=2,
        max_sampling_tries=1,
    )  # fmt: skip
    history = gcpo.train(cfg, progress=False)["history"]
    assert all(h["reward_mean"] == 0 for h in history)
    assert [h["skipped_steps"] for h in history] == [1, 1] and not any("grad_norm" in h for h in history)
