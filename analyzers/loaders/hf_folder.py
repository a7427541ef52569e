"""Hugging Face model folders: config.json + safetensors or .bin weights, sharded or not.

The typed tree comes from the config, built on the meta device with transformers (offline, never a
download); the tensors come from the weight headers and are laid onto it. When transformers does not
know the architecture, or with --names-only, the tree is built from the tensor names.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, UnsupportedFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.safetensors_loader import header_tensors, read_header, read_index, shard_tensors
from analyzers.nametree import build_name_tree
from analyzers.summary import ModelSummary, SourceInfo, TensorInfo
from analyzers.tasks import Progress, Steps

CONFIG_SUMMARY_KEYS = (
    "model_type", "architectures", "torch_dtype", "dtype", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
    "max_position_embeddings", "tie_word_embeddings", "n_layer", "n_head", "n_embd", "d_model",
    "num_layers", "rope_theta", "hidden_act",
)


def weight_files(folder: Path) -> tuple[str, list[Path], Path | None]:
    """(kind, files, index) of the weights in a folder: safetensors preferred over .bin."""
    for kind, index_name, glob in (
        ("safetensors", "model.safetensors.index.json", "*.safetensors"),
        ("bin", "pytorch_model.bin.index.json", "pytorch_model*.bin"),
    ):
        index = folder / index_name
        if index.exists():
            return kind, [], index
        indexes = sorted(folder.glob(f"*{index_name[index_name.index('.'):]}"))
        if indexes:
            return kind, [], indexes[0]
        files = sorted(folder.glob(glob))
        if files:
            return kind, files, None
    return "", [], None


def sniff_hf_folder(path: Path) -> bool:
    """A folder with config.json, or with safetensors / pytorch_model weights."""
    if not path.is_dir():
        return False
    return (path / "config.json").is_file() or bool(weight_files(path)[0])


def read_config(folder: Path) -> dict[str, Any] | None:
    """config.json as a dict (None when absent)."""
    cfg = folder / "config.json"
    if not cfg.exists():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFile(sentence(folder, "its config.json is not valid JSON")) from None
    if not isinstance(data, dict):
        raise CorruptFile(sentence(folder, "its config.json is not a JSON object"))
    return data


def stored_tensors(folder: Path) -> Steps[tuple[list[TensorInfo], list[Path], str]]:
    """TensorInfos of every weight file in the folder, from headers (safetensors) or mmap (.bin)."""
    kind, files, index = weight_files(folder)
    if index is not None:
        weight_map = read_index(index)
        if kind == "safetensors":
            tensors, shard_paths, _ = yield from shard_tensors(index, weight_map)
            return tensors, shard_paths, kind
        files = [folder / f for f in dict.fromkeys(weight_map.values())]
    tensors: list[TensorInfo] = []
    for i, f in enumerate(files):
        yield Progress(i, len(files), f"Reading {f.name}")
        if not f.exists():
            raise CorruptFile(sentence(folder, f"the weight file {f.name} named by its index is missing"))
        if kind == "safetensors":
            header, start = read_header(f)
            tensors.extend(header_tensors(f, header, start))
        else:
            from analyzers.loaders.pytorch_loader import flatten_tensors, infos_from_state, load_checkpoint

            state = load_checkpoint(f, trust=False)
            if not isinstance(state, dict):
                raise CorruptFile(sentence(f, "it does not hold a state_dict"))
            tensors.extend(infos_from_state(flatten_tensors(state)).values())
    return tensors, files, kind


@contextlib.contextmanager
def transformers_log() -> Iterator[list[str]]:
    """transformers' warnings while inside, collected for the summary's notes instead of printed on stderr
    (a config with special-token ids outside its vocabulary, say: worth a note, not a stray log line)."""
    import logging

    from transformers.utils import logging as hf_logging

    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage().strip()
            if message and message not in got:
                got.append(message)

    keep = Keep(logging.WARNING)
    level = hf_logging.get_verbosity()
    once = getattr(logging.Logger.warning_once, "cache_clear", None)  # transformers says some things once a process
    if once is not None:
        once()
    hf_logging.set_verbosity_warning()
    hf_logging.disable_default_handler()
    hf_logging.add_handler(keep)
    try:
        yield got
    finally:
        hf_logging.remove_handler(keep)
        hf_logging.enable_default_handler()
        hf_logging.set_verbosity(level)


def build_meta_model(folder: Path, config_dict: dict[str, Any]) -> tuple[Any, str]:
    """The model class named by the config, instantiated on the meta device (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    archs = list(config_dict.get("architectures") or [])
    cls = None
    for name in archs:
        cls = getattr(transformers, name, None)
        if cls is not None:
            break
    with torch.device("meta"):
        if cls is not None:
            model = cls._from_config(config)
        else:
            model = AutoModel.from_config(config)
    return model, type(model).__name__


@loader(
    "hf",
    folder=True,
    priority=30,
    sniff=sniff_hf_folder,
    description="Hugging Face model folder",
)
def open_hf_folder(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Typed tree from config.json on the meta device; tensors from the weight headers."""
    config = read_config(path)
    tensors, files, kind = yield from stored_tensors(path)
    if not tensors and config is None:
        raise UnsupportedFile(sentence(path, "the folder has neither config.json nor weights"))
    metadata: dict[str, Any] = {"weights": kind or "none", "weight_files": len(files)}
    if config:
        metadata["config"] = {k: config[k] for k in CONFIG_SUMMARY_KEYS if k in config}
    notes: list[str] = []
    if not tensors:
        notes.append("The folder has no weight files: shapes come from config.json alone.")
    size = sum(f.stat().st_size for f in files)
    source = SourceInfo(str(path), "hf", "torch", tuple(str(f) for f in files), size)

    root = None
    if config is not None and not options.names_only:
        yield Progress(0, 2, "Importing torch and transformers")
        try:
            with transformers_log() as said:
                model, cls_name = build_meta_model(path, config)
            notes.extend(f"transformers: {message}" for message in said)
        except (ValueError, KeyError, ImportError, AttributeError, OSError, TypeError, RuntimeError) as exc:
            arch = ", ".join(config.get("architectures") or []) or config.get("model_type", "?")
            notes.append(f"transformers does not know the architecture {arch} ({type(exc).__name__}); "
                         "showing the tree of tensor names instead.")
        else:
            named = list(config.get("architectures") or [])
            if named and cls_name not in named:
                notes.append(f"transformers has no class {', '.join(named)}; opened as {cls_name}, "
                             "the base model without its task head.")
            yield Progress(1, 2, f"Laying {len(tensors):,} tensors onto {cls_name}")
            root = _typed_root(model, tensors, notes, metadata)
    elif options.names_only:
        notes.append("--names-only: tree of tensor names, layer types not resolved.")
    if root is None:
        if not tensors:
            raise UnsupportedFile(sentence(path, "the folder has no weights and its architecture is unknown"))
        root = build_name_tree(tensors)
    yield Progress(2, 2, "Done")
    return ModelSummary(source=source, root=root, metadata=metadata, notes=tuple(notes), config=config)


def _typed_root(model: Any, tensors: list[TensorInfo], notes: list[str], metadata: dict[str, Any]):
    from analyzers.arch import match_names
    from analyzers.loaders.torch_modules import module_tree

    module_state = model.state_dict(keep_vars=True)
    if not tensors:
        return module_tree(model)
    stored = {t.name: t for t in tensors}
    prefix = getattr(model, "base_model_prefix", "") or ""
    match = match_names({n: tuple(t.shape) for n, t in module_state.items()}, stored,
                        extra_prefixes=(prefix,) if prefix else ())
    on_module = {match.renamed[k]: TensorInfo(match.renamed[k], v.shape, v.dtype, v.kind, v.trainable, None,
                                              v.stored_bytes)
                 for k, v in stored.items() if k in match.renamed}
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [m for m in match.missing if m not in tied and not _is_tied(model, m)]
    if missing or match.unexpected or match.mismatched:
        sub = type(match)(match.renamed, tuple(missing), match.unexpected, match.mismatched, match.prefix_change)
        notes.extend(sub.describe())
        metadata["unmatched"] = {"missing": missing[:50], "unexpected": list(match.unexpected[:50]),
                                 "mismatched": list(match.mismatched[:50])}
    elif match.prefix_change:
        notes.append(f"Checkpoint names were matched after the prefix change '{match.prefix_change}'.")
    return module_tree(model, stored=on_module)


def _is_tied(model: Any, name: str) -> bool:
    """True when the parameter `name` is the same object as an earlier one (tied embeddings)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(name)
    if target is None:
        return False
    for other, p in params.items():
        if other == name:
            return False
        if p is target:
            return True
    return False
