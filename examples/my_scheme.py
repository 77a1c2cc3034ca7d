"""A credit scheme written from scratch (docs/credit_kit.md): GCPO's contrast, tempered by the policy's entropy.

A token earns credit when the prompt matters to it (a large contrast η between the prompt x and the negative prompt
x⁻) *and* the policy was unsure there (a large entropy H): a confident token that the prompt also explains is
already learned. The score is s_t = 1 + η_t·H_t, and each response's weights are its scores scaled to mean 1.

    python -m credit_kit check examples/my_scheme.py:entropy_contrast
    python -m credit_kit quality examples/my_scheme.py:entropy_contrast
    python gcpo.py --credit examples/my_scheme.py:entropy_contrast
"""

import torch

from gcpo_support.schemes import credit_scheme


@credit_scheme("entropy_contrast", claims=("uniform_when_uninformative",), signal="contrast")
@torch.no_grad()
def entropy_contrast(logp, logp_neg, entropy, mask):
    """w_t = N_i·s_t / Σ_t' s_t' over the response's valid tokens, s_t = 1 + η_t·H_t, with GCPO's contrast
    η = min(exp(d) − d − 1, 10), d = clamp(logp_neg − logp, ±20), and the entropy H_t ≥ 0 (nats).
    logp, logp_neg, entropy, mask: (N, T) → w (N, T), mean 1 per response, 0 on padding. x⁻ = x gives η = 0 and
    w ≡ 1. Not monotone in η alone (a confident token with a large η can rank below an unsure one)."""
    valid = mask.bool()
    d = (logp_neg.float() - logp.float()).clamp(-20.0, 20.0)  # float32 even for half inputs
    eta = (d.exp() - d - 1.0).clamp(max=10.0)
    s = (1.0 + eta * entropy.float().clamp(min=0.0)).masked_fill(~valid, 0.0)  # (N, T)
    n = valid.sum(1, keepdim=True).float()  # (N, 1)
    return s / s.sum(1, keepdim=True).clamp(min=1e-30) * n  # a response with no valid token: 0 / 1e-30 · 0 = 0
