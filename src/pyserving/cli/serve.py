"""`pyserving serve`: its flags, read once into `Settings`, and the server started."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from pathlib import Path
from typing import Any

from pyserving.cli.tfs_flags import add_tf_serving_flags, tf_serving_settings
from pyserving.core.mirror import in_cache, model_base
from pyserving.core.model_config import read_model_config
from pyserving.core.settings import (
    ENGINE_CHOICES,
    PRECISION_CHOICES,
    BatchingSettings,
    ModelConfig,
    Settings,
    VersionPolicy,
    default_compiled_model_cache,
    default_model_cache,
)
from pyserving.errors import ConfigError, MissingExtra, UsageError
from pyserving.storage import is_uri
from pyserving.units import MiB

# The one home of the server's defaults: each `serve` flag takes its default from here.
DEFAULTS = Settings(models=())


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    serve = commands.add_parser("serve", help="serve models over gRPC")
    serve.add_argument("--model_name", default="default", help="name of the served model")
    serve.add_argument(
        "--model_base_path",
        type=_base_path,
        help="folder holding the model's versions, or s3://BUCKET/PREFIX (the [s3] extra)",
    )
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
        "--max_explain_inputs",
        type=int,
        default=DEFAULTS.max_explain_inputs,
        help="most inputs one explanation runs, the original included: an image takes 65 "
        "(an 8×8 grid), a text one per word, a clip two per half second",
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
        help="batches of a version run at once (0: one per core, and up to two lone inputs "
        "per core when nothing is queued)",
    )
    serve.add_argument(
        "--worker_threads", type=int, default=DEFAULTS.worker_threads, help="0: 2 × cores + 2"
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
        "--model_cache_dir",
        type=Path,
        default=default_model_cache(),  # read now: it follows $XDG_CACHE_HOME
        help="folder where the versions of s3:// models are copied before they load, a "
        "folder per bucket",
    )
    serve.add_argument(
        "--s3_endpoint",
        default="",
        help="S3-compatible server's URL for s3:// paths (default: $AWS_ENDPOINT_URL, "
        "$S3_ENDPOINT, else AWS); credentials come from AWS's variables and files",
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
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving serve` with its parsed flags; the exit code."""
    from pyserving.engines import engine_module
    from pyserving.server import serve

    settings = serve_settings(args)
    if args.engine != "auto" and engine_module(args.engine).available():
        # Asked for by name, it is a usage error; a model config's engine fails that model.
        # Each optional engine is installed by the extra of its own name.
        raise MissingExtra(args.engine, args.engine, f"--engine {args.engine}")
    if any(m.source for m in settings.models) and importlib.util.find_spec("boto3") is None:
        raise MissingExtra("boto3", "s3", "an s3:// repository")
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
    if args.max_explain_inputs < 2:
        raise UsageError(
            f"--max_explain_inputs must be at least 2 (the input and one part hidden), got "
            f"{args.max_explain_inputs}"
        )
    if args.model_config_file is not None:
        models, default = read_model_config(args.model_config_file, batching)
    else:
        policy = VersionPolicy(args.version_policy, num_versions=args.num_versions)
        base_path, source = model_base(str(args.model_base_path), Path())
        models = (ModelConfig(args.model_name, base_path, policy, source=source),)
    models = in_cache(models, args.model_cache_dir)
    return Settings(
        models=models,
        default_model=default,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
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
        max_explain_inputs=args.max_explain_inputs,
        batching=batching,
        worker_threads=args.worker_threads,
        intra_op_threads=tf_serving.get("intra_op_threads", args.intra_op_threads),
        metrics_path=tf_serving.get("metrics_path"),
        worker_niceness=args.worker_niceness,
        graph_optimization_level=args.graph_optimization_level,
        cpu_memory_arena=not args.disable_cpu_mem_arena,
        execution_provider=args.execution_provider,
        compiled_model_cache=Path(args.compiled_model_cache) if args.compiled_model_cache else None,
        model_cache_dir=args.model_cache_dir,
        s3_endpoint=args.s3_endpoint,
        engine=args.engine,
        precision=args.precision,
        precision_tolerance=args.precision_tolerance,
        drain_seconds=args.drain_seconds,
        auth_token_file=args.auth_token_file,
        auth_metrics=args.auth_metrics,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        **_server_tls(args),
    )


def _base_path(text: str) -> Path | str:
    """--model_base_path: a local folder, or a URI (`s3://...`) kept as it is."""
    return text if is_uri(text) else Path(text)


def _server_tls(args: argparse.Namespace) -> dict[str, Path | None]:
    if bool(args.ssl_cert) != bool(args.ssl_key):
        raise UsageError("--ssl_cert and --ssl_key go together")
    if args.ssl_client_ca and not args.ssl_cert:
        raise UsageError("--ssl_client_ca needs --ssl_cert and --ssl_key")
    for path in (args.ssl_cert, args.ssl_key, args.ssl_client_ca):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path}: no such file")
    return {"ssl_cert": args.ssl_cert, "ssl_key": args.ssl_key, "ssl_client_ca": args.ssl_client_ca}
