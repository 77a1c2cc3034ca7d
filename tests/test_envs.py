"""toy_envs: exact rewards and key masks on hand-built responses, gymnasium checks, determinism, demos."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import toy_envs
from toy_envs import BOS, EOS, NULL, PAD


@pytest.mark.parametrize("env_id", sorted(toy_envs.ENV_IDS.values()))
def test_check_env_and_render(env_id):
    env = gym.make(env_id, render_mode="ansi")
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated and info["key_mask"].shape == (env.unwrapped.task.max_new_tokens,)
    assert isinstance(env.render(), str)


@pytest.mark.parametrize("name", sorted(toy_envs.TASKS))
def test_reset_is_seeded(name):
    a, b = gym.make(toy_envs.ENV_IDS[name]), gym.make(toy_envs.ENV_IDS[name])
    assert np.array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    t = toy_envs.make_task(name)
    assert np.array_equal(t.sample_prompts(9, np.random.default_rng(1)), t.sample_prompts(9, np.random.default_rng(1)))


def test_needle_by_hand():
    t = toy_envs.make_task("needle", length=4, num_symbols=3, position=2)
    a, b, c = t.sym0, t.sym0 + 1, t.sym0 + 2
    dot = t.filler0
    prompt = np.array([[BOS, t.pos0 + 2, b]])
    cases = {  # response → (reward, key mask)
        (dot, dot, b, dot, EOS): (1.0, [0, 0, 1, 0, 0]),  # perfect
        (b, b, a, b, EOS): (0.0, [0, 0, 1, 0, 0]),  # adversarial: the symbol everywhere but at p
        (EOS, PAD, PAD, PAD, PAD): (0.0, [0, 0, 0, 0, 0]),  # empty: the needle slot never written
        (dot, dot, b, dot, c): (0.0, [0, 0, 1, 0, 0]),  # no EOS (truncated): require_eos scores it 0
    }
    for resp, (reward, key) in cases.items():
        s = t.score(prompt, np.array([resp]))
        assert s.reward[0] == reward and s.key_mask[0].astype(int).tolist() == key
    lenient = toy_envs.make_task("needle", length=4, num_symbols=3, position=2, require_eos=False)
    assert lenient.score(prompt, np.array([[dot, dot, b, dot, c]])).reward[0] == 1.0


def test_copy_and_reverse_by_hand():
    t = toy_envs.make_task("copy", length=3, num_symbols=4)
    p = np.array([[BOS, 4, 5, 6]])
    s = t.score(np.repeat(p, 3, 0), np.array([[4, 5, 6, EOS], [4, 7, 6, EOS], [4, EOS, PAD, PAD]]))
    assert s.reward.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert s.key_mask.astype(int).tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0]]
    r = toy_envs.make_task("copy", length=3, num_symbols=4, reverse=True)
    assert r.score(p, np.array([[6, 5, 4, EOS]])).reward[0] == 1.0


def test_gridpaint_by_hand():
    t = toy_envs.make_task("gridpaint", height=3, width=3, num_colours=2)
    red, bg = t.bg + 1, t.bg
    prompt = np.array([[BOS, t.col0 + 0, t.shape0 + t.shape_names.index("hline")]])  # red middle row
    perfect = [bg] * 3 + [red] * 3 + [bg] * 3 + [EOS]
    s = t.score(prompt, np.array([perfect]))
    assert s.reward[0] == 1.0 and s.key_mask[0].astype(int).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    over = [red] * 9 + [EOS]  # paints everything red: IoU = 3 / 9
    assert t.score(prompt, np.array([over])).reward[0] == pytest.approx(1 / 3)
    wrong_colour = [bg] * 3 + [red + 1] * 3 + [bg] * 3 + [EOS]
    assert t.score(prompt, np.array([wrong_colour])).reward[0] == 0.0
    empty = [EOS] + [PAD] * 9
    assert t.score(prompt, np.array([empty])).reward[0] == 0.0
    with pytest.raises(ValueError, match="height must be an integer >= 3"):
        toy_envs.make_task("gridpaint", height=2, width=5)


def test_chainsum_by_hand():
    t = toy_envs.make_task("chainsum", num_terms=2, filler=1)
    d = lambda k: t.digit0 + k
    prompt = np.array([[BOS, t.solve_tok, d(7), d(5)]])  # 7 + 5 = 12 → 2
    hmm = t.filler0
    right = [hmm, d(7), hmm, d(2), t.ans_tok, d(2), EOS]
    s = t.score(prompt, np.array([right]))
    assert s.reward[0] == 1.0 and s.key_mask[0].astype(int).tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert s.parts["sums_right"][0] == 1.0
    lucky = [hmm, d(1), hmm, d(1), t.ans_tok, d(2), EOS]  # wrong steps, right answer: graded on the answer
    assert t.score(prompt, np.array([lucky])).reward[0] == 1.0
    assert t.score(prompt, np.array([[hmm, d(7), hmm, d(2), t.ans_tok, d(3), EOS]])).reward[0] == 0.0


SYMBOLIC = sorted(n for n, cls in toy_envs.TASKS.items() if not issubclass(cls, toy_envs.TextTask))


@pytest.mark.parametrize("name", SYMBOLIC)
@pytest.mark.parametrize("accuracy", [0.2, 0.7])
def test_demonstrations_hit_requested_accuracy(name, accuracy):
    kw = {"wrong_prob": 0.0} if name == "chainsum" else {}
    t = toy_envs.make_task(name, **kw)
    n = 4000
    prompts, completions = t.demonstrations(n, np.random.default_rng(0), accuracy=accuracy, null_prob=0.0)
    perfect = (t.score(prompts, completions).reward == 1.0).mean()
    assert abs(perfect - accuracy) < 4 * np.sqrt(accuracy * (1 - accuracy) / n)
    assert (completions[:, -1] == EOS).all() and completions.shape == (n, t.max_new_tokens)


@pytest.mark.parametrize("name", SYMBOLIC)
def test_negative_prompts_and_null_dropout(name):
    t = toy_envs.make_task(name)
    prompts = t.sample_prompts(50, np.random.default_rng(0))
    null = t.negative_prompts(prompts, "null")
    assert (null[:, 0] == BOS).all() and (null[:, 1:] == NULL).all()
    wrong = t.negative_prompts(prompts, "wrong")
    assert wrong.shape == prompts.shape and (wrong != prompts).any(1).all() and (wrong[:, 0] == BOS).all()
    assert wrong.max() < t.vocab_size
    with pytest.raises(ValueError, match="no negative prompt"):
        t.negative_prompts(prompts, "opposite")
    dp, _ = t.demonstrations(2000, np.random.default_rng(1), null_prob=0.25)
    frac = (dp[:, 1:] == NULL).all(1).mean()
    assert abs(frac - 0.25) < 0.05


@pytest.mark.parametrize("name", SYMBOLIC)
def test_token_step_wrapper_matches_one_step(name):
    one = gym.make(toy_envs.ENV_IDS[name])
    tok = toy_envs.TokenStepEnv(gym.make(toy_envs.ENV_IDS[name]))
    rng = np.random.default_rng(0)
    for ep in range(5):
        prompt, _ = one.reset(seed=ep)
        obs, _ = tok.reset(seed=ep)
        assert np.array_equal(obs[: len(prompt)], prompt)
        t = one.unwrapped.task
        perfect = np.concatenate([t.solve(prompt[None], rng)[0], [EOS]])
        response = perfect if ep % 2 == 0 else rng.integers(0, t.vocab_size, t.max_new_tokens)
        _, r_one, *_ = one.step(response)
        total, done, steps = 0.0, False, 0
        while not done:
            obs, r, done, _, _ = tok.step(int(response[steps]))
            total, steps = total + r, steps + 1
        assert total == r_one
        if ep % 2 == 0:
            assert r_one == 1.0


def test_reward_noise_is_seeded_and_required_rng():
    t = toy_envs.make_task("needle", reward_noise=0.5)
    p = t.sample_prompts(4, np.random.default_rng(0))
    c = np.concatenate([t.solve(p), np.full((4, 1), EOS)], 1)
    with pytest.raises(ValueError, match="rng"):
        t.score(p, c)
    a = t.score(p, c, rng=np.random.default_rng(1)).reward
    assert np.array_equal(a, t.score(p, c, rng=np.random.default_rng(1)).reward) and np.std(a) > 0


def test_bad_input():
    t = toy_envs.make_task("needle")
    p = t.sample_prompts(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside"):
        t.score(p, np.full((2, 9), 999))
    with pytest.raises(ValueError, match="integer"):
        t.score(p, np.zeros((2, 9), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        t.score(p, np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="prompts but"):
        t.score(p, np.zeros((3, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="unknown env"):
        toy_envs.make_task("Needel-v0")
    with pytest.raises(ValueError, match="position"):
        toy_envs.make_task("needle", length=4, position=4)
    with pytest.raises(ValueError, match="reward_noise"):
        toy_envs.make_task("copy", reward_noise=-1)
    with pytest.raises(ValueError, match="accuracy"):
        t.demonstrations(3, np.random.default_rng(0), accuracy=1.5)
    env = gym.make("toy_envs/Needle-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="response is"):
        env.step(np.zeros(3, dtype=np.int64))


# ---- bad input: every task argument and public method checks its input ----------------------------------------
BAD_TASK_ARGS = [  # (task, arguments, the argument the one-line error must name)
    ("needle", dict(length="abc"), "length"),
    ("needle", dict(length=0), "length"),
    ("needle", dict(length=-3), "length"),
    ("needle", dict(length=True), "length"),
    ("needle", dict(length=8.0), "length"),
    ("needle", dict(num_symbols=1), "num_symbols"),
    ("needle", dict(position=8), "position"),
    ("needle", dict(position=-1), "position"),
    ("needle", dict(length=4, position=2.0), "position"),
    ("needle", dict(position=3, random_position=True), "position"),
    ("needle", dict(random_position=1), "random_position"),
    ("needle", dict(reward_noise=float("nan")), "reward_noise"),
    ("needle", dict(reward_noise=float("inf")), "reward_noise"),
    ("needle", dict(reward_noise=-0.1), "reward_noise"),
    ("needle", dict(reward_noise="0.1"), "reward_noise"),
    ("needle", dict(require_eos="yes"), "require_eos"),
    ("copy", dict(length=0), "length"),
    ("copy", dict(num_symbols=1.5), "num_symbols"),
    ("copy", dict(reverse="false"), "reverse"),
    ("gridpaint", dict(height=2), "height"),
    ("gridpaint", dict(width=None), "width"),
    ("gridpaint", dict(num_colours=7), "num_colours"),
    ("gridpaint", dict(num_colours=1), "num_colours"),
    ("chainsum", dict(num_terms=1), "num_terms"),
    ("chainsum", dict(filler=-1), "filler"),
    ("chainsum", dict(wrong_prob=1.5), "wrong_prob"),
    ("chainsum", dict(wrong_prob=float("nan")), "wrong_prob"),
    ("needle", dict(lenght=8), "lenght"),
]


@pytest.mark.parametrize("name, kwargs, arg", BAD_TASK_ARGS)
def test_bad_task_arguments_are_one_line_errors_naming_the_argument(name, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{name}\b.*\b{arg}\b") as err:
        toy_envs.make_task(name, **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=rf"^{name}\b.*\b{arg}\b"):
        gym.make(toy_envs.ENV_IDS[name], **kwargs)  # the registered envs check the same way


def test_task_arguments_at_their_limits_are_accepted():
    assert toy_envs.make_task("needle", length=1).position == 0
    assert toy_envs.make_task("needle", length=np.int64(5), position=np.int64(4)).position == 4  # numpy ints
    assert toy_envs.make_task("needle", num_symbols=30).vocab[4 + 26] == "s26"  # past the alphabet
    assert toy_envs.make_task("gridpaint", height=3, width=3, num_colours=6).response_len == 9
    assert toy_envs.make_task("chainsum", num_terms=2, filler=0, wrong_prob=1).response_len == 4
    assert toy_envs.make_task("copy", reward_noise=0).reward_noise == 0.0
    assert toy_envs.task_arguments("needle")["length"] == 8


@pytest.mark.parametrize("name", sorted(toy_envs.TASKS))
def test_empty_batches_give_empty_arrays(name):
    t = toy_envs.make_task(name)
    rng = np.random.default_rng(0)
    prompts = t.sample_prompts(0, rng)
    assert prompts.shape == (0, t.prompt_len) and prompts.dtype == np.int64
    for kind in t.negative_kinds:
        assert t.negative_prompts(prompts, kind).shape == (0, t.prompt_len)
    score = t.score(prompts, np.zeros((0, 5), dtype=np.int64))
    assert score.reward.shape == (0,) and score.key_mask.shape == (0, 5)
    demo_prompts, demo_completions = t.demonstrations(0, rng)
    assert demo_prompts.shape == (0, t.prompt_len) and demo_completions.shape == (0, t.max_new_tokens)
    nothing = t.score(t.sample_prompts(3, rng), np.zeros((3, 0), dtype=np.int64))  # responses of no token
    assert nothing.key_mask.shape == (3, 0) and (nothing.reward == 0).all()


@pytest.mark.parametrize("name", sorted(toy_envs.TASKS))
def test_demo_len_covers_every_demonstration(name):
    """demo_len is what a model's positions must cover for the warm start: prompt + the widest completion."""
    t = toy_envs.make_task(name)
    prompts, completions = t.demonstrations(64, np.random.default_rng(0))
    assert t.demo_len == prompts.shape[1] + completions.shape[1]
    if name in SYMBOLIC:
        assert t.demo_len == t.prompt_len + t.response_len + 1  # content + EOS


