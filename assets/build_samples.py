"""Build LayerScope's sample zoo: the seed document's six models, trained, with sample inputs.

    make samples                                   # everything (about 6-9 minutes on 2 CPU cores)
    .venv/bin/python assets/build_samples.py --only text_cnn_keras,bert_qa

Writes assets/models/, assets/samples/, the manifest assets/samples.json and docs/samples.md (the
README table). Deterministic seeds, CPU only, no downloads. The GAN, the longest job, trains in a
child process on one core while everything else trains here on the other, one thread each (these
small models gain little from a second thread and lose a lot to oversubscription). A model that
misses its held-out bar stops the build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
REPO = ASSETS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from analyzers import samples as manifest_api  # noqa: E402  (needs the repo root on sys.path)

# builder name -> (zoo module, train function, finish function or None, manifest ids it writes).
# A train function returns its manifest entries, or None when its finish function makes them.
BUILDERS: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "digits_cnn_keras": ("build_keras", "build_digits_keras", None, ("digits_cnn_keras",)),
    "text_cnn_keras": ("build_keras", "build_text_cnn_keras", None, ("text_cnn_keras",)),
    "gan_keras": ("build_keras", "train_gan_keras", "gan_entries", ("gan_generator_keras", "gan_discriminator_keras")),
    "digits_cnn_torch": ("build_torch", "build_digits_torch", None, ("digits_cnn_torch",)),
    "digits_variants_keras": ("build_compare", "build_digits_variants", None,
                              ("digits_cnn_finetuned_keras", "digits_cnn_pruned_keras", "digits_cnn_int8_keras")),
    "attention_seq_torch": ("build_torch", "build_attention_seq_torch", None, ("attention_seq_torch",)),
    "transformer_text_torch": ("build_torch", "build_transformer_text_torch", None, ("transformer_text_torch",)),
    "bert_qa": ("build_torch", "build_bert_qa", None, ("bert_qa",)),
    "digits_vit_torch": ("build_vit", "build_digits_vit_torch", None, ("digits_vit_torch",)),
}
# Trained in a child process on the second core while this process builds everything else.
SIDE_PROCESS = ("gan_keras",)
ORDER = ("digits_cnn_keras", "digits_cnn_torch", "digits_cnn_finetuned_keras", "digits_cnn_pruned_keras",
         "digits_cnn_int8_keras", "text_cnn_keras", "attention_seq_torch", "gan_generator_keras",
         "gan_discriminator_keras", "transformer_text_torch", "bert_qa", "digits_vit_torch")
DOCS = REPO / "docs" / "samples.md"


def resolve_names(only: str | None) -> list[str]:
    """Builder names from --only (builder names or manifest ids, comma-separated); all when None."""
    if not only:
        return list(BUILDERS)
    names: list[str] = []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        match = [b for b, (_, _, _, ids) in BUILDERS.items() if item == b or item in ids]
        if not match:
            sys.exit(f"build_samples: unknown model '{item}'; choose from {', '.join(BUILDERS)}")
        names.extend(m for m in match if m not in names)
    return [b for b in BUILDERS if b in names]


def _call(module: str, func: str, threads: int) -> list[dict]:
    return getattr(manifest_api.zoo_module(module), func)(threads) or []


def run_builders(names: list[str], threads: int, finish: bool = True) -> list[dict]:
    """Train the named models in this process (and finish them) and return their manifest entries."""
    entries: list[dict] = []
    for name in names:
        module, train, done, _ = BUILDERS[name]
        entries.extend(_call(module, train, threads))
        if finish and done:
            entries.extend(_call(module, done, threads))
    return entries


def build(names: list[str], threads: int, serial: bool) -> list[dict]:
    """The GAN in a child process next to everything else here (one core each), unless serial."""
    side = [n for n in names if n in SIDE_PROCESS]
    here = [n for n in names if n not in SIDE_PROCESS]
    if serial or not side or not here:
        return run_builders(names, threads)
    child = subprocess.Popen([sys.executable, __file__, "--only", ",".join(side), "--threads", "1",
                              "--train-only"])
    try:
        entries = run_builders(here, 1)
    except BaseException:
        child.kill()
        raise
    if child.wait() != 0:
        sys.exit(f"build_samples: training {', '.join(side)} failed (see above)")
    for name in side:  # judged here, once every model it depends on is on disk
        module, _, done, _ = BUILDERS[name]
        if done:
            entries.extend(_call(module, done, 1))
    return entries


def to_json(value: object, indent: int = 0) -> str:
    """Indented JSON that keeps short lists of numbers or strings on one line (a readable manifest)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        flat = json.dumps(value, ensure_ascii=False)
        if all(not isinstance(v, dict | list) for v in value) and len(flat) <= 100:
            return flat
        return "[\n" + ",\n".join(f"{inner}{to_json(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def write_manifest(entries: list[dict]) -> None:
    """Merge `entries` into assets/samples.json by id, in the zoo's order, then refresh the samples tables."""
    path = manifest_api.MANIFEST
    models: dict[str, dict] = {}
    if path.exists():
        models = {m["id"]: m for m in json.loads(path.read_text(encoding="utf-8")).get("models", [])}
    models.update({e["id"]: e for e in entries})
    ordered = [models[i] for i in ORDER if i in models] + [m for i, m in models.items() if i not in ORDER]
    doc = {"schema": manifest_api.SCHEMA,
           "about": "LayerScope's bundled sample models, built by assets/build_samples.py; paths are relative "
                    "to this file's folder.",
           "models": ordered}
    path.write_text(to_json(doc) + "\n", encoding="utf-8")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    table = manifest_api.samples_markdown(manifest_api.load_manifest())
    DOCS.write_text(table, encoding="utf-8")
    readme = REPO / "README.md"
    if readme.exists():
        readme.write_text(manifest_api.readme_with_samples(readme.read_text(encoding="utf-8"), table),
                          encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build, write the manifest (or, in the child, the entries file)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(BUILDERS)}")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per framework (default 1: the two frameworks already run side by side)")
    p.add_argument("--serial", action="store_true", help="build everything in this one process")
    p.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)  # the side process
    args = p.parse_args(argv)
    start = time.monotonic()
    names = resolve_names(args.only)
    if args.train_only:
        run_builders(names, args.threads, finish=False)
        return 0
    entries = build(names, args.threads, args.serial)
    write_manifest(entries)
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    print(f"build_samples: {len(entries)} model(s) in {time.monotonic() - start:.0f} s; "
          f"assets/ holds {total / 1e6:.1f} MB; manifest {manifest_api.MANIFEST.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
