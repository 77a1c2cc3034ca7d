"""Property-based fuzz test of the command line: every option's value drawn from inside and outside its declared
range (checks.RANGES) or set (checks.CHOICES).

inside  → the run finishes (tiny model, one RL step) with finite metrics;
outside → `gcpo.cli(argv)` returns non-zero and prints exactly one line on stderr, `gcpo.py: error: ...`, that
          names the option; no traceback.

hypothesis draws the values (boundaries, NaN, ±inf, huge and tiny magnitudes, non-numbers) with a fixed seed
(`derandomize=True`) and a small budget, so the test is deterministic and fast. It runs in-process through
`gcpo.cli` / `gcpo.main`; two subprocess checks confirm that `python gcpo.py` behaves the same.
"""

import math
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import gcpo
from gcpo_support import checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# one tiny run: Needle with 4 symbols (responses of 5 tokens with EOS), an 8-wide 1-layer model, one RL step;
# reward noise makes every group's rewards differ, so the step always updates the model
TINY = [
    "--steps",
    "1",
    "--warm-steps",
    "2",
    "--batch-prompts",
    "2",
    "--group-size",
    "2",
    "--eval-prompts",
    "4",
    "--show",
    "0",
    "--device",
    "cpu",
    "--n-embd",
    "8",
    "--n-head",
    "2",
    "--n-layer",
    "1",
    "--task-args",
    "length=4,reward_noise=0.1",
]
L_MAX = 5  # the task's response length + EOS
CHEAP = {  # the inside draw of a size-like option stays at most this large, so each run stays tiny
    "steps": 1,
    "warm_steps": 2,
    "n_layer": 2,
    "n_embd": 16,
    "warm_batch": 4,
    "batch_prompts": 3,
    "group_size": 3,
    "max_sampling_tries": 3,
    "epochs": 2,
    "minibatches": 3,
    "micro_batch": 5,
    "eval_prompts": 6,
    "eval_every": 2,
    "show": 4,
    "max_new_tokens": L_MAX + 2,
    "overlong_buffer": L_MAX,
}
FITS = {  # combinations with TINY's other values: an in-range value that these exclude is not drawn
    "n_embd": lambda v: v % 2 == 0,  # n_head = 2 must divide it
    "n_head": lambda v: 8 % v == 0,  # n_embd = 8
    "max_new_tokens": lambda v: v == 0 or v >= L_MAX,  # 0: the task's own; less than the task cannot end
    "warm_steps": lambda v: v >= 0,  # −1 means 1200 steps: too long for a fuzz run
    "top_fraction": lambda v: v <= 0.8,  # target_mass = 0.8 must be >= it
    "target_mass": lambda v: v >= 0.4,  # top_fraction = 0.4
}
# fixed seed, no example database, no shrinking (a failure reports its drawn value; shrinking would cost minutes)
SETTINGS = dict(
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)


def flag(name):
    return "--" + name.replace("_", "-")


def text(value) -> str:
    """How a user types the value: repr for floats (1e-05, 5e-324, 1.7976931348623157e+308)."""
    return repr(value) if isinstance(value, float) else str(value)


def inside(name: str, r) -> st.SearchStrategy:
    """Values in the range r (its `also` values included) that fit TINY, size-like ones capped by CHEAP."""
    if r.integer:
        hi = min(r.hi, CHEAP.get(name, math.inf))
        values = st.integers(int(r.lo) + r.lo_open, None if hi == math.inf else int(hi) - (r.hi_open and hi == r.hi))
    else:
        values = st.floats(
            r.lo, r.hi, exclude_min=r.lo_open, exclude_max=r.hi_open, allow_nan=False, allow_infinity=False
        )
    if r.also:
        values = st.one_of(st.sampled_from(r.also), values)
    return values.filter(lambda v: v in r and FITS.get(name, lambda _: True)(v))


