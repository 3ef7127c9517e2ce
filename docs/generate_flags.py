"""Write docs/flags.md from the command line's own parser: `make flags-doc`.

tests/test_cli_flags.py fails when the page and the parser disagree.
"""

from __future__ import annotations

import argparse
import sys

from pyserving.cli.main import build_parser

HEADER = """# Flags

Every verb's flags with their defaults, generated from the parser by
`docs/generate_flags.py` (`make flags-doc`); `pyserving VERB --help` says the same. The
server's defaults live in one place, `pyserving.core.settings.Settings`, and each `serve` flag
takes its default from there. What the server's flags are for, with examples:
[server-flags.md](server-flags.md).
"""


def flags_page(parser: argparse.ArgumentParser) -> str:
    """The page: a table of flags per verb (and per export source)."""
    parts = [HEADER]
    for command, verb in _verbs(parser, "pyserving"):
        rows = [
            f"| `{', '.join(a.option_strings)}` | {_default(a)} | {_cell(a.help or '')} |"
            for a in verb._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)
        ]
        if not rows:
            continue
        parts.append(f"## {command}\n")
        parts.append("| flag | default | what it does |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def _verbs(
    parser: argparse.ArgumentParser, prefix: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((f"{prefix} {name}", child))
                found += _verbs(child, f"{prefix} {name}")
    return found


def _default(action: argparse.Action) -> str:
    if action.dest == "compiled_model_cache":
        return "`~/.cache/pyserving/openvino` (under `$XDG_CACHE_HOME` where it is set)"
    if action.dest == "model_cache_dir":
        return "`~/.cache/pyserving/models` (under `$XDG_CACHE_HOME` where it is set)"
    value = action.default
    if value is None or value is False or value in ("", [], argparse.SUPPRESS):
        return ""
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.write(flags_page(build_parser()))
