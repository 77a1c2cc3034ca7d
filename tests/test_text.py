"""Text tasks and the pretrained-model path, offline: exact rewards and key masks on hand-written completions
(with the built-in word tokenizer and with a byte-level BPE), and the real `--model DIR` loading path on a
tiny GPT-2 that conftest builds and saves."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import save_tiny_gpt2

import gcpo
import toy_envs
from gcpo_support import loading, render
from tests.helpers import contrast_weights
from toy_envs.text import token_spans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bpe(tiny_gpt2):
    return loading.load_tokenizer(tiny_gpt2)


def completion(task, pieces, eos_after=None, width=None):
    """Token ids of the text pieces, each encoded on its own (so the test knows which tokens form which
    piece), optional EOS after piece `eos_after`, pad to `width`. Returns (ids (1, T), piece index per token)."""
    ids, owner = [], []
    for k, piece in enumerate(pieces):
        enc = task.tokenizer.encode(piece, add_special_tokens=False)
        ids += enc
        owner += [k] * len(enc)
        if eos_after == k:
            ids.append(task.eos_id)
            owner.append(-1)
    width = width or len(ids)
    ids += [task.pad_id] * (width - len(ids))
    owner += [-1] * (width - len(owner))
    return np.array([ids]), np.array(owner)


def prompt_for(task, label):
    return task._ids[(label, "prompt")][None]


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_topic_rewards_and_key_masks_by_hand(tokenizer, bpe):
    t = toy_envs.make_task("topic", tokenizer=None if tokenizer == "word" else bpe)
    ocean = prompt_for(t, "ocean")
    cases = [  # pieces, EOS after piece k (None: none), expected reward, pieces that are hits
        ([" the", " whale", " and", " the", " coral", "."], 5, 2 / 3, {1, 4}),
        ([" sea", " wave", " fish", " ship", "."], 4, 1.0, {0, 1, 2, 3}),  # 4 distinct words, capped at 3
        ([" fish", " fish", " fish"], None, 1 / 3, {0, 1, 2}),  # one distinct word, three key occurrences
        ([" the", " moon", " and", " the", " stars"], 4, 0.0, set()),  # another topic's words: no hit
        ([" the", " sea"], 0, 0.0, set()),  # EOS after "the": the hit after EOS does not count
    ]
    for pieces, eos_after, reward, hits in cases:
        ids, owner = completion(t, pieces, eos_after, width=12)
        score = t.score(ocean, ids)
        assert score.reward[0] == pytest.approx(reward), pieces
        assert score.key_mask[0].tolist() == [k in hits for k in owner], pieces
        assert score.parts["hits"][0] == len(hits)


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_sentiment_rewards_and_key_masks_by_hand(tokenizer, bpe):
    t = toy_envs.make_task("sentiment", tokenizer=None if tokenizer == "word" else bpe)
    pieces = [" a", " great", " film", ",", " great", " fun"]  # 3 positive words: net +3, clipped to +2
    ids, owner = completion(t, pieces, eos_after=5)
    assert t.score(prompt_for(t, "positive"), ids).reward[0] == 1.0
    assert t.score(prompt_for(t, "negative"), ids).reward[0] == -1.0
    mixed = [" good", " and", " boring", " and", " dull"]  # net −1 for positive
    ids, owner = completion(t, mixed, eos_after=4)
    score = t.score(prompt_for(t, "positive"), ids)
    assert score.reward[0] == -0.5
    assert score.key_mask[0].tolist() == [k in {0, 2, 4} for k in owner]  # both lexicons are key


def test_key_tokens_are_those_overlapping_a_hit_not_those_touching_it(bpe):
    """A hit word right after punctuation, with no space: the token that ends where the word starts and the one
    that starts where it ends share no character with it, so only the word's own tokens are key."""
    t = toy_envs.make_task("topic", tokenizer=bpe)
    ids, owner = completion(t, [" the", ",", "sea", ",", "whale", "."], eos_after=5, width=12)
    assert t.response_text(ids[0])[0] == " the,sea,whale."
    score = t.score(prompt_for(t, "ocean"), ids)
    assert score.reward[0] == pytest.approx(2 / 3)
    assert score.key_mask[0].tolist() == [k in {2, 4} for k in owner]


