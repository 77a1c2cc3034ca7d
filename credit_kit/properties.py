"""The properties a credit scheme may claim, each a small function, checked on inputs that hypothesis draws with a
fixed seed and shrinks to a small counterexample when a property fails.

A property is a function (scheme, draw) → None, or a string saying what went wrong: it draws a batch (and whatever
else it needs) with `draw`, runs the scheme with `weigh`, and compares. Its docstring says what it protects and
why a scheme might not claim it. `check_properties` runs every property a scheme claims (gcpo_support.schemes:
CORE unless declared not_claimed, OPTIONAL when declared in claims) and returns one Result per property.

Every drawn batch is consistent, as the trainer's are: logp_all is a log-softmax over a vocabulary of V tokens and
logp its entry at the response token, the same for the negative prompt, entropy is that of logp_all, key_mask ⊆ mask,
every response is a prefix of valid tokens followed by padding (with junk log-probs on the padding, as a forward
pass gives), adv is the group z-score of rewards in groups of group_size rows, and generator a seeded
torch.Generator. Logits are multiples of ½ (so ties occur, as they do in real batches) scaled by 1 or 8 (so that
log-prob gaps pass the ±20 clamp of GCPO's score).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

try:
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from hypothesis import strategies as st
except ImportError:  # (requirements-dev.txt installs it)
    raise ImportError("credit_kit draws its inputs with hypothesis: pip install 'hypothesis>=6.100'") from None

from gcpo_support import schemes
from gcpo_support.loading import load_object, parse_task_args

# ---------------------------------------------------------------------------------------------------------
# INPUTS: a batch is drawn as a few small integer arrays (a "spec") and built into the scheme's tensors


@dataclasses.dataclass
class Spec:
    """A batch before it becomes tensors: (N, T, V) logits of the prompt and the negative prompt (in units of ½),
    (N, T) response tokens, (N,) lengths, (N, T) key flags, (N,) rewards (in units of ½); N = B·G."""

    logits: np.ndarray
    neg_logits: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    key: np.ndarray
    rewards: np.ndarray
    group_size: int
    scale: float = 1.0
    seed: int = 0
    adv: np.ndarray | None = None  # (N,) float: given, instead of the group z-score (rows taken out of a batch)

    def rows(self, idx) -> Spec:
        idx = np.asarray(idx, dtype=np.int64)
        return dataclasses.replace(
            self,
            logits=self.logits[idx],
            neg_logits=self.neg_logits[idx],
            tokens=self.tokens[idx],
            lengths=self.lengths[idx],
            key=self.key[idx],
            rewards=self.rewards[idx],
            adv=None if self.adv is None else self.adv[idx],
        )

    def with_adv(self) -> Spec:
        """The same batch with its group advantages fixed, so that its rows keep them when taken apart."""
        return dataclasses.replace(self, adv=group_zscore(torch.as_tensor(self.rewards * 0.5), self.group_size).numpy())

    def columns(self, T: int) -> Spec:
        return dataclasses.replace(
            self,
            logits=self.logits[:, :T],
            neg_logits=self.neg_logits[:, :T],
            tokens=self.tokens[:, :T],
            lengths=np.minimum(self.lengths, T),
            key=self.key[:, :T],
        )


def group_zscore(rewards: torch.Tensor, G: int) -> torch.Tensor:
    """A_i = (r_i − mean_G r)/(std_G r + 1e-6), 0 for a group whose rewards are all equal (gcpo.group_advantages,
    written again so that the kit needs no trainer). (N,) → (N,)."""
    if len(rewards) == 0:
        return rewards.clone()
    r = rewards.view(-1, G)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6) if G > 1 else torch.zeros_like(r)
    flat = r.amax(1, keepdim=True) == r.amin(1, keepdim=True)
    return adv.masked_fill(flat, 0.0).reshape(-1)


def build(spec: Spec, dtype=torch.float32, grad: bool = False) -> dict:
    """The spec as the inputs a scheme may name (gcpo_support.schemes.INPUTS), float ones in `dtype`; with grad,
    the log-probs, entropy, adv and rewards are computed from leaf tensors that require a gradient."""
    logits = torch.as_tensor(spec.logits, dtype=torch.float64) * 0.5 * spec.scale  # (N, T, V)
    neg_logits = torch.as_tensor(spec.neg_logits, dtype=torch.float64) * 0.5 * spec.scale
    rewards = torch.as_tensor(spec.rewards, dtype=torch.float64) * 0.5  # (N,)
    tokens = torch.as_tensor(spec.tokens, dtype=torch.long)[..., None]  # (N, T, 1)
    with torch.enable_grad():
        adv = None if spec.adv is None else torch.as_tensor(spec.adv, dtype=torch.float64)
        leaves = [t.to(dtype).requires_grad_(grad) for t in (logits, neg_logits, rewards)]
        leaves += [] if adv is None else [adv.to(dtype).requires_grad_(grad)]
        logits, neg_logits, rewards, *given_adv = (t.double() for t in leaves)
        logp_all = logits.log_softmax(-1)  # (N, T, V)
        logp_neg_all = neg_logits.log_softmax(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N, T); every token has π > 0 here
        x = dict(
            logp=logp_all.gather(-1, tokens).squeeze(-1),
            logp_neg=logp_neg_all.gather(-1, tokens).squeeze(-1),
            entropy=entropy,
            logp_all=logp_all,
            logp_neg_all=logp_neg_all,
            rewards=rewards,
            adv=given_adv[0] if given_adv else group_zscore(rewards, spec.group_size),
        )
        x = {k: v.to(dtype) for k, v in x.items()}
    N, T = spec.tokens.shape
    mask = (torch.arange(T)[None] < torch.as_tensor(spec.lengths, dtype=torch.long)[:, None]).long()  # (N, T)
    key = torch.as_tensor(spec.key, dtype=torch.bool) & mask.bool()
    return dict(
        x, mask=mask, key_mask=key, group_size=spec.group_size, generator=torch.Generator().manual_seed(spec.seed)
    )


@dataclasses.dataclass(frozen=True)
class Dims:
    B: int
    G: int
    T: int
    V: int


def dims(group_level: bool, empty: bool = False):
    """Batch sizes: N = B·G ≤ 6 responses of T ≤ 5 tokens over V ≤ 4 words; empty=True also draws N = 0, T = 0."""
    lo = 0 if empty else 1
    return st.builds(
        lambda G, b, T, V: Dims(min(b, 6 // G), G, T, V),
        st.integers(2 if group_level else 1, 3),
        st.integers(lo, 3),
        st.integers(lo, 5),
        st.integers(2, 4),
    )


@st.composite
def specs(draw, d: Dims, empty: bool = False, neg_equal: bool = False, flat: bool = False) -> Spec:
    """A batch of sizes d. hypothesis draws the sizes, the logits' range (±m/2, shrinking to 0: every distribution
    uniform), the negative prompt's offset (±k/2, shrinking to 0: x⁻ = x) and a seed for the values themselves (cheap
    to draw; the sizes and ranges still shrink to a small counterexample). empty: rows may have no valid token.
    neg_equal: x⁻ = x. flat: every distribution uniform (one entropy everywhere), each row all or no key tokens."""
    N, T, V = d.B * d.G, d.T, d.V
    m, k = (0 if flat else draw(st.integers(0, 6))), (0 if neg_equal else draw(st.integers(0, 4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    logits = rng.integers(-m, m + 1, (N, T, V))
    neg_logits = logits + rng.integers(-k, k + 1, (N, T, V))
    lengths = rng.integers(0 if empty else min(1, T), T + 1, N)
    key = (rng.random((N, 1)) < 0.5).repeat(T, 1) if flat else rng.random((N, T)) < 0.4
    return Spec(
        logits,
        neg_logits,
        rng.integers(0, V, (N, T)),
        lengths,
        key,
        rng.integers(0, 3, N),
        d.G,
        draw(st.sampled_from([1.0, 8.0])),
        draw(st.integers(0, 2**16)),
    )


def batch(draw, scheme, **kw) -> Spec:
    return draw(specs(draw(dims(schemes.is_group_level(scheme), kw.get("empty", False))), **kw))


# ---------------------------------------------------------------------------------------------------------
# RUNNING A SCHEME


class Broken(Exception):
    """The scheme raised, or returned something that is not an (N, T) floating tensor: the property fails."""


def weigh(scheme, x: dict, floating: bool = True) -> torch.Tensor:
    """The scheme's weights for inputs x (the kit's own RNG state around it, so that a scheme that uses the
    global RNG gives the same result on a replay); raises Broken if it raises or returns no (N, T) tensor."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)  # (torch.manual_seed would also queue CUDA seeding: slow)
        try:
            w = scheme(**{k: x[k] for k in schemes.needs(scheme)})
        except Exception as e:
            raise Broken(f"the scheme raised {type(e).__name__}: {e}") from None
    if not isinstance(w, torch.Tensor):
        raise Broken(f"the scheme returned {type(w).__name__}, not a tensor")
    if w.shape != x["mask"].shape:
        raise Broken(f"the scheme returned shape {tuple(w.shape)} for mask {tuple(x['mask'].shape)}")
    if floating and not w.is_floating_point():
        raise Broken(f"the scheme returned {w.dtype} weights, not floating point")
    return w


