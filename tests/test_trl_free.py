"""The weight statistics GCPOTrainer logs (gcpo_trl.weight_stats is gcpo_support.metrics.weight_metrics' three
weight columns, which gcpo.py logs too), tested without trl: these guard code that runs without it."""

import math

import torch

from gcpo_support.metrics import weight_metrics

NO_KEYS = torch.zeros(4, 6, dtype=torch.bool)


def test_weight_statistics_by_hand_on_uneven_lengths_with_padding():
    """Four completions of 4, 6, 3 and 0 valid tokens (no length a multiple of 5) whose padding holds large
    values: max, std (population, over valid tokens) and the mass on the top ⌈0.4·n⌉ tokens, worked out by
    hand per completion and averaged over the three with a token. Counting padding, averaging over the empty
    completion too, or flooring 0.4·n each changes the numbers."""
    w = torch.tensor(
        [
            [2.0, 1.0, 0.5, 0.5, 9.0, 9.0],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [3.0, 0.0, 0.0, 5.0, 5.0, 5.0],
            [4.0, 4.0, 4.0, 4.0, 4.0, 4.0],
        ]
    )
    mask = (torch.arange(6)[None] < torch.tensor([4, 6, 3, 0])[:, None]).long()
    m = weight_metrics(w, NO_KEYS, mask)
    # per completion: max 2, 1, 3; std √(1.5/4), 0, √(6/3) about the mean 1; top ⌈1.6⌉ = 2 of 4 tokens carry
    # 3/4, top ⌈2.4⌉ = 3 of 6 carry 3/6, top ⌈1.2⌉ = 2 of 3 carry 3/3
    assert math.isclose(m["weight_max"], 2.0, rel_tol=1e-6)
    assert math.isclose(m["weight_std"], (math.sqrt(0.375) + 0.0 + math.sqrt(2.0)) / 3, rel_tol=1e-6)
    assert math.isclose(m["weight_top40_mass"], (0.75 + 0.5 + 1.0) / 3, rel_tol=1e-6)
    assert set(m) == {"weight_max", "weight_std", "weight_top40_mass"}  # no key tokens: no key statistics


def test_uniform_weights_with_padding_have_std_zero_and_max_one():
    """w ≡ 1 on valid tokens and 0 on padding (what GCPO gives when x⁻ = x): std exactly 0 and max exactly 1,
    as GCPOTrainer's equivalence test with GRPOTrainer asserts in its logs."""
    mask = (torch.arange(6)[None] < torch.tensor([6, 5, 2, 1])[:, None]).long()
    m = weight_metrics(mask.float(), NO_KEYS, mask)
    assert m["weight_std"] == 0.0 and m["weight_max"] == 1.0
    assert math.isclose(m["weight_top40_mass"], (3 / 6 + 2 / 5 + 1 / 2 + 1 / 1) / 4, rel_tol=1e-6)


def test_no_valid_token_gives_nan_not_zero():
    """A batch whose every completion is empty (all overlong-filtered, or all tool output) has no statistics:
    NaN, which the trainer's average over processes (nanmean) skips."""
    m = weight_metrics(torch.ones(4, 6), NO_KEYS, torch.zeros(4, 6, dtype=torch.long))
    assert all(math.isnan(m[k]) for k in ("weight_max", "weight_std", "weight_top40_mass"))
