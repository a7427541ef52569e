"""The README's table of bundled samples, made from the manifest so it never goes stale."""

from __future__ import annotations

from analyzers.samples.manifest import REPO, SampleModel, load_manifest

# The seed document's "算法编程题库" (algorithm programming problems) the samples come from.
SEED_PROBLEMS = {
    1: "neural-network image classifier",
    2: "CNN text classifier",
    3: "self-attention sequence classifier",
    4: "GAN digit generator",
    5: "Transformer text classifier",
    6: "BERT question answering",
}


def _count(n: int) -> str:
    return f"{n:,}" if n < 10_000 else f"{n:,} ({n / 1e6:.2f} M)" if n >= 1_000_000 else f"{n:,} ({n / 1e3:.0f} k)"


def _score(metric: str, value: float) -> str:
    return f"{value:.3f}" if "auc" in metric.lower() else f"{value:.1%}"


def samples_markdown(models: list[SampleModel] | None = None) -> str:
    """The README table of the bundled samples, made from the manifest so it never goes stale."""
    models = load_manifest() if models is None else models
    rows = [
        "| Sample | Seed problem | Framework | Task | File | Parameters | Held-out score |",
        "|---|---|---|---|---|---:|---|",
    ]
    for m in models:
        rel = m.file.relative_to(REPO).as_posix() if m.file.is_relative_to(REPO) else m.file.name
        score = "—" if m.heldout is None else f"{m.metric} {_score(m.metric, m.heldout)}"
        framework = {"keras": "Keras", "torch": "PyTorch"}.get(m.framework, m.framework)
        seed = f"{m.seed_problem}. {SEED_PROBLEMS.get(m.seed_problem, '')}".rstrip(". ")
        rows.append(f"| {m.title} | {seed} | {framework} | {m.task} | `{rel}` | "
                    f"{_count(m.params)} | {score} |")
    return "\n".join(rows) + "\n"


README_BEGIN = "<!-- samples:begin -->"
README_END = "<!-- samples:end -->"


def readme_with_samples(readme: str, table: str) -> str:
    """`readme` with the text between the samples markers replaced by `table` (unchanged without markers)."""
    if README_BEGIN not in readme or README_END not in readme:
        return readme
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table.rstrip()}\n{README_END}{tail}"
