"""A soak run: steady load with bad inputs mixed in and a new version every 30 s, watching
the server's memory, file descriptors and threads.

    python -m bench.soak [--minutes 10] [--concurrency 16] [--repository models]

Half the workers call gRPC `classify` (`pyserving.client.AsyncClient`), half POST to REST
`:classify` over kept-alive connections; one request in ten is bad (a truncated JPEG,
random bytes, or nothing), and must be answered INVALID_ARGUMENT / 400. Every
`--swap-seconds` a copy of the model is published as a new version (hidden folder, then
rename, as the exporter does), so the server loads it, swaps it in and unloads the old
one under load. Every `--sample-seconds` the server's RSS, open file descriptors and
threads are read from /proc. Bounded: it stops after `--minutes`, and prints the samples
and each figure's growth from the first sample after warm-up to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.http_client import HttpError, KeepAliveClient
from bench.images import chelsea_jpeg
from bench.models import imagenet_base_path, newest_version
from bench.processes import REST_READY, SERVER_READY, free_port, running
from pyserving.client import AsyncClient
from pyserving.errors import RemoteError

BAD_EVERY = 10  # one request in ten is a bad input


@dataclass(frozen=True)
class Sample:
    """The server process at one moment."""

    seconds: float
    rss_mib: float
    fds: int
    threads: int
    versions_published: int
    requests: int


def read_process(pid: int) -> tuple[float, int, int]:
    """RSS in MiB, open file descriptors and threads of process `pid`, from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss_kib = int(status["VmRSS"].split()[0])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


