"""`python -m credit_kit grade FILE[:function]`: grade the hist-weights exercise (docs/exercises.md). The learner's
function must hold the properties GCPO's weights hold and equal gcpo.token_weights (kl score, hist law, averaged
ties) on random batches, each failure with a shrunk counterexample."""

from __future__ import annotations

import argparse
import dataclasses

import torch

from credit_kit.properties import Result, batch, build, check_properties, close, load_scheme, run_property, weigh
from gcpo_support import schemes

EXPECTED = ("logp", "logp_neg", "mask")


def claims(name: str) -> schemes.SchemeInfo:
    """What the exercise asks for: GCPO's own claims (gcpo.credit_scheme's contrast), less half_precision, which
    the reference does not hold either (it scores in the input's precision)."""
    import gcpo

    ref = schemes.info(gcpo.credit_scheme(gcpo.make_config()))
    reason = "not asked for: the reference, gcpo.token_weights, scores in the input's precision"
    return dataclasses.replace(ref, name=name, not_claimed={**ref.not_claimed, "half_precision": reason})


def equals_reference(scheme, draw):
    """w equals gcpo.token_weights(logp, logp_neg, mask) (GCPO's defaults) within 1e-4 on every token."""
    import gcpo

    x = build(batch(draw, scheme))
    w = weigh(scheme, x)
    ref = gcpo.token_weights(x["logp"], x["logp_neg"], x["mask"])
    gap = close(w, ref, torch.ones_like(x["mask"], dtype=torch.bool), 1e-4, 1e-5)  # padding included
    if gap:
        return f"{gap} (yours against gcpo.token_weights)"


def grade(spec: str, max_examples: int = 30) -> tuple[bool, list[Result]]:
    """(passed, one Result per property plus equals_reference) for the function at spec ('file.py' means its
    hist_weights). A function that is not written yet, or breaks the contract, is one FAILS row."""
    if spec.endswith(".py"):
        spec += ":hist_weights"
    fn = load_scheme(spec)
    name = getattr(fn, "__name__", spec)
    if schemes.needs(fn) != EXPECTED:
        raise ValueError(
            f"{name} must take ({', '.join(EXPECTED)}), as the skeleton does; it takes ({', '.join(schemes.needs(fn))})"
        )
    try:
        results = check_properties(fn, max_examples=max_examples, info=claims(name))
    except ValueError as e:
        if "NotImplementedError" in str(e):
            return False, [Result("written", "FAILS", f"{name} raises NotImplementedError: not written yet")]
        return False, [Result("contract", "FAILS", " ".join(str(e).split()))]
    detail, example = run_property(equals_reference, fn, max_examples)
    results.append(
        Result("equals_reference", "FAILS", detail, example) if detail else Result("equals_reference", "holds")
    )
    return not any(r.status == "FAILS" for r in results), results


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m credit_kit grade")
    p.add_argument("file", help="exercises/hist_weights.py (or FILE:function)")
    p.add_argument("--max-examples", type=int, default=30)
    a = p.parse_args(argv)
    passed, results = grade(a.file, a.max_examples)
    for r in results:
        print(r)
    failed = sum(r.status == "FAILS" for r in results)
    print("PASS: your hist weights are GCPO's" if passed else f"not yet: {failed} check(s) fail (docs/exercises.md)")
    return 0 if passed else 1
