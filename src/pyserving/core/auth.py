"""Bearer tokens: the server's list (a file, one token a line, re-read when it changes),
checked in constant time. No transport here: the adapters pass the header's value in."""

from __future__ import annotations

import hmac
import logging
import os
import time
from pathlib import Path

from pyserving.errors import ConfigError

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0  # how often a request may look at the file for changes
REFUSED = "missing or invalid credentials: send 'authorization: Bearer <token>'"


class Tokens:
    """The tokens a server accepts, from `path`; a changed file takes effect within a second.

    A file that becomes unreadable keeps the last tokens read (and says so in the log); an
    empty one accepts nothing, which is how to revoke every token at once.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tokens: tuple[bytes, ...] = ()
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0
        try:
            self._reload()
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read --auth_token_file {path}: {exc}") from exc
        if not self._tokens:
            raise ConfigError(f"--auth_token_file {path} holds no tokens (one a line)")

    def accepts(self, authorization: str | None) -> bool:
        """Whether an `authorization` header value carries one of the tokens."""
        self._refresh()
        scheme, _, token = (authorization or "").strip().partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not given:
            return False
        # Every token is compared, whatever matches: the time says nothing about which.
        found = False
        for known in self._tokens:
            found |= hmac.compare_digest(given, known)
        return found

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        try:
            self._reload()
        except (OSError, UnicodeError) as exc:
            log.error("cannot read %s (%s); keeping the tokens read before", self._path, exc)

    def _reload(self) -> None:
        stat = os.stat(self._path)
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if seen == self._seen:
            return
        tokens = tuple(t.encode() for t in _tokens(self._path.read_text(encoding="utf-8")))
        if self._seen is not None:
            log.info("read %d token(s) from %s", len(tokens), self._path)
        self._tokens, self._seen = tokens, seen


def _tokens(text: str) -> list[str]:
    """One token a line; blank lines and lines starting with # are skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
