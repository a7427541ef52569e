"""Output shapes and FLOPs of a summarised model for one input, without reading a weight byte.

PyTorch: the module tree is rebuilt on the `meta` device (a Hugging Face folder from its config, a
state_dict from its architecture, a trusted pickled module loaded onto meta), one forward pass runs
under `torch.utils.flop_counter.FlopCounterMode` with a forward hook on every module, and the hooks
are removed after. Keras: shapes from the saved config (another input size is propagated through
it), FLOPs from the layers' hyper-parameters. ONNX: `onnx.shape_inference` with the input's sizes,
FLOPs of MatMul, Gemm and Conv where shapes are known. Everything else says plainly why not.

This imports torch, transformers or onnx: it runs in a child process (the model runner, or the CLI).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from analyzers.errors import LayerScopeError, printable
from analyzers.loaders.format_util import first_line
from analyzers.summary import ModelSummary
from analyzers.summary.flops import AFFINE_FLOPS, BATCHNORM_FLOPS, NORM_STAT_FLOPS, fill_batch, keras_flops
from analyzers.summary.shapes import Shape, ShapeInput, ShapeReport, unknown
from analyzers.tasks import CancelToken, Progress, Steps

DEFAULT_TOKENS = 512  # a text model's default input: batch 1 × this many tokens (its context, when shorter)
DEFAULT_IMAGE = 224
META_METHOD = "one forward pass on the meta device (no weights read), FLOPs by torch.utils.flop_counter"


def infer_shapes(summary: ModelSummary, requested: tuple[int, ...] | None = None,
                 token: CancelToken | None = None, trust: bool = False) -> Steps[ShapeReport]:
    """Shapes and FLOPs of every layer for the model's default input, or for `requested` (batch first).

    `trust`: the user allowed the file's code to run, so a full pickled module may be loaded (onto meta)."""
    fmt, framework = summary.source.format, summary.source.framework
    yield Progress(0, None, "Computing output shapes and FLOPs")
    if fmt == "onnx":
        return _onnx(summary, requested)
    if framework == "keras":
        return _keras(summary, requested)
    if framework == "torch":
        return (yield from _torch(summary, requested, token, trust))
    what = {"gguf": "GGUF files", "safetensors": "safetensors files without an architecture",
            "safetensors-index": "safetensors files without an architecture",
            "savedmodel": "SavedModels"}.get(fmt, f"{fmt} files")
    return unknown(None, f"{what} hold tensors but no layer graph LayerScope can pass an input through.")


# --- PyTorch on the meta device -----------------------------------------------------------------------


def _torch_module(summary: ModelSummary, trust: bool = False) -> tuple[Any, str]:
    """(module on the meta device, how it is called: "hf" | "plain"); LayerScopeError saying why not."""
    fmt, meta = summary.source.format, summary.metadata
    if fmt == "hf":
        import transformers

        cls_name = summary.root.type
        if summary.config is None or not isinstance(getattr(transformers, cls_name, None), type):
            raise LayerScopeError("the tree was built from tensor names (transformers did not build this "
                                  "architecture), so there is no module to pass an input through")
        from analyzers.loaders.hf_folder import transformers_log
        from analyzers.loaders.hf_heads import build_best_model

        with transformers_log():
            model, _, _ = build_best_model(Path(summary.source.path), dict(summary.config), list(summary.tensors))
        return model, "hf"
    arch = meta.get("arch") if isinstance(meta.get("arch"), Mapping) else None
    if arch and isinstance(arch.get("spec"), str):
        from analyzers.loaders.arch import instantiate, parse_arch

        spec = parse_arch(arch["spec"], dict(arch.get("kwargs") or {}), base=Path(summary.source.path).parent)
        return instantiate(spec, "meta"), "plain"
    if fmt == "pytorch-module" and trust:
        return trusted_module(Path(summary.source.path)), "plain"
    if fmt == "pytorch-module":
        raise LayerScopeError("a full pickled module is only rebuilt when its code may run (open it with "
                              "--trust, or answer Explain's question); inspecting never runs it")
    if fmt in ("pytorch", "safetensors", "safetensors-index"):
        raise LayerScopeError("a state_dict holds weights without their architecture; attach one "
                              "(--arch module:Class) to get shapes and FLOPs")
    if fmt == "torchscript":
        raise LayerScopeError("a TorchScript archive cannot be moved to the meta device, and LayerScope does "
                              "not run its weights to inspect it")
    raise LayerScopeError(f"{fmt} files are not rebuilt as modules here")


