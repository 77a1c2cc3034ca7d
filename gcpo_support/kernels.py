"""Speed only, no new arithmetic: each piece here replaces a plain expression named at its call site in gcpo.py,
and a test pins their equality (tests/test_logprob_equiv.py). A reader of gcpo.py can skip it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


class Decoder:
    """Next-token logits after a prefill, one token per row per call: the loop of gcpo.sample.

    decoder = Decoder(model, prefill_output, attention_mask (R, P), max_new_tokens)
    decoder(tokens (R,), positions (R,)) → logits (R, V) of the token after `tokens`.

    Any causal LM runs its own forward with its cache. A GPT-2 on CPU (GPT2LMHeadModel in eval mode with SDPA
    attention and no hooks on the modules whose forward this skips: what gcpo builds for toy tasks and loads for
    `gpt2`) runs the same modules and the same operations, with one change: each layer's keys and values go into
    one buffer allocated for the whole response, where the Hugging Face cache concatenates, i.e. copies, the
    whole cache at every token (the README's speed section measures the rollout with and without it). The
    logits are the same bit for bit (tests/test_logprob_equiv.py, on CPU, which is why other devices keep the
    model's own forward)."""

    def __init__(self, model, prefill, attention_mask: torch.Tensor, max_new_tokens: int):
        past = prefill[CACHE]  # the prefill's KV cache
        self.model, self.past, self.attn = model, past, attention_mask
        if not self.plain_gpt2(model) or not hasattr(past, "layers"):  # (older transformers: another cache API)
            return
        keys = [layer.keys for layer in past.layers]  # each (R, H, P, D)
        values = [layer.values for layer in past.layers]
        R, H, P, D = keys[0].shape
        self.kv = keys[0].new_empty(len(keys), 2, R, H, P + max_new_tokens, D)  # every layer's K and V, allocated once
        self.kv[:, 0, :, :, :P] = torch.stack(keys)
        self.kv[:, 1, :, :, :P] = torch.stack(values)
        self.length, self.past = P, None
        pad = attention_mask == 0  # (R, P); Hugging Face passes SDPA no mask when no prompt has padding
        self.mask = None if not bool(pad.any()) else F.pad(~pad, (0, max_new_tokens), value=True)[:, None, None, :]

    @staticmethod
    def plain_gpt2(model) -> bool:
        from transformers import GPT2LMHeadModel

        if type(model) is not GPT2LMHeadModel or model.training or model.device.type != "cpu":
            return False
        c = model.config
        skipped = [model, model.transformer, *model.transformer.h, *(block.attn for block in model.transformer.h)]
        hooked = any(m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m) for m in skipped)
        return (c._attn_implementation == "sdpa" and not c.add_cross_attention and not hooked
                and hasattr(model.transformer.h[0].attn, "scaling"))  # (older transformers scale elsewhere)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.past is not None:  # any model: its own forward
            self.attn = torch.cat([self.attn, torch.ones_like(self.attn[:, :1])], dim=1)
            out = self.model(input_ids=tokens[:, None], attention_mask=self.attn, position_ids=positions[:, None],
                             use_cache=True, **{CACHE: self.past})
            self.past = out[CACHE]
            return out.logits[:, -1]
        gpt, S, R = self.model.transformer, self.length + 1, tokens.shape[0]  # S: keys after this token
        if S > self.kv.shape[-2]:
            raise ValueError(f"Decoder was built for {self.kv.shape[-2]} positions (prompt + max_new_tokens); "
                             "build it with a larger max_new_tokens")
        mask = None if self.mask is None else self.mask[..., :S]  # (R, 1, 1, S)
        x = gpt.wte(tokens[:, None]) + gpt.wpe(positions[:, None])  # (R, 1, C)
        for kv, block in zip(self.kv, gpt.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=2)  # (R, 1, C) each
            q, k, v = (t.view(R, 1, -1, attn.head_dim).transpose(1, 2) for t in (q, k, v))  # (R, H, 1, D)
            kv[0, :, :, S - 1:S], kv[1, :, :, S - 1:S] = k, v
            a = F.scaled_dot_product_attention(q, kv[0, :, :, :S], kv[1, :, :, :S], attn_mask=mask,
                                               scale=attn.scaling)  # (R, H, 1, D)
            x = x + attn.c_proj(a.transpose(1, 2).reshape(R, 1, -1))
            x = x + block.mlp(block.ln_2(x))
        self.length = S
        return self.model.lm_head(gpt.ln_f(x))[:, -1]  # (R, V)


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
