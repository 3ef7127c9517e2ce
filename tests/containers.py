"""Podman for the image tests: the engine's settings, containers that clean up after themselves.

Every container publishes its ports on 127.0.0.1 only, on free ports, and runs with the
ulimits this machine kind allows (no CAP_SYS_RESOURCE, a hard limit of 20000 open files).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
TAG = "tests"


def engine_env() -> dict[str, str]:
    """This environment, with podman pointed at the repository's containers.conf."""
    return {
        **os.environ,
        "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF)),
    }


def missing_reason() -> str:
    """Why podman cannot run containers here, or "" when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (`make podman` installs it from Debian)"
    done = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return f"podman cannot run here: {done.stderr.strip()[-300:]}"
    return ""


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; with `check`, fail with its output on a non-zero exit."""
    done = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def image(target: str) -> str:
    """The name the session's build gives the image of Dockerfile target `target`."""
    return f"localhost/pyserving-{target}:{TAG}"


def image_size(name: str) -> int:
    """The image's size in bytes, as `podman images` reports it."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


@dataclass(frozen=True)
class Container:
    """A container started by `running`: its name and its ports as published on 127.0.0.1."""

    name: str
    ports: Mapping[int, int]  # container port: host port

    def address(self, port: int) -> str:
        return f"127.0.0.1:{self.ports[port]}"

    def url(self, port: int) -> str:
        return f"http://{self.address(port)}"

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def healthy(self) -> bool:
        """Run the image's HEALTHCHECK once (no systemd runs it on a timer here)."""
        return podman("healthcheck", "run", self.name, check=False, timeout=30).returncode == 0

    def wait_healthy(self, timeout: float = 120) -> None:
        def healthy_or_exited() -> bool:
            state = self.inspect("{{.State.Status}}")
            assert state == "running", f"{self.name} is {state}:\n{self.logs()}"
            return self.healthy()

        wait_for(healthy_or_exited, timeout, f"{self.name}'s HEALTHCHECK")


@contextmanager
def running(
    image_name: str,
    *args: str,
    ports: Sequence[int] = (),
    options: Sequence[str] = (),
    name: str = "",
) -> Iterator[Container]:
    """`podman run -d` the image with `args`, its `ports` published on free loopback ports."""
    name = name or f"pyserving-test-{uuid.uuid4().hex[:10]}"
    published = {port: free_port() for port in ports}
    publish = [f"--publish=127.0.0.1:{host}:{port}" for port, host in published.items()]
    podman("run", "-d", "--name", name, *ULIMITS, *publish, *options, image_name, *args)
    try:
        yield Container(name, published)
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


@contextmanager
def network() -> Iterator[str]:
    """A podman network of its own, removed afterwards."""
    name = f"pyserving-test-{uuid.uuid4().hex[:10]}"
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "--force", name, check=False)
