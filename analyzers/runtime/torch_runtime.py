"""PyTorch live models: full modules (trusted), TorchScript, Hugging Face folders, state_dict + --arch.

Attributions are Captum calls. Captum has no callback, so each call runs in a helper thread while the
step generator reports the forward passes a forward pre-hook counts; the same hook raises `Cancelled`
when the token is set. Every hook added during a call (ours and Captum's) is removed in `finally`.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from analyzers.errors import ArchitectureError, CorruptFile, LayerScopeError, UnsupportedFile, sentence
from analyzers.explain.attribution import AttributionRequest, RawAttribution
from analyzers.explain.inputs import (
    InputHint,
    ModelInput,
    TextEncoder,
    qa_encoder,
    vocab_encoder,
)
from analyzers.loaders import LoadOptions
from analyzers.runtime import sharded_safetensors_index
from analyzers.runtime.devices import resolve_torch_device
from analyzers.runtime.live import LayerRef, LiveModel
from analyzers.runtime.rss import RssPeak
from analyzers.samples import find_sample_model as zoo_entry
from analyzers.tasks import Cancelled, CancelToken, Progress, Steps

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")
CONV_TYPES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")


# ---------------------------------------------------------------------------------------------
# Hooks: snapshot, restore, and a Captum call in a thread that reports progress


def hook_snapshot(module: Any) -> dict[int, dict[str, set]]:
    """Keys of every hook dict of every submodule, to restore exactly this state later."""
    snap: dict[int, dict[str, set]] = {}
    for m in module.modules():
        snap[id(m)] = {name: set(getattr(m, name).keys()) for name in HOOK_DICTS
                       if isinstance(getattr(m, name, None), dict)}
    return snap


def restore_hooks(module: Any, snap: Mapping[int, Mapping[str, set]]) -> int:
    """Remove every hook registered since `snap` (on every submodule); returns how many were left over."""
    removed = 0
    for m in module.modules():
        before = snap.get(id(m), {})
        for name in HOOK_DICTS:
            hooks = getattr(m, name, None)
            if not isinstance(hooks, dict):
                continue
            for key in [k for k in hooks if k not in before.get(name, set())]:
                del hooks[key]
                removed += 1
    return removed


def hook_count(module: Any) -> int:
    """How many hooks sit on `module` and its submodules (tests assert 0 after a cancel or an error)."""
    return sum(len(getattr(m, name)) for m in module.modules() for name in HOOK_DICTS
               if isinstance(getattr(m, name, None), dict))


class CallGuard:
    """Counts forward passes and stops them on cancel: a forward pre-hook on the model (or a check in
    the forward function for TorchScript, which has no hooks)."""

    def __init__(self, module: Any, token: CancelToken | None) -> None:
        self.module = module
        self.token = token
        self.stop = threading.Event()
        self.count = 0
        self._handle = None
        self._snapshot: dict | None = None

    def check(self, *_: Any) -> None:
        """Called before every forward pass: counts it, raises Cancelled when asked to stop."""
        if self.stop.is_set() or (self.token is not None and self.token.cancelled):
            raise Cancelled()
        self.count += 1

    def __enter__(self) -> CallGuard:
        self._snapshot = hook_snapshot(self.module)
        if not isinstance(self.module, torch.jit.ScriptModule):
            self._handle = self.module.register_forward_pre_hook(self.check)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
        if self._snapshot is not None:
            restore_hooks(self.module, self._snapshot)

    @property
    def hooked(self) -> bool:
        """True when the pre-hook does the checking (False for TorchScript)."""
        return self._handle is not None


_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()
_IN_FLIGHT = [0]  # Captum calls submitted and not yet finished


def calls_in_flight() -> int:
    """How many Captum calls are still running on the helper thread (0 after every call, cancel or error)."""
    return _IN_FLIGHT[0]


def _executor() -> ThreadPoolExecutor:
    """One long-lived helper thread for Captum calls: per-thread caches (oneDNN kernels, OpenMP teams) stay warm
    between calls, which a fresh thread per call would pay for each time."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerscope-attribution")
        return _EXECUTOR


