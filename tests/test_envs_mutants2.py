"""toy_envs, second round: properties that mutation testing showed every other test leaves unchecked.

The shapes GridPaint draws, the tasks' argument ranges and defaults, the coverage of sampled prompts and of
`other_than`, the shading escape strings, the text tasks' display helpers, the gym env's random stream, and the
offline stand-in tokenizer and GPT-2. Expected values are drawn or computed by hand (or with plain Python), never
read back from the code under test."""

import json
import os
import re
import string
from collections import Counter

import numpy as np
import pytest
import torch

import toy_envs
from toy_envs.base import other_than
from toy_envs.render import _heat, shade_tokens
from toy_envs.tasks import Needle, grid_shapes
from toy_envs.text import WordTokenizer, decode, save_stand_in_gpt2, stand_in_tokenizer


def drawn(picture):
    """A hand-drawn mask ('#' = True) → bool array."""
    return np.array([[ch == "#" for ch in row] for row in picture.split()])


def ids(task, words):
    return np.array([task.token_id[w] for w in words], dtype=np.int64)


def shaded(tok, g):
    return f"\x1b[48;2;255;{g};{g}m\x1b[38;2;0;0;0m{tok}\x1b[0m"


# ---- GridPaint's shapes --------------------------------------------------------------------------------------
SHAPES_4x5 = {
    "square": ".....\n.###.\n.###.\n.....",
    "plus": "..#..\n..#..\n#####\n..#..",
    "hline": ".....\n.....\n#####\n.....",
    "vline": "..#..\n..#..\n..#..\n..#..",
    "frame": "#####\n#...#\n#...#\n#####",
}
SHAPES_3x6 = {
    "square": "......\n.####.\n......",
    "plus": "...#..\n######\n...#..",
    "hline": "......\n######\n......",
    "vline": "...#..\n...#..\n...#..",
    "frame": "######\n#....#\n######",
}


@pytest.mark.parametrize("hw,pictures", [((4, 5), SHAPES_4x5), ((3, 6), SHAPES_3x6)], ids=["4x5", "3x6"])
def test_grid_shapes_match_hand_drawn_masks(hw, pictures):
    """Each shape on a small grid is exactly the hand-drawn picture: square = the interior one cell in from the
    border, plus/hline/vline through row H // 2 and column W // 2, frame = the border."""
    shapes = grid_shapes(*hw)
    assert list(shapes) == ["square", "plus", "hline", "vline", "frame"]
    for name, picture in pictures.items():
        assert shapes[name].shape == hw
        assert shapes[name].tolist() == drawn(picture).tolist(), name


# ---- constructors: documented ranges, one-line errors naming the argument, defaults -----------------------------
BAD_ARGS = [
    ("chainsum", {"num_terms": 1}, "chainsum: num_terms must be an integer >= 2, got 1"),
    ("chainsum", {"filler": -1}, "chainsum: filler must be an integer >= 0, got -1"),
    ("chainsum", {"wrong_prob": -0.1}, "chainsum: wrong_prob must be a number in [0, 1], got -0.1"),
    ("chainsum", {"wrong_prob": 1.1}, "chainsum: wrong_prob must be a number in [0, 1], got 1.1"),
    ("copy", {"length": 0}, "copy: length must be an integer >= 1, got 0"),
    ("copy", {"num_symbols": 1}, "copy: num_symbols must be an integer >= 2, got 1"),
    ("copy", {"reverse": 1}, "copy: reverse must be True or False, got 1"),
    ("gridpaint", {"height": 2}, "gridpaint: height must be an integer >= 3, got 2"),
    ("gridpaint", {"width": 2}, "gridpaint: width must be an integer >= 3, got 2"),
    ("gridpaint", {"num_colours": 1}, "gridpaint: num_colours must be an integer in [2, 6], got 1"),
    ("gridpaint", {"num_colours": 7}, "gridpaint: num_colours must be an integer in [2, 6], got 7"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD_ARGS, ids=[f"{n}-{list(k)[0]}" for n, k, _ in BAD_ARGS])
def test_constructor_rejects_just_outside_the_range_naming_the_argument(name, kwargs, message):
    """A value just outside the documented range is one ValueError whose line names the task and argument."""
    with pytest.raises(ValueError) as err:
        toy_envs.make_task(name, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("chainsum", {"num_terms": 2, "filler": 0, "wrong_prob": 0.0}),
        ("chainsum", {"wrong_prob": 1.0}),
        ("copy", {"length": 1, "num_symbols": 2, "reverse": True}),
        ("gridpaint", {"height": 3, "width": 3, "num_colours": 2}),
        ("gridpaint", {"num_colours": 6}),
    ],
)
def test_constructor_accepts_the_ends_of_the_range(name, kwargs):
    """The ends of each documented range are accepted and stored."""
    t = toy_envs.make_task(name, **kwargs)
    for k, v in kwargs.items():
        assert getattr(t, k) == v


