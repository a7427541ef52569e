"""Which transformers class a Hugging Face folder holds, built on the meta device within a bound.

A config.json without `architectures` (common in converted checkpoints) names only a model type;
its base model lacks the task head the weights carry (`lm_head.weight` of a Llama), so the class is
chosen by the weights: the model type's classes whose head matches the tensor names are built first
and the one whose state-dict names and shapes match the stored tensors best wins. Building from a
config is bounded: a config that claims 10^6 layers over two stored tensors stops after a number of
torch calls proportional to what the files hold instead of building for minutes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyzers.loaders.arch import StateMatch, match_names
from analyzers.summary import LayerNode, TensorInfo

MAX_CANDIDATES = 6  # classes built and compared when the config names none
# Torch calls a meta-device build may make: ~3 per stored tensor in practice (Llama-2-70B: 2,031
# calls for 723 tensors), so eight per tensor plus a margin never stops a real model.
CALLS_PER_TENSOR = 8
BASE_CALLS = 5_000
CONFIG_ONLY_CALLS = 150_000  # no weights to compare with: about a 50k-tensor model, some seconds
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers", "decoder_layers")
# Stored-name prefix -> class-name parts of the head that owns it, most specific first.
HEAD_HINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("lm_head.",), ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "WithLMHead")),
    (("qa_outputs.",), ("ForQuestionAnswering",)),
    (("score.", "classifier."), ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification",
                                 "ForAudioClassification")),
    (("cls.predictions.", "cls.seq_relationship."), ("ForPreTraining", "ForMaskedLM")),
)


class ConfigTooLarge(Exception):
    """config.json describes a model far larger than its weight files hold; it was not built."""


class _StopBuilding(BaseException):
    """Raised from inside transformers' constructors; a BaseException so no `except Exception` there eats it."""


def _call_cap() -> Any:
    from torch.overrides import TorchFunctionMode

    class CallCap(TorchFunctionMode):
        """Counts torch calls (every parameter and buffer a module creates is one) and stops past a limit."""

        def __init__(self, limit: int) -> None:
            super().__init__()
            self.limit = limit
            self.calls = 0

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.calls += 1
            if self.calls > self.limit:
                raise _StopBuilding
            return func(*args, **(kwargs or {}))

    return CallCap


def make_config(folder: Path, config_dict: dict[str, Any]) -> Any:
    """The transformers config of a folder, from the dict already read (config.json is not read again)."""
    from transformers import CONFIG_MAPPING, AutoConfig

    model_type = config_dict.get("model_type")
    if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
        return CONFIG_MAPPING[model_type].from_dict(dict(config_dict))
    return AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)


def candidate_classes(model_type: str, names: list[str]) -> list[str]:
    """Class names transformers has for `model_type`, those whose head matches the tensor names first."""
    from transformers.models.auto import modeling_auto

    found: list[str] = []
    for attr in sorted(dir(modeling_auto)):
        mapping = getattr(modeling_auto, attr)
        if not attr.endswith("_MAPPING_NAMES") or attr == "CONFIG_MAPPING_NAMES" or not isinstance(mapping, Mapping):
            continue
        value = mapping.get(model_type)
        found.extend(v for v in (value if isinstance(value, list | tuple) else (value,)) if isinstance(v, str))
    found = list(dict.fromkeys(found))
    hinted: list[str] = []
    for prefixes, parts in HEAD_HINTS:
        if any(n.startswith(p) or f".{p}" in n for n in names for p in prefixes):
            hinted.extend(c for part in parts for c in found if part in c)
    base = modeling_auto.MODEL_MAPPING_NAMES.get(model_type)
    bases = [base] if isinstance(base, str) else list(base or ())
    return list(dict.fromkeys([*hinted, *bases, *found]))


def tied_names(model: Any) -> set[str]:
    """State-dict names that are the same tensor as an earlier one (tied embeddings)."""
    first: dict[int, str] = {}
    tied: set[str] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied.add(name)
        else:
            first[id(param)] = name
    keys = getattr(model, "_tied_weights_keys", None) or ()
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        tied.update(k for k in keys if isinstance(k, str))
    return tied


