"""The shared machinery of every toy task: vocabulary layout, scoring, demonstrations, negative prompts.

A task is a *one-step* sequence problem: a prompt of `prompt_len` tokens, a response of `response_len`
content tokens followed by EOS, and a scalar reward. With `require_eos` (default) a response without EOS
(truncated) scores 0; EOS is then required but is not a key token (it does not depend on the prompt). Every
task also knows its **key tokens**: the response positions that actually decide the reward. They are the
ground truth against which GCPO's token weights can be scored.

Token ids 0..3 are the same in every task:

    PAD=0  padding after EOS          BOS=1  first prompt token (kept in every negative prompt)
    EOS=2  ends a response            NULL=3 replaces prompt tokens in the null (CFG) prompt

Arrays are numpy int64; `n` is a batch of prompts/responses, `P` the prompt length, `T` the number of
response tokens handed to `score` (any T >= 0: the sampler's max_new_tokens), `L` the task's content length.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

PAD, BOS, EOS, NULL = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<null>"]
MISSING = -1  # content slot the response never reached (it stopped early)


# ---- argument checks: one-line ValueErrors that name the argument and its valid values ---------------------
def check_int(owner: str, name: str, value, lo: int, hi: int | None = None) -> int:
    """`value` as an int in [lo, hi] (hi None: no upper bound). A bool, a float (even 8.0) or a string is an
    error, never converted."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not ok or value < lo or (hi is not None and value > hi):
        valid = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}")
    return int(value)


