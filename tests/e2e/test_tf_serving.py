"""A drop-in for TensorFlow Serving: its config files as they are, its own gRPC client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import RunningProcess, free_port, start_serve, wait_for

ROOT = Path(__file__).parent.parent.parent
CLIENT = ROOT / "tests" / "clients" / "tf_serving_client.py"
MONITORING = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def tf_server(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningProcess, str, str, Path]]:
    """`pyserving serve` started with tensorflow_model_server's flags and files."""
    folder = tmp_path_factory.mktemp("tfs")
    config = folder / "models.config"
    config.write_text(
        "# written for tensorflow_model_server\n"
        "model_config_list {\n"
        "  config {\n"
        '    name: "imagenet"\n'
        f'    base_path: "{imagenet_repository / "imagenet"}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { latest { num_versions: 1 } }\n"
        "    logging_config { sampling_config { sampling_rate: 0.1 } }\n"
        "  }\n"
        "}\n"
    )
    batching = folder / "batching.txt"
    batching.write_text(
        "max_batch_size { value: 4 }\n"
        "batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 8 }\n"
        "num_batch_threads { value: 1 }\n"
        "pad_variable_length_inputs: true\n"
    )
    monitoring = folder / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{MONITORING}" }}\n')
    port = free_port()
    server = start_serve(
        folder / "server.log",
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=0.3",
        "--enable_batching=true",
        f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={monitoring}",
        "--tensorflow_inter_op_parallelism=2",
        "--rest_api_port",
        str(port),
    )
    yield server, f"http://127.0.0.1:{port}", f"127.0.0.1:{server.match.group(1)}", config
    server.stop()


def test_tf_serving_client(
    tf_server: tuple[RunningProcess, str, str, Path],
    imagenet_repository: Path,
    chelsea_jpeg: bytes,
    tmp_path: Path,
) -> None:
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(chelsea_jpeg)
    base = imagenet_repository / "imagenet"
    out = subprocess.run(
        [sys.executable, str(CLIENT), tf_server[2], "imagenet", str(photo), str(base)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["signatures"] == ["classify", "serving_default"]
    assert answer["input_dtype"] == "string"
    assert answer["classes"][0] == "Egyptian cat"
    assert len(answer["classes"]) == len(answer["scores"]) == 5
    assert answer["scores"] == sorted(answer["scores"], reverse=True)
    assert answer["classify"][0] == "Egyptian cat"
    assert answer["regress"] == "UNIMPLEMENTED"
    assert answer["status"] == [[answer["version"], "AVAILABLE"]]
    assert answer["reload"] == [0, ""]
    assert answer["second"] == ["AVAILABLE"]


def test_batching_and_monitoring_files_are_applied(
    tf_server: tuple[RunningProcess, str, str, Path],
) -> None:
    server, rest, _, _ = tf_server
    with httpx.Client(base_url=rest, timeout=30) as http:
        config = http.get("/v2/models/imagenet/config").json()
        assert config["max_batch_size"] == 4  # from the batching parameters file
        metrics = http.get(MONITORING)
        assert metrics.status_code == 200 and "pyserving_requests_total" in metrics.text
    log = server.output()
    assert "logging_config is not used by pyserving; ignored" in log
    assert "pad_variable_length_inputs is not used by pyserving; ignored" in log
    assert "--tensorflow_inter_op_parallelism is accepted and ignored" in log


def test_a_garbage_edit_keeps_the_last_good_config(
    tf_server: tuple[RunningProcess, str, str, Path],
) -> None:
    server, rest, _, config = tf_server
    config.write_text("model_config_list { config { name: ")
    wait_for(lambda: "keeping the last good config" in server.output(), 10, "the reload error")
    with httpx.Client(base_url=rest, timeout=30) as http:
        assert http.get("/v1/models/imagenet").status_code == 200
