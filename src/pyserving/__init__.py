"""pyserving: export a trained model, serve it over gRPC and REST, classify photos on the web."""

import os

# ONNX Runtime 1.29+ sends telemetry on Linux unless this is set before it loads; every
# entry point (`pyserving`, `python -m pyserving`, `import pyserving`) passes through here.
# A value the user set stays as it is.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
