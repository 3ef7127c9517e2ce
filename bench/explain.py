"""What one image explanation costs, and what it takes from concurrent classify calls.

    python -m bench.explain --repository models [--model imagenet] [--repeat 10]

Starts `pyserving serve` on the newest version, then measures:

1. one explanation of a 640×480 photo at the default grid: the server's CPU seconds per
   explanation (from /proc, over `--repeat` explanations one at a time) and the median
   wall time, which on a shared machine is only a bound;
2. classify throughput at `--concurrency` for `--seconds`, alone and with one client
   explaining in a loop beside it.

Prints a small Markdown table. A benchmark, never a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.images import chelsea_jpeg
from bench.processes import SERVER_READY, pyserving_server, running
from bench.stats import process_cpu_seconds
from pyserving.client import Client


def explain_cost(address: str, pid: int, photo: bytes, repeat: int) -> tuple[float, float]:
    """(server CPU seconds per explanation, median wall seconds), one at a time."""
    with Client(address, timeout=120) as client:
        client.explain(photo)  # warm up
        walls = []
        before = process_cpu_seconds(pid) or 0.0
        for _ in range(repeat):
            started = time.perf_counter()
            client.explain(photo)
            walls.append(time.perf_counter() - started)
        after = process_cpu_seconds(pid) or 0.0
    return (after - before) / repeat, statistics.median(walls)


def classify_rate(
    address: str, photo: bytes, concurrency: int, seconds: float, explaining: bool
) -> tuple[float, int]:
    """(classify calls per second at `concurrency`, explanations done meanwhile)."""
    stop = threading.Event()
    done = [0] * concurrency
    explained = [0]

    def classify(i: int) -> None:
        with Client(address, timeout=120) as client:
            while not stop.is_set():
                client.classify(photo)
                done[i] += 1

    def explain() -> None:
        with Client(address, timeout=120) as client:
            while not stop.is_set():
                client.explain(photo)
                explained[0] += 1

    workers = concurrency + (1 if explaining else 0)
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(classify, i) for i in range(concurrency)]
        if explaining:
            futures.append(pool.submit(explain))
        time.sleep(seconds)  # the measured window; the clients run meanwhile
        stop.set()
        for f in futures:
            f.result()
    return sum(done) / seconds, explained[0]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="imagenet")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    photo = chelsea_jpeg(640, 480)
    log = Path(tempfile.mkdtemp(prefix="bench-explain-")) / "server.log"
    server = pyserving_server(args.model, args.repository / args.model)
    with running(server, SERVER_READY, log) as endpoint:
        cpu, wall = explain_cost(endpoint.address, endpoint.pid, photo, args.repeat)
        alone, _ = classify_rate(endpoint.address, photo, args.concurrency, args.seconds, False)
        beside, explained = classify_rate(
            endpoint.address, photo, args.concurrency, args.seconds, True
        )
    print("| measurement | value |")
    print("|---|---|")
    print(f"| one explanation (640×480 JPEG, default grid): server CPU | {cpu * 1000:.0f} ms |")
    print(f"| one explanation: median wall time over {args.repeat} | {wall * 1000:.0f} ms |")
    print(f"| classify at concurrency {args.concurrency}, alone | {alone:.1f} req/s |")
    print(
        f"| classify at concurrency {args.concurrency}, one client explaining beside | "
        f"{beside:.1f} req/s ({explained} explanations, {1 - beside / alone:.0%} fewer "
        "classify calls) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
