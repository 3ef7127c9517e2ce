"""Model lifecycle with real server processes: swaps under load, policies, config reloads."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from pyserving.client import AsyncClient, Client
from pyserving.errors import RemoteError
from tests.onnx_models import publish, write_version_servable
from tests.processes import RunningProcess, rss_bytes, start_serve, start_server, wait_for

POLL = "0.1"


def report(tmp_path: Path, line: str) -> None:
    """Measurements for the notes: printed, and kept in the session's temporary folder."""
    print(line)
    with (tmp_path.parent / "lifecycle-results.txt").open("a") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def states(client: Client, model: str) -> dict[int, str]:
    """Version → state of `model`; empty while the server does not know the model."""
    try:
        (status,) = client.model_status(model)
    except RemoteError as exc:
        if exc.grpc_code == "NOT_FOUND":
            return {}
        raise
    return {v.version: v.state for v in status.versions}


def answer_version(client: Client, model: str = "", version: int = 0) -> int:
    result = client.classify(features={"x": 1.0}, model_name=model, model_version=version)
    assert result.predictions[0].name == f"v{result.model_version}"  # the model itself agrees
    return result.model_version


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[list[RunningProcess]]:
    started: list[RunningProcess] = []
    yield started
    for server in started:
        server.stop()


def serve(started: list[RunningProcess], tmp_path: Path, base: Path, *extra: str) -> Client:
    log = tmp_path / f"server-{len(started)}.log"
    server = start_server("versions", base, log, "--file_system_poll_wait_seconds", POLL, *extra)
    started.append(server)
    return Client(f"127.0.0.1:{server.match.group(1)}", timeout=10)