def trusted_module(path: Path) -> Any:
    """A full pickled module loaded onto the meta device (its classes' code runs: only when trusted)."""
    import torch

    try:
        module = torch.load(path, map_location="meta", weights_only=False)
    except Exception as exc:  # the file's own code: any failure is one sentence
        raise LayerScopeError(f"loading the module failed ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(module, torch.nn.Module):
        raise LayerScopeError(f"the file holds a {type(module).__name__}, not a module")
    return module


def _zoo_input(summary: ModelSummary) -> ShapeInput | None:
    from analyzers.samples import find_sample_model

    entry = find_sample_model(Path(summary.source.path))
    if entry is None:
        return None
    spec = entry.input
    kind = {"text": "tokens", "qa": "tokens", "image": "image"}.get(spec.kind, "tensor")
    dtype = "int64" if spec.dtype.startswith("int") and summary.source.framework == "torch" else spec.dtype
    return ShapeInput((1, *spec.shape), dtype, kind, spec.layout or "", "the sample manifest")


def _torch_default_input(summary: ModelSummary, module: Any, call: str) -> ShapeInput | None:
    zoo = _zoo_input(summary)
    if zoo is not None:
        return zoo
    if call == "hf":
        config = module.config
        name = getattr(module, "main_input_name", "input_ids")
        if name == "pixel_values":
            size = getattr(config, "image_size", DEFAULT_IMAGE)
            size = size if isinstance(size, int) else DEFAULT_IMAGE
            return ShapeInput((1, int(getattr(config, "num_channels", 3) or 3), size, size), "float32", "image",
                              "NCHW", "config.json")
        if name == "input_ids":
            context = getattr(config, "max_position_embeddings", None)
            tokens = min(DEFAULT_TOKENS, context) if isinstance(context, int) and context > 0 else DEFAULT_TOKENS
            return ShapeInput((1, tokens), "int64", "tokens", "", "config.json")
        return None
    for _, m in module.named_modules():
        kind = type(m).__name__
        if kind == "Conv2d":
            return ShapeInput((1, int(m.in_channels), DEFAULT_IMAGE, DEFAULT_IMAGE), "float32", "image", "NCHW",
                              "the first layer (Conv2d)")
        if kind == "Embedding":
            return ShapeInput((1, DEFAULT_TOKENS), "int64", "tokens", "", "the first layer (Embedding)")
        if kind == "Linear":
            return ShapeInput((1, int(m.in_features)), "float32", "tensor", "", "the first layer (Linear)")
        if kind == "Conv1d":
            return ShapeInput((1, int(m.in_channels), DEFAULT_TOKENS), "float32", "tensor", "",
                              "the first layer (Conv1d)")
    return None


def _first_shape(value: Any) -> Shape | None:
    """The shape of the first tensor in a module's output (a tensor, a tuple, a ModelOutput ...)."""
    import torch

    stack = [value]
    seen = 0
    while stack and seen < 64:
        seen += 1
        item = stack.pop(0)
        if isinstance(item, torch.Tensor):
            return tuple(int(d) for d in item.shape)
        if isinstance(item, Mapping):
            stack[:0] = [v for v in item.values() if v is not None]
        elif isinstance(item, list | tuple):
            stack[:0] = list(item)
    return None


def _norm_formulas() -> dict[Any, Any]:
    """FlopCounterMode formulas for the normalisation ops (the constants of analyzers.summary.flops)."""
    import math

    import torch

    aten = torch.ops.aten

    def per_element(shape: Any) -> int:
        return math.prod(shape) if shape is not None else 0

    def layer_norm(input_shape: Any, _normalized: Any, weight: Any = None, bias: Any = None, *args: Any,
                   **kwargs: Any) -> int:
        return (NORM_STAT_FLOPS + (AFFINE_FLOPS if weight is not None or bias is not None else 0)) \
            * per_element(input_shape)

    def group_norm(input_shape: Any, weight: Any = None, bias: Any = None, *args: Any, **kwargs: Any) -> int:
        return (NORM_STAT_FLOPS + (AFFINE_FLOPS if weight is not None or bias is not None else 0)) \
            * per_element(input_shape)

    def batch_norm(input_shape: Any, *args: Any, **kwargs: Any) -> int:
        return BATCHNORM_FLOPS * per_element(input_shape)

    formulas: dict[Any, Any] = {}
    for name, fn in (("native_layer_norm", layer_norm), ("native_group_norm", group_norm),
                     ("_native_batch_norm_legit_no_training", batch_norm), ("native_batch_norm", batch_norm),
                     ("_native_batch_norm_legit", batch_norm)):
        op = getattr(aten, name, None)
        if op is not None:
            formulas[op] = fn
    return formulas


@contextlib.contextmanager
def _meta_friendly() -> Iterator[None]:
    """transformers skips its data-dependent shortcuts (a packed-sequence check calling .item()) while tracing:
    meta tensors count as tracing while inside; the multi-head attention fast path (uncounted) is off."""
    import torch

    restore: list[tuple[Any, str, Any]] = []
    try:
        from transformers import masking_utils

        original = masking_utils.is_tracing

        def is_tracing(tensor: Any = None) -> bool:
            return bool(original(tensor)) or (isinstance(tensor, torch.Tensor) and tensor.is_meta)

        restore.append((masking_utils, "is_tracing", original))
        masking_utils.is_tracing = is_tracing
    except (ImportError, AttributeError):
        pass
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for owner, name, value in restore:
            setattr(owner, name, value)


def _hf_kwargs(module: Any, x: Any, inp: ShapeInput) -> dict[str, Any]:
    import torch

    name = getattr(module, "main_input_name", "input_ids")
    kwargs: dict[str, Any] = {name: x}
    params = inspect.signature(module.forward).parameters
    if getattr(module.config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        length = inp.shape[1] if inp.kind == "tokens" and len(inp.shape) == 2 else 1
        kwargs["decoder_input_ids"] = torch.zeros((inp.batch, length), dtype=torch.long, device="meta")
    if "use_cache" in params:
        kwargs["use_cache"] = False
    return kwargs


REPEAT_MIN = 4  # a ModuleList of at least this many structurally identical blocks is run with two of them


def _signature(block: Any) -> tuple:
    """What makes two blocks interchangeable for shapes and FLOPs: classes, tensor shapes and dtypes, and
    hyper-parameters of every submodule (a layer's own index aside)."""
    from analyzers.loaders.torch_modules import module_attributes

    def attrs(m: Any) -> tuple:
        return tuple(sorted((k, v) for k, v in module_attributes(m).items()
                            if "idx" not in k and "index" not in k and k not in ("layer_id", "layer_number")))

    subs = tuple((n, type(m).__name__, attrs(m)) for n, m in block.named_modules())
    tensors = tuple((n, tuple(t.shape), str(t.dtype)) for n, t in (*block.named_parameters(), *block.named_buffers()))
    return subs, tensors


def repeated_blocks(module: Any) -> list[tuple[str, Any]]:
    """(path, ModuleList) of the outermost lists of REPEAT_MIN or more structurally identical blocks."""
    import torch

    found: list[tuple[str, Any]] = []
    for path, m in module.named_modules():
        if not isinstance(m, torch.nn.ModuleList) or len(m) < REPEAT_MIN:
            continue
        if any(path.startswith(p + ".") for p, _ in found):
            continue
        blocks = list(m)
        first = _signature(blocks[0])
        if all(type(b) is type(blocks[0]) for b in blocks) and all(_signature(b) == first for b in blocks[1:]):
            found.append((path, m))
    return found


def _one_pass(module: Any, inp: ShapeInput, call: str, token: CancelToken | None, names: dict[int, str]
              ) -> tuple[dict[str, Shape], dict[str, Shape], dict[str, int], set[str]]:
    """One hooked forward pass under FlopCounterMode: (output shapes, input shapes, FLOPs by path, paths run)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dtype = getattr(torch, inp.dtype, torch.float32)
    x = torch.zeros(inp.shape, dtype=dtype, device="meta")
    shapes: dict[str, Shape] = {}
    inputs: dict[str, Shape] = {}
    ran: set[str] = set()

    def record(mod: Any, args: Any, out: Any) -> None:
        path = names.get(id(mod))
        if path is None or path in ran:
            return
        ran.add(path)
        shape = _first_shape(out)
        if shape is not None:
            shapes[path] = shape
        given = _first_shape(args)
        if given is not None:
            inputs[path] = given

    def check(*_: Any) -> None:
        if token is not None:
            token.raise_if_cancelled()

    handles = []
    try:
        for m in module.modules():
            handles.append(m.register_forward_hook(record))
        handles.append(module.register_forward_pre_hook(check))
        counter = FlopCounterMode(display=False, depth=None, custom_mapping=_norm_formulas())
        was_training = module.training
        module.eval()
        try:
            with _meta_friendly(), counter, torch.no_grad():
                if call == "hf":
                    module(**_hf_kwargs(module, x, inp))
                else:
                    module(x)
        finally:
            module.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    root_name = type(module).__name__
    flops: dict[str, int] = {}
    for key, by_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        path = "" if key == root_name else key[len(root_name) + 1:] if key.startswith(root_name + ".") else None
        if path is not None:
            flops[path] = int(sum(by_op.values()))
    for path in ran:  # modules that ran without a counted operation did 0 FLOPs, not "unknown"
        flops.setdefault(path, 0)
    flops.setdefault("", int(counter.get_total_flops()))
    return shapes, inputs, flops, ran


def _extend(result: tuple, lists: list[tuple[str, Any]], full_length: dict[str, int]) -> bool:
    """Blocks 2.. of each shortened list take block 1's shapes and FLOPs, and every module above the list adds
    them; False (nothing changed) unless both blocks ran, keep their input's shape and agree on everything."""
    shapes, inputs, flops, ran = result
    for path, _ in lists:
        a, b = f"{path}.0", f"{path}.1"
        if a not in ran or b not in ran or shapes.get(a) is None:
            return False
        if not (inputs.get(a) == shapes.get(a) == inputs.get(b) == shapes.get(b)):
            return False
        for p in [q for q in ran if q == b or q.startswith(b + ".")]:
            twin = a + p[len(b):]
            if shapes.get(twin) != shapes.get(p) or flops.get(twin) != flops.get(p):
                return False
    for path, _ in lists:
        b = f"{path}.1"
        block = [q for q in ran if q == b or q.startswith(b + ".")]
        for i in range(2, full_length[path]):
            for p in block:
                q = f"{path}.{i}" + p[len(b):]
                ran.add(q)
                flops[q] = flops[p]
                if p in shapes:
                    shapes[q] = shapes[p]
                if p in inputs:
                    inputs[q] = inputs[p]
        extra = (full_length[path] - 2) * flops[b]
        for ancestor in [p for p in list(flops) if not p or path == p or path.startswith(p + ".")]:
            flops[ancestor] += extra
    return True


def run_on_meta(module: Any, inp: ShapeInput, call: str = "plain", token: CancelToken | None = None,
                shortcut: bool = True) -> tuple[dict[str, Shape], dict[str, int]]:
    """One forward pass of `module` (on the meta device) for `inp`: each module's output shape (first call)
    and inclusive FLOPs, by module path ("" for the whole model). Every hook is removed afterwards.

    With `shortcut`, a ModuleList of REPEAT_MIN or more structurally identical blocks (a transformer's
    layers) runs with its first two blocks only: when both keep their input's shape and agree on every
    shape and FLOPs figure, the others are the same and are filled in (80 Llama-70B layers cost 2); any
    doubt, and the whole model runs."""
    from collections import OrderedDict

    names = {id(m): n for n, m in module.named_modules()}
    lists = repeated_blocks(module) if shortcut else []
    result = None
    if lists:
        full = {path: lst._modules for path, lst in lists}
        try:
            for path, lst in lists:
                lst._modules = OrderedDict(list(full[path].items())[:2])
            try:
                result = _one_pass(module, inp, call, token, names)
            except Exception:  # a forward that needs all its layers (it counts them): run them all
                result = None
        finally:
            for path, lst in lists:
                lst._modules = full[path]
        if result is not None and not _extend(result, lists, {p: len(m) for p, m in full.items()}):
            result = None
    if result is None:
        result = _one_pass(module, inp, call, token, names)
    shapes, _, flops, _ = result
    # Containers that are never called themselves (ModuleList, ModuleDict) hold what their children did.
    for path in sorted(names.values(), key=lambda p: -p.count(".") if p else 1):
        if path in flops or not path:
            continue
        below = [v for p, v in flops.items() if p.startswith(path + ".") and "." not in p[len(path) + 1:]]
        if below:
            flops[path] = sum(below)
    return shapes, flops


def _torch(summary: ModelSummary, requested: tuple[int, ...] | None, token: CancelToken | None,
           trust: bool) -> Steps[ShapeReport]:
    given = ShapeInput(requested, source="your input shape") if requested else None
    yield Progress(0, 2, "Building the module on the meta device")
    try:
        module, call = _torch_module(summary, trust)
    except LayerScopeError as exc:
        return unknown(given, f"Output shapes and FLOPs are unknown: {exc}.")
    except Exception as exc:  # the architecture's own code, transformers on an odd config
        return unknown(given, f"Output shapes and FLOPs are unknown: building the module failed "
                              f"({type(exc).__name__}: {printable(first_line(exc), 200)}).")
    default = _torch_default_input(summary, module, call)
    if default is not None and requested and len(requested) != len(default.shape) and \
            default.source in ("the sample manifest", "config.json"):
        raise LayerScopeError(f"{Path(summary.source.path).name} takes a rank-{len(default.shape)} input (batch "
                              f"first, like {'x'.join(map(str, default.shape))}), not {'x'.join(map(str, requested))}.")
    inp = default.with_shape(requested) if default is not None and requested else given or default
    if inp is None:
        return unknown(None, "Output shapes and FLOPs are unknown: LayerScope cannot tell what this module takes; "
                             "give an input shape (e.g. --input-shape 1x3x224x224).")
    yield Progress(1, 2, f"One forward pass on the meta device for input {inp.describe()}")
    try:
        shapes, flops = run_on_meta(module, inp, call, token)
    except LayerScopeError:
        raise
    except Exception as exc:  # a shape the module does not take, or an op with no meta kernel
        return unknown(inp, f"Output shapes and FLOPs are unknown: the meta-device forward pass for input "
                            f"{inp.describe()} failed ({type(exc).__name__}: {printable(first_line(exc), 200)}).",
                       META_METHOD)
    in_tree = {node.path for node, _ in summary.walk()}
    notes = []
    if any(p not in in_tree for p in shapes):
        notes.append("Some modules of the rebuilt architecture are not in the tree; their shapes are left out.")
    yield Progress(2, 2, "Done")
    return ShapeReport(inp, {p: s for p, s in shapes.items() if p in in_tree},
                       {p: f for p, f in flops.items() if p in in_tree}, META_METHOD, "",
                       "", tuple(notes))


# --- Keras ---------------------------------------------------------------------------------------------


def _keras_input(summary: ModelSummary) -> ShapeInput | None:
    inputs = summary.metadata.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], Mapping):
        return None
    shape = inputs[0].get("shape")
    if not isinstance(shape, list) or not all(d is None or isinstance(d, int) for d in shape[1:]) or \
            any(d is None for d in shape[1:]):
        return None
    dtype = str(inputs[0].get("dtype") or "float32")
    kind = "tokens" if dtype.startswith("int") and len(shape) == 2 else "image" if len(shape) == 4 else "tensor"
    return ShapeInput((1, *shape[1:]), dtype, kind, "NHWC" if kind == "image" else "", "the saved model")


