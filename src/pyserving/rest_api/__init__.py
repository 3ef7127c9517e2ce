"""The REST adapters: one Starlette app with the v2, TF Serving and operations routes.

`app` (routes and the one mapping of errors to responses), `body` (reading and parsing
request bodies), `oip` (Open Inference Protocol v2), `tfs` (TensorFlow Serving's shapes),
`openapi` (the document of the routes). They import the service and plain values, never
the gRPC adapters; `pyserving.server` wires them.
"""