@dataclass
class Load:
    """Client tasks classifying in a loop, recording every answer and every failure."""

    address: str
    answers: list[tuple[float, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, tasks: int = 4, max_requests: int = 4000, max_seconds: float = 30) -> None:
        deadline = time.monotonic() + max_seconds
        async with AsyncClient(self.address, timeout=10) as client:

            async def worker() -> None:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    if len(self.answers) + len(self.failures) >= max_requests:
                        return
                    try:
                        result = await client.classify(features={"x": 1.0})
                        self.answers.append((time.monotonic(), result.model_version))
                    except RemoteError as exc:
                        self.failures.append(f"{exc.grpc_code}: {exc}")

            await asyncio.gather(*(worker() for _ in range(tasks)))

    async def until(self, condition: object, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if callable(condition) and condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"load condition not met in {within} s")


async def test_swap_under_load_loses_no_request(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    client = serve(server_factory, tmp_path, base)
    load = Load(client.address)
    running = asyncio.create_task(load.run())
    await load.until(lambda: len(load.answers) >= 50, 20)

    appeared = time.monotonic()
    await asyncio.to_thread(publish, base, 2, lambda f: write_version_servable(f, 2))
    await load.until(lambda: any(v == 2 for _, v in load.answers), 20)
    first_v2 = next(t for t, v in load.answers if v == 2)
    swap_seconds = first_v2 - appeared
    seen = len(load.answers)
    await load.until(lambda: len(load.answers) >= seen + 100, 20)
    assert {v for _, v in load.answers[-50:]} == {2}
    assert await asyncio.to_thread(lambda: states(client, "versions")) == {
        1: "END",
        2: "AVAILABLE",
    }

    # A corrupt version 3: it fails, version 2 keeps serving, the status says why.
    def corrupt(folder: Path) -> None:
        write_version_servable(folder, 3)
        (folder / "model.onnx").write_bytes(b"\x00not an onnx model")

    await asyncio.to_thread(publish, base, 3, corrupt)
    status = await asyncio.to_thread(
        wait_for,
        lambda: next(
            (v for v in client.model_status("versions")[0].versions if v.state == "FAILED"), None
        ),
        20,
        "version 3 to fail",
    )
    assert status.version == 3 and "model.onnx" in status.error
    seen = len(load.answers)
    await load.until(lambda: len(load.answers) >= seen + 100, 20)
    assert {v for _, v in load.answers[seen:]} == {2}

    # A fixed copy under a new number loads normally.
    await asyncio.to_thread(publish, base, 4, lambda f: write_version_servable(f, 4))
    await load.until(lambda: load.answers[-1][1] == 4, 20)
    load.stop.set()
    await running

    assert load.failures == []
    assert len(load.answers) <= 4000
    report(
        tmp_path,
        f"swap under load: version folder to first answer {swap_seconds * 1000:.0f} ms "
        f"(poll {POLL} s); {len(load.answers)} requests, {len(load.failures)} failed",
    )


def test_pinned_versions_and_unknown_versions(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    client = serve(server_factory, tmp_path, base)
    for version, code in [(1, None), (99, "NOT_FOUND")]:
        if code is None:
            assert answer_version(client, version=version) == 1
            continue
        with pytest.raises(RemoteError) as info:
            answer_version(client, version=version)
        assert info.value.grpc_code == code


def test_latest_two_serves_both_and_deleted_version_is_unloaded(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    base = tmp_path / "versions"
    for v in (1, 2, 3):
        publish(base, v, partial(write_version_servable, version=v))
    client = serve(server_factory, tmp_path, base, "--num_versions", "2")
    assert states(client, "versions") == {2: "AVAILABLE", 3: "AVAILABLE"}
    assert answer_version(client) == 3
    assert answer_version(client, version=2) == 2
    assert answer_version(client, version=3) == 3
    with pytest.raises(RemoteError) as info:
        answer_version(client, version=1)
    assert info.value.grpc_code == "NOT_FOUND"

    shutil.rmtree(base / "3")
    wait_for(lambda: states(client, "versions").get(3) == "END", 20, "version 3 unloaded")
    assert answer_version(client) == 2
    with pytest.raises(RemoteError):
        answer_version(client, version=3)


def test_half_written_versions_are_never_loaded(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    base = tmp_path / "versions"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    client = serve(server_factory, tmp_path, base, "--version_policy", "all")
    write_version_servable(base / ".export-123", 9)  # the exporter's temporary folder
    copying = write_version_servable(base / "8", 8)  # a copy without servable.json yet
    (copying / "servable.json").unlink()
    publish(base, 5, lambda f: write_version_servable(f, 5))
    # Version 5 appeared after the others, so the scan that loaded it saw them too.
    wait_for(lambda: states(client, "versions").get(5) == "AVAILABLE", 20, "version 5")
    assert states(client, "versions") == {1: "AVAILABLE", 5: "AVAILABLE"}
    write_version_servable(base / "8", 8)  # the copy completes: now it loads
    wait_for(lambda: states(client, "versions").get(8) == "AVAILABLE", 20, "version 8")
    assert answer_version(client) == 8


def _config(models: dict[str, tuple[Path, str]]) -> str:
    lines = []
    for name, (path, extra) in models.items():
        lines += ["[[models]]", f'name = "{name}"', f'base_path = "{path}"', extra, ""]
    return "\n".join(lines)


def test_models_from_a_config_file_are_added_and_removed(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    bases = {n: tmp_path / n for n in ("a", "b", "c")}
    for i, base in enumerate(bases.values(), start=1):
        publish(base, i, partial(write_version_servable, version=i))
        publish(base, 10 + i, partial(write_version_servable, version=10 + i))
    config = tmp_path / "models.toml"
    config.write_text(
        _config(
            {
                "a": (bases["a"], ""),
                "b": (bases["b"], 'version_policy = "specific"\nversions = [2]'),
            }
        )
    )
    server = start_serve(
        tmp_path / "server.log",
        "--model_config_file",
        str(config),
        "--model_config_file_poll_wait_seconds",
        POLL,
        "--file_system_poll_wait_seconds",
        POLL,
    )
    server_factory.append(server)
    client = Client(f"127.0.0.1:{server.match.group(1)}", timeout=10)
    wait_for(lambda: states(client, "b") == {2: "AVAILABLE"}, 20, "model b")
    assert answer_version(client) == 11  # default: the first model, newest version
    assert answer_version(client, "b") == 2  # specific [2] ignores the newer 12

    config.write_text("[[models]]\nname = broken")  # an error keeps the last good config
    config.write_text(
        _config(
            {
                "b": (bases["b"], 'version_policy = "specific"\nversions = [2]'),
                "c": (bases["c"], ""),
            }
        )
    )
    wait_for(lambda: states(client, "c") == {13: "AVAILABLE"}, 20, "model c added")
    assert answer_version(client, "c") == 13
    wait_for(lambda: [m.name for m in client.model_status()] == ["b", "c"], 20, "a removed")
    with pytest.raises(RemoteError) as info:
        answer_version(client, "a")
    assert info.value.grpc_code == "NOT_FOUND"
    assert answer_version(client) == 2  # the new default is b


def test_a_bad_config_edit_keeps_the_last_good_config(
    server_factory: list[RunningProcess], tmp_path: Path
) -> None:
    base = tmp_path / "a"
    publish(base, 1, lambda f: write_version_servable(f, 1))
    config = tmp_path / "models.toml"
    config.write_text(_config({"a": (base, "")}))
    server = start_serve(
        tmp_path / "server.log",
        "--model_config_file",
        str(config),
        "--model_config_file_poll_wait_seconds",
        POLL,
    )
    server_factory.append(server)
    client = Client(f"127.0.0.1:{server.match.group(1)}", timeout=10)
    config.write_text('[[models]]\nname = "a"\nbase_path = \n')
    wait_for(lambda: "keeping the last good config" in server.output(), 20, "config error log")
    assert "line 3" in server.output()
    assert answer_version(client, "a") == 1


def test_memory_is_released_across_swaps(
    server_factory: list[RunningProcess], tmp_path: Path, imagenet_repository: Path
) -> None:
    """20 load/swap cycles of EfficientNet-Lite0: RSS stays within 1.5× of the first load."""
    (exported,) = (imagenet_repository / "imagenet").iterdir()
    base = tmp_path / "imagenet"
    publish(base, 1, lambda f: shutil.copytree(exported, f))
    client = serve(server_factory, tmp_path, base)
    pid = server_factory[-1].process.pid
    first = rss_bytes(pid)
    for version in range(2, 22):
        publish(base, version, lambda f: shutil.copytree(exported, f))
        ended = partial(lambda v: states(client, "versions").get(v) == "END", version - 1)
        wait_for(ended, 60, f"version {version - 1} to end")
    last = rss_bytes(pid)
    report(
        tmp_path,
        f"RSS after first load {first / 2**20:.0f} MiB, after 20 swaps "
        f"{last / 2**20:.0f} MiB ({last / first:.2f}x)",
    )
    assert last <= 1.5 * first
