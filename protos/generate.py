"""Generate the gRPC stubs in src/pyserving/_proto from the .proto files here.

Usage: python protos/generate.py OUT_DIR. The stubs are committed, so a serving-only
install needs no grpcio-tools; tests/test_protos.py fails when they are out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).parent


def generate(out: Path) -> None:
    """Write `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` for every proto into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    for proto in sorted(PROTOS.glob("*.proto")):
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{include}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(proto),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {proto}")
    # protoc writes top-level imports of the protos here; inside a package they are relative.
    for path in [*out.glob("*_pb2_grpc.py"), *out.glob("*_pb2.py"), *out.glob("*_pb2.pyi")]:
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", path.read_text(), flags=re.M)
        path.write_text(text)
    init = out / "__init__.py"
    init.write_text('"""Generated gRPC stubs (`make proto`); do not edit."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
