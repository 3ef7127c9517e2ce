"""What names a row: its workload, its input and its concurrency (threads, in process)."""

from __future__ import annotations

from bench.engines import EnginePair

Key = tuple[str, str, int]  # workload, input, concurrency (threads in-process)

CHELSEA, SMALL, HD, LARGE = "451×300", "640×480", "1920×1080", "4000×3000"
FEATURES, NO_BYTES = "4 features", "0 bytes"  # the inputs of the tiny model and the empty call
IN_PROCESS, FULL_SIZE = "in-process", "in-process, full-size decode"
SERVER, REST = "server", "server, REST"
INT8 = "server, REST, int8 version"  # a default server of `--int8-version`
PLAIN_OPENVINO = "plain FastAPI + OpenVINO app"
PLAIN_ONNXRUNTIME = "plain FastAPI + ONNX Runtime app"
TINY, EMPTY = "server, tiny model", "grpc.aio empty call"
OVERLOAD = "server, queue bound 1 batch"
OVERLOAD_CONCURRENCY = 64


def in_process(pair: EnginePair) -> str:
    """The workload of a concrete engine pair run in process."""
    return f"{IN_PROCESS}, {pair.label}"


def served(pair: EnginePair) -> str:
    """The workload of a server started with a pair's `--engine` and `--precision`."""
    return f"{SERVER}, {pair.label}"
