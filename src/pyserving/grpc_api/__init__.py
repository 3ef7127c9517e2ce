"""The gRPC adapters: protos in, service calls, protos or status codes out.

`classification` (the product's own service), `oip` (Open Inference Protocol v2),
`health` (`grpc.health.v1`), and `calls` (deadlines, and the one mapping of domain errors
to status codes). They import the service and plain values, never each other's modules
or the REST adapters; `pyserving.server` wires them.
"""
