"""Every command the README and the docs pages (docs/*.md) show works as written:

- each `python gcpo.py ...` line of a ```bash block runs (tiny budgets appended, in a temporary folder that sees
  the repository's files; a saved tiny GPT-2 stands in for `gpt2` and for any model folder a command saves);
- every other `python script.py ...` / `python -m module ...` command, in a block or inline, names only flags
  that its --help lists (a script or module that does not exist fails, it is not skipped);
- every relative link points to an existing file (and heading);
- the README stays one screenful: at most 220 lines, no commit hash, no options table; docs/options.md holds
  the table the code generates."""

import functools
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

import gcpo
from gcpo_support import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
TEXT = {page: open(os.path.join(ROOT, page), encoding="utf-8").read() for page in PAGES}
TINY_BUDGET = "--steps 1 --warm-steps 2 --eval-prompts 4 --batch-prompts 2 --group-size 2 --eval-every 0".split()


def block_commands(text: str) -> list[str]:
    """The `python ...` lines of a page's ```bash blocks: comments stripped, `\\` continuations joined."""
    out = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" && ")
            out += [part.strip() for part in line if part.strip().startswith("python ")]
    return out


def inline_commands(text: str) -> list[str]:
    """The `python ...` commands written inline in a page's prose (single backticks, outside code blocks)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [c.strip() for c in re.findall(r"`(python [^`]+)`", prose)]


def is_checked(command: str) -> bool:
    """A project command: python gcpo.py / a script / -m module, not pytest, pip or an inline -c program."""
    argv = shlex.split(command)
    return len(argv) > 1 and argv[1] not in ("-c",) and argv[1:3] not in (["-m", "pytest"], ["-m", "pip"])


RUN = [(page, c) for page in PAGES for c in block_commands(TEXT[page]) if c.startswith("python gcpo.py")]
FLAGS = sorted(
    {(page, c) for page in PAGES for c in block_commands(TEXT[page]) + inline_commands(TEXT[page]) if is_checked(c)}
)


def saved_models() -> set:
    """The folders the pages' commands save a model to (`--save-model DIR`)."""
    out = set()
    for _, c in FLAGS:
        argv = shlex.split(c)
        out |= {os.path.normpath(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--save-model"}
    return out


SAVED_MODELS = saved_models()


def test_the_pages_have_commands_to_check():
    readme_runs = [c for page, c in RUN if page == "README.md"]
    assert len(readme_runs) >= 5 and sum(not c.startswith("python gcpo.py") for _, c in FLAGS) >= 3
    assert "python gcpo.py" in block_commands(TEXT["README.md"])  # the main job, as short as it is


@pytest.mark.parametrize("page", sorted({page for page, _ in RUN}))
def test_gcpo_commands_run_as_written(page, tiny_gpt2, tmp_path, monkeypatch, capsys):
    """A page's `python gcpo.py` lines in order, in one folder (so a command that loads a model saved by an earlier
    one finds it), with the repository's files and folders linked into it so that relative paths resolve."""
    for entry in os.listdir(ROOT):
        if not entry.startswith(".") and entry != "runs":
            os.symlink(os.path.join(ROOT, entry), tmp_path / entry)
    monkeypatch.chdir(tmp_path)
    for line in (c for p, c in RUN if p == page):
        argv = shlex.split(line)[2:]
        for i, a in enumerate(argv[:-1]):  # no download: the saved tiny GPT-2 and BPE stand in
            if a == "--model" and (argv[i + 1] == "gpt2" or os.path.normpath(argv[i + 1]) in SAVED_MODELS):
                argv[i + 1] = tiny_gpt2
        if "cuda" in argv and not torch.cuda.is_available():  # the documented one-line error, not a traceback
            assert gcpo.cli(argv + TINY_BUDGET) == 2, line
            assert "CUDA is not available" in capsys.readouterr().err
            continue
        assert gcpo.cli(argv + TINY_BUDGET) == 0, (line, capsys.readouterr().err)
        assert "eval reward" in capsys.readouterr().out, line
        out = argv[argv.index("--out") + 1] if "--out" in argv else ""
        if out:  # the run's files are where the page says
            assert {"config.json", "metrics.jsonl", "model"} <= set(os.listdir(tmp_path / out)), line


@functools.cache
def help_text(program: tuple) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *program, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def program_of(argv: list) -> tuple:
    """('-m', module, subcommands...) or (script, subcommands...): what to ask for --help. Subcommands are the
    leading bare words (`check` in `python -m credit_kit check file.py:fn`)."""
    head, rest = (tuple(argv[1:3]), argv[3:]) if argv[1] == "-m" else ((argv[1],), argv[2:])
    for word in rest:
        if not re.fullmatch(r"[a-z][a-z_-]*", word):
            break
        head += (word,)
    return head


@pytest.mark.parametrize("page, line", FLAGS, ids=[f"{page}: {line}" for page, line in FLAGS])
def test_commands_accept_the_flags_they_show(page, line):
    argv = shlex.split(line)
    program = program_of(argv)
    if program[0] != "-m":
        assert os.path.isfile(os.path.join(ROOT, program[0])), f"{page}: {line}: no file {program[0]}"
    shown = help_text(program)
    assert shown.returncode == 0, f"{page}: {line}: `{' '.join(program)} --help` failed: {shown.stderr[-500:]}"
    for flag in (a.split("=")[0] for a in argv if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown.stdout), (
            f"{page}: {line}: {flag} is not an option of {' '.join(program)}"
        )


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def links(page: str):
    """(target, anchor) of every relative Markdown link and image on the page, outside code."""
    text = re.sub(r"```.*?```", "", TEXT[page], flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target):
            path, _, anchor = target.partition("#")
            yield path, anchor


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_point_to_existing_files(page):
    for path, anchor in links(page):
        target = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
        assert os.path.exists(target), f"{page}: link to {path!r}, which does not exist"
        if anchor and target.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", open(target, encoding="utf-8").read(), re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"{page}: no heading #{anchor} in {path or page}"


def test_readme_is_one_screenful_of_purpose():
    readme = TEXT["README.md"]
    assert len(readme.splitlines()) <= 220
    hashes = re.findall(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", readme)
    assert not hashes, f"commit hashes in the README: {hashes}"
    table = "| option |" in readme or re.search(r"^\| `--", readme, re.M)
    assert not table, "the options table belongs to docs/options.md"


def test_options_page_is_generated_from_the_code():
    page = open(os.path.join(ROOT, "docs", "options.md"), encoding="utf-8").read()
    assert cli.options_markdown(gcpo.Config, gcpo.PRESETS) in page


def test_seed_spread_reads_the_summary_line():
    """benchmarks/seeds.py reads the two rewards from the summary gcpo.py prints."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import seeds
    finally:
        sys.path.pop(0)
    from gcpo_support.render import summarize

    result = {
        "cfg": gcpo.make_config(steps=3, warm_steps=5),
        "history": [],
        "reward_before": 0.125,
        "reward_after": 0.5,
    }
    assert seeds.parse_summary("noise\n" + summarize(result) + "\n") == (0.125, 0.5)
    with pytest.raises(ValueError, match="no 'eval reward"):
        seeds.parse_summary("gcpo.py: error: something")
