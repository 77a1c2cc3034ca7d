"""credit_kit (docs/credit_kit.md): every property fails on a scheme built to break exactly it and holds on every
built-in scheme that claims it; the drawn inputs are consistent; the peer schemes follow their sources; bad input
is one line; the docs' table and `check` example are what the code prints; the exercise grades; quality scores a
tiny checkpoint."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gcpo
from credit_kit import assert_properties, check_properties, grade, quality, table
from credit_kit import properties as P
from credit_kit.__main__ import cli
from gcpo_support import schemes
from gcpo_support.metrics import key_token_auc, key_token_share

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEW = 15  # drawn batches per property for the broken schemes (each fails within its first few)


# ---- one scheme per property, built to break exactly it ---------------------------------------------------
# (a break that inevitably takes another property down declares that one not claimed, with the reason)


def mean_one(s, mask):
    """Scores s (N, T) ≥ 0 → weights with mean 1 over each row's valid tokens; 0 on padding and on empty rows."""
    valid = mask.bool()
    s = s.float().masked_fill(~valid, 0)
    return s / s.sum(1, keepdim=True).clamp(min=1e-30) * valid.sum(1, keepdim=True).float()


def eta(logp, logp_neg):
    d = (logp_neg.float() - logp.float()).clamp(-20, 20)
    return (d.exp() - d - 1).clamp(max=10)


def breaks_shape_dtype(mask):
    return mask.half()


@schemes.credit_scheme(not_claimed={"total_preserved": "inf on a token", "half_precision": "inf on a token"})
def breaks_finite(logp, mask):
    return torch.where(mask.bool(), 1 / (logp.float() > -20).float(), 0.0)  # inf on a very unlikely token


@schemes.credit_scheme(not_claimed={"empty_safe": "an all-padding response is all padding: weight 1"})
def breaks_zero_on_padding(logp, mask):
    return mean_one(torch.ones_like(logp), mask) + (1 - mask.float())


def breaks_no_gradient(logp, mask):
    return mask.float() + 0 * logp


def breaks_inputs_unchanged(logp, mask):
    logp.clamp_(min=-5.0)
    return mask.float()


def breaks_empty_safe(mask):
    m = mask.float()
    return m * m.sum(1, keepdim=True) / m.sum(1, keepdim=True)  # 0/0 on a response without tokens


@torch.no_grad()
def breaks_padding_invariant(mask):
    T = mask.shape[1]  # the padded length leaks into the weights
    return mean_one(torch.arange(T).float().add(1 + T).expand(mask.shape), mask)


@schemes.credit_scheme(not_claimed={"micro_batch_invariant": "the batch mean changes with the micro-batch too"})
@torch.no_grad()
def breaks_row_independent(logp, mask):
    valid = mask.bool()
    mean = logp.float()[valid].mean() if valid.any() else torch.tensor(0.0)
    return mean_one((logp.float() - mean).clamp(-5, 5).exp(), mask)


@torch.no_grad()
def breaks_micro_batch_invariant(logp, mask):
    if mask.shape[0] % 2 == 0:  # an even batch: uniform; an odd one: weights that grow along the response
        return mask.float()
    return mean_one(torch.arange(mask.shape[1]).float().add(1).expand(mask.shape), mask)


@schemes.credit_scheme(
    not_claimed={p: "random per position" for p in ("padding_invariant", "row_independent", "micro_batch_invariant")}
)
@torch.no_grad()
def breaks_deterministic(mask):
    return mean_one(1 + torch.rand(mask.shape), mask)  # torch's global RNG, not the generator


@torch.no_grad()
def breaks_non_negative(logp, logp_neg, mask):
    d = (logp_neg.float() - logp.float()).clamp(-20, 20).masked_fill(~mask.bool(), 0)
    return (1 + d - d.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)) * mask


def breaks_total_preserved(mask):
    return 2.0 * mask.float()


@torch.no_grad()
def breaks_half_precision(logp, logp_neg, mask):
    d = (logp_neg - logp) * 1000  # in the input's precision: half rounding, amplified
    return mean_one(1 + 0.5 * torch.sin(d.float()), mask)