def test_defaults_give_the_documented_sizes():
    """Defaults: ChainSum 3 terms with 2 thinking tokens each (prompt 5, response 3·3 + 2 = 11); Copy length 6 over
    6 symbols (prompt 7, vocabulary 4 + 6); GridPaint 5×5 with 3 colours (response 25; 3 + 5 + 1 + 3 task tokens)."""
    c = toy_envs.tasks.ChainSum()
    assert (c.num_terms, c.filler, c.prompt_len, c.response_len) == (3, 2, 5, 11)
    cp = toy_envs.tasks.Copy()
    assert (cp.length, cp.num_symbols, cp.prompt_len, cp.response_len, cp.vocab_size) == (6, 6, 7, 6, 10)
    g = toy_envs.tasks.GridPaint()
    assert (g.height, g.width, g.num_colours, g.response_len, g.vocab_size) == (5, 5, 3, 25, 4 + 12)


@pytest.mark.parametrize("cls", [toy_envs.tasks.ChainSum, toy_envs.tasks.Copy, toy_envs.tasks.GridPaint])
def test_require_eos_defaults_on_and_both_shared_arguments_reach_the_base(cls):
    """require_eos is on by default (a perfect response without EOS scores 0); require_eos=False and reward_noise
    are handed to the base class (the same response then scores 1; the noise level is stored)."""
    rng = np.random.default_rng(0)
    strict, lax, noisy = cls(), cls(require_eos=False), cls(reward_noise=0.25)
    assert strict.require_eos is True and lax.require_eos is False
    assert noisy.reward_noise == 0.25
    prompts = strict.sample_prompts(4, rng)
    content = strict.solve(prompts)
    assert strict.score(prompts, content).reward.tolist() == [0.0] * 4
    assert lax.score(prompts, content).reward.tolist() == [1.0] * 4


def test_chainsum_and_gridpaint_vocabularies_by_hand():
    """The token strings, in id order: ChainSum's digits, instructions, `ans` and thinking tokens; GridPaint's prompt
    colours, shapes, the `.` background and the pixel colours. A solution reads back as those strings."""
    c = toy_envs.make_task("chainsum", num_terms=2, filler=0)
    specials = ["<pad>", "<bos>", "<eos>", "<null>"]
    digits = [str(d) for d in range(10)]
    assert c.vocab == specials + digits + ["solve", "wrong", "ans", "hmm", "so", "then", "ok"]
    prompt = ids(c, ["<bos>", "solve", "7", "5"])[None]
    assert c.decode(c.solve(prompt)[0]) == ["7", "2", "ans", "2"]
    g = toy_envs.make_task("gridpaint", height=3, width=3, num_colours=2)
    shapes = ["square", "plus", "hline", "vline", "frame"]
    assert g.vocab == specials + ["=red", "=green"] + shapes + [".", "red", "green"]
    prompt = ids(g, ["<bos>", "=green", "vline"])[None]
    assert g.decode(g.solve(prompt)[0]) == [".", "green", "."] * 3


