"""Tokens coloured by their attribution: the text counterpart of the saliency heat map."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtWidgets import QTextBrowser, QWidget

from analyzers.explain.display import DEFAULT_OUTLIER_PERCENT, token_colors

HIDDEN_TOKENS = ("[PAD]", "<pad>")


class TokenView(QTextBrowser):
    """Shows each token on a background whose colour and strength follow its score (hover: the score)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.tokens: tuple[str, ...] = ()
        self.scores = np.zeros(0)
        self.colors: list[tuple[int, int, int, int]] = []

    def set_tokens(self, tokens: tuple[str, ...] | list[str], scores: np.ndarray, sign: str = "all",
                   outlier_percent: float = DEFAULT_OUTLIER_PERCENT, colormap: str | None = None,
                   caption: str = "") -> None:
        """Colour `tokens` by `scores` (normalised like an image map: sign mode and outlier clipping)."""
        self.tokens = tuple(tokens)
        self.scores = np.asarray(scores, dtype=np.float64)[: len(self.tokens)]
        self.colors = token_colors(self.scores, sign, outlier_percent, colormap) if self.scores.size else []
        parts = []
        for tok, score, (r, g, b, a) in zip(self.tokens, self.scores, self.colors):
            if tok in HIDDEN_TOKENS:
                continue
            style = (f"background-color: rgba({r},{g},{b},{a / 255:.3f}); padding: 2px 3px; margin: 1px; "
                     "border-radius: 3px;")
            parts.append(f'<span style="{style}" title="{score:+.4f}">{html.escape(tok)}</span>')
        head = f"<p>{html.escape(caption)}</p>" if caption else ""
        self.setHtml(f"{head}<p style='line-height: 170%; font-size: 13pt'>{' '.join(parts)}</p>")

    def strongest(self, n: int = 3) -> list[str]:
        """The `n` tokens with the largest absolute scores (for captions and tests)."""
        order = np.argsort(-np.abs(self.scores))[:n]
        return [self.tokens[i] for i in order]

    def clear_tokens(self) -> None:
        """Show nothing."""
        self.tokens = ()
        self.scores = np.zeros(0)
        self.colors = []
        self.clear()