def _keras_config(path: Path) -> dict[str, Any]:
    from analyzers.loaders.h5_weights import model_config_of, open_hdf5
    from analyzers.loaders.keras_config import parse_json_object
    from analyzers.loaders.keras_loader import ZIP_CONFIG
    from analyzers.loaders.safe_files import METADATA_LIMIT, SafeZip

    with path.open("rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    if is_zip:
        with SafeZip(path) as archive:
            return parse_json_object(path, archive.read(ZIP_CONFIG, METADATA_LIMIT), "config.json")
    f = open_hdf5(path)
    try:
        config = model_config_of(f, path)
    finally:
        f.close()
    if config is None:
        raise LayerScopeError("the file holds weights only")
    return config


def _keras(summary: ModelSummary, requested: tuple[int, ...] | None) -> ShapeReport:
    default = _keras_input(summary)
    method = "the saved Keras config; FLOPs from each layer's hyper-parameters"
    if requested is None:
        if default is None:
            saved = {n.path: n.output_shape for n, _ in summary.walk() if n.output_shape is not None}
            return ShapeReport(None, saved, {}, method, "",
                               "FLOPs are unknown: the model's input size is not fully known; give one.")
        inp = default
        saved = {n.path: n.output_shape for n, _ in summary.walk() if n.output_shape is not None}
    else:
        if default is not None and len(requested) != len(default.shape):
            raise LayerScopeError(f"{Path(summary.source.path).name} takes a rank-{len(default.shape)} input "
                                  f"(batch first, like {'x'.join(map(str, default.shape))}), not "
                                  f"{'x'.join(map(str, requested))}.")
        inp = default.with_shape(requested) if default is not None else ShapeInput(requested, source="your input shape")
        from analyzers.loaders.keras_config import PathNamer, config_paths, parse_layers
        from analyzers.loaders.keras_shapes import output_shapes

        try:
            root = parse_layers(_keras_config(Path(summary.source.path)))
        except (OSError, LayerScopeError) as exc:
            return unknown(inp, f"Output shapes are unknown: the config could not be read again ({exc}).", method)
        paths = config_paths(root, PathNamer())
        saved = {paths[i]: s for i, s in output_shapes(root, (None, *requested[1:])).items() if i in paths}
    shapes = {p: fill_batch(s, inp.batch) for p, s in saved.items()}
    if requested is not None:
        _check_dense_inputs(summary, shapes, inp)
    flops, unknown_types = keras_flops(summary.root, shapes)
    reason = ""
    if unknown_types:
        listed = ", ".join(unknown_types[:6]) + (" …" if len(unknown_types) > 6 else "")
        reason = (f"FLOPs are not counted for layers of type {listed}; the model's total is unknown, "
                  "the other layers' FLOPs are shown.")
    return ShapeReport(inp, {p: s for p, s in shapes.items() if s is not None}, flops, method,
                       "" if shapes else "Output shapes are unknown: the config does not give them.", reason)


# --- ONNX ----------------------------------------------------------------------------------------------


def _onnx(summary: ModelSummary, requested: tuple[int, ...] | None) -> ShapeReport:
    import onnx
    from onnx import shape_inference

    from analyzers.loaders.onnx_loader import _GraphTree, _value_shapes
    from analyzers.summary.flops import onnx_node_flops

    path = Path(summary.source.path)
    method = "onnx.shape_inference; FLOPs of MatMul, Gemm, Conv and ConvTranspose"
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]
    inp: ShapeInput | None = None
    if inputs:
        dims = inputs[0].type.tensor_type.shape.dim
        declared = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if requested is not None:
            if len(requested) != len(declared):
                raise LayerScopeError(f"{path.name} takes a rank-{len(declared)} input "
                                      f"({', '.join('?' if d is None else str(d) for d in declared)}), "
                                      f"not {'x'.join(map(str, requested))}.")
            shape = requested
        else:
            shape = tuple(1 if d is None else d for d in declared)  # a free (batch) dimension becomes 1
        for d, size in zip(dims, shape):
            d.Clear()
            d.dim_value = int(size)
        elem = inputs[0].type.tensor_type.elem_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "float32"
        kind = "image" if len(shape) == 4 else "tokens" if dtype.startswith("int") and len(shape) == 2 else "tensor"
        inp = ShapeInput(tuple(int(s) for s in shape), dtype, kind, "NCHW" if kind == "image" else "",
                         "your input shape" if requested else "the graph's input (free dimensions as 1)")
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx's checker on an odd graph
        return unknown(inp, f"Output shapes are unknown: onnx.shape_inference failed ({first_line(exc)}).", method)
    tree = _GraphTree(path)
    tree.walk(inferred.graph)
    value_shapes = _value_shapes(inferred.graph)
    for init in inferred.graph.initializer:
        value_shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
    own: dict[str, int] = {}
    unknown_ops: dict[str, None] = {}
    unknown_paths: set[str] = set()
    for node, op_path in tree.op_paths:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.type == onnx.AttributeProto.INT}
        ins = [value_shapes.get(n) for n in node.input]
        out = value_shapes.get(node.output[0]) if node.output else None
        value = onnx_node_flops(node.op_type, ins, out, attrs)
        if value is None:
            unknown_ops[node.op_type] = None
            unknown_paths.add(op_path)
        else:
            own[op_path] = value
    inclusive = _inclusive(summary, own, unknown_paths)
    shapes = dict(tree.output_shapes)
    reason = "" if not unknown_ops else (f"FLOPs are unknown for {', '.join(list(unknown_ops)[:5])} nodes whose shapes "
                                  "shape inference could not find; the model's total is unknown.")
    return ShapeReport(inp, shapes, inclusive, method, "" if shapes else "Output shapes are unknown: shape "
                       "inference found none.", reason)


