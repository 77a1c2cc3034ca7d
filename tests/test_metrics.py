"""The logged metrics of gcpo_support/metrics.py against independent computations: plain-Python references over
lists (no torch), pair counting for the ranks and the AUC, and values written by hand. Responses of uneven
lengths (not multiples of 5), padding that holds large values, and a response with no valid token at all."""

import itertools
import json
import math
import statistics

import pytest
import torch

from gcpo_support.metrics import (
    average_ranks,
    clip_fractions,
    key_token_auc,
    key_token_share,
    token_moves,
    weight_metrics,
)

PAD = 9.0  # what a scheme might leave on padding: large enough to change every statistic it entered


def batch():
    """Three responses of 7, 3 and 0 valid tokens (T = 8): weights, key tokens, log-probs, with junk on padding."""
    w = torch.tensor(
        [[3.0, 2.0, 1.0, 0.5, 0.5, 0.0, 0.0, PAD], [1.5, 1.0, 0.5, PAD, PAD, PAD, PAD, PAD], [PAD] * 8],
        dtype=torch.float64,
    )
    mask = torch.tensor([[1] * 7 + [0], [1] * 3 + [0] * 5, [0] * 8])
    key = torch.zeros(3, 8, dtype=torch.bool)
    key[0, [1, 4]] = True
    key[1, 0] = True
    key[1, 5] = key[2, 2] = True  # key flags on padding: never counted
    logp = -torch.arange(1, 25, dtype=torch.float64).reshape(3, 8) / 10
    return w, key, mask, logp


def rows(x, mask):
    """The valid entries of each response, as Python lists of floats."""
    return [[float(v) for v, m in zip(r, mr) if m] for r, mr in zip(x.tolist(), mask.tolist())]


def reference_metrics(w, key, mask, logp):
    """weight_metrics' documented values, computed in plain Python from the valid tokens only."""
    W, K, L = rows(w, mask), rows(key.double(), mask), rows(logp, mask)
    R = [i for i, r in enumerate(W) if r]  # responses with a token
    top40 = [sum(sorted(W[i], reverse=True)[: math.ceil(2 * len(W[i]) / 5)]) / sum(W[i]) for i in R]
    out = {
        "weight_max": statistics.mean(max(W[i]) for i in R),
        "weight_std": statistics.mean(statistics.pstdev(W[i]) for i in R),
        "weight_top40_mass": statistics.mean(top40),
        "key_weight_share": sum(x * k for i in R for x, k in zip(W[i], K[i])) / sum(sum(W[i]) for i in R),
    }
    aucs = []
    for i in R:
        kw = [x for x, k in zip(W[i], K[i]) if k]
        ow = [x for x, k in zip(W[i], K[i]) if not k]
        if kw and ow:
            aucs.append(sum((a > b) + 0.5 * (a == b) for a in kw for b in ow) / (len(kw) * len(ow)))
    out["key_weight_auc"] = statistics.mean(aucs)
    high = [-lp for i in R for x, lp in zip(W[i], L[i]) if x > 1]
    low = [-lp for i in R for x, lp in zip(W[i], L[i]) if x <= 1]
    out["neglogp_high_w"], out["neglogp_low_w"] = statistics.mean(high), statistics.mean(low)
    return out


def test_weight_metrics_by_hand_on_uneven_lengths_with_padding_and_an_empty_response():
    w, key, mask, logp = batch()
    got = weight_metrics(w, key, mask, logp)
    # row 0: 7 tokens, weights sum 7; row 1: 3 tokens, sum 3; row 2: none (left out of every per-response mean)
    by_hand = {
        "weight_max": (3.0 + 1.5) / 2,
        "weight_std": (statistics.pstdev([3, 2, 1, 0.5, 0.5, 0, 0]) + statistics.pstdev([1.5, 1, 0.5])) / 2,
        "weight_top40_mass": ((3 + 2 + 1) / 7 + (1.5 + 1) / 3) / 2,  # the top ceil(2.8) = 3 and ceil(1.2) = 2
        "key_weight_share": (2.0 + 0.5 + 1.5) / (7 + 3),
        "key_weight_auc": (6.5 / 10 + 2 / 2) / 2,  # row 0: w=2 beats 4 of 5, w=.5 beats 2 ties 1; row 1
        "neglogp_high_w": (0.1 + 0.2 + 0.9) / 3,  # w > 1: row 0 tokens 0, 1 and row 1 token 0
        "neglogp_low_w": (0.3 + 0.4 + 0.5 + 0.6 + 0.7 + 1.0 + 1.1) / 7,  # w = 1 counts as low
    }
    assert got.keys() == by_hand.keys()
    for k, v in by_hand.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    for k, v in reference_metrics(w, key, mask, logp).items():
        assert got[k] == pytest.approx(v, abs=1e-12), k


