"""python -m credit_kit {check, quality, compare, table, grade} ...: the credit-assignment kit's command line
(docs/credit_kit.md). A user's mistake (a scheme that cannot be loaded or breaks the contract, an unknown option)
is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys

USAGE = """python -m credit_kit COMMAND ...

  check SCHEME        one row per property: holds / FAILS (with a shrunk counterexample) / not claimed;
                      exit 1 iff a claimed property fails
  quality SCHEME      key-token AUC and weight share on trained toy policies' responses, beside uniform,
                      contrast (GCPO), shuffled and oracle; --make-checkpoints trains the policies once
  compare SCHEME ...  the study's protocol (tuned learning rate, reporting seeds, paired intervals) against dapo, gcpo
  table               every built-in scheme × every property, as markdown (--write docs/credit_kit.md)
  grade FILE          grade the exercise (docs/exercises.md): the properties, and equality with GCPO's hist weights

SCHEME: a built-in name (uniform, contrast, shuffled, oracle, entropy_top20, gtpo_entropy, vppo_top40),
package.module:function or path/to/file.py:function."""


def parse(argv, prog: str, add=None):
    p = argparse.ArgumentParser(prog=f"python -m credit_kit {prog}")
    if add:
        add(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "compare":  # written in credit_kit/compare.py; imported only when asked for
        try:
            from credit_kit.compare import main as compare_main
        except ImportError as e:
            raise ValueError(f"compare is not available: {e}") from None
        return compare_main(rest)
    commands = {"check": check, "quality": quality, "table": table, "grade": grade}
    if command not in commands:
        raise ValueError(f"unknown command {command!r}; choose one of check, quality, compare, table, grade")
    return commands[command](rest)


def check(argv) -> int:
    from credit_kit.properties import check_properties, describe, load_scheme

    def add(p):
        p.add_argument("scheme", help="built-in name, package.module:function or path/file.py:function")
        p.add_argument(
            "--config", default="", help="gcpo options for a built-in scheme, k=v,k=v (e.g. normalization=softmax)"
        )
        p.add_argument("--max-examples", type=int, default=30, help="drawn batches per property")
        p.add_argument("--seed", type=int, default=0, help="hypothesis seed")

    a = parse(argv, "check", add)
    scheme = load_scheme(a.scheme, a.config)
    print(describe(scheme, a.max_examples, a.seed))
    results = check_properties(scheme, max_examples=a.max_examples, seed_=a.seed)
    for r in results:
        print(r)
    n = {s: sum(r.status == s for r in results) for s in ("holds", "FAILS", "not claimed")}
    print(f"{n['holds']} claimed properties hold, {n['FAILS']} fail; {n['not claimed']} not claimed")
    return 1 if n["FAILS"] else 0


def quality(argv) -> int:
    from credit_kit import quality as q

    return q.main(argv)


def table(argv) -> int:
    from credit_kit.table import main as table_main

    return table_main(argv)


def grade(argv) -> int:
    from credit_kit.grade import main as grade_main

    return grade_main(argv)


def cli(argv=None) -> int:
    try:
        return main(argv)
    except (ValueError, ImportError) as e:
        print("credit_kit: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(cli())
