"""The toy tasks. Each docstring states the prompt format, the reward, the key tokens and the negatives."""

from __future__ import annotations

import numpy as np

from toy_envs.base import BOS, Task, check_bool, check_float, check_int, other_than


class Needle(Task):
    """Needle: one response position decides the reward; every other token is free filler.

    Prompt   `<bos> @p s`: put symbol `s` at response position `p` (0-based).
    Response `length` tokens, then EOS: filler tokens (`.`, `,`, `;`, `:`) anywhere, a symbol at p.
    Reward   1 if response[p] == s else 0.
    Key      position p only: the needle in a haystack of `length - 1` filler tokens. Credit gets harder as
             `length` grows, which is exactly where uniform (GRPO) credit wastes signal.
    Negative `null` (`<bos> <null> <null>`) and `wrong` (`<bos> @p s+1`: same place, another symbol).
    Demos    filler uniform over the filler tokens; response[p] = s with probability `accuracy`, else another
             symbol. p is `position` for every prompt (default length // 2); `random_position=True` draws p
             uniformly per prompt (much harder for a tiny model to learn from demonstrations).
    """

    name = "needle"
    negative_kinds = ("null", "wrong")
    FILLER = [".", ",", ";", ":"]

    def __init__(
        self,
        length: int = 8,
        num_symbols: int = 8,
        position: int | None = None,
        random_position: bool = False,
        reward_noise: float = 0.0,
        require_eos: bool = True,
    ):
        length = check_int(self.name, "length", length, 1)
        num_symbols = check_int(self.name, "num_symbols", num_symbols, 2)
        random_position = check_bool(self.name, "random_position", random_position)
        if position is not None and random_position:
            raise ValueError(
                f"{self.name}: position={position!r} has no effect with random_position=True (each "
                "prompt draws its own); give one of the two"
            )
        position = length // 2 if position is None else check_int(self.name, "position", position, 0, length - 1)
        self.length, self.num_symbols, self.position = length, num_symbols, position
        self.random_position = random_position
        symbols = [chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(num_symbols)]
        super().__init__(
            symbols + self.FILLER + [f"@{p}" for p in range(length)],
            prompt_len=3,
            response_len=length,
            reward_noise=reward_noise,
            require_eos=require_eos,
        )
        self.sym0 = 4  # first symbol id
        self.filler0 = self.sym0 + num_symbols
        self.pos0 = self.filler0 + len(self.FILLER)  # first position-token id

    def _sample_prompts(self, n, rng):
        pos = rng.integers(0, self.length, n) if self.random_position else np.full(n, self.position)
        sym = rng.integers(0, self.num_symbols, n)
        return np.stack([np.full(n, BOS), self.pos0 + pos, self.sym0 + sym], axis=1)

    def _target(self, prompts):
        return prompts[:, 1] - self.pos0, prompts[:, 2]  # (n,) positions, (n,) symbol ids

    def _valid_prompts(self, prompts):
        pos, sym = self._target(prompts)
        return (
            (prompts[:, 0] == BOS)
            & (0 <= pos)
            & (pos < self.length)
            & (self.sym0 <= sym)
            & (sym < self.sym0 + self.num_symbols)
        )

    def solve(self, prompts, rng=None):
        pos, sym = self._target(prompts)
        n, F = len(prompts), len(self.FILLER)
        filler = rng.integers(0, F, (n, self.length)) if rng is not None else np.zeros((n, self.length), int)
        content = self.filler0 + filler
        content[np.arange(n), pos] = sym
        return content

    def _corrupt(self, prompts, content, rng):
        pos, sym = self._target(prompts)
        rows = np.arange(len(prompts))
        content[rows, pos] = self.sym0 + other_than(sym - self.sym0, self.num_symbols, rng)
        return content

    def _score_content(self, prompts, content):
        pos, sym = self._target(prompts)
        rows = np.arange(len(prompts))
        hit = content[rows, pos] == sym
        key = np.zeros(content.shape, dtype=bool)
        key[rows, pos] = True
        return hit.astype(np.float64), key, {"hit": hit.astype(np.float64)}

    def _wrong_prompts(self, prompts):
        wrong = prompts.copy()
        wrong[:, 2] = self.sym0 + (prompts[:, 2] - self.sym0 + 1) % self.num_symbols
        return wrong


