"""The seed's client: a stub compiled from the original 2016 proto, run in its own process.

Its messages have the same full names as ours, so it cannot share a process with
`pyserving._proto`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

ORIGINAL_PROTO = """\
syntax = "proto3";
message ClassificationRequest { bytes input = 1; };
message ClassificationResponse { repeated ClassificationClass classes = 1; };
message ClassificationClass { string name = 1; float score = 2; }
service ClassificationService { rpc classify(ClassificationRequest) returns (ClassificationResponse); }
"""  # noqa: E501 - kept exactly as the original

_SCRIPT = textwrap.dedent(
    """
    import base64, json, sys, grpc
    folder, address, inputs = sys.argv[1:4]
    sys.path.insert(0, folder)
    import original_pb2, original_pb2_grpc
    stub = original_pb2_grpc.ClassificationServiceStub(grpc.insecure_channel(address))
    with open(inputs) as lines:
        for line in lines:
            data = base64.b64decode(line)
            reply = stub.classify(original_pb2.ClassificationRequest(input=data), timeout=30)
            print(json.dumps([[c.name, c.score] for c in reply.classes]))
    """
)


def compile_seed(folder: Path) -> Path:
    """Compile the original proto into `folder` with grpc_tools; returns `folder`."""
    from grpc_tools import protoc

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "original.proto").write_text(ORIGINAL_PROTO)
    args = ["protoc", f"-I{folder}", f"--python_out={folder}", f"--grpc_python_out={folder}"]
    if protoc.main([*args, str(folder / "original.proto")]) != 0:
        raise RuntimeError("protoc could not compile the original proto")
    return folder


def seed_classify(
    address: str, inputs: Sequence[bytes], folder: Path, timeout: float = 300.0
) -> list[list[tuple[str, float]]]:
    """Classify each input with the seed's stub, one call each: the classes of every reply."""
    import base64

    compile_seed(folder)
    listing = folder / "inputs.b64"
    listing.write_text("".join(base64.b64encode(data).decode() + "\n" for data in inputs))
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder), address, str(listing)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    return [[(name, score) for name, score in json.loads(line)] for line in out.splitlines()]