# ---- sampling covers every value --------------------------------------------------------------------------------
def test_sampled_prompts_use_every_symbol_digit_colour_and_shape():
    """Sampled prompts draw from the whole range, the first value included."""
    rng = np.random.default_rng(1)
    c = toy_envs.make_task("chainsum", num_terms=3)
    assert set(c.decode(c.sample_prompts(300, rng)[:, 2:].ravel())) == {str(d) for d in range(10)}
    cp = toy_envs.make_task("copy", length=3, num_symbols=3)
    assert set(cp.decode(cp.sample_prompts(300, rng)[:, 1:].ravel())) == {"a", "b", "c"}
    g = toy_envs.make_task("gridpaint", num_colours=2)
    p = g.sample_prompts(300, rng)
    assert set(g.decode(p[:, 1])) == {"=red", "=green"}
    assert set(g.decode(p[:, 2])) == {"square", "plus", "hline", "vline", "frame"}


def test_needle_solve_uses_every_filler_token_and_its_mistakes_are_always_another_symbol():
    """With an rng, Needle's free positions use all four filler tokens; with 3 symbols (not dividing the id offset),
    a mistake at the needle is never the asked-for symbol and covers both others."""
    t = toy_envs.make_task("needle", length=4, num_symbols=3)
    rng = np.random.default_rng(2)
    prompts = t.sample_prompts(200, rng)
    content = t.solve(prompts, rng)
    free = np.ones(content.shape, dtype=bool)
    free[:, t.position] = False
    assert set(t.decode(content[free])) == {".", ",", ";", ":"}
    p, c = t.demonstrations(600, rng, accuracy=0.0, null_prob=0.0)
    asked, written = t.decode(p[:, 2]), t.decode(c[:, t.position])
    assert all(a != w for a, w in zip(asked, written))
    for a in "abc":
        assert {w for s, w in zip(asked, written) if s == a} == set("abc") - {a}


def test_other_than_never_returns_the_value_and_covers_every_other_independently():
    """other_than: never the excluded value; over many draws every other value, each about 1/(high-1) of the time,
    drawn independently per element."""
    rng = np.random.default_rng(3)
    n, high = 3000, 4
    values = np.zeros(n, dtype=np.int64)
    out = other_than(values, high, rng)
    assert out.shape == (n,)
    assert not (out == 0).any()
    for v in (1, 2, 3):
        assert abs((out == v).mean() - 1 / 3) < 0.05
    mixed = np.arange(n) % high
    out = other_than(mixed, high, rng)
    assert not (out == mixed).any()
    for v in range(high):
        assert set(out[mixed == v].tolist()) == set(range(high)) - {v}


# ---- demonstrations' argument checks ----------------------------------------------------------------------------
def test_demonstrations_check_accuracy_and_null_prob_with_one_line_errors():
    """accuracy and null_prob are probabilities: 1.0 is accepted, 1.5 is a ValueError naming the task and argument."""
    t = toy_envs.make_task("needle")
    rng = np.random.default_rng(4)
    p, c = t.demonstrations(5, rng, accuracy=1.0, null_prob=1.0)
    assert (p[:, 1:] == t.token_id["<null>"]).all() and (c[:, -1] == t.eos_id).all()
    with pytest.raises(ValueError) as err:
        t.demonstrations(5, rng, accuracy=1.5)
    assert str(err.value) == "needle: accuracy must be a number in [0, 1], got 1.5"
    with pytest.raises(ValueError) as err:
        t.demonstrations(5, rng, null_prob=1.5)
    assert str(err.value) == "needle: null_prob must be a number in [0, 1], got 1.5"


def test_task_decode_names_tokens_in_its_error():
    """Task.decode maps ids to their strings; an id outside the vocabulary is an error naming `tokens`."""
    t = toy_envs.make_task("needle", length=2, num_symbols=2)
    assert t.decode([1, 4, 5, 2]) == ["<bos>", "a", "b", "<eos>"]
    with pytest.raises(ValueError, match=r"^needle: tokens has token ids outside \[0, 12\) of its vocabulary$"):
        t.decode([99])


