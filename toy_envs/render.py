"""Terminal (ANSI) and HTML rendering of responses shaded by token weight."""

from __future__ import annotations

import html

import numpy as np

_ANSI_RGB = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (50, 80, 210),
    "yellow": (210, 190, 40),
    "magenta": (190, 50, 190),
    "cyan": (40, 180, 190),
}


def _heat(weights, n):
    """Weights → intensities in [0, 1] (weight / max weight over the shown tokens); None → all zero."""
    if weights is None:
        return np.zeros(n)
    w = np.zeros(n)
    given = np.asarray(weights, dtype=np.float64).reshape(-1)[:n]
    w[: len(given)] = given  # tokens past a short response have no weight
    top = w.max() if w.size and w.max() > 0 else 1.0
    return np.clip(w / top, 0.0, 1.0)


def shade_tokens(tokens: list[str], weights=None) -> str:
    """Tokens joined by spaces, each on a background from white (weight 0) to red (the largest weight)."""
    if weights is None:
        return " ".join(tokens)
    heat = _heat(weights, len(tokens))
    out = []
    for tok, h in zip(tokens, heat):
        g = int(255 - 200 * h)
        out.append(f"\x1b[48;2;255;{g};{g}m\x1b[38;2;0;0;0m{tok}\x1b[0m")
    return " ".join(out)


def html_page(title: str, sections) -> str:
    """A standalone HTML page: a title, then per section (heading, tokens, weights) a heading line and the
    tokens shaded white → red by weight / max weight, each weight in its tooltip."""
    body = []
    for heading, tokens, weights in sections:
        heat = _heat(weights, len(tokens))
        w = np.zeros(len(tokens)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        spans = []
        for i, (tok, h) in enumerate(zip(tokens, heat)):
            g = int(255 - 200 * h)
            spans.append(
                f'<span title="w={w[i]:.3f}" style="background:rgb(255,{g},{g});padding:2px;'
                f'margin:1px;font-family:monospace;white-space:pre">{html.escape(tok)}</span>'
            )
        head = f"<p><b>{html.escape(heading)}</b></p>" if heading else ""
        body.append(f"{head}<p>{''.join(spans)}</p>")
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h3>{html.escape(title)}</h3>" + "\n".join(body)
    )


def render_grid(pixels, height: int, width: int, colours: list[str], weights=None) -> str:
    """An H×W grid in raster order: pixel value 0 = background, c+1 = colours[c], negative = missing.
    With weights, each cell also shows its weight (one digit, 0-9 of the max)."""
    pixels = np.asarray(pixels).reshape(-1)
    heat = _heat(weights, len(pixels)) if weights is not None else None
    rows = []
    for r in range(height):
        cells = []
        for c in range(width):
            i = r * width + c
            v = int(pixels[i])
            mark = str(min(9, int(heat[i] * 9.999))) if heat is not None else " "
            if 1 <= v <= len(colours):
                rgb = _ANSI_RGB[colours[v - 1]]
                cells.append(f"\x1b[48;2;{rgb[0]};{rgb[1]};{rgb[2]}m\x1b[38;2;255;255;255m{mark} \x1b[0m")
            else:
                cells.append((". " if v == 0 else "? ") if heat is None else f"{mark}" + ("." if v == 0 else "?"))
        rows.append("".join(cells))
    return "\n".join(rows)
