"""Turning an attribution map into colours: Captum's sign modes and outlier clipping, colour maps, overlays.

Numpy only (PIL to write PNGs), so the GUI's view and `layerscope attribute --png` draw the same
picture and the normalisation is tested without Qt. `normalize` reproduces
captum.attr.visualization's `_normalize_attr`: keep the chosen sign, find the value below which
(100 - outlier) % of the total absolute attribution lies, divide by it and clip to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzers.errors import LayerScopeError

# UI name -> Captum's VisualizeSign name
SIGN_MODES = {"positive": "positive", "negative": "negative", "absolute": "absolute_value", "all": "all"}
DEFAULT_OUTLIER_PERCENT = 2.0


def to_2d(attr: np.ndarray, layout: str = "") -> np.ndarray:
    """A map without the batch axis as 2-D: channels summed (as visualize_image_attr does), 1-D as one row."""
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 3:
        if layout == "NHWC" or (layout != "NCHW" and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3)):
            return a.sum(axis=2)
        return a.sum(axis=0)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2:
        return a
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(-1, a.shape[-1])


def _sign_name(sign: str) -> str:
    if sign in SIGN_MODES:
        return SIGN_MODES[sign]
    if sign in SIGN_MODES.values():
        return sign
    raise LayerScopeError(f"Unknown sign mode '{sign}'; use one of {', '.join(SIGN_MODES)}.")


def signed_part(attr: np.ndarray, sign: str) -> np.ndarray:
    """The values a sign mode keeps: positive, negative (still negative), absolute, or all."""
    name = _sign_name(sign)
    a = np.asarray(attr, dtype=np.float64)
    if name == "positive":
        return np.maximum(a, 0)
    if name == "negative":
        return np.minimum(a, 0)
    if name == "absolute_value":
        return np.abs(a)
    return a


def cumulative_threshold(values: np.ndarray, percentile: float) -> float:
    """The smallest value at which the sorted cumulative sum reaches `percentile` % of the total."""
    if not 0 <= percentile <= 100:
        raise LayerScopeError("The outlier percentile must lie between 0 and 100.")
    sorted_vals = np.sort(np.asarray(values, dtype=np.float64).ravel())
    cum = np.cumsum(sorted_vals)
    if cum.size == 0 or cum[-1] <= 0:
        return 0.0
    return float(sorted_vals[np.where(cum >= cum[-1] * 0.01 * percentile)[0][0]])


def threshold_for(attr2d: np.ndarray, sign: str = "all", outlier_percent: float = DEFAULT_OUTLIER_PERCENT) -> float:
    """The scale a map is divided by (its sign's part, the top `outlier_percent` % of mass clipped)."""
    return cumulative_threshold(np.abs(signed_part(attr2d, sign)), 100.0 - outlier_percent)


def normalize(attr2d: np.ndarray, sign: str = "all", outlier_percent: float = DEFAULT_OUTLIER_PERCENT,
              threshold: float | None = None) -> np.ndarray:
    """Captum's normalisation: [-1, 1] for "all", [0, 1] otherwise; `threshold` imposes a shared scale."""
    part = signed_part(attr2d, sign)
    scale = threshold_for(attr2d, sign, outlier_percent) if threshold is None else abs(float(threshold))
    if scale == 0:
        return np.zeros_like(part)
    if _sign_name(sign) == "negative":
        scale = -scale
    return np.clip(part / scale, -1.0, 1.0)


def shared_threshold(maps: list[np.ndarray], sign: str = "all", outlier_percent: float = DEFAULT_OUTLIER_PERCENT
                     ) -> float:
    """One scale for several maps (two models side by side): the largest of their own thresholds."""
    return max((threshold_for(m, sign, outlier_percent) for m in maps), default=0.0)


def value_range(sign: str) -> tuple[float, float]:
    """The range normalised values take: (-1, 1) for "all", (0, 1) otherwise."""
    return (-1.0, 1.0) if _sign_name(sign) == "all" else (0.0, 1.0)


def default_sign(method: str, parameters: dict | None = None) -> str:
    """The sign mode a method's map reads best in (its class says: absolute saliency, positive Grad-CAM ...)."""
    from analyzers.methods import method_class

    return method_class(method).default_sign(parameters or {})


# ---------------------------------------------------------------------------------------------
# Colour maps (RGBA stops; a transparent centre hides near-zero attribution)


@dataclass(frozen=True)
class ColorMapSpec:
    """A colour map as RGBA stops over [0, 1]; `diverging` maps [-1, 1], the others [0, 1]."""

    name: str
    stops: tuple[tuple[float, tuple[int, int, int, int]], ...]
    diverging: bool

    def lookup(self, count: int = 257) -> np.ndarray:
        """A (count, 4) uint8 lookup table between the stops (odd, so 0 of a diverging map hits the centre)."""
        pos = np.array([s[0] for s in self.stops])
        rgba = np.array([s[1] for s in self.stops], dtype=np.float64)
        xs = np.linspace(0.0, 1.0, count)
        return np.stack([np.interp(xs, pos, rgba[:, c]) for c in range(4)], axis=1).round().astype(np.uint8)


COLOR_MAPS: dict[str, ColorMapSpec] = {c.name: c for c in (
    ColorMapSpec("blue-red", ((0.0, (33, 102, 172, 255)), (0.25, (103, 169, 207, 200)), (0.5, (247, 247, 247, 0)),
                              (0.75, (239, 138, 98, 200)), (1.0, (178, 24, 43, 255))), True),
    ColorMapSpec("red-green", ((0.0, (215, 25, 28, 255)), (0.5, (255, 255, 255, 0)), (1.0, (26, 150, 65, 255))), True),
    ColorMapSpec("heat", ((0.0, (255, 255, 0, 0)), (0.35, (255, 200, 0, 150)), (0.7, (255, 100, 0, 220)),
                          (1.0, (200, 0, 0, 255))), False),
    ColorMapSpec("greens", ((0.0, (247, 252, 245, 0)), (1.0, (0, 109, 44, 255))), False),
    ColorMapSpec("blues", ((0.0, (247, 251, 255, 0)), (1.0, (8, 48, 107, 255))), False),
    ColorMapSpec("magma", ((0.0, (0, 0, 4, 0)), (0.3, (114, 31, 129, 160)), (0.6, (241, 96, 93, 230)),
                           (1.0, (252, 253, 191, 255))), False),
)}


def default_colormap(sign: str) -> str:
    """blue-red (transparent centre) for signed maps, heat for one-sided ones, blues for negative."""
    name = _sign_name(sign)
    return {"all": "blue-red", "negative": "blues"}.get(name, "heat")


def colorize(norm: np.ndarray, colormap: str = "blue-red", sign: str = "all") -> np.ndarray:
    """(H, W, 4) uint8 colours of a normalised map; diverging maps centre 0, one-sided maps start at 0."""
    spec = COLOR_MAPS.get(colormap)
    if spec is None:
        raise LayerScopeError(f"Unknown colour map '{colormap}'; use one of {', '.join(COLOR_MAPS)}.")
    lo, hi = value_range(sign)
    if spec.diverging:
        lo, hi = -1.0, 1.0
    pos = np.clip((np.asarray(norm, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    table = spec.lookup()
    return table[(pos * (len(table) - 1)).round().astype(int)]


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(shape[0]) * a.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * a.shape[1] / shape[1]).astype(int)
    return a[rows][:, cols]


def overlay(display: np.ndarray | None, heat_rgba: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8: the heat colours alpha-blended over the picture (or over white without one)."""
    heat = np.asarray(heat_rgba, dtype=np.float64)
    if display is None:
        base = np.full((*heat.shape[:2], 3), 255.0)
    else:
        d = np.asarray(display, dtype=np.float64)
        base = np.repeat(d[:, :, None], 3, axis=2) * 255.0 if d.ndim == 2 else d[:, :, :3] * 255.0
        if base.shape[:2] != heat.shape[:2]:
            heat = _resize_nearest(heat, base.shape[:2])
    alpha = heat[:, :, 3:4] / 255.0 * float(np.clip(opacity, 0.0, 1.0))
    return (base * (1 - alpha) + heat[:, :, :3] * alpha).round().clip(0, 255).astype(np.uint8)


def render_overlay(attr: np.ndarray, display: np.ndarray | None = None, layout: str = "", sign: str = "all",
                   outlier_percent: float = DEFAULT_OUTLIER_PERCENT, colormap: str | None = None,
                   opacity: float = 0.6, threshold: float | None = None) -> np.ndarray:
    """The picture a view shows for a map: normalised, coloured and laid over the input."""
    norm = normalize(to_2d(attr, layout), sign, outlier_percent, threshold)
    heat = colorize(norm, colormap or default_colormap(sign), sign)
    return overlay(display, heat, opacity if display is not None else 1.0)


def save_png(path: Path | str, rgb: np.ndarray, min_side: int = 224) -> Path:
    """Write an RGB image, enlarged (nearest) so that small inputs like 28x28 digits stay visible."""
    from PIL import Image

    img = np.asarray(rgb, dtype=np.uint8)
    factor = max(1, int(np.ceil(min_side / max(1, min(img.shape[:2])))))
    factor = min(factor, max(1, 4096 // max(img.shape[:2])))
    if factor > 1:
        img = np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)
    path = Path(path)
    Image.fromarray(img).save(path)
    return path


def token_colors(scores: np.ndarray, sign: str = "all", outlier_percent: float = DEFAULT_OUTLIER_PERCENT,
                 colormap: str | None = None) -> list[tuple[int, int, int, int]]:
    """One RGBA colour per token score, normalised like an image map."""
    norm = normalize(np.asarray(scores, dtype=np.float64)[None, :], sign, outlier_percent)[0]
    rgba = colorize(norm[None, :], colormap or default_colormap(sign), sign)[0]
    return [tuple(int(v) for v in c) for c in rgba]


def render_tokens(tokens: tuple[str, ...] | list[str], scores: np.ndarray, sign: str = "all",
                  outlier_percent: float = DEFAULT_OUTLIER_PERCENT, colormap: str | None = None,
                  width: int = 720) -> np.ndarray:
    """(H, W, 3) uint8: the tokens written on boxes coloured by their scores (for --png on text models)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    colors = token_colors(scores, sign, outlier_percent, colormap)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes, x, y, line_h = [], 8, 8, 22
    for tok, color in zip(tokens, colors):
        w = int(probe.textlength(tok, font=font)) + 10
        if x + w > width - 8 and x > 8:
            x, y = 8, y + line_h + 4
        boxes.append((x, y, w, tok, color))
        x += w + 4
    img = Image.new("RGB", (width, y + line_h + 8), "white")
    draw = ImageDraw.Draw(img)
    for bx, by, w, tok, (r, g, b, a) in boxes:
        t = a / 255.0
        fill = tuple(int(round(255 * (1 - t) + c * t)) for c in (r, g, b))
        draw.rectangle((bx, by, bx + w, by + line_h), fill=fill, outline=(200, 200, 200))
        draw.text((bx + 5, by + 5), tok, fill="black", font=font)
    return np.asarray(img)


# ---------------------------------------------------------------------------------------------
# A raw output read as a picture (a generator's image), and a flat output index in words

MIN_PICTURE_SIDE = 8  # a (2, 50) regression output is not a picture; 8x8 digits are


def image_axes(shape: tuple[int, ...]) -> str | None:
    """'HW', 'HWC' or 'CHW' when an output of `shape` (no batch axis) reads as a picture, else None."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 2 and min(dims) >= MIN_PICTURE_SIDE:
        return "HW"
    if len(dims) == 3:
        if dims[2] in (1, 3, 4) and min(dims[:2]) >= MIN_PICTURE_SIDE:
            return "HWC"
        if dims[0] in (1, 3, 4) and min(dims[1:]) >= MIN_PICTURE_SIDE:
            return "CHW"
    return None


def output_picture(values: np.ndarray | None) -> np.ndarray | None:
    """A raw output as (H, W) or (H, W, 3) in [0, 1] when its shape is image-like, else None.

    Values in [0, 1] are kept, tanh outputs in [-1, 1] map to (v + 1) / 2, 0-255 pixels are divided
    by 255, anything else is stretched from its minimum to its maximum."""
    if values is None:
        return None
    a = np.asarray(values, dtype=np.float64)
    axes = image_axes(a.shape)
    if axes is None or not np.all(np.isfinite(a)):
        return None
    if axes == "CHW":
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3:
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        pass
    elif lo >= -1.0 and hi <= 1.0:
        a = (a + 1.0) / 2.0
    elif lo >= 0.0 and hi <= 255.0:
        a = a / 255.0
    else:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def output_pixel(index: int, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(row, column) of a flat output index in an image-like output, else None."""
    axes = image_axes(shape)
    if axes is None or not 0 <= index < int(np.prod(shape)):
        return None
    pos = np.unravel_index(int(index), tuple(int(d) for d in shape))
    return (int(pos[1]), int(pos[2])) if axes == "CHW" else (int(pos[0]), int(pos[1]))


def output_position(index: int, shape: tuple[int, ...]) -> str:
    """A flat output index in words: "output pixel (4, 17)", "output element [2, 5]", "output element 129"."""
    dims = tuple(int(d) for d in shape)
    if len(dims) <= 1 or not 0 <= index < int(np.prod(dims)):
        return f"output element {index}"
    pos = [int(p) for p in np.unravel_index(int(index), dims)]
    axes = image_axes(dims)
    if axes is None:
        return f"output element [{', '.join(map(str, pos))}]"
    row, col = output_pixel(index, dims)  # type: ignore[misc] - image-like, so a pixel
    channels = dims[2] if axes == "HWC" else dims[0] if axes == "CHW" else 1
    channel = pos[2] if axes == "HWC" else pos[0] if axes == "CHW" else 0
    return f"output pixel ({row}, {col})" + (f", channel {channel}" if channels > 1 else "")
