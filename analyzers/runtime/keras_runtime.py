"""Keras live models (.keras / .h5): inference, and the attribution methods with tf.GradientTape.

Methods follow the Captum definitions so maps from both frameworks mean the same: vanilla gradients,
Integrated Gradients (same path points as Captum, with the completeness delta), GradientShap,
Occlusion, Grad-CAM and SmoothGrad. A layer's output is reached by "tapping" its call for the
duration of one pass (Grad-CAM reads a convolution's activations; text methods replace the
embedding's output with points along the IG path); every tap is undone in `finally`.
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.errors import CorruptFile, LayerScopeError, TrustRequired, sentence
from analyzers.explain.attribution import AttributionRequest, RawAttribution
from analyzers.explain.inputs import InputHint, ModelInput, qa_encoder, vocab_encoder
from analyzers.loaders import LoadOptions
from analyzers.runtime.devices import resolve_tf_device
from analyzers.runtime.live import LayerRef, LiveModel
from analyzers.runtime.rss import RssPeak
from analyzers.samples import find_sample_model as zoo_entry
from analyzers.tasks import CancelToken, Progress, Steps


def _tf() -> Any:
    from analyzers.runtime.tf_import import tensorflow

    return tensorflow()


@contextlib.contextmanager
def _swapped_call(layer: Any, call: Callable[..., Any]) -> Iterator[None]:
    """`layer.call` is `call` while inside; the layer's own method (or its class's) is restored after."""
    had_own = "call" in vars(layer)
    original = layer.call
    layer.call = call
    try:
        yield
    finally:
        if had_own:
            layer.call = original
        else:
            del layer.call


def tapped(layer: Any, replace: Callable[[Any], Any]) -> contextlib.AbstractContextManager[None]:
    """Route `layer`'s output through `replace(output)` while inside; the layer is restored afterwards."""
    original = layer.call
    return _swapped_call(layer, lambda *args, **kwargs: replace(original(*args, **kwargs)))


def tapped_input(layer: Any) -> contextlib.AbstractContextManager[None]:
    """Make `layer` return its input unchanged while inside (bypasses a final Softmax/Activation layer)."""
    return _swapped_call(layer, lambda inputs, *args, **kwargs: inputs)


