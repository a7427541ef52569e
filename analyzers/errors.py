"""Errors a user can read: one sentence naming the file and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path


class LayerScopeError(Exception):
    """Base for every error whose message is meant for the user as it is."""


class UnsupportedFile(LayerScopeError):
    """The path exists but is no format LayerScope reads."""


class CorruptFile(LayerScopeError):
    """The file claims a format LayerScope reads but its content is broken."""


class TrustRequired(LayerScopeError):
    """The file holds pickled Python code; opening it would run that code."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(
            f"{Path(path).name} contains pickled Python code ({detail}); loading it runs that code, "
            "so LayerScope opens it only if you trust its source (--trust on the command line)."
        )


class ArchitectureError(LayerScopeError):
    """An --arch spec could not be imported, instantiated or matched to the weights."""


def printable(text: object, limit: int | None = None) -> str:
    """Text from a file made safe for one message line: control characters (a newline in a tensor name
    could forge a second `layerscope: error:` line) escaped, and capped at `limit` characters."""
    raw = str(text)
    out = raw if raw.isprintable() else "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                                                 for c in raw)
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def sentence(path: Path | str, problem: str) -> str:
    """Format the one-sentence message every loader error uses: `<file>: <problem>.`"""
    text = printable(problem.strip().rstrip("."))
    return f"{printable(Path(path).name, 200)}: {text}."