@pytest.mark.parametrize("name", SYMBOLIC)
def test_malformed_calls_are_value_errors(name):
    t = toy_envs.make_task(name)
    rng = np.random.default_rng(0)
    p = t.sample_prompts(2, rng)
    c = np.concatenate([t.solve(p), np.full((2, 1), EOS)], 1)
    bad_calls = [  # (what the message must say, the call)
        ("n must", lambda: t.sample_prompts(-1, rng)),
        ("n must", lambda: t.sample_prompts(2.0, rng)),
        ("n must", lambda: t.sample_prompts(True, rng)),
        ("rng", lambda: t.sample_prompts(2, 0)),
        ("prompts have", lambda: t.score(p[:, :-1], c)),
        ("integer", lambda: t.score(p, c.astype(float))),
        ("not .* prompts", lambda: t.score(t.negative_prompts(p, "null"), c)),  # a negative prompt is not scored
        ("outside", lambda: t.decode([t.vocab_size])),
        ("accuracy", lambda: t.demonstrations(2, rng, accuracy=np.nan)),
        ("null_prob", lambda: t.demonstrations(2, rng, null_prob=-0.1)),
        ("no negative", lambda: t.negative_prompts(p, "x")),
        ("2-D", lambda: t.content(c[0])),
    ]
    for match, call in bad_calls:
        with pytest.raises(ValueError, match=match):
            call()


