"""toy_envs: properties that mutation testing showed the other env tests leave unchecked.

Which prompts each task accepts as its own, the shape of the mistakes in its demonstrations (how many positions,
which kinds, how often), the layout of ChainSum's solutions and WRONG-instruction demonstrations, the names and
values of each task's score parts, and GridPaint's IoU on a one-cell shape. Responses and prompts are built and read
back as token strings, and every expected value is worked out by hand or with plain Python, not with the task."""

import numpy as np
import pytest

import toy_envs

N_DEMOS = 2000


def ids(task, rows):
    """Token-string rows → (n, len) ids; an int in a row is taken as a raw id (for ids outside the vocabulary)."""
    return np.array([[t if isinstance(t, int) else task.token_id[t] for t in row] for row in rows], dtype=np.int64)


def within(frac, p, n, sd=5):
    """`frac` (a frequency over n draws) is within `sd` binomial standard deviations of probability p."""
    return abs(frac - p) <= sd * np.sqrt(p * (1 - p) / n)


def running_sums(digits):
    """(d_1 + .. + d_j) mod 10 for j = 1..k, in plain Python."""
    out, total = [], 0
    for d in digits:
        total = (total + d) % 10
        out.append(total)
    return out


# ---- which prompts are the task's own --------------------------------------------------------------------------
def needle_cases():
    t = toy_envs.make_task("needle", length=4, num_symbols=3, random_position=True)  # symbols a b c; @0..@3
    good = [["<bos>", f"@{p}", s] for p in range(4) for s in "abc"]
    bad = [
        ["<pad>", "@1", "b"],  # no BOS, position and symbol fine
        ["<bos>", ":", "b"],  # the last filler (the id just below @0) in the position slot
        ["<bos>", "@1", "."],  # the first filler (the id just past the last symbol) in the symbol slot
        ["<bos>", "@1", "<null>"],  # a special token (an id below the symbols) in the symbol slot
        ["<bos>", t.vocab_size, "b"],  # position 4 = length: the id just past @3, outside the vocabulary
        ["<bos>", "@1", "@2"],  # a position in the symbol slot
    ]
    return t, good, bad


def copy_cases():
    t = toy_envs.make_task("copy", length=3, num_symbols=4)  # symbols a b c d; ids 0..7
    good = [["<bos>", "a", "b", "c"], ["<bos>", "d", "d", "d"], ["<bos>", "a", "a", "a"]]
    bad = [
        ["<pad>", "a", "b", "c"],  # no BOS
        ["<bos>", "<null>", "b", "c"],  # the first symbol slot holds a non-symbol
        ["<bos>", "a", "<null>", "c"],  # a middle slot
        ["<bos>", "a", "b", "<eos>"],  # the last slot
        ["<bos>", "a", "b", 8],  # one id past the last symbol (outside the vocabulary too)
    ]
    return t, good, bad


def gridpaint_cases():
    t = toy_envs.make_task("gridpaint", height=3, width=3, num_colours=2)
    shapes = ["square", "plus", "hline", "vline", "frame"]
    good = [["<bos>", c, s] for c in ("=red", "=green") for s in shapes]
    bad = [
        ["<pad>", "=red", "plus"],  # no BOS, colour and shape fine
        ["<bos>", "square", "plus"],  # a shape in the colour slot (the id just past the last colour)
        ["<bos>", "<bos>", "plus"],  # a special token (id below the colours) in the colour slot
        ["<bos>", "=red", "=green"],  # a colour (id below the shapes) in the shape slot
        ["<bos>", "=red", "."],  # the background pixel (the id just past the last shape) in the shape slot
        ["<bos>", "=red", "red"],  # a pixel colour in the shape slot
    ]
    return t, good, bad


def chainsum_cases():
    t = toy_envs.make_task("chainsum", num_terms=3)
    good = [["<bos>", "solve", "0", "9", "5"], ["<bos>", "wrong", "9", "0", "0"]]
    bad = [
        ["<pad>", "solve", "1", "2", "3"],  # no BOS
        ["<bos>", "ans", "1", "2", "3"],  # neither instruction, digits fine
        ["<bos>", "<null>", "1", "2", "3"],
        ["<bos>", "solve", "solve", "2", "3"],  # the first digit slot holds the id just past '9'
        ["<bos>", "solve", "1", "ans", "3"],  # a middle slot: a token above the digits
        ["<bos>", "solve", "1", "2", "<null>"],  # the last slot: a token below the digits
        ["<bos>", "solve", "1", "2", "hmm"],
    ]
    return t, good, bad


