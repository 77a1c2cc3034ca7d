"""Shared fixtures. Tests never download: the hub is switched off, and the pretrained-model path is exercised
on a tiny GPT-2 and a byte-level BPE tokenizer that the fixture builds and saves itself."""

import os

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
