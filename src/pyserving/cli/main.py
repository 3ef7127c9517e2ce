"""The `pyserving` command: export, serve, classify, predict. Flags are parsed here, once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import pyserving
from pyserving.cli.export import add_export_sources
from pyserving.cli.tfs_flags import add_tf_serving_flags, tf_serving_settings
from pyserving.client import DEFAULT_ADDRESS, Client, ClientTLS
from pyserving.client.auth import TOKEN_ENV, client_token
from pyserving.core.model_config import read_model_config
from pyserving.core.settings import (
    ENGINE_CHOICES,
    PRECISION_CHOICES,
    BatchingSettings,
    ModelConfig,
    Settings,
    VersionPolicy,
    default_compiled_model_cache,
)
from pyserving.errors import (
    ConfigError,
    MissingExtra,
    PyservingError,
    UsageError,
    missing_module,
)
from pyserving.units import MiB


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pyserving` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # uvicorn logs its start-up chatter as INFO under the name "uvicorn.error"; the
    # servers log what matters (ports, URL) themselves.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.root.level))
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except PyservingError as exc:  # UsageError and MissingExtra exit 2, the rest 1
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        # A lazy import that no command turned into its own MissingExtra.
        missing = missing_module(exc)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return missing.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout left (`| head`): stop quietly, as other Unix tools do, and
        # point stdout at /dev/null so that flushing it at exit raises nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


SERVER_HELP = "the model server's gRPC address; several, comma-separated, are balanced"
MAX_TOP_K = 2**31 - 1  # the wire's uint32, kept to what every client's int type holds


def positive(text: str) -> float:
    """A flag that takes a positive number of seconds or MiB; argparse's usage error if not."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def top_k(text: str) -> int:
    """`--top-k`: a positive integer, or argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer up to {MAX_TOP_K:,}, got {text!r}"
        )
    return value


# The one home of the server's defaults: each `serve` flag takes its default from here.
DEFAULTS = Settings(models=())


class ShowsDefaults(argparse.HelpFormatter):
    """Help that ends each option's line with its default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default in ("", [], argparse.SUPPRESS)  # not 0, which `in` takes for False
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class VerbParser(argparse.ArgumentParser):
    """A verb's parser (argparse's `parser_class`): its help shows the defaults.

    Nested verbs (`export SOURCE`) get it too: argparse makes them of their parent's class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", ShowsDefaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, not the usage block: what was wrong and where the help is (exit 2)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = VerbParser(
        prog="pyserving", description=__doc__, formatter_class=argparse.HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"pyserving {pyserving.__version__}")
    parser.add_argument("--log_level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=VerbParser)

    serve = commands.add_parser("serve", help="serve models over gRPC")
    serve.add_argument("--model_name", default="default", help="name of the served model")
    serve.add_argument("--model_base_path", type=Path, help="folder holding the model's versions")
    serve.add_argument(
        "--model_config_file", type=Path, help="a models.toml listing several models"
    )
    serve.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=DEFAULTS.model_config_file_poll_wait_seconds,
        help="re-read the config file this often (0: never)",
    )
    serve.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=DEFAULTS.file_system_poll_wait_seconds,
        help="scan for new versions this often (0: only at start)",
    )
    serve.add_argument(
        "--version_policy",
        default="latest",
        choices=["latest", "all"],
        help="with --model_base_path; a config file can also pin specific versions",
    )
    serve.add_argument("--num_versions", type=int, default=1, help="for --version_policy latest")
    serve.add_argument("--host", default=DEFAULTS.host, help="address to listen on")
    serve.add_argument(
        "--port", type=int, default=DEFAULTS.port, help="gRPC port (0: any free port)"
    )
    serve.add_argument(
        "--rest_api_port", type=int, default=DEFAULTS.rest_api_port, help="REST port (0: none)"
    )
    serve.add_argument(
        "--max_request_mib",
        type=float,
        default=DEFAULTS.max_request_bytes / MiB,
        help="largest request, and largest input tensor of a tensor model",
    )
    serve.add_argument(
        "--max_header_kib",
        type=float,
        default=DEFAULTS.max_header_bytes / 1024,
        help="largest REST headers or gRPC metadata of one request (431 / RESOURCE_EXHAUSTED)",
    )
    serve.add_argument(
        "--max_headers",
        type=int,
        default=DEFAULTS.max_headers,
        help="most REST headers in one request (431)",
    )
    serve.add_argument(
        "--max_connections",
        type=int,
        default=DEFAULTS.max_connections,
        help="most connections at once per port (REST: and requests; over it 503)",
    )
    serve.add_argument(
        "--max_concurrent_streams",
        type=int,
        default=DEFAULTS.max_concurrent_streams,
        help="most gRPC calls at once on one connection (HTTP/2 SETTINGS)",
    )
    serve.add_argument(
        "--idle_timeout_seconds",
        type=float,
        default=DEFAULTS.idle_timeout_seconds,
        help="close a connection idle this long (above clients' own keep-alive expiry)",
    )
    serve.add_argument(
        "--max_image_pixels",
        type=int,
        default=DEFAULTS.max_image_pixels,
        help="largest image accepted, in pixels (checked before decoding)",
    )
    serve.add_argument(
        "--max_text_chars",
        type=int,
        default=DEFAULTS.max_text_chars,
        help="longest text a text model takes, in characters",
    )
    serve.add_argument(
        "--max_audio_seconds",
        type=float,
        default=DEFAULTS.max_audio_seconds,
        help="longest clip an audio model takes, in seconds (read from the clip's header)",
    )
    serve.add_argument(
        "--max_batch_size",
        type=int,
        default=DEFAULTS.batching.max_batch_size,
        help="inputs per ONNX call",
    )
    serve.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=DEFAULTS.batching.batch_timeout_micros,
        help="how long a partial batch waits for more (0: never; right for CPUs)",
    )
    serve.add_argument(
        "--max_enqueued_batches",
        type=int,
        default=DEFAULTS.batching.max_enqueued_batches,
        help="queue bound in batches; beyond it requests fail with RESOURCE_EXHAUSTED",
    )
    serve.add_argument(
        "--num_batch_threads",
        type=int,
        default=DEFAULTS.batching.num_batch_threads,
        help="batches of a version run at once (0: one per core)",
    )
    serve.add_argument(
        "--worker_threads", type=int, default=DEFAULTS.worker_threads, help="0: cores + 2"
    )
    serve.add_argument(
        "--intra_op_threads",
        type=int,
        default=DEFAULTS.intra_op_threads,
        help="ONNX Runtime threads per call (0: cores / --num_batch_threads)",
    )
    serve.add_argument(
        "--worker_niceness",
        type=int,
        default=DEFAULTS.worker_niceness,
        help="nice value added to decode/inference threads, so the network side stays "
        "responsive under load (0: off)",
    )
    serve.add_argument(
        "--graph_optimization_level",
        default=DEFAULTS.graph_optimization_level,
        choices=["disable", "basic", "extended", "all"],
        help="ONNX Runtime graph optimisations",
    )
    serve.add_argument(
        "--disable_cpu_mem_arena",
        action="store_true",
        help="don't keep ONNX Runtime's buffers between calls (less memory, slower)",
    )
    serve.add_argument(
        "--execution_provider",
        default=DEFAULTS.execution_provider,
        choices=["cpu", "cuda"],
        help="where ONNX Runtime runs the models",
    )
    serve.add_argument(
        "--compiled_model_cache",
        default=str(default_compiled_model_cache()),  # read now: it follows $XDG_CACHE_HOME
        help="folder where OpenVINO keeps compiled models, so loads and swaps are faster "
        "(empty: no cache)",
    )
    serve.add_argument(
        "--engine",
        default=DEFAULTS.engine,
        choices=ENGINE_CHOICES,
        help="what runs model.onnx (auto: by a fixed rule, the same on every start: a "
        "verified bf16 or int8 on OpenVINO for a model of 1 MiB or more, else ONNX Runtime)",
    )
    serve.add_argument(
        "--precision",
        default=DEFAULTS.precision,
        choices=PRECISION_CHOICES,
        help="f32, bf16 (OpenVINO on a CPU with bf16), or auto: bf16 (or an int8 export) "
        "where the version's reference set passes through it, else f32",
    )
    serve.add_argument(
        "--precision_tolerance",
        type=float,
        default=DEFAULTS.precision_tolerance,
        help="largest probability difference on the reference set a reduced precision may make",
    )
    serve.add_argument(
        "--drain_seconds",
        type=float,
        default=DEFAULTS.drain_seconds,
        help="on SIGTERM: health turns NOT_SERVING and requests are still served this long, "
        "so load balancers move away; then new requests get UNAVAILABLE / 503",
    )
    serve.add_argument(
        "--shutdown_grace_seconds",
        type=float,
        default=DEFAULTS.shutdown_grace_seconds,
        help="after the drain: how long requests in flight may take to finish",
    )
    serve.add_argument(
        "--auth_token_file",
        type=Path,
        help="accepted bearer tokens, one a line, re-read on change: every call but health "
        "then needs `authorization: Bearer <token>` (401 / UNAUTHENTICATED otherwise)",
    )
    serve.add_argument(
        "--auth_metrics",
        action="store_true",
        help="with --auth_token_file: /metrics needs a token too (default: open for scrapers)",
    )
    serve.add_argument("--ssl_cert", type=Path, help="PEM certificate: serve TLS on both ports")
    serve.add_argument("--ssl_key", type=Path, help="PEM private key for --ssl_cert")
    serve.add_argument(
        "--ssl_client_ca", type=Path, help="PEM CA: require client certificates it signed (mTLS)"
    )
    add_tf_serving_flags(serve)
    serve.set_defaults(run=run_serve)

    export = commands.add_parser("export", help="export a model into a repository")
    add_export_sources(export.add_subparsers(required=True, metavar="SOURCE"))

    classify = commands.add_parser("classify", help="classify inputs with a running server")
    classify.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files, or folders searched recursively for the inputs the model takes",
    )
    classify.add_argument("--server", default=DEFAULT_ADDRESS, help=SERVER_HELP)
    classify.add_argument("--model", default="", help="model name (default: the server's)")
    classify.add_argument("--version", type=int, default=0, help="0: the newest")
    classify.add_argument(
        "--top-k", type=top_k, default=5, help="classes per input, best first (1 or more)"
    )
    classify.add_argument(
        "--feature", action="append", default=[], metavar="NAME=VALUE", help="for features models"
    )
    classify.add_argument(
        "--text", action="append", default=[], help="for text models: a text to classify"
    )
    classify.add_argument("--timeout", type=positive, default=30.0, help="seconds per call")
    classify.add_argument(
        "--concurrency", type=int, default=8, help="files sent at once (folders and --output)"
    )
    classify.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write one row per file to FILE.csv or FILE.jsonl (default: print them)",
    )
    add_client_tls(classify)
    classify.set_defaults(run=run_classify)

    predict = commands.add_parser(
        "predict", help="run a tensor model with a running server (OIP v2 over gRPC)"
    )
    predict.add_argument("--server", default=DEFAULT_ADDRESS, help=SERVER_HELP)
    predict.add_argument("--model", default="", help="model name (default: the server's)")
    predict.add_argument("--version", type=int, default=0, help="0: the newest")
    predict.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="an input: comma-separated values, shaped as the model takes them, or a .npy "
        "file (NAME=x.npy); repeat for each input (NAME= may be left out for a one-input model)",
    )
    predict.add_argument(
        "--output", action="append", default=[], help="an output to return (default: all)"
    )
    predict.add_argument("--json", action="store_true", help="print the answer as JSON")
    predict.add_argument("--timeout", type=positive, default=30.0, help="seconds per call")
    add_client_tls(predict)
    predict.set_defaults(run=run_predict)

    status = commands.add_parser("status", help="show each model version's state")
    status.add_argument("--server", default=DEFAULT_ADDRESS, help=SERVER_HELP)
    status.add_argument("--model", default="", help="one model (default: all)")
    status.add_argument("--timeout", type=positive, default=10.0, help="seconds per call")
    add_client_tls(status)
    status.set_defaults(run=run_status)

    health = commands.add_parser(
        "health", help="ask a server's gRPC health service; exit 0 when SERVING (for probes)"
    )
    health.add_argument("--server", default=DEFAULT_ADDRESS, help=SERVER_HELP)
    health.add_argument("--service", default="", help='a model name ("": the whole server)')
    health.add_argument("--timeout", type=positive, default=3.0, help="seconds per call")
    add_client_tls(health)
    health.set_defaults(run=run_health)

    web = commands.add_parser(
        "web", help="the web app: upload photos or clips, type text, see the classes"
    )
    web.add_argument("--server", default=DEFAULT_ADDRESS, help="model server's gRPC address")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on")
    web.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    web.add_argument("--max_upload_mib", type=positive, default=20, help="largest upload")
    web.add_argument(
        "--models",
        default="",
        help="comma-separated model names to offer in a picker; the first is the default",
    )
    add_client_tls(web)
    web.set_defaults(run=run_web)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    from pyserving.engines import engine_module
    from pyserving.server import serve

    settings = serve_settings(args)
    if args.engine != "auto" and engine_module(args.engine).available():
        # Asked for by name, it is a usage error; a model config's engine fails that model.
        # Each optional engine is installed by the extra of its own name.
        raise MissingExtra(args.engine, args.engine, f"--engine {args.engine}")
    asyncio.run(serve(settings))
    return 0


def serve_settings(args: argparse.Namespace) -> Settings:
    """Settings from `pyserving serve` flags. Raises ConfigError when they don't add up."""
    if (args.model_base_path is None) == (args.model_config_file is None):
        raise UsageError("give either --model_base_path (one model) or --model_config_file")
    models: tuple[ModelConfig, ...] = ()
    default = ""
    batching = BatchingSettings(
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        max_enqueued_batches=args.max_enqueued_batches,
        num_batch_threads=args.num_batch_threads,
    )
    for flag, value, least in (
        ("--max_batch_size", batching.max_batch_size, 1),
        ("--batch_timeout_micros", batching.batch_timeout_micros, 0),
        ("--max_enqueued_batches", batching.max_enqueued_batches, 1),
        ("--num_batch_threads", batching.num_batch_threads, 0),
    ):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    tf_serving = tf_serving_settings(args, batching)
    batching = tf_serving["batching"]
    if not 0 <= args.precision_tolerance <= 1:
        raise UsageError(
            f"--precision_tolerance is a probability difference from 0 to 1, got "
            f"{args.precision_tolerance}"
        )
    if not args.max_audio_seconds > 0:
        raise UsageError(f"--max_audio_seconds must be positive, got {args.max_audio_seconds}")
    if args.model_config_file is not None:
        models, default = read_model_config(args.model_config_file, batching)
    else:
        policy = VersionPolicy(args.version_policy, num_versions=args.num_versions)
        models = (ModelConfig(args.model_name, args.model_base_path, policy),)
    return Settings(
        models=models,
        default_model=default,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        host=args.host,
        port=args.port,
        rest_api_port=args.rest_api_port,
        max_request_bytes=int(args.max_request_mib * MiB),
        max_header_bytes=int(args.max_header_kib * 1024),
        max_headers=args.max_headers,
        max_connections=args.max_connections,
        max_concurrent_streams=args.max_concurrent_streams,
        idle_timeout_seconds=args.idle_timeout_seconds,
        max_image_pixels=args.max_image_pixels,
        max_text_chars=args.max_text_chars,
        max_audio_seconds=args.max_audio_seconds,
        batching=batching,
        worker_threads=args.worker_threads,
        intra_op_threads=tf_serving.get("intra_op_threads", args.intra_op_threads),
        metrics_path=tf_serving.get("metrics_path"),
        worker_niceness=args.worker_niceness,
        graph_optimization_level=args.graph_optimization_level,
        cpu_memory_arena=not args.disable_cpu_mem_arena,
        execution_provider=args.execution_provider,
        compiled_model_cache=Path(args.compiled_model_cache) if args.compiled_model_cache else None,
        engine=args.engine,
        precision=args.precision,
        precision_tolerance=args.precision_tolerance,
        drain_seconds=args.drain_seconds,
        auth_token_file=args.auth_token_file,
        auth_metrics=args.auth_metrics,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        **_server_tls(args),
    )