def match_model(model: Any, stored: Mapping[str, TensorInfo]) -> tuple[StateMatch, list[str]]:
    """How the stored tensors line up with `model`'s state dict, and the untied names the files lack."""
    module_state = model.state_dict(keep_vars=True)
    prefix = getattr(model, "base_model_prefix", "") or ""
    match = match_names({n: tuple(t.shape) for n, t in module_state.items()}, stored,
                        extra_prefixes=(prefix,) if prefix else ())
    tied = tied_names(model)
    return match, [m for m in match.missing if m not in tied]


def _score(match: StateMatch, missing: list[str]) -> tuple[int, int, int]:
    return len(match.renamed) - len(match.mismatched), -len(missing), -len(match.mismatched)


def _layers_said(config_dict: Mapping[str, Any]) -> str:
    said = [f"{k} {config_dict[k]:,}" for k in LAYER_KEYS if isinstance(config_dict.get(k), int)]
    return f" ({', '.join(said)})" if said else ""


def build_best_model(folder: Path, config_dict: dict[str, Any], tensors: list[TensorInfo]) -> tuple[Any, str, list[str]]:
    """(model on the meta device, its class name, notes): the named class, or the best-matching candidate.

    Raises ConfigTooLarge when building would take more torch calls than the stored tensors justify."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModel

    config = make_config(folder, config_dict)
    limit = CALLS_PER_TENSOR * len(tensors) + BASE_CALLS if tensors else CONFIG_ONLY_CALLS
    cap_class = _call_cap()

    def build(cls: Any) -> Any:
        try:
            with torch.device("meta"), cap_class(limit):
                return AutoModel.from_config(config) if cls is None else cls._from_config(config)
        except _StopBuilding:
            held = (f"than the {len(tensors):,} tensors its weight files hold" if tensors
                    else "than LayerScope builds without weights to compare with")
            raise ConfigTooLarge(f"config.json describes a far larger model{_layers_said(config_dict)} {held}; "
                                 "building it was stopped") from None

    named = [n for n in config_dict.get("architectures") or () if isinstance(n, str)]
    for name in named:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type):
            return build(cls), name, []
    notes: list[str] = []
    model_type = getattr(config, "model_type", "") or ""
    stored = {t.name: t for t in tensors}
    names = [n for n in candidate_classes(model_type, list(stored)) if isinstance(getattr(transformers, n, None), type)]
    if not names or not tensors:
        cls = getattr(transformers, names[0]) if names else None
        model = build(cls)
    else:
        best: tuple[tuple[int, int, int], Any] | None = None
        for name in names[:MAX_CANDIDATES]:
            try:
                candidate = build(getattr(transformers, name))
            except ConfigTooLarge:
                raise
            except Exception:  # a head this config cannot build (no num_labels, say): the next candidate
                continue
            score = _score(*match_model(candidate, stored))
            if best is None or score > best[0]:
                best = (score, candidate)
            if score[0] == len(stored) and score[1] == 0:
                break
        model = best[1] if best is not None else build(None)
    cls_name = type(model).__name__
    said = f"transformers has no class {', '.join(named)}" if named else "config.json names no architecture"
    how = "the class whose tensor names match the weights best" if tensors else "without weights to choose a head"
    notes.append(f"{said}; opened as {cls_name}, {how}.")
    return model, cls_name, notes


def without_tensors(root: LayerNode, names: set[str]) -> LayerNode:
    """A copy of the tree without the tensors named in `names` (bottom-up, no recursion)."""
    if not names:
        return root
    order: list[LayerNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    rebuilt: dict[int, LayerNode] = {}
    for node in reversed(order):
        kept = tuple(t for t in node.tensors if t.name not in names)
        rebuilt[id(node)] = dataclasses.replace(node, tensors=kept,
                                                children=tuple(rebuilt[id(c)] for c in node.children))
    return rebuilt[id(root)]
