"""The client half of auth: which bearer token a client sends."""

from __future__ import annotations

import os
from pathlib import Path

from pyserving.errors import ConfigError

TOKEN_ENV = "PYSERVING_AUTH_TOKEN"  # where clients find their token when no file is given


def client_token(path: Path | None) -> str | None:
    """A client's token: the first line of `path`, else $PYSERVING_AUTH_TOKEN, else None."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read --auth_token_file {path}: {exc}") from exc
        # The server's token file format (core/auth.py): blank lines and # comments skipped.
        token = next((s for line in text.splitlines() if (s := line.strip()) and s[0] != "#"), None)
        if token is None:
            raise ConfigError(f"--auth_token_file {path} holds no token")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None
