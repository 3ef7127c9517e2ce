import json
from pathlib import Path
from typing import Any

import pytest

from pyserving.errors import ServableError
from pyserving.kinds import load_signature, write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.kinds.image import ImageFields
from pyserving.kinds.tensor import TensorFields
from pyserving.kinds.text import TextFields
from pyserving.results import TensorSpec
from pyserving.signature import Signature, list_versions

IMAGE = Signature(
    kind="image",
    input_name="image",
    input_dtype="uint8",
    output_name="logits",
    scores="logits",
    labels=("cat", "dog", "<b>bird</b>"),
    top_k=2,
    fields=ImageFields(224, 200),
    source={"framework": "test"},
)


def write(folder: Path, doc: dict[str, Any], labels: str = "cat\ndog\nbird\n") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "servable.json").write_text(json.dumps(doc))
    (folder / "labels.txt").write_text(labels)
    return folder


def test_round_trip(tmp_path: Path) -> None:
    write_signature(IMAGE, tmp_path)
    loaded = load_signature(tmp_path)
    assert loaded == IMAGE
    assert loaded.source == {"framework": "test"}
    assert (tmp_path / "labels.txt").read_text().splitlines()[2] == "<b>bird</b>"


def test_features_round_trip(tmp_path: Path) -> None:
    sig = Signature(
        kind="features",
        input_name="x",
        input_dtype="float32",
        output_name="p",
        scores="probabilities",
        labels=("a", "b"),
        fields=FeatureFields(("f1", "f2", "f3")),
    )
    write_signature(sig, tmp_path)
    assert load_signature(tmp_path).fields == FeatureFields(("f1", "f2", "f3"))


def test_trailing_blank_lines_in_labels_are_ignored(tmp_path: Path) -> None:
    write_signature(IMAGE, tmp_path)
    with (tmp_path / "labels.txt").open("a") as f:
        f.write("\n\n")
    assert load_signature(tmp_path).num_classes == 3


@pytest.mark.parametrize("missing", ["servable.json", "labels.txt"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    write_signature(IMAGE, tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(ServableError, match=f"{missing}: missing"):
        load_signature(tmp_path)


def _doc(**changes: object) -> dict[str, Any]:
    doc = IMAGE.to_json()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "labels", "problem"),
    [
        (_doc(format=2), "cat\ndog\nbird\n", "unknown format 2"),
        (_doc(format=None), "cat\ndog\nbird\n", "unknown format None"),
        (_doc(kind="video"), "cat\ndog\nbird\n", "unknown input kind 'video'"),
        (_doc(), "cat\ndog\n", "labels.txt has 2 labels but the output has 3 classes"),
        (_doc(top_k=0), "cat\ndog\nbird\n", "top_k must be a positive integer"),
        (_doc(input={"name": "image"}), "cat\ndog\nbird\n", "input.dtype"),
        (_doc(output=None), "cat\ndog\nbird\n", "missing the 'output' object"),
    ],
)
def test_invalid_signature_names_file_and_problem(
    tmp_path: Path, doc: dict[str, Any], labels: str, problem: str
) -> None:
    write(tmp_path, doc, labels)
    with pytest.raises(ServableError) as info:
        load_signature(tmp_path)
    assert str(tmp_path / "servable.json") in str(info.value)
    assert problem in str(info.value)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {})
    (tmp_path / "servable.json").write_text("{not json")
    with pytest.raises(ServableError, match="not valid JSON"):
        load_signature(tmp_path)


def test_write_refuses_an_invalid_signature(tmp_path: Path) -> None:
    bad = Signature(
        kind="image",
        input_name="image",
        input_dtype="uint8",
        output_name="logits",
        scores="logits",
        labels=("a",),
        fields=ImageFields(0, 0),
    )
    with pytest.raises(ServableError, match="height"):
        write_signature(bad, tmp_path)
    assert not (tmp_path / "servable.json").exists()


def test_text_round_trip_and_old_versions_still_load(tmp_path: Path) -> None:
    sig = Signature(
        kind="text",
        input_name="text",
        input_dtype="string",
        output_name="probabilities",
        scores="probabilities",
        labels=("cat", "dog", "bird"),
        top_k=3,
        fields=TextFields("keep"),
    )
    write_signature(sig, tmp_path)
    doc = json.loads((tmp_path / "servable.json").read_text())
    assert doc["format"] == 1 and doc["input"] == {
        "name": "text",
        "dtype": "string",
        "whitespace": "keep",
    }
    assert load_signature(tmp_path) == sig
    # A format-1 image signature written before the kinds were modules reads the same.
    old = {
        "format": 1,
        "kind": "image",
        "input": {"name": "image", "dtype": "uint8", "height": 4, "width": 4},
        "output": {"name": "logits", "classes": 3},
    }
    assert load_signature(write(tmp_path / "old", old)).fields == ImageFields(
        4, 4, "NHWC", "bilinear"
    )
    with pytest.raises(ServableError, match="unknown input kind 'video'; expected one of"):
        load_signature(write(tmp_path / "video", {**old, "kind": "video"}))


TENSOR = Signature(
    kind="tensor",
    input_name="a",
    input_dtype="int64",
    output_name="sum",
    fields=TensorFields(
        (TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "INT64", (-1,))),
        (TensorSpec("sum", "INT64", (-1,)), TensorSpec("product", "INT64", (-1,))),
        batch_axis=True,
    ),
)


def test_tensor_round_trip_lists_every_tensor_and_has_no_labels(tmp_path: Path) -> None:
    version = tmp_path / "7"
    version.mkdir()
    write_signature(TENSOR, version)
    doc = json.loads((version / "servable.json").read_text())
    assert doc["format"] == 1 and "top_k" not in doc
    assert doc["input"]["tensors"][1] == {"name": "b", "datatype": "INT64", "shape": [-1]}
    assert doc["output"] == {
        "name": "sum",
        "tensors": [
            {"name": "sum", "datatype": "INT64", "shape": [-1]},
            {"name": "product", "datatype": "INT64", "shape": [-1]},
        ],
    }
    assert (version / "labels.txt").read_text() == ""
    assert load_signature(version) == TENSOR
    (version / "model.onnx").write_bytes(b"")
    assert list_versions(tmp_path) == [7]  # the empty labels.txt makes it complete
    (version / "labels.txt").write_text("a\n")
    with pytest.raises(ServableError, match="labels.txt has 1 labels; a tensor model"):
        load_signature(version)


def test_versions_written_before_tensor_models_still_load(tmp_path: Path) -> None:
    # servable.json of features and text versions as the previous release wrote them.
    features = {
        "format": 1,
        "kind": "features",
        "input": {"name": "x", "dtype": "float32", "features": ["a", "b"]},
        "output": {"name": "p", "scores": "probabilities", "classes": 2},
        "top_k": 9,
        "source": {"framework": "sklearn"},
    }
    loaded = load_signature(write(tmp_path / "features", features, "A\nB\n"))
    assert (loaded.fields, loaded.labels, loaded.top_k) == (
        FeatureFields(("a", "b")),
        ("A", "B"),
        2,
    )
    text = {
        "format": 1,
        "kind": "text",
        "input": {"name": "text", "dtype": "string", "whitespace": "collapse"},
        "output": {"name": "probabilities", "scores": "probabilities", "classes": 2},
        "top_k": 1,
    }
    assert load_signature(write(tmp_path / "text", text, "en\nde\n")).labels == ("en", "de")