def outside(r) -> st.SearchStrategy:
    """What a user may type that is not in r: NaN, ±inf, words, empty, non-integers, values past either end."""
    bad = [st.sampled_from(["nan", "inf", "-inf", "abc", "", "1,5"])]
    if r.integer:
        bad.append(st.floats(-1e6, 1e6).filter(lambda v: not v.is_integer()))  # not an integer: an error, never rounded
    if r.lo > -math.inf:
        bad.append(
            st.integers(max_value=math.ceil(r.lo) - 1)
            if r.integer
            else st.floats(max_value=r.lo, exclude_max=not r.lo_open, allow_nan=False, allow_infinity=False)
        )
    if r.hi < math.inf:
        bad.append(
            st.integers(min_value=math.floor(r.hi) + 1)
            if r.integer
            else st.floats(min_value=r.hi, exclude_min=not r.hi_open, allow_nan=False, allow_infinity=False)
        )
    return st.one_of(bad).filter(lambda v: isinstance(v, str) or v not in r).map(text)


def finite_run(argv):
    """Run gcpo.main on TINY + argv; every metric it reports must be finite."""
    torch.set_num_threads(1)
    result = gcpo.main(TINY + argv)
    assert math.isfinite(result["reward_before"]) and math.isfinite(result["reward_after"]), argv
    for step in result["history"]:
        bad = {k: v for k, v in step.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"{argv}: non-finite metrics {bad}"
        assert step.get("groups_kept", 1) == 0 or step.get("skipped_steps", 0) == 0, f"{argv}: no update: {step}"
    return result


def one_line_error(argv, capsys, names):
    """gcpo.cli(argv) fails with one stderr line `gcpo.py: error: ...` naming one of `names`."""
    capsys.readouterr()
    status = gcpo.cli(TINY + argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status != 0, f"{argv} was accepted"
    assert len(lines) == 1 and lines[0].startswith("gcpo.py: error:"), f"{argv}: stderr was {err!r}"
    assert any(n in lines[0] for n in names), f"{argv}: the error does not name the option: {lines[0]}"


# ---- numeric options: checks.RANGES ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(checks.RANGES))
@settings(max_examples=2, **SETTINGS)
@given(data=st.data())
def test_numeric_option_inside_its_range_runs(name, data, capsys):
    value = data.draw(inside(name, checks.RANGES[name]), label=name)
    finite_run([flag(name), text(value)])


def extremes(name, r):
    """The smallest and the largest value inside a float range, as a user can type them (open ends: the next
    float inward; an infinite end: the largest finite float)."""
    lo = r.lo if not r.lo_open else math.nextafter(r.lo, math.inf)
    hi = r.hi if not r.hi_open else math.nextafter(r.hi, -math.inf)
    ends = [max(lo, -sys.float_info.max), min(hi, sys.float_info.max)]
    return [v for v in ends if v in r and FITS.get(name, lambda _: True)(v)]


FLOAT_EXTREMES = [(n, v) for n, r in sorted(checks.RANGES.items()) if not r.integer for v in extremes(n, r)]


@pytest.mark.parametrize("name, value", FLOAT_EXTREMES)
def test_numeric_option_at_the_ends_of_its_range_runs(name, value):
    finite_run([flag(name), text(value)])


@pytest.mark.parametrize("name", sorted(checks.RANGES))
@settings(max_examples=4, **SETTINGS)
@given(data=st.data())
def test_numeric_option_outside_its_range_is_one_line_error(name, data, capsys):
    value = data.draw(outside(checks.RANGES[name]), label=name)
    one_line_error([flag(name), value], capsys, [flag(name), name])


# ---- string options: checks.CHOICES -----------------------------------------------------------------------------
CHOICE_VALUES = [
    (name, v)
    for name, values in sorted(checks.CHOICES.items())
    for v in values
    if not (v == "cuda" and not torch.cuda.is_available())
]


@pytest.mark.parametrize("name, value", CHOICE_VALUES)
def test_every_choice_runs(name, value):
    finite_run([flag(name), value])


@pytest.mark.parametrize("name", sorted(checks.CHOICES))
@settings(max_examples=2, **SETTINGS)
@given(data=st.data())
def test_a_value_outside_the_choices_is_one_line_error(name, data, capsys):
    choices = checks.CHOICES[name]
    wrong = st.one_of(
        st.sampled_from([c.upper() for c in choices] + [c + " " for c in choices] + [""]),
        st.text("abcdefghijklmnopqrstuvwxyz_0123456789", max_size=8),
    )
    one_line_error(
        [flag(name), data.draw(wrong.filter(lambda v: v not in choices), label=name)], capsys, [flag(name), name]
    )


# ---- booleans, task arguments, combinations that cannot work ---------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["--entropy-penalty", "-1e-3"],  # a negative value in exponent notation is a value, not a flag
        ["--dynamic-sampling", "false"],
        ["--dynamic-sampling", "0"],
        ["--overlong-filter"],  # a bare flag means true
        ["--task-args", "length=3,num_symbols=3,position=0"],
        ["--env", "toy_envs/Copy-v0", "--task-args", "length=2"],
        ["--seed", str(2**63 - 1)],  # the largest seed the generators take
    ],
)
def test_valid_spellings_run(argv):
    finite_run(argv)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--overlong-filter", "maybe"], ["--overlong-filter", "overlong_filter"]),
        (["--task-args", "length=abc"], ["length"]),
        (["--task-args", "length=0"], ["length"]),
        (["--task-args", "length=2.5"], ["length"]),
        (["--task-args", "length=True"], ["length"]),
        (["--task-args", "length=4,position=4"], ["position"]),  # outside the 4-token response
        (["--task-args", "lenght=4"], ["lenght"]),
        (["--task-args", "length"], ["task_args", "--task-args"]),
        (["--task-args", "reward_noise=nan"], ["reward_noise"]),
        (["--env", "gridpaint", "--task-args", "num_colours=9"], ["num_colours"]),
        (["--env", "chainsum", "--task-args", "wrong_prob=2"], ["wrong_prob"]),
        (["--env", "topic", "--task-args", "max_new_tokens=0"], ["max_new_tokens"]),
        (["--env", "needle7"], ["env", "--env"]),
        (["--max-new-tokens", "3"], ["max_new_tokens", "--max-new-tokens"]),  # shorter than the task's 4 + EOS
        (["--overlong-buffer", str(L_MAX + 1)], ["overlong_buffer", "--overlong-buffer"]),  # longer than L_max
        (["--kl-reweight", "true"], ["kl_reweight", "--kl-reweight"]),  # needs beta > 0
        (
            ["--env", "topic", "--task-args", "", "--overlong-filter", "true"],  # a text response need not end with EOS
            ["overlong_filter", "--overlong-filter"],
        ),
        (["--negative", "opposite"], ["negative", "--negative"]),  # needle offers null and wrong
        (["--surrogate", "log_hinge", "--dual-clip", "3"], ["dual_clip", "--dual-clip"]),
        (["--show", "5"], ["show", "--show"]),  # more than the 4 eval prompts
        (["--seed", str(2**64)], ["seed", "--seed"]),  # past what the generators take
    ],
)
def test_bad_task_arguments_and_combinations_are_one_line_errors(argv, names, capsys):
    one_line_error(argv, capsys, names)


def test_unwritable_outputs_fail_before_the_run(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(["--out", str(a_file)], capsys, ["out"])
    one_line_error(["--html", str(a_file / "w.html")], capsys, ["html"])  # under a file: no folder can be made
    one_line_error(["--html", str(tmp_path)], capsys, ["html"])  # a folder, not a file


# ---- the real command -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, name", [(["--steps", "-1"], "steps"), (["--task-args", "length=abc"], "length")])
def test_python_gcpo_py_exits_with_one_line(argv, name):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "gcpo.py"), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("gcpo.py: error:") and name in lines[0]