def test_require_eos_and_noise():
    t = toy_envs.make_task("topic", require_eos=True, reward_noise=0.5)
    ids, _ = completion(t, [" sea", " wave", " fish"])  # no EOS
    score = t.score(prompt_for(t, "ocean"), ids, rng=np.random.default_rng(0))
    assert score.parts["clean_reward"][0] == 0.0 and score.parts["ended"][0] == 0.0
    with pytest.raises(ValueError, match="pass rng"):
        t.score(prompt_for(t, "ocean"), ids)


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_prompts_negatives_and_padding(tokenizer, bpe):
    for name, expected in [
        ("topic", {"notopic": "Here is a sentence:", "other": "Here is a sentence about the space:"}),
        (
            "sentiment",
            {"opposite": "Here is a negative review of the film:", "neutral": "Here is a review of the film:"},
        ),
    ]:
        t = toy_envs.make_task(name, tokenizer=None if tokenizer == "word" else bpe)
        label = "ocean" if name == "topic" else "positive"
        prompt = prompt_for(t, label)
        for kind, text in expected.items():
            neg = t.negative_prompts(prompt, kind)
            mask = t.prompt_mask(neg)[0]
            n_real = len(t.tokenizer.encode(text, add_special_tokens=False))
            assert mask.tolist() == [0] * (t.prompt_len - n_real) + [1] * n_real  # left padding only
            assert t.prompt_string(neg[0]).lower() == text.lower()
        assert t.negative_prompts(prompt)[0].tolist() == t.negative_prompts(prompt, t.negative_kinds[0])[0].tolist()
        with pytest.raises(ValueError, match="no negative prompt"):
            t.negative_prompts(prompt, "null")
        with pytest.raises(ValueError, match="not one of the task's prompts"):
            t.score(t.negative_prompts(prompt, t.unconditional), np.zeros((1, 3), dtype=np.int64))


@pytest.mark.parametrize("name", ["topic", "sentiment"])
@pytest.mark.parametrize("accuracy", [0.2, 0.7])
def test_text_demonstrations(name, accuracy):
    t = toy_envs.make_task(name)
    n = 2000
    prompts, completions = t.demonstrations(n, np.random.default_rng(0), accuracy=accuracy, null_prob=0.0)
    perfect = (t.score(prompts, completions).reward == 1.0).mean()
    assert abs(perfect - accuracy) < 4 * np.sqrt(accuracy * (1 - accuracy) / n)
    assert ((completions == t.eos_id).sum(1) == 1).all()  # every demonstration ends
    dp, _ = t.demonstrations(n, np.random.default_rng(1), null_prob=0.25)
    uncond = t._ids[(t.labels[0], t.unconditional)]
    assert abs((dp == uncond).all(1).mean() - 0.25) < 0.05


def test_word_tokenizer():
    tok = toy_envs.WordTokenizer(["the", "sea", "."])
    ids = tok.encode("The sea.")
    assert tok.decode(ids) == "the sea." and len(tok) == 5
    assert token_spans(tok, ids) == [(0, 3), (3, 7), (7, 8)]  # "the", " sea", "."
    with pytest.raises(ValueError, match="outside"):
        tok.encode("the whale")


def test_tokenizer_without_eos(tmp_path):
    path = save_tiny_gpt2(tmp_path / "noeos", eos=False)
    with pytest.raises(ValueError, match="no EOS"):
        loading.load_tokenizer(path)
    tok = toy_envs.WordTokenizer(["a"])
    tok.eos_token_id = None
    with pytest.raises(ValueError, match="no EOS"):
        toy_envs.make_task("topic", tokenizer=tok)


def test_model_vocab_smaller_than_tokenizer(tmp_path):
    path = save_tiny_gpt2(tmp_path / "small", vocab_size=100)
    with pytest.raises(ValueError, match="has 100 tokens but the task needs"):
        gcpo.train(gcpo.make_config("gcpo", model=path, env="topic", steps=1), progress=False)


