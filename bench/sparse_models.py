"""Generate Llama-shaped Hugging Face folders in seconds: real headers, sparse data (no disk used)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LlamaShape:
    """The hyper-parameters that fix a Llama checkpoint's tensors."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    shards: int
    max_positions: int = 4096

    def tensors(self) -> list[tuple[str, list[int]]]:
        """(name, shape) of every tensor, in checkpoint order."""
        h, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        out: list[tuple[str, list[int]]] = [("model.embed_tokens.weight", [self.vocab, h])]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            out += [
                (p + "self_attn.q_proj.weight", [h, h]),
                (p + "self_attn.k_proj.weight", [kv, h]),
                (p + "self_attn.v_proj.weight", [kv, h]),
                (p + "self_attn.o_proj.weight", [h, h]),
                (p + "mlp.gate_proj.weight", [self.intermediate, h]),
                (p + "mlp.up_proj.weight", [self.intermediate, h]),
                (p + "mlp.down_proj.weight", [h, self.intermediate]),
                (p + "input_layernorm.weight", [h]),
                (p + "post_attention_layernorm.weight", [h]),
            ]
        out += [("model.norm.weight", [h]), ("lm_head.weight", [self.vocab, h])]
        return out

    @property
    def params(self) -> int:
        """Total parameter count."""
        total = 0
        for _, shape in self.tensors():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def config(self) -> dict:
        """config.json content, as transformers writes it for Llama."""
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads, "vocab_size": self.vocab,
            "max_position_embeddings": self.max_positions, "rms_norm_eps": 1e-5, "hidden_act": "silu",
            "tie_word_embeddings": False, "torch_dtype": "bfloat16", "rope_theta": 10000.0,
            "bos_token_id": 1, "eos_token_id": 2,
        }


LLAMA_7B = LlamaShape("Llama-2-7B", 4096, 11008, 32, 32, 32, 32000, shards=3)
LLAMA_70B = LlamaShape("Llama-2-70B", 8192, 28672, 80, 64, 8, 32000, shards=15)


def write_sparse_hf_folder(shape: LlamaShape, folder: Path) -> Path:
    """Write config.json, an index and `shape.shards` bf16 safetensors shards whose data is a sparse hole."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = shape.tensors()
    per_shard = -(-len(tensors) // shape.shards)
    weight_map: dict[str, str] = {}
    total_size = 0
    for s in range(shape.shards):
        chunk = tensors[s * per_shard : (s + 1) * per_shard]
        fname = f"model-{s + 1:05d}-of-{shape.shards:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dims in chunk:
            n = 1
            for d in dims:
                n *= d
            header[name] = {"dtype": "BF16", "shape": dims, "data_offsets": [offset, offset + 2 * n]}
            offset += 2 * n
            weight_map[name] = fname
        blob = json.dumps(header).encode()
        blob += b" " * (-len(blob) % 8)
        with (folder / fname).open("wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            f.truncate(8 + len(blob) + offset)
        total_size += offset
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=1))
    (folder / "config.json").write_text(json.dumps(shape.config(), indent=1))
    return folder
