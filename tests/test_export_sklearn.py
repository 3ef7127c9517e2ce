"""scikit-learn → servable: classifiers and pipelines on named features, via skl2onnx."""

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pyserving.errors import ExportError
from pyserving.export import export_sklearn
from pyserving.kinds import load_signature
from pyserving.kinds.features import FeatureFields
from pyserving.signature import list_versions

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SPECIES = ("setosa", "versicolor", "virginica")


@pytest.fixture(scope="module")
def iris() -> Any:
    return load_iris()


@pytest.fixture(scope="module")
def pipeline(iris: Any) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        iris.data, iris.target
    )


def onnx_probabilities(version: Path, rows: np.ndarray) -> np.ndarray:
    sig = load_signature(version)
    session = ort.InferenceSession(str(version / "model.onnx"))
    (probabilities,) = session.run([sig.output_name], {sig.input_name: rows.astype(np.float32)})
    return np.asarray(probabilities)


def test_pipeline_matches_predict_proba_on_all_of_iris(
    tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    version = export_sklearn(pipeline, tmp_path, "iris", features=FEATURES, labels=SPECIES)
    rows = iris.data.astype(np.float32)
    ours = onnx_probabilities(version, rows)
    assert np.abs(ours - pipeline.predict_proba(rows)).max() < 1e-5
    assert np.array_equal(ours.argmax(axis=1), pipeline.predict(rows))
    sig = load_signature(version)
    assert (sig.kind, sig.input_dtype) == ("features", "float32")
    assert isinstance(sig.fields, FeatureFields) and sig.fields.features == FEATURES
    assert (sig.output_name, sig.scores, sig.labels) == ("probabilities", "probabilities", SPECIES)
    assert sig.source["framework"] == "scikit-learn"
    assert sig.source["estimator"] == "Pipeline(StandardScaler, LogisticRegression)"


def test_forest_with_string_classes_names_labels_after_them(tmp_path: Path, iris: Any) -> None:
    names = np.array(SPECIES)[iris.target]
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(iris.data, names)
    path = tmp_path / "forest.joblib"
    joblib.dump(forest, path)
    version = export_sklearn(path, tmp_path, "forest", features=",".join(FEATURES))
    assert load_signature(version).labels == tuple(forest.classes_)
    ours = onnx_probabilities(version, iris.data)
    assert np.abs(ours - forest.predict_proba(iris.data.astype(np.float32))).max() < 1e-5


def test_samples_are_used_for_the_check(tmp_path: Path, iris: Any, pipeline: Any) -> None:
    version = export_sklearn(
        pipeline, tmp_path, "iris", features=FEATURES, labels=SPECIES, samples=iris.data
    )
    assert load_signature(version).source["max_abs_difference"] < 1e-5
    with pytest.raises(ExportError, match="rows of 4 numbers"):
        export_sklearn(pipeline, tmp_path, "iris", features=FEATURES, samples=iris.data[:, :3])


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (FEATURES[:3], SPECIES, "3 feature names were given .* fitted on 4 features"),
        (("a", "b", "a", "c"), SPECIES, "named twice"),
        (None, SPECIES, "fitted without feature names; give them, in order, with --features"),
        (FEATURES, ("setosa", "versicolor"), "the model has 3 classes but 2 labels"),
    ],
)
def test_mismatched_names_are_refused(
    tmp_path: Path, pipeline: Any, features: Any, labels: Any, message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        export_sklearn(pipeline, tmp_path, "iris", features=features, labels=labels)
    assert list_versions(tmp_path / "iris") == []


def test_models_without_probabilities_are_refused(tmp_path: Path, iris: Any) -> None:
    with pytest.raises(ExportError, match="not a fitted classifier with predict_proba"):
        export_sklearn(
            LinearRegression().fit(iris.data, iris.target), tmp_path, "r", features=FEATURES
        )
    with pytest.raises(ExportError, match="probability=True"):
        export_sklearn(SVC().fit(iris.data, iris.target), tmp_path, "s", features=FEATURES)


def test_unreadable_model_file(tmp_path: Path) -> None:
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ExportError, match="cannot load .*junk.joblib with joblib"):
        export_sklearn(tmp_path / "junk.joblib", tmp_path, "junk", features=FEATURES)
    with pytest.raises(ExportError, match="no such file"):
        export_sklearn(tmp_path / "none.joblib", tmp_path, "none", features=FEATURES)


def test_cli_the_iris_command(tmp_path: Path, iris: Any, pipeline: Any) -> None:
    joblib.dump(pipeline, tmp_path / "iris.joblib")
    np.savetxt(
        tmp_path / "iris.csv", iris.data, delimiter=",", header=",".join(FEATURES), comments=""
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "sklearn",
            "iris.joblib",
            "--features",
            ",".join(FEATURES),
            "--labels",
            ",".join(SPECIES),
            "--samples",
            "iris.csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    version = Path(result.stdout.strip())
    assert version.parent == Path("models/iris")
    steps = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] for s in steps] == [f"[{i}/5" for i in range(1, 6)]
    assert "verifying ONNX Runtime against scikit-learn on 150 inputs" in result.stderr
    ours = onnx_probabilities(tmp_path / version, iris.data)
    assert np.abs(ours - pipeline.predict_proba(iris.data.astype(np.float32))).max() < 1e-5


def test_missing_sklearn_names_the_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        from pyserving.cli.main import main
        sys.exit(main(["export", "sklearn", "iris.joblib", "--features", "a,b"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2  # a missing extra
    assert result.stderr.strip() == (
        "error: sklearn is not installed; install it with: pip install 'pyserving[sklearn]'"
    )
