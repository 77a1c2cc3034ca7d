"""Every negative prompt of every task is a well-formed prompt of that task, for every parameter setting, and
differs from its prompt only where its kind says. The prompts are read back as token strings and parsed with the
grammar each task's docstring states (`<bos> @p s`, `<bos> =colour shape`, ...), not with the task's own
validity check, so a negative that puts a token of the wrong kind in a slot fails here even where the task
would accept it."""

import itertools
import re

import numpy as np
import pytest

import toy_envs
from toy_envs.text import stand_in_tokenizer

RNG_SEED = 0


def symbols(n):
    """The symbol tokens of Needle and Copy: a, b, .., z, then s26, s27, .."""
    return [chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(n)]


def strings(task, prompts):
    return [task.decode(row) for row in prompts]


def prompts_of(task, rows):
    """Token-string rows → (n, P) ids."""
    return np.array([[task.token_id[t] for t in row] for row in rows], dtype=np.int64)


def check_null(task, prompts):
    """`null`: BOS kept, every other token NULL, whatever the prompt."""
    for row in strings(task, task.negative_prompts(prompts, "null")):
        assert row == ["<bos>"] + ["<null>"] * (task.prompt_len - 1)


def with_sampled(task, rows, n=64):
    """The grammar's prompts built by hand, plus the task's own sampled prompts (both must parse)."""
    return np.concatenate([prompts_of(task, rows), task.sample_prompts(n, np.random.default_rng(RNG_SEED))])


# ---- Needle: `<bos> @p s`; wrong = `<bos> @p s+1` -----------------------------------------------------------
NEEDLE = [dict(length=L, num_symbols=S) for L, S in itertools.product((1, 2, 7, 33), (2, 3, 8, 27, 30))] + [
    dict(length=9, position=0),
    dict(length=9, position=8),
    dict(length=6, random_position=True),
    dict(reward_noise=0.5, require_eos=False),
]


@pytest.mark.parametrize("kwargs", NEEDLE, ids=str)
def test_needle_negatives_are_needle_prompts(kwargs):
    task = toy_envs.make_task("needle", **kwargs)
    syms, length = symbols(task.num_symbols), task.length
    prompts = with_sampled(task, [["<bos>", f"@{p}", s] for p in range(length) for s in syms])

    def parse(row):
        assert len(row) == 3 and row[0] == "<bos>" and re.fullmatch(r"@\d+", row[1]), row
        assert 0 <= int(row[1][1:]) < length and row[2] in syms, row
        return row[1], syms.index(row[2])

    for prompt, wrong in zip(strings(task, prompts), strings(task, task.negative_prompts(prompts, "wrong"))):
        (p, s), (p_neg, s_neg) = parse(prompt), parse(wrong)
        assert p_neg == p and s_neg == (s + 1) % len(syms)  # same place, the next symbol
    check_null(task, prompts)


# ---- Copy: `<bos> s_1 .. s_L`; wrong = every symbol shifted by one ---------------------------------------------
COPY = [
    dict(length=L, num_symbols=S, reverse=r) for L, S, r in itertools.product((1, 3, 6), (2, 5, 26, 28), (False, True))
]


@pytest.mark.parametrize("kwargs", COPY, ids=str)
def test_copy_negatives_are_copy_prompts(kwargs):
    task = toy_envs.make_task("copy", **kwargs)
    syms = symbols(task.num_symbols)
    every_symbol = [["<bos>"] + [syms[(i + j) % len(syms)] for j in range(task.length)] for i in range(len(syms))]
    prompts = with_sampled(task, every_symbol)

    def parse(row):
        assert len(row) == 1 + task.length and row[0] == "<bos>" and all(t in syms for t in row[1:]), row
        return [syms.index(t) for t in row[1:]]

    for prompt, wrong in zip(strings(task, prompts), strings(task, task.negative_prompts(prompts, "wrong"))):
        assert parse(wrong) == [(s + 1) % len(syms) for s in parse(prompt)]
    check_null(task, prompts)


# ---- GridPaint: `<bos> =colour shape`; wrong = the next colour of the task's colours, same shape ---------------
GRIDPAINT = [
    dict(height=h, width=w, num_colours=c)
    for (h, w), c in itertools.product(((3, 3), (4, 6), (5, 5), (7, 4)), range(2, 7))
]