# ---- shading ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "weights,n,want",
    [
        (None, 3, [0.0, 0.0, 0.0]),
        ([1.0, 2.0, 4.0], 3, [0.25, 0.5, 1.0]),
        ([0.1, 0.4], 2, [0.25, 1.0]),  # a max below 1 still maps to 1
        ([2.0], 3, [1.0, 0.0, 0.0]),  # tokens past a short weight vector get 0
        ([1.0, 2.0, 3.0, 8.0], 3, [1 / 3, 2 / 3, 1.0]),  # weights past n ignored, max over the shown ones
        ([[1.0, 2.0], [3.0, 4.0]], 4, [0.25, 0.5, 0.75, 1.0]),  # any shape is flattened
        ([0.0, 0.0], 2, [0.0, 0.0]),  # all zero: no division by zero
        ([-1.0, -2.0], 2, [0.0, 0.0]),  # all negative: clipped to 0
        ([-1.0, 2.0], 2, [0.0, 1.0]),  # a negative weight clipped to 0
    ],
)
def test_heat_is_weight_over_max_clipped_to_0_1(weights, n, want):
    """_heat: weight / max weight of the shown tokens, clipped to [0, 1]; None or no positive weight → zeros."""
    assert np.allclose(_heat(weights, n), want, rtol=0, atol=1e-12)


def test_shade_tokens_escape_strings_by_hand():
    """shade_tokens: plain tokens joined by one space without weights; with weights each token on background
    (255, g, g) with g = int(255 − 200·w/max): w/max = 0, 0.25, 0.5, 1 → g = 255, 205, 155, 55."""
    assert shade_tokens(["a", "b"]) == "a b"
    want = " ".join([shaded("a", 255), shaded("b", 205), shaded("c", 155), shaded("d", 55)])
    assert shade_tokens(["a", "b", "c", "d"], [0.0, 1.0, 2.0, 4.0]) == want
    assert shade_tokens(["a"], [3.0]) == shaded("a", 55)


def test_gridpaint_render_by_hand():
    """GridPaint.render: 'prompt: ' + prompt tokens, a newline, then the grid: a coloured cell is the colour's ANSI
    background with its weight digit (0-9 of the max), a background cell its digit then '.'."""
    g = toy_envs.make_task("gridpaint", height=3, width=3, num_colours=2)
    prompt = ids(g, ["<bos>", "=red", "plus"])
    completion = ids(g, [".", "red", ".", "red", "red", "red", ".", "red", ".", "<eos>"])

    def red(mark):
        return f"\x1b[48;2;200;40;40m\x1b[38;2;255;255;255m{mark} \x1b[0m"

    plain = "\n".join([". " + red(" ") + ". ", red(" ") * 3, ". " + red(" ") + ". "])
    assert g.render(prompt, completion) == "prompt: <bos> =red plus\n" + plain
    weights = [0, 9, 0, 9, 9, 0, 9, 0, 9, 5]
    grid = "\n".join(["0." + red(9) + "0.", red(9) + red(9) + red(0), "9." + red(0) + "9."])
    assert g.render(prompt, completion, weights) == "prompt: <bos> =red plus\n" + grid


# ---- text tasks -----------------------------------------------------------------------------------------------------
@pytest.fixture  # per test, not per module: mutation testing credits a call made in a shared fixture to one test only
def bpe():
    return stand_in_tokenizer()


def test_text_render_prompt_then_shaded_response_with_blank_tokens_shown_by_repr(bpe):
    """TextTask.render: 'prompt:   ' + the prompt's text without padding, '\\nresponse: ', then each response token's
    text stripped (a blank token shown by its repr) and shaded by its weight."""
    t = toy_envs.make_task("topic", tokenizer=bpe)
    prompt = t.negative_prompts(t._ids[("ocean", "prompt")][None], "notopic")[0]
    completion = [bpe.convert_tokens_to_ids(s) for s in ("Ġthe", "Ġ", "Ġsky")]
    head = "prompt:   Here is a sentence:\nresponse: "
    assert t.render(prompt, completion) == head + "the ' ' sky"
    want = " ".join([shaded("the", 255), shaded("' '", 155), shaded("sky", 55)])
    assert t.render(prompt, completion, [0.0, 1.0, 2.0]) == head + want


