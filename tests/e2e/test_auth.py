"""Access control: a server with --auth_token_file, from gRPC, REST, the CLI and the web app."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving._proto import grpc_predict_v2_pb2 as v2
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_grpc
from pyserving.cli.main import main
from pyserving.client import Client
from pyserving.client.auth import TOKEN_ENV
from pyserving.errors import RemoteError
from tests.onnx_models import png, publish, regression_model, write_image_servable
from tests.processes import (
    RunningProcess,
    free_port,
    run_cli,
    start_process,
    start_server,
    wait_for,
)

RED = png((220, 10, 10))
REFUSED = "missing or invalid credentials"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A server that needs a token: its gRPC address, REST URL and token file."""
    folder = tmp_path_factory.mktemp("auth")
    publish(folder / "colours", 1, write_image_servable)
    tokens = folder / "tokens"
    tokens.write_text("first-token\nsecond-token\n")
    port = free_port()
    server: RunningProcess = start_server(
        "colours",
        folder / "colours",
        folder / "server.log",
        "--rest_api_port",
        str(port),
        "--auth_token_file",
        str(tokens),
    )
    yield f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{port}", tokens
    assert server.stop() == 0, server.output()


def _classify(address: str, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        try:
            stub.classify(pb.ClassificationRequest(input=RED), timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            assert REFUSED in str(exc.details())
            return exc.code()
    return grpc.StatusCode.OK


def test_grpc_calls_need_a_token_and_probes_do_not(guarded: tuple[str, str, Path]) -> None:
    address = guarded[0]
    assert _classify(address, []) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        _classify(address, [("authorization", "Bearer wrong")]) == grpc.StatusCode.UNAUTHENTICATED
    )
    assert _classify(address, [("authorization", "first-token")]) == grpc.StatusCode.UNAUTHENTICATED
    assert _classify(address, [("authorization", "Bearer first-token")]) == grpc.StatusCode.OK
    assert _classify(address, [("authorization", "Bearer second-token")]) == grpc.StatusCode.OK
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        oip = v2_grpc.GRPCInferenceServiceStub(channel)
        assert oip.ServerReady(v2.ServerReadyRequest(), timeout=5).ready
        with pytest.raises(grpc.RpcError) as info:
            oip.ModelMetadata(v2.ModelMetadataRequest(name="colours"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_client_sends_its_token(guarded: tuple[str, str, Path]) -> None:
    with Client(guarded[0], auth_token="second-token") as client:
        assert client.classify(RED).predictions[0].name == "red"
        assert client.model_status("colours")[0].versions[0].state == "AVAILABLE"
    with Client(guarded[0]) as client, pytest.raises(RemoteError) as info:
        client.classify(RED)
    assert info.value.grpc_code == "UNAUTHENTICATED"


def test_rest_calls_need_a_token_and_probes_and_metrics_do_not(
    guarded: tuple[str, str, Path],
) -> None:
    with httpx.Client(base_url=guarded[1], timeout=10) as http:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert http.get(path).status_code == 200, path
        for path in ("/v2/models/colours", "/v1/models/colours", "/openapi.json"):
            refused = http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
            assert REFUSED in refused.json()["error"]
        png_body = {"content": RED, "headers": {"Content-Type": "image/png"}}
        assert http.post("/v1/models/colours:classify", **png_body).status_code == 401  # type: ignore[arg-type]
        bearer = {"Authorization": "Bearer first-token", "Content-Type": "image/png"}
        answer = http.post("/v1/models/colours:classify", content=RED, headers=bearer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0][0][0] == "red"


def test_a_changed_token_file_takes_effect(guarded: tuple[str, str, Path]) -> None:
    address, _, tokens = guarded
    tokens.write_text("first-token\nrotated-token\n")
    try:
        wait_for(
            lambda: (
                _classify(address, [("authorization", "Bearer rotated-token")])
                == grpc.StatusCode.OK
            ),
            10,
            "the new token to be accepted",
        )
        assert (
            _classify(address, [("authorization", "Bearer second-token")])
            == grpc.StatusCode.UNAUTHENTICATED
        )
    finally:
        tokens.write_text("first-token\nsecond-token\n")
        wait_for(
            lambda: (
                _classify(address, [("authorization", "Bearer second-token")]) == grpc.StatusCode.OK
            ),
            10,
            "the old file back",
        )


def test_the_cli_takes_a_token_file_or_the_environment(
    guarded: tuple[str, str, Path], tmp_path: Path
) -> None:
    photo = tmp_path / "red.png"
    photo.write_bytes(RED)
    mine = tmp_path / "mine"
    mine.write_text("first-token\n")
    command = ["classify", str(photo), "--server", guarded[0]]
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    with_file = run_cli(*command, "--auth_token_file", str(mine), env=env, timeout=60)
    assert with_file.returncode == 0, with_file.stderr
    assert "red" in with_file.stdout
    with_env = run_cli(*command, env={**env, TOKEN_ENV: "second-token"}, timeout=60)
    assert with_env.returncode == 0, with_env.stderr
    without = run_cli(*command, env=env, timeout=60)
    assert without.returncode != 0
    assert "UNAUTHENTICATED" in without.stderr or REFUSED in without.stderr


def test_the_web_app_sends_its_token(guarded: tuple[str, str, Path], tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_text("second-token\n")
    web = start_process(
        [
            "web",
            "--server",
            guarded[0],
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--auth_token_file",
            str(mine),
        ],
        r"web app listening on http://[^\s:]+:(\d+)",
        tmp_path / "web.log",
    )
    try:
        url = f"http://127.0.0.1:{web.match.group(1)}/api/classify"
        answer = httpx.post(url, files={"images": ("red.png", RED, "image/png")}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert "red" in answer.text
    finally:
        assert web.stop() == 0, web.output()


def test_predict_takes_a_token_file_or_the_environment(tmp_path: Path) -> None:
    """`pyserving predict` sends the token, as every remote verb does."""
    weights = np.array([[2.0], [3.0]], dtype=np.float32)
    onnx.save(regression_model(weights, np.zeros(1, np.float32)), str(tmp_path / "reg.onnx"))
    export = ["export", "onnx", str(tmp_path / "reg.onnx"), "--kind", "tensor"]
    assert main([*export, "--repository", str(tmp_path / "models"), "--name", "reg"]) == 0
    tokens = tmp_path / "tokens"
    tokens.write_text("the-token\n")
    server = start_server(
        "reg",
        tmp_path / "models" / "reg",
        tmp_path / "server.log",
        "--auth_token_file",
        str(tokens),
    )
    try:
        address = f"127.0.0.1:{server.match.group(1)}"
        command = ["predict", "--server", address, "--input", "1,1", "--json"]
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        with_file = run_cli(*command, "--auth_token_file", str(tokens), env=env, timeout=60)
        assert with_file.returncode == 0, with_file.stderr
        (output,) = json.loads(with_file.stdout)["outputs"]
        assert output["data"] == [[5.0]]
        with_env = run_cli(*command, env={**env, TOKEN_ENV: "the-token"}, timeout=60)
        assert with_env.returncode == 0, with_env.stderr
        without = run_cli(*command, env=env, timeout=60)
        assert without.returncode == 1
        assert without.stderr == f"error: {REFUSED}: send 'authorization: Bearer <token>'\n"
    finally:
        assert server.stop() == 0, server.output()