@pytest.mark.parametrize("cases", [needle_cases, copy_cases, gridpaint_cases, chainsum_cases], ids=lambda f: f.__name__)
def test_valid_prompts_accept_every_prompt_and_reject_each_malformed_kind(cases):
    """In one mixed batch, the check accepts every sampled prompt and each hand-built well-formed one (row by row,
    not one verdict for the batch), and rejects each kind of malformed prompt; score() refuses each malformed
    prompt whose ids lie in the vocabulary with the task's ValueError."""
    t, good, bad = cases()
    sampled = t.sample_prompts(40, np.random.default_rng(0))
    batch = np.concatenate([sampled, ids(t, good), ids(t, bad)])
    expected = [True] * (len(sampled) + len(good)) + [False] * len(bad)
    assert t._valid_prompts(batch).tolist() == expected
    for row in ids(t, bad):
        if row.max() < t.vocab_size:
            completion = np.full((1, t.max_new_tokens), toy_envs.EOS)
            with pytest.raises(ValueError, match="not .* prompts"):
                t.score(row[None], completion)


def test_scoring_foreign_prompts_names_the_first_five_rows_that_are_not_the_tasks():
    t = toy_envs.make_task("needle", length=4)
    prompts = t.sample_prompts(12, np.random.default_rng(0))
    foreign = [1, 2, 5, 7, 8, 10, 11]  # seven rows made negative prompts: the message lists the first five
    prompts[foreign] = t.negative_prompts(prompts[foreign], "null")
    completions = np.full((12, t.max_new_tokens), toy_envs.EOS)
    with pytest.raises(ValueError, match=r"^needle: prompt rows \[1, 2, 5, 7, 8\] are not needle prompts"):
        t.score(prompts, completions)


def test_needle_reports_the_hit_as_a_reward_part():
    t = toy_envs.make_task("needle", length=4, num_symbols=3)
    prompts = t.sample_prompts(6, np.random.default_rng(1))
    completions = np.concatenate([t.solve(prompts), np.full((6, 1), toy_envs.EOS)], axis=1)
    completions[::2, t.position] = t.filler0  # every other response misses the needle
    s = t.score(prompts, completions)
    assert set(s.parts) == {"hit", "ended"} and s.parts["hit"].dtype == np.float64  # "ended": the EOS rule
    assert s.parts["hit"].tolist() == [0.0, 1.0] * 3 == s.reward.tolist()


# ---- Copy ----------------------------------------------------------------------------------------------------
def test_copy_mistakes_change_1_to_L_positions_uniformly():
    """A wrong Copy demonstration has between 1 and L positions that differ from the prompt's symbols (never 0:
    each chosen position gets another symbol), each count 1..L about equally often, and only symbols."""
    t = toy_envs.make_task("copy", length=3, num_symbols=6)
    prompts, completions = t.demonstrations(N_DEMOS, np.random.default_rng(0), accuracy=0.0, null_prob=0.0)
    symbols = [chr(ord("a") + i) for i in range(6)]
    n_wrong = []
    for p, c in zip(prompts, completions):
        asked, given = t.decode(p[1:]), t.decode(c[:-1])
        assert all(s in symbols for s in given)
        n_wrong.append(sum(a != g for a, g in zip(asked, given)))
    n_wrong = np.array(n_wrong)
    assert n_wrong.min() >= 1 and n_wrong.max() <= 3
    for k in (1, 2, 3):
        assert within((n_wrong == k).mean(), 1 / 3, N_DEMOS), k


def test_copy_score_parts_name_the_correct_fraction():
    """Copy's score parts are `correct_fraction` (the share of the L positions that are right) and `ended`."""
    t = toy_envs.make_task("copy", length=4, num_symbols=5)
    prompt = ids(t, [["<bos>", "a", "b", "c", "d"]])
    responses = [["a", "b", "c", "d", "<eos>"], ["a", "e", "c", "a", "<eos>"], ["e", "e", "e", "d", "<eos>"]]
    s = t.score(np.repeat(prompt, 3, 0), ids(t, responses))
    assert set(s.parts) == {"correct_fraction", "ended"}
    assert s.parts["correct_fraction"].tolist() == pytest.approx([1.0, 2 / 4, 1 / 4])


