"""Shared fixtures. Tests never download: the hub is switched off, and the pretrained-model path is exercised
on a tiny GPT-2 and a byte-level BPE tokenizer that the fixture builds and saves itself. Under mutmut only, a
mutant's tests run quickest first (docs/testing.md, Mutation testing)."""

import json
import os
from functools import cache

os.environ["HF_HUB_OFFLINE"] = "1"  # set before transformers is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

from toy_envs.text import stand_in_tokenizer  # noqa: E402


def save_tiny_gpt2(path, vocab_size=None, eos=True):
    """A 2-layer GPT-2 and a byte-level BPE tokenizer trained on the text tasks' sentences, saved with
    save_pretrained. eos=False saves a tokenizer without EOS (and pad)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = stand_in_tokenizer(600)
    if not eos:
        tokenizer.eos_token = tokenizer.pad_token = tokenizer.bos_token = None
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(
        vocab_size=vocab_size or len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """Directory of a saved tiny GPT-2 + BPE tokenizer, loadable with from_pretrained."""
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@cache
def _mutmut_test_durations():
    """Each test's seconds in mutmut's clean run ({} outside a mutmut run). mutmut runs the tests in its working copy,
    where it writes them to mutmut-stats.json."""
    try:
        with open("mutmut-stats.json") as f:
            return json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(config, items):
    """Under mutmut, a mutant's worker runs the tests that reach the mutated function and stops at the first failure:
    run the quickest first, file by file (the file with the quickest mean first, so module fixtures are built once),
    and a mutant that some quick test kills costs only that test. Outside a mutmut run the order is untouched."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    seconds = _mutmut_test_durations()
    if not seconds:
        return
    by_file = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    mean = {f: sum(seconds.get(i.nodeid, 1.0) for i in its) / len(its) for f, its in by_file.items()}
    items[:] = [
        i for f in sorted(by_file, key=mean.get) for i in sorted(by_file[f], key=lambda i: seconds.get(i.nodeid, 1.0))
    ]