@pytest.mark.parametrize("kwargs", GRIDPAINT, ids=str)
def test_gridpaint_negatives_are_gridpaint_prompts(kwargs):
    task = toy_envs.make_task("gridpaint", **kwargs)
    colours = [f"={c}" for c in toy_envs.GridPaint.COLOURS[: task.num_colours]]
    shapes = ["square", "plus", "hline", "vline", "frame"]
    prompts = with_sampled(task, [["<bos>", c, s] for c in colours for s in shapes])

    def parse(row):
        assert len(row) == 3 and row[0] == "<bos>" and row[1] in colours and row[2] in shapes, row
        return colours.index(row[1]), row[2]

    for prompt, wrong in zip(strings(task, prompts), strings(task, task.negative_prompts(prompts, "wrong"))):
        (c, shape), (c_neg, shape_neg) = parse(prompt), parse(wrong)
        assert shape_neg == shape and c_neg == (c + 1) % len(colours)
    check_null(task, prompts)


# ---- ChainSum: `<bos> solve d_1 .. d_k`; wrong = `<bos> wrong d_1 .. d_k` --------------------------------------
CHAINSUM = [dict(num_terms=k, filler=f) for k, f in itertools.product((2, 3, 6), (0, 1, 3))] + [
    dict(wrong_prob=0.0),
    dict(wrong_prob=1.0, reward_noise=0.1),
]


@pytest.mark.parametrize("kwargs", CHAINSUM, ids=str)
def test_chainsum_negatives_are_chainsum_prompts(kwargs):
    task = toy_envs.make_task("chainsum", **kwargs)
    digits = [str(d) for d in range(10)]
    prompts = with_sampled(task, [["<bos>", "solve"] + [d] * task.num_terms for d in digits])

    def parse(row):
        assert len(row) == 2 + task.num_terms and row[0] == "<bos>" and row[1] in ("solve", "wrong"), row
        assert all(t in digits for t in row[2:]), row
        return row[1], row[2:]

    for prompt, wrong in zip(strings(task, prompts), strings(task, task.negative_prompts(prompts, "wrong"))):
        (instruction, terms), (instruction_neg, terms_neg) = parse(prompt), parse(wrong)
        assert (instruction, instruction_neg) == ("solve", "wrong") and terms_neg == terms
    check_null(task, prompts)


# ---- the text tasks: the documented sentences, left-padded ---------------------------------------------------
TOPICS = ["ocean", "space", "food", "music", "forest"]
TEXT_NEGATIVES = {  # kind: (prompt text → the negative's text)
    "notopic": lambda text: "Here is a sentence:",
    "other": lambda text: re.sub(r"the (\w+):", lambda m: f"the {TOPICS[(TOPICS.index(m[1]) + 1) % 5]}:", text),
    "opposite": lambda text: re.sub(
        r"(positive|negative)", lambda m: {"positive": "negative"}.get(m[1], "positive"), text
    ),
    "neutral": lambda text: "Here is a review of the film:",
}


@pytest.fixture(scope="module")
def bpe():
    return stand_in_tokenizer(600)


@pytest.mark.parametrize("name", ["topic", "sentiment"])
@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
@pytest.mark.parametrize("max_new_tokens", [1, 16])
def test_text_negatives_are_the_documented_sentences_left_padded(name, tokenizer, max_new_tokens, bpe):
    task = toy_envs.make_task(name, max_new_tokens=max_new_tokens, **({"tokenizer": bpe} if tokenizer == "bpe" else {}))
    tok, pad = task.tokenizer, task.pad_id
    prompts = np.stack([task._ids[(label, "prompt")] for label in task.labels])  # every prompt of the task
    written = {text.lower(): text for text in task.PROMPTS.values()}  # the word tokenizer lower-cases
    assert {task.prompt_string(p).lower() for p in prompts} == set(written)
    for kind in task.negative_kinds:
        negatives = task.negative_prompts(prompts, kind)
        assert negatives.shape == prompts.shape and negatives.dtype == np.int64
        for prompt, neg in zip(prompts, negatives):
            text = TEXT_NEGATIVES[kind](written[task.prompt_string(prompt).lower()])
            ids = tok.encode(text, add_special_tokens=False)
            assert neg.tolist() == [pad] * (task.prompt_len - len(ids)) + ids, (kind, text)  # padding on the left
            assert task.prompt_mask(neg[None])[0].tolist() == [0] * (task.prompt_len - len(ids)) + [1] * len(ids)
            assert task.prompt_string(neg).lower() == text.lower() != task.prompt_string(prompt).lower()
