"""An int8 export served on OpenVINO: verified at load, the same top-1 as f32, and refused
where its kernels would saturate 8-bit weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pyserving.client import Client
from pyserving.cpu import int8_dot_product
from pyserving.engines import openvino as ov_engine
from pyserving.export.quantize import QuantizeOptions
from pyserving.export.zoo import export_efficientnet_lite0
from pyserving.reference import load_reference
from tests.conftest import encode
from tests.photos import write_folder
from tests.processes import RunningProcess, start_serve, wait_for

pytestmark = pytest.mark.skipif(
    ov_engine.available() is not None, reason="OpenVINO is not installed (the [openvino] extra)"
)
# oneDNN's cap on the instruction set OpenVINO's CPU kernels use: AVX-512 without VNNI
# (or AMX) runs the int8 kernels that add u8×s8 pairs in 16 bits, as a CPU without it does.
NO_VNNI = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}


@pytest.fixture(scope="module")
def int8_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EfficientNet-Lite0 as int8 with this CPU's weight bits, and with 8-bit weights."""
    root = tmp_path_factory.mktemp("int8")
    photos = write_folder(root / "photos", 60)
    options = QuantizeOptions(photos, limit=40, min_agreement=0)
    export_efficientnet_lite0(root / "models", "int8", quantize=options)
    eight = QuantizeOptions(photos, limit=40, min_agreement=0, weights="8")
    export_efficientnet_lite0(root / "models", "eight", quantize=eight)
    return root / "models"


@pytest.fixture(scope="module")
def served(
    imagenet_repository: Path, int8_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningProcess, str]]:
    """f32 and int8 versions of one model, both on OpenVINO."""
    config = tmp_path_factory.mktemp("config") / "models.toml"
    config.write_text(
        f"""
[[models]]
name = "f32"
base_path = "{imagenet_repository / "imagenet"}"
engine = "openvino"
precision = "f32"

[[models]]
name = "int8"
base_path = "{int8_repository / "int8"}"
engine = "openvino"
"""
    )
    server = start_serve(config.parent / "server.log", "--model_config_file", str(config))
    yield server, f"127.0.0.1:{server.match.group(1)}"
    server.stop()


def loaded_or_failed(server: RunningProcess, model: str) -> str | None:
    """The server's line saying that `model`'s version runs, or why it failed to load."""
    lines = server.output().splitlines()
    prefix = f"model {model} version "
    return next((x for x in lines if prefix in x and ("runs on" in x or "failed" in x)), None)


def test_int8_is_verified_and_served_on_openvino(served: tuple[RunningProcess, str]) -> None:
    server, _ = served
    line = wait_for(lambda: loaded_or_failed(server, "int8"), 120, "the int8 version loaded")
    assert "runs on engine openvino int8" in line, server.output()


def test_int8_answers_the_f32_top1_on_the_reference_photos(
    served: tuple[RunningProcess, str], int8_repository: Path
) -> None:
    """The held-back photos the export measured agreement on, through a real server."""
    _, address = served
    (version,) = (int8_repository / "int8").iterdir()
    reference = load_reference(version)
    assert reference is not None and len(reference.inputs) >= 1
    with Client(address) as client:
        for image, f32_scores in zip(reference.inputs, reference.outputs, strict=True):
            png = encode(image, "PNG")
            int8 = client.classify(png, model_name="int8", top_k=1).predictions[0]
            f32 = client.classify(png, model_name="f32", top_k=1).predictions[0]
            assert int8.index == f32.index == int(f32_scores.argmax())


def test_eight_bit_weights_fail_where_the_kernels_saturate(
    int8_repository: Path, tmp_path: Path
) -> None:
    """On a CPU with VNNI or AMX, OpenVINO held to AVX-512 without it saturates and the
    reference set catches it; on a CPU without, the server refuses the weights outright."""
    server = start_serve(
        tmp_path / "server.log",
        *("--engine", "openvino", "--model_name", "eight"),
        *("--model_base_path", str(int8_repository / "eight")),
        # The only model failing, the server waits for a version and never listens.
        ready=r"model eight version \d+ (failed to load|runs on).*",
        timeout=120,
        env=NO_VNNI,
    )
    server.stop()
    line = server.match.group(0)
    assert "failed to load" in line, server.output()
    if int8_dot_product() is None:
        assert "8-bit int8 weights need VNNI or AMX" in line
    else:
        assert "no engine can serve it here (openvino int8: top-1 differs on" in line