@schemes.credit_scheme(claims=("uniform_when_uninformative",), signal="contrast")
@torch.no_grad()
def breaks_uniform_when_uninformative(logp, logp_neg, mask):
    return mean_one((1 + eta(logp, logp_neg)) * (1 + 0.1 * torch.arange(mask.shape[1]).float()), mask)


@schemes.credit_scheme(claims=("uniform_when_uninformative", "monotone"), signal="contrast")
@torch.no_grad()
def breaks_monotone(logp, logp_neg, mask):
    return mean_one(1 / (1 + eta(logp, logp_neg)), mask)


BROKEN = {p: globals()[f"breaks_{p}"] for p in P.PROPERTIES}


@pytest.mark.parametrize("prop", list(P.PROPERTIES))
def test_each_property_fails_on_the_scheme_built_to_break_it_and_only_there(prop):
    results = check_properties(BROKEN[prop], max_examples=FEW)
    assert {r.name for r in results if r.status == "FAILS"} == {prop}
    failed = next(r for r in results if r.status == "FAILS")
    assert failed.detail and "mask = [" in failed.counterexample and "w = [" in failed.counterexample


def test_a_counterexample_is_shrunk_to_a_small_batch():
    detail, example = P.run_property("total_preserved", breaks_total_preserved)
    assert detail == "row 0: Σ_t w = 2, N_0 = 1"  # one response of one token: as small as it gets
    assert "mask = [[1]]" in example


# ---- every built-in scheme holds what it claims ------------------------------------------------------------

KNOWN: dict = {}  # built-in schemes that fail a property they claim (none; a finding goes here, with why)


@pytest.fixture(scope="module")
def builtin():
    return table.results()


@pytest.mark.parametrize("label", [table.label(n, c) for n, c in table.BUILTINS])
def test_every_builtin_scheme_holds_every_property_it_claims(builtin, label):
    assert {r.name for r in builtin[label] if r.status == "FAILS"} == KNOWN.get(label, set())


def test_the_docs_table_is_generated_from_the_checks(builtin):
    page = open(os.path.join(ROOT, "docs", "credit_kit.md"), encoding="utf-8").read()
    assert f"{table.START}\n{table.markdown(builtin)}\n{table.END}" in page, (
        "docs/credit_kit.md is out of date: python -m credit_kit table --write docs/credit_kit.md"
    )


def test_table_write_replaces_only_the_table(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"before\n{table.START}\nold\n{table.END}\nafter\n")
    table.write(str(page), "new")
    assert page.read_text() == f"before\n{table.START}\nnew\n{table.END}\nafter\n"
    page.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        table.write(str(page), "new")


