"""Text tasks: prompts and responses in natural language, for a pretrained GPT-2 through the same loop.

A text task holds a tokenizer with the Hugging Face interface (`encode(text, add_special_tokens=False)`,
`decode(ids)`, `eos_token_id`, `pad_token_id`, `len()`): the model's own (GPT-2's byte-level BPE) when the
trainer loads a pretrained model, or, by default, `WordTokenizer`, one id per word of the task's closed
vocabulary, so the tiny from-scratch GPT-2 can run the same task on a laptop.

Prompts are a small fixed set of sentences, left-padded to the longest one (`prompt_mask` 0 on padding).
Responses are sampled until EOS or `max_new_tokens`. The reward is rule-based on the decoded text: words are
the runs of letters `[a-z]+` of the lower-cased text, and a *hit* is a word from a built-in lexicon. Key
tokens are the response tokens whose characters overlap a hit word: they alone decide the reward.

Unlike the symbolic tasks, text tasks do not require EOS by default (`require_eos=False`): a pretrained
GPT-2 seldom emits `<|endoftext|>` within a sentence-sized budget, and a reward of 0 for every truncated
response would leave it nothing to learn from.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from toy_envs.base import Task, check_float, check_int

WORD = re.compile(r"[a-z]+")
TEXT_TOKEN = re.compile(r"[a-z]+|[^\sa-z]")  # WordTokenizer's pieces: words and single punctuation marks


class WordTokenizer:
    """A closed-vocabulary word tokenizer with the slice of the Hugging Face tokenizer interface the tasks use.
    Ids: 0 `<pad>`, 1 `<eos>`, then the words in the order given. Text is lower-cased; a word outside the
    vocabulary is an error (the tasks' vocabularies cover every prompt and demonstration)."""

    pad_token, eos_token = "<pad>", "<eos>"
    pad_token_id, eos_token_id = 0, 1

    def __init__(self, words):
        self.vocab = [self.pad_token, self.eos_token] + sorted(set(words))
        self.ids = {w: i for i, w in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    FILE = "word_tokenizer.json"

    def save_pretrained(self, path: str) -> None:
        """Write the vocabulary to path/word_tokenizer.json (so a saved tiny model reloads with --model path)."""
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, self.FILE), "w") as f:
            json.dump({"words": self.vocab[2:]}, f)

    @classmethod
    def from_pretrained(cls, path: str) -> WordTokenizer:
        with open(os.path.join(path, cls.FILE)) as f:
            return cls(json.load(f)["words"])

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        pieces = TEXT_TOKEN.findall(text.lower())
        unknown = sorted({p for p in pieces if p not in self.ids})
        if unknown:
            raise ValueError(f"words outside this WordTokenizer's vocabulary: {unknown}")
        return [self.ids[p] for p in pieces]

    def decode(self, ids, skip_special_tokens: bool = False, **kwargs) -> str:
        out = ""
        for i in ids:
            tok = self.vocab[int(i)]
            if skip_special_tokens and int(i) in (self.pad_token_id, self.eos_token_id):
                continue
            out += tok if (not out or not tok[0].isalpha()) else " " + tok
        return out


def decode(tokenizer, ids) -> str:
    """Token ids → text, verbatim (no clean-up of spaces, so a prefix decodes to a prefix)."""
    return tokenizer.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)


def token_spans(tokenizer, ids) -> list[tuple[int, int]]:
    """Character span [start, end) of each token in decode(ids), from cumulative decoding (exact for any
    tokenizer whose decode of a prefix is a prefix of the full decode; otherwise spans stay monotone)."""
    spans, end = [], 0
    for i in range(len(ids)):
        new_end = max(end, len(decode(tokenizer, ids[: i + 1])))
        spans.append((end, new_end))
        end = new_end
    return spans


def stand_in_tokenizer(vocab_size: int = 600, filler_words: int = 0, seed: int = 0):
    """A GPT-2-style byte-level BPE tokenizer (EOS = BOS = pad = `<|endoftext|>`), trained offline on the text
    tasks' own sentences plus `filler_words` random letter strings (to reach a GPT-2-sized vocabulary of
    50257). For tests and benchmarks on machines without the real GPT-2 files; nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = (Topic.texts() + Sentiment.texts()) * 20
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    corpus += ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(filler_words)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def save_stand_in_gpt2(path: str, width: int = 32, n_positions: int = 128) -> str:
    """Save a tiny random-init GPT-2 (2 layers, `width` wide, 2 heads, GPT-2's dropout kept) with the
    stand_in_tokenizer (asked for 600 tokens; on its corpus it stops at 580) to `path`, loadable with
    from_pretrained: the TRL tests' and bench_trl.py's model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = stand_in_tokenizer(600)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=n_positions,
            n_embd=width,
            n_layer=2,
            n_head=2,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    ).save_pretrained(path)
    return path


