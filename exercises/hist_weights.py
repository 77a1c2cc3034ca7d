"""Exercise: GCPO's hist token weights (docs/exercises.md). Fill in `hist_weights`, then grade it:

    python -m credit_kit grade exercises/hist_weights.py

The grader checks the properties GCPO's weights have (the table in docs/credit_kit.md) and compares your weights
with gcpo.token_weights on random batches; each failure comes with a small counterexample."""


def hist_weights(logp, logp_neg, mask):
    """GCPO's token weights w (N, T) for N responses of T tokens (padded), from

        logp     (N, T) float: log π(y_t | x, y_<t), each response token under the prompt x
        logp_neg (N, T) float: the same token under the negative prompt x⁻
        mask     (N, T) long:  1 on the response's tokens, 0 on padding

    1. Score each token by how much the prompt matters to it, the k3 estimate of KL(π(·|x) ‖ π(·|x⁻)):
           d = clamp(logp_neg − logp, −20, 20),   η = min(exp(d) − d − 1, 10)
    2. Per response, over its N_i valid tokens only: rank the scores ascending, 1 … N_i, tied scores sharing the
       mean of their ranks; p = rank / N_i; u = p^α with α = ln(1 − 0.8) / ln(1 − 0.4) − 1 ≈ 2.1507 (so the top
       40% of tokens carry about 80% of the weight); w = u · N_i / Σ u (mean 1: Σ_t w = N_i).
    3. A response whose valid scores are all equal (x⁻ = x) gets w = 1 on every valid token.
    4. w = 0 on padding, and on a response with no valid token; no NaN, no gradient (the weights are constants
       in the loss: compute them under torch.no_grad() or detach them).

    Returns w (N, T) float32.
    """
    raise NotImplementedError(
        "write GCPO's hist weights here (docs/exercises.md), then run "
        "`python -m credit_kit grade exercises/hist_weights.py`"
    )