def close(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, rtol=1e-5, atol=1e-6) -> str:
    """'' if a ≈ b on the valid tokens (|a − b| ≤ atol + rtol·|b|, or equal, infinities and NaN included), else
    the token where they differ most."""
    a, b = a.double().masked_fill(~valid, 0), b.double().masked_fill(~valid, 0)
    same = (a == b) | (a.isnan() & b.isnan())
    gap = ((a - b).abs() - rtol * b.abs() - atol).nan_to_num(math.inf).masked_fill(same | ~valid, -1.0)
    if gap.numel() == 0 or bool((gap <= 0).all()):
        return ""
    i, t = divmod(int(gap.flatten().argmax()), gap.shape[1])
    return f"token ({i}, {t}): {a[i, t].item():.6g} against {b[i, t].item():.6g}"


# ---------------------------------------------------------------------------------------------------------
# THE PROPERTIES (core, in the order of schemes.CORE, then optional)


def shape_dtype(scheme, draw):
    """w is a floating tensor of the mask's shape (N, T), on its device, in float32 or float64 for float32 inputs.
    Protects the trainer's Ã = w·A (a wrong shape broadcasts silently or fails far away; integer or half weights
    lose the credit's precision). Every scheme claims it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x, floating=False)
    if not w.is_floating_point() or w.dtype not in (torch.float32, torch.float64):
        return f"the weights are {w.dtype}; return float32 (or float64) weights"
    if w.device != x["mask"].device:
        return f"the weights are on {w.device}, the batch on {x['mask'].device}"


def finite(scheme, draw):
    """No NaN or ±inf anywhere, padding included, on batches with log-prob gaps past ±20. Protects the loss:
    NaN·0 is NaN, so a NaN weight on padding poisons the step too. Every scheme should claim it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x)
    if not bool(w.isfinite().all()):
        i, t = (int(v) for v in (~w.isfinite()).nonzero()[0])
        return f"w[{i}, {t}] = {w[i, t].item()}"


