"""Runs in its own environment with tritonclient (which pins an older protobuf than ours).

Usage: python triton_infer.py http|grpc ADDRESS MODEL IMAGE_FILE
Prints a JSON object with what the server answered, for the test to check.
"""

import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    protocol, address, model, image_path = sys.argv[1:5]
    if protocol == "http":
        import tritonclient.http as client_lib
    else:
        import tritonclient.grpc as client_lib
    client = client_lib.InferenceServerClient(address)
    image = np.array([Path(image_path).read_bytes()], dtype=np.object_)
    metadata = client.get_model_metadata(model)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict

        metadata = MessageToDict(metadata, preserving_proto_field_name=True)
    config = client.get_model_config(model)  # Triton's model-configuration extension
    if protocol == "grpc":
        config = MessageToDict(config, preserving_proto_field_name=True)["config"]
    inp = client_lib.InferInput(metadata["inputs"][0]["name"], [1], "BYTES")
    inp.set_data_from_numpy(image)
    probs_out = client_lib.InferRequestedOutput("probabilities")
    result = client.infer(model, [inp], outputs=[probs_out])
    probs = result.as_numpy("probabilities")
    top = client_lib.InferRequestedOutput("probabilities", class_count=3)
    classes = client.infer(model, [inp], outputs=[top]).as_numpy("probabilities")
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_model_ready(model),
                "metadata": metadata,
                "config": config,
                "shape": list(probs.shape),
                "argmax": int(probs.argmax()),
                "sum": float(probs.sum()),
                "classes": [c.decode() for c in classes.ravel()],
            }
        )
    )


if __name__ == "__main__":
    main()
