"""pyserving: export a trained model, serve it over gRPC and REST, classify photos on the web."""

import os

# ONNX Runtime 1.29+ sends telemetry on Linux unless this is set before it loads; every
# entry point (`pyserving`, `python -m pyserving`, `import pyserving`) passes through here.
# A value the user set stays as it is.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# gRPC's C core logs at INFO by default, e.g. "Got goaway ... connection idle" each time a
# server closes an idle connection, which is normal and reads like a failure. Its errors
# still show; GRPC_VERBOSITY=INFO (or DEBUG) brings the rest back.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

__version__ = "0.1.0"
