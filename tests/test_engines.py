"""The engines and the engine choice, on real ONNX models: EfficientNet-Lite0 and tiny ones."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pyserving import engines
from pyserving.core.settings import ENGINE_CHOICES, PRECISION_CHOICES
from pyserving.engines import EngineInfo, EngineOptions, load_engine
from pyserving.engines import openvino as ov_engine
from pyserving.engines.choice import LARGE_MODEL_BYTES, Wanted, choose_engine
from pyserving.errors import ServableError
from pyserving.kinds import kind_module, load_signature
from pyserving.preprocess import decode_image
from pyserving.reference import check_reference, load_reference, write_reference
from pyserving.signature import MODEL_FILE
from tests.conftest import encode
from tests.onnx_models import write_features_servable

CPU_HAS_BF16 = "bf16" in ov_engine.precisions()
NO_BF16 = "this CPU has no bf16 (avx512_bf16 or AMX); OpenVINO would run f32"


@pytest.fixture(scope="module")
def imagenet_version(imagenet_repository: Path) -> Path:
    (version,) = (imagenet_repository / "imagenet").iterdir()
    return version


@pytest.fixture(scope="module")
def photos(chelsea: np.ndarray, chelsea_jpeg: bytes, coffee_jpeg: bytes) -> np.ndarray:
    """Chelsea (JPEG and PNG) and coffee, decoded as the server does."""
    files = [chelsea_jpeg, coffee_jpeg, encode(chelsea, "PNG")]
    return np.stack([decode_image(f, 224, 224, "bilinear", 50_000_000) for f in files])


@pytest.fixture(scope="module")
def pytorch_top1(photos: np.ndarray) -> list[int]:
    """Top-1 of the source framework (PyTorch) on the photos: what the export is checked against."""
    import torch

    from pyserving.export.image import pixel_normalisation
    from pyserving.export.torch import ImageInput
    from pyserving.export.zoo import efficientnet_lite0

    mean, std = pixel_normalisation(0.5, 128 / 255)
    module = ImageInput(efficientnet_lite0(), mean, std).eval()
    with torch.no_grad():
        return [int(i) for i in module(torch.from_numpy(photos)).numpy().argmax(axis=1)]


def test_the_choices_in_settings_are_the_engines_there_are() -> None:
    assert set(ENGINE_CHOICES) == {"auto", *engines.ENGINES}
    assert set(PRECISION_CHOICES) == {"auto", *engines.PRECISIONS}


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_each_engine_gives_the_source_frameworks_top1(
    name: str, imagenet_version: Path, photos: np.ndarray, pytorch_top1: list[int]
) -> None:
    engine = load_engine(name, imagenet_version / MODEL_FILE, EngineOptions(threads=2))
    try:
        scores = engine.run(photos)
    finally:
        engine.close()
    assert engine.info.name == name and engine.info.precision == "f32"
    assert scores.shape == (3, 1000)
    assert scores.argmax(axis=1).tolist() == pytorch_top1
    assert pytorch_top1[0] == pytorch_top1[2] == 285  # Egyptian cat, from JPEG and PNG
    with pytest.raises(Exception, match="unloaded"):
        engine.run(photos)


@pytest.mark.skipif(not CPU_HAS_BF16, reason=NO_BF16)
def test_openvino_bf16_passes_the_reference_set_and_keeps_top1(
    imagenet_version: Path, photos: np.ndarray, pytorch_top1: list[int]
) -> None:
    engine = load_engine("openvino", imagenet_version / MODEL_FILE, EngineOptions("bf16"))
    reference = load_reference(imagenet_version)
    assert reference is not None
    check = check_reference(reference, engine.run(reference.inputs), True, 0.02)
    assert check.passed, check.describe()
    assert engine.run(photos).argmax(axis=1).tolist() == pytorch_top1


@pytest.mark.skipif(CPU_HAS_BF16, reason="this CPU has bf16")
def test_bf16_on_a_cpu_without_it_is_refused_in_one_line(imagenet_version: Path) -> None:
    with pytest.raises(ServableError, match=r"openvino cannot run bf16 on this machine.*f32"):
        load_engine("openvino", imagenet_version / MODEL_FILE, EngineOptions("bf16"))
    with pytest.raises(ServableError, match="bf16 needs a CPU with avx512_bf16 or AMX"):
        choose(imagenet_version, Wanted("auto", "bf16"))


def test_the_exporter_stored_a_reference_set(imagenet_version: Path) -> None:
    reference = load_reference(imagenet_version)
    assert reference is not None
    assert reference.inputs.dtype == np.uint8 and reference.inputs.shape[1:] == (224, 224, 3)
    assert reference.outputs.shape == (len(reference.inputs), 1000)
    engine = load_engine("onnxruntime", imagenet_version / MODEL_FILE, EngineOptions())
    check = check_reference(reference, engine.run(reference.inputs), True, 1e-4)
    assert check.passed, check.describe()


def choose(version: Path, wanted: Wanted, reference_from: Path | None = None) -> tuple[str, str]:
    sig = load_signature(version)
    kind = kind_module(sig.kind)

    def warm_up(info: EngineInfo) -> np.ndarray:
        (tensor,) = (t for t in info.inputs if t.name == sig.input_name)
        return kind.warm_up(sig, kind.row_shape(sig, tensor))  # type: ignore[no-any-return]

    choice = choose_engine(
        version / MODEL_FILE,
        wanted,
        EngineOptions(),
        sig.input_name,
        sig.output_name,
        warm_up,
        load_reference(reference_from or version),
        sig.scores == "logits",
        sig.precision == "int8",
    )
    choice.engine.close()
    return choice.engine.info.name, choice.precision


def test_auto_picks_a_verified_engine_and_says_why(
    imagenet_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The rule, whatever else runs: a large model gets OpenVINO bf16 where the CPU has it and
    # it verifies, else OpenVINO f32 (its latency model), then ONNX Runtime f32.
    expected = ("openvino", "bf16") if CPU_HAS_BF16 else ("openvino", "f32")
    assert choose(imagenet_version, Wanted()) == expected
    assert choose(imagenet_version, Wanted("auto", "f32")) == ("openvino", "f32")
    assert choose(imagenet_version, Wanted("onnxruntime", "auto")) == ("onnxruntime", "f32")
    assert choose(imagenet_version, Wanted("openvino", "f32")) == ("openvino", "f32")


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add the bf16-rounding test engine beside the real ones (see tests/emulated_bf16.py)."""
    monkeypatch.setitem(engines.ENGINES, "emulated", "tests.emulated_bf16")


@pytest.fixture
def tampered(imagenet_version: Path, tmp_path: Path) -> Path:
    """A copy of the reference set whose outputs are shifted by one class."""
    reference = load_reference(imagenet_version)
    assert reference is not None
    write_reference(tmp_path, reference.inputs, np.roll(reference.outputs, 1, axis=1))
    return tmp_path


def test_a_reduced_precision_that_passes_the_reference_is_used(
    imagenet_version: Path, emulated: None
) -> None:
    assert choose(imagenet_version, Wanted("emulated", "bf16")) == ("emulated", "bf16")


def test_a_tampered_reference_fails_an_explicit_bf16_with_the_numbers(
    imagenet_version: Path, tampered: Path, emulated: None
) -> None:
    with pytest.raises(
        ServableError,
        match=r"reference set fails with emulated bf16: top-1 differs on \d+ of \d+ reference "
        r"inputs, largest probability difference 0\.\d+ \(tolerance 0\.02\)",
    ):
        choose(imagenet_version, Wanted("emulated", "bf16"), reference_from=tampered)


def test_a_tampered_reference_makes_auto_fall_back_to_f32(
    imagenet_version: Path, tampered: Path, emulated: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert choose(imagenet_version, Wanted("emulated", "auto"), tampered) == ("emulated", "f32")
    assert "not using emulated bf16: top-1 differs" in caplog.text


def test_without_a_reference_set_auto_stays_f32(
    imagenet_version: Path, tmp_path: Path, emulated: None
) -> None:
    empty = tmp_path / "no-reference"
    empty.mkdir()
    assert choose(imagenet_version, Wanted("emulated", "auto"), empty) == ("emulated", "f32")
    # Asked for by name, an unverified bf16 runs.
    assert choose(imagenet_version, Wanted("emulated", "bf16"), empty) == ("emulated", "bf16")


def ml_classifier(folder: Path) -> Path:
    """A features servable whose graph is an ai.onnx.ml LinearClassifier: OpenVINO lacks it."""
    folder.mkdir(parents=True)
    node = helper.make_node(
        "LinearClassifier",
        ["features"],
        ["label", "probabilities"],
        domain="ai.onnx.ml",
        coefficients=np.eye(3, 2).ravel().tolist(),
        intercepts=[0.0, 0.0, 0.0],
        classlabels_ints=[0, 1, 2],
        post_transform="SOFTMAX",
    )
    graph = helper.make_graph(
        [node],
        "ml",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        ir_version=8,
    )
    write_features_servable(folder, np.eye(2, 3), ["a", "b"])
    onnx.save(model, str(folder / MODEL_FILE))
    doc = (folder / "servable.json").read_text().replace('"logits"', '"probabilities"', 1)
    (folder / "servable.json").write_text(
        doc.replace('"scores": "logits"', '"scores": "probabilities"')
    )
    return folder


def test_a_model_openvino_cannot_compile(tmp_path: Path) -> None:
    folder = ml_classifier(tmp_path / "1")
    with pytest.raises(ServableError, match=r"model\.onnx: OpenVINO cannot compile it: ") as info:
        load_engine("openvino", folder / MODEL_FILE, EngineOptions(), "features", "probabilities")
    # OpenVINO's reason in words, not the C++ file its exception passed through first.
    reason = str(info.value).split("OpenVINO cannot compile it: ", 1)[1]
    assert "\n" not in reason and "Exception from" not in reason and ".cpp" not in reason
    assert "ai.onnx.ml." in reason, reason
    sig = load_signature(folder)
    assert sig.output_name == "probabilities"
    # auto serves it with the engine that can.
    assert choose(folder, Wanted())[0] == "onnxruntime"
    assert choose(folder, Wanted("auto", "f32"))[0] == "onnxruntime"


def test_a_small_model_gets_onnxruntime_first_even_with_a_verified_bf16(
    tmp_path: Path, emulated: None
) -> None:
    folder = write_features_servable(tmp_path / "1", np.eye(2, 3), ["a", "b"])
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], np.float32)
    write_reference(folder, rows, rows @ np.eye(2, 3))
    assert (folder / MODEL_FILE).stat().st_size < LARGE_MODEL_BYTES
    assert choose(folder, Wanted()) == ("onnxruntime", "f32")
    # Without ONNX Runtime among the candidates, the small model stays f32 too.
    assert choose(folder, Wanted("emulated")) == ("emulated", "f32")


@pytest.fixture
def no_openvino(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make `import openvino` fail, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    ov_engine._core.cache_clear()
    yield
    ov_engine._core.cache_clear()


def test_openvino_not_installed(imagenet_version: Path, no_openvino: None) -> None:
    with pytest.raises(ServableError, match=r"^openvino is not installed; install it with: pip"):
        load_engine("openvino", imagenet_version / MODEL_FILE, EngineOptions())
    with pytest.raises(ServableError, match=r"pip install 'pyserving\[openvino\]'"):
        choose(imagenet_version, Wanted("openvino", "auto"))
    assert choose(imagenet_version, Wanted()) == ("onnxruntime", "f32")


def test_unknown_engine_and_precision(imagenet_version: Path) -> None:
    with pytest.raises(ServableError, match=r"unknown engine 'tvm'; expected auto or one of"):
        choose(imagenet_version, Wanted("tvm"))
    with pytest.raises(ServableError, match=r"unknown precision 'fp8'; expected auto, f32"):
        choose(imagenet_version, Wanted("auto", "fp8"))
    with pytest.raises(ServableError, match=r"unknown engine 'tvm'; expected one of"):
        load_engine("tvm", imagenet_version / MODEL_FILE, EngineOptions())


def test_cuda_stays_with_onnxruntime(imagenet_version: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal below is for machines without it")
    with pytest.raises(ServableError, match="openvino runs on the CPU here"):
        load_engine(
            "openvino", imagenet_version / MODEL_FILE, EngineOptions(execution_provider="cuda")
        )


def test_reference_set_round_trip_and_damage(tmp_path: Path) -> None:
    inputs = np.arange(12, dtype=np.float32).reshape(3, 4)
    outputs = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]], np.float32)
    write_reference(tmp_path, inputs, outputs)
    reference = load_reference(tmp_path)
    assert reference is not None
    assert np.array_equal(reference.inputs, inputs) and np.array_equal(reference.outputs, outputs)
    same = check_reference(reference, outputs, logits=True, tolerance=0.0)
    assert same.passed and same.max_probability_difference == 0.0
    flipped = check_reference(reference, outputs[:, ::-1], logits=True, tolerance=0.02)
    assert not flipped.passed and flipped.top1_mismatches == 3
    assert "top-1 differs on 3 of 3 reference inputs" in flipped.describe()
    (tmp_path / "reference.npz").write_bytes(b"not a zip file")
    with pytest.raises(ServableError, match=r"reference\.npz: not a reference set"):
        load_reference(tmp_path)
    assert load_reference(tmp_path / "nowhere") is None


async def test_the_manager_reports_a_failed_reference_check_in_the_status(
    imagenet_version: Path, tampered: Path, emulated: None, tmp_path: Path
) -> None:
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from pyserving.core.manager import ModelManager
    from pyserving.core.settings import ModelConfig, Settings

    base = tmp_path / "models"
    for name in ("strict", "lenient"):
        version = shutil.copytree(imagenet_version, base / name / "1")
        shutil.copy(tampered / "reference.npz", version / "reference.npz")
    settings = Settings(
        models=(
            ModelConfig("lenient", base / "lenient", engine="emulated"),
            ModelConfig("strict", base / "strict", engine="emulated", precision="bf16"),
        ),
        file_system_poll_wait_seconds=0,
    )
    with ThreadPoolExecutor(2) as pool:
        manager = ModelManager(settings, pool)
        await manager.start()
        try:
            (lenient,) = manager.status("lenient")[0].versions
            (strict,) = manager.status("strict")[0].versions
        finally:
            await manager.stop()
    assert (lenient.state, lenient.engine, lenient.precision) == ("AVAILABLE", "emulated", "f32")
    assert strict.state == "FAILED"
    assert "the reference set fails with emulated bf16: top-1 differs on" in strict.error
    assert "(tolerance 0.02)" in strict.error
