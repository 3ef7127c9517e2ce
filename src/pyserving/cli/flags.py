"""What every verb's flags share: number types and the parser that shows defaults."""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

SERVER_HELP = "the model server's gRPC address; several, comma-separated, are balanced"
MAX_TOP_K = 2**31 - 1  # the wire's uint32, kept to what every client's int type holds


def positive(text: str) -> float:
    """A flag that takes a positive number of seconds or MiB; argparse's usage error if not."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def top_k(text: str) -> int:
    """`--top-k`: a positive integer, or argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer up to {MAX_TOP_K:,}, got {text!r}"
        )
    return value


class ShowsDefaults(argparse.HelpFormatter):
    """Help that ends each option's line with its default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default in ("", [], argparse.SUPPRESS)  # not 0, which `in` takes for False
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class VerbParser(argparse.ArgumentParser):
    """A verb's parser (argparse's `parser_class`): its help shows the defaults.

    Nested verbs (`export SOURCE`) get it too: argparse makes them of their parent's class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", ShowsDefaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, not the usage block: what was wrong and where the help is (exit 2)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
