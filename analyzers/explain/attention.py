"""Attention maps of a live model on one input: what was captured, and the views derived from it.

Numpy only. A runtime (analyzers/runtime/attention_taps.py for PyTorch, keras_runtime for Keras) hands every
captured layer to an `AttentionCollector`, which zeroes padding, keeps the mean over heads in float32, stores
the heads as float16 (pooled into blocks past MAX_SIDE tokens per side, with a note saying so) and ends in an
`AttentionResult`. Mean over heads, attention rollout (Abnar & Zuidema 2020) and its per-layer progression, a
query token across layers and a vision transformer's class-token grid are functions of that result, so the
window, the CLI and the tests derive them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import LayerScopeError, printable

ATTENTION_SCHEMA = "layerscope.attention/1"
MAX_SIDE = 512  # tokens per side kept at full resolution; longer inputs are pooled into blocks
MAX_LAYER_BYTES = 24 << 20  # float16 heads of one layer; many heads pool sooner
PAD_LABEL = "[PAD]"


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module's weights on one input: (heads, query, key) float16 with the tokens of both axes."""

    name: str  # the module's path, or "layer 3" / "decoder 1 (cross)" for a Hugging Face model
    kind: str  # "self" | "cross" | "pooling"
    weights: np.ndarray  # (heads, query, key) float16; padding rows and columns are 0
    mean: np.ndarray  # (query, key) float32: the mean over heads, taken before the float16 rounding
    query_tokens: tuple[str, ...]
    key_tokens: tuple[str, ...]
    stack: str = ""  # "encoder" | "decoder" | "": rollout multiplies through the self-attention of one stack
    causal: bool = False
    block: int = 1  # tokens per stored row and column; > 1 when the map was pooled to fit

    @property
    def heads(self) -> int:
        """Number of heads."""
        return int(self.weights.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(heads, query, key) as stored."""
        h, q, k = self.weights.shape
        return int(h), int(q), int(k)

    def head_map(self, head: int | None = None) -> np.ndarray:
        """One head's (query, key) map as float32, or the mean over heads when `head` is None."""
        if head is None:
            return self.mean
        if not 0 <= head < self.heads:
            raise LayerScopeError(f"{printable(self.name, 80)} has heads 0 to {self.heads - 1}, not {head}.")
        return self.weights[head].astype(np.float32)

    @property
    def title(self) -> str:
        """How views name the layer: its name and, unless plain self-attention, its kind."""
        extra = [w for w, on in (("cross", self.kind == "cross"), ("pooling", self.kind == "pooling"),
                                 ("causal", self.causal)) if on and w not in self.name]
        return f"{self.name} ({', '.join(extra)})" if extra else self.name


@dataclass(frozen=True)
class AttentionResult:
    """Every captured attention layer of one input, the input's tokens, and how the maps may be read."""

    layers: tuple[AttentionLayer, ...]
    route: str  # "hf" | "torch-mha" | "keras-mha" | "pooling": how the weights were captured
    tokens: tuple[str, ...]  # the input's tokens (the first stack's), one per position
    valid: np.ndarray | None = None  # (tokens,) bool: False on padding
    grid: tuple[int, int] | None = None  # a vision transformer's patch grid (rows, columns)
    prefix: int = 0  # tokens before the patch tokens (the class token) when `grid` is set
    image: np.ndarray | None = field(default=None, repr=False)  # the picture the grid lies over
    notes: tuple[str, ...] = ()
    prediction: Any = None  # analyzers.runtime.Prediction of the same forward pass
    device: str = ""
    framework: str = ""
    seconds: float = 0.0

    @property
    def heads(self) -> int:
        """The largest head count of any layer."""
        return max((layer.heads for layer in self.layers), default=0)

    def layer_index(self, spec: int | str) -> int:
        """The index of a layer given as a number or a name; one sentence when there is no such layer."""
        count = len(self.layers)
        if isinstance(spec, str) and not spec.lstrip("-").isdigit():
            for i, layer in enumerate(self.layers):
                if layer.name == spec:
                    return i
            raise LayerScopeError(f"The model has no attention layer named '{printable(spec, 80)}'; its "
                                  f"{count} attention layers are numbered 0 to {count - 1}.")
        index = int(spec)
        if not 0 <= index < count:
            raise LayerScopeError(f"The model has {count} attention layer{'s' if count != 1 else ''} "
                                  f"(0 to {count - 1}); there is no layer {index}.")
        return index

    def stacks(self) -> list[str]:
        """The stacks that have square self-attention, in model order (rollout is defined on each)."""
        out: list[str] = []
        for layer in self.layers:
            if layer.kind == "self" and layer.shape[1] == layer.shape[2] and layer.stack not in out:
                out.append(layer.stack)
        return out

    def rollout_indices(self, stack: str | None = None) -> list[int]:
        """The layers rollout multiplies through: square self-attention of `stack` (the first one by default)."""
        stacks = self.stacks()
        if not stacks:
            return []
        stack = stacks[0] if stack is None else stack
        chosen = [i for i, layer in enumerate(self.layers) if layer.kind == "self" and layer.stack == stack
                  and layer.shape[1] == layer.shape[2]]
        sides = {self.layers[i].shape[1] for i in chosen}
        return chosen if len(sides) == 1 else [i for i in chosen if self.layers[i].shape[1] == self.layers[chosen[0]].shape[1]]

    def rollout(self, stack: str | None = None) -> np.ndarray:
        """Rollout after each layer of `stack`: (layers, tokens, tokens); the last entry is the whole model's."""
        indices = self.rollout_indices(stack)
        if not indices:
            raise LayerScopeError("This model's attention has no square self-attention layers, so rollout is not "
                                  "defined for it.")
        return attention_rollout([self.layers[i].mean for i in indices])

    def query_rows(self, query: int, head: int | None = None, stack: str | None = None) -> tuple[list[int], np.ndarray]:
        """Where query token `query` attends in every layer of `stack`: (layer indices, (layers, keys))."""
        indices = self.rollout_indices(stack)
        if not indices:
            indices = [i for i, layer in enumerate(self.layers) if layer.shape[1] > query]
        rows = []
        for i in indices:
            layer = self.layers[i]
            if not 0 <= query < layer.shape[1]:
                raise LayerScopeError(f"There is no query token {query}; the maps have {layer.shape[1]} rows.")
            rows.append(layer.head_map(None if head is None or head >= layer.heads else head)[query])
        return indices, np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def cls_grid(self, layer: int | None = None, head: int | None = None, rollout: bool = False) -> np.ndarray | None:
        """The class token's attention over the patches as the patch grid: of `layer` (its `head`, or the mean),
        or of the rollout up to `layer` (the last layer when None). None when the model is no vision transformer."""
        if self.grid is None:
            return None
        if rollout:
            indices = self.rollout_indices()
            progression = self.rollout()
            step = len(indices) - 1 if layer is None or layer not in indices else indices.index(layer)
            square = progression[step]
        else:
            chosen = self.layers[self.layer_index(len(self.layers) - 1 if layer is None else layer)]
            if chosen.block != 1 or chosen.shape[2] != self.prefix + self.grid[0] * self.grid[1]:
                return None
            square = chosen.head_map(head)
        rows, cols = self.grid
        if square.shape[-1] != self.prefix + rows * cols:
            return None
        row = square[0] if self.prefix else square.mean(axis=0)  # no class token: where the patches look on average
        return np.asarray(row[self.prefix:], dtype=np.float32).reshape(rows, cols)

    def shown_tokens(self, with_padding: bool = False) -> int:
        """How many leading positions a view shows: all, or up to the last real token when padding trails."""
        if with_padding or self.valid is None or not self.valid.any():
            return len(self.tokens)
        return int(np.flatnonzero(self.valid)[-1]) + 1

    # --- files ----------------------------------------------------------------------------------

    def arrays(self, layers: Sequence[int] | None = None, head: int | None = None, rollout: bool = True
               ) -> dict[str, np.ndarray]:
        """What a .npz holds: the chosen layers' heads (float16) and means, the tokens, the rollout when asked."""
        chosen = list(range(len(self.layers))) if layers is None else [self.layer_index(i) for i in layers]
        out: dict[str, np.ndarray] = {"tokens": np.asarray(self.tokens, dtype=str),
                                      "layer_names": np.asarray([self.layers[i].name for i in chosen], dtype=str),
                                      "layer_kinds": np.asarray([self.layers[i].kind for i in chosen], dtype=str),
                                      "layer_indices": np.asarray(chosen, dtype=np.int64)}
        if self.valid is not None:
            out["valid"] = np.asarray(self.valid, dtype=bool)
        for i in chosen:
            layer = self.layers[i]
            if head is None:
                out[f"attention_{i}"] = layer.weights
            else:
                out[f"attention_{i}_head_{head}"] = layer.head_map(head).astype(np.float16)
            out[f"mean_{i}"] = layer.mean
            if layer.query_tokens != self.tokens:
                out[f"query_tokens_{i}"] = np.asarray(layer.query_tokens, dtype=str)
            if layer.key_tokens != self.tokens:
                out[f"key_tokens_{i}"] = np.asarray(layer.key_tokens, dtype=str)
        if rollout and self.rollout_indices():
            progression = self.rollout()
            out["rollout"] = progression[-1]
            out["rollout_progression"] = progression
            out["rollout_layers"] = np.asarray(self.rollout_indices(), dtype=np.int64)
        if self.grid is not None:
            grid = self.cls_grid(chosen[-1] if chosen else None, head, rollout and bool(self.rollout_indices()))
            if grid is not None:
                out["cls_grid"] = grid
            if self.image is not None:
                out["image"] = np.asarray(self.image, dtype=np.float32)
        return out

    def save_npz(self, path: Path | str, layers: Sequence[int] | None = None, head: int | None = None,
                 rollout: bool = True) -> list[str]:
        """Write the maps to a .npz (no pickles: np.load reads it with allow_pickle=False); returns its keys."""
        arrays = self.arrays(layers, head, rollout)
        with open(Path(path), "wb") as f:
            np.savez_compressed(f, **arrays)
        return list(arrays)

    def to_json(self, keys: Sequence[str] = ()) -> dict[str, Any]:
        """The `layerscope.attention/1` facts: layers, heads, tokens, shapes and the maps a file holds."""
        return {"route": self.route, "device": self.device, "framework": self.framework,
                "heads": self.heads, "tokens": list(self.tokens),
                "padding": int((~self.valid).sum()) if self.valid is not None else 0,
                "layers": [{"index": i, "name": layer.name, "kind": layer.kind, "stack": layer.stack,
                            "heads": layer.heads, "shape": list(layer.shape), "causal": layer.causal,
                            "block": layer.block} for i, layer in enumerate(self.layers)],
                "rollout_layers": self.rollout_indices(),
                "grid": list(self.grid) if self.grid else None, "prefix": self.prefix,
                "seconds": round(self.seconds, 4), "notes": list(self.notes), "maps": list(keys)}


# ---------------------------------------------------------------------------------------------
# Derived views


def attention_rollout(maps: Sequence[np.ndarray], residual: float = 0.5) -> np.ndarray:
    """Abnar & Zuidema (2020): per layer A' = residual·I + (1 − residual)·A, rows renormalised, multiplied
    through the layers (R_l = A'_l · R_{l−1}); returns every R_l, shaped (layers, tokens, tokens)."""
    if not maps:
        return np.zeros((0, 0, 0), np.float32)
    n = int(maps[0].shape[0])
    eye = np.eye(n, dtype=np.float64)
    joint = eye
    out = np.empty((len(maps), n, n), dtype=np.float32)
    for i, a in enumerate(maps):
        step = residual * eye + (1.0 - residual) * np.asarray(a, dtype=np.float64)
        step /= step.sum(axis=-1, keepdims=True)
        joint = step @ joint
        out[i] = joint
    return out


def pool_map(weights: np.ndarray, block: int) -> np.ndarray:
    """(heads, q, k) pooled into blocks of `block` tokens per side: rows averaged, keys summed, so a row of a
    softmax still sums to 1."""
    h, q, k = weights.shape
    qp, kp = -(-q // block) * block, -(-k // block) * block
    padded = np.zeros((h, qp, kp), dtype=np.float32)
    padded[:, :q, :k] = weights
    summed = padded.reshape(h, qp // block, block, kp // block, block).sum(axis=(2, 4))
    rows = np.minimum(block, q - np.arange(0, q, block)).astype(np.float32)
    return summed / rows[None, :, None]


def block_labels(tokens: Sequence[str], block: int) -> tuple[str, ...]:
    """Labels of pooled positions: the token itself, or 'first…last' of its block."""
    if block == 1:
        return tuple(tokens)
    return tuple(f"{tokens[i]}…{tokens[min(i + block, len(tokens)) - 1]}" for i in range(0, len(tokens), block))


def position_labels(n: int, prefix: str = "") -> tuple[str, ...]:
    """'0', '1' … (or 't0', 't1' … with a prefix) for inputs without tokens."""
    return tuple(f"{prefix}{i}" for i in range(n))


def token_labels(tokens: Sequence[str], n: int, kind: str = "") -> tuple[str, ...]:
    """One label per position: the input's tokens, then [PAD] for the padding after them; time steps or
    positions for inputs without tokens."""
    if tokens:
        kept = [printable(t, 40) for t in list(tokens)[:n]]
        return tuple(kept + [PAD_LABEL] * (n - len(kept)))
    return position_labels(n, "t" if kind == "sequence" else "")


def patch_grid(tokens: int, image_hw: tuple[int, int] | None, patch: int | None = None
               ) -> tuple[tuple[int, int], int] | None:
    """((rows, columns), prefix) when `tokens` read as an image's patches after 0-2 prefix tokens (class,
    distillation): the grid has the picture's aspect ratio. None otherwise."""
    if image_hw is None or min(image_hw) <= 0:
        return None
    h, w = (int(v) for v in image_hw)
    if patch:
        rows, cols = h // patch, w // patch
        prefix = tokens - rows * cols
        return ((rows, cols), prefix) if rows > 1 and cols > 1 and 0 <= prefix <= 2 else None
    for prefix in (1, 0, 2):
        n = tokens - prefix
        if n < 4:
            continue
        rows = int(round(math.sqrt(n * h / w)))
        if rows > 1 and n % rows == 0:
            cols = n // rows
            if cols > 1 and abs(rows / cols - h / w) <= 0.01 * (h / w):
                return (rows, cols), prefix
    return None


def image_size(inp: Any) -> tuple[int, int] | None:
    """(height, width) of an image input: its picture's, else read from the array by its layout; None otherwise."""
    if getattr(inp, "kind", "") != "image":
        return None
    if inp.display is not None:
        return tuple(int(d) for d in np.asarray(inp.display).shape[:2])  # type: ignore[return-value]
    shape = tuple(int(d) for d in np.asarray(inp.array).shape[1:])
    if len(shape) == 2:
        return shape  # type: ignore[return-value]
    if len(shape) == 3:
        return shape[:2] if inp.layout == "NHWC" or (inp.layout != "NCHW" and shape[-1] in (1, 3)) else shape[1:]
    return None


def grid_labels(grid: tuple[int, int], prefix: int) -> tuple[str, ...]:
    """[CLS] (and [DIST]) then one 'row,column' label per patch."""
    rows, cols = grid
    return (*("[CLS]", "[DIST]")[:prefix], *(f"{r},{c}" for r in range(rows) for c in range(cols)))


# ---------------------------------------------------------------------------------------------
# Collecting layers as a runtime captures them


class AttentionCollector:
    """Takes each captured layer as it comes (so a long input never holds every layer in float32), masks padding,
    pools past the size limits and stores float16; `finish` turns what it holds into an AttentionResult."""

    def __init__(self, max_side: int = MAX_SIDE, max_layer_bytes: int = MAX_LAYER_BYTES) -> None:
        self.max_side = max_side
        self.max_layer_bytes = max_layer_bytes
        self._layers: list[dict[str, Any]] = []
        self.pooled: list[tuple[str, int, int]] = []  # (layer, side before, block)

    def __len__(self) -> int:
        return len(self._layers)

    def block_for(self, heads: int, q: int, k: int) -> int:
        """Tokens per stored cell so that a layer stays within MAX_SIDE per side and MAX_LAYER_BYTES."""
        block = 1
        while (max(q, k) > self.max_side * block
               or heads * (-(-q // block)) * (-(-k // block)) * 2 > self.max_layer_bytes):
            block += 1
        return block

    def add(self, name: str, weights: np.ndarray, kind: str = "self", stack: str = "",
            key_valid: np.ndarray | None = None, query_valid: np.ndarray | None = None,
            causal: bool | None = None, mean: np.ndarray | None = None) -> None:
        """One layer's (heads, query, key) weights of the first batch item (any float dtype; a runtime may hand
        them over as float16 with their float32 `mean` over heads already taken, which is faster on its side)."""
        w = np.asarray(weights)
        if w.ndim == 2:
            w = w[None]
        if w.ndim != 3:
            raise LayerScopeError(f"The attention weights of {printable(name, 80)} have shape {tuple(w.shape)}, "
                                  "not (heads, query, key).")
        h, q, k = w.shape
        mean = np.array(w.mean(axis=0, dtype=np.float32) if mean is None else mean, dtype=np.float32)  # a copy
        stored = w.astype(np.float16)  # a copy too: the masking below never touches the framework's memory
        if np.isnan(mean).any():  # a fully masked row of nn.MultiheadAttention is NaN
            np.nan_to_num(mean, copy=False, nan=0.0)
            np.nan_to_num(stored, copy=False, nan=0.0)
        if key_valid is not None and len(key_valid) == k:
            pad = ~np.asarray(key_valid, dtype=bool)
            stored[:, :, pad] = 0
            mean[:, pad] = 0
        if query_valid is None and kind == "self" and key_valid is not None and q == k:
            query_valid = key_valid
        if query_valid is not None and len(query_valid) == q:
            pad = ~np.asarray(query_valid, dtype=bool)
            stored[:, pad, :] = 0
            mean[pad, :] = 0
        if causal is None:  # weights are never negative: the mean is zero exactly where every head is
            causal = bool(kind == "self" and q == k and q > 1 and not np.triu(mean, 1).any() and np.tril(mean, -1).any())
        block = self.block_for(h, q, k)
        if block > 1:
            stored = pool_map(stored.astype(np.float32), block).astype(np.float16)
            mean = pool_map(mean[None], block)[0]
            self.pooled.append((name, max(q, k), block))
        self._layers.append({"name": name, "kind": kind, "stack": stack, "weights": stored, "mean": mean,
                             "causal": causal, "block": block, "q": q, "k": k,
                             "key_valid": None if key_valid is None else np.asarray(key_valid, dtype=bool)})

    def valid(self) -> np.ndarray | None:
        """Padding as the model itself saw it: the key mask of the first self-attention layer, if one had one."""
        for layer in self._layers:
            if layer["kind"] == "self" and layer["key_valid"] is not None:
                return layer["key_valid"]
        return None

    def finish(self, route: str, tokens: Sequence[str], *, kind: str = "", valid: np.ndarray | None = None,
               image: np.ndarray | None = None, image_hw: tuple[int, int] | None = None, patch: int | None = None,
               decoder_tokens: Sequence[str] | None = None, notes: Sequence[str] = (), **extra: Any
               ) -> AttentionResult:
        """The result: labels for both axes of every layer, the patch grid of an image model, and notes."""
        if not self._layers:
            raise LayerScopeError("No attention layer ran on this input.")
        first = next((d for d in self._layers if d["kind"] == "self"), self._layers[0])
        side = first["k"]
        grid = patch_grid(side, image_hw, patch) if image_hw is not None else None
        labels = grid_labels(*grid) if grid else token_labels(tokens, side, kind)
        if valid is None:
            valid = self.valid()
        if valid is not None and len(valid) != side:
            valid = None
        dec_labels = tuple(decoder_tokens) if decoder_tokens else None
        layers = []
        for d in self._layers:
            keys = self._labels_for(d["k"], d, labels, dec_labels, query=False)
            queries = self._labels_for(d["q"], d, labels, dec_labels, query=True)
            block = d["block"]
            layers.append(AttentionLayer(d["name"], d["kind"], d["weights"], d["mean"], block_labels(queries, block),
                                         block_labels(keys, block), d["stack"], d["causal"], block))
        all_notes = list(notes)
        if self.pooled:
            sides = sorted({s for _, s, _ in self.pooled})
            blocks = sorted({b for _, _, b in self.pooled})
            all_notes.append(f"{len(self.pooled)} of {len(layers)} attention maps are downsampled to fit on screen "
                             f"and in memory: {', '.join(map(str, sides))} tokens per side are shown as blocks of "
                             f"{'/'.join(map(str, blocks))} tokens (rows averaged, keys summed, so rows still sum to 1).")
        return AttentionResult(tuple(layers), route, labels, valid, grid[0] if grid else None, grid[1] if grid else 0,
                               image if grid else None, tuple(all_notes), **extra)

    @staticmethod
    def _labels_for(n: int, d: dict[str, Any], labels: tuple[str, ...], decoder: tuple[str, ...] | None,
                    query: bool) -> tuple[str, ...]:
        if d["kind"] == "pooling" and query:
            return ("pooled",) * n if n != 1 else ("pooled",)
        if d["stack"] == "decoder" and (query or d["kind"] == "self"):
            if decoder is not None and len(decoder) == n:
                return decoder
            return position_labels(n, "d")
        if len(labels) == n:
            return labels
        return position_labels(n)