def test_unknown_hub_name_is_one_clear_error():
    with pytest.raises(ValueError, match="cannot load 'no-such-model-zzz'.*needs internet the first time") as err:
        loading.load_tokenizer("no-such-model-zzz")  # the hub is off in tests: fails fast, no download
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_missing_model_directory_is_one_clear_error():
    with pytest.raises(ValueError, match="does not exist"):
        loading.load_tokenizer("./no/such/model")
    cmd = [sys.executable, os.path.join(ROOT, "gcpo.py"), "--model", "./no/such/model", "--env", "topic"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode != 0 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def small_cfg(model, **kw):
    return gcpo.make_config(
        "gcpo",
        model=model,
        env="topic",
        batch_prompts=3,
        group_size=4,
        eval_prompts=4,
        max_new_tokens=10,
        device="cpu",
        **kw,
    )


@pytest.mark.cpu_sensitive
def test_pretrained_path_trains(tiny_gpt2, tmp_path):
    """The real loading path: from_pretrained on a saved model and tokenizer, a few GCPO steps that change the
    parameters, then save_pretrained of both and a reload."""
    before = {
        k: v.clone()
        for k, v in loading.from_pretrained(__import__("transformers").AutoModelForCausalLM, tiny_gpt2)
        .state_dict()
        .items()
    }
    cfg = small_cfg(
        tiny_gpt2, steps=3, lr=1e-2, dynamic_sampling=False, out=str(tmp_path / "run"), task_args="reward_noise=0.1"
    )  # noisy rewards: nonzero advantages even for a random model
    result = gcpo.train(cfg, progress=False)
    assert result["cfg"].warm_steps == 0 and result["cfg"].negative == "notopic"  # pretrained: no warm start
    after = result["model"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for h in result["history"]:
        assert np.isfinite(h["pg_loss"]) and 0 < h["grad_norm"] < float("inf") and h["skipped_steps"] == 0
    reloaded = loading.load_tokenizer(str(tmp_path / "run" / "model"))  # tokenizer saved beside the weights
    assert len(reloaded) == len(loading.load_tokenizer(tiny_gpt2))


def test_pretrained_rollout_alignment(tiny_gpt2):
    """Log-probs finite and equal to a full forward; weights one per response token; EOS and padding right."""
    cfg = small_cfg(tiny_gpt2, steps=0)
    task, tokenizer = loading.build_task(cfg)
    cfg = gcpo.resolve(cfg, task)
    assert tokenizer.padding_side == "left" and task.pad_id == tokenizer.pad_token_id == tokenizer.eos_token_id
    model = gcpo.build_policy(cfg, task.vocab_size, 64, {}).eval()
    batch, _ = gcpo.rollout(model, task, cfg, step=0)
    responses, mask = batch["responses"], batch["mask"]
    assert (batch["neg_mask"] == 0).any()  # the negative prompt is shorter: left padding is exercised
    logp, _ = gcpo.response_logprobs(model, batch["prompts"], batch["prompt_mask"], responses)
    valid = mask.bool()
    assert torch.isfinite(logp[valid]).all()
    torch.testing.assert_close(logp[valid], batch["logp_old"][valid], atol=1e-4, rtol=0)
    for row, m in zip(responses, mask):  # mask is 1 up to and including the first EOS, then pad and 0
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any() and (row[n:] == task.pad_id).all()
        eos = (row[:n] == task.eos_id).nonzero()
        assert len(eos) == 0 and n == cfg.max_new_tokens or eos[0].item() == n - 1
    w = contrast_weights(model, batch, cfg)
    assert w.shape == responses.shape and (w[~valid] == 0).all() and torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(1), mask.sum(1).float())  # hist weights: mean 1 over each response


def test_show_sample_with_negative_and_html(tiny_gpt2, tmp_path):
    """The printed and HTML samples show, token by token, the weights the run's scheme gives those responses
    (recomputed here through the training path), in a folder that did not exist."""
    result = gcpo.train(small_cfg(tiny_gpt2, steps=0), progress=False)
    html = tmp_path / "new" / "folder" / "w.html"
    shown = gcpo.sample_credit(result, 2)
    text = render.show_sample(shown, result["task"], result["cfg"], html_path=str(html), color=False)
    assert text.count("negative: Here is a sentence:") == 2 and "\x1b[" not in text
    page = html.read_text()
    assert page.count("negative (notopic)") == 2 and "contrast credit scheme" in page
    cfg, task = result["cfg"], result["task"]
    prompts, pmask = gcpo.prompt_tensors(task, shown["prompts"], "cpu")
    neg, nmask = gcpo.prompt_tensors(task, shown["negatives"], "cpu")
    b = dict(
        prompts=prompts,
        prompt_mask=pmask,
        neg_prompts=neg,
        neg_mask=nmask,
        responses=torch.as_tensor(shown["responses"]),
        mask=torch.as_tensor(shown["mask"]),
    )
    want = contrast_weights(result["model"], b, cfg).numpy()
    np.testing.assert_allclose(shown["weights"], want, atol=1e-6)
    assert (want.std(1) > 0.05).all()  # the weights are not uniform: a negative scored as the prompt would be
    for i in range(2):
        k = int(shown["mask"][i].sum())
        line = next(x for x in text.split("\n\n")[i].splitlines() if x.startswith("weights:"))
        assert line.split()[1 : 1 + k] == [f"{x:.2f}" for x in want[i, :k]]
    titles = [float(t.split('"')[0].split()[0]) for t in page.split('title="w=')[1:]]
    np.testing.assert_allclose(
        titles, np.concatenate([want[i, : int(shown["mask"][i].sum())] for i in range(2)]), atol=1e-3
    )


def test_bfloat16_autocast_smoke(tiny_gpt2):
    """Smoke test: --dtype bfloat16 runs (autocast on CPU); log-probs and weights stay float32."""
    result = gcpo.train(small_cfg(tiny_gpt2, steps=1, dtype="bfloat16", dynamic_sampling=False), progress=False)
    assert all(p.dtype == torch.float32 for p in result["model"].parameters())
    assert np.isfinite(result["history"][0]["pg_loss"])


def test_tiny_text_model_saves_and_reloads(tmp_path):
    """A tiny model trained on a text task saves its WordTokenizer beside the weights; --model DIR reloads
    both and evaluates to the same reward."""
    cfg = gcpo.make_config("gcpo", env="topic", steps=0, warm_steps=5, eval_prompts=8, out=str(tmp_path / "run"))
    first = gcpo.train(cfg, progress=False)
    saved = str(tmp_path / "run" / "model")
    again = gcpo.train(gcpo.make_config("gcpo", env="topic", steps=0, eval_prompts=8, model=saved), progress=False)
    assert isinstance(again["task"].tokenizer, toy_envs.WordTokenizer)
    assert again["reward_before"] == first["reward_before"]


def test_demo_command_on_a_saved_model(tiny_gpt2, tmp_path, capsys):
    """The README's GPT-2 demo command, on the tiny saved model: shaded completions for prompt vs negative."""
    html = tmp_path / "demo.html"
    gcpo.main(
        [
            "--model",
            tiny_gpt2,
            "--env",
            "sentiment",
            "--steps",
            "0",
            "--eval-prompts",
            "4",
            "--show",
            "2",
            "--html",
            str(html),
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "after 0 RL steps" in out and out.count("negative: Here is a") == 2  # the default negative: opposite
    assert html.read_text().count("negative (opposite)") == 2


@pytest.mark.parametrize("name", ["topic", "sentiment"])
def test_text_gym_envs_with_bpe(name, bpe):
    """The registered text envs take any tokenizer; one token per step gives the one-step reward."""
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env_id = toy_envs.ENV_IDS[name]
    check_env(gym.make(env_id, tokenizer=bpe).unwrapped)
    one, tok = gym.make(env_id, tokenizer=bpe), toy_envs.TokenStepEnv(gym.make(env_id, tokenizer=bpe))
    task = one.unwrapped.task
    _, demos = task.demonstrations(4, np.random.default_rng(0), accuracy=1.0, null_prob=0.0)
    for ep, response in enumerate(demos):
        prompt, _ = one.reset(seed=ep)
        tok.reset(seed=ep)
        _, r_one, *_ = one.step(response)
        total, done, t = 0.0, False, 0
        while not done:
            _, r, done, _, _ = tok.step(int(response[t]))
            total, t = total + r, t + 1
        assert total == r_one and t == int((response != task.eos_id).argmin()) + 1  # stops at EOS


# ---- bad input and the machinery shared with the symbolic tasks ------------------------------------------------
@pytest.mark.parametrize("name", ["topic", "sentiment"])
@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens="16"), "max_new_tokens"),
        (dict(max_new_tokens=16.0), "max_new_tokens"),
        (dict(max_new_tokens=True), "max_new_tokens"),
        (dict(reward_noise=float("nan")), "reward_noise"),
        (dict(reward_noise=-1), "reward_noise"),
        (dict(require_eos="no"), "require_eos"),
        (dict(tokenizer="gpt2"), "tokenizer"),
        (dict(max_tokens=8), "max_tokens"),
    ],
)
def test_bad_text_task_arguments(name, kwargs, arg):
    with pytest.raises(ValueError, match=arg) as err:
        toy_envs.make_task(name, **kwargs)
    assert "\n" not in str(err.value) and str(err.value).startswith(name)


