"""Bearer tokens: the server's file of tokens, re-read on change, and a client's token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyserving.client.auth import TOKEN_ENV, client_token
from pyserving.core import auth
from pyserving.core.auth import Tokens
from pyserving.errors import ConfigError


def fresh(tokens: Tokens) -> Tokens:
    """Let the next call look at the file again, whatever the recheck interval."""
    tokens._checked = 0.0
    return tokens


def test_only_the_tokens_in_the_file_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# for the web app\nalpha-123\n\n  beta-456  \n")
    tokens = Tokens(path)
    assert tokens.accepts("Bearer alpha-123")
    assert tokens.accepts("bearer   beta-456 ")
    for wrong in (None, "", "alpha-123", "Basic alpha-123", "Bearer alpha-12", "Bearer alpha-1234"):
        assert not tokens.accepts(wrong), wrong
    assert not tokens.accepts("Bearer # for the web app")
    assert not tokens.accepts("Bearer ")


def test_a_changed_file_takes_effect_and_an_unreadable_one_keeps_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens"
    path.write_text("old\n")
    tokens = Tokens(path)
    assert fresh(tokens).accepts("Bearer old")
    path.write_text("new-one\n")
    os.utime(path, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert fresh(tokens).accepts("Bearer new-one")
    assert not fresh(tokens).accepts("Bearer old")
    path.unlink()
    assert fresh(tokens).accepts("Bearer new-one")  # kept, and logged
    path.write_text("")
    assert not fresh(tokens).accepts("Bearer new-one")  # empty: every token revoked


def test_the_file_is_looked_at_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens"
    path.write_text("one\n")
    tokens = fresh(Tokens(path))
    stats: list[object] = []
    real_stat = os.stat

    def counted_stat(path: object) -> os.stat_result:
        stats.append(path)
        return real_stat(path)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "os", type("Os", (), {"stat": staticmethod(counted_stat)}))
    for _ in range(100):
        assert tokens.accepts("Bearer one")
    assert len(stats) == 1


def test_a_missing_or_empty_file_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read --auth_token_file"):
        Tokens(tmp_path / "none")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no tokens"):
        Tokens(tmp_path / "empty")


def test_a_clients_token_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert client_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, " from-env ")
    assert client_token(None) == "from-env"
    (tmp_path / "t").write_text("# mine\nfrom-file\nsecond\n")
    assert client_token(tmp_path / "t") == "from-file"
    with pytest.raises(ConfigError, match="cannot read"):
        client_token(tmp_path / "missing")
