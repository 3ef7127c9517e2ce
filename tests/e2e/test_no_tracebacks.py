"""Every verb, every kind of bad input: the right exit code and one line, never a traceback.

Exit 2 for usage (a bad flag value), 1 for a failure (a missing or unreadable file, a port
in use, a server down, refusing or given too much); Ctrl-C (130) and a closed stdout are
tested beside the verbs that stream (tests/e2e/test_cli_classify.py).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.onnx_models import png, publish, write_image_servable
from tests.processes import free_port, run_cli, start_server

USAGE, FAILURE = 2, 1


@dataclass(frozen=True)
class Place:
    """What the cases run against: files, servers and ports made once for the module."""

    folder: Path
    up: str  # a server that answers
    guarded: str  # a server that wants a token
    limited: str  # a server that takes 64 KiB at most
    down: str  # nothing listens there
    taken: int  # a port another program holds


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    folder = tmp_path_factory.mktemp("bad")
    publish(folder / "colours", 1, write_image_servable)
    (folder / "red.png").write_bytes(png((250, 0, 0)))
    (folder / "big.png").write_bytes(png((250, 0, 0)) + bytes(100 * 1024))
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "garbage.onnx").write_bytes(b"not a model")
    (folder / "garbage.toml").write_bytes(b"\x00\x01 = =")
    (folder / "tokens").write_text("secret\n")
    model = ("colours", folder / "colours")
    up = start_server(*model, folder / "up.log")
    guarded = start_server(*model, folder / "g.log", "--auth_token_file", str(folder / "tokens"))
    limited = start_server(*model, folder / "l.log", "--max_request_mib", "0.0625")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield Place(
            folder,
            f"127.0.0.1:{up.match.group(1)}",
            f"127.0.0.1:{guarded.match.group(1)}",
            f"127.0.0.1:{limited.match.group(1)}",
            f"127.0.0.1:{free_port()}",
            holder.getsockname()[1],
        )
    for server in (up, guarded, limited):
        server.stop()


# (verb and arguments with {placeholders}, exit code, what the one line must say)
CASES = [
    # bad flag values
    ("serve --port abc", USAGE, "argument --port: invalid int value: 'abc'"),
    ("serve", USAGE, "give either --model_base_path (one model) or --model_config_file"),
    ("serve --model_base_path {folder}/colours --max_batch_size 0", USAGE, "at least 1, got 0"),
    (
        "serve --model_base_path {folder}/colours --precision_tolerance 5",
        USAGE,
        "--precision_tolerance is a probability difference from 0 to 1, got 5.0",
    ),
    ("export efficientnet-lite0 --quantize int9", USAGE, "argument --quantize: invalid choice"),
    ("export", USAGE, "the following arguments are required: SOURCE"),
    ("classify {folder}/red.png --top-k -3 --server {up}", USAGE, "--top-k: must be a positive"),
    ("classify --feature bad --server {up}", USAGE, "--feature takes NAME=VALUE"),
    ("classify {folder}/red.png --concurrency 0", USAGE, "--concurrency must be at least 1"),
    ("classify {folder}/red.png --timeout 0 --server {up}", USAGE, "--timeout: must be a pos"),
    ("predict --timeout -1 --server {up}", USAGE, "--timeout: must be a positive number"),
    ("predict --input nosuch=1 --server {up}", USAGE, "the model has no input 'nosuch'"),
    ("status --timeout 0 --server {up}", USAGE, "--timeout: must be a positive number"),
    ("health --timeout abc --server {up}", USAGE, "--timeout: must be a positive number"),
    ("explain {folder}/red.png --timeout 0 --server {up}", USAGE, "--timeout: must be a pos"),
    ("explain --feature bad --server {up}", USAGE, "--feature takes NAME=VALUE"),
    ("explain --server {up}", USAGE, "give one input: a file"),
    ("web --max_upload_mib -1", USAGE, "--max_upload_mib: must be a positive number, got '-1'"),
    ("web --port abc", USAGE, "argument --port: invalid int value: 'abc'"),
    ("nosuch", USAGE, "invalid choice: 'nosuch'"),
    # missing files
    ("serve --model_config_file {folder}/missing.toml", FAILURE, "missing.toml: cannot be read"),
    ("export onnx {folder}/missing.onnx --labels a,b", FAILURE, "missing.onnx: no such file"),
    ("classify {folder}/missing.png --server {up}", FAILURE, "No such file or directory"),
    ("predict --input image={folder}/missing.npy --server {up}", FAILURE, "cannot read"),
    ("explain {folder}/missing.png --server {up}", FAILURE, "cannot read"),
    # unreadable files
    ("serve --model_config_file {folder}/garbage.toml", FAILURE, "garbage.toml: not valid TOML"),
    (
        "export onnx {folder}/garbage.onnx --labels a,b",
        FAILURE,
        "garbage.onnx is not an ONNX model",
    ),
    ("classify {folder}/garbage.jpg --server {up}", FAILURE, "could not decode image"),
    # ports in use
    (
        "serve --model_base_path {folder}/colours --host 127.0.0.1 --port {taken}",
        FAILURE,
        "cannot listen on 127.0.0.1:{taken} for gRPC: address already in use",
    ),
    ("web --host 127.0.0.1 --port {taken}", FAILURE, "cannot listen on 127.0.0.1:{taken}"),
    # a server that is down
    ("classify {folder}/red.png --server {down}", FAILURE, "the server at {down} is not reach"),
    ("predict --input 1 --server {down}", FAILURE, "the server at {down} is not reachable"),
    ("status --server {down}", FAILURE, "the server at {down} is not reachable"),
    ("explain {folder}/red.png --server {down}", FAILURE, "the server at {down} is not reach"),
    ("health --server {down}", FAILURE, "UNAVAILABLE: health of {down}"),
    # a server that refuses
    ("classify {folder}/red.png --server {guarded}", FAILURE, "missing or invalid credentials"),
    ("predict --input 1 --server {guarded}", FAILURE, "missing or invalid credentials"),
    ("status --server {guarded}", FAILURE, "missing or invalid credentials"),
    ("explain {folder}/red.png --server {guarded}", FAILURE, "missing or invalid credentials"),
    # too much
    ("classify {folder}/big.png --server {limited}", FAILURE, "over the server's limit"),
]


@pytest.mark.parametrize(("command", "code", "says"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_the_right_exit_code(
    place: Place, command: str, code: int, says: str
) -> None:
    values = {**vars(place), "folder": str(place.folder)}
    argv = command.format(**values).split()
    # No token from outside: a bare environment.
    result = run_cli(*argv, env={"PATH": "/usr/bin:/bin", "HOME": str(place.folder)})
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    # Log lines (serve's INFO start-up) and progress lines (export's "[1/5] ...") aside,
    # stderr holds one line: the error.
    log = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) |\[\d+/\d+\] )")
    lines = [line for line in result.stderr.splitlines() if not log.match(line)]
    assert len(lines) == 1, result.stderr
    assert says.format(**values) in lines[0], lines[0]
