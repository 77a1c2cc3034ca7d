"""credit_kit: check any credit scheme's properties, score its credit against the toy tasks' key tokens, and race
it against GCPO (docs/credit_kit.md).

    python -m credit_kit check SCHEME       # one row per property: holds / FAILS (with a counterexample) / not claimed
    python -m credit_kit quality SCHEME     # key-token AUC and weight share on trained toy policies' responses
    python -m credit_kit compare SCHEME ... # the study's protocol, against dapo and gcpo
    python -m credit_kit table              # every built-in scheme × every property (docs/credit_kit.md)
    python -m credit_kit grade exercises/hist_weights.py   # the exercise (docs/exercises.md)

In a test file: `from credit_kit import assert_properties; assert_properties(my_scheme)`.
"""

__all__ = ["PROPERTIES", "Result", "assert_properties", "check_properties"]


def __getattr__(name):  # imported when first used, so that `python -m credit_kit compare` needs no hypothesis
    if name in __all__:
        from credit_kit import properties

        return getattr(properties, name)
    raise AttributeError(f"module 'credit_kit' has no attribute {name!r}")