def _server_tls(args: argparse.Namespace) -> dict[str, Path | None]:
    if bool(args.ssl_cert) != bool(args.ssl_key):
        raise UsageError("--ssl_cert and --ssl_key go together")
    if args.ssl_client_ca and not args.ssl_cert:
        raise UsageError("--ssl_client_ca needs --ssl_cert and --ssl_key")
    for path in (args.ssl_cert, args.ssl_key, args.ssl_client_ca):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path}: no such file")
    return {"ssl_cert": args.ssl_cert, "ssl_key": args.ssl_key, "ssl_client_ca": args.ssl_client_ca}


def add_client_tls(parser: argparse.ArgumentParser) -> None:
    """--ca_file, --client_cert, --client_key, --auth_token_file for commands that call a
    server."""
    parser.add_argument("--ca_file", type=Path, help="PEM CA of a TLS server (turns TLS on)")
    parser.add_argument("--client_cert", type=Path, help="PEM certificate for mutual TLS")
    parser.add_argument("--client_key", type=Path, help="PEM key for --client_cert")
    parser.add_argument(
        "--auth_token_file",
        type=Path,
        help=f"a file whose first line is the server's bearer token (default: ${TOKEN_ENV})",
    )


def client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The TLS settings those flags give, or None for a plaintext channel."""
    if not (args.ca_file or args.client_cert):
        return None
    if bool(args.client_cert) != bool(args.client_key):
        raise UsageError("--client_cert and --client_key go together")
    return ClientTLS(args.ca_file, args.client_cert, args.client_key)


def run_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        models = client.model_status(args.model)
    for model in models:
        print(model.name)
        if not model.versions:
            print("  (no versions yet)")
        for v in model.versions:
            runs = f"{v.engine} {v.precision}" if v.engine else ""
            print(f"  {v.version:>12}  {v.state:<10}  {runs:<16}  {v.error}".rstrip())
            if v.engine_reason:
                print(f"  {'':>12}  why: {v.engine_reason}")
    return 0


def run_health(args: argparse.Namespace) -> int:
    from pyserving.client.probe import check_health

    tls = client_tls(args)
    credentials = tls.credentials() if tls else None
    answer = check_health(args.server, args.service, args.timeout, credentials)
    print(answer, file=sys.stdout if answer.serving else sys.stderr)
    # Docker reserves exit code 2 for health checks: anything but SERVING is 1.
    return 0 if answer.serving else 1


def run_web(args: argparse.Namespace) -> int:
    try:
        from pyserving.web.app import run
    except ImportError as exc:
        missing = missing_module(exc, "pyserving web")
        if missing is None:
            raise
        raise missing from None

    return run(
        server=args.server,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mib * MiB),
        models=[m for m in args.models.split(",") if m],
        tls=client_tls(args),
        auth_token=client_token(args.auth_token_file),
    )


def connect(args: argparse.Namespace) -> Client:
    """The client of every remote verb: --server, --timeout, the TLS flags and the token
    (--auth_token_file, else $PYSERVING_AUTH_TOKEN). Connects on its first call."""
    from pyserving.client import Client

    return Client(args.server, args.timeout, client_tls(args), client_token(args.auth_token_file))


def run_classify(args: argparse.Namespace) -> int:
    from pyserving.cli.classify_files import TABLE_FILES, classify_paths

    if args.concurrency < 1:
        print(f"error: --concurrency must be at least 1, got {args.concurrency}", file=sys.stderr)
        return 2
    if args.output or len(args.images) > TABLE_FILES or any(p.is_dir() for p in args.images):
        return classify_paths(args, partial(connect, args))
    features = dict(_parse_feature(f) for f in args.feature)
    if not args.images and not features and not args.text:
        print(
            "error: give image or audio files, --feature NAME=VALUE for a features model, or "
            "--text TEXT for a text model",
            file=sys.stderr,
        )
        return 2
    # (label, the bytes sent in `input`): files are read as they are sent.
    inputs: list[tuple[str, bytes | None]] = [(str(p), None) for p in args.images]
    inputs += [(repr(t), t.encode("utf-8")) for t in args.text]
    inputs = inputs or [("features", b"")]
    failed = 0
    with connect(args) as client:
        for label, data in inputs:
            try:
                image = Path(label).read_bytes() if data is None else data
                started = time.perf_counter()
                result = client.classify(
                    image, args.model, args.version, args.top_k, features=features
                )
                elapsed_ms = (time.perf_counter() - started) * 1000
            except (OSError, PyservingError) as exc:
                print(f"{label}: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(
                f"{label}  (model {result.model_name}, version {result.model_version}, "
                f"{elapsed_ms:.1f} ms)"
            )
            width = max([len(p.name) for p in result.predictions] + [5])
            print(f"  {'rank':>4}  {'class':<{width}}  {'index':>5}  {'score':>7}")
            for rank, p in enumerate(result.predictions, 1):
                print(f"  {rank:>4}  {p.name:<{width}}  {p.index:>5}  {p.score:>7.2%}")
    return 1 if failed else 0


def _parse_feature(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise UsageError(f"--feature takes NAME=VALUE with a number, got {text!r}") from None


def run_predict(args: argparse.Namespace) -> int:
    from pyserving.cli.predict import predict

    return predict(args, partial(connect, args))
