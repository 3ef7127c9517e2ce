"""The `pyserving` command itself: --version, and missing extras as one line with exit 2."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import pyserving
from pyserving.cli.main import build_parser, main
from pyserving.errors import EXTRA_OF_MODULE, MissingExtra, missing_module

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"pyserving {pyserving.__version__}\n"


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == pyserving.__version__


def test_every_module_maps_to_an_extra_of_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)


def test_missing_extra_message() -> None:
    assert str(MissingExtra("jinja2", "web", "pyserving web")) == (
        "pyserving web needs jinja2, which is not installed; install it with: "
        "pip install 'pyserving[web]'"
    )
    found = missing_module(ModuleNotFoundError("no", name="sklearn.linear_model"))
    assert found is not None and found.install == "pip install 'pyserving[sklearn]'"
    assert missing_module(ModuleNotFoundError("no", name="left_pad")) is None


def run_blocked(blocked: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`pyserving ARGS` in a process where the `blocked` modules cannot be imported."""
    script = textwrap.dedent(
        f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None  # as if it were not installed
        from pyserving.cli.main import main
        sys.exit(main({list(args)!r}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("blocked", "args", "line"),
    [
        (
            ["jinja2"],
            ["web"],
            "error: pyserving web needs jinja2, which is not installed; install it with: "
            "pip install 'pyserving[web]'",
        ),
        (
            ["torch"],
            ["export", "efficientnet-lite0"],
            "error: efficientnet-lite0 needs torch, which is not installed; install it with: "
            "pip install 'pyserving[export]'",
        ),
        (
            ["openvino"],
            ["serve", "--model_base_path", "models/x", "--engine", "openvino"],
            "error: --engine openvino needs openvino, which is not installed; install it with: "
            "pip install 'pyserving[openvino]'",
        ),
    ],
    ids=["web", "export", "engine"],
)
def test_a_missing_extra_is_one_line_and_exit_2(
    blocked: list[str], args: list[str], line: str
) -> None:
    result = run_blocked(blocked, *args)
    assert (result.returncode, result.stderr.strip()) == (2, line)


def test_grpc_info_lines_stay_quiet(tmp_path: Path) -> None:
    """A server closing an idle connection is normal: gRPC must not log it to the user."""
    script = tmp_path / "idle.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            from concurrent import futures

            import pyserving  # every entry point imports it first
            import grpc
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc

            server = grpc.server(
                futures.ThreadPoolExecutor(2), options=[("grpc.max_connection_idle_ms", 200)]
            )
            health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = health_pb2_grpc.HealthStub(channel)
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            idle = threading.Event()
            channel.subscribe(lambda state: idle.set() if state.name == "IDLE" else None)
            assert idle.wait(10), "the server never closed the idle connection"
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            print("done")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.stdout == "done\n", result.stderr
    assert result.stderr == ""


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser, and each export source's, by its command line."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found[f"{prefix} {name}".strip()] = child
                    walk(f"{prefix} {name}", child)

    walk("", build_parser())
    return found


def test_every_option_of_every_verb_says_what_it_is_and_its_default() -> None:
    parsers = verb_parsers()
    assert {"serve", "classify", "predict", "status", "health", "web", "export torch"} <= set(
        parsers
    )
    for command, parser in parsers.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"pyserving {command} {action.option_strings[0]} has no help"
            default = action.default
            if default is None or default is False or default in ("", []):
                continue
            shown = f"(default: {default})" if action.help else f"default: {default}"
            assert shown in text, f"pyserving {command} --help: {action.option_strings[0]}"
