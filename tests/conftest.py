"""Shared fixtures. Tests never download: the hub is switched off, and the pretrained-model path is exercised
on a tiny GPT-2 and a byte-level BPE tokenizer that the fixture builds and saves itself."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # set before transformers is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

import toy_envs  # noqa: E402


def bpe_corpus() -> list[str]:
    """Text that makes every lexicon word, prompt word and frame word a frequent piece."""
    lines = []
    for cls in (toy_envs.Topic, toy_envs.Sentiment):
        lines += list(cls.PROMPTS.values()) + [f.replace("{}", "thing") for f in cls.FRAMES]
        lines += [" ".join(words) for words in cls.LEXICON.values()]
        lines += ["Here is a sentence:", "Here is a review of the film:"]
    return lines * 20


def save_tiny_gpt2(path, vocab_size=None, eos=True):
    """A 2-layer GPT-2 and a byte-level BPE tokenizer (trained on `bpe_corpus`), saved with save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(bpe_corpus(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    special = dict(eos_token="<|endoftext|>", bos_token="<|endoftext|>") if eos else {}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **special)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    eos_id = bpe.token_to_id("<|endoftext|>")
    config = GPT2Config(vocab_size=vocab_size or len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos_id, eos_token_id=eos_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """Directory of a saved tiny GPT-2 + BPE tokenizer, loadable with from_pretrained."""
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))
