"""The credit-scheme contract, and the peer schemes GCPO is raced against. A credit scheme is a plain function
whose parameter names say what it needs (INPUTS); it returns token weights w (N, T) and the trainer uses
Ã_{i,t} = w_{i,t}·A_i. gcpo.py defines GCPO's own schemes (contrast, shuffled, oracle, uniform) on this contract;
credit_kit checks any scheme's properties. A reader of gcpo.py can skip this module."""

from __future__ import annotations

import dataclasses
import inspect
import math

import torch

INPUTS = {  # what a scheme may name; the trainer computes only what it names
    "logp": "(N, T) float: log π(y_t | x, y_<t), each response token under the prompt",
    "logp_neg": "(N, T) float: the same under the negative prompt x⁻ (one more forward pass)",
    "entropy": "(N, T) float: H(π(· | x, y_<t)) in nats, the policy's entropy at each position",
    "logp_all": "(N, T, V) float: the whole log-softmax log π(· | x, y_<t)",
    "logp_neg_all": "(N, T, V) float: the whole log-softmax under x⁻",
    "mask": "(N, T) long: 1 on response tokens (EOS included), 0 on padding",
    "key_mask": "(N, T) bool: the task's ground-truth key tokens (a scheme that names it is an oracle)",
    "adv": "(N,) float: the group advantage A_i",
    "rewards": "(N,) float: the reward r_i",
    "group_size": "int: G; rows g·G … g·G + G − 1 are one prompt's responses (the scheme sees whole groups)",
    "generator": "torch.Generator: the scheme's own seeded randomness (on the batch's device)",
}
CORE = (
    "shape_dtype",
    "finite",
    "zero_on_padding",
    "no_gradient",
    "inputs_unchanged",
    "empty_safe",
    "padding_invariant",
    "row_independent",
    "micro_batch_invariant",
    "deterministic",
    "non_negative",
    "total_preserved",
    "half_precision",
)  # claimed unless declared not_claimed (credit_kit/properties.py)
OPTIONAL = ("uniform_when_uninformative", "monotone")  # claimed only when declared
SIGNALS = {  # what a scheme's weights follow, for the optional properties
    "contrast": "η = min(exp(d) − d − 1, 10), d = clamp(logp_neg − logp, ±20) (GCPO's k3 score)",
    "full_kl": "η = Σ_v π(v|x)·(log π(v|x) − log π(v|x⁻)) (the exact KL over the vocabulary)",
    "entropy": "H(π(· | x, y_<t))",
    "key": "1 on the task's key tokens, 0 elsewhere",
}


@dataclasses.dataclass(frozen=True)
class SchemeInfo:
    """What a scheme declares about itself: its name, the core properties it does not claim (with the reason,
    shown by `credit_kit check`), the optional ones it claims, and the signal its weights follow (a key of
    SIGNALS; '' lets credit_kit infer it from the inputs named). A scheme that names key_mask is an oracle:
    reported as a bound, not a method."""

    name: str
    not_claimed: dict = dataclasses.field(default_factory=dict)  # property → why not
    claims: tuple = ()
    signal: str = ""


def credit_scheme(name: str = "", *, not_claimed: dict | None = None, claims: tuple = (), signal: str = ""):
    """Decorator that declares a scheme's properties (an undecorated function claims every core property and
    no optional one):

        @credit_scheme("entropy_top20", not_claimed={"total_preserved": "a mask keeps 20% of the credit"},
                       claims=("monotone",), signal="entropy")
        def entropy_top20(entropy, mask): ..."""
    claims = (claims,) if isinstance(claims, str) else tuple(claims)
    unknown = (set(not_claimed or {}) - set(CORE)) | (set(claims) - set(OPTIONAL))
    if unknown:
        raise ValueError(
            f"credit_scheme({name!r}): unknown properties {sorted(unknown)}; not_claimed takes core ones "
            f"({', '.join(CORE)}), claims optional ones ({', '.join(OPTIONAL)})"
        )
    if signal and signal not in SIGNALS:
        raise ValueError(f"credit_scheme({name!r}): unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")

    def wrap(fn):
        fn.credit = SchemeInfo(name or fn.__name__, dict(not_claimed or {}), tuple(claims), signal)
        return fn

    return wrap


def info(fn) -> SchemeInfo:
    """The scheme's declaration (an undecorated function: its name, every core property claimed)."""
    return getattr(fn, "credit", None) or SchemeInfo(getattr(fn, "__name__", type(fn).__name__))