def test_the_docs_check_example_runs_as_written():
    """The page's `check` block: the command, then exactly what it prints."""
    page = open(os.path.join(ROOT, "docs", "credit_kit.md"), encoding="utf-8").read()
    command, shown = re.search(r"```console\n\$ (python -m credit_kit check [^\n]+)\n(.*?)```", page, re.S).groups()
    out = subprocess.run(
        [sys.executable, *command.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == shown


def test_assert_properties_for_a_users_test_file():
    assert_properties(schemes.PEERS["gtpo_entropy"], max_examples=5)
    with pytest.raises(AssertionError, match=r"(?s)total_preserved .*FAILS: row 0.*mask = \[\[1\]\]"):
        assert_properties(breaks_total_preserved, max_examples=5)
    with pytest.raises(AssertionError, match="asks for 'foo'"):
        assert_properties(lambda mask, foo: mask.float())


def test_group_level_schemes_are_split_at_group_boundaries():
    @torch.no_grad()
    def group_share(logp, mask, group_size):  # weights from the group's mean log-prob at each position
        lp = logp.float().masked_fill(~mask.bool(), 0).view(len(mask) // group_size, group_size, mask.shape[1])
        s = (1 + (lp.mean(1, keepdim=True) - lp).clamp(min=0)).reshape(mask.shape)
        return mean_one(s, mask)

    results = {r.name: r for r in check_properties(group_share, max_examples=FEW)}
    assert results["row_independent"].status == "not claimed" and "group_size" in results["row_independent"].detail
    assert all(r.status != "FAILS" for r in results.values())


# ---- the drawn inputs are consistent ----------------------------------------------------------------------


@settings(max_examples=20, deadline=None, database=None, derandomize=True)
@given(st.data(), st.booleans())
def test_drawn_batches_are_consistent(data, group_level):
    s = data.draw(P.specs(data.draw(P.dims(group_level, empty=True)), empty=True))
    x = P.build(s)
    N, T = x["mask"].shape
    assert x["logp_all"].shape[:2] == (N, T) and (x["logp"] <= 0).all()
    torch.testing.assert_close(x["logp_all"].logsumexp(-1), torch.zeros(N, T), atol=1e-5, rtol=0)  # a log-softmax
    tokens = torch.as_tensor(s.tokens)[..., None]
    assert torch.equal(x["logp_all"].gather(-1, tokens).squeeze(-1), x["logp"])  # ... whose token entry is logp
    assert torch.equal(x["logp_neg_all"].gather(-1, tokens).squeeze(-1), x["logp_neg"])
    p = x["logp_all"].double().exp()
    torch.testing.assert_close(x["entropy"].double(), -(p * p.log()).sum(-1), atol=1e-5, rtol=0)
    assert not (x["key_mask"] & ~x["mask"].bool()).any()  # key tokens are response tokens
    assert (x["mask"][:, 1:] <= x["mask"][:, :-1]).all()  # tokens, then padding
    G = x["group_size"]
    r = x["rewards"].double().view(-1, G)
    if G > 1 and len(r):
        want = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)
        want = want.masked_fill(r.amax(1, keepdim=True) == r.amin(1, keepdim=True), 0)
        torch.testing.assert_close(x["adv"].double(), want.reshape(-1), atol=1e-5, rtol=0)
    assert isinstance(x["generator"], torch.Generator)
    assert (G >= 2) or not group_level


def test_signals_match_the_trainers_scores():
    x = P.smoke_batch()
    torch.testing.assert_close(
        P.signal_values("contrast", x).float(), gcpo.token_scores(x["logp"], x["logp_neg"], torch.ones_like(x["mask"]))
    )
    torch.testing.assert_close(
        P.signal_values("full_kl", x).float(),
        gcpo.token_scores(
            x["logp"], x["logp_neg"], torch.ones_like(x["mask"]), "full_kl", x["logp_all"], x["logp_neg_all"]
        ),
        atol=1e-6,
        rtol=1e-5,
    )


# ---- the peer schemes follow their sources -------------------------------------------------------------------


def peer_batch(seed=0, N=5, T=12):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(N, T, generator=g) * 4
    mask = (torch.arange(T)[None] < torch.tensor([12, 9, 5, 1, 0][:N])[:, None]).long()
    return logp, logp + torch.randn(N, T, generator=g), torch.rand(N, T, generator=g) * 2, mask


def test_vppo_score_is_gcpos_k3_score_and_its_mask_the_top_40_percent():
    logp, logp_neg, _, mask = peer_batch()
    eta = gcpo.token_scores(logp, logp_neg, mask, "kl")
    torch.testing.assert_close(schemes.k3_score(logp, logp_neg, mask), eta, rtol=0, atol=0)
    w = schemes.PEERS["vppo_top40"](logp, logp_neg, mask)
    for i in range(len(w)):
        valid = mask[i].bool()
        n = int(valid.sum())
        top = eta[i][valid].argsort(descending=True)[: math.ceil(0.4 * n)]  # distinct scores: no tie at the cut
        want = torch.zeros(n)
        want[top] = 1
        assert torch.equal(w[i][valid], want) and (w[i][~valid] == 0).all()


def test_entropy_top20_is_trls_high_entropy_mask():
    """TRL's get_high_entropy_mask(entropies, mask, 1 − top_entropy_quantile): the batch's valid entropies, their
    quantile by linear interpolation (written out here), ≥, and padding never selected."""
    for seed in range(3):
        _, _, entropy, mask = peer_batch(seed)
        entropy[0, :3] = entropy[0, 3]  # ties at the threshold count as selected (≥)
        values = entropy[mask.bool()].double().sort().values
        pos = 0.8 * (len(values) - 1)
        lo = int(pos)
        q = values[lo] + (pos - lo) * (values[min(lo + 1, len(values) - 1)] - values[lo])
        want = ((entropy.double() >= q) & mask.bool()).float()
        got = schemes.PEERS["entropy_top20"](entropy, mask)
        assert torch.equal(got, want)
        assert abs(got.sum() / mask.sum() - 0.2) < 0.1  # about 20% of the tokens
    assert torch.equal(schemes.PEERS["entropy_top20"](entropy, torch.zeros_like(mask)), torch.zeros_like(entropy))


def test_gtpo_entropy_is_the_entropy_share_times_the_length():
    _, _, entropy, mask = peer_batch()
    entropy[1, :] = 0.0  # no entropy anywhere: uniform credit
    w = schemes.PEERS["gtpo_entropy"](entropy, mask)
    for i in range(len(w)):
        valid = mask[i].bool()
        h = entropy[i][valid].double()
        want = torch.ones_like(h) if h.sum() == 0 else h / h.sum() * len(h)
        torch.testing.assert_close(w[i][valid].double(), want, rtol=1e-6, atol=1e-6)
        assert (w[i][~valid] == 0).all()


# ---- bad input: one line naming the scheme and the problem --------------------------------------------------


BAD = {
    "raises": ("def f(mask):\n    raise ZeroDivisionError('oops')\n", "'f' raised ZeroDivisionError: oops"),
    "shape": ("def f(mask):\n    return mask.float()[:, :1]\n", "'f' returned shape (4, 1)"),
    "dtype": ("def f(mask):\n    return mask\n", "'f' returned torch.int64 weights"),
    "nan": ("def f(mask):\n    return mask.float() * float('nan')\n", "'f' returned NaN or inf weights"),
    "not a tensor": ("def f(mask):\n    return 1.0\n", "'f' returned float, not a tensor"),
    "parameter": ("def f(mask, lopg):\n    return mask.float()\n", "'f' asks for 'lopg', which is not an input"),
    "import": ("import not_a_module\n", "importing"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_scheme_is_one_line_naming_it_and_the_problem(case, tmp_path, capsys):
    source, message = BAD[case]
    (tmp_path / "scheme.py").write_text("import torch\n" + source)
    assert cli(["check", f"{tmp_path}/scheme.py:f"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("credit_kit: error: ") and message in err, err


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module:f", "cannot import no_such_module"),
        ("credit_kit.properties:no_such_fn", "has no 'no_such_fn'"),
        ("missing/file.py:f", "no file missing/file.py"),
        ("credit_kit.properties:BUILTIN", "is a tuple, not a function"),
        ("justaword", "neither a built-in name"),
    ],
)
def test_a_scheme_that_cannot_be_loaded_is_one_line(spec, message, capsys):
    assert cli(["check", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_bad_commands_and_options_are_one_line(capsys):
    assert cli(["frobnicate"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli(["check", "uniform", "--config", "normalization=bogus"]) == 2
    assert "normalization" in capsys.readouterr().err
    assert cli(["quality", "uniform", "--tasks", "topic"]) == 2 and "key tokens" in capsys.readouterr().err
    assert cli(["quality", "uniform", "--tasks", "needle", "--checkpoints", "/nonexistent"]) == 2
    assert "--make-checkpoints" in capsys.readouterr().err


def test_check_exits_1_iff_a_claimed_property_fails(tmp_path, capsys):
    (tmp_path / "s.py").write_text("def double(mask):\n    return 2.0 * mask.float()\n")
    assert cli(["check", f"{tmp_path}/s.py:double", "--max-examples", "5"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"total_preserved +FAILS: row 0", out) and "1 fail" in out
    (tmp_path / "declared.py").write_text(
        "from gcpo_support.schemes import credit_scheme\n"
        "@credit_scheme(not_claimed={'total_preserved': 'doubles every token'})\n"
        "def double(mask):\n    return 2.0 * mask.float()\n"
    )
    assert cli(["check", f"{tmp_path}/declared.py:double", "--max-examples", "5"]) == 0
    assert "total_preserved             not claimed: doubles every token" in capsys.readouterr().out


# ---- the exercise -----------------------------------------------------------------------------------------------

SOLUTION = """
import math

import torch


@torch.no_grad()
def hist_weights(logp, logp_neg, mask):
    alpha = math.log(1 - 0.8) / math.log(1 - 0.4) - 1
    d = (logp_neg.float() - logp.float()).clamp(-20, 20)
    eta = (d.exp() - d - 1).clamp(max=10)
    w = torch.zeros(mask.shape)
    for i in range(mask.shape[0]):
        idx = mask[i].bool().nonzero().flatten()
        s = eta[i, idx]
        n = len(s)
        if n == 0:
            continue
        if bool((s == s[0]).all()):
            w[i, idx] = 1.0
            continue
        ranks = torch.tensor([float((s < v).sum()) + (float((s == v).sum()) + 1) / 2 for v in s])
        u = (ranks / n) ** alpha
        w[i, idx] = u / u.sum() * n
    return w
"""


def test_the_exercise_skeleton_fails_grading_and_a_solution_passes(tmp_path):
    passed, results = grade.grade(os.path.join(ROOT, "exercises", "hist_weights.py"))
    assert not passed and results[0].name == "written" and "NotImplementedError" in results[0].detail
    (tmp_path / "solution.py").write_text(SOLUTION)
    passed, results = grade.grade(str(tmp_path / "solution.py"), max_examples=FEW)
    assert passed, "\n".join(map(str, results))
    assert {r.name for r in results if r.status == "holds"} >= {"equals_reference", "total_preserved", "monotone"}
    # ordinal ranks instead of shared ones (the official code's ties): equal scores get unequal weights
    (tmp_path / "ordinal.py").write_text(
        SOLUTION.replace("float((s < v).sum()) + (float((s == v).sum()) + 1) / 2", "0.0").replace(
            "for v in s])", "for v in s]) + s.argsort().argsort().float() + 1"
        )
    )
    passed, results = grade.grade(str(tmp_path / "ordinal.py"), max_examples=FEW)
    assert not passed and {r.name for r in results if r.status == "FAILS"} >= {"equals_reference"}


# ---- quality ------------------------------------------------------------------------------------------------------


def test_per_response_auc_and_share_agree_with_the_trainers_metrics():
    g = torch.Generator().manual_seed(0)
    w, key = torch.rand(8, 7, generator=g), torch.rand(8, 7, generator=g) < 0.3
    mask = (torch.arange(7)[None] < torch.tensor([7, 7, 5, 3, 1, 0, 6, 2])[:, None]).long()
    w[1, :3] = w[1, 3]  # ties count ½
    auc, on_key, total = quality.per_response(w, key, mask)
    assert math.isclose(np.nanmean(auc), key_token_auc(w, key, mask).item(), rel_tol=1e-12)
    assert math.isclose(on_key.sum() / total.sum(), key_token_share(w, key, mask).item(), rel_tol=1e-6)


def test_bootstrap_intervals_resample_prompts():
    auc = np.array([0.5, 0.5, 1.0, 1.0, np.nan, 0.0])
    stats = quality.bootstrap(auc, np.ones(6), np.full(6, 4.0), G=2, boots=200)
    est, lo, hi = stats["auc"]
    assert est == pytest.approx(0.6) and 0.0 <= lo <= est <= hi <= 1.0 and lo < hi
    assert stats["share"] == (0.25, 0.25, 0.25)  # the same share in every prompt: no spread


def test_quality_scores_a_scheme_on_a_tiny_checkpoint(tmp_path):
    quality.make_checkpoints(["needle"], str(tmp_path), warm_steps=30, steps=1, progress=False)
    mine = P.load_scheme(os.path.join(ROOT, "examples", "my_scheme.py") + ":entropy_contrast")
    rows = quality.score_schemes(
        {"mine": mine, "uniform": None, "oracle": None}, ["needle"], str(tmp_path), prompts=6, boots=50
    )
    by = {r["scheme"]: r for r in rows}
    assert by["uniform"]["auc"] == (0.5, 0.5, 0.5)  # every token tied in every response
    assert by["uniform"]["share"][0] == pytest.approx(by["uniform"]["key_frac"])  # uniform: the key fraction
    assert by["oracle"]["auc"][0] == 1.0 and by["oracle"]["share"][0] > by["uniform"]["share"][0]
    for r in rows:
        for est, lo, hi in (r["auc"], r["share"]):
            assert lo <= est + 1e-12 and est <= hi + 1e-12
    text = quality.table(rows, 6, 8, 50, str(tmp_path))
    assert re.search(r"needle +0\.\d{3}  mine", text) and "oracle" in text


def test_a_users_scheme_trains_through_gcpo(capsys):
    spec = os.path.join(ROOT, "examples", "my_scheme.py") + ":entropy_contrast"
    r = gcpo.main(
        [
            "--credit",
            spec,
            "--steps",
            "2",
            "--warm-steps",
            "5",
            "--batch-prompts",
            "2",
            "--group-size",
            "2",
            "--eval-prompts",
            "4",
            "--show",
            "1",
        ]
    )
    assert all(math.isfinite(v) for h in r["history"] for v in h.values() if isinstance(v, float))
    assert "entropy_contrast credit" in capsys.readouterr().out


def test_the_decorator_rejects_unknown_properties_and_signals():
    with pytest.raises(ValueError, match=r"unknown properties \['total_preserve'\].*total_preserved"):
        schemes.credit_scheme("x", not_claimed={"total_preserve": "typo"})
    with pytest.raises(ValueError, match=r"unknown properties \['finite'\]"):  # a core property is not opted into
        schemes.credit_scheme("x", claims=("finite",))
    with pytest.raises(ValueError, match="unknown signal 'kl'"):
        schemes.credit_scheme("x", signal="kl")
    info = schemes.info(schemes.credit_scheme("x", claims="monotone", signal="entropy")(lambda entropy, mask: mask))
    assert info.claims == ("monotone",) and info.signal == "entropy"  # one claim as a bare string


# ---- realistic bugs in the kit itself: each test states a promise a one-line slip would break ---------------


def test_close_names_the_token_that_differs_most_a_nan_against_a_number_included():
    """close is the verdict of every comparing property: '' when the valid tokens agree within tolerance (padding
    ignored, NaN against NaN equal), else the (row, token) that differs most, so a counterexample points at it. A
    NaN against a number is a difference: a scheme that turns NaN on a replay must not pass as equal."""
    valid = torch.tensor([[True, True, True], [True, True, False]])
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert P.close(a, a + 1e-7, valid) == ""
    assert P.close(a, torch.where(valid, a, 99.0), valid) == ""  # padding is not compared
    b = a.clone()
    b[0, 2], b[1, 1] = 3.5, 7.0
    assert P.close(a, b, valid) == "token (1, 1): 5 against 7"  # the largest gap, at its own row and column
    nan = torch.full_like(a, math.nan)
    assert P.close(nan, nan, valid) == ""
    b = a.clone()
    b[1, 1] = math.nan
    assert P.close(a, b, valid).startswith("token (1, 1)") and P.close(b, a, valid).startswith("token (1, 1)")


@schemes.credit_scheme(not_claimed={p: "inf on padding" for p in ("zero_on_padding", "empty_safe", "half_precision")})
def inf_on_padding(mask):
    return torch.where(mask.bool(), 1.0, math.inf)


@schemes.credit_scheme(not_claimed={"empty_safe": "an all-padding response gets −1"})
def negative_on_padding(mask):
    return 2 * mask.float() - 1


def raises_on_an_empty_batch(mask):
    m = mask.float()
    return m * (m.sum(1).amax() > 0)  # amax of no rows raises


def penalizes_the_last_token(mask):
    m = mask.float()
    n = m.sum(1, keepdim=True)
    last = (mask.cumsum(1) == n) & mask.bool() & (n > 1)  # −1 on the last of 2+ tokens, the rest keeps Σ_t w = N_i
    return torch.where(last, -1.0, m * torch.where(n > 1, (n + 1) / (n - 1).clamp(min=1), 1.0))


def halves(mask):
    return 0.5 * mask.float()


@torch.no_grad()
def sharpened_in_input_precision(logp, logp_neg, mask):
    d = (logp_neg - logp) * 20  # float16 keeps this within the tolerance, bfloat16's 8-bit mantissa does not
    return mean_one(1 + 0.5 * torch.sin(d.float()), mask)


SUBTLE = {  # property: (a scheme that breaks only it, in a way the BROKEN one does not, words of the failure)
    "finite": (inf_on_padding, "= inf"),  # only on padding: the loss still sees inf·0 = NaN
    "zero_on_padding": (negative_on_padding, "has weight -1"),  # below zero, not above
    "empty_safe": (raises_on_an_empty_batch, "raised"),  # an error, not NaN
    "non_negative": (penalizes_the_last_token, "< 0"),  # not on the first token
    "total_preserved": (halves, "Σ_t w = 0.5"),  # too little, not too much
    "half_precision": (sharpened_in_input_precision, "bfloat16"),  # float16 holds it
}


@pytest.mark.parametrize("prop", list(SUBTLE))
def test_each_property_also_fails_on_a_subtler_break(prop):
    """The kit's own slips hide behind the BROKEN schemes' blatant breaks: a finite check that looks only at valid
    tokens, a padding check that only rejects positive weights, an empty_safe that treats an error as passing, a
    sign check on one token, a total check that is one-sided, a half-precision check that skips bfloat16."""
    scheme, words = SUBTLE[prop]
    results = check_properties(scheme, max_examples=FEW)
    assert {r.name for r in results if r.status == "FAILS"} == {prop}
    assert words in next(r for r in results if r.status == "FAILS").detail


def test_a_scheme_written_for_one_width_fails_shape_dtype_on_others():
    """A scheme that returns the smoke batch's width (5) passes the contract check, and every drawn batch of
    another width is a 'returned shape' failure, not a crash of the kit or a pass."""

    def fixed_width(mask):
        return torch.nn.functional.pad(mask.float(), (0, 5 - mask.shape[1]))

    results = {r.name: r for r in check_properties(fixed_width, max_examples=FEW)}
    assert results["shape_dtype"].status == "FAILS" and "returned shape" in results["shape_dtype"].detail


@torch.no_grad()
def advantage_sign(logp, adv, mask):
    """Good responses favor their likely tokens, bad ones their unlikely ones: row-level, but it reads A_i."""
    return mean_one((logp.float() * adv.float().sign()[:, None]).clamp(-5, 5).exp(), mask)


def test_rows_taken_out_of_a_batch_keep_their_advantage():
    """row_independent and micro_batch_invariant move rows around; each row must keep its own group advantage
    (not one recomputed over whatever rows end up together, nor the whole batch's), else a row-level scheme that
    reads adv is blamed for the kit's regrouping."""
    results = check_properties(advantage_sign, max_examples=FEW)
    assert all(r.status != "FAILS" for r in results), "\n".join(map(str, results))
    assert {r.name for r in results if r.status == "holds"} >= {"row_independent", "micro_batch_invariant"}


@schemes.credit_scheme(claims=("uniform_when_uninformative", "monotone"), signal="entropy")
@torch.no_grad()
def entropy_where_the_prompt_matters(logp, logp_neg, entropy, mask):
    """Entropy credit in a response where the negative prompt moves some token, uniform credit elsewhere."""
    informative = (eta(logp, logp_neg) * mask).sum(1, keepdim=True) > 0
    return mean_one(torch.where(informative, 1 + entropy.float(), torch.ones(mask.shape)), mask)


def test_a_declared_signal_overrides_the_one_the_inputs_imply():
    """A scheme that names logp_neg but declares signal='entropy' is checked against entropy: monotone and
    uniform_when_uninformative follow what the scheme says it is about, not its first input."""
    assert P.signal(entropy_where_the_prompt_matters) == "entropy"
    results = check_properties(entropy_where_the_prompt_matters, max_examples=FEW)
    assert all(r.status == "holds" for r in results), "\n".join(map(str, results))


def test_a_counterexample_is_the_batch_the_property_drew_first():
    """A property that draws a second batch (row_independent's other content) reports the first one, the batch
    the scheme was run on, as its counterexample."""

    def fails_on_its_batch(scheme, draw):
        s = draw(P.specs(P.Dims(1, 1, 1, 2)))
        draw(P.specs(P.Dims(2, 1, 3, 2)))  # other content
        P.weigh(scheme, P.build(s))
        return "fails"

    detail, example = P.run_property(fails_on_its_batch, breaks_total_preserved, max_examples=3)
    assert detail == "fails" and "mask = [[1]]" in example


def test_a_property_that_breaks_is_an_error_not_a_pass():
    """An exception that is not the scheme's (Broken) comes from the kit or its caller: run_property raises it,
    never reports the property as holding. Here: monotone for a scheme with no signal."""
    with pytest.raises(ValueError, match="monotone needs a signal"):
        P.run_property("monotone", lambda mask: mask.float(), max_examples=3)


def test_run_property_draws_the_batches_of_its_seed():
    """The same seed draws the same batches (a run is reproducible), another seed other batches (so that `--seed`
    checks more of the input space)."""

    def drawn(seed_):
        seen = []
        P.run_property(
            lambda scheme, draw: seen.append(repr(P.batch(draw, scheme))), P.load_scheme("uniform"), 8, seed_
        )
        return seen

    assert drawn(0) == drawn(0) != drawn(1)


def test_the_table_marks_and_explains_a_failing_property():
    """A ✗ cell for a failing property, — for one not claimed, ✓ for the rest, and a note for each ✗ and —, so
    that a built-in scheme that starts failing shows up on the page."""
    rs = [P.Result(p, "holds") for p in P.PROPERTIES]
    cols = list(P.PROPERTIES)
    rs[cols.index("total_preserved")] = P.Result("total_preserved", "FAILS", "row 0: Σ_t w = 2, N_0 = 1")
    rs[cols.index("monotone")] = P.Result("monotone", "not claimed", "optional, not declared in claims")
    text = table.markdown({"double": rs})
    row = next(line for line in text.splitlines() if line.startswith("| double |"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    want = ["✗" if c == "total_preserved" else "—" if c == "monotone" else "✓" for c in cols]
    assert cells == want
    assert "- double, `total_preserved` FAILS: row 0: Σ_t w = 2, N_0 = 1" in text
    assert "- double, `monotone`: optional, not declared in claims" in text


def test_the_table_runs_the_checks_with_the_seed_and_budget_it_names(monkeypatch):
    """`table --seed S --max-examples M` must check with S and M, as its header says."""
    calls = []
    monkeypatch.setattr(table, "check_properties", lambda scheme, **kw: calls.append(kw) or [])
    assert len(table.results(max_examples=7, seed_=3)) == len(table.BUILTINS)
    assert calls and all(kw == {"max_examples": 7, "seed_": 3} for kw in calls)


def test_grading_does_not_ask_for_half_precision_and_grade_exits_1_until_it_passes(tmp_path, capsys):
    """The reference scores in its input's precision, so a solution that does too (η ≈ d²/2 cancels in half
    precision) passes grading; `python -m credit_kit grade` exits 1 on the skeleton and 0 on a passing solution."""
    (tmp_path / "solution.py").write_text(SOLUTION.replace("logp_neg.float() - logp.float()", "logp_neg - logp"))
    passed, results = grade.grade(str(tmp_path / "solution.py"), max_examples=FEW)
    assert passed, "\n".join(map(str, results))
    assert next(r for r in results if r.name == "half_precision").status == "not claimed"
    assert cli(["grade", os.path.join(ROOT, "exercises", "hist_weights.py")]) == 1
    assert cli(["grade", str(tmp_path / "solution.py"), "--max-examples", "5"]) == 0
    assert "PASS" in capsys.readouterr().out


@schemes.credit_scheme(not_claimed={p: "NaN on padding" for p in ("finite", "zero_on_padding", "empty_safe")})
def nan_on_padding(mask):
    return torch.where(mask.bool(), 1.0, math.nan)


def test_nan_in_the_same_places_on_both_calls_is_deterministic():
    """deterministic compares the two calls' weights with NaN equal to NaN in the same place: a scheme that puts
    NaN on padding (declared, not claimed finite) is reproducible; NaN at another place is a difference."""
    results = {r.name: r for r in check_properties(nan_on_padding, max_examples=FEW)}
    assert results["deterministic"].status == "holds", results["deterministic"]
    nan = torch.tensor([1.0, math.nan])
    assert P.identical(nan, nan.clone()) and not P.identical(nan, torch.tensor([math.nan, 1.0]))
    assert not P.identical(nan, nan.double()) and not P.identical(nan, nan[None])