class Copy(Task):
    """Copy (or Reverse): the response must reproduce the prompt's symbols; every token is key.

    Prompt   `<bos> s_1 .. s_L`.
    Response `s_1 .. s_L` (`reverse=True`: `s_L .. s_1`), then EOS.
    Reward   the fraction of the L positions that are right.
    Key      all L content positions: the control task, where no token is filler and GCPO should behave
             like its base algorithm.
    Negative `null` and `wrong` (every symbol shifted by one).
    Demos    correct with probability `accuracy`; otherwise 1..L positions replaced by other symbols.
    """

    name = "copy"
    negative_kinds = ("null", "wrong")

    def __init__(
        self,
        length: int = 6,
        num_symbols: int = 6,
        reverse: bool = False,
        reward_noise: float = 0.0,
        require_eos: bool = True,
    ):
        length = check_int(self.name, "length", length, 1)
        num_symbols = check_int(self.name, "num_symbols", num_symbols, 2)
        self.length, self.num_symbols, self.reverse = length, num_symbols, check_bool(self.name, "reverse", reverse)
        symbols = [chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(num_symbols)]
        super().__init__(
            symbols, prompt_len=1 + length, response_len=length, reward_noise=reward_noise, require_eos=require_eos
        )
        self.sym0 = 4

    def _sample_prompts(self, n, rng):
        syms = self.sym0 + rng.integers(0, self.num_symbols, (n, self.length))
        return np.concatenate([np.full((n, 1), BOS), syms], axis=1)

    def _valid_prompts(self, prompts):
        body = prompts[:, 1:]
        return (prompts[:, 0] == BOS) & ((self.sym0 <= body) & (body < self.sym0 + self.num_symbols)).all(1)

    def solve(self, prompts, rng=None):
        body = prompts[:, 1:].copy()
        return body[:, ::-1].copy() if self.reverse else body

    def _corrupt(self, prompts, content, rng):
        m = len(content)
        n_bad = rng.integers(1, self.length + 1, m)  # how many positions go wrong
        bad = np.argsort(rng.random((m, self.length)), axis=1) < n_bad[:, None]  # random subset per row
        shifted = self.sym0 + other_than(content - self.sym0, self.num_symbols, rng)
        return np.where(bad, shifted, content)

    def _score_content(self, prompts, content):
        right = content == self.solve(prompts)
        frac = right.mean(1)
        return frac, np.ones(content.shape, dtype=bool), {"correct_fraction": frac}

    def _wrong_prompts(self, prompts):
        wrong = prompts.copy()
        wrong[:, 1:] = self.sym0 + (prompts[:, 1:] - self.sym0 + 1) % self.num_symbols
        return wrong


def grid_shapes(height: int, width: int) -> dict[str, np.ndarray]:
    """Named boolean (H, W) masks: the shapes GridPaint can ask for."""
    r, c = np.mgrid[0:height, 0:width]
    mr, mc = height // 2, width // 2
    return {
        "square": (r >= 1) & (r <= height - 2) & (c >= 1) & (c <= width - 2),
        "plus": (r == mr) | (c == mc),
        "hline": r == mr,
        "vline": c == mc,
        "frame": (r == 0) | (r == height - 1) | (c == 0) | (c == width - 1),
    }