class TextTask(Task):
    """Base of the text tasks. Subclasses define `PROMPTS` (label → prompt text), `negative_kinds` and
    `_negative_text(label, kind)` (the negative prompts' text), `unconditional` (the kind without the
    condition), `LEXICON` (label → words), `FRAMES` (demonstration sentences with `{}` slots) and
    `_reward(label, words)`."""

    negative_kinds: tuple[str, ...] = ()
    unconditional: str = ""  # the negative kind that drops the condition: the warm start's prompt dropout
    PROMPTS: dict[str, str] = {}
    LEXICON: dict[str, list[str]] = {}
    FRAMES: list[str] = []

    def __init__(self, tokenizer=None, max_new_tokens: int = 16, reward_noise: float = 0.0, require_eos: bool = False):
        max_new_tokens = check_int(self.name, "max_new_tokens", max_new_tokens, 1)
        self.labels = list(self.PROMPTS)
        self.tokenizer = tokenizer if tokenizer is not None else WordTokenizer(self._all_words())
        missing = [
            a for a in ("encode", "decode", "eos_token_id", "pad_token_id", "__len__") if not hasattr(self.tokenizer, a)
        ]
        if missing:
            raise ValueError(
                f"{self.name}: tokenizer must be a tokenizer object with the Hugging Face interface "
                f"(encode, decode, eos_token_id, pad_token_id, len), got {self.tokenizer!r:.80}"
            )
        if self.tokenizer.eos_token_id is None:
            raise ValueError(
                f"{self.name}: the tokenizer has no EOS token; set tokenizer.eos_token (GPT-2: "
                "'<|endoftext|>') so responses can end"
            )
        self.eos_id = self.bos_id = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.eos_id if pad is None else int(pad)  # GPT-2 convention: pad = eos
        # every prompt and negative prompt, encoded once; left-padded to one width
        texts = {
            (label, kind): self._prompt_text(label, kind)
            for label in self.labels
            for kind in ("prompt",) + self.negative_kinds
        }
        encoded = {k: self.tokenizer.encode(t, add_special_tokens=False) for k, t in texts.items()}
        for k, ids in encoded.items():
            if not ids or ids[0] == self.pad_id:
                raise ValueError(f"{self.name}: prompt {texts[k]!r} is empty or starts with the pad token")
        prompt_len = max(len(ids) for ids in encoded.values())
        super().__init__(None, prompt_len, max_new_tokens, reward_noise, require_eos)
        self._ids = {
            k: np.array([self.pad_id] * (self.prompt_len - len(v)) + v, dtype=np.int64) for k, v in encoded.items()
        }
        self._label_of = {tuple(self._ids[(label, "prompt")]): label for label in self.labels}

    @classmethod
    def texts(cls) -> list[str]:
        """Every text the task writes: prompts, negative prompts, demonstration frames, lexicon lines."""
        return (
            list(cls.PROMPTS.values())
            + [f.replace("{}", "") for f in cls.FRAMES]
            + [" ".join(words) for words in cls.LEXICON.values()]
            + [cls._negative_text(label, kind) for label in cls.PROMPTS for kind in cls.negative_kinds]
        )

    @classmethod
    def _all_words(cls) -> list[str]:
        return TEXT_TOKEN.findall(" ".join(cls.texts()).lower())

    def _prompt_text(self, label: str, kind: str) -> str:
        return self.PROMPTS[label] if kind == "prompt" else self._negative_text(label, kind)

    @classmethod
    def _negative_text(cls, label: str, kind: str) -> str:
        raise NotImplementedError

    # ---- the Task interface ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def max_new_tokens(self) -> int:
        """The response budget (a text response need not end with EOS); demonstrations are this wide too."""
        return self.response_len

    def prompt_mask(self, prompts: np.ndarray) -> np.ndarray:
        """(n, P): 0 on the left padding (the pad tokens before a prompt's first real token), 1 elsewhere."""
        prompts = self._check_tokens(prompts, "prompts")
        return (np.cumsum(prompts != self.pad_id, axis=1) > 0).astype(np.int64)

    def _sample_prompts(self, n, rng):
        labels = rng.integers(0, len(self.labels), n)
        return np.stack([self._ids[(self.labels[i], "prompt")] for i in labels])

    def label(self, prompts: np.ndarray) -> list[str]:
        """The target label of each prompt row; a row that is not one of this task's prompts is an error."""
        out = []
        for row in self._check_prompts(prompts):
            if tuple(row) not in self._label_of:
                raise ValueError(
                    f"{self.name}: prompt {decode(self.tokenizer, row[row != self.pad_id])!r} "
                    f"is not one of the task's prompts {list(self.PROMPTS.values())}"
                )
            out.append(self._label_of[tuple(row)])
        return out

    def negative_prompts(self, prompts: np.ndarray, kind: str | None = None) -> np.ndarray:
        """(n, P) negative prompts; kind defaults to the task's first (see the task docstring)."""
        kind = kind or self.negative_kinds[0]
        self._check_kind(kind)
        rows = [self._ids[(label, kind)] for label in self.label(prompts)]
        return np.stack(rows) if rows else np.zeros((0, self.prompt_len), dtype=np.int64)

    def response_text(self, completion) -> tuple[str, int]:
        """(decoded text before the first EOS, number of tokens before it) of one response (T,)."""
        completion = self._check_ids(completion, "completion")
        if completion.ndim != 1:
            raise ValueError(f"{self.name}: response_text takes one response (T,), got shape {completion.shape}")
        ids = completion.tolist()
        n = ids.index(self.eos_id) if self.eos_id in ids else len(ids)
        return decode(self.tokenizer, ids[:n]), n

    def _score_responses(self, prompts, completions):
        """The rule-based reward of each response's text before EOS; key tokens are those overlapping a
        lexicon hit (see `_reward`). Task.score adds the EOS rule and the noise."""
        n, T = completions.shape
        reward, key_mask, hits = np.zeros(n), np.zeros((n, T), dtype=bool), np.zeros(n)
        for i, (label, completion) in enumerate(zip(self.label(prompts), completions)):
            text, length = self.response_text(completion)
            words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text.lower())]
            reward[i], hit_words = self._reward(label, [w for w, _, _ in words])
            hit_spans = [(s, e) for (w, s, e) in words if w in hit_words]
            hits[i] = len(hit_spans)
            for t, (a, b) in enumerate(token_spans(self.tokenizer, completion[:length]) if hit_spans else []):
                key_mask[i, t] = any(a < e and s < b for s, e in hit_spans)
        return reward, key_mask, {"hits": hits}

    def _reward(self, label: str, words: list[str]) -> tuple[float, set[str]]:
        """(reward, the set of words that count as hits) for the response's words under the target label."""
        raise NotImplementedError

    # ---- demonstrations (warm start of the tiny model) -------------------------------------------------
    def demonstrations(
        self, n: int, rng: np.random.Generator, accuracy: float = 0.5, null_prob: float = 0.1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Template sentences filled with words of the target's lexicon (probability `accuracy`) or of another
        label's; then, with probability `null_prob`, the prompt drops to the `unconditional` negative prompt
        (prompt dropout, as in CFG training).
        Returns (prompts (n, P), completions (n, max_new_tokens): the sentence, EOS, then pad)."""
        accuracy = check_float(self.name, "accuracy", accuracy, 0.0, 1.0)
        null_prob = check_float(self.name, "null_prob", null_prob, 0.0, 1.0)
        prompts = self.sample_prompts(n, rng)
        labels = self.label(prompts)
        completions = np.full((n, self.response_len), self.pad_id, dtype=np.int64)
        for i, label in enumerate(labels):
            source = label if rng.random() < accuracy else self._demo_mistake(label, rng)
            frame = self.FRAMES[rng.integers(len(self.FRAMES))]
            words = rng.choice(self.LEXICON[source], size=frame.count("{}"), replace=False)
            ids = self.tokenizer.encode(" " + frame.format(*words), add_special_tokens=False)
            ids = ids[: self.response_len - 1] + [self.eos_id]
            completions[i, : len(ids)] = ids
        dropped = rng.random(n) < null_prob
        if dropped.any():
            prompts[dropped] = self.negative_prompts(prompts[dropped], self.unconditional)
        return prompts, completions

    def _demo_mistake(self, label: str, rng) -> str:
        others = [lab for lab in self.LEXICON if lab != label]
        return others[rng.integers(len(others))]

    # ---- text -----------------------------------------------------------------------------------------
    def decode(self, tokens) -> list[str]:
        """Token ids → one display string per token (the token's own decoded text)."""
        return [decode(self.tokenizer, [t]) for t in self._check_ids(tokens, "tokens").reshape(-1)]

    def prompt_string(self, prompt) -> str:
        prompt = self._check_ids(prompt, "prompt").reshape(-1)
        return decode(self.tokenizer, prompt[self.prompt_mask(prompt[None])[0].astype(bool)])

    def render(self, prompt, completion, weights=None) -> str:
        from toy_envs.render import shade_tokens

        return (
            "prompt:   "
            + self.prompt_string(prompt)
            + "\nresponse: "
            + shade_tokens([t.strip() or repr(t) for t in self.decode(completion)], weights)
        )


class Topic(TextTask):
    """Topic: write about the topic the prompt names.

    Prompt   `Here is a sentence about the {topic}:` for one of five topics.
    Reward   min(# distinct words of the topic's lexicon in the response, 3) / 3, in [0, 1].
    Key      the tokens of every occurrence of a topic-lexicon word.
    Negative `notopic` (`Here is a sentence:`, the unconditional prompt) and `other` (the next topic).
    """

    name = "topic"
    negative_kinds = ("notopic", "other")
    unconditional = "notopic"
    PROMPTS = {t: f"Here is a sentence about the {t}:" for t in ("ocean", "space", "food", "music", "forest")}
    LEXICON = {
        "ocean": ["sea", "wave", "waves", "fish", "ship", "boat", "beach", "water", "whale", "coral", "sand", "tide"],
        "space": [
            "star",
            "stars",
            "moon",
            "planet",
            "rocket",
            "orbit",
            "sun",
            "galaxy",
            "earth",
            "sky",
            "mars",
            "comet",
        ],
        "food": ["bread", "cheese", "soup", "rice", "apple", "cake", "dinner", "meal", "cook", "eat", "taste", "fruit"],
        "music": [
            "song",
            "songs",
            "band",
            "guitar",
            "piano",
            "sing",
            "drum",
            "music",
            "melody",
            "note",
            "concert",
            "dance",
        ],
        "forest": ["tree", "trees", "wood", "leaf", "leaves", "bird", "birds", "deer", "moss", "pine", "path", "wolf"],
    }
    FRAMES = [
        "I like the {} , the {} and the {} .",
        "We saw a {} and a {} near the {} .",  # CAP slots each
        "The {} was next to the {} and the {} today .",
        "My friend loves the {} , the {} and the {} .",
    ]
    CAP = 3

    @classmethod
    def _negative_text(cls, label, kind):
        if kind == "notopic":
            return "Here is a sentence:"
        topics = list(cls.PROMPTS)
        return cls.PROMPTS[topics[(topics.index(label) + 1) % len(topics)]]

    def _reward(self, label, words):
        lexicon = set(self.LEXICON[label])
        return min(len(set(words) & lexicon), self.CAP) / self.CAP, lexicon


class Sentiment(TextTask):
    """Sentiment: write a review with the sentiment the prompt asks for.

    Prompt   `Here is a {positive|negative} review of the film:`.
    Reward   clip(# target-sentiment words − # opposite-sentiment words, −2, 2) / 2, in [−1, 1] (counting
             occurrences, from a built-in lexicon of 12 words per side).
    Key      the tokens of every word of either lexicon (both move the reward).
    Negative `opposite` (asks for the other sentiment: the paper's "give a wrong answer") and `neutral`
             (`Here is a review of the film:`).
    """

    name = "sentiment"
    negative_kinds = ("opposite", "neutral")
    unconditional = "neutral"
    PROMPTS = {
        "positive": "Here is a positive review of the film:",
        "negative": "Here is a negative review of the film:",
    }
    LEXICON = {
        "positive": [
            "good",
            "great",
            "love",
            "loved",
            "best",
            "fun",
            "beautiful",
            "wonderful",
            "amazing",
            "enjoyed",
            "brilliant",
            "perfect",
        ],
        "negative": [
            "bad",
            "boring",
            "awful",
            "worst",
            "hate",
            "hated",
            "terrible",
            "dull",
            "poor",
            "waste",
            "ugly",
            "mess",
        ],
    }
    FRAMES = ["The film was {} and {} .", "I thought the story was {} , really {} .", "It is a {} film with a {} end ."]

    @classmethod
    def _negative_text(cls, label, kind):
        if kind == "neutral":
            return "Here is a review of the film:"
        return cls.PROMPTS["negative" if label == "positive" else "positive"]

    def _reward(self, label, words):
        other = "negative" if label == "positive" else "positive"
        good, bad = set(self.LEXICON[label]), set(self.LEXICON[other])
        net = sum(w in good for w in words) - sum(w in bad for w in words)
        return float(np.clip(net, -2, 2)) / 2, good | bad