# ---- GridPaint -------------------------------------------------------------------------------------------------
def test_gridpaint_iou_by_hand_including_a_one_cell_union():
    """IoU = |painted ∩ shape| / |painted ∪ shape| over the pixels in the prompt's colour, checked on a 3×3 grid,
    where `square` is the single centre pixel: painting exactly it gives a union of one cell and IoU 1. The parts
    are `iou` (the reward) and `painted` (how many pixels have the prompt's colour)."""
    t = toy_envs.make_task("gridpaint", height=3, width=3, num_colours=2)

    def grid(red=(), green=()):
        return ["red" if i in red else "green" if i in green else "." for i in range(9)] + ["<eos>"]

    square, hline = ["<bos>", "=red", "square"], ["<bos>", "=red", "hline"]  # centre pixel 4; middle row 3, 4, 5
    cases = [  # (prompt, response, IoU by hand, pixels painted red)
        (square, grid(red=[4]), 1 / 1, 1),  # ∩ {4}, ∪ {4}
        (square, grid(red=[4, 0]), 1 / 2, 2),
        (square, grid(), 0 / 1, 0),  # nothing painted: ∪ is the shape's one cell
        (square, grid(green=[4]), 0 / 1, 0),  # the right pixel in the wrong colour
        (hline, grid(red=[0, 1, 3, 4], green=[5]), 2 / 5, 4),  # ∩ {3, 4}, ∪ {0, 1, 3, 4, 5}
        (hline, grid(red=[3, 4, 5, 6, 7, 8, 0, 1]), 3 / 8, 8),
    ]
    s = t.score(ids(t, [c[0] for c in cases]), ids(t, [c[1] for c in cases]))
    assert set(s.parts) == {"iou", "painted", "ended"}
    assert s.reward.tolist() == pytest.approx([c[2] for c in cases])
    assert s.parts["iou"].tolist() == pytest.approx([c[2] for c in cases])
    assert s.parts["painted"].tolist() == [c[3] for c in cases] and s.parts["painted"].dtype == np.float64
    assert s.key_mask[0].tolist() == [i == 4 for i in range(10)]


def test_gridpaint_mistakes_are_a_wrong_colour_or_a_wrong_shape_half_each():
    """A wrong GridPaint demonstration is either the prompt's shape in one other colour or another shape in the
    prompt's colour (never a blank grid), the two kinds about equally often; every other colour and every
    (shape, other shape) pair occurs."""
    t = toy_envs.make_task("gridpaint", height=5, width=5, num_colours=3)
    prompts, completions = t.demonstrations(N_DEMOS, np.random.default_rng(0), accuracy=0.0, null_prob=0.0)
    masks = {name: set(np.flatnonzero(m.reshape(-1)).tolist()) for name, m in toy_envs.tasks.grid_shapes(5, 5).items()}
    recoloured, reshaped, colours_used, shape_pairs = 0, 0, set(), set()
    for p, c in zip(prompts, completions):
        _, colour, shape = t.decode(p)
        pixels = t.decode(c[:-1])
        painted = {i for i, x in enumerate(pixels) if x != "."}
        used = {pixels[i] for i in painted}
        if used == {colour[1:]}:  # the prompt's colour: a different shape
            drawn = [name for name, m in masks.items() if m == painted]
            assert drawn and drawn[0] != shape, (shape, sorted(painted))
            reshaped += 1
            shape_pairs.add((shape, drawn[0]))
        else:  # the prompt's shape in one other colour
            assert painted == masks[shape] and len(used) == 1 and colour[1:] not in used, (colour, shape, used)
            recoloured += 1
            colours_used.add((colour[1:], used.pop()))
    assert within(recoloured / N_DEMOS, 0.5, N_DEMOS)
    assert colours_used == {(a, b) for a in ("red", "green", "blue") for b in ("red", "green", "blue") if a != b}
    assert shape_pairs == {(a, b) for a in masks for b in masks if a != b}


# ---- ChainSum --------------------------------------------------------------------------------------------------
FILLER = {"hmm", "so", "then", "ok"}


def parse_chainsum(task, response):
    """Read a response with the documented grammar: k × (`filler` thinking tokens, the running sum), `ans`, the
    answer. Returns (thinking tokens, running sums, answer); a token of the wrong kind fails the test."""
    step, thinking, sums = task.filler + 1, [], []
    for j in range(task.num_terms):
        chunk = response[j * step : (j + 1) * step]
        assert all(w in FILLER for w in chunk[:-1]) and chunk[-1].isdigit(), response
        thinking += chunk[:-1]
        sums.append(int(chunk[-1]))
    tail = response[task.num_terms * step :]
    assert len(tail) == 2 and tail[0] == "ans" and tail[1].isdigit(), response
    return thinking, sums, int(tail[1])


