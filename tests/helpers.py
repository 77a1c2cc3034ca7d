"""Small helpers several test files share (importable: pytest puts the repository root on the path)."""

import dataclasses

import gcpo


def scheme(credit="contrast", **overrides):
    """The built-in credit scheme `credit` under the gcpo preset (with overrides)."""
    return gcpo.credit_scheme(gcpo.make_config("gcpo", credit=credit, **overrides))


def contrast_weights(model, batch, cfg, logp=None, logp_all=None):
    """GCPO's weights for the batch's responses under cfg's score and law, through the same path as training."""
    contrast = gcpo.credit_scheme(dataclasses.replace(cfg, credit="contrast"))
    return gcpo.credit_weights(model, batch, cfg, contrast, None, logp, logp_all)


def oracle_weights(key_mask, mask):
    return scheme("oracle")(key_mask, mask)


def micro_batch_loss(model, ref_model, b, cfg, total_tokens, total_seqs, generator=None):
    return gcpo.micro_batch_loss(model, ref_model, b, cfg, gcpo.credit_scheme(cfg), total_tokens, total_seqs, generator)


def small_policy(vocab_size=11, positions=16):
    """A randomly initialised one-layer GPT-2 (width 16, 2 heads) through gcpo.build_policy."""
    return gcpo.build_policy(gcpo.make_config("gcpo", n_layer=1, n_embd=16, n_head=2), vocab_size, positions, {})
