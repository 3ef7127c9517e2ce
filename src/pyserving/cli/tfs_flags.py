"""`pyserving serve`'s TensorFlow Serving flags: `tensorflow_model_server`'s command line
works as it is. Each flag is used, accepted and ignored (with a warning), or refused (with
what to do instead); docs/moving-from-tf-serving.md lists them."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pyserving.core.settings import BatchingSettings
from pyserving.core.tfs_config import read_batching_parameters, read_monitoring_config
from pyserving.errors import ConfigError

log = logging.getLogger(__name__)

# Flags whose work pyserving does another way, or not at all; why, for the warning.
IGNORED = {
    "--rest_api_num_threads": "REST runs on the event loop",
    "--rest_api_timeout_in_ms": "give requests a deadline (the `timeout` header) instead",
    "--rest_api_enable_cors_support": "no CORS headers are sent",
    "--num_load_threads": "versions load in the worker pool",
    "--num_unload_threads": "versions unload in the worker pool",
    "--max_num_load_retries": "a failed version is tried again when its files change",
    "--load_retry_interval_micros": "a failed version is tried again when its files change",
    "--flush_filesystem_caches": "nothing to flush",
    "--tensorflow_inter_op_parallelism": "ONNX Runtime runs one op at a time per call",
    "--saved_model_tags": "servables are ONNX, not SavedModels",
    "--grpc_channel_arguments": "use --max_request_mib and the other limit flags",
    "--grpc_max_threads": "gRPC runs on the event loop",
    "--enable_model_warmup": "every version is always warmed up",
    "--enable_signature_method_name_check": "every signature is the same model",
    "--xla_cpu_compilation_enabled": "no XLA in ONNX Runtime",
    "--per_process_gpu_memory_fraction": "no TensorFlow GPU allocator",
    "--remove_unused_fields_from_bundle_metagraph": "no MetaGraph",
    "--enable_grpc_healthcheck_service": "grpc.health.v1 is always served",
    "--skip_initialize_tpu": "no TPU",
    "--num_tflite_pools": "no TensorFlow Lite",
    "--num_tflite_interpreters_per_pool": "no TensorFlow Lite",
    "--enable_profiler": "no TensorFlow profiler",
}
# Flags that would change what is served or how it is secured: refused, saying what to use.
REFUSED = {
    "--platform_config_file": "TensorFlow session settings have no ONNX equivalent; use "
    "--intra_op_threads and --graph_optimization_level",
    "--ssl_config_file": "give --ssl_cert, --ssl_key (and --ssl_client_ca) as PEM files",
    "--use_alts_credentials": "ALTS is not supported; use --ssl_cert and --ssl_key",
    "--grpc_socket_path": "gRPC listens on --host and --port only",
    "--prefer_tflite_model": "servables are ONNX: export the model with `pyserving export`",
    "--tensorflow_session_config_file": "TensorFlow session settings have no ONNX equivalent",
    "--thread_pool_factory_config_file": "use --worker_threads and --intra_op_threads",
    "--mixed_precision": "use --precision bf16 (checked against the reference set first)",
}


def flag_bool(value: str) -> bool:
    """`--enable_batching`, `--enable_batching=true` or `=false`, as TF Serving reads them."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_tf_serving_flags(serve: argparse.ArgumentParser) -> None:
    """The flags of `tensorflow_model_server` that `pyserving serve` lacks by its own names."""
    group = serve.add_argument_group(
        "TensorFlow Serving flags",
        "tensorflow_model_server's flags (see docs/moving-from-tf-serving.md)",
    )
    group.add_argument(
        "--enable_batching",
        type=flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="read --batching_parameters_file (pyserving always batches, with the batching flags)",
    )
    group.add_argument(
        "--batching_parameters_file",
        type=Path,
        help="TF Serving's batching parameters (text format), over the batching flags",
    )
    group.add_argument(
        "--monitoring_config_file",
        type=Path,
        help="TF Serving's monitoring config: Prometheus metrics at its path too",
    )
    group.add_argument(
        "--allow_version_labels_for_unavailable_models",
        type=flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="a new version label may name a version that is not available yet",
    )
    for flag in ("--tensorflow_session_parallelism", "--tensorflow_intra_op_parallelism"):
        group.add_argument(
            flag, type=int, default=0, help="as --intra_op_threads, when that is not given"
        )
    for flag in (*IGNORED, *REFUSED):
        group.add_argument(flag, nargs="?", const="true", help=argparse.SUPPRESS)


def tf_serving_settings(args: argparse.Namespace, batching: BatchingSettings) -> dict[str, Any]:
    """What the TF Serving flags set: `batching`, `metrics_path`, `intra_op_threads`.

    Raises ConfigError for a refused flag or a file that cannot be read.
    """
    for flag, why in REFUSED.items():
        if getattr(args, flag[2:]) is not None:
            raise ConfigError(f"{flag} is not supported: {why}")
    for flag, why in IGNORED.items():
        if getattr(args, flag[2:]) is not None:
            log.warning("%s is accepted and ignored: %s", flag, why)
    if args.batching_parameters_file is not None:
        if args.enable_batching:
            batching = read_batching_parameters(args.batching_parameters_file, batching)
        else:
            log.warning("--batching_parameters_file is ignored without --enable_batching")
    settings: dict[str, Any] = {"batching": batching}
    if args.monitoring_config_file is not None:
        settings["metrics_path"] = read_monitoring_config(args.monitoring_config_file)
    threads = args.tensorflow_intra_op_parallelism or args.tensorflow_session_parallelism
    if threads and not args.intra_op_threads:
        settings["intra_op_threads"] = threads
    return settings