class KerasLiveModel(LiveModel):
    """A Keras model with one input, run eagerly on the TensorFlow device it was given."""

    framework = "keras"

    def __init__(self, model: Any, path: Path, device: str, **kwargs: Any) -> None:
        super().__init__(path, "keras", device, **kwargs)
        self.model = model
        self.reinitialised: list[str] = []

    # --- calling ----------------------------------------------------------------------------

    def _scores(self, x: Any) -> Any:
        """(batch, outputs) scores of a forward pass inside the current tape, if any."""
        tf = _tf()
        out = self.model(x, training=False)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        if isinstance(out, list | tuple):
            out = out[0]
        return tf.reshape(out, (tf.shape(out)[0], -1))

    def outputs(self, inp: ModelInput) -> dict[str, np.ndarray]:
        """The model's output as numpy."""
        tf = _tf()
        with tf.device(self.device):
            out = self.model(np.asarray(inp.array), training=False)
        if isinstance(out, dict):
            return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
        if isinstance(out, list | tuple):
            return {f"output_{i}" if i else "logits": np.asarray(v, dtype=np.float32) for i, v in enumerate(out)}
        return {"logits": np.asarray(out, dtype=np.float32)}

    def timed_forward(self, inp: ModelInput) -> Callable[[], None]:
        """One eager forward pass; reading the result back waits for the device."""
        tf = _tf()
        x = tf.convert_to_tensor(np.asarray(inp.array))

        def run_once() -> None:
            with tf.device(self.device):
                out = self.model(x, training=False)
            np.asarray(out[0] if isinstance(out, list | tuple) else out)

        return run_once

    def peak_memory(self) -> Any:
        """TensorFlow's GPU peak on a GPU, process RSS growth on the CPU."""
        return _KerasPeak(self.device)

    # --- structure ----------------------------------------------------------------------------

    def all_layers(self) -> list[Any]:
        """Every layer, nested models flattened, in model order."""
        flatten = getattr(self.model, "_flatten_layers", None)
        if callable(flatten):
            return [layer for layer in flatten(include_self=False, recursive=True)]
        return list(self.model.layers)

    def layers(self) -> list[LayerRef]:
        """Layer names and types for the pickers."""
        return [LayerRef(layer.name, type(layer).__name__, _layer_kind(type(layer).__name__))
                for layer in self.all_layers() if type(layer).__name__ != "InputLayer"]

    def vocab_size(self) -> int | None:
        """Rows of the token embedding (for random token ids)."""
        name = self.embedding_layer()
        return int(self.layer(name).input_dim) if name else None

    def layer(self, name: str) -> Any:
        """The layer called `name`."""
        for layer in self.all_layers():
            if layer.name == name:
                return layer
        raise LayerScopeError(f"The model has no layer '{name}'.")

    # --- gradients ----------------------------------------------------------------------------

    def gradients(self, x: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(d score[target] / d x, score[target]) for a batch of inputs."""
        tf = _tf()
        with tf.device(self.device):
            xt = tf.convert_to_tensor(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                s = self._scores(xt)[:, target]
            g = tape.gradient(s, xt)
        return np.asarray(g), np.asarray(s)

    def score_of(self, x: np.ndarray, target: int) -> np.ndarray:
        """score[target] for a batch of inputs, no gradient."""
        tf = _tf()
        with tf.device(self.device):
            return np.asarray(self._scores(tf.convert_to_tensor(x))[:, target])

    def embedding_gradients(self, ids: np.ndarray, points: np.ndarray, layer: Any, target: int
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Gradients at embedding-layer outputs `points` (k, L, D) for the token ids (1, L) tiled k times."""
        tf = _tf()
        with tf.device(self.device):
            injected = tf.convert_to_tensor(points)
            with tf.GradientTape() as tape:
                tape.watch(injected)
                with tapped(layer, lambda _out: injected):
                    s = self._scores(np.repeat(ids, points.shape[0], axis=0))[:, target]
            g = tape.gradient(s, injected)
        return np.asarray(g), np.asarray(s)

    def layer_gradients(self, x: np.ndarray, layer: Any, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(activations, gradients) of `layer`'s output for the score[target]."""
        tf = _tf()
        box: dict[str, Any] = {}
        with tf.device(self.device):
            with tf.GradientTape() as tape:

                def keep(out: Any) -> Any:
                    tape.watch(out)
                    box["act"] = out
                    return out

                with tapped(layer, keep):
                    s = self._scores(tf.convert_to_tensor(x))[:, target]
            if "act" not in box:
                raise LayerScopeError(f"The layer '{layer.name}' is not on the path to the output.")
            g = tape.gradient(s, box["act"])
        return np.asarray(box["act"]), np.asarray(g)

    def attribute(self, inp: ModelInput, request: AttributionRequest, token: CancelToken | None = None
                  ) -> Steps[RawAttribution]:
        """The method of `request` computed with tf.GradientTape on the logits (a final softmax/sigmoid is
        bypassed, as for PyTorch models whose outputs are logits); progress per chunk, cancel between chunks."""
        from analyzers.runtime import keras_methods

        with self.logits() as bypassed:
            raw = yield from keras_methods.run(self, inp, request, token)
        if bypassed:
            raw.parameters["output"] = f"logits (the final {bypassed} is bypassed)"
        return raw

    def attention(self, inp: ModelInput, token: CancelToken | None = None, top_k: int = 5) -> Steps[Any]:
        """Every keras.layers.MultiHeadAttention's per-head scores on `inp`: each layer's call is tapped to ask
        for return_attention_scores=True for one pass (its own call is restored after); the prediction of the
        same pass comes with them."""
        import time

        import keras

        from analyzers.explain.attention import AttentionCollector, image_size
        from analyzers.runtime.outputs import summarise_outputs

        started = time.perf_counter()
        found = [layer for layer in self.all_layers() if isinstance(layer, keras.layers.MultiHeadAttention)]
        if not found:
            raise LayerScopeError(sentence(self.path, "it has no attention LayerScope can read (no "
                                                      "keras.layers.MultiHeadAttention layer)"))
        collector = AttentionCollector()
        yield Progress(1, 3, "Running the model with attention capture")
        tf = _tf()
        with contextlib.ExitStack() as taps, tf.device(self.device):
            for layer in found:
                taps.enter_context(_swapped_call(layer, _scores_tap(layer, collector, token)))
            out = self.model(np.asarray(inp.array), training=False)
        if not len(collector):
            raise LayerScopeError(sentence(self.path, "none of its MultiHeadAttention layers ran on this input"))
        yield Progress(2, 3, "Preparing the maps")
        if isinstance(out, dict):
            named = {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
        elif isinstance(out, list | tuple):
            named = {"logits": np.asarray(out[0], dtype=np.float32)}
        else:
            named = {"logits": np.asarray(out, dtype=np.float32)}
        prediction = summarise_outputs(named, self.labels, top_k, inp, self.task)
        result = collector.finish("keras-mha", inp.tokens, kind=inp.kind, image=inp.display, image_hw=image_size(inp),
                                  prediction=prediction, device=self.device, framework="keras",
                                  seconds=time.perf_counter() - started)
        yield Progress(3, 3, "Attention captured")
        return result

    @contextlib.contextmanager
    def logits(self) -> Iterator[str]:
        """While inside, the model returns pre-activation scores when it ends in softmax or sigmoid.

        Saturated probabilities have vanishing gradients (a digit classified at 99.99% gives saliency maps
        of 1e-7); attribution methods read the logits instead. Yields the bypassed activation's name ("").
        """
        import keras

        layers = list(getattr(self.model, "layers", []) or [])
        last = layers[-1] if layers else None
        act = getattr(last, "activation", None)
        name = getattr(act, "__name__", "")
        if last is not None and name in ("softmax", "sigmoid") and type(last).__name__ != "Activation":
            last.activation = keras.activations.linear
            try:
                yield name
            finally:
                last.activation = act
            return
        if last is not None and (type(last).__name__ == "Softmax" or name in ("softmax", "sigmoid")):
            with tapped_input(last):
                yield name or "softmax"
            return
        yield ""

    def randomized(self, top_layers: int = 1, seed: int = 0) -> KerasLiveModel:
        """A clone with original weights except the last `top_layers` weighted layers (freshly initialised)."""
        import keras

        keras.utils.set_random_seed(seed)
        clone = keras.models.clone_model(self.model)
        clone.build(self.model.inputs[0].shape if getattr(self.model, "inputs", None) else None)
        originals = [layer for layer in _flat(self.model) if layer.weights]
        copies = [layer for layer in _flat(clone) if layer.weights]
        if len(originals) != len(copies):
            raise LayerScopeError("This Keras model could not be cloned layer by layer for the randomisation check.")
        keep = len(originals) - max(1, top_layers)
        for src, dst in zip(originals[:keep], copies[:keep]):
            dst.set_weights(src.get_weights())
        twin = KerasLiveModel(clone, self.path, self.device, hint=self.hint, labels=self.labels, task=self.task,
                              notes=list(self.notes), sample=self.sample, encoder=self.encoder)
        twin.reinitialised = [layer.name for layer in originals[keep:]]
        return twin

    def close(self) -> None:
        """Drop the model and clear Keras' global state."""
        import keras

        self.model = None
        keras.backend.clear_session()


def _scores_tap(layer: Any, collector: Any, token: CancelToken | None) -> Callable[..., Any]:
    """`layer.call` asking for its attention scores and handing them, with the key padding, to `collector`."""
    original = layer.call

    def call(*args: Any, **kwargs: Any) -> Any:
        if token is not None:
            token.raise_if_cancelled()
        wanted = bool(kwargs.pop("return_attention_scores", False))
        output, scores = original(*args, return_attention_scores=True, **kwargs)
        query = args[0] if args else kwargs.get("query")
        value = args[1] if len(args) > 1 else kwargs.get("value")
        key = args[2] if len(args) > 2 else kwargs.get("key")
        mask = kwargs.get("value_mask") if kwargs.get("key_mask") is None else kwargs.get("key_mask")
        valid = np.asarray(mask)[0].astype(bool) if mask is not None else None
        query_mask = kwargs.get("query_mask")
        query_valid = np.asarray(query_mask)[0].astype(bool) if query_mask is not None else None
        same = query is value and (key is None or key is value)
        causal = True if kwargs.get("use_causal_mask") else None
        collector.add(layer.name, np.asarray(scores)[0], "self" if same else "cross", "", valid, query_valid, causal)
        return (output, scores) if wanted else output

    return call


def _flat(model: Any) -> list[Any]:
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if callable(flatten) else list(model.layers)


def _layer_kind(type_name: str) -> str:
    if type_name.startswith(("Conv", "DepthwiseConv", "SeparableConv")):
        return "conv"
    if type_name == "Embedding":
        return "embedding"
    if type_name == "Dense":
        return "linear"
    return "other"


class _KerasPeak:
    """Peak memory of the work inside: TensorFlow's GPU peak, or RSS growth on the CPU."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.gpu = device.upper().startswith("GPU")
        self.kind = "TensorFlow GPU peak" if self.gpu else "process RSS growth"
        self.bytes = 0
        self._rss: RssPeak | None = None

    def __enter__(self) -> _KerasPeak:
        if self.gpu:
            _tf().config.experimental.reset_memory_stats(self.device)
        else:
            self._rss = RssPeak().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gpu:
            self.bytes = int(_tf().config.experimental.get_memory_info(self.device)["peak"])
        elif self._rss is not None:
            self._rss.__exit__(*exc)
            self.bytes = self._rss.growth


def open_keras(path: Path, options: LoadOptions, device: str = "auto") -> Steps[KerasLiveModel]:
    """Steps that load a .keras / .h5 model (safe mode unless trusted)."""
    yield Progress(0, 3, "Importing TensorFlow")
    _tf()
    import keras

    dev = resolve_tf_device(device)
    yield Progress(1, 3, f"Loading {path.name}")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise CorruptFile(sentence(path, "it is not a .keras archive (a zip file); the file is truncated or "
                                         "corrupted"))
    # The same checks as inspecting it (duplicate or case-colliding members, members that inflate past
    # their limits, impossible datasets) before Keras extracts anything; its notes travel with the model.
    from analyzers.loaders import open_model
    from analyzers.tasks import drive

    checked = drive(open_model(path, options))
    notes = [n for n in checked.notes if "outside its folder" in n]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.saving.load_model(str(path), compile=False, safe_mode=not options.trust)
        notes.extend(keras_warning_notes(caught))
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise TrustRequired(path, "a Lambda layer or custom code") from None
        if "No model config" in text or "model_config" in text:
            raise CorruptFile(sentence(path, "it holds weights only, without the model's configuration")) from None
        raise
    entry = zoo_entry(path)
    yield Progress(2, 3, "Reading the input signature")
    hint = _hint(model, entry)
    encoder = None
    if entry is not None and entry.input.kind == "text":
        encoder = vocab_encoder(entry.input)
    elif entry is not None and entry.input.kind == "qa":
        encoder = qa_encoder(entry.input)
    yield Progress(3, 3, "Ready")
    return KerasLiveModel(model, path, dev, hint=hint, labels=tuple(entry.labels) if entry else (),
                          task=entry.task if entry else "", sample=entry, encoder=encoder, notes=notes)


def keras_warning_notes(caught: list[Any]) -> list[str]:
    """Keras's loading warnings as notes beside the result (they went to stderr): weights that did not load
    mean layers run with fresh random weights, which the user must know."""
    notes: list[str] = []
    for w in caught:
        text = str(w.message)
        if "freshly-initialized weights" in text:
            notes.append("Keras could not load the weights of some nested layers; they run with freshly "
                         "initialised (random) weights, so the results do not reflect the saved model.")
        elif "archive extraction" in text:
            continue  # the same names are reported from the archive check above
        elif not issubclass(w.category, DeprecationWarning):
            notes.append(f"Keras: {text.strip().splitlines()[0][:200]}")
    return list(dict.fromkeys(notes))


def _hint(model: Any, entry: Any) -> InputHint:
    if entry is not None:
        spec = entry.input
        layout = spec.layout or ("tokens" if spec.kind in ("text", "qa") else "")
        return InputHint(spec.kind, tuple(spec.shape), spec.dtype, layout)
    inputs = getattr(model, "inputs", None) or []
    if not inputs:
        return InputHint()
    first = inputs[0]
    shape = tuple(None if d is None else int(d) for d in first.shape[1:])
    dtype = str(getattr(first, "dtype", "float32"))
    if "int" in dtype:
        return InputHint("text", shape, dtype, "tokens")
    if len(shape) == 3 and shape[-1] in (1, 3):
        return InputHint("image", shape, dtype, "NHWC")
    return InputHint("tensor", shape, dtype)