class GridPaint(Task):
    """GridPaint: the text-to-image analogue. Paint a shape in a colour on an H×W pixel grid.

    Prompt   `<bos> colour shape` (e.g. `<bos> =red plus`).
    Response H·W pixel tokens in raster order (`.` background or a colour), then EOS.
    Reward   IoU between the pixels painted in the prompt's colour and the shape's mask (1 = perfect).
    Key      the pixels of the shape: the prompt constrains them to its colour. Background pixels only
             need to avoid that colour.
    Negative `null` (the CFG unconditional prompt: no colour, no shape) and `wrong` (the next colour, same
             shape: the contrast is then exactly on the shape's pixels).
    Demos    perfect with probability `accuracy`; otherwise the right shape in a wrong colour or a wrong
             shape in the right colour (half each).
    """

    name = "gridpaint"
    negative_kinds = ("null", "wrong")
    COLOURS = ["red", "green", "blue", "yellow", "magenta", "cyan"]

    def __init__(
        self, height: int = 5, width: int = 5, num_colours: int = 3, reward_noise: float = 0.0, require_eos: bool = True
    ):
        height = check_int(self.name, "height", height, 3)
        width = check_int(self.name, "width", width, 3)
        num_colours = check_int(self.name, "num_colours", num_colours, 2, len(self.COLOURS))
        self.height, self.width, self.num_colours = height, width, num_colours
        self.shapes = grid_shapes(height, width)
        self.shape_names = list(self.shapes)
        self.masks = np.stack([m.reshape(-1) for m in self.shapes.values()])  # (num_shapes, H*W)
        colours = self.COLOURS[:num_colours]
        super().__init__(
            [f"={c}" for c in colours] + self.shape_names + ["."] + colours,
            prompt_len=3,
            response_len=height * width,
            reward_noise=reward_noise,
            require_eos=require_eos,
        )
        self.col0 = 4  # prompt colour tokens
        self.shape0 = self.col0 + num_colours
        self.bg = self.shape0 + len(self.shape_names)  # background pixel; colour pixels follow it

    def _sample_prompts(self, n, rng):
        col, shp = rng.integers(0, self.num_colours, n), rng.integers(0, len(self.shape_names), n)
        return np.stack([np.full(n, BOS), self.col0 + col, self.shape0 + shp], axis=1)

    def _target(self, prompts):
        colour = prompts[:, 1] - self.col0  # (n,)
        mask = self.masks[prompts[:, 2] - self.shape0]  # (n, H*W)
        return colour, mask

    def _valid_prompts(self, prompts):
        colour, shape = prompts[:, 1] - self.col0, prompts[:, 2] - self.shape0
        return (
            (prompts[:, 0] == BOS)
            & (0 <= colour)
            & (colour < self.num_colours)
            & (0 <= shape)
            & (shape < len(self.shape_names))
        )

    def _paint(self, colour, mask):
        return np.where(mask, self.bg + 1 + colour[:, None], self.bg)

    def solve(self, prompts, rng=None):
        return self._paint(*self._target(prompts))

    def _corrupt(self, prompts, content, rng):
        colour, mask = self._target(prompts)
        m = len(prompts)
        shape = prompts[:, 2] - self.shape0
        wrong_colour = other_than(colour, self.num_colours, rng)
        wrong_shape = self.masks[other_than(shape, len(self.shape_names), rng)]
        recolour = rng.random(m) < 0.5
        return np.where(recolour[:, None], self._paint(wrong_colour, mask), self._paint(colour, wrong_shape))

    def _score_content(self, prompts, content):
        colour, mask = self._target(prompts)
        painted = content == (self.bg + 1 + colour)[:, None]  # (n, H*W)
        inter, union = (painted & mask).sum(1), (painted | mask).sum(1)
        iou = inter / np.maximum(union, 1)
        return iou, mask.copy(), {"iou": iou, "painted": painted.sum(1).astype(np.float64)}

    def _wrong_prompts(self, prompts):
        wrong = prompts.copy()
        wrong[:, 1] = self.col0 + (prompts[:, 1] - self.col0 + 1) % self.num_colours
        return wrong

    def render(self, prompt, completion, weights=None):
        from toy_envs.render import render_grid

        content, _ = self.content(np.asarray(completion).reshape(1, -1))
        return (
            "prompt: "
            + " ".join(self.decode(prompt))
            + "\n"
            + render_grid(content[0] - self.bg, self.height, self.width, self.COLOURS[: self.num_colours], weights)
        )