@pytest.mark.parametrize("seed", range(6))
def test_weight_metrics_match_the_plain_python_reference_on_random_batches(seed):
    g = torch.Generator().manual_seed(seed)
    N, T = 5, 13
    lengths = torch.randint(0, T + 1, (N,), generator=g)
    lengths[0], lengths[1] = T, 1 + seed  # a full row, and 1..6 tokens: every n mod 5
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    w = torch.randint(0, 6, (N, T), generator=g).double() / 2  # ties among the weights, and w = 1 exactly
    key = torch.rand(N, T, generator=g) < 0.3
    key[0, :2] = torch.tensor([True, False])  # at least one response has both kinds
    logp = -torch.rand(N, T, generator=g, dtype=torch.float64) * 3
    got, want = weight_metrics(w, key, mask, logp), reference_metrics(w, key, mask, logp)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_weight_metrics_see_only_valid_tokens_and_non_empty_responses():
    """Padding values and an appended empty response change nothing; a float32 batch gives the same numbers."""
    w, key, mask, logp = batch()
    want = weight_metrics(w[:2], key[:2], mask[:2], logp[:2])
    junk = w.masked_fill(~mask.bool(), -5.0)  # negative junk on padding: would lower the max and the sums
    for got in (
        weight_metrics(w, key, mask, logp),
        weight_metrics(junk, key, mask, logp),
        weight_metrics(w.float(), key, mask, logp.float()),
    ):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-6), k


def test_weight_metrics_leave_out_what_is_undefined():
    w, key, mask, logp = batch()
    got = weight_metrics(w, torch.zeros_like(key), mask)  # no key token, no log-probs
    assert set(got) == {"weight_max", "weight_std", "weight_top40_mass"}
    got = weight_metrics(w, mask.bool(), mask)  # every valid token is a key token: a share, but no AUC
    assert got["key_weight_share"] == pytest.approx(1.0) and "key_weight_auc" not in got
    empty = weight_metrics(w, key, torch.zeros_like(mask), logp)  # no valid token anywhere
    assert all(math.isnan(empty[k]) for k in ("weight_max", "weight_std", "weight_top40_mass"))


def test_top40_mass_counts_the_ceiling_of_forty_percent_of_each_response():
    """n = 1..12 tokens with weights n, n−1, .., 1: the top ⌈0.4·n⌉ hold Σ of the k largest / Σ of all."""
    for n in range(1, 13):
        w = torch.arange(n, 0, -1, dtype=torch.float64)[None]
        k = -(-2 * n // 5)  # ⌈2n/5⌉ in integers
        want = sum(range(n, n - k, -1)) / (n * (n + 1) / 2)
        got = weight_metrics(w, torch.zeros_like(w, dtype=torch.bool), torch.ones_like(w))["weight_top40_mass"]
        assert got == pytest.approx(want, abs=1e-12), n


def brute_ranks(scores, valid):
    """Ascending ranks with ties sharing their mean rank, by sorting the valid values in Python."""
    out = []
    for r, v in zip(scores.tolist(), valid.tolist()):
        vals = sorted(x for x, m in zip(r, v) if m)
        ranks = []
        for x in r:
            first = vals.index(x) + 1 if x in vals else 0
            last = len(vals) - vals[::-1].index(x) if x in vals else 0
            ranks.append((first + last) / 2)
        out.append(ranks)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_average_ranks_match_sorting(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (6, 9), generator=g).double()  # many ties
    valid = torch.rand(6, 9, generator=g) < 0.7
    ranks = average_ranks(scores, valid)
    for i, (r, want) in enumerate(zip(ranks.tolist(), brute_ranks(scores, valid))):
        for t in range(9):
            if valid[i, t]:
                assert r[t] == want[t], (i, t)
    # by hand: [5, 1, 5, 3] → 1 is rank 1, 3 rank 2, the two 5s share ranks 3 and 4
    assert average_ranks(torch.tensor([[5.0, 1.0, 5.0, 3.0]]), torch.ones(1, 4, dtype=torch.bool)).tolist() == [
        [3.5, 1.0, 3.5, 2.0]
    ]


@pytest.mark.parametrize("seed", range(5))
def test_key_token_auc_and_share_match_pair_counting(seed):
    g = torch.Generator().manual_seed(seed)
    N, T = 7, 8
    w = torch.randint(0, 4, (N, T), generator=g).float()
    mask = (torch.arange(T)[None] < torch.randint(0, T + 1, (N,), generator=g)[:, None]).long()
    key = torch.rand(N, T, generator=g) < 0.4
    aucs, num, den = [], 0.0, 0.0
    for i in range(N):
        kw = [w[i, t].item() for t in range(T) if mask[i, t] and key[i, t]]
        ow = [w[i, t].item() for t in range(T) if mask[i, t] and not key[i, t]]
        num, den = num + sum(kw), den + sum(kw) + sum(ow)
        if kw and ow:
            pairs = list(itertools.product(kw, ow))
            aucs.append(sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs))
    got = key_token_auc(w, key, mask).item()
    if aucs:
        assert got == pytest.approx(statistics.mean(aucs), abs=1e-12)
    else:
        assert math.isnan(got)
    assert key_token_share(w, key, mask).item() == pytest.approx(num / den if den else 0.0, abs=1e-6)