def check_float(owner: str, name: str, value, lo: float, hi: float = math.inf) -> float:
    """`value` as a finite float in [lo, hi]; NaN, ±inf, bools and strings are errors."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        valid = f"a finite number >= {lo:g}" if hi == math.inf else f"a number in [{lo:g}, {hi:g}]"
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}")
    return float(value)


def check_bool(owner: str, name: str, value) -> bool:
    """`value` as a bool: True or False only (not 1, not 'yes')."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_rng(owner: str, rng) -> np.random.Generator:
    """`rng` unchanged if it is a numpy Generator (a seed or the legacy RandomState is an error)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{owner}: rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    return rng


@dataclass
class Score:
    """What `Task.score` returns for a batch of n responses of T tokens."""

    reward: np.ndarray  # (n,) float64: the task reward (plus noise when reward_noise > 0)
    key_mask: np.ndarray  # (n, T) bool: response tokens that decide the reward
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # named (n,) components of the reward


class Task:
    """Base class. Subclasses set `name`, `vocab`, `prompt_len`, `response_len`, `negative_kinds` and
    implement `_sample_prompts`, `solve`, `_corrupt`, `_score_content` (and optionally `_wrong_prompts`).
    Every constructor argument is checked (type and range) before use: a bad one is a one-line ValueError."""

    name: str = "task"
    negative_kinds: tuple[str, ...] = ("null",)

    def __init__(
        self,
        vocab: list[str] | None,
        prompt_len: int,
        response_len: int,
        reward_noise: float = 0.0,
        require_eos: bool = True,
    ):
        """vocab: the task's token strings after the four specials (None: a subclass with its own tokenizer)."""
        self.reward_noise = check_float(self.name, "reward_noise", reward_noise, 0.0)
        self.require_eos = check_bool(self.name, "require_eos", require_eos)
        if vocab is not None:
            self.vocab = SPECIALS + list(vocab)
            self.token_id = {tok: i for i, tok in enumerate(self.vocab)}
            if len(self.token_id) != len(self.vocab):
                raise ValueError(f"{type(self).__name__}: duplicate token strings in the vocabulary")
        self.prompt_len, self.response_len = prompt_len, response_len

    # ---- sizes ------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def prompt_mask(self, prompts: np.ndarray) -> np.ndarray:
        """(n, P) attention mask of prompts: 1 on every token (toy prompts have a fixed length, no padding)."""
        return np.ones(self._check_tokens(prompts, "prompts").shape, dtype=np.int64)

    @property
    def max_new_tokens(self) -> int:
        """Content tokens plus the EOS that ends a well-formed response."""
        return self.response_len + 1

    @property
    def demo_len(self) -> int:
        """Tokens in the longest demonstration, prompt + completion: the positions a model needs for the warm
        start (`demonstrations` returns completions of max_new_tokens tokens, the last one EOS)."""
        return self.prompt_len + self.max_new_tokens

    # ---- prompts --------------------------------------------------------------------------------------
    def sample_prompts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, P) int64 prompts, each starting with BOS (n = 0: an empty (0, P) array)."""
        n = check_int(self.name, "n", n, 0)
        check_rng(self.name, rng)
        if n == 0:
            return np.zeros((0, self.prompt_len), dtype=np.int64)
        return self._sample_prompts(n, rng).astype(np.int64)

    def negative_prompts(self, prompts: np.ndarray, kind: str = "null") -> np.ndarray:
        """(n, P) negative prompts for `prompts`. `null`: every token after BOS becomes NULL, the
        classifier-free-guidance unconditional prompt. `wrong` (where offered): a prompt that asks for a
        different target, the analogue of the paper's "intentionally give an incorrect answer"."""
        prompts = self._check_prompts(prompts)
        self._check_kind(kind)
        if kind == "null":
            neg = np.full_like(prompts, NULL)
            neg[:, 0] = BOS
            return neg
        return self._wrong_prompts(prompts).astype(np.int64)

    # ---- scoring ----------------------------------------------------------------------------------------
    def content(self, completions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split responses at their first EOS. Returns (content (n, L) with MISSING where the response
        stopped early, lengths (n,) = number of tokens before EOS). Tokens past L are ignored."""
        completions = self._check_tokens(completions, "completions")
        n, T = completions.shape
        is_eos = completions == EOS
        first_eos = is_eos.argmax(1) if T > 0 else np.zeros(n, dtype=np.int64)
        lengths = np.where(is_eos.any(1), first_eos, T)  # (n,)
        content = np.full((n, self.response_len), MISSING, dtype=np.int64)
        width = min(T, self.response_len)
        cols = np.arange(width)
        content[:, :width] = np.where(cols[None] < lengths[:, None], completions[:, :width], MISSING)
        return content, lengths

    def score(self, prompts: np.ndarray, completions: np.ndarray, rng: np.random.Generator | None = None) -> Score:
        """Rewards and key-token masks for n responses of T tokens (T any; PAD after EOS is ignored).

        The task's own rule (`_score_responses`), then two rules shared by every task: with `require_eos`, a
        response without EOS (truncated) scores 0, as in most RL-for-LLM setups; with `reward_noise` σ > 0,
        the reward gets σ·N(0, 1) noise drawn from `rng` (the noiseless reward stays in parts["clean_reward"])."""
        prompts = self._check_prompts(prompts)
        completions = self._check_tokens(completions, "completions")
        if completions.shape[0] != prompts.shape[0]:
            raise ValueError(
                f"{self.name}: {prompts.shape[0]} prompts but {completions.shape[0]} completions; "
                "pass one prompt row per completion"
            )
        if self.reward_noise > 0:
            if rng is None:
                raise ValueError(f"{self.name} has reward_noise={self.reward_noise}: pass rng= to score()")
            check_rng(self.name, rng)
        reward, key_mask, parts = self._score_responses(prompts, completions)
        reward = reward.astype(np.float64)
        if self.require_eos:
            ended = (completions == self.eos_id).any(1)
            reward = np.where(ended, reward, 0.0)
            parts = {**parts, "ended": ended.astype(np.float64)}
        if self.reward_noise > 0:
            parts = {**parts, "clean_reward": reward.copy()}
            reward = reward + self.reward_noise * rng.standard_normal(len(reward))
        return Score(reward=reward, key_mask=key_mask, parts=parts)

    def _score_responses(self, prompts, completions):
        """(reward (n,), key mask (n, T) bool, parts) before the EOS rule and the noise: the content before the
        first EOS scored by `_score_content`; key tokens only where the response actually wrote them."""
        valid = self._valid_prompts(prompts)
        if not valid.all():
            bad = np.flatnonzero(~valid)[:5].tolist()
            raise ValueError(
                f"{self.name}: prompt rows {bad} are not {self.name} prompts (a negative prompt?); "
                "score each response against the prompt that asked for it"
            )
        content, lengths = self.content(completions)
        reward, key_content, parts = self._score_content(prompts, content)
        n, T = completions.shape
        key_mask = np.zeros((n, T), dtype=bool)
        width = min(T, self.response_len)
        key_mask[:, :width] = key_content[:, :width] & (np.arange(width)[None] < lengths[:, None])
        return reward, key_mask, parts

    # ---- demonstrations (warm start) -------------------------------------------------------------------
    def demonstrations(
        self, n: int, rng: np.random.Generator, accuracy: float = 0.5, null_prob: float = 0.1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Imperfect demonstrations for the supervised warm start.

        A fraction `accuracy` of responses is correct (reward 1); the rest carry a task-specific mistake.
        Then, with probability `null_prob`, the prompt is dropped to the null prompt while the response is
        kept (prompt dropout, as in CFG training), so the model also learns p(y | null).
        Returns (prompts (n, P), completions (n, L + 1) ending in EOS)."""
        accuracy = check_float(self.name, "accuracy", accuracy, 0.0, 1.0)
        null_prob = check_float(self.name, "null_prob", null_prob, 0.0, 1.0)
        prompts = self.sample_prompts(n, rng)
        content = self.solve(prompts, rng)
        wrong = rng.random(n) >= accuracy
        if wrong.any():
            content[wrong] = self._corrupt(prompts[wrong], content[wrong], rng)
        prompts = self._extra_demo_prompts(prompts, content, rng)
        dropped = rng.random(n) < null_prob
        prompts[dropped] = self.negative_prompts(prompts[dropped], "null")
        completions = np.concatenate([content, np.full((n, 1), EOS, dtype=np.int64)], axis=1)
        return prompts, completions

    def _extra_demo_prompts(self, prompts, content, rng):
        """Hook for tasks whose demonstrations include other prompt kinds (ChainSum's WRONG instruction)."""
        return prompts

    # ---- text -----------------------------------------------------------------------------------------
    def decode(self, tokens) -> list[str]:
        """Token ids → token strings (one per id; any shape is flattened)."""
        return [self.vocab[t] for t in self._check_ids(tokens, "tokens").reshape(-1).tolist()]

    def prompt_string(self, prompt) -> str:
        """A prompt (or negative prompt) as one line of text."""
        return " ".join(self.decode(prompt))

    def render(self, prompt, completion, weights=None) -> str:
        """ANSI text: the prompt, then the response with each token shaded by `weights` (if given)."""
        from toy_envs.render import shade_tokens

        return (
            "prompt:   "
            + " ".join(self.decode(prompt))
            + "\nresponse: "
            + shade_tokens(self.decode(completion), weights)
        )

    # ---- validation -----------------------------------------------------------------------------------
    def _check_ids(self, arr, what: str) -> np.ndarray:
        """Any-shape array of token ids in [0, vocab_size) as int64; other dtypes or ids are a ValueError."""
        arr = np.asarray(arr)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{self.name}: {what} must hold integer token ids, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"{self.name}: {what} has token ids outside [0, {self.vocab_size}) of its vocabulary")
        return arr.astype(np.int64, copy=False)

    def _check_tokens(self, arr, what: str) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise ValueError(f"{self.name}: {what} must be a 2-D (n, length) array of token ids, got shape {arr.shape}")
        return self._check_ids(arr, what)

    def _check_prompts(self, prompts) -> np.ndarray:
        prompts = self._check_tokens(prompts, "prompts")
        if prompts.shape[1] != self.prompt_len:
            raise ValueError(f"{self.name}: prompts have {self.prompt_len} tokens, got {prompts.shape[1]}")
        return prompts

    def _check_kind(self, kind) -> None:
        if kind not in self.negative_kinds:
            raise ValueError(f"{self.name} has no negative prompt {kind!r}; choose one of {self.negative_kinds}")

    def _valid_prompts(self, prompts) -> np.ndarray:
        """(n,) bool: rows that are prompts this task asks (not negative or malformed ones)."""
        return prompts[:, 0] == BOS

    # ---- to implement ---------------------------------------------------------------------------------
    def _sample_prompts(self, n, rng):  # (n, P)
        raise NotImplementedError

    def solve(self, prompts, rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, L) content of a perfect response to each prompt; free (filler) tokens are drawn from `rng`,
        or set to the first filler token when rng is None."""
        raise NotImplementedError

    def _corrupt(self, prompts, content, rng) -> np.ndarray:
        """(m, L) content with a mistake that makes the reward < 1."""
        raise NotImplementedError

    def _score_content(self, prompts, content):
        """(reward (n,), key positions (n, L) bool, parts dict) from content with MISSING for absent slots."""
        raise NotImplementedError

    def _wrong_prompts(self, prompts):
        raise NotImplementedError


def other_than(values: np.ndarray, high: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform draws from [0, high) that differ elementwise from `values` (which lie in [0, high))."""
    return (values + rng.integers(1, high, size=values.shape)) % high