def test_text_prompt_helpers_flatten_and_name_their_argument():
    """prompt_string and decode flatten a (1, P) row; prompt_mask is int64 with 0 on the left padding; a float
    array is a one-line error naming `prompt`, `tokens` or `prompts`."""
    t = toy_envs.make_task("topic")
    full = t._ids[("ocean", "prompt")]
    short = t.negative_prompts(full[None], "notopic")  # (1, P), left-padded
    assert t.prompt_string(short) == "here is a sentence:"
    assert t.decode(short[:, -2:]) == ["sentence", ":"]
    mask = t.prompt_mask(short)
    pad = int((short[0] == t.pad_id).sum())
    assert pad > 0 and mask.dtype == np.int64
    assert mask[0].tolist() == [0] * pad + [1] * (t.prompt_len - pad)
    with pytest.raises(ValueError, match=r"^topic: prompt must hold integer token ids"):
        t.prompt_string(full.astype(float))
    with pytest.raises(ValueError, match=r"^topic: tokens must hold integer token ids"):
        t.decode(full.astype(float))
    with pytest.raises(ValueError, match=r"^topic: prompts must be a 2-D"):
        t.prompt_mask(full)


def test_word_tokenizer_reloads_from_its_directory_not_the_working_directory(tmp_path, monkeypatch):
    """from_pretrained(path) reads path/word_tokenizer.json, wherever the process runs."""
    saved = tmp_path / "tok"
    WordTokenizer(["sea", "moon"]).save_pretrained(str(saved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert WordTokenizer.from_pretrained(str(saved)).vocab == ["<pad>", "<eos>", "moon", "sea"]


# ---- the gym env's random stream ---------------------------------------------------------------------------------
def test_task_env_draws_the_prompt_then_the_reward_noise_from_its_seeded_generator():
    """reset(seed=s) draws one prompt from the env's generator (numpy's default_rng(s)) and step draws the reward
    noise from the same generator next: reward = clean reward + σ·z."""
    t = toy_envs.make_task("chainsum", num_terms=3, filler=0, reward_noise=0.5)  # 3 digits: a 2-prompt draw differs
    env = toy_envs.TaskEnv(t)
    for seed in (0, 5):
        rng = np.random.default_rng(seed)
        want_prompt = t.sample_prompts(1, rng)[0]
        z = rng.standard_normal()
        obs, _ = env.reset(seed=seed)
        assert obs.tolist() == want_prompt.tolist()
        response = np.full(t.max_new_tokens, t.token_id["hmm"])  # no answer digit: clean reward 0
        response[-1] = t.eos_id
        _, reward, terminated, _, info = env.step(response)
        assert terminated and info["clean_reward"] == 0.0
        assert reward == pytest.approx(0.5 * z, abs=1e-12)


# ---- the offline stand-in tokenizer and GPT-2 --------------------------------------------------------------------
TEXTS = toy_envs.text.Topic.texts() + toy_envs.text.Sentiment.texts()


def test_stand_in_tokenizer_specials_are_one_endoftext_token(bpe):
    """EOS = BOS = pad = `<|endoftext|>`, the only special token, one id, encoding to itself."""
    assert bpe.eos_token == bpe.bos_token == bpe.pad_token == "<|endoftext|>"
    assert bpe.eos_token_id == bpe.bos_token_id == bpe.pad_token_id == bpe.convert_tokens_to_ids("<|endoftext|>")
    assert bpe.all_special_tokens == ["<|endoftext|>"]
    assert [k for k in bpe.get_vocab() if "endoftext" in k.lower()] == ["<|endoftext|>"]


def test_stand_in_tokenizer_round_trips_any_text_byte_level(bpe):
    """Byte-level BPE without a prefix space: decode(encode(text)) is the text, characters never seen in training
    included; a word with and without a leading space are different tokens; the tasks' words are single tokens."""
    for text in TEXTS[:5] + ["Quixotic Zebra! 42 \u20ac\u00fc", "sea", "  two  spaces\n"]:
        assert bpe.decode(bpe.encode(text, add_special_tokens=False)) == text
    assert bpe.tokenize("sea") != bpe.tokenize(" sea")
    assert bpe.tokenize("Here is a sentence about the ocean:") == [
        "Here",
        "Ġis",
        "Ġa",
        "Ġsentence",
        "Ġabout",
        "Ġthe",
        "Ġocean",
        ":",
    ]


def test_stand_in_tokenizer_default_is_600_without_filler_words(bpe):
    """The default is vocab_size=600 and no filler words: the same vocabulary as asking for that explicitly."""
    assert bpe.get_vocab() == stand_in_tokenizer(600, filler_words=0).get_vocab()


def test_stand_in_tokenizer_filler_words_reach_the_vocab_size_with_lowercase_pieces(capfd):
    """With filler words the vocabulary is exactly vocab_size (the special token included); a seed gives the same
    vocabulary every time (seed 0 by default), another seed another; every merged piece is a piece of the tasks'
    texts or lowercase letters (the filler words are random lowercase strings of 3 letters or more, so some merged
    pieces of 3+ letters come from them); the tasks' words stay single tokens; training prints nothing."""
    size = 1400
    a = stand_in_tokenizer(size, filler_words=3000, seed=1)
    assert len(a) == size and a.eos_token_id == a.convert_tokens_to_ids("<|endoftext|>")
    assert a.get_vocab() == stand_in_tokenizer(size, filler_words=3000, seed=1).get_vocab()
    assert a.get_vocab() != stand_in_tokenizer(size, filler_words=3000, seed=2).get_vocab()
    default_seed = stand_in_tokenizer(size, filler_words=3000).get_vocab()
    assert default_seed == stand_in_tokenizer(size, filler_words=3000, seed=0).get_vocab()
    assert capfd.readouterr() == ("", "")
    corpus = " ".join(TEXTS).replace(" ", "Ġ")
    odd = [
        k
        for k in a.get_vocab()
        if len(k) > 1 and k != "<|endoftext|>" and k not in corpus and not set(k) <= set(string.ascii_lowercase)
    ]
    assert odd == []
    lowercase = set(string.ascii_lowercase)
    assert any(len(k) >= 3 and k not in corpus and set(k) <= lowercase for k in a.get_vocab())
    assert len(a.tokenize("Here is a sentence about the ocean:")) == 8


def test_save_stand_in_gpt2_config_and_seeded_weights(tmp_path):
    """save_stand_in_gpt2: a 2-layer, 2-head GPT-2 of the given width and positions (defaults 32 and 128), vocabulary
    = the saved tokenizer's, BOS = EOS = its `<|endoftext|>` id, and the weights of a seed-0 initialisation."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    path = save_stand_in_gpt2(str(tmp_path / "default"))
    tok = AutoTokenizer.from_pretrained(path)
    with open(f"{path}/config.json") as f:
        cfg = json.load(f)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"]) == (2, 2, 32, 128)
    assert cfg["vocab_size"] == len(tok) and cfg["bos_token_id"] == cfg["eos_token_id"] == eos
    path2 = save_stand_in_gpt2(str(tmp_path / "small"), width=16, n_positions=40)
    with open(f"{path2}/config.json") as f:
        cfg2 = json.load(f)
    assert (cfg2["n_layer"], cfg2["n_head"], cfg2["n_embd"], cfg2["n_positions"]) == (2, 2, 16, 40)
    torch.manual_seed(0)
    ref = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok), n_positions=40, n_embd=16, n_layer=2, n_head=2, bos_token_id=eos, eos_token_id=eos
        )
    )
    loaded = GPT2LMHeadModel.from_pretrained(path2)
    for name, value in ref.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name


def test_task_decode_flattens_any_shape():
    """Task.decode's docstring: one string per id, any shape flattened (a (2, 2) block reads row by row)."""
    task = Needle(length=4)
    ids = np.array([[task.bos_id, task.eos_id], [task.sym0, task.filler0]])
    assert task.decode(ids) == [task.vocab[task.bos_id], task.vocab[task.eos_id], "a", task.FILLER[0]]


# ---- content and the text tasks' demonstration options -------------------------------------------------------------
def test_content_splits_each_row_at_its_own_first_eos():
    """Rows with and without EOS in one batch: a row without EOS keeps all T tokens (length T), a row with one keeps
    the tokens before it (the EOS itself and what follows become MISSING); lengths are integers, also for T = 0."""
    t = toy_envs.make_task("copy", length=4, num_symbols=4)
    a, b, c = (t.token_id[s] for s in "abc")
    E, M = toy_envs.EOS, toy_envs.base.MISSING
    completions = np.array([[a, b, c], [a, E, b], [E, a, a]])
    content, lengths = t.content(completions)
    assert lengths.tolist() == [3, 1, 0] and lengths.dtype.kind == "i"
    assert content.tolist() == [[a, b, c, M], [a, M, M, M], [M, M, M, M]] and content.dtype == np.int64
    content, lengths = t.content(np.zeros((2, 0), dtype=np.int64))
    assert lengths.tolist() == [0, 0] and lengths.dtype.kind == "i" and content.tolist() == [[M] * 4] * 2


@pytest.mark.parametrize("name", ["topic", "sentiment"])
@pytest.mark.parametrize("option", ["accuracy", "null_prob"])
def test_text_demonstrations_take_probabilities_in_0_1_only(name, option):
    t, rng = toy_envs.make_task(name), np.random.default_rng(0)
    for ok in (0.0, 1.0):
        t.demonstrations(3, rng, **{option: ok})
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"^{name}: {option} must be a number in \[0, 1\], got {bad}$"):
            t.demonstrations(3, rng, **{option: bad})


@pytest.mark.parametrize("width", [1, 3])
def test_text_demonstrations_longer_than_the_response_are_cut_to_fit_their_eos(width):
    """max_new_tokens below a sentence's length: each demonstration is its first max_new_tokens − 1 words, then
    EOS in the last column (a one-token response is EOS alone)."""
    t = toy_envs.make_task("topic", max_new_tokens=width)
    _, completions = t.demonstrations(5, np.random.default_rng(0), null_prob=0.0)
    assert completions.shape == (5, width) and (completions[:, -1] == t.eos_id).all()
    assert (completions[:, :-1] != t.eos_id).all() and (completions[:, :-1] != t.pad_id).all()


def test_word_tokenizer_decode_keeps_special_tokens_unless_asked_to_skip_them():
    """Like a Hugging Face tokenizer: decode shows `<pad>` and `<eos>` by default and drops exactly those two with
    skip_special_tokens=True; words are joined by spaces, special tokens glued on."""
    tok = WordTokenizer(["sea", "moon"])
    ids = [2, 0, 1, 3, 1]
    assert tok.decode(ids) == "moon<pad><eos> sea<eos>"
    assert tok.decode(ids, skip_special_tokens=True) == "moon sea"
    assert tok.decode(torch.tensor(ids), skip_special_tokens=True) == "moon sea"


@pytest.mark.parametrize("name", ["topic", "sentiment"])
def test_text_prompts_draw_every_label_about_equally(name):
    """sample_prompts draws each of the task's labels uniformly: with 3,000 prompts every label's share is within
    five standard errors of 1/k (a draw that skips the first label, or always takes one, is far outside)."""
    t = toy_envs.make_task(name)
    counts = Counter(t.label(t.sample_prompts(3000, np.random.default_rng(0))))
    k = len(t.labels)
    assert set(counts) == set(t.labels)
    for label in t.labels:
        assert abs(counts[label] / 3000 - 1 / k) < 5 * np.sqrt((1 / k) * (1 - 1 / k) / 3000), counts


def test_needle_random_position_draws_every_position_and_a_fixed_one_stays():
    """Needle(random_position=True) puts the needle at every position 0..L-1 about equally often; without it every
    prompt asks for the one fixed position."""
    t = Needle(length=6, random_position=True)
    pos = t.sample_prompts(3000, np.random.default_rng(0))[:, 1] - t.pos0
    counts = np.bincount(pos, minlength=6)
    assert len(counts) == 6 and (np.abs(counts / 3000 - 1 / 6) < 5 * np.sqrt((1 / 6) * (5 / 6) / 3000)).all(), counts
    fixed = Needle(length=6, position=4).sample_prompts(50, np.random.default_rng(0))[:, 1] - t.pos0
    assert (fixed == 4).all()


def test_text_decode_is_verbatim_so_each_prefix_decodes_to_a_prefix(bpe):
    """`decode` keeps the text as written: a tokenizer's clean-up of spaces would join " ." , " ," , " 's" and
    " n't" to the word before, and then a prefix of the ids would no longer decode to a prefix of the text. The
    tokenizer is set to clean up by default, as GPT-2's hub tokenizer was (transformers 5 skips the clean-up for BPE
    unless forced)."""
    bpe.clean_up_tokenization_spaces = True
    bpe.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    assert bpe.decode(bpe.encode(" calm .")) == " calm."
    text = " the sea , it is calm . it 's blue , is n't it ?"
    ids = bpe.encode(text, add_special_tokens=False)
    assert decode(bpe, ids) == text
    assert all(text.startswith(decode(bpe, ids[:k])) for k in range(len(ids) + 1))


@pytest.mark.parametrize("name", ["topic", "sentiment"])
def test_text_tasks_default_response_cap_is_the_one_docs_algorithm_states(name):
    """docs/algorithm.md's task table gives each text task's response as "free text, ≤ N tokens"."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "algorithm.md")) as f:
        row = next(line for line in f if line.startswith(f"| `{name}` |"))
    cap = int(re.search(r"≤ (\d+) tokens", row).group(1))
    task = toy_envs.make_task(name)
    assert task.max_new_tokens == task.response_len == cap


def test_text_task_pads_with_eos_without_a_pad_token_and_refuses_prompts_starting_with_pad(bpe):
    """GPT-2's convention: without a pad token the pad is EOS; with one, that token. A prompt whose first token is
    the pad token could not be told from left padding: a one-line error. A bad cap is named."""
    assert bpe.pad_token_id == bpe.eos_token_id
    bpe.pad_token = None
    assert toy_envs.make_task("topic", tokenizer=bpe).pad_id == bpe.eos_token_id
    bpe.pad_token = "Ġsentence"
    assert bpe.pad_token_id not in (None, bpe.eos_token_id)
    assert toy_envs.make_task("topic", tokenizer=bpe).pad_id == bpe.pad_token_id
    bpe.pad_token = "Here"  # every topic prompt starts "Here is a sentence about ..."
    with pytest.raises(
        ValueError, match="^topic: prompt 'Here is a sentence about .*' is empty or starts with the pad"
    ):
        toy_envs.make_task("topic", tokenizer=bpe)
    with pytest.raises(ValueError, match="^topic: max_new_tokens must be an integer >= 1, got 0$"):
        toy_envs.make_task("topic", max_new_tokens=0)


@pytest.mark.parametrize("name", ["topic", "sentiment"])
def test_text_task_texts_hold_every_prompt_and_every_negative_prompt(name):
    """texts() is every text the task writes (the stand-in tokenizer is trained on it): each label's prompt and
    each of its negative prompts among them."""
    task = toy_envs.make_task(name)
    texts = type(task).texts()
    for label in task.labels:
        for kind in ("prompt",) + task.negative_kinds:
            assert task._prompt_text(label, kind) in texts


@pytest.mark.parametrize("name", ["needle", "copy", "gridpaint", "chainsum"])
def test_negative_prompts_default_to_the_null_prompt(name):
    task = toy_envs.make_task(name)
    prompts = task.sample_prompts(3, np.random.default_rng(0))
    assert np.array_equal(task.negative_prompts(prompts), task.negative_prompts(prompts, "null"))


def test_prompt_string_is_the_prompts_tokens_joined_by_spaces():
    task = toy_envs.make_task("needle", length=3, num_symbols=4)
    prompt = task.sample_prompts(1, np.random.default_rng(0))[0]
    assert task.prompt_string(prompt) == " ".join(task.vocab[t] for t in prompt)
    assert task.prompt_string(prompt).count(" ") == len(prompt) - 1
