"""Hugging Face model folders: config.json + safetensors or .bin weights, sharded or not.

The typed tree comes from the config, built on the meta device with transformers (offline, never a
download); the tensors come from the weight headers and are laid onto it. When transformers does not
know the architecture, or with --names-only, the tree is built from the tensor names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, UnsupportedFile, printable, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.hf_heads import without_tensors
from analyzers.loaders.safe_files import METADATA_LIMIT, display_name, read_text_capped, regular_file
from analyzers.loaders.safetensors_loader import header_tensors, read_header, read_index, shard_tensors
from analyzers.summary import LayerNode, ModelSummary, SourceInfo, TensorInfo
from analyzers.summary.dtypes import state_dict_kind
from analyzers.summary.nametree import build_name_tree, is_buffer_name
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
    """A folder with config.json (even a broken one: it gets its own sentence), or with weights."""
    if not path.is_dir():
        return False
    return os.path.lexists(path / "config.json") or bool(weight_files(path)[0])


def read_config(folder: Path) -> dict[str, Any] | None:
    """config.json as a dict (None when absent); a config that is no regular, small JSON file is refused."""
    cfg = folder / "config.json"
    if not os.path.lexists(cfg):
        return None
    try:
        mode = os.stat(cfg).st_mode
    except OSError as exc:
        problem = ("a symbolic link that points back to itself" if exc.errno == errno.ELOOP
                   else "a symbolic link to nothing" if exc.errno == errno.ENOENT
                   else f"unreadable ({exc.strerror or exc})")
        raise CorruptFile(sentence(folder, f"its config.json is {problem}")) from None
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise CorruptFile(sentence(folder, f"its config.json is {kind}, not a JSON file"))
    try:
        data = json.loads(read_text_capped(cfg, METADATA_LIMIT, "config.json"))
    except CorruptFile as exc:
        raise CorruptFile(sentence(folder, f"its {str(exc).split(': ', 1)[-1]}")) from None
    except (json.JSONDecodeError, RecursionError):
        raise CorruptFile(sentence(folder, "its config.json is not valid JSON")) from None
    if not isinstance(data, dict):
        raise CorruptFile(sentence(folder, "its config.json is not a JSON object"))
    return data


def is_quantized(config: dict[str, Any] | None) -> bool:
    """True when the config says the weights are stored quantised (integer tensors are then weights)."""
    return bool(config) and any(config.get(k) for k in ("quantization_config", "compression_config"))


def stored_tensors(folder: Path, quantized: bool = False) -> Steps[tuple[list[TensorInfo], list[Path], str]]:
    """TensorInfos of every weight file in the folder, from headers (safetensors) or mmap (.bin).

    Integer and bool tensors are buffers unless the config declares quantised weights."""
    kind, files, index = weight_files(folder)
    if index is not None:
        weight_map = read_index(index)
        if kind == "safetensors":
            tensors, shard_paths, _ = yield from shard_tensors(index, weight_map, quantized=quantized)
            return tensors, shard_paths, kind
        files = [folder / f for f in dict.fromkeys(weight_map.values())]
    tensors: list[TensorInfo] = []
    for i, f in enumerate(files):
        yield Progress(i, len(files), f"Reading {f.name}")
        if not f.exists():
            raise CorruptFile(sentence(folder, f"the weight file {display_name(f.name)} named by its index is missing"))
        regular_file(f)
        if kind == "safetensors":
            header, start = read_header(f)
            tensors.extend(header_tensors(f, header, start, quantized=quantized))
        else:
            from analyzers.loaders.pytorch_loader import flatten_tensors, infos_from_state, load_checkpoint

            state = load_checkpoint(f, trust=False)
            if not isinstance(state, dict):
                raise CorruptFile(sentence(f, "it does not hold a state_dict"))
            for t in infos_from_state(flatten_tensors(state)).values():
                if t.kind == "param" and state_dict_kind(t.dtype, quantized=quantized) == "buffer":
                    t = dataclasses.replace(t, kind="buffer", trainable=False)
                tensors.append(t)
    return tensors, files, kind


@contextlib.contextmanager
def transformers_log() -> Iterator[list[str]]:
    """transformers' warnings while inside, collected for the summary's notes instead of printed on stderr
    (a config with special-token ids outside its vocabulary, say: worth a note, not a stray log line).
    Python warnings raised meanwhile (torch's, transformers' deprecations) are collected the same way."""
    import logging

    from transformers.utils import logging as hf_logging

    got: list[str] = []

    def keep_message(text: str) -> None:
        message = printable(text.strip(), 400)
        if message and message not in got:
            got.append(message)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            keep_message(record.getMessage())

    keep = Keep(logging.WARNING)
    level = hf_logging.get_verbosity()
    once = getattr(logging.Logger.warning_once, "cache_clear", None)  # transformers says some things once a process
    if once is not None:
        once()
    hf_logging.set_verbosity_warning()
    hf_logging.disable_default_handler()
    hf_logging.add_handler(keep)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield got
        for w in caught:
            keep_message(str(w.message))
    finally:
        hf_logging.remove_handler(keep)
        hf_logging.enable_default_handler()
        hf_logging.set_verbosity(level)


@loader(
    "hf",
    folder=True,
    priority=30,
    sniff=sniff_hf_folder,
    description="Hugging Face model folder",
    runs="torch",
    graph="weights-header",
)
def open_hf_folder(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """Typed tree from config.json on the meta device; tensors from the weight headers."""
    config = read_config(path)
    quantized = is_quantized(config)
    tensors, files, kind = yield from stored_tensors(path, quantized)
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
        from analyzers.loaders.hf_heads import ConfigTooLarge, build_best_model

        arch = ", ".join(str(a) for a in config.get("architectures") or []) or str(config.get("model_type", "?"))
        try:
            with transformers_log() as said:
                model, cls_name, chosen = build_best_model(path, config, tensors)
        except ConfigTooLarge as exc:
            if not tensors:
                raise UnsupportedFile(sentence(path, str(exc))) from None
            notes.append(f"{exc}; showing the tree of tensor names instead.")
        except (ValueError, KeyError, ImportError) as exc:
            notes.append(f"transformers does not know the architecture {printable(arch, 120)} "
                         f"({type(exc).__name__}: {_said(exc)}); showing the tree of tensor names instead.")
        except Exception as exc:  # transformers on a hostile config (zero heads ...): any failure, the names tree
            notes.append(f"transformers could not build {printable(arch, 120)} from config.json "
                         f"({type(exc).__name__}: {_said(exc)}); showing the tree of tensor names instead.")
        else:
            notes.extend(f"transformers: {message}" for message in said)
            notes.extend(chosen)
            yield Progress(1, 2, f"Laying {len(tensors):,} tensors onto {cls_name}")
            root = _typed_root(model, cls_name, tensors, notes, metadata)
    elif options.names_only:
        notes.append("--names-only: tree of tensor names, layer types not resolved.")
    if root is None:
        if not tensors:
            raise UnsupportedFile(sentence(path, "the folder has no weights and its architecture is unknown"))
        root = build_name_tree(tensors)
        if any(t.kind == "buffer" and not is_buffer_name(t.name) for t in tensors):
            notes.append("Integer and bool tensors (index tables, masks) are counted as buffers: they cannot be "
                         "trainable parameters.")
    yield Progress(2, 2, "Done")
    return ModelSummary(source=source, root=root, metadata=metadata, notes=tuple(notes), config=config)


def _said(exc: BaseException) -> str:
    """An exception's text on one line (transformers' validation errors put the reason on the second)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return printable(text or type(exc).__name__, 240).rstrip(".")


