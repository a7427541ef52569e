"""Pairs to compare: three copies of the Keras digits CNN, each a real way a model changes.

- fine-tuned: a few epochs on a subset of the training digits shifted 2 px right and down, with
  layer-wise learning rates (ULMFiT's discriminative fine-tuning: 10x more for the classifier than for
  the convolution), so the last layers change most;
- pruned: 50 % magnitude pruning of every kernel, layer by layer (biases kept);
- int8: Keras's own `model.quantize("int8")` (Dense kernels stored as int8 with a per-unit scale).

Each is judged on the held-out digits (the fine-tune also on the shifted ones) and saved next to the
original, so `layerscope compare digits_cnn.keras digits_cnn_<variant>.keras` shows real drift.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from analyzers.samples import zoo_module

common = zoo_module("common")
data = zoo_module("data")
zoo_keras = zoo_module("build_keras")

SHIFT = 2  # pixels right and down
FINETUNE_EPOCHS = 6
FINETUNE_SUBSET = 800
LAYER_RATES = {"conv": 2e-4, "dense": 5e-4, "classes": 5e-3}  # Adam learning rate per layer, last layers most
PRUNE_SPARSITY = 0.5
FILES = {"finetuned": common.MODELS / "digits_cnn_finetuned.keras",
         "pruned": common.MODELS / "digits_cnn_pruned.keras",
         "int8": common.MODELS / "digits_cnn_int8.keras"}


def shifted(images: np.ndarray, shift: int = SHIFT) -> np.ndarray:
    """Digits moved `shift` pixels right and down, the vacated border black."""
    out = np.zeros_like(images)
    out[:, shift:, shift:] = images[:, :-shift, :-shift]
    return out


def magnitude_prune(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """The tensor with its `sparsity` share of smallest-magnitude values set to zero."""
    flat = np.abs(weights).ravel()
    k = int(round(sparsity * flat.size))
    if k == 0:
        return weights.copy()
    cut = np.partition(flat, k - 1)[k - 1]
    pruned = weights.copy()
    pruned[np.abs(weights) <= cut] = 0
    return pruned


def _shifted_subset(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pick = np.random.default_rng(7).choice(len(x), FINETUNE_SUBSET, replace=False)
    return shifted(x[pick]), y[pick]


def finetune(keras: Any, original: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """A copy of `original` trained on (x, y) with one Adam optimiser per layer at LAYER_RATES."""
    import tensorflow as tf

    model = zoo_keras.digits_cnn()
    model.set_weights(original.get_weights())
    optimizers = {name: keras.optimizers.Adam(rate) for name, rate in LAYER_RATES.items()}
    groups = {name: [v for v in model.trainable_variables if v.path.split("/")[-2] == name] for name in LAYER_RATES}
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(7)
    for _ in range(FINETUNE_EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 32):
            batch = order[start:start + 32]
            with tf.GradientTape() as tape:
                loss = loss_fn(y[batch], model(x[batch], training=True))
            grads = dict(zip((id(v) for v in model.trainable_variables),
                             tape.gradient(loss, model.trainable_variables)))
            for name, optimizer in optimizers.items():
                optimizer.apply_gradients([(grads[id(v)], v) for v in groups[name]])
    return model


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


def _save_quantized(model: Any, path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")
    model.save(tmp)
    zoo_keras.reproducible_zip(tmp)
    os.replace(tmp, path)


def _entry(variant: str, title: str, acc: float, bar: float, size: int, params: int, notes: str,
           extras: dict) -> dict:
    return {
        "id": f"digits_cnn_{variant}_keras", "title": title, "seed_problem": 1,
        "file": common.rel(FILES[variant]), "framework": "keras", "task": "image classification",
        "labels": [str(i) for i in range(10)], "input": zoo_keras.IMAGE_INPUT,
        "samples": [common.rel(common.SAMPLES / "digits" / f"digit_{i}.png") for i in range(10)],
        "default_sample": common.rel(common.SAMPLES / "digits" / "digit_3.png"),
        "arch": None, "arch_kwargs": {}, "metric": "accuracy", "heldout": round(acc, 4), "bar": bar,
        "heldout_size": size, "params": params, "notes": notes,
        "extras": {"sample_labels": [str(i) for i in range(10)], "compare_with": "digits_cnn_keras",
                   "variant": variant, **extras},
    }


def build_digits_variants(threads: int = 2) -> list[dict]:
    """The fine-tuned, pruned and int8 copies of the bundled Keras digits CNN, with their manifest entries."""
    keras = zoo_keras.keras_module(threads)
    keras.utils.set_random_seed(7)
    if not zoo_keras.DIGITS_FILE.exists():
        zoo_keras.build_digits_keras(threads)
    split = data.digits_split()
    x_train = (split.x_train.astype("float32") / 255.0)[..., None]
    x_test = (split.x_test.astype("float32") / 255.0)[..., None]
    x_test_shifted = shifted(x_test)
    original = keras.saving.load_model(zoo_keras.DIGITS_FILE, compile=False)
    base_acc = _accuracy(original, x_test, split.y_test)
    base_shifted = _accuracy(original, x_test_shifted, split.y_test)
    entries = []

    # Fine-tuned: layer-wise learning rates on shifted digits.
    x_ft, y_ft = _shifted_subset(x_train, split.y_train)
    common.log(f"digits_cnn_finetuned_keras: {FINETUNE_EPOCHS} epochs on {FINETUNE_SUBSET} digits shifted {SHIFT} px")
    model = finetune(keras, original, x_ft, y_ft)
    acc_shifted = _accuracy(model, x_test_shifted, split.y_test)
    acc = _accuracy(model, x_test, split.y_test)
    moved = [float(np.linalg.norm(b - a) / np.linalg.norm(a))
             for a, b in zip(original.get_weights(), model.get_weights()) if a.ndim > 1]
    common.log(f"digits_cnn_finetuned_keras: shifted held-out {base_shifted:.4f} -> {acc_shifted:.4f}, "
               f"original held-out {base_acc:.4f} -> {acc:.4f}; kernels moved {', '.join(f'{m:.3f}' for m in moved)}")
    common.require(acc_shifted >= 0.85 and acc_shifted > base_shifted,
                   f"the fine-tune reached {acc_shifted:.3f} on shifted digits (before: {base_shifted:.3f})")
    common.require(moved == sorted(moved), f"the fine-tune did not move the last layers most ({moved})")
    zoo_keras.save_clean(model, zoo_keras.digits_cnn, FILES["finetuned"])
    entries.append(_entry("finetuned", "Digits CNN fine-tuned on shifted digits (Keras)", acc_shifted, 0.85,
                          len(split.y_test), int(model.count_params()),
                          f"The Keras digits CNN trained {FINETUNE_EPOCHS} more epochs on {FINETUNE_SUBSET} training "
                          f"digits shifted {SHIFT} px right and down, Adam with a learning rate per layer (conv "
                          f"{LAYER_RATES['conv']:g}, dense {LAYER_RATES['dense']:g}, classes {LAYER_RATES['classes']:g}); "
                          "held-out score on the shifted held-out digits.",
                          {"shift": SHIFT, "heldout_unshifted": round(acc, 4),
                           "original_on_shifted": round(base_shifted, 4), "layer_rates": LAYER_RATES}))

    # Pruned: half of every kernel's smallest weights set to zero.
    pruned = zoo_keras.digits_cnn()
    pruned.set_weights([magnitude_prune(w, PRUNE_SPARSITY) if w.ndim > 1 else w for w in original.get_weights()])
    acc = _accuracy(pruned, x_test, split.y_test)
    common.log(f"digits_cnn_pruned_keras: {PRUNE_SPARSITY:.0%} of each kernel pruned; held-out {acc:.4f}")
    common.require(acc >= 0.9, f"the pruned copy reached {acc:.3f} < 0.9")
    zoo_keras.save_clean(pruned, zoo_keras.digits_cnn, FILES["pruned"])
    entries.append(_entry("pruned", "Digits CNN, 50 % magnitude-pruned (Keras)", acc, 0.9, len(split.y_test),
                          int(pruned.count_params()),
                          "The Keras digits CNN with the smaller-magnitude half of every kernel set to zero, layer "
                          "by layer (biases kept), not retrained.", {"sparsity": PRUNE_SPARSITY}))

    # int8: Keras's own weight quantisation.
    quantized = keras.saving.load_model(zoo_keras.DIGITS_FILE, compile=False)
    with warnings.catch_warnings():  # "Layer Conv2D does not have a `quantize` method": only Dense is quantised
        warnings.simplefilter("ignore", UserWarning)
        quantized.quantize("int8")
    acc = _accuracy(quantized, x_test, split.y_test)
    common.log(f"digits_cnn_int8_keras: Dense kernels quantised to int8; held-out {acc:.4f}")
    common.require(acc >= 0.95, f"the int8 copy reached {acc:.3f} < 0.95")
    _save_quantized(quantized, FILES["int8"])
    entries.append(_entry("int8", "Digits CNN, int8 weight-quantised (Keras)", acc, 0.95, len(split.y_test),
                          int(quantized.count_params()),
                          "The Keras digits CNN after keras.Model.quantize('int8'): Dense kernels stored as int8 "
                          "with one float scale per output unit (value = int8 / scale), inputs quantised on the fly.",
                          {"quantization": "int8"}))
    return entries
