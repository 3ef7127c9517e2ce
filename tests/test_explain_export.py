"""The features' reference values an explanation needs, recorded by the sklearn exporter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pyserving.errors import ExportError, ServableError
from pyserving.export.sklearn import export_sklearn
from pyserving.kinds import load_signature
from pyserving.kinds.base import fields_of
from pyserving.kinds.features import FeatureFields

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_a_leading_scaler_gives_the_training_means(tmp_path: Path) -> None:
    iris = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(iris.data, iris.target)
    version = export_sklearn(model, tmp_path, "iris", features=FEATURES)
    doc = json.loads((version / "servable.json").read_text())
    np.testing.assert_allclose(doc["input"]["reference"], iris.data.mean(0), rtol=1e-12)
    fields = fields_of(load_signature(version), FeatureFields)
    assert fields.reference == pytest.approx(tuple(iris.data.mean(0)))


def test_given_values_are_recorded_and_checked(tmp_path: Path) -> None:
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    plain = export_sklearn(model, tmp_path, "plain", features=FEATURES)
    assert "reference" not in json.loads((plain / "servable.json").read_text())["input"]
    given = export_sklearn(model, tmp_path, "given", features=FEATURES, reference=[1, 2, 3, 4])
    assert fields_of(load_signature(given), FeatureFields).reference == (1, 2, 3, 4)
    with pytest.raises(ExportError, match="4 finite numbers"):
        export_sklearn(model, tmp_path, "bad", features=FEATURES, reference=[1, 2])


def test_a_wrong_reference_in_servable_json_is_refused(tmp_path: Path) -> None:
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    version = export_sklearn(model, tmp_path, "iris", features=FEATURES, reference=[1, 2, 3, 4])
    path = version / "servable.json"
    doc = json.loads(path.read_text())
    for wrong in ([1, 2, 3], [1, 2, 3, "x"], [1, 2, 3, True], "1,2,3,4"):
        doc["input"]["reference"] = wrong
        path.write_text(json.dumps(doc))
        with pytest.raises(ServableError, match="input.reference must be 4 finite numbers"):
            load_signature(version)
