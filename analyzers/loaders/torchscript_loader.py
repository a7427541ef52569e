"""TorchScript archives (`torch.jit.save`): the scripted module tree with its original class names.

`torch.jit.load` rebuilds the module from TorchScript code and tensors; it does not unpickle Python
classes. Before it runs, the archive is checked the way a torch.save zip is (`check_archive`): no
duplicate or case-colliding members, no member that inflates past a cap, and every pickle read by
the restricted unpickler so that a tensor reaching past the bytes its storage record holds (a
truncated record torch would read as garbage) is refused. Parameters and buffers are kept apart
(every buffer the archive stores is shown: a scripted module no longer knows which ones were
non-persistent), `requires_grad` gives trainability, and the `Final` constants of each scripted
class (in_features, kernel_size ...) become attributes.
"""

from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path
from typing import Any

from analyzers.errors import CorruptFile, sentence
from analyzers.loaders import LoadOptions, loader
from analyzers.loaders.format_util import decorate_tree, first_line
from analyzers.loaders.pytorch_loader import data_pickle_name, read_zip_pickle, zip_kind
from analyzers.loaders.safe_files import METADATA_LIMIT, PICKLE_LIMIT, SafeZip, display_name
from analyzers.summary import ModelSummary, SourceInfo
from analyzers.tasks import Progress, Steps

_FINAL = re.compile(r"^\s+(\w+) : Final\[[^\n]*\] = (.+)$", re.MULTILINE)
_SIMPLE = (bool, int, float, str)
MAX_EXTRA_BYTES = 64 * 1024


def sniff_torchscript(path: Path) -> bool:
    """A zip holding TorchScript code (`code/`, `constants.pkl`)."""
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    return zip_kind(path) == "script"


def script_attributes(module: Any) -> dict[str, object]:
    """Plain attributes and `Final` constants a scripted module carries (in_features, eps ...)."""
    import torch

    out: dict[str, object] = {}
    try:
        named = torch._C._jit_debug_module_iterators(module._c)["named_attributes"]
    except (AttributeError, KeyError, RuntimeError):
        named = []
    for name, value in named:
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
            out[name] = value
    try:
        code = module._c.code_with_constants[0]
    except (AttributeError, RuntimeError, IndexError):
        code = ""
    for match in _FINAL.finditer(code):
        try:
            value = ast.literal_eval(match.group(2).strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
            out[match.group(1)] = value
    return out


def check_archive(path: Path) -> tuple[list[str], dict[str, str]]:
    """Refuse, in one sentence, an archive torch.jit.load would misread or that would exhaust memory;
    return the archive's findings and its small extra files."""
    extra: dict[str, str] = {}
    with SafeZip(path) as zf:
        root = data_pickle_name(path, zf.names)[: -len("data.pkl")]
        for name in zf.names:
            info = zf.infos[name]
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > METADATA_LIMIT:
                raise CorruptFile(sentence(path, f"its member '{display_name(name)}' inflates to {info.file_size:,} "
                                                 f"bytes; torch writes nothing compressed that large"))
            rest = name[len(root):] if name.startswith(root) else ""
            if rest.endswith(".pkl") and "/" not in rest:  # X.pkl keeps its tensors in records X/<key>
                stem = rest[:-4]  # torch.jit.load reads data and constants (an empty record there crashes it)
                read_zip_pickle(path, zf, name, f"{root}{stem}/", PICKLE_LIMIT,
                                allow_empty=stem not in ("data", "constants"))
            elif rest.startswith("extra/") and info.file_size <= MAX_EXTRA_BYTES:
                extra[rest[len("extra/"):]] = zf.read(name, MAX_EXTRA_BYTES).decode("utf-8", "replace")
        return list(zf.findings), extra


@loader(
    "torchscript",
    patterns=("*.pt", "*.pth", "*.ptl", "*.torchscript", "*.jit"),
    priority=9,  # after the state_dict loader, whose sniff declines TorchScript zips
    sniff=sniff_torchscript,
    description="TorchScript archive",
    runs="torch",
    graph="torchscript",
)
def open_torchscript(path: Path, options: LoadOptions) -> Steps[ModelSummary]:
    """torch.jit.load on the CPU, then the module tree with original class names, params and buffers apart."""
    yield Progress(0, 3, f"Checking {path.name} (members, pickles, storage records)")
    findings, extra = check_archive(path)
    yield Progress(1, 3, "Importing torch and loading TorchScript")
    import torch

    from analyzers.loaders.torch_modules import module_tree

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise CorruptFile(sentence(path, f"TorchScript could not load it ({first_line(exc)}); the archive is "
                                         "corrupted or was written by an incompatible PyTorch")) from None
    yield Progress(2, 3, "Walking the scripted modules")
    root = module_tree(module, persistent_only=False)
    attributes: dict[str, dict[str, object]] = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        attrs = script_attributes(sub)
        if attrs:
            attributes[name] = attrs
    root = decorate_tree(root, attributes=attributes)
    metadata: dict[str, object] = {"class": root.type}
    try:
        metadata["methods"] = sorted(module._c._method_names())
    except (AttributeError, RuntimeError):
        pass
    if extra:
        metadata["extra_files"] = {k: v[:500] for k, v in extra.items()}
    yield Progress(3, 3, "Done")
    return ModelSummary(
        source=SourceInfo(str(path), "torchscript", "torch", (str(path),), path.stat().st_size),
        root=root,
        metadata=metadata,
        notes=("TorchScript keeps every stored buffer; whether one was non-persistent is not recorded.", *findings),
    )