def test_key_token_auc_by_hand():
    mask = torch.ones(2, 4, dtype=torch.long)
    key = torch.tensor([[True, False, False, False], [True, True, False, False]])
    w = torch.tensor(
        [
            [2.0, 1.0, 2.0, 3.0],  # key 2 vs 1, 2, 3: 1 + 0.5 + 0 = 1.5 of 3
            [4.0, 0.0, 1.0, 0.0],  # keys 4, 0 vs 1, 0: (1 + 1) + (0 + 0.5) = 2.5 of 4
        ]
    )
    assert key_token_auc(w, key, mask).item() == pytest.approx((1.5 / 3 + 2.5 / 4) / 2)
    assert math.isnan(key_token_auc(w, key, torch.zeros_like(mask)).item())


def test_clip_fractions_by_hand():
    """Ten tokens, two on padding that meet every condition: each fraction counts valid tokens only, with the
    documented strict inequalities (ρ exactly 1 ± ε or c is not clipped)."""
    ratio = torch.tensor([[1.3, 1.28, 0.7, 0.8, 3.5, 3.0, 1.3, 0.5, 9.0, 0.1]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]])
    got = clip_fractions(ratio, adv, mask, eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    # high: token 0 (1.3 > 1.28 with Ã > 0); token 1 sits on the boundary. low: token 2 (0.7 < 0.8 with Ã < 0);
    # token 3 sits on it, token 7 has Ã > 0. dual: token 4 (3.5 > 3 with Ã < 0); token 5 sits on it.
    assert got == {"clipfrac_high": 1 / 8, "clipfrac_low": 1 / 8, "clipfrac_dual": 1 / 8}
    assert clip_fractions(ratio, adv, mask, 0.2, 0.28, 0.0)["clipfrac_dual"] == 0.0
    assert clip_fractions(ratio, adv, mask, 0.2, 0.01, 3.0)["clipfrac_high"] == 2 / 8  # now 1.28 > 1.01 too
    assert clip_fractions(ratio, adv, torch.zeros_like(mask), 0.2, 0.28, 3.0)["clipfrac_high"] == 0.0


def test_token_moves_by_hand():
    new = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, 0.0, 0.0]])
    old = torch.tensor([[-1.5, -1.0, -3.0, -9.0], [-2.0, -3.0, 0.0, 0.0]])
    w = torch.tensor([[2.0, 1.0, 0.5, 3.0], [1.5, 0.5, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    got = token_moves(new, old, w, mask)
    assert got["logp_move_high_w"] == pytest.approx((0.5 + 1.0) / 2)  # w > 1: (0, 0) and (1, 0)
    assert got["logp_move_low_w"] == pytest.approx((1.0 + 0.0 + 2.0) / 3)  # w ≤ 1: (0, 1), (0, 2), (1, 1)


def test_run_output_writes_every_step_as_json_without_undefined_values(tmp_path):
    """config.json holds the config and its provenance; each metrics.jsonl line is strict JSON with the step's
    finite values (NaN and ±inf left out, ints and strings kept); the model is saved under model/."""
    import gcpo
    from gcpo_support.metrics import RunOutput

    (tmp_path / "run").mkdir()  # an existing folder is fine
    cfg = gcpo.make_config("gcpo", out=str(tmp_path / "run"), seed=7)
    output = RunOutput(cfg)
    output.log({"step": 0, "a": 0.25, "b": math.nan, "c": math.inf, "d": -math.inf, "phase": "x"})
    output.log({"step": 1, "a": 1e-300})
    saved = []
    output.close(type("Model", (), {"save_pretrained": lambda self, path: saved.append(path)})())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": 0, "a": 0.25, "phase": "x"}, {"step": 1, "a": 1e-300}]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seed"] == 7 and config["out"] == str(tmp_path / "run") and "torch" in config["provenance"]
    assert saved == [str(tmp_path / "run" / "model")]
    RunOutput(gcpo.make_config("gcpo")).log({"a": 1.0})  # out="": nothing written, no error


def test_one_token_selections_and_boundaries_by_hand():
    """A selection of exactly one token is divided by 1; Ã = 0 is never clipped; w = 1 exactly is a low weight;
    weights summing to less than 1 give an exact key share."""
    ratio = torch.tensor([[1.5, 0.5, 4.0, 1.5]])
    adv = torch.tensor([[0.0, 0.0, 0.0, 0.5]])
    got = clip_fractions(ratio, adv, torch.ones(1, 4), 0.2, 0.28, 3.0)
    assert got == {"clipfrac_high": 1 / 4, "clipfrac_low": 0.0, "clipfrac_dual": 0.0}  # only token 3 has Ã ≠ 0
    low = clip_fractions(torch.tensor([[0.5]]), torch.tensor([[0.5]]), torch.ones(1, 1), 0.2, 0.28, 3.0)
    assert low["clipfrac_low"] == 0.0  # Ã > 0: a low ratio is not clipped
    one = clip_fractions(torch.tensor([[1.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2, 0.28, 3.0)
    assert one["clipfrac_high"] == 1.0  # one valid token, clipped: a fraction of 1
    dual = clip_fractions(torch.tensor([[4.0, 4.0]]), torch.tensor([[-1.0, 0.5]]), torch.ones(1, 2), 0.2, 0.28, 3.0)
    assert dual["clipfrac_dual"] == 0.5  # only the negative advantage
    w = torch.tensor([[3.0, 1.0, 0.5]])
    moves = token_moves(torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -1.0, -3.5]]), w, torch.ones(1, 3))
    assert moves == {"logp_move_high_w": 0.5, "logp_move_low_w": (1.0 + 0.5) / 2}  # w = 1 is low
    got = weight_metrics(w, torch.tensor([[False, True, False]]), torch.ones(1, 3), -torch.tensor([[0.5, 1.0, 2.0]]))
    assert got["neglogp_high_w"] == 0.5 and got["neglogp_low_w"] == 1.5
    small = torch.tensor([[0.1, 0.2, 0.3]])
    assert key_token_share(small, torch.tensor([[True, False, False]]), torch.ones(1, 3)).item() == pytest.approx(1 / 6)


def test_metrics_reject_weights_of_another_shape():
    key, mask = torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3)
    for f in (key_token_share, key_token_auc):
        with pytest.raises(ValueError):
            f(torch.ones(2, 4), key, mask)


def test_provenance_reports_this_process():
    """Each provenance field against its own source: versions, threads, the CPU's model name, the commit."""
    import os
    import platform
    import subprocess

    import numpy
    import transformers

    from gcpo_support import metrics
    from gcpo_support.metrics import provenance

    p = provenance()
    assert p["python"] == platform.python_version() and p["torch"] == torch.__version__
    assert p["transformers"] == transformers.__version__ and p["numpy"] == numpy.__version__
    assert p["torch_threads"] == torch.get_num_threads()
    assert p["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    names = (
        [line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        if os.path.exists("/proc/cpuinfo")
        else []
    )
    assert p["cpu"] == (names[0] if names else platform.processor() or platform.machine())
    here = os.path.dirname(os.path.abspath(metrics.__file__))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
    assert p["git_commit"] == (head or None)


def test_provenance_reads_the_cpu_model_and_the_commit_of_this_code(monkeypatch, tmp_path):
    """The CPU is /proc/cpuinfo's model name (whole, colons included), else the platform's processor or machine;
    the commit is that of the folder holding this code, wherever the process runs."""
    import io
    import platform

    from gcpo_support import metrics
    from gcpo_support.metrics import provenance

    commit = provenance()["git_commit"]
    monkeypatch.chdir(tmp_path)  # not a git repository
    assert provenance()["git_commit"] == commit
    cpuinfo = lambda text: lambda path, *a, **k: io.StringIO(text)
    monkeypatch.setattr(metrics, "open", cpuinfo("processor\t: 0\nmodel name\t: Chip: X1 @ 2GHz\n"), raising=False)
    assert provenance()["cpu"] == "Chip: X1 @ 2GHz"
    monkeypatch.setattr(metrics, "open", cpuinfo("processor\t: 0\nHardware\t: board\n"), raising=False)
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert provenance()["cpu"] == "aarch64"  # no model name line: the machine
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert provenance()["cpu"] == "arm"


def test_an_empty_weight_class_is_left_out_not_zero():
    """Uniform credit (w ≡ 1) has no token with w > 1: neglogp_high_w is undefined and left out of the metrics
    (a logged 0 would read as 'high-weight tokens are certain'); the low class is every token."""
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    logp = -torch.tensor([[0.5, 1.0, 9.0], [2.0, 9.0, 9.0]])
    got = weight_metrics(mask.float(), torch.zeros(2, 3, dtype=torch.bool), mask, logp)
    assert "neglogp_high_w" not in got and got["neglogp_low_w"] == pytest.approx((0.5 + 1.0 + 2.0) / 3)