def needs(fn) -> tuple[str, ...]:
    """The inputs a scheme names, in signature order. A parameter outside INPUTS must have a default (it is the
    scheme's own setting, left at that default); anything else is a one-line error."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise ValueError(f"credit scheme {info(fn).name!r} is not a function with a signature") from None
    out = []
    for p in params:
        if p.name in INPUTS:
            out.append(p.name)
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            raise ValueError(
                f"credit scheme {info(fn).name!r} asks for {p.name!r}, which is not an input; name only "
                f"{', '.join(INPUTS)} (other parameters need a default)"
            )
    return tuple(out)


def is_group_level(fn) -> bool:
    """A scheme that names group_size sees whole groups: the trainer scores it on the whole rollout at once."""
    return "group_size" in needs(fn)


def call(fn, inputs: dict) -> torch.Tensor:
    """Run a scheme on the inputs it names and check what it returns: a floating (N, T) tensor (N, T = mask's
    shape), finite on valid tokens, with no gradient. A scheme that raises or returns anything else is a
    one-line error naming the scheme and the problem."""
    name, mask = info(fn).name, inputs["mask"]
    try:
        w = fn(**{k: inputs[k] for k in needs(fn)})
    except ValueError as e:
        raise ValueError(f"credit scheme {name!r} raised ValueError: {e}") from None
    except Exception as e:
        raise ValueError(f"credit scheme {name!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"credit scheme {name!r} returned {type(w).__name__}, not a tensor of weights (N, T)")
    if w.shape != mask.shape:
        raise ValueError(
            f"credit scheme {name!r} returned shape {tuple(w.shape)}; it must return one weight per "
            f"token, the mask's shape {tuple(mask.shape)}"
        )
    if not w.is_floating_point():
        raise ValueError(f"credit scheme {name!r} returned {w.dtype} weights; return a floating-point tensor")
    if w.requires_grad:
        raise ValueError(
            f"credit scheme {name!r} returned weights that carry a gradient; compute them under "
            "torch.no_grad() or return w.detach()"
        )
    if not bool(w.masked_fill(~mask.bool(), 0).isfinite().all()):
        raise ValueError(f"credit scheme {name!r} returned NaN or inf weights on valid tokens")
    return w


# ---------------------------------------------------------------------------------------------------------
# PEER SCHEMES: the other token-credit ideas, on the same contract


@torch.no_grad()
def shuffle_weights(weights, mask, generator=None):
    """Each response's valid weights permuted uniformly at random among its valid tokens, (N, T) → (N, T): the same
    weights (so the same distribution and step sizes), no information about which token they belong to; padding
    stays 0. The `shuffled` control (gcpo.py)."""
    valid = mask.bool()
    noise = torch.rand(weights.shape, generator=generator, device=weights.device)  # (N, T)
    to = (~valid).long().argsort(dim=1, stable=True)  # (N, T): valid positions first, in order
    source = noise.masked_fill(~valid, 2.0).argsort(dim=1)  # (N, T): valid positions first, in random order
    return torch.zeros_like(weights).scatter_(1, to, weights.gather(1, source))


RANDOM_POSITION = (
    "the permutation a row gets is drawn from the generator's stream at the row's place in the (N, T) "
    "batch, so it changes with the batch's shape and order (the row keeps the same multiset of weights)"
)


def shuffled(scheme, name: str = "shuffled"):
    """The control for any scheme: its weights, permuted uniformly at random within each response (the same
    weights, so the same step sizes, but no information about which token earns them). The result names what
    `scheme` names, plus mask and generator; it claims what the scheme claims, except `monotone` and the three
    properties that a permutation drawn per batch breaks (padding_invariant, row_independent,
    micro_batch_invariant: RANDOM_POSITION)."""
    inner = needs(scheme)
    params = [
        inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for k in INPUTS
        if k in inner or k in ("mask", "generator")
    ]

    def control(**x):
        w = scheme(**{k: x[k] for k in inner})
        return shuffle_weights(w, x["mask"], x["generator"])

    control.__signature__ = inspect.Signature(params)
    control.__name__ = name
    base = info(scheme)
    random = {p: RANDOM_POSITION for p in ("padding_invariant", "row_independent", "micro_batch_invariant")}
    control.credit = SchemeInfo(name, {**base.not_claimed, **random}, tuple(c for c in base.claims if c != "monotone"))
    return control


@credit_scheme(
    "entropy_top20",
    signal="entropy",
    not_claimed={
        "total_preserved": "a 0/1 mask keeps about 20% of each response's credit",
        "row_independent": "the entropy threshold is the 80th percentile over the whole batch",
        "micro_batch_invariant": "the threshold is taken over whatever batch it is given",
    },
    claims=("uniform_when_uninformative", "monotone"),
)
@torch.no_grad()
def entropy_top20(entropy, mask):
    """Only the highest-entropy 20% of tokens learn ("forking tokens"): w = 1[H_t ≥ q_0.8(H)], q over the batch's
    valid tokens (Wang et al., "Beyond the 80/20 Rule", arXiv 2506.01939; TRL's `top_entropy_quantile=0.2`,
    whose `get_high_entropy_mask` this follows: torch.quantile with linear interpolation, ≥, over the batch).
    (N, T) → (N, T) 0/1 weights; constant entropy keeps every token."""
    valid = mask.bool()
    if not valid.any():
        return torch.zeros_like(entropy, dtype=torch.float32)
    threshold = torch.quantile(entropy[valid].float(), 0.8)
    return ((entropy.float() >= threshold) & valid).float()


@credit_scheme("gtpo_entropy", signal="entropy", claims=("uniform_when_uninformative", "monotone"))
@torch.no_grad()
def gtpo_entropy(entropy, mask):
    """Credit in proportion to the policy's entropy at each token, w_t = N_i·H_t / Σ_t' H_t' over the response's
    valid tokens (mean 1): the entropy-proportional token shaping of GTPO (Tan et al., arXiv 2508.04349), kept to
    its core. GTPO itself shapes token rewards, r̃_t = α·r + β·H_t/ΣH, normalised across the group at each
    position; here the entropy share multiplies the group advantage, per response, so Σ_t w = N_i as in GCPO.
    A response whose entropies are all zero gets w ≡ 1. (N, T) → (N, T)."""
    valid = mask.bool()
    h = entropy.float().clamp(min=0).masked_fill(~valid, 0.0)  # (N, T)
    n = valid.sum(1, keepdim=True).float()  # (N, 1)
    total = h.sum(1, keepdim=True)  # (N, 1)
    w = h / total.clamp(min=1e-30) * n
    return torch.where(total > 0, w, valid.float())


@torch.no_grad()
def k3_score(logp, logp_neg, mask):
    """GCPO's default contrast score, in float32 whatever the input precision: η = min(exp(d) − d − 1, 10) with
    d = clamp(logp⁻ − logp, ±20), the one-sample k3 estimate of KL(π(·|x) ‖ π(·|x⁻)); 0 on padding. (N, T) → (N, T).
    Equal to gcpo.token_scores(logp, logp_neg, mask, 'kl') on float32 input (a test pins the two equal)."""
    d = (logp_neg.float() - logp.float()).clamp(-20.0, 20.0)
    return (d.exp() - d - 1.0).clamp(max=10.0).masked_fill(~mask.bool(), 0.0)


@credit_scheme(
    "vppo_top40",
    signal="contrast",
    not_claimed={"total_preserved": "a 0/1 mask keeps 40% of each response's credit"},
    claims=("uniform_when_uninformative", "monotone"),
)
@torch.no_grad()
def vppo_top40(logp, logp_neg, mask):
    """VPPO's token-level gradient filter (Huang et al., "Spotlight on Token Perception for Multimodal
    Reinforcement Learning", arXiv 2510.09285, k = 0.4): only the 40% of each response's tokens that depend most
    on the context learn, w = 1 on the top ⌈0.4·N_i⌉ by dependency, 0 elsewhere. VPPO's dependency is the KL
    between the policy's next-token distributions with the true and a masked image; here it is GCPO's estimate of
    the same KL between prompt x and negative prompt x⁻, the k3 score η (k3_score = gcpo.token_scores, 'kl'), so
    VPPO differs from GCPO only in the law: a hard top-40% mask where GCPO uses hist weights. VPPO's other half,
    scaling each response's advantage by its mean dependency, is left out. Ties at the cut go to the earlier
    token; a response whose scores are all equal (x⁻ = x) keeps every token. (N, T) → (N, T)."""
    valid = mask.bool()
    if valid.shape[1] == 0:  # (no token to rank: amin would have nothing to reduce)
        return torch.zeros(valid.shape, device=valid.device)
    eta = k3_score(logp, logp_neg, mask).masked_fill(~valid, -math.inf)  # (N, T)
    k = (0.4 * valid.sum(1).double()).ceil().long()  # (N,)
    order = eta.argsort(dim=1, descending=True, stable=True)  # (N, T): highest first, earlier token on a tie
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(eta.shape[1], device=eta.device).expand_as(order))
    top = (rank < k[:, None]) & valid
    lo = eta.masked_fill(~valid, math.inf).amin(1, keepdim=True)
    hi = eta.amax(1, keepdim=True)
    return torch.where(lo == hi, valid, top).float()


PEERS = {fn.credit.name: fn for fn in (entropy_top20, gtpo_entropy, vppo_top40)}
