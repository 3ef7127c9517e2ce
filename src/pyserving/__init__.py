"""pyserving: export a trained model, serve it over gRPC and REST, classify photos on the web."""

__version__ = "0.1.0"
