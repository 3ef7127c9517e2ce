"""Runs in its own environment with tritonclient: a tensor model through the real client.

Usage: python triton_tensors.py http|grpc ADDRESS
Sends `x` (FP32 [2, 3], binary) to model `reg` and `a`, `b` (INT64 [3]) to model `sp`, and
prints a JSON object with the metadata and what came back, for the test to check.
"""

import json
import sys

import numpy as np


def main() -> None:
    protocol, address = sys.argv[1:3]
    if protocol == "http":
        import tritonclient.http as client_lib
    else:
        import tritonclient.grpc as client_lib
    client = client_lib.InferenceServerClient(address)
    metadata = client.get_model_metadata("sp")
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        metadata = MessageToDict(metadata, preserving_proto_field_name=True)
    x = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0]], dtype=np.float32)
    inp = client_lib.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    y = client.infer("reg", [inp]).as_numpy("y")
    a, b = np.array([1, 2, 3], dtype=np.int64), np.array([4, 5, 6], dtype=np.int64)
    inputs = [client_lib.InferInput(n, [3], "INT64") for n in ("a", "b")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("sp", inputs)
    print(
        json.dumps(
            {
                "metadata": metadata,
                "x": x.tolist(),
                "y": y.tolist(),
                "y_dtype": str(y.dtype),
                "sum": result.as_numpy("sum").tolist(),
                "product": result.as_numpy("product").tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
