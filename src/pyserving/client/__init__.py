"""The Python client: gRPC calls to pyserving servers, health probes, what a file holds."""

from pyserving.client.client import DEFAULT_ADDRESS, AsyncClient, Client, ClientTLS

__all__ = ["DEFAULT_ADDRESS", "AsyncClient", "Client", "ClientTLS"]