def threaded_call(call: Callable[[], Any], guard: CallGuard, expected: int, text: str) -> Steps[Any]:
    """Run `call` on the helper thread; yield Progress from the forward count until it ends.

    When the generator is closed (a cancel in `drive`), the guard's stop flag makes the next forward
    pass raise inside the call, and the call is waited for before the hooks are removed.
    """
    def tracked() -> Any:
        try:
            with warnings.catch_warnings():  # Captum announces its hooks as UserWarnings: not for the user
                warnings.filterwarnings("ignore", category=UserWarning, module=r"captum(\..*)?$")
                return call()
        finally:
            with _EXECUTOR_LOCK:
                _IN_FLIGHT[0] -= 1

    with _EXECUTOR_LOCK:
        _IN_FLIGHT[0] += 1
    future = _executor().submit(tracked)
    last = -1
    try:
        while not future.done():
            wait([future], timeout=0.05)
            if guard.count != last:
                last = guard.count
                yield Progress(min(last, expected), expected, f"{text}: {last} of ~{expected} forward passes")
    finally:
        if not future.done():
            guard.stop.set()
            wait([future])
    return future.result()


# ---------------------------------------------------------------------------------------------
# The live model


class TorchLiveModel(LiveModel):
    """A torch module on a device, called the way its format expects (positional, or HF keywords)."""

    framework = "torch"

    def __init__(self, module: Any, path: Path, fmt: str, device: str, *, input_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(path, fmt, device, **kwargs)
        self.module = module
        self.input_name = input_name  # HF: "input_ids" / "pixel_values"; None: positional call
        self.reinitialised: list[str] = []

    # --- calling ----------------------------------------------------------------------------

    def tensors(self, inp: ModelInput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The input and its extras as tensors on the model's device."""
        x = torch.as_tensor(np.ascontiguousarray(inp.array)).to(self.device)
        extras = {k: torch.as_tensor(np.ascontiguousarray(v)).to(self.device) for k, v in inp.extras.items()}
        return x, extras

    def call(self, x: torch.Tensor, extras: Mapping[str, torch.Tensor]) -> Any:
        """One forward pass in the model's own calling convention."""
        if self.input_name:
            return self.module(**{self.input_name: x}, **extras)
        return self.module(x)

    def named_outputs(self, out: Any) -> dict[str, torch.Tensor]:
        """The model output as named tensors: logits, or QA start/end logits."""
        if isinstance(out, torch.Tensor):
            return {"logits": out}
        start = getattr(out, "start_logits", None)
        if start is None and isinstance(out, Mapping):
            start = out.get("start_logits")
        if start is not None:
            end = out["end_logits"] if isinstance(out, Mapping) else out.end_logits
            return {"start_logits": start, "end_logits": end}
        logits = getattr(out, "logits", None)
        if isinstance(logits, torch.Tensor):
            if self.task == "causal-lm" and logits.ndim == 3:  # the next token: the last position's logits
                return {"logits": logits[:, -1, :]}
            return {"logits": logits}
        values = list(out.values()) if isinstance(out, Mapping) else list(out) if isinstance(out, list | tuple) else []
        for v in values:
            if isinstance(v, torch.Tensor):
                return {"logits": v}
        raise LayerScopeError(f"The model returned {type(out).__name__}, which holds no tensor LayerScope can read.")

    def score(self, out: Any, qa_output: str = "start") -> torch.Tensor:
        """The output attributions differentiate, flattened to (batch, outputs)."""
        named = self.named_outputs(out)
        t = named[f"{qa_output}_logits"] if "start_logits" in named else next(iter(named.values()))
        return t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(-1, 1)

    def forward_fn(self, names: list[str], guard: CallGuard | None = None, qa_output: str = "start"
                   ) -> Callable[..., torch.Tensor]:
        """The function Captum calls: (input, *extras in `names` order) -> (batch, outputs)."""

        def forward(x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
            if guard is not None and not guard.hooked:
                guard.check()
            return self.score(self.call(x, dict(zip(names, extra))), qa_output)

        return forward

    def outputs(self, inp: ModelInput) -> dict[str, np.ndarray]:
        """Named outputs of one forward pass, as float numpy arrays."""
        x, extras = self.tensors(inp)
        with torch.inference_mode():
            named = self.named_outputs(self.call(x, extras))
        return {k: v.detach().float().cpu().numpy() for k, v in named.items()}

    def timed_forward(self, inp: ModelInput) -> Callable[[], None]:
        """One forward pass, synchronised with the device."""
        x, extras = self.tensors(inp)
        sync = _synchronizer(self.device)

        def run_once() -> None:
            with torch.inference_mode():
                self.call(x, extras)
            sync()

        return run_once

    def peak_memory(self) -> Any:
        """CUDA allocator peak on CUDA, process RSS growth elsewhere."""
        return _TorchPeak(self.device)

    # --- structure ----------------------------------------------------------------------------

    def layers(self) -> list[LayerRef]:
        """Every named submodule in model order."""
        out = []
        for name, m in self.module.named_modules():
            if not name:
                continue
            type_name = getattr(m, "original_name", None) or type(m).__name__
            out.append(LayerRef(name, type_name, _layer_kind(m, type_name)))
        return out

    def embedding_layer(self) -> str | None:
        """HF models name their input embedding; otherwise the first nn.Embedding."""
        get = getattr(self.module, "get_input_embeddings", None)
        if callable(get):
            try:
                emb = get()
            except (RuntimeError, AttributeError):  # a HF model without an input embedding raises (a RuntimeError kind)
                emb = None
            for name, m in self.module.named_modules():
                if emb is not None and m is emb:
                    return name
        return super().embedding_layer()

    def vocab_size(self) -> int | None:
        """Rows of the token embedding (for random token ids)."""
        name = self.embedding_layer()
        return int(getattr(self.submodule(name), "num_embeddings", 0)) or None if name else None

    def submodule(self, path: str) -> Any:
        """The submodule at a dotted path."""
        modules = dict(self.module.named_modules())
        if path not in modules:
            raise LayerScopeError(f"The model has no layer '{path}'.")
        return modules[path]

    # --- attribution --------------------------------------------------------------------------

    def attribute(self, inp: ModelInput, request: AttributionRequest, token: CancelToken | None = None
                  ) -> Steps[RawAttribution]:
        """One Captum call for `request` (target resolved), with progress and cancel; no hook survives it."""
        from analyzers.runtime.captum_calls import build_call

        x, extras = self.tensors(inp)
        names = list(extras)
        extra_args = tuple(extras[n] for n in names) or None
        text = self.is_text(inp)
        if not text and x.is_floating_point():
            x = x.detach().clone().requires_grad_()
        guard = CallGuard(self.module, token)
        with guard:
            fwd = self.forward_fn(names, guard, request.qa_output)
            plan = build_call(self, fwd, x, extra_args, inp, request, text)
            if plan.layer_module is not None and isinstance(self.module, torch.jit.ScriptModule):
                raise LayerScopeError("This method hooks a layer, and TorchScript modules do not support hooks; "
                                      "open the model as a full module or a state_dict with --arch.")
            result = yield from threaded_call(plan.run, guard, plan.expected_forwards,
                                              f"{request.method} on {self.device}")
            f_input = f_baseline = None
            if plan.baseline_for_completeness is not None:
                f_input, f_baseline = self._path_ends(fwd, x, extra_args, plan, request.target, text)
            forwards = guard.count
        return plan.finish(result, f_input, f_baseline, forwards)

    def attention(self, inp: ModelInput, token: CancelToken | None = None, top_k: int = 5) -> Steps[Any]:
        """Every attention layer's weights on `inp` (analyzers/runtime/attention_taps.py); no hook survives it."""
        from analyzers.runtime.attention_taps import capture

        return (yield from capture(self, inp, token, top_k))

    def _path_ends(self, fwd: Callable[..., torch.Tensor], x: torch.Tensor, extra: tuple | None, plan: Any,
                   target: int, text: bool) -> tuple[float, float]:
        """F at both ends of the IG path. For text the path runs in embedding space: its start is the model
        with the embedding layer's output replaced by the baseline tokens' embeddings (everything else,
        such as a padding mask computed from the ids, stays the input's), as LayerIntegratedGradients does."""
        args = extra or ()
        with torch.no_grad():
            f_input = float(fwd(x, *args)[0, target])
            if not text:
                return f_input, float(fwd(plan.baseline_for_completeness, *args)[0, target])
            layer = plan.layer_module
            start = layer(plan.baseline_for_completeness)
            handle = layer.register_forward_hook(lambda _m, _i, _o: start)
            try:
                f_baseline = float(fwd(x, *args)[0, target])
            finally:
                handle.remove()
        return f_input, f_baseline

    def randomized(self, top_layers: int = 1, seed: int = 0) -> TorchLiveModel:
        """A deep copy with the last `top_layers` parameterised layers re-initialised (seeded)."""
        clone = copy.deepcopy(self.module)
        owners = [(n, m) for n, m in clone.named_modules() if any(True for _ in m.parameters(recurse=False))]
        chosen = owners[-max(1, top_layers):]
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _, m in chosen:
                reset = getattr(m, "reset_parameters", None)
                if callable(reset) and not isinstance(m, torch.jit.ScriptModule):
                    reset()
                else:
                    with torch.no_grad():
                        for p in m.parameters(recurse=False):
                            nn.init.normal_(p, std=0.05)
        twin = TorchLiveModel(clone, self.path, self.format, self.device, input_name=self.input_name,
                              hint=self.hint, labels=self.labels, task=self.task, notes=list(self.notes),
                              sample=self.sample, encoder=self.encoder)
        twin.reinitialised = [n for n, _ in chosen]
        return twin

    def close(self) -> None:
        """Drop the module and return cached CUDA memory."""
        self.module = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _layer_kind(m: Any, type_name: str) -> str:
    if isinstance(m, nn.modules.conv._ConvNd) or type_name in CONV_TYPES:
        return "conv"
    if isinstance(m, nn.Embedding) or type_name == "Embedding":
        return "embedding"
    if isinstance(m, nn.Linear) or type_name == "Linear":
        return "linear"
    return "other"


def _synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return lambda: torch.cuda.synchronize(index)
    if device == "mps":
        return torch.mps.synchronize
    return lambda: None


class _TorchPeak:
    """Peak memory of the work inside: CUDA allocator peak, or RSS growth (via psutil) elsewhere."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes = 0
        self.kind = "CUDA allocator peak" if device.startswith("cuda") else "process RSS growth"
        self._rss: RssPeak | None = None

    def __enter__(self) -> _TorchPeak:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss = RssPeak().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        elif self._rss is not None:
            self._rss.__exit__(*exc)
            self.bytes = self._rss.growth


# ---------------------------------------------------------------------------------------------
# Opening


def safetensors_state(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file, or of every shard a `*.safetensors.index.json` names.

    Each file's header is checked first, so a truncated or foreign file gets the same sentence as in
    `inspect`; a failure while reading the data names the file too."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from analyzers.loaders.safetensors_loader import header_tensors, read_header, read_index

    files = [path]
    if path.name.lower().endswith(".index.json"):
        files = [path.parent / shard for shard in dict.fromkeys(read_index(path).values())]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise UnsupportedFile(sentence(file, f"the shard named by {path.name} is missing"))
        header_tensors(file, *read_header(file))
        try:
            state.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CorruptFile(sentence(file, f"its tensors cannot be read ({str(exc).splitlines()[0][:120]}); "
                                             "the file is corrupted or truncated")) from None
    return state


def open_torch(path: Path, options: LoadOptions, device: str = "auto", fmt: str | None = None
               ) -> Steps[TorchLiveModel]:
    """Steps that load a PyTorch model of any runnable kind onto `device`; `fmt` is its registered format
    (hf, torchscript, safetensors, safetensors-index, pytorch), looked up when not given."""
    if fmt is None:
        from analyzers.runtime import runtime_and_format

        fmt = runtime_and_format(path)[1]
    yield Progress(0, 3, "Choosing the device")
    dev = resolve_torch_device(device)
    entry = zoo_entry(path)
    notes: list[str] = []
    yield Progress(1, 3, f"Loading {path.name}")
    input_name = None
    labels: tuple[str, ...] = tuple(entry.labels) if entry is not None else ()
    task = entry.task if entry is not None else ""
    encoder: TextEncoder | None = None
    hint: InputHint | None = None
    kind = fmt
    if kind == "safetensors-index":
        index = sharded_safetensors_index(path) if path.is_dir() else path
        module = _from_state(path, safetensors_state(index), options, entry, notes)
        fmt = "state_dict"
    elif kind == "hf":
        from analyzers.runtime.hf_runtime import open_hf

        module, input_name, task, hf_labels, hint, encoder = open_hf(path, entry, notes)
        labels = labels or hf_labels
        fmt = "hf"
    elif kind == "torchscript":
        from analyzers.loaders.torchscript_loader import check_archive

        findings, _ = check_archive(path)  # a cut storage record ran with NaN scores; an empty one crashed torch
        notes.extend(findings)
        module = torch.jit.load(str(path), map_location="cpu")
        fmt = "torchscript"
    elif kind == "safetensors":
        module = _from_state(path, safetensors_state(path), options, entry, notes)
        fmt = "state_dict"
    else:  # "pytorch": a state_dict, a training checkpoint holding one, or a full module
        from analyzers.loaders.pytorch_loader import flatten_tensors, load_checkpoint, split_checkpoint

        weights, _, _ = split_checkpoint(load_checkpoint(path, options.trust))
        if isinstance(weights, nn.Module):
            module, fmt = weights, "module"
        elif isinstance(weights, Mapping) and flatten_tensors(weights):
            module = _from_state(path, flatten_tensors(weights), options, entry, notes)
            fmt = "state_dict"
        else:
            raise UnsupportedFile(sentence(path, "it holds neither a module nor a state_dict LayerScope can run"))
    yield Progress(2, 3, f"Moving the model to {dev}")
    module = module.to(dev)
    module.eval()
    if entry is not None:
        spec = entry.input
        hint = InputHint(spec.kind, tuple(spec.shape), spec.dtype, spec.layout or ("tokens" if spec.kind in
                                                                                   ("text", "qa") else ""))
        if encoder is None and spec.kind == "text":
            encoder = vocab_encoder(spec)
        elif encoder is None and spec.kind == "qa":
            encoder = qa_encoder(spec)
    hint = hint or guess_hint(module)
    yield Progress(3, 3, "Ready")
    return TorchLiveModel(module, path, fmt, dev, input_name=input_name, hint=hint, labels=labels, task=task,
                          notes=notes, sample=entry, encoder=encoder)


def _from_state(path: Path, state: Mapping[str, Any], options: LoadOptions, entry: Any, notes: list[str]) -> Any:
    """Instantiate the architecture (--arch, or the zoo manifest's) on the CPU and load the weights."""
    from analyzers.loaders.arch import instantiate, match_names, parse_arch
    from analyzers.loaders.pytorch_loader import infos_from_state

    spec_text, kwargs, base = options.arch, dict(options.arch_kwargs or {}), path.parent
    if not spec_text and entry is not None and entry.arch:
        from analyzers.samples import REPO

        spec_text, kwargs, base = entry.arch, dict(entry.arch_kwargs), REPO
        notes.append(f"Architecture {entry.arch} from the sample manifest.")
    if not spec_text:
        raise ArchitectureError(sentence(path, "it is a state_dict (weights without code); pass --arch "
                                               "module:Class or file.py:Class (in the window: Attach architecture…) "
                                               "to run it"))
    spec = parse_arch(spec_text, kwargs, base=base)
    model = instantiate(spec, "cpu")
    module_state = model.state_dict()
    match = match_names({n: tuple(t.shape) for n, t in module_state.items()}, infos_from_state(state))
    if match.mismatched:
        raise ArchitectureError(sentence(path, f"{len(match.mismatched)} tensor(s) differ in shape from "
                                               f"{spec.class_name} (e.g. {', '.join(match.mismatched[:3])}); "
                                               "check --arch-kwargs"))
    if not match.renamed:
        raise ArchitectureError(sentence(path, f"none of its tensor names match {spec.class_name}; wrong --arch"))
    renamed = {match.renamed[k]: v for k, v in state.items() if k in match.renamed}
    model.load_state_dict(renamed, strict=False)
    notes.extend(match.describe())
    return model


def guess_hint(module: Any) -> InputHint:
    """What a bare module probably takes, from its first parameterised layer."""
    for _, m in module.named_modules():
        type_name = getattr(m, "original_name", None) or type(m).__name__
        if type_name in ("Conv2d",):
            return InputHint("image", (int(getattr(m, "in_channels", 0)) or None, None, None), "float32", "NCHW")
        if type_name in ("Conv1d",):
            return InputHint("tensor", (int(getattr(m, "in_channels", 0)) or None, None), "float32")
        if type_name == "Embedding":
            return InputHint("text", (None,), "int64", "tokens")
        if type_name == "Linear":
            return InputHint("tensor", None, "float32")
    return InputHint()
