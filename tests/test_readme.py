"""Every command the README shows works as written: `python gcpo.py ...` lines run (with tiny budgets appended,
a saved tiny GPT-2 standing in for `gpt2`, in a temporary folder), the other scripts accept every flag the
README gives them, and the README's options table is the one the code generates."""
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
README = open(os.path.join(ROOT, "README.md")).read()
TINY_BUDGET = ["--steps", "1", "--warm-steps", "2", "--eval-prompts", "4", "--batch-prompts", "2", "--group-size", "2",
               "--eval-every", "0"]


def commands():
    """The `python ...` lines of the README's bash blocks (comments stripped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("python ") and not line.startswith("python -m pytest"):
                out.append(line)
    return out


GCPO = [c for c in commands() if c.startswith("python gcpo.py")]
SCRIPTS = [c for c in commands() if not c.startswith("python gcpo.py")]


def test_the_readme_has_commands_to_check():
    assert len(GCPO) >= 5 and len(SCRIPTS) >= 4


def test_gcpo_commands_run_as_written(tiny_gpt2, tmp_path, monkeypatch, capsys):
    """In order, in one folder, so a command that loads a model saved by an earlier one finds it."""
    monkeypatch.chdir(tmp_path)
    for line in GCPO:
        argv = shlex.split(line)[2:]
        argv = [tiny_gpt2 if a == "gpt2" else a for a in argv]  # no download: the saved tiny GPT-2 and BPE
        if "cuda" in argv and not torch.cuda.is_available():  # the documented one-line error, not a traceback
            assert gcpo.cli(argv + TINY_BUDGET) == 2
            assert "CUDA is not available" in capsys.readouterr().err
            continue
        assert gcpo.cli(argv + TINY_BUDGET) == 0, (line, capsys.readouterr().err)
        printed = capsys.readouterr().out
        assert "eval reward" in printed, line
    assert (tmp_path / "runs" / "gpt2_topic" / "model" / "config.json").exists()


@pytest.mark.parametrize("line", SCRIPTS)
def test_other_scripts_accept_the_readme_flags(line):
    argv = shlex.split(line)[1:]
    script = os.path.join(ROOT, argv[0])
    assert os.path.isfile(script), line
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT,
                               timeout=120)
    assert help_text.returncode == 0, help_text.stderr
    for flag in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert flag in help_text.stdout, f"{line}: {flag} is not an option of {argv[0]}"


def test_options_page_is_generated_from_the_code():
    page = open(os.path.join(ROOT, "docs", "options.md")).read()
    assert cli.options_markdown(gcpo.Config, gcpo.PRESETS) in page