def bad_inputs(good: bytes) -> list[bytes]:
    """Inputs the server must refuse: cut short, not an image at all, and empty."""
    return [good[: len(good) // 3], random.Random(0).randbytes(2048), b""]


class Outcomes:
    """Counts of what came back, by protocol: OK, refused as expected, and anything else."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, protocol: str, outcome: str) -> None:
        self.counts[f"{protocol} {outcome}"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unexpected(self) -> int:
        return sum(n for key, n in self.counts.items() if key.split()[1] == "unexpected")


async def grpc_worker(
    address: str, good: bytes, bad: list[bytes], until: float, out: Outcomes
) -> None:
    """gRPC classify calls until `until`; every BAD_EVERY-th is a bad input."""
    async with AsyncClient(address, timeout=30) as client:
        n = 0
        # The last sample is taken a second before the load ends, with every client on.
        while time.monotonic() < until - 1:
            n += 1
            data = bad[n % len(bad)] if n % BAD_EVERY == 0 else good
            try:
                await client.classify(data)
                out.add("grpc", "ok" if data is good else "unexpected")
            except RemoteError as exc:
                expected = data is not good and exc.grpc_code == "INVALID_ARGUMENT"
                out.add("grpc", "refused" if expected else "unexpected")


async def rest_worker(
    address: str, good: bytes, bad: list[bytes], until: float, out: Outcomes
) -> None:
    """REST :classify POSTs until `until`; every BAD_EVERY-th is a bad input."""
    path = "/v1/models/imagenet:classify"
    clients = [KeepAliveClient(address, path, data, "image/jpeg") for data in [good, *bad]]
    n = 0
    try:
        # The last sample is taken a second before the load ends, with every client on.
        while time.monotonic() < until - 1:
            n += 1
            which = 1 + n % len(bad) if n % BAD_EVERY == 0 else 0
            try:
                await clients[which].post()
                out.add("rest", "ok" if which == 0 else "unexpected")
            except HttpError as exc:
                expected = which != 0 and exc.code == "HTTP 400"
                out.add("rest", "refused" if expected else "unexpected")
    finally:
        for client in clients:
            await client.aclose()


def publish_copy(base: Path, source: Path, version: int) -> None:
    """Copy version folder `source` to `base/version`: hidden first, then renamed."""
    tmp = base / f".soak-{version}"
    shutil.copytree(source, tmp)
    os.rename(tmp, base / str(version))


async def swapper(
    base: Path, source: Path, every: float, until: float, published: list[int]
) -> None:
    """Publish a new version every `every` seconds until `until`."""
    version = int(source.name)
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        version += 1
        await asyncio.to_thread(publish_copy, base, source, version)
        published.append(version)


async def soak(options: argparse.Namespace, base: Path, scratch: Path) -> bool:
    """Run the load, the swaps and the sampling against one server; True if every answer
    was the expected one."""
    source = newest_version(base)
    args = [
        "-m", "pyserving", "serve", "--model_name", "imagenet", "--model_base_path", str(base),
        "--host", "127.0.0.1", "--port", "0", "--rest_api_port", str(free_port()),
        "--file_system_poll_wait_seconds", "1", "--drain_seconds", "0",
        *shlex.split(options.server_args),
    ]  # fmt: skip
    good = chelsea_jpeg(640, 480)
    bad = bad_inputs(good)
    out = Outcomes()
    published: list[int] = []
    samples: list[Sample] = []
    with running(args, SERVER_READY, scratch / "server.log", rest_ready=REST_READY) as server:
        assert server.rest is not None
        started = time.monotonic()
        until = started + options.minutes * 60
        half = max(1, options.concurrency // 2)
        tasks = [
            *(grpc_worker(server.address, good, bad, until, out) for _ in range(half)),
            *(
                rest_worker(server.rest, good, bad, until, out)
                for _ in range(options.concurrency - half)
            ),
            swapper(base, source, options.swap_seconds, until, published),
        ]
        load = asyncio.gather(*tasks)
        # The last sample is taken a second before the load ends, with every client on.
        while time.monotonic() < until - 1:
            rss, fds, threads = read_process(server.pid)
            sample = Sample(
                time.monotonic() - started, rss, fds, threads, len(published), out.total
            )
            samples.append(sample)
            print(
                f"{sample.seconds:6.0f} s  RSS {rss:7.1f} MiB  fds {fds:4d}  threads {threads:3d}  "
                f"versions +{len(published):<3d} requests {out.total}",
                flush=True,
            )
            await asyncio.sleep(min(options.sample_seconds, max(0.0, until - 1 - time.monotonic())))
        await load
    print()
    for key, n in sorted(out.counts.items()):
        print(f"  {key:<18} {n:>8}")
    report(samples, options.warmup_seconds)
    if out.unexpected:
        print(f"FAILED: {out.unexpected} unexpected answers")
    return not out.unexpected and bool(samples)


def report(samples: Sequence[Sample], warmup: float) -> None:
    """Print each figure's growth from the first sample after warm-up to the last."""
    after = [s for s in samples if s.seconds >= warmup] or list(samples)
    first, last = after[0], samples[-1]
    minutes = max(1e-9, (last.seconds - first.seconds) / 60)
    print(
        f"\ngrowth from {first.seconds:.0f} s to {last.seconds:.0f} s "
        f"({last.versions_published} versions swapped in, {last.requests} requests):"
    )
    for name, unit, a, b in (
        ("RSS", "MiB", first.rss_mib, last.rss_mib),
        ("open fds", "", first.fds, last.fds),
        ("threads", "", first.threads, last.threads),
    ):
        peak = max(getattr(s, _FIELD[name]) for s in after)
        rate = (b - a) / minutes
        change = f"{b - a:+.1f}, {rate:+.2f}/min, peak {peak:.1f}"
        print(f"  {name:<9} {a:8.1f} → {b:8.1f} {unit:<3} ({change})")


_FIELD = {"RSS": "rss_mib", "open fds": "fds", "threads": "threads"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="workers, half gRPC and half REST"
    )
    parser.add_argument("--swap-seconds", type=float, default=30.0, help="a new version this often")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="read /proc this often")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=60.0,
        help="growth is measured from the first sample after this",
    )
    parser.add_argument("--repository", type=Path, help="reuse imagenet/<version>/ from here")
    parser.add_argument(
        "--server-args",
        default="",
        help="more `pyserving serve` flags, e.g. '--engine onnxruntime'",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyserving-soak-") as tmp:
        scratch = Path(tmp)
        # The swaps write into the model folder: work on a copy of a given repository.
        base = scratch / "models" / "imagenet"
        if options.repository is not None:
            shutil.copytree(
                newest_version(imagenet_base_path(options.repository, scratch)), base / "1"
            )
        else:
            imagenet_base_path(None, scratch / "models")
        print(
            f"soak: {options.minutes:g} min, concurrency {options.concurrency}, a new version "
            f"every {options.swap_seconds:g} s, 1 request in {BAD_EVERY} bad",
            flush=True,
        )
        passed = asyncio.run(soak(options, base, scratch))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
