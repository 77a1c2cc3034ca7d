"""Speed only, no new arithmetic: each piece here replaces a plain expression named at its call site in gcpo.py,
and a test pins their equality (tests/test_logprob_equiv.py). A reader of gcpo.py can skip it."""

from __future__ import annotations

import torch


class ChosenLogProbs(torch.autograd.Function):
    """logp (N, T) = ℓ[:, t, y_t] − logsumexp(ℓ[:, t]) for t < T, from logits ℓ (N, T+1, V) whose last position
    predicts nothing (Hugging Face's `logits_to_keep=T+1` keeps it), and tokens y (N, T).

    The value and the gradient equal autograd's on `ℓ[:, :-1].gather(y) − ℓ[:, :-1].logsumexp()` bit for bit, up
    to the sign of a zero (tests/test_logprob_equiv.py): ∂/∂ℓ_v = g·(1[v = y_t] − exp(ℓ_v − lse)) is computed as
    (−g)·exp(ℓ − lse) plus g at y_t, autograd's own floating-point operations, except that autograd also adds
    the +0 of its scatter everywhere, which turns an underflowed −0 into +0 (sums, norms and the optimizer give
    the same result for either). The saving is memory traffic at a large vocabulary: autograd writes four
    (N, T+1, V)-sized tensors in the backward (the gather's zero-filled scatter, the logsumexp term, their sum,
    the slice's zero-padded copy); this writes one, in place."""

    @staticmethod
    def forward(ctx, logits, tokens):
        x = logits[:, :-1]  # (N, T, V): position t predicts y_t
        lse = x.logsumexp(-1)  # (N, T)
        ctx.save_for_backward(logits, tokens, lse)
        return x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        logits, tokens, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)  # (N, T+1, V)
        grad[:, -1].zero_()  # the last position predicts nothing
        x = grad[:, :-1]
        torch.sub(logits[:, :-1], lse.unsqueeze(-1), out=x)
        x.exp_().mul_(-g.unsqueeze(-1))  # −g·softmax
        x.scatter_add_(-1, tokens.unsqueeze(-1), g.unsqueeze(-1))  # + g at the chosen token
        return grad, None


def cache_name() -> str:
    """What transformers calls the KV cache in model inputs and outputs: `cache` from 5.x on, where the old name
    `past_key_values` still works but warns, and `past_key_values` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


CACHE = cache_name()


def fuse_gelu(model):
    """Swap GPT-2's `gelu_new` activation, written out in Python (a cube, a tanh and five elementwise products, each a
    pass over memory, and as many again in the backward), for torch's fused tanh-GELU: the same formula,
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in one kernel; outputs agree to float32 rounding. The config
    says so too, so a saved model reloads the same way. Other activations are left alone. Returns the model."""
    from transformers.activations import NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, torch.nn.GELU(approximate="tanh"))
    for key in ("activation_function", "hidden_act"):  # GPT-2's name for it, and most other models'
        if getattr(model.config, key, None) == "gelu_new":
            setattr(model.config, key, "gelu_pytorch_tanh")
    return model