def _inclusive(summary: ModelSummary, own: Mapping[str, int], unknown_paths: set[str]) -> dict[str, int]:
    """Each node's FLOPs with everything below it; left out where some node below is not counted."""
    inclusive: dict[str, int] = {}
    blocked: set[str] = set()
    order = [n for n, _ in summary.walk()]
    for node in reversed(order):
        if node.path in unknown_paths or any(c.path in blocked for c in node.children):
            blocked.add(node.path)
            continue
        inclusive[node.path] = own.get(node.path, 0) + sum(inclusive[c.path] for c in node.children)
    return inclusive


def _check_dense_inputs(summary: ModelSummary, shapes: Mapping[str, Shape], inp: ShapeInput) -> None:
    """Another input size must still fit the weights: in a Sequential model, each Dense layer's kernel rows
    must equal the features the layer before it hands on (a flattened image of another size does not)."""
    for node, _ in summary.walk():
        if node.type != "Sequential":
            continue
        previous: Shape | None = None
        for child in node.children:
            kernel = next((t.shape for t in child.tensors if t.name.endswith("kernel")), None)
            if child.type == "Dense" and kernel and previous and previous[-1] is not None \
                    and previous[-1] != kernel[0]:
                raise LayerScopeError(f"With input {inp.describe()}, layer {child.path} would get "
                                      f"{previous[-1]:,} features but its weights take {kernel[0]:,}; choose an "
                                      "input size the model was built for.")
            previous = shapes.get(child.path, previous)
