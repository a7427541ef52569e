"""Attention maps as pictures: thumbnails and the layers × heads atlas the Attention tab draws, and the PNGs
`layerscope attention --png` writes (the matrix with its token labels, or a ViT's class-token map over the image).

Numpy (PIL for the PNGs), so the window and the CLI colour maps the same way and both are tested without Qt.
Attention weights are non-negative, so the matrix colour map is one-sided and opaque (viridis' stops); maps
over an image use the saliency view's colour maps (analyzers.explain.display), transparent at zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzers.explain.attention import AttentionLayer, AttentionResult
from analyzers.explain.display import colorize, overlay, save_png

# viridis, sampled: dark blue for no attention, yellow for all of it
MATRIX_STOPS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
                (1.0, (253, 231, 37)))
GAP_RGBA = (0, 0, 0, 0)


def matrix_lut(count: int = 256) -> np.ndarray:
    """(count, 4) uint8 opaque colours from no attention to full attention."""
    pos = np.array([s[0] for s in MATRIX_STOPS])
    rgb = np.array([s[1] for s in MATRIX_STOPS], dtype=np.float64)
    xs = np.linspace(0.0, 1.0, count)
    table = np.stack([np.interp(xs, pos, rgb[:, c]) for c in range(3)] + [np.full(count, 255.0)], axis=1)
    return table.round().astype(np.uint8)


_LUT = matrix_lut()


def scaled(m: np.ndarray, top: float | None = None) -> np.ndarray:
    """A map divided by its largest value (or `top`), so faint maps stay readable; all-zero stays zero."""
    m = np.asarray(m, dtype=np.float32)
    hi = float(m.max()) if top is None and m.size else float(top or 0.0)
    return m / hi if hi > 0 else np.zeros_like(m)


def _fit(m: np.ndarray, size: int, axis: int) -> np.ndarray:
    """`m` brought to `size` along `axis`: maxima over runs when longer, repeated entries when shorter."""
    n = m.shape[axis]
    if n >= size:
        return np.maximum.reduceat(m, (np.arange(size) * n) // size, axis=axis)
    return np.take(m, (np.arange(size) * n) // size, axis=axis)


def thumbnail(m: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 of a (query, key) map: block maxima when it is larger (one strong weight stays
    visible), nearest-neighbour enlargement when it is smaller."""
    m = np.asarray(m, dtype=np.float32)
    if m.size == 0:
        return np.zeros((size, size), np.float32)
    return _fit(_fit(m, size, 0), size, 1)


def atlas(cells: Sequence[Sequence[np.ndarray | None]], size: int, gap: int = 3) -> np.ndarray:
    """(H, W, 4) uint8: a grid of thumbnails (each scaled to its own maximum), transparent where a cell is None."""
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    step = size + gap
    out = np.zeros((rows * step, cols * step, 4), np.uint8)
    out[:] = GAP_RGBA
    for i, row in enumerate(cells):
        for j, m in enumerate(row):
            if m is None:
                continue
            t = scaled(thumbnail(m, size))
            out[i * step:i * step + size, j * step:j * step + size] = _LUT[(t * 255).round().astype(np.int32)]
    return out


def matrix_rgb(m: np.ndarray, top: float | None = None) -> np.ndarray:
    """(q, k, 3) uint8 colours of one map scaled to its maximum."""
    return _LUT[(scaled(m, top) * 255).round().astype(np.int32)][:, :, :3]