class ChainSum(Task):
    """ChainSum: the reasoning analogue. Add digits mod 10, thinking aloud, then answer.

    Prompt   `<bos> solve d_1 .. d_k`.
    Response for j = 1..k: `filler` thinking tokens then the running sum s_j = (d_1 + .. + d_j) mod 10;
             then `ans` and the answer s_k; then EOS. Length k·(filler + 1) + 2.
    Reward   1 if the answer token equals (d_1 + .. + d_k) mod 10, else 0 (only the answer is graded).
    Key      the answer and the running sums that determine it. Thinking tokens (`hmm`, `so`, ...) are free.
    Negative `null` and `wrong`: `<bos> wrong d_1 .. d_k`, the instruction to answer incorrectly (the
             paper's best negative for reasoning). Demonstrations include `wrong_prob` such prompts, with
             correct running sums and a wrong answer, so the model knows what the instruction means.
    Demos    correct with probability `accuracy`; otherwise a running sum is off from a random step on, so
             the answer is wrong too.
    """

    name = "chainsum"
    negative_kinds = ("null", "wrong")
    FILLER = ["hmm", "so", "then", "ok"]

    def __init__(
        self,
        num_terms: int = 3,
        filler: int = 2,
        wrong_prob: float = 0.1,
        reward_noise: float = 0.0,
        require_eos: bool = True,
    ):
        num_terms = check_int(self.name, "num_terms", num_terms, 2)
        filler = check_int(self.name, "filler", filler, 0)
        wrong_prob = check_float(self.name, "wrong_prob", wrong_prob, 0.0, 1.0)
        self.num_terms, self.filler, self.wrong_prob = num_terms, filler, wrong_prob
        super().__init__(
            [str(d) for d in range(10)] + ["solve", "wrong", "ans"] + self.FILLER,
            prompt_len=2 + num_terms,
            response_len=num_terms * (filler + 1) + 2,
            reward_noise=reward_noise,
            require_eos=require_eos,
        )
        self.digit0, self.solve_tok, self.wrong_tok, self.ans_tok = 4, 14, 15, 16
        self.filler0 = 17
        step = filler + 1
        self.sum_pos = np.arange(num_terms) * step + filler  # content slots of s_1..s_k
        self.answer_pos = self.response_len - 1

    def _sample_prompts(self, n, rng):
        digits = self.digit0 + rng.integers(0, 10, (n, self.num_terms))
        return np.concatenate([np.full((n, 1), BOS), np.full((n, 1), self.solve_tok), digits], axis=1)

    def _valid_prompts(self, prompts):
        digits = prompts[:, 2:] - self.digit0
        return (
            (prompts[:, 0] == BOS)
            & np.isin(prompts[:, 1], [self.solve_tok, self.wrong_tok])
            & ((0 <= digits) & (digits < 10)).all(1)
        )

    def _running_sums(self, prompts):
        return np.cumsum(prompts[:, 2:] - self.digit0, axis=1) % 10  # (n, k)

    def _layout(self, sums, answer, rng):
        n = len(sums)
        shape = (n, self.response_len)
        content = self.filler0 + (rng.integers(0, len(self.FILLER), shape) if rng is not None else np.zeros(shape, int))
        content[:, self.sum_pos] = self.digit0 + sums
        content[:, self.answer_pos - 1] = self.ans_tok
        content[:, self.answer_pos] = self.digit0 + answer
        return content

    def solve(self, prompts, rng=None):
        sums = self._running_sums(prompts)
        return self._layout(sums, sums[:, -1], rng)

    def _extra_demo_prompts(self, prompts, content, rng):
        wrong = rng.random(len(prompts)) < self.wrong_prob
        prompts[wrong, 1] = self.wrong_tok
        sums = self._running_sums(prompts[wrong])
        content[wrong] = self._layout(sums, other_than(sums[:, -1], 10, rng), rng)
        return prompts

    def _corrupt(self, prompts, content, rng):
        m = len(prompts)
        start = rng.integers(0, self.num_terms, m)  # the first wrong running sum
        offset = rng.integers(1, 10, m)
        sums = self._running_sums(prompts)
        sums = (sums + np.where(np.arange(self.num_terms)[None] >= start[:, None], offset[:, None], 0)) % 10
        content[:, self.sum_pos] = self.digit0 + sums
        content[:, self.answer_pos] = self.digit0 + sums[:, -1]
        return content

    def _score_content(self, prompts, content):
        answer = self._running_sums(prompts)[:, -1]
        correct = content[:, self.answer_pos] == self.digit0 + answer
        key = np.zeros(content.shape, dtype=bool)
        key[:, self.sum_pos] = True
        key[:, self.answer_pos] = True
        sums_right = (content[:, self.sum_pos] == self.digit0 + self._running_sums(prompts)).mean(1)
        return correct.astype(np.float64), key, {"correct": correct.astype(np.float64), "sums_right": sums_right}

    def _wrong_prompts(self, prompts):
        wrong = prompts.copy()
        wrong[:, 1] = self.wrong_tok
        return wrong