# ---- gymnasium: the episode ends, and stepping on is an error, not a stale reward ------------------------------
@pytest.mark.parametrize("name", sorted(toy_envs.TASKS))
def test_stepping_an_ended_episode_is_an_error(name):
    from gymnasium.error import ResetNeeded

    env = gym.make(toy_envs.ENV_IDS[name]).unwrapped
    with pytest.raises(ResetNeeded):
        env.step(env.action_space.sample())
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[2]  # terminated
    with pytest.raises(ResetNeeded, match="ended"):
        env.step(env.action_space.sample())
    env.reset(seed=1)
    env.step(env.action_space.sample())  # reset starts a fresh episode

    tok = toy_envs.TokenStepEnv(gym.make(toy_envs.ENV_IDS[name]))
    task = tok.task
    with pytest.raises(ResetNeeded):
        tok.step(0)
    for first in (task.eos_id, None):  # ends at EOS; ends after max_new_tokens without EOS
        tok.reset(seed=0)
        filler = next(i for i in range(task.vocab_size) if i not in (task.eos_id, task.pad_id))
        steps, done = 0, False
        while not done:
            _, _, done, truncated, _ = tok.step(first if first is not None else filler)
            steps += 1
        assert steps == (1 if first is not None else task.max_new_tokens) and not truncated
        with pytest.raises(ResetNeeded, match="ended"):
            tok.step(filler)
    tok.reset(seed=0)
    with pytest.raises(ValueError, match="token id"):
        tok.step(task.vocab_size)


@pytest.mark.parametrize("env_id", sorted(toy_envs.ENV_IDS.values()))
def test_token_step_env_passes_the_gymnasium_checker(env_id):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = toy_envs.TokenStepEnv(gym.make(env_id, render_mode="ansi"))
        check_env(env)  # also rebuilds it from env.spec for the render check
    other = [str(w.message) for w in caught if "different from the unwrapped version" not in str(w.message)]
    assert other == []  # the only warning: a wrapper is not its unwrapped env
    env.reset(seed=0)
    env.step(int(env.action_space.sample()))
    assert env.render().startswith("prompt")