def _typed_root(model: Any, cls_name: str, tensors: list[TensorInfo], notes: list[str],
                metadata: dict[str, Any]) -> LayerNode:
    """The module tree with the stored tensors laid on it; what the files hold and the class lacks hangs
    under its own names, what the class has and the files lack is left out: the totals are the files'."""
    from analyzers.loaders.hf_heads import match_model
    from analyzers.loaders.torch_modules import module_tree

    if not tensors:
        return module_tree(model)
    stored = {t.name: t for t in tensors}
    match, missing = match_model(model, stored)
    on_module = {match.renamed[k]: TensorInfo(match.renamed[k], v.shape, v.dtype, v.kind, v.trainable, None,
                                              v.stored_bytes)
                 for k, v in stored.items() if k in match.renamed}
    extra = {k: v for k, v in stored.items() if k not in match.renamed}
    root = without_tensors(module_tree(model, stored=on_module, extra=extra), set(missing))
    if match.prefix_change:
        notes.append(f"Checkpoint names were matched after the prefix change '{match.prefix_change}'.")
    if missing:
        notes.append(f"{len(missing):,} tensor(s) of {cls_name} are not in the weight files (e.g. "
                     f"{', '.join(missing[:3])}); they are left out of the tree and the totals (loading would "
                     "initialise them afresh).")
    if extra:
        notes.append(f"{len(extra):,} tensor(s) in the weight files are not in {cls_name} (e.g. "
                     f"{', '.join(display_name(n, 80) for n in list(extra)[:3])}); they are shown under their own "
                     "names and counted.")
    if match.mismatched:
        notes.append(f"{len(match.mismatched):,} tensor(s) differ in shape from {cls_name} (e.g. "
                     f"{', '.join(match.mismatched[:3])}); the files' shapes are shown.")
    if missing or extra or match.mismatched:
        metadata["unmatched"] = {"missing": missing[:50], "unexpected": [display_name(n) for n in list(extra)[:50]],
                                 "mismatched": list(match.mismatched[:50])}
    return root
