"""The printed and HTML samples shaded by token weight, and the run summary. A reader of gcpo.py can skip it."""

from __future__ import annotations

import html
import math
import os
import re
import sys

import numpy as np

from gcpo_support import schemes

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def show_sample(shown: dict, task, cfg, html_path: str = "", color: bool | None = None) -> str:
    """The responses of gcpo.sample_credit as text, each token shaded by the weight the run's credit scheme
    gives it (colour only on a terminal, unless `color` says), with the weights, the key tokens (^) and the
    reward; with html_path, also as an HTML page with a legend (its folder is created)."""
    color = sys.stdout.isatty() if color is None else color
    name = shown["scheme"]
    blocks, sections = [], []
    for i in range(len(shown["prompts"])):
        k = int(shown["mask"][i].sum())
        resp, w, key = shown["responses"][i, :k], shown["weights"][i, :k], shown["key_mask"][i, :k]
        prompt_line, rest = task.render(shown["prompts"][i], resp, w).split("\n", 1)
        text = (
            f"{prompt_line}\nnegative: {task.prompt_string(shown['negatives'][i])}\n{rest}"
            f"\nweights:  {' '.join(f'{x:.2f}' for x in w)}   ({name} credit)"
            f"\nkey:      {' '.join('^' if x else '.' for x in key)}"
            f"\nreward:   {shown['rewards'][i]:.3f}"
        )
        blocks.append(text if color else ANSI.sub("", text))
        sections.append(
            (
                f"prompt: {task.prompt_string(shown['prompts'][i])}  |  negative ({cfg.negative}): "
                f"{task.prompt_string(shown['negatives'][i])}  |  reward {shown['rewards'][i]:.3f}",
                task.decode(resp),
                w,
                key,
            )
        )
    if html_path:
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(html_path)))
        os.makedirs(folder, exist_ok=True)
        title = f"Token weights of {name} credit: {cfg.algo} on {task.name}, model {cfg.model}"
        with open(os.path.expanduser(html_path), "w") as f:
            f.write(html_page(title, sections, name))
    return "\n\n".join(blocks)


def html_page(title: str, sections, scheme: str = "") -> str:
    """A standalone HTML page: a title and a legend, then per section (heading, tokens, weights, key mask) the
    tokens shaded white → red by weight / max weight, each weight in its tooltip, key tokens underlined."""
    body = []
    for heading, tokens, weights, key in sections:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        top = w.max() if w.size and w.max() > 0 else 1.0
        spans = []
        for tok, x, is_key in zip(tokens, w, key):
            g = int(255 - 200 * min(max(x / top, 0.0), 1.0))
            mark = "border-bottom:3px solid black;" if is_key else ""
            spans.append(
                f'<span title="w={x:.3f}{" (key token)" if is_key else ""}" style="background:rgb(255,{g},{g});'
                f'{mark}padding:2px;margin:1px;font-family:monospace;white-space:pre">{html.escape(tok)}</span>'
            )
        body.append(f"<p><b>{html.escape(heading)}</b></p><p>{''.join(spans)}</p>")
    legend = (
        f"<p>Each token is shaded by the weight w the {html.escape(scheme)} credit scheme gives it (token "
        "advantage = w·A): white = 0, deepest red = the largest weight in the response; hover for the value. "
        "Underlined: the task's key tokens (the ground truth that decides the reward).</p>"
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h3>{html.escape(title)}</h3>{legend}" + "\n".join(body)
    )


def summarize(result: dict, scheme=None) -> str:
    """The run in two or three lines: eval reward before RL and after, the credit scheme (said to be an oracle
    when it reads the key tokens), skipped steps, and the weights' statistics over the last steps (up to 10)."""
    cfg, hist = result["cfg"], result["history"]
    name = cfg.credit if scheme is None else schemes.info(scheme).name
    if scheme is not None and "key_mask" in schemes.needs(scheme):
        name += " (an oracle: it reads the task's key tokens)"
    last = hist[-10:]
    mean = lambda k: np.nanmean([h[k] for h in last if k in h]) if any(k in h for h in last) else math.nan
    warm = f"after a {cfg.warm_steps}-step warm start" if cfg.warm_steps else "no warm start"
    lines = [
        f"{cfg.algo}, {name} credit, on {cfg.env}, seed {cfg.seed}: eval reward "
        f"{result['reward_before']:.3f} before RL ({warm}) -> {result['reward_after']:.3f} after {cfg.steps} "
        f"RL steps"
    ]
    skipped = sum(1 for h in hist if "grad_norm" not in h)
    if skipped:
        lines.append(
            f"{skipped} of {len(hist)} steps skipped: every sampled group had equal rewards, so there was "
            "nothing to learn from (try more --max-sampling-tries, a larger --group-size or more warm start)"
        )
    if any("weight_max" in h for h in last):
        lines.append(
            f"weights (last {len(last)} step{'s' * (len(last) != 1)}): max {mean('weight_max'):.2f}, "
            f"std {mean('weight_std'):.2f}, top-40% mass {mean('weight_top40_mass'):.3f}; key-token share "
            f"{mean('key_weight_share'):.3f} vs uniform {mean('key_token_frac'):.3f}, key AUC "
            f"{mean('key_weight_auc'):.3f}"
        )
    return "\n".join(lines)
