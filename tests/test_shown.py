"""What `python gcpo.py --show N --html FILE` shows is what the run computes: the printed and HTML weights of
gcpo.sample_credit's responses equal the weights recomputed here from the model's log-probs of those responses
under their prompts and their negative prompts (or from the task's key tokens for the oracle), the key tokens and
rewards are the task's, and the scheme's name is the run's. tests/test_text.py does the same for a text task.
A sampled response's weights depend on the CPU's float rounding, so they are recomputed here, never stored."""

import dataclasses

import numpy as np
import pytest
import torch

import gcpo
from gcpo_support import render

SHOW = 3
pytestmark = pytest.mark.cpu_sensitive  # the sampled responses and their weights follow the CPU's rounding


@pytest.fixture(scope="module")
def needle_run():
    """A short warm start on needle (no RL steps): the model then depends on its prompt, so contrast weights are
    far from uniform."""
    cfg = gcpo.make_config(
        "gcpo",
        env="needle",
        task_args="length=6",
        steps=0,
        warm_steps=150,
        warm_batch=32,
        eval_prompts=8,
        group_size=4,
        negative="null",
        device="cpu",
        seed=3,
    )
    return gcpo.train(cfg, progress=False)


def run_logprobs(model, prompts, responses):
    """log π(y_t | x, y_<t) (n, T) as the run computes them (toy prompts have no padding)."""
    prompts, responses = torch.as_tensor(prompts), torch.as_tensor(responses)
    return gcpo.response_logprobs(model, prompts, torch.ones_like(prompts), responses)[0]


def printed_weights(text, i, k):
    line = next(x for x in text.split("\n\n")[i].splitlines() if x.startswith("weights:"))
    return [float(x) for x in line.split()[1 : 1 + k]]


def html_weights(page):
    return [float(t.split('"')[0].split()[0]) for t in page.split('title="w=')[1:]]


def check_shown(result, shown, want, tmp_path, scheme):
    """The sample's prompts, negatives, key tokens and rewards are the task's; its weights, printed and in the HTML
    tooltips, are `want`; both name `scheme`."""
    task, cfg = result["task"], result["cfg"]
    np.testing.assert_array_equal(shown["prompts"], result["eval_prompts"][:SHOW])
    np.testing.assert_array_equal(shown["negatives"], task.negative_prompts(shown["prompts"], cfg.negative))
    score = task.score(shown["prompts"], shown["responses"])
    np.testing.assert_array_equal(shown["key_mask"], score.key_mask)
    np.testing.assert_array_equal(shown["rewards"], score.reward)
    np.testing.assert_allclose(shown["weights"], want, atol=1e-5)
    html = tmp_path / "w.html"
    text = render.show_sample(shown, task, cfg, html_path=str(html), color=False)
    page = html.read_text()
    lengths = [int(m.sum()) for m in shown["mask"]]
    for i, k in enumerate(lengths):
        assert printed_weights(text, i, k) == pytest.approx(want[i, :k], abs=0.006)
    np.testing.assert_allclose(
        html_weights(page), np.concatenate([want[i, :k] for i, k in enumerate(lengths)]), atol=6e-4
    )
    assert text.count(f"({scheme} credit)") == SHOW and f"the {scheme} credit scheme" in page
    assert page.count(f"negative ({cfg.negative})") == SHOW


def test_shown_contrast_weights_are_the_runs_on_a_symbolic_task(needle_run, tmp_path):
    shown = gcpo.sample_credit(needle_run, SHOW)
    model = needle_run["model"]
    mask = torch.as_tensor(shown["mask"])
    with torch.no_grad():
        logp = run_logprobs(model, shown["prompts"], shown["responses"])  # under the prompt ...
        logp_neg = run_logprobs(model, shown["negatives"], shown["responses"])  # ... and under the negative
    want = gcpo.token_weights(logp, logp_neg, mask).numpy()  # the gcpo preset's law: k3 scores, hist weights
    assert want.std(1).max() > 0.5  # far from uniform: a prompt scored against itself would give w ≡ 1
    check_shown(needle_run, shown, want, tmp_path, "contrast")


def test_shown_oracle_weights_are_the_oracles(needle_run, tmp_path):
    """--credit oracle: the shown weights come from the key tokens (one per needle response that wrote the needle
    position), not from the contrast, and the page says 'oracle'."""
    run = {**needle_run, "cfg": dataclasses.replace(needle_run["cfg"], credit="oracle")}
    shown = gcpo.sample_credit(run, SHOW)
    key, mask = torch.as_tensor(shown["key_mask"]), torch.as_tensor(shown["mask"])
    scores = (key & mask.bool()).float()
    want = gcpo.normalize_weights(scores, mask, "hist", "average").numpy()
    for w, k, m in zip(want, shown["key_mask"], shown["mask"].astype(bool)):  # the hist law's shape, by hand
        assert w[~m].sum() == 0 and w[m].sum() == pytest.approx(m.sum(), rel=1e-6)
        if k[m].any() and not k[m].all():
            assert w[k & m].min() > 1 > w[~k & m].max()
    check_shown(run, shown, want, tmp_path, "oracle")
