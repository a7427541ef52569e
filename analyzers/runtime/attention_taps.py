"""Attention weights out of PyTorch models, collected for analyzers.explain.attention.

Three taps, tried in this order:

- **Hugging Face** models run once with eager attention and `output_attentions=True` (the implementation they
  had is put back afterwards); encoder, decoder (causal) and encoder-decoder outputs (self and cross, labelled).
- **torch.nn.MultiheadAttention** anywhere in the module, also inside nn.TransformerEncoderLayer/DecoderLayer,
  which ask it for no weights and may take a fused fast path that skips it: torch's MHA fast path is switched
  off for the pass and a forward pre-hook with kwargs asks for `need_weights=True, average_attn_weights=False`.
- A model that **exposes its own weights** after a forward (`last_attention` of shape (batch, steps), the zoo's
  softmax pooling): one 1 × L map.

Every hook placed here, and the output-capture hooks transformers installs on first use, are removed in
`finally`; a pre-hook on every container module raises Cancelled between layers when the token is set.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from analyzers.errors import LayerScopeError, sentence
from analyzers.explain.attention import AttentionCollector, AttentionResult, image_size
from analyzers.explain.inputs import ModelInput
from analyzers.runtime.outputs import summarise_outputs
from analyzers.tasks import Cancelled, CancelToken, Progress, Steps

MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
            "is_causal")
_STACK = re.compile(r"\.?(layers|layer|blocks|block|h)\.\d+(\..*)?$")
NO_ATTENTION = ("it has no attention LayerScope can read (no Hugging Face attention, torch.nn.MultiheadAttention "
                "or attention weights the model exposes as last_attention)")


def capture(live: Any, inp: ModelInput, token: CancelToken | None = None, top_k: int = 5) -> Steps[AttentionResult]:
    """Every attention layer of a TorchLiveModel on `inp`, with the prediction of the same forward pass."""
    from analyzers.runtime.torch_runtime import hook_snapshot, restore_hooks

    module = live.module
    if isinstance(module, torch.jit.ScriptModule):
        raise LayerScopeError(sentence(live.path, "TorchScript modules have no hooks to read attention weights from; "
                                                  "open the model as a full module or a state_dict with --arch"))
    started = time.perf_counter()
    yield Progress(0, 3, "Preparing the input")
    x, extras = live.tensors(inp)
    collector = AttentionCollector()
    snapshot = hook_snapshot(module)
    capture_flags = {id(m) for m in module.modules() if getattr(m, "_output_capturing_hooks_installed", False)}
    fast_path = torch.backends.mha.get_fastpath_enabled()
    put_back: Callable[[], None] | None = None
    decoder_tokens: tuple[str, ...] | None = None
    patch = None
    yield Progress(1, 3, "Running the model with attention capture")
    try:
        _cancel_checks(module, token)
        if _is_hf(module):
            put_back = _eager(module)
            out, decoder_tokens = _hf_forward(live, module, x, extras, collector, inp)
            route = "hf"
            patch = _hf_patch(module.config)
        else:
            torch.backends.mha.set_fastpath_enabled(False)
            _mha_hooks(module, collector, token)
            if hasattr(module, "last_attention"):
                module.last_attention = None  # a stale map from an earlier pass must not be read as this one's
            with torch.inference_mode():
                out = live.call(x, extras)
            route = "torch-mha" if len(collector) else _pooling(module, collector)
    finally:
        restore_hooks(module, snapshot)
        for m in module.modules():  # transformers re-installs its capture hooks on the next request
            if getattr(m, "_output_capturing_hooks_installed", False) and id(m) not in capture_flags:
                m._output_capturing_hooks_installed = False
        torch.backends.mha.set_fastpath_enabled(fast_path)
        if put_back is not None:
            put_back()
    if not len(collector):
        raise LayerScopeError(sentence(live.path, NO_ATTENTION))
    yield Progress(2, 3, "Preparing the maps")
    prediction = _prediction(live, out, inp, top_k)
    valid = None
    mask = extras.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        valid = mask[0].detach().cpu().numpy() > 0
    result = collector.finish(route, inp.tokens, kind=inp.kind, valid=valid, image=inp.display,
                              image_hw=image_size(inp),
                              patch=patch, decoder_tokens=decoder_tokens, prediction=prediction, device=live.device,
                              framework="torch", seconds=time.perf_counter() - started)
    yield Progress(3, 3, "Attention captured")
    return result


def _prediction(live: Any, out: Any, inp: ModelInput, top_k: int) -> Any:
    """The prediction of the captured pass, or None when the output is nothing LayerScope reads."""
    try:
        named = live.named_outputs(out)
    except LayerScopeError:
        return None
    outputs = {k: v.detach().float().cpu().numpy() for k, v in named.items()}
    return summarise_outputs(outputs, live.labels, top_k, inp, live.task)


def _cancel_checks(module: Any, token: CancelToken | None) -> None:
    """A pre-hook on every container module that stops the pass when the token is set (removed with the rest)."""
    if token is None:
        return

    def check(*_: Any) -> None:
        if token.cancelled:
            raise Cancelled()

    for m in module.modules():
        if next(m.children(), None) is not None:
            m.register_forward_pre_hook(check)


# ---------------------------------------------------------------------------------------------
# Hugging Face


def _is_hf(module: Any) -> bool:
    return hasattr(module, "config") and hasattr(module, "set_attn_implementation")


def _eager(module: Any) -> Callable[[], None] | None:
    """Switch the model to eager attention (only it returns weights); returns how to put the old one back."""
    config = module.config
    previous = getattr(config, "_attn_implementation", None)
    if previous == "eager":
        return None
    module.set_attn_implementation("eager")

    def put_back() -> None:
        if previous is not None:
            module.set_attn_implementation(previous)

    return put_back


def _hf_patch(config: Any) -> int | None:
    patch = getattr(config, "patch_size", None)
    if isinstance(patch, list | tuple):
        patch = patch[0] if len(set(patch)) == 1 else None
    return int(patch) if isinstance(patch, int) and patch > 0 else None


def _hf_forward(live: Any, module: Any, x: torch.Tensor, extras: Mapping[str, torch.Tensor],
                collector: AttentionCollector, inp: ModelInput) -> tuple[Any, tuple[str, ...] | None]:
    """One forward with output_attentions; every layer goes to the collector. Encoder-decoder models without
    decoder ids get the input shifted right as the decoder's input (teacher forcing on the input itself)."""
    config = module.config
    name = live.input_name or "input_ids"
    kwargs: dict[str, Any] = {name: x, **extras, "output_attentions": True, "return_dict": True}
    decoder_tokens = None
    enc_dec = bool(getattr(config, "is_encoder_decoder", False))
    if enc_dec and "decoder_input_ids" not in extras and name == "input_ids":
        start = next((v for v in (getattr(config, "decoder_start_token_id", None), getattr(config, "bos_token_id", None),
                                  getattr(config, "pad_token_id", None)) if isinstance(v, int)), 0)
        kwargs["decoder_input_ids"] = torch.cat([torch.full_like(x[:, :1], start), x[:, :-1]], dim=1)
        shown = list(inp.tokens)[: x.shape[1] - 1] if inp.tokens else [str(i) for i in range(x.shape[1] - 1)]
        decoder_tokens = ("<start>", *shown)
    with torch.inference_mode():
        out = module(**kwargs)
    mask = extras.get("attention_mask")
    key_valid = mask[0].detach().cpu().numpy() > 0 if mask is not None and mask.dim() == 2 else None

    def rows(name: str) -> tuple:
        found = getattr(out, name, None)
        return tuple(a for a in (found or ()) if a is not None)

    if enc_dec:
        for i, a in enumerate(rows("encoder_attentions")):
            collector.add(f"encoder {i}", kind="self", stack="encoder", key_valid=key_valid, causal=False,
                          **_halves(a[0]))
        decoder, cross = rows("decoder_attentions"), rows("cross_attentions")
        for i in range(max(len(decoder), len(cross))):
            if i < len(decoder):
                collector.add(f"decoder {i}", kind="self", stack="decoder", **_halves(decoder[i][0]))
            if i < len(cross):
                collector.add(f"decoder {i} cross", kind="cross", stack="decoder", key_valid=key_valid,
                              **_halves(cross[i][0]))
    else:
        for i, a in enumerate(rows("attentions")):
            collector.add(f"layer {i}", kind="self", key_valid=key_valid, **_halves(a[0]))
    return out, decoder_tokens