@pytest.mark.parametrize("name", ["copy", "topic"])
def test_eos_rule_and_noise_are_the_same_for_text_and_symbolic_tasks(name):
    """Task.score applies both rules for every task: no EOS → 0 (require_eos), then σ·N(0, 1) from rng."""
    t = toy_envs.make_task(name, require_eos=True, reward_noise=0.5)
    rng = np.random.default_rng(0)
    prompts, completions = t.demonstrations(40, rng, accuracy=0.5, null_prob=0.0)
    completions[::2] = np.where(
        completions[::2] == t.eos_id, t.pad_id + 4 if name == "copy" else 5, completions[::2]
    )  # every other response loses its EOS
    score = t.score(prompts, completions, rng=np.random.default_rng(3))
    ended = (completions == t.eos_id).any(1)
    assert not ended[::2].any() and ended[1::2].all()
    assert (score.parts["clean_reward"][~ended] == 0).all() and (score.parts["clean_reward"][ended] > 0).any()
    np.testing.assert_array_equal(
        score.reward, score.parts["clean_reward"] + 0.5 * np.random.default_rng(3).standard_normal(40)
    )
    assert list(score.parts)[-2:] == ["ended", "clean_reward"]


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_text_task_malformed_calls(tokenizer, bpe):
    t = toy_envs.make_task("topic", tokenizer=None if tokenizer == "word" else bpe)
    prompt = prompt_for(t, "ocean")
    ids, _ = completion(t, [" the", " sea"])
    bad_calls = [  # (what the message must say, the call)
        ("one response", lambda: t.response_text(ids)),
        ("outside", lambda: t.decode([t.vocab_size])),
        ("outside", lambda: t.score(prompt, ids + t.vocab_size)),
        ("integer", lambda: t.prompt_mask(prompt * 1.0)),
        ("prompts have", lambda: t.label(prompt[:, 1:])),
        ("not one of", lambda: t.label(ids[:, :1].repeat(t.prompt_len, 1))),
        ("no negative", lambda: t.negative_prompts(prompt, "null")),
    ]
    for match, call in bad_calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert t.response_text(ids[0]) == (decode_text(t, ids[0]), ids.shape[1])


def decode_text(task, ids):
    return task.tokenizer.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)


def test_demo_len_with_a_bpe_tokenizer(bpe):
    t = toy_envs.make_task("sentiment", tokenizer=bpe, max_new_tokens=12)
    prompts, completions = t.demonstrations(32, np.random.default_rng(0))
    assert t.demo_len == prompts.shape[1] + completions.shape[1] == t.prompt_len + 12