def render_matrix(m: np.ndarray, query_labels: Sequence[str], key_labels: Sequence[str], title: str = "",
                  cell: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the map as coloured cells with the query tokens down the left, the key tokens written
    vertically along the top, and a title."""
    from PIL import Image, ImageDraw, ImageFont

    q, k = np.asarray(m).shape
    cell = cell or int(np.clip(720 // max(q, k, 1), 4, 24))
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labelled = cell >= 10  # below that the labels would overlap: the axes carry positions only
    left = 8 + (max((int(probe.textlength(t, font=font)) for t in query_labels), default=0) if labelled else 30)
    top_h = 8 + (max((int(probe.textlength(t, font=font)) for t in key_labels), default=0) if labelled else 14)
    title_h = 22 if title else 0
    width, height = left + k * cell + 12, title_h + top_h + q * cell + 12
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((8, 5), title, fill="black", font=font)
    heat = Image.fromarray(matrix_rgb(m)).resize((k * cell, q * cell), Image.NEAREST)
    img.paste(heat, (left, title_h + top_h))
    if labelled:
        for i, t in enumerate(query_labels):
            draw.text((4, title_h + top_h + i * cell + (cell - 11) // 2), t, fill="black", font=font)
        for j, t in enumerate(key_labels):
            w = int(probe.textlength(t, font=font)) + 2
            label = Image.new("RGB", (w, 12), "white")
            ImageDraw.Draw(label).text((1, 0), t, fill="black", font=font)
            rotated = label.rotate(90, expand=True)
            img.paste(rotated, (left + j * cell + (cell - 12) // 2, title_h + top_h - 4 - rotated.size[1]))
    else:
        draw.text((4, title_h + top_h), "query", fill="black", font=font)
        draw.text((left, title_h + 2), "key →", fill="black", font=font)
    return np.asarray(img)


def render_grid_overlay(grid: np.ndarray, image: np.ndarray | None, colormap: str = "heat",
                        opacity: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8: a patch-grid map (scaled to its maximum) laid over the picture, nearest-neighbour."""
    heat = colorize(scaled(grid), colormap, "positive")
    return overlay(image, heat, opacity if image is not None else 1.0)


@dataclass(frozen=True)
class MapView:
    """One map chosen for display: the matrix, the labels of its axes, a title, and the layer it belongs to."""

    map: np.ndarray  # (query, key) float32
    query_labels: tuple[str, ...]
    key_labels: tuple[str, ...]
    title: str
    layer: int


def _crop(result: AttentionResult, layer: AttentionLayer, m: np.ndarray, with_padding: bool
          ) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Trailing padding cut from the axes that are the input's tokens (unless asked for)."""
    n = result.shown_tokens(with_padding)
    q, k = m.shape
    cut_q = n if layer.block == 1 and q == len(result.tokens) and layer.query_tokens == result.tokens else q
    cut_k = n if layer.block == 1 and k == len(result.tokens) and layer.key_tokens == result.tokens else k
    return m[:cut_q, :cut_k], layer.query_tokens[:cut_q], layer.key_tokens[:cut_k]


def view_map(result: AttentionResult, layer: int | None = None, head: int | None = None, rollout: bool = False,
             with_padding: bool = False) -> MapView:
    """The map a view shows: `layer`'s `head` (the mean over heads when None) or the rollout up to `layer`
    (the last rolled-out layer when `layer` is not one of its stack's)."""
    index = result.layer_index(len(result.layers) - 1 if layer is None else layer)
    chosen = result.layers[index]
    if rollout:
        stack = chosen.stack if chosen.kind == "self" and chosen.stack in result.stacks() else None
        indices = result.rollout_indices(stack)
        progression = result.rollout(stack)
        step = indices.index(index) if index in indices else len(indices) - 1
        index = indices[step]
        chosen = result.layers[index]
        m, title = progression[step], f"rollout up to {chosen.name}"
    else:
        m = chosen.head_map(None if head is None or head >= chosen.heads else head)
        title = f"{chosen.title}, {'mean over heads' if head is None or head >= chosen.heads else f'head {head}'}"
    m, ql, kl = _crop(result, chosen, m, with_padding)
    return MapView(m, ql, kl, title, index)


def grid_cells(result: AttentionResult, with_padding: bool = False
               ) -> tuple[list[list[np.ndarray | None]], list[str], list[str]]:
    """The layers × heads grid: each layer's heads, then its mean over heads and, where defined, the rollout up
    to it; with the row labels (L0 …) and column labels (H0 …, mean, rollout)."""
    heads = result.heads
    rolled = result.rollout_indices()
    progression = result.rollout() if rolled else None
    cells: list[list[np.ndarray | None]] = []
    for i, layer in enumerate(result.layers):
        row: list[np.ndarray | None] = [None] * (heads + 2)
        for h in range(layer.heads):
            row[h] = _crop(result, layer, layer.weights[h], with_padding)[0]
        row[heads] = _crop(result, layer, layer.mean, with_padding)[0]
        if progression is not None and i in rolled:
            row[heads + 1] = _crop(result, layer, progression[rolled.index(i)], with_padding)[0]
        cells.append(row)
    columns = [f"H{h}" for h in range(heads)] + ["mean"] + (["rollout"] if rolled else [])
    if not rolled:
        cells = [row[:-1] for row in cells]
    return cells, [f"L{i}" for i in range(len(result.layers))], columns


def write_view_png(path: Path | str, result: AttentionResult, layer: int | None = None, head: int | None = None,
                   rollout: bool = False, colormap: str = "heat", opacity: float = 0.6) -> Path:
    """The PNG of `layerscope attention --png`: the class token's map over the image for a vision transformer,
    else the matrix of `layer` (the last one by default), its `head` or the mean, or the rollout up to it."""
    index = result.layer_index(len(result.layers) - 1 if layer is None else layer)
    if result.grid is not None:
        grid = result.cls_grid(index, head, rollout)
        if grid is not None:
            return save_png(path, render_grid_overlay(grid, result.image, colormap, opacity))
    view = view_map(result, index, head, rollout)
    return save_png(path, render_matrix(view.map, view.query_labels, view.key_labels, view.title), min_side=1)