def _halves(t: torch.Tensor) -> dict[str, np.ndarray]:
    """`weights` (float16) and `mean` over heads (float32) of a (heads, query, key) tensor, converted by torch
    (threaded, on the tensor's device) rather than numpy: the difference showed at 512 tokens."""
    t = t.detach()
    return {"weights": t.to(torch.float16).cpu().numpy(), "mean": t.float().mean(0).cpu().numpy()}


# ---------------------------------------------------------------------------------------------
# torch.nn.MultiheadAttention


def stack_of(name: str) -> str:
    """The stack a module path belongs to: 'encoder' for encoder.layers.0.self_attn ('' at the top)."""
    return _STACK.sub("", name)


def _valid_keys(mask: Any) -> np.ndarray | None:
    """True where a key is kept: a bool key_padding_mask marks padding True, a float one with -inf."""
    if not isinstance(mask, torch.Tensor):
        return None
    row = mask[0] if mask.dim() == 2 else mask
    row = row.detach().cpu()
    return (~row).numpy() if row.dtype == torch.bool else (row == 0).numpy()


def _mha_hooks(module: Any, collector: AttentionCollector, token: CancelToken | None) -> None:
    """A pre-hook (kwargs) asking every nn.MultiheadAttention for per-head weights, a hook passing them on."""
    for name, m in module.named_modules():
        if not isinstance(m, nn.MultiheadAttention):
            continue
        seen: dict[str, Any] = {}

        def ask(_m: Any, args: tuple, kwargs: dict, seen: dict = seen) -> tuple[tuple, dict]:
            if token is not None and token.cancelled:
                raise Cancelled()
            bound = dict(zip(MHA_ARGS, args))
            bound.update(kwargs)
            bound["need_weights"] = True
            bound["average_attn_weights"] = False
            query, key = bound.get("query"), bound.get("key")
            same = query is key or (isinstance(query, torch.Tensor) and isinstance(key, torch.Tensor)
                                    and query.shape == key.shape and query.data_ptr() == key.data_ptr())
            seen["self"] = same
            seen["valid"] = _valid_keys(bound.get("key_padding_mask"))
            return (), bound

        def keep(_m: Any, _args: tuple, output: Any, name: str = name, seen: dict = seen) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if not isinstance(weights, torch.Tensor):
                return
            w = weights[0] if weights.dim() == 4 else weights
            collector.add(name, kind="self" if seen.get("self") else "cross", stack=stack_of(name),
                          key_valid=seen.get("valid"), **_halves(w))

        m.register_forward_pre_hook(ask, with_kwargs=True)
        m.register_forward_hook(keep)


# ---------------------------------------------------------------------------------------------
# Weights the model exposes itself


def _pooling(module: Any, collector: AttentionCollector) -> str:
    """A (batch, steps) `last_attention` left by the forward pass: softmax pooling over time, one 1 × L map."""
    weights = getattr(module, "last_attention", None)
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        collector.add("attention pooling", weights[0].detach().float().cpu().numpy()[None, None, :], "pooling")
        return "pooling"
    return ""