@pytest.mark.parametrize("filler", [0, 2])
def test_chainsum_solve_follows_the_documented_layout(filler):
    """solve() writes `filler` thinking tokens then s_j for each step, then `ans` and s_k: with rng=None every
    thinking token is the first filler word (`hmm`); with an rng all four filler words occur."""
    t = toy_envs.make_task("chainsum", num_terms=3, filler=filler)
    prompts = t.sample_prompts(200, np.random.default_rng(0))
    seen = set()
    for rng in (None, np.random.default_rng(1)):
        for p, c in zip(prompts, t.solve(prompts, rng)):
            digits = [int(x) for x in t.decode(p[2:])]
            thinking, sums, answer = parse_chainsum(t, t.decode(c))
            assert sums == running_sums(digits) and answer == sums[-1]
            assert len(thinking) == 3 * filler
            if rng is None:
                assert set(thinking) <= {"hmm"}
            else:
                seen |= set(thinking)
    assert seen == (FILLER if filler else set())


def test_chainsum_mistakes_shift_every_running_sum_from_one_step_on():
    """A wrong ChainSum demonstration keeps the running sums right before some step j and adds one offset c in
    1..9 (mod 10) to every sum from step j on, answering its own last sum; every j in 1..k and every c occurs."""
    t = toy_envs.make_task("chainsum", num_terms=3, filler=1, wrong_prob=0.0)
    prompts, completions = t.demonstrations(N_DEMOS, np.random.default_rng(0), accuracy=0.0, null_prob=0.0)
    starts, offsets = set(), set()
    for p, c in zip(prompts, completions):
        words = t.decode(p)
        assert words[1] == "solve"
        true = running_sums([int(x) for x in words[2:]])
        _, sums, answer = parse_chainsum(t, t.decode(c[:-1]))
        diff = [(s - r) % 10 for s, r in zip(sums, true)]
        j = next(i for i, d in enumerate(diff) if d != 0)  # fails if no sum is off
        assert diff[j:] == [diff[j]] * (3 - j) and answer == sums[-1], (true, sums)
        starts.add(j)
        offsets.add(diff[j])
    assert starts == {0, 1, 2} and offsets == set(range(1, 10))


def test_chainsum_wrong_instruction_demos_keep_the_sums_and_change_the_answer():
    """With wrong_prob, that share of demonstrations asks `<bos> wrong d_1 .. d_k` and answers it with the right
    running sums and filler, but an answer that is a digit other than s_k (each of the nine occurs); the rest ask
    `solve` and stay correct (accuracy 1)."""
    t = toy_envs.make_task("chainsum", num_terms=3, filler=2, wrong_prob=0.5)
    prompts, completions = t.demonstrations(N_DEMOS, np.random.default_rng(0), accuracy=1.0, null_prob=0.0)
    n_wrong, answer_shifts, thinking_words = 0, set(), set()
    for p, c in zip(prompts, completions):
        words = t.decode(p)
        assert words[0] == "<bos>" and words[1] in ("solve", "wrong") and all(x.isdigit() for x in words[2:])
        true = running_sums([int(x) for x in words[2:]])
        thinking, sums, answer = parse_chainsum(t, t.decode(c[:-1]))
        assert sums == true
        if words[1] == "wrong":
            n_wrong += 1
            assert answer != true[-1]
            answer_shifts.add((answer - true[-1]) % 10)
            thinking_words |= set(thinking)
        else:
            assert answer == true[-1]
    assert within(n_wrong / N_DEMOS, 0.5, N_DEMOS)
    assert answer_shifts == set(range(1, 10)) and thinking_words == FILLER


def test_chainsum_score_parts_by_hand():
    """ChainSum's parts: `correct` (the answer is right: the reward) and `sums_right` (the share of the k running
    sums that are right), graded independently of each other."""
    t = toy_envs.make_task("chainsum", num_terms=3, filler=1)
    prompt = ["<bos>", "solve", "4", "8", "9"]  # running sums 4, 12 → 2, 11 → 1

    def resp(s1, s2, s3, answer):
        return ["hmm", s1, "so", s2, "ok", s3, "ans", answer, "<eos>"]

    responses = [
        resp("4", "2", "1", "1"),  # all right
        resp("4", "3", "3", "1"),  # one sum right, lucky answer
        resp("4", "2", "1", "7"),  # sums right, answer wrong
        resp("0", "0", "1", "0"),  # one sum right, answer wrong
        resp("9", "9", "9", "9"),  # nothing right
    ]
    s = t.score(ids(t, [prompt] * len(responses)), ids(t, responses))
    assert set(s.parts) == {"correct", "sums_right", "ended"}
    assert s.parts["correct"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0] and s.parts["correct"].dtype == np.float64
    assert s.reward.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert s.parts["sums_right"].tolist() == pytest.approx([1.0, 1 / 3, 1.0, 1 / 3, 0.0])
