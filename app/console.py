"""What the command line and the window's launcher share: one-line errors and the exit code they mean."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help).\n")


def fail(message: str) -> int:
    """Print `layerscope: error: <message>` on stderr and return the user-error exit code."""
    print(f"layerscope: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR
