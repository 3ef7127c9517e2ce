"""INT8 export: calibration folders, the agreement bar, the reference set, the CLI flags."""

import io
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from skimage import data as skimage_data

from pyserving.cli.main import main
from pyserving.cpu import int8_weight_bits
from pyserving.engines import openvino as openvino_engine
from pyserving.errors import ExportError
from pyserving.export import Progress, export_onnx, export_torch
from pyserving.export.labels import imagenet_labels
from pyserving.export.quantize import (
    DEFAULT_MIN_AGREEMENT,
    QuantizeOptions,
    load_calibration,
    split,
)
from pyserving.export.zoo import export_efficientnet_lite0
from pyserving.kinds import load_signature
from pyserving.preprocess import decode_image
from pyserving.reference import ReferenceSet, check_reference, load_reference
from pyserving.signature import list_versions
from tests.photos import photograph_jpegs

PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "logo",
    "colorwheel",
    "cat",
]
LIMIT = 16  # images that calibrate in these tests; the other 32 of the 48 are held back
HELD_BACK = 32
# Photographs of scenes for the agreement bar (Debian's wallpapers, then crops, flips and
# scales of them and of scikit-image's photographs): 100 calibrate (the default), 800 are
# held back, of which 562 are no near-tie for f32 (top-1 probability 0.05 or more ahead)
# and count toward it.
MANY = 900
HELD_BACK_MANY = 800
AGREEMENT = re.compile(
    r"int8 top-1 agrees with f32 on (\d+) of (\d+) held-back images \(([\d.]+)%\)"
)


def skimage_photos() -> dict[str, Image.Image]:
    """scikit-image's colour photos, RGB."""
    photos = {name: Image.fromarray(np.asarray(getattr(skimage_data, name)())) for name in PHOTOS}
    left, right, _ = skimage_data.stereo_motorcycle()
    photos |= {"motorcycle_left": Image.fromarray(left), "motorcycle_right": Image.fromarray(right)}
    return {name: image.convert("RGB") for name, image in photos.items()}


def variants(image: Image.Image) -> dict[str, Image.Image]:
    """The photo, mirrored, its centre and a half-size copy: four calibration images."""
    w, h = image.size
    return {
        "photo": image,
        "mirrored": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "centre": image.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
        "half": image.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 JPEGs in one folder per photo, and a README that is not an image."""
    folder = tmp_path_factory.mktemp("calibration")
    for name, photo in skimage_photos().items():
        (folder / name).mkdir()
        for variant, image in variants(photo).items():
            image.save(folder / name / f"{variant}.jpg", quality=90)
    (folder / "README.txt").write_text("photos from scikit-image\n")
    return folder


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory, wallpapers: None) -> Path:
    """Hundreds of photographs of scenes (`tests.photos.photograph_jpegs`)."""
    folder = tmp_path_factory.mktemp("many")
    for name, data in photograph_jpegs(MANY):
        (folder / f"{name}.jpg").write_bytes(data)
    return folder


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()


def export_tiny(repository: Path, quantize: QuantizeOptions, name: str = "tiny") -> Path:
    return export_torch(
        tiny_model(), repository, name, labels="a,b,c,d", input_size=32, quantize=quantize
    )


def f32_model(imagenet_repository: Path) -> Path:
    (version,) = list_versions(imagenet_repository / "imagenet")
    return imagenet_repository / "imagenet" / str(version) / "model.onnx"


def scores(model: Path, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": inputs})
    return np.asarray(out)


def printed_agreement(err: str) -> float:
    match = AGREEMENT.search(err)
    assert match, err
    return int(match.group(1)) / int(match.group(2))


def assert_int8_version(version: Path, f32: Path) -> ReferenceSet:
    """The checks the server makes, and that the reference scores are the f32 model's."""
    sig = load_signature(version)
    assert sig.precision == "int8"
    assert '"precision": "int8"' in (version / "servable.json").read_text()
    reference = load_reference(version)
    assert reference is not None
    assert 1 <= len(reference.inputs) <= 8
    int8 = scores(version / "model.onnx", reference.inputs)
    check = check_reference(reference, int8, logits=sig.scores == "logits", tolerance=0.02)
    assert check.passed, check.describe()
    np.testing.assert_allclose(reference.outputs, scores(f32, reference.inputs), atol=1e-4)
    return reference


def assert_nothing_written(model_dir: Path) -> None:
    assert list_versions(model_dir) == []
    assert list(model_dir.iterdir()) == []  # no hidden export folder left behind


def test_split_is_deterministic_and_images_are_decoded_as_the_server_does(photos: Path) -> None:
    options = QuantizeOptions(photos, limit=LIMIT)
    first, again = (
        load_calibration(options, 224, 224, "bilinear", Progress(1, io.StringIO()))
        for _ in range(2)
    )
    assert (first.found, first.skipped) == (48, 1)
    assert (len(first.calibrate), len(first.held_back)) == (LIMIT, HELD_BACK)
    assert split(48, 4) == ([0, 16, 31, 47], sorted(set(range(48)) - {0, 16, 31, 47}))
    assert split(48, 4, 4) == ([0, 16, 31, 47], [1, 15, 32, 46])
    np.testing.assert_array_equal(first.calibrate, again.calibrate)
    np.testing.assert_array_equal(first.held_back, again.held_back)
    images = sorted(p for p in photos.rglob("*.jpg"))
    rest, held = split(len(images), LIMIT)
    assert not set(rest) & set(held) and len(rest) + len(held) == 48
    assert set(range(4, 48, 5)) <= set(held)  # every 5th is always held back
    expected = decode_image(images[held[0]].read_bytes(), 224, 224, "bilinear")
    np.testing.assert_array_equal(first.held_back[0], expected)
    assert split(48, 100) == ([i for i in range(48) if i % 5 != 4], list(range(4, 48, 5)))
    assert split(3, 100) == ([0, 1], [2])


# With 8-bit weights (VNNI or AMX) the export must clear the default bar: measured on a
# Zen 4, 557 of 562 (99.1%) on both engines, where the bar allows 11 disagreements. 7-bit
# weights (no VNNI) gave 538 of 562 (95.7%, `--int8_weights 7` on the same machine): there
# the default bar refuses the export, and this test holds it to 0.93.
BAR = DEFAULT_MIN_AGREEMENT if int8_weight_bits() == 8 else 0.93


def test_efficientnet_lite0_int8_clears_the_bar_and_is_served_on_openvino(
    many_photos: Path,
    imagenet_repository: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Hundreds of held-back photographs measure agreement; every engine clears the bar."""
    # 100 calibrate, the margin 0.05
    options = QuantizeOptions(many_photos, held_back=HELD_BACK_MANY, min_agreement=BAR)
    version = export_efficientnet_lite0(tmp_path, "imagenet", quantize=options)
    err = capsys.readouterr().err
    print(err)
    assert printed_agreement(err) >= BAR
    assert "(those of 800 where f32's top-1 probability leads the second's by 0.05 or more; " in err
    recorded = load_signature(version).source["quantization"]
    assert recorded["held_back_images"] == HELD_BACK_MANY
    assert recorded["counted_images"] >= 500
    assert recorded["agreement_margin"] == 0.05
    engines = {"onnxruntime"} | ({"openvino"} if openvino_engine.available() is None else set())
    assert set(recorded["agreement_by_engine"]) == engines
    assert min(recorded["agreement_by_engine"].values()) >= BAR
    assert recorded["agreement"] == min(recorded["agreement_by_engine"].values())
    # Over every held-back photo, confident or not, the figure is lower, and recorded.
    assert set(recorded["agreement_all_images_by_engine"]) == engines
    assert 0.5 < min(recorded["agreement_all_images_by_engine"].values()) < 0.98
    assert (recorded["quantizer"], recorded["bias_correction"]) == ("NNCF", True)
    assert recorded["weight_bits"] == int8_weight_bits()
    f32 = f32_model(imagenet_repository)
    reference = assert_int8_version(version, f32)
    assert_weight_bits(version / "model.onnx", int8_weight_bits())
    if openvino_engine.available() is None:
        assert_served_on_openvino(version, reference.inputs, scores(f32, reference.inputs))


def assert_served_on_openvino(version: Path, inputs: np.ndarray, f32: np.ndarray) -> None:
    """The server loads the version on OpenVINO as int8 and answers f32's top-1 classes."""
    from concurrent.futures import ThreadPoolExecutor

    from pyserving.core.servable import load_servable
    from pyserving.core.settings import ModelConfig, Settings

    config = ModelConfig("imagenet", version.parent, engine="openvino")
    with ThreadPoolExecutor(2) as pool:
        servable = load_servable("imagenet", 1, version, Settings(models=(config,)), pool)
        try:
            assert (servable.engine_info.name, servable.precision) == ("openvino", "int8")
            answers = np.asarray(servable.run(inputs))
        finally:
            servable.close()
    np.testing.assert_array_equal(answers.argmax(axis=1), f32.argmax(axis=1))


def test_agreement_bar_above_one_always_refuses_and_leaves_no_folder(
    photos: Path, imagenet_repository: Path, tmp_path: Path
) -> None:
    options = QuantizeOptions(photos, limit=LIMIT, min_agreement=1.01)
    with pytest.raises(ExportError) as refused:
        export_onnx(
            f32_model(imagenet_repository),
            tmp_path,
            "imagenet",
            labels=list(imagenet_labels()),
            quantize=options,
        )
    message = str(refused.value)
    assert re.search(r"agrees with f32 on \d+ of \d+ held-back images \([\d.]+%\)", message)
    assert "(those of 32 where f32's top-1 probability leads the second's by 0.05 or " in message
    assert "below --min_agreement 1.01 (101.0%)" in message
    assert_nothing_written(tmp_path / "imagenet")


def test_cli_writes_an_int8_version_at_min_agreement_zero(
    photos: Path, imagenet_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "efficientnet-lite0", "--quantize", "int8", "--calibration", str(photos)]
    argv += ["--repository", str(tmp_path), "--min_agreement", "0", "--int8_weights", "7"]
    assert main([*argv, "--calibration_limit", str(LIMIT)]) == 0
    out, err = capsys.readouterr()
    (version,) = list_versions(tmp_path / "imagenet")
    assert out.strip() == str(tmp_path / "imagenet" / str(version))
    assert "[1/9]" in err and "[9/9] wrote" in err
    agreement = printed_agreement(err)
    path = tmp_path / "imagenet" / str(version)
    assert_int8_version(path, f32_model(imagenet_repository))
    recorded = load_signature(path).source["quantization"]
    assert recorded["calibration_images"] == LIMIT
    assert recorded["held_back_images"] == HELD_BACK
    assert recorded["agreement"] == pytest.approx(agreement, abs=1e-4)
    assert (recorded["format"], recorded["calibration_method"]) == ("QDQ", "MinMax")
    assert (recorded["weight_bits"], recorded["int8_weights"]) == (7, "7")
    engines = {"onnxruntime"} | ({"openvino"} if openvino_engine.available() is None else set())
    assert set(recorded["agreement_by_engine"]) == engines
    assert min(recorded["agreement_by_engine"].values()) == recorded["agreement"]
    assert "7-bit weights: --int8_weights 7" in err
    assert_weight_bits(path / "model.onnx", 7)
    assert_served_as_int8_and_checked(path)


def assert_served_as_int8_and_checked(version: Path) -> None:
    """The server loads the version as int8, and refuses it once its reference is tampered."""
    from concurrent.futures import ThreadPoolExecutor

    from pyserving.core.servable import load_servable
    from pyserving.core.settings import ModelConfig, Settings
    from pyserving.errors import ServableError
    from pyserving.reference import load_reference, write_reference

    settings = Settings(models=(ModelConfig("imagenet", version.parent),))
    with ThreadPoolExecutor(2) as pool:
        servable = load_servable("imagenet", 1, version, settings, pool)
        assert servable.precision == "int8"
        assert servable.engine_info.name in ("onnxruntime", "openvino")
        servable.close()
        reference = load_reference(version)
        assert reference is not None
        write_reference(version, reference.inputs, np.roll(reference.outputs, 1, axis=1))
        with pytest.raises(ServableError, match=r"int8: top-1 differs on \d+ of \d+ reference"):
            load_servable("imagenet", 1, version, settings, pool)


def assert_weight_bits(model_path: Path, bits: int) -> None:
    """Depthwise convolutions have 8-bit weights; dense ones `bits` (7: no saturation
    without VNNI or AMX)."""
    model = onnx.load(str(model_path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dequantized = {
        n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
    }
    largest: dict[str, int] = {}
    for node in (node for node in model.graph.node if node.op_type == "Conv"):
        weights = initializers[dequantized[node.input[1]]]
        assert weights.dtype == np.int8
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kind = "depthwise" if group > 1 else "dense"
        largest[kind] = max(largest.get(kind, 0), int(np.abs(weights.astype(np.int16)).max()))
    expected = {"dense": 64 if bits == 7 else 127, "depthwise": 127}
    assert "dense" in largest
    assert largest == {kind: expected[kind] for kind in largest}


def test_a_small_torch_model_clears_the_default_bar(photos: Path, tmp_path: Path) -> None:
    version = export_tiny(tmp_path, QuantizeOptions(photos, limit=LIMIT))
    sig = load_signature(version)
    assert sig.precision == "int8"
    assert sig.source["quantization"]["agreement"] >= 0.98
    assert sig.source["quantization"]["weight_bits"] == int8_weight_bits()
    assert_weight_bits(version / "model.onnx", int8_weight_bits())
    reference = load_reference(version)
    assert reference is not None
    check = check_reference(reference, scores(version / "model.onnx", reference.inputs), True, 0.02)
    assert check.passed, check.describe()


def test_eight_bit_weights_are_refused_where_the_cpu_would_saturate_them(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8-bit weights load on a CPU with VNNI or AMX; on one without, one line says why."""
    from concurrent.futures import ThreadPoolExecutor

    from pyserving.core import servable as servable_module
    from pyserving.core.servable import load_servable
    from pyserving.core.settings import ModelConfig, Settings
    from pyserving.errors import ServableError

    options = QuantizeOptions(photos, limit=LIMIT, min_agreement=0, weights="8")
    eight = export_tiny(tmp_path, options, "eight")
    seven = export_tiny(tmp_path, replace(options, weights="7"), "seven")
    assert load_signature(eight).source["quantization"]["weight_bits"] == 8
    assert_weight_bits(eight / "model.onnx", 8)
    assert_weight_bits(seven / "model.onnx", 7)
    settings = Settings(models=(ModelConfig("eight", eight.parent),))
    with ThreadPoolExecutor(2) as pool:
        monkeypatch.setattr(servable_module, "int8_dot_product", lambda: "avx512_vnni")
        load_servable("eight", 1, eight, settings, pool).close()
        monkeypatch.setattr(servable_module, "int8_dot_product", lambda: None)
        with pytest.raises(ServableError) as refused:
            load_servable("eight", 1, eight, settings, pool)
        load_servable("seven", 1, seven, settings, pool).close()  # 7 bits load anywhere
    message = str(refused.value)
    assert "8-bit int8 weights need VNNI or AMX" in message
    assert "re-export on this CPU or with --int8_weights 7" in message
    assert "\n" not in message


def test_calibration_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(
        ExportError,
        match=r"no readable image in .*missing \(0 files skipped\): no such folder",
    ):
        export_tiny(tmp_path, QuantizeOptions(missing))
    assert not (tmp_path / "tiny").exists()


def test_calibration_folder_without_images(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.jpg").write_bytes(b"not a JPEG either")
    with pytest.raises(ExportError) as refused:
        export_tiny(tmp_path, QuantizeOptions(folder))
    message = str(refused.value)
    assert message.startswith(f"no readable image in {folder} (2 files skipped)")
    assert "\n" not in message and "JPEG, PNG" in message
    assert not (tmp_path / "tiny").exists()


def test_too_few_calibration_images(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "chelsea.jpg").write_bytes(chelsea_jpeg)
    (folder / "truncated.jpg").write_bytes(chelsea_jpeg[:200])  # a header, then nothing
    with pytest.raises(
        ExportError,
        match=r"has 1 readable image \(1 file skipped\); an int8 export needs at least 2",
    ):
        export_tiny(tmp_path, QuantizeOptions(folder))
    assert not (tmp_path / "tiny").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quantize", "int8"], "--quantize int8 needs --calibration DIR"),
        (["--calibration", "photos"], "--calibration applies only with --quantize int8"),
        (["--min_agreement", "0.5"], "--min_agreement applies only with --quantize int8"),
        (
            ["--quantize", "int8", "--calibration", "photos", "--agreement_margin", "1.5"],
            "--agreement_margin is a probability difference from 0 to 1, got 1.5",
        ),
        (
            ["--quantize", "int8", "--calibration", "photos", "--calibration_limit", "0"],
            "--calibration_limit must be at least 1 image, got 0",
        ),
        (["--int8_weights", "7"], "--int8_weights applies only with --quantize int8"),
        (
            ["--quantize", "int8", "--calibration", "photos", "--held_back", "0"],
            "--held_back must be at least 1 image, got 0",
        ),
        (
            ["--quantize", "int8", "--calibration", "photos", "--precision_tolerance", "2"],
            "--precision_tolerance is a probability difference from 0 to 1, got 2.0",
        ),
    ],
)
def test_cli_flags_that_do_not_fit(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "efficientnet-lite0", "--repository", str(tmp_path), *flags]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_features_models_are_not_quantised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "sklearn", str(tmp_path / "model.joblib"), "--repository", str(tmp_path)]
    assert main([*argv, "--quantize", "int8", "--calibration", str(tmp_path)]) == 1
    assert "--quantize int8 applies to image models" in capsys.readouterr().err
    with pytest.raises(ExportError, match="a features model .* is exported f32 only"):
        export_onnx(
            tmp_path / "model.onnx",
            tmp_path,
            "features",
            labels="a,b",
            features="x,y",
            quantize=QuantizeOptions(tmp_path),
        )
    assert list(tmp_path.iterdir()) == []
