"""The command line, generated from gcpo.Config: every field a --flag, its help from the field's comment, the
preset's values in --help, one-line errors. A reader of gcpo.py can skip it."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import sys
import textwrap
import tokenize

from gcpo_support.checks import CHOICES, RANGES


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Each dataclass field's help text, for --help and the README table: the comment on the field's line
    (nanoGPT style) or, for longer text, the docstring under it (CleanRL style)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {
        t.start[0]: t.string[1:].strip()
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    }
    body = ast.parse(source).body[0].body
    docs = {}
    for node, nxt in zip(body, [*body[1:], None]):
        if not isinstance(node, ast.AnnAssign):
            continue
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(nxt.value.value.split())
        elif node.lineno in comments:
            docs[node.target.id] = comments[node.lineno]
    return docs


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line through the CLI's error path, not argparse's usage block
        raise ValueError(message)


def parse_bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")
    return value


def parse_args(argv, config_cls, presets: dict, make_config, doc: str):
    """Every field of config_cls (gcpo.Config) is a --flag (a bare boolean flag means true); unset flags take the
    preset's value (make_config(algo, **given)). --help shows each option's valid values and its value under the
    chosen --algo; `doc`'s first paragraph heads it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1, 0, -1):  # "--flag -1e-3" → "--flag=-1e-3" (argparse reads -1e-3 as a flag)
        if argv[i - 1].startswith("--") and "=" not in argv[i - 1] and argv[i].startswith("-") and _is_number(argv[i]):
            argv[i - 1 : i + 1] = [f"{argv[i - 1]}={argv[i]}"]
    algo = _preset_of(argv)
    shown = {**dataclasses.asdict(config_cls()), **presets.get(algo, {})}
    p = _Parser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    docs = field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        valid = f"; valid: {RANGES[f.name]}" if f.name in RANGES else ""
        extra = (
            dict(nargs="?", const=True, type=parse_bool, metavar="BOOL")
            if f.type == "bool"
            else dict(
                type={"int": int, "float": float, "str": str}[f.type],
                choices=CHOICES.get(f.name),
                metavar=None if f.name in CHOICES else f.type.upper(),
            )
        )
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            **extra,
            help=f"{docs.get(f.name, '')}{valid} (under --algo {algo}: {shown[f.name]!r})",
        )
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    return make_config(args.pop("algo", "gcpo"), **args)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _preset_of(argv) -> str:
    """The --algo value in argv (for --help's preset column), 'gcpo' if absent."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--algo", default="gcpo")
    return p.parse_known_args(argv)[0].algo


def options_markdown(config_cls, presets: dict) -> str:
    """The options table of docs/options.md, generated from gcpo.Config, its presets, RANGES and CHOICES (a test
    keeps the page in sync): each option, its valid values, its default under the gcpo preset and the presets
    that change it."""
    docs, base = field_docs(config_cls), dataclasses.asdict(config_cls())
    rows = ["| option | valid values | default (`gcpo`) | other presets | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(config_cls):
        valid = (
            " \\| ".join(map(str, CHOICES[f.name]))
            if f.name in CHOICES
            else str(RANGES[f.name])
            if f.name in RANGES
            else "true \\| false"
            if f.type == "bool"
            else "text"
        )
        others = ", ".join(
            f"{a}: {p[f.name]}"
            for a, p in presets.items()
            if a != "gcpo" and f.name in p and p[f.name] != presets["gcpo"].get(f.name, base[f.name])
        )
        default = presets["gcpo"].get(f.name, base[f.name])
        meaning = docs.get(f.name, "").replace("|", "\\|")  # a literal | inside a table cell
        rows.append(f"| `--{f.name.replace('_', '-')}` | {valid} | {default!r} | {others} | {meaning} |")
    return "\n".join(rows)
