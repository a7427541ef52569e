"""Model files of every format the window opens, built in tmp folders, with the framework's own numbers.

Each builder returns a `Fixture`: the path to open, the parameter count the framework itself reports
(`sum(p.numel())`, Keras `count_params()`, the initializers' sizes ...), and a few layer paths with their
own framework-computed totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Fixture:
    """A file to open and what its framework says about it."""

    path: Path
    params: int
    rows: dict[str, int] = field(default_factory=dict)  # layer path -> its subtree's parameter count
    needs_trust: bool = False


def _torch_numbers():
    from tests.torch_fixtures import TinyCNN, param_count

    model = TinyCNN()
    rows = {
        "head": sum(p.numel() for p in model.head.parameters()),
        "features.0": sum(p.numel() for p in model.features[0].parameters()),
        "features": sum(p.numel() for p in model.features.parameters()),
    }
    return model, param_count(model), rows


def safetensors_file(folder: Path) -> Fixture:
    """A state_dict saved with safetensors."""
    from safetensors.torch import save_file

    model, params, rows = _torch_numbers()
    path = folder / "cnn.safetensors"
    save_file(model.state_dict(), path)
    return Fixture(path, params, rows)


def state_dict_file(folder: Path) -> Fixture:
    """A state_dict saved with torch.save."""
    import torch

    model, params, rows = _torch_numbers()
    path = folder / "cnn_state.pt"
    torch.save(model.state_dict(), path)
    return Fixture(path, params, rows)


def full_module_file(folder: Path) -> Fixture:
    """A whole pickled nn.Module: opening it runs code, so it needs trust."""
    import torch

    model, params, rows = _torch_numbers()
    path = folder / "cnn_module.pt"
    torch.save(model, path)
    return Fixture(path, params, rows, needs_trust=True)


def hf_llama_folder(folder: Path) -> Fixture:
    """A tiny Llama saved by transformers (config.json + model.safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    path = folder / "tiny-llama"
    model.save_pretrained(path)
    rows = {
        "model.layers.0": sum(p.numel() for p in model.model.layers[0].parameters()),
        "lm_head": sum(p.numel() for p in model.lm_head.parameters()),
        "model.embed_tokens": model.model.embed_tokens.weight.numel(),
    }
    return Fixture(path, sum(p.numel() for p in model.parameters()), rows)


def keras_file(folder: Path) -> Fixture:
    """A Keras 3 .keras CNN (BatchNormalization adds non-trainable parameters)."""
    import keras

    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, activation="softmax", name="dense"),
    ], name="digits")
    path = folder / "digits.keras"
    model.save(path)
    rows = {name: model.get_layer(name).count_params() for name in ("conv", "bn", "dense")}
    return Fixture(path, model.count_params(), rows)


def onnx_file(folder: Path) -> Fixture:
    """A two-layer MLP written with onnx.helper: its initializers are the parameters."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {
        "fc1.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "fc1.bias": np.zeros(16, np.float32),
        "fc2.weight": rng.standard_normal((4, 16)).astype(np.float32),
        "fc2.bias": np.zeros(4, np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="/act/Relu"),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], name="/fc2/Gemm", transB=1),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "mlp.onnx"
    onnx.save(model, path)
    return Fixture(path, sum(int(v.size) for v in inits.values()))


def gguf_file(folder: Path) -> Fixture:
    """A GGUF file with float32 tensors written by the gguf package."""
    import numpy as np
    from gguf import GGUFWriter

    tensors = {
        "token_embd.weight": np.zeros((32, 8), np.float32),
        "blk.0.attn_q.weight": np.zeros((8, 8), np.float32),
        "blk.0.ffn_up.weight": np.zeros((16, 8), np.float32),
        "output.weight": np.zeros((32, 8), np.float32),
    }
    path = folder / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Fixture(path, sum(int(v.size) for v in tensors.values()))


def corrupted_safetensors(folder: Path) -> Path:
    """A safetensors file whose header promises more bytes than the file has."""
    import struct

    path = folder / "broken.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b'{"w": {"dtype": "F32"')
    return path