def zero_on_padding(scheme, draw):
    """w = 0 wherever mask = 0. Protects the weight statistics, the shuffled control and any trainer that does not
    mask Ã itself. A scheme whose trainer always masks might not claim it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x)
    pad = ~x["mask"].bool()
    if bool((w[pad] != 0).any()):
        i, t = (int(v) for v in ((w != 0) & pad).nonzero()[0])
        return f"padding token ({i}, {t}) has weight {w[i, t].item():.6g}"


def no_gradient(scheme, draw):
    """w carries no gradient even when its inputs do (logp from the training forward, with its graph). Protects the
    policy gradient: a weight with a graph puts ∂w/∂θ·A into the update, a term no method intends. Every scheme
    claims it (the trainer rejects weights that carry a gradient)."""
    x = build(batch(draw, scheme), grad=True)
    w = weigh(scheme, x)
    if w.requires_grad:
        return "the weights require grad: compute them under torch.no_grad() or return w.detach()"


def inputs_unchanged(scheme, draw):
    """The scheme leaves its input tensors as they were. Protects the loss: the logp a scheme sees shares its
    memory with the training forward's, so an in-place edit changes what the policy is trained on. Every scheme
    claims it."""
    x = build(batch(draw, scheme))
    before = {k: v.clone() for k, v in x.items() if isinstance(v, torch.Tensor)}
    weigh(scheme, x)
    changed = [k for k, v in before.items() if not torch.equal(v, x[k])]
    if changed:
        return f"the scheme changed {', '.join(changed)} in place"


def empty_safe(scheme, draw):
    """An empty batch (N = 0), empty responses (T = 0) and responses with no valid token (all padding, e.g. after
    overlong filtering) give zeros of the right shape, never NaN or an error. Protects training from the batches
    that dynamic sampling and overlong filtering produce. A scheme used only where these never occur might not
    claim it."""
    s = batch(draw, scheme, empty=True)
    N = len(s.lengths)
    for what, spec in (
        ("the drawn batch", s),
        ("its first 0 rows", s.rows([])),
        ("its first 0 tokens", s.columns(0)),
        ("every token padding", dataclasses.replace(s, lengths=np.zeros(N, np.int64))),
    ):
        x = build(spec)
        try:
            w = weigh(scheme, x)
        except Broken as e:
            return f"on {what}: {e}"
        empty = ~x["mask"].bool().any(1)  # (N,)
        if bool((w[empty] != 0).any()):  # (NaN != 0 too)
            return f"on {what}: a response with no valid token has weights {w[empty].tolist()}"


def padding_invariant(scheme, draw):
    """Other values on the padding and extra padding columns change no weight on a valid token. Protects against
    reading the padding (its log-probs are a forward pass's junk) and against weights that depend on how far a
    batch was padded (micro-batches and trainers pad to different widths). A scheme that normalizes by the padded
    length T might not claim it."""
    s = batch(draw, scheme)
    x = build(s)
    N, T, V = s.logits.shape
    k = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    junk = lambda shape: rng.integers(-6, 7, shape)
    pad = np.arange(T + k)[None] >= s.lengths[:, None]  # (N, T+k): padding, old and new
    grow = lambda a, fill: np.concatenate([a, np.full((N, k, *a.shape[2:]), fill, a.dtype)], 1)
    logits = np.where(pad[..., None], junk((N, T + k, V)), grow(s.logits, 0))
    neg = np.where(pad[..., None], junk((N, T + k, V)), grow(s.neg_logits, 0))
    tokens = np.where(pad, rng.integers(0, V, (N, T + k)), grow(s.tokens, 0))
    y = build(dataclasses.replace(s, logits=logits, neg_logits=neg, tokens=tokens, key=grow(s.key, False) & ~pad))
    w, wy = weigh(scheme, x), weigh(scheme, y)
    gap = close(wy[:, :T], w, x["mask"].bool())
    if gap:
        return f"with other padding and {k} more padding column(s), {gap} (padded against original)"


def row_independent(scheme, draw):
    """A response's weights depend on that response only: not on the other rows, nor on its place in the batch.
    Protects per-response credit from batch composition (which prompts happened to be sampled together). A
    group-level scheme (one that names group_size) sees whole groups and does not claim it; nor does a scheme
    whose statistic is taken over the batch (a batch quantile) or whose randomness follows the row's position."""
    s = batch(draw, scheme).with_adv()
    N, (T, V) = len(s.lengths), s.logits.shape[1:]
    other = draw(specs(Dims(N, 1, T, V)))
    keep = np.array(draw(st.lists(st.booleans(), min_size=N, max_size=N)), dtype=bool)
    mix = lambda a, b: np.where(keep.reshape(-1, *[1] * (a.ndim - 1)), a, b)
    y = dataclasses.replace(
        s, **{f: mix(getattr(s, f), getattr(other, f)) for f in ("logits", "neg_logits", "tokens", "lengths", "key")}
    )
    x = build(s)
    w, wy = weigh(scheme, x), weigh(scheme, build(y))
    gap = close(wy, w, x["mask"].bool() & torch.as_tensor(keep)[:, None])
    if gap:
        return f"other content in rows {np.flatnonzero(~keep).tolist()}: {gap} (changed against original)"
    perm = np.asarray(draw(st.permutations(range(N))), dtype=np.int64)
    back = torch.empty_like(w)
    back[torch.as_tensor(perm)] = weigh(scheme, build(s.rows(perm)))  # each row's weights at its own place
    gap = close(back, w, x["mask"].bool())
    if gap:
        return f"the rows in order {perm.tolist()}: {gap} (permuted against original)"


def micro_batch_invariant(scheme, draw):
    """Weights computed on micro-batches (a random split of the rows, as the trainer makes for gradient
    accumulation) equal the weights computed on the whole batch. A group-level scheme is split at group
    boundaries. Protects results from the memory setting (--micro_batch must not change what is learned). A scheme
    whose statistic is taken over the batch (a batch quantile) does not claim it."""
    s = batch(draw, scheme).with_adv()
    G = s.group_size if schemes.is_group_level(scheme) else 1
    units = len(s.lengths) // G
    order = draw(st.permutations(range(units)))
    cuts = sorted(draw(st.sets(st.integers(1, max(units - 1, 1)), max_size=3))) if units > 1 else []
    x = build(s)
    w = weigh(scheme, x)
    for part in np.split(np.asarray(order, dtype=np.int64), cuts):
        rows = (part[:, None] * G + np.arange(G)[None]).reshape(-1)
        idx, part_w = torch.as_tensor(rows), w.clone()
        part_w[idx] = weigh(scheme, build(s.rows(rows)))
        gap = close(part_w, w, x["mask"].bool() & (torch.arange(len(w))[:, None] == idx[None]).any(1)[:, None])
        if gap:
            return f"on the micro-batch of rows {rows.tolist()}: {gap} (micro-batch against whole batch)"


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and values, a NaN equal to a NaN in the same place (torch.equal calls NaN ≠ NaN)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


def deterministic(scheme, draw):
    """Two calls with generators seeded alike give identical weights, whatever the global RNG's state. Protects
    reproducibility: a run is a function of its seed. A scheme that uses randomness must draw it from `generator`;
    one that uses torch's global RNG does not claim it."""
    s = batch(draw, scheme)
    out = []
    for global_seed in (0, 1):
        x = build(s)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(global_seed)
            try:
                out.append(scheme(**{k: x[k] for k in schemes.needs(scheme)}))
            except Exception as e:
                raise Broken(f"the scheme raised {type(e).__name__}: {e}") from None
    a, b = out
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and not identical(a, b):
        gap = close(a, b, torch.ones_like(a, dtype=torch.bool), 0, 0) or "the weights differ"
        return f"two calls with the same generator seed: {gap}"


def non_negative(scheme, draw):
    """w ≥ 0 on valid tokens, so each token's Ã = w·A keeps the sign of A: a good response's tokens are never
    pushed down. A scheme that deliberately penalizes some tokens of a good response does not claim it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x)
    bad = (w < 0) & x["mask"].bool()
    if bool(bad.any()):
        i, t = (int(v) for v in bad.nonzero()[0])
        return f"w[{i}, {t}] = {w[i, t].item():.6g} < 0"


def total_preserved(scheme, draw):
    """Σ_t w_{i,t} = N_i (the response's valid tokens): credit moves between tokens, the response's total stays
    that of uniform credit, so the step size and the comparison with GRPO/DAPO are unchanged. A mask (keep the
    top 20%) or a scheme that also reweights whole responses does not claim it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x)
    valid = x["mask"].bool()
    total, n = w.double().masked_fill(~valid, 0).sum(1), valid.sum(1).double()
    bad = (total - n).abs() > 1e-4 * n.clamp(min=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        return f"row {i}: Σ_t w = {total[i].item():.6g}, N_{i} = {int(n[i])}"


def half_precision(scheme, draw):
    """float16 and bfloat16 inputs give finite floating weights within 0.05 of the float32 weights of the same
    (rounded) values. Protects mixed-precision trainers that hand over half-precision log-probs (gcpo.py's are
    float32). A scheme whose law is discontinuous in its inputs (a rank or a threshold that near-ties can flip)
    may need its own float32 pass to claim it."""
    s = batch(draw, scheme)
    for dtype in (torch.float16, torch.bfloat16):
        x = build(s, dtype)
        w = weigh(scheme, x)
        ref = {
            k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in build(s, dtype).items()
        }  # (a fresh generator, seeded alike)
        if not bool(w.isfinite().all()):
            return f"{dtype} inputs give non-finite weights {w.tolist()}"
        gap = close(w.float(), weigh(scheme, ref).float(), x["mask"].bool(), 0.0, 0.05)
        if gap:
            return f"{dtype} inputs, {gap} ({dtype} against float32 on the same values)"


def uniform_when_uninformative(scheme, draw):
    """When the scheme's signal says nothing, every valid token gets w = 1 (uniform credit, GRPO's): x⁻ = x for a
    contrast scheme, the same entropy everywhere for an entropy scheme, all or no key tokens for an oracle (all of
    these at once for a scheme with no signal). Protects the fallback: no information must not become noise.
    Optional: a scheme that is not uniform on such input (a softmax with a floor, random credit) does not claim
    it."""
    sig = signal(scheme)
    s = draw(
        specs(
            draw(dims(schemes.is_group_level(scheme))),
            neg_equal=sig in ("contrast", "full_kl", ""),
            flat=sig in ("entropy", "key", ""),
        )
    )
    x = build(s)
    w = weigh(scheme, x)
    gap = close(w, x["mask"].float(), x["mask"].bool(), 1e-5, 1e-5)
    if gap:
        return f"uninformative input ({SIGNAL_WORDS[sig]}): {gap} (weight against 1)"


def monotone(scheme, draw):
    """Within a response, a token whose signal is larger never gets a smaller weight: credit follows the signal the
    scheme is about (η for contrast, the exact KL for full_kl, entropy, key tokens). Protects the meaning of the
    scheme. Optional: a scheme that combines signals, or shuffles, does not claim it."""
    x = build(batch(draw, scheme))
    w = weigh(scheme, x).double()
    sig = signal_values(signal(scheme), x)  # (N, T) float64
    valid = x["mask"].bool()
    pair = valid[:, :, None] & valid[:, None, :]  # (N, T, T): s, t in the same response
    above = sig[:, :, None] > sig[:, None, :] + 1e-4 * (1 + sig[:, None, :].abs())  # signal_s clearly > signal_t
    bad = pair & above & (w[:, :, None] < w[:, None, :] - 1e-6)
    if bool(bad.any()):
        i, a, b = (int(v) for v in bad.nonzero()[0])
        return (
            f"row {i}: token {a} has signal {sig[i, a].item():.6g} > {sig[i, b].item():.6g} of token {b} but "
            f"weight {w[i, a].item():.6g} < {w[i, b].item():.6g}"
        )


PROPERTIES = {
    f.__name__: f
    for f in (
        shape_dtype,
        finite,
        zero_on_padding,
        no_gradient,
        inputs_unchanged,
        empty_safe,
        padding_invariant,
        row_independent,
        micro_batch_invariant,
        deterministic,
        non_negative,
        total_preserved,
        half_precision,
        uniform_when_uninformative,
        monotone,
    )
}
assert tuple(PROPERTIES) == schemes.CORE + schemes.OPTIONAL


# ---------------------------------------------------------------------------------------------------------
# SIGNALS (the optional properties'), computed independently in float64


SIGNAL_WORDS = {
    "contrast": "x⁻ = x",
    "full_kl": "x⁻ = x",
    "entropy": "the same entropy everywhere",
    "key": "all or no key tokens in each response",
    "": "x⁻ = x, one entropy, all or no key tokens",
}


def signal(scheme) -> str:
    """The scheme's declared signal, else the one its inputs imply (logp_neg_all: full_kl, logp_neg: contrast,
    entropy, key_mask), else ''."""
    declared, named = schemes.info(scheme).signal, schemes.needs(scheme)
    for sig, name in (
        ("full_kl", "logp_neg_all"),
        ("contrast", "logp_neg"),
        ("entropy", "entropy"),
        ("key", "key_mask"),
    ):
        if not declared and name in named:
            return sig
    return declared


def signal_values(sig: str, x: dict) -> torch.Tensor:
    """The signal per token, (N, T) float64 (the docstrings of schemes.SIGNALS)."""
    if sig == "contrast":
        d = (x["logp_neg"].double() - x["logp"].double()).clamp(-20, 20)
        return (d.exp() - d - 1).clamp(max=10)
    if sig == "full_kl":
        la, lb = x["logp_all"].double(), x["logp_neg_all"].double()
        return (la.exp() * (la - lb)).sum(-1)
    if sig == "entropy":
        return x["entropy"].double()
    if sig == "key":
        return x["key_mask"].double()
    raise ValueError(
        "monotone needs a signal: declare one (credit_scheme(signal=...): "
        f"{', '.join(schemes.SIGNALS)}) or name logp_neg, entropy or key_mask"
    )


# ---------------------------------------------------------------------------------------------------------
# THE RUNNER


@dataclasses.dataclass
class Result:
    """One property's verdict: 'holds', 'FAILS' (with the shrunk counterexample) or 'not claimed' (with why)."""

    name: str
    status: str
    detail: str = ""  # the failure (one line) or the reason it is not claimed
    counterexample: str = ""  # the shrunk inputs and weights, as small tensors

    def __str__(self) -> str:
        head = f"{self.name:<27} {self.status}" + (f": {self.detail}" if self.detail else "")
        return head + ("\n" + self.counterexample if self.counterexample else "")


def claimed(scheme, info: schemes.SchemeInfo | None = None) -> dict:
    """{property: None if claimed, else the reason it is not}, in the order of PROPERTIES."""
    info = info or schemes.info(scheme)
    out = {}
    for p in PROPERTIES:
        if p in schemes.CORE:
            out[p] = info.not_claimed.get(p)
            if p == "row_independent" and out[p] is None and schemes.is_group_level(scheme):
                out[p] = "group-level: it names group_size and sees whole groups"
        else:
            out[p] = None if p in info.claims else "optional, not declared in claims"
    return out


def show(spec: Spec, scheme) -> str:
    """The counterexample's inputs that the scheme names (and the mask), with its weights, as small tensors."""
    x = build(spec)
    lines = [f"    group_size = {spec.group_size}, generator = torch.Generator().manual_seed({spec.seed})"]
    for k in ("mask", *[k for k in schemes.needs(scheme) if k not in ("mask", "group_size", "generator")]):
        lines.append(f"    {k} = {fmt(x[k])}")
    try:
        lines.append(f"    w = {fmt(weigh(scheme, x))}")
    except Broken as e:
        lines.append(f"    w: {e}")
    return "\n".join(lines)


def fmt(t: torch.Tensor) -> str:
    if t.numel() == 0:
        return f"(empty, shape {tuple(t.shape)})"
    if t.dtype == torch.bool:
        t = t.long()
    if not t.is_floating_point():
        return str(t.tolist()).replace(" ", "")
    return str(np.round(t.detach().double().numpy(), 4).tolist()).replace(" ", "")


def run_property(prop, scheme, max_examples: int = 30, seed_: int = 0) -> tuple[str, str]:
    """('', '') if the property (a name in PROPERTIES, or a function like them) holds on max_examples drawn batches,
    else (what failed, the shrunk counterexample)."""
    prop = PROPERTIES[prop] if isinstance(prop, str) else prop
    failure = {}

    class Failed(Exception):
        pass

    @seed(seed_)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
        print_blob=False,
    )
    @given(st.data())
    def test(data):
        drawn = []

        def draw(strategy):
            value = data.draw(strategy)
            if isinstance(value, Spec):
                drawn.append(value)
            return value

        try:
            problem = prop(scheme, draw)
        except Broken as e:
            problem = str(e)
        if problem:
            failure.update(detail=problem, spec=drawn[0] if drawn else None)
            raise Failed(problem)

    try:
        test()
    except Exception:  # the last failure recorded is the shrunk one (hypothesis replays it last)
        if not failure:
            raise
        return failure["detail"], show(failure["spec"], scheme) if failure["spec"] is not None else ""
    return "", ""


BUILTIN = ("uniform", "contrast", "shuffled", "oracle", "entropy_top20", "gtpo_entropy", "vppo_top40")


def load_scheme(spec: str, config: str = ""):
    """A scheme by name: a built-in one (gcpo.credit_scheme of gcpo.make_config(credit=spec, **config), config as
    'k=v,k=v'), or 'package.module:function' / 'path/to/file.py:function'. One-line ValueError otherwise."""
    if spec in BUILTIN:
        import gcpo

        return gcpo.credit_scheme(gcpo.make_config(credit=spec, **parse_task_args(config)))
    if config:
        raise ValueError(f"--config sets gcpo options of a built-in scheme ({', '.join(BUILTIN)}), not of {spec!r}")
    fn = load_object(spec, "credit scheme")
    if not callable(fn):
        raise ValueError(f"credit scheme {spec!r} is a {type(fn).__name__}, not a function")
    schemes.needs(fn)
    return fn


def describe(scheme, max_examples: int, seed_: int) -> str:
    """The header of `check`: the scheme, what it names, and how it is checked."""
    info, named = schemes.info(scheme), schemes.needs(scheme)
    kind = "group-level" if schemes.is_group_level(scheme) else "row-level"
    oracle = "; an oracle (it reads the key tokens)" if "key_mask" in named else ""
    sig = signal(scheme)
    return (
        f"credit scheme {info.name!r}: names {', '.join(named) or 'nothing'}; {kind}{oracle}"
        f"{f'; signal {sig}' if sig else ''}\n{max_examples} drawn batches per property, hypothesis seed {seed_}"
    )


def smoke_batch() -> dict:
    """An ordinary batch: 4 responses of 3–5 tokens in groups of 2, moderate log-probs, no edge case."""
    g = np.random.default_rng(0)
    lengths = np.array([5, 3, 4, 5])
    spec = Spec(
        g.integers(-6, 7, (4, 5, 4)),
        g.integers(-6, 7, (4, 5, 4)),
        g.integers(0, 4, (4, 5)),
        lengths,
        g.random((4, 5)) < 0.4,
        np.array([0, 2, 1, 1]),
        2,
    )
    return build(spec)


PROPERTY_OF = (
    ("raised", ""),
    ("not a tensor", "shape_dtype"),
    ("returned shape", "shape_dtype"),
    ("floating-point", "shape_dtype"),
    ("NaN", "finite"),
    ("gradient", "no_gradient"),
)


def check_contract(scheme, info: schemes.SchemeInfo | None = None) -> None:
    """A one-line ValueError if the scheme cannot be checked at all: it names an input outside the contract, claims
    monotone without a signal, or fails on an ordinary batch (raises, returns no (N, T) floating tensor, NaN or
    inf, weights with a gradient)."""
    schemes.needs(scheme)
    x = smoke_batch()
    if "monotone" in (info or schemes.info(scheme)).claims and not signal(scheme):
        raise ValueError(
            f"credit scheme {schemes.info(scheme).name!r} claims monotone but has no signal: declare one "
            f"(credit_scheme(signal=...): {', '.join(schemes.SIGNALS)}) or name logp_neg, entropy or "
            "key_mask"
        )
    with torch.random.fork_rng(devices=[]):
        try:
            schemes.call(scheme, x)
        except ValueError as e:
            prop = next((p for word, p in PROPERTY_OF if word in str(e)), "")
            where = f" (property {prop})" if prop else ""
            raise ValueError(f"{e}{where}, on an ordinary batch of 4 responses × 5 tokens") from None


def check_properties(
    scheme, max_examples: int = 30, seed_: int = 0, info: schemes.SchemeInfo | None = None, only: tuple = ()
) -> list[Result]:
    """Every property of PROPERTIES for the scheme: 'holds' / 'FAILS' (with a shrunk counterexample) for the ones
    it claims, 'not claimed' (with its reason) for the others. `info` overrides the scheme's own declaration,
    `only` restricts the properties run. Raises a one-line ValueError if the scheme cannot be checked at all."""
    check_contract(scheme, info)
    results = []
    for name, reason in claimed(scheme, info).items():
        if only and name not in only:
            continue
        if reason is not None:
            results.append(Result(name, "not claimed", reason))
            continue
        detail, example = run_property(name, scheme, max_examples, seed_)
        results.append(Result(name, "FAILS", detail, example) if detail else Result(name, "holds"))
    return results


def assert_properties(scheme, **kw) -> None:
    """For a user's test file: `assert_properties(my_scheme)` raises AssertionError listing every claimed property
    that fails, each with its shrunk counterexample."""
    try:
        results = check_properties(scheme, **kw)
    except ValueError as e:
        raise AssertionError(str(e)) from None
    failed = [r for r in results if r.status == "FAILS"]
    if failed:
        raise AssertionError(f"credit scheme {schemes.info(scheme).name!r} fails " + "\n".join(str(r) for r in failed))
