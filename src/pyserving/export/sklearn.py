"""scikit-learn → ONNX with skl2onnx: a fitted classifier or pipeline on named features,
or (`input="text"`) a text pipeline whose first step is a Count or Tfidf vectorizer.

The graph takes `features`, float32 [N, F], in the order of the signature's feature names,
or `text`, string [N, 1], and gives `probabilities`, float32 [N, classes], one column per
entry of `classes_`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.errors import ExportError
from pyserving.export import sklearn_text
from pyserving.export.labels import Labels, match_labels, read_labels
from pyserving.export.verify import compare
from pyserving.export.write import Progress, missing_extra, provenance, write_servable
from pyserving.kinds import write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.kinds.text import WHITESPACE, TextFields, normalize
from pyserving.signature import MODEL_FILE, Signature

try:
    import joblib
    import skl2onnx
    import sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
except ImportError as exc:
    raise missing_extra(exc.name or "scikit-learn", "sklearn") from exc

__all__ = ["export_sklearn", "load_sklearn"]

INPUT_NAME = "features"
TEXT_INPUT_NAME = "text"
INPUTS = ("features", "text")
OUTPUT_NAME = "probabilities"
OPSETS = {"": 17, "ai.onnx.ml": 3}
STEPS = 5  # load, convert, verify, agree, wrote
SAMPLE_ROWS = 64


def load_sklearn(path: Path | str) -> Any:
    """A fitted estimator saved with joblib or pickle. Unpickling runs code: trust the file."""
    if not Path(path).is_file():
        raise ExportError(f"{path}: no such file (expected a model saved with joblib.dump)")
    try:
        return joblib.load(str(path))
    except Exception as exc:
        raise ExportError(f"cannot load {path} with joblib: {exc}") from exc


def export_sklearn(
    model: Any,
    repository: Path | str,
    name: str,
    *,
    input: str = "features",
    features: Sequence[str] | str | None = None,
    labels: Labels | None = None,
    samples: np.ndarray | Sequence[str] | None = None,
    whitespace: str = "collapse",
    reference: Sequence[float] | None = None,
    top_k: int = 5,
    tolerance: float = 1e-4,
    source: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Export a fitted classifier (an object, or a joblib/pickle file) as a servable.

    `features` names the columns in the order the model was fitted on (default: the
    model's `feature_names_in_`). `labels` name the classes in the order of `classes_`
    (default: the classes themselves). `samples` are the rows the ONNX result is checked
    on against `predict_proba`; by default random rows around 0 and over [0, 10).

    With `input="text"` the model is a text pipeline, `samples` are texts (by default made
    from its vocabulary), and `whitespace` says how the server normalises a request's
    text (`collapse`: runs of whitespace become one space), as the training texts were.

    A features model records each feature's reference value, which explanations put in
    place of the feature: `reference` (the training means, in order), else the means of a
    pipeline's leading StandardScaler; without either, the version cannot be explained.
    """
    if input not in INPUTS:
        raise ExportError(f"unknown input {input!r}; a scikit-learn model takes features or text")
    progress = progress or Progress(STEPS)
    if isinstance(model, str | Path):
        progress.step(f"loading {model}")
        description = Path(model).name
        model = load_sklearn(model)
    else:
        progress.step(f"using the given {type(model).__name__}")
        description = type(model).__name__
    _check_classifier(model)
    classes = [str(c) for c in model.classes_]
    class_names = read_labels(labels) if labels is not None else tuple(classes)
    if input == "text":
        if whitespace not in WHITESPACE:
            raise ExportError(f"whitespace {whitespace!r} is not one of {', '.join(WHITESPACE)}")
        step = sklearn_text.vectorizer(model, whitespace)
        names: tuple[str, ...] = ()
        texts = sklearn_text.check_texts(
            [str(t) for t in samples] if samples is not None else sklearn_text.sample_texts(step)
        )
        # Verified on what the server will hand the graph: the texts normalised as it does.
        rows = np.array([normalize(t, whitespace) for t in texts], dtype=str).reshape(-1, 1)
        input_name = TEXT_INPUT_NAME
    else:
        names = _feature_names(model, features)
        rows = _samples(None if samples is None else np.asarray(samples), len(names))
        input_name = INPUT_NAME
        means = _reference(model, reference, len(names))

    def source_probabilities(inputs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "X does not have valid feature names"
            given = inputs[:, 0].tolist() if input == "text" else inputs
            return np.asarray(model.predict_proba(given))

    def write(folder: Path) -> None:
        progress.step(f"converting to ONNX with skl2onnx {skl2onnx.__version__}")
        if input == "text":
            _convert_text(model, step, folder / MODEL_FILE)
        else:
            _convert(model, len(names), folder / MODEL_FILE)
        agreement = compare(
            folder / MODEL_FILE,
            input_name,
            OUTPUT_NAME,
            rows,
            source_probabilities,
            "scikit-learn",
            progress,
            tolerance,
        )
        matched = match_labels(class_names, agreement.classes)
        details = {
            "model": description,
            "estimator": _describe(model),
            "classes": classes,
            **(source or {}),
            "sklearn_version": sklearn.__version__,
            "skl2onnx_version": skl2onnx.__version__,
            "max_abs_difference": agreement.max_abs_difference,
        }
        signature = Signature(
            kind="text" if input == "text" else "features",
            input_name=input_name,
            input_dtype="string" if input == "text" else "float32",
            output_name=OUTPUT_NAME,
            scores="probabilities",
            labels=matched,
            top_k=max(1, min(top_k, len(matched))),
            fields=TextFields(whitespace) if input == "text" else FeatureFields(names, means),
            source=provenance("scikit-learn", **details),
        )
        write_signature(signature, folder)

    path = write_servable(Path(repository), name, write)
    progress.step(f"wrote {path}")
    return path


def _check_classifier(model: Any) -> None:
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise ExportError(
            f"{type(model).__name__} is not a fitted classifier with predict_proba; pyserving "
            "serves class probabilities (for SVC, fit it with probability=True)"
        )


def _feature_names(model: Any, features: Sequence[str] | str | None) -> tuple[str, ...]:
    count = getattr(model, "n_features_in_", None)
    if features is None:
        fitted = getattr(model, "feature_names_in_", None)
        if fitted is None:
            raise ExportError(
                f"the model was fitted without feature names; give them, in order, with "
                f"--features (it takes {count} features)"
            )
        names = tuple(str(n) for n in fitted)
    elif isinstance(features, str):
        names = tuple(n.strip() for n in features.split(","))
    else:
        names = tuple(features)
    if not names or not all(names):
        raise ExportError(f"feature names must be non-empty, got {list(names)}")
    if len(set(names)) != len(names):
        raise ExportError(f"a feature is named twice in {list(names)}")
    if count is not None and len(names) != count:
        raise ExportError(
            f"{len(names)} feature names were given ({', '.join(names)}) but the model was "
            f"fitted on {count} features"
        )
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and list(fitted_names) != list(names):
        raise ExportError(
            f"the model was fitted on features {list(fitted_names)}, in that order; "
            f"got {list(names)}"
        )
    return names


def _reference(model: Any, given: Sequence[float] | None, width: int) -> tuple[float, ...]:
    """The features' reference values: as given, else a leading StandardScaler's means."""
    if given is not None:
        values = np.asarray(given, dtype=np.float64).reshape(-1)
        if len(values) != width or not np.isfinite(values).all():
            raise ExportError(
                f"reference values must be {width} finite numbers (one per feature, the "
                f"training means), got {list(given)}"
            )
        return tuple(float(v) for v in values)
    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else None
    means = getattr(first, "mean_", None) if type(first).__name__ == "StandardScaler" else None
    if means is None or len(means) != width:
        return ()
    return tuple(float(v) for v in means)


def _samples(samples: np.ndarray | None, width: int) -> np.ndarray:
    if samples is None:
        rng = np.random.default_rng(0)
        half = SAMPLE_ROWS // 2
        rows = np.concatenate(
            [rng.normal(size=(half, width)), rng.uniform(0, 10, size=(half, width))]
        )
    else:
        rows = np.asarray(samples, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != width or len(rows) == 0:
            raise ExportError(f"samples must be rows of {width} numbers, got shape {rows.shape}")
    return rows.astype(np.float32)


def _convert(model: Any, width: int, path: Path) -> None:
    try:
        proto = skl2onnx.to_onnx(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
            # A plain [N, classes] float tensor, not a list of {class: probability} maps.
            options={"zipmap": False},
            target_opset=OPSETS,
        )
    except Exception as exc:
        raise ExportError(f"skl2onnx cannot convert {_describe(model)}: {exc}") from exc
    path.write_bytes(proto.SerializeToString())


def _convert_text(model: Any, step: Any, path: Path) -> None:
    classifier = model.steps[-1][1]
    options = {id(step): sklearn_text.converter_options(step), id(classifier): {"zipmap": False}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "only tokenizer='word' is fully supported"
            proto = skl2onnx.to_onnx(
                model,
                initial_types=[(TEXT_INPUT_NAME, StringTensorType([None, 1]))],
                options=options,
                target_opset=OPSETS,
            )
    except Exception as exc:
        raise ExportError(f"skl2onnx cannot convert {_describe(model)}: {exc}") from exc
    path.write_bytes(proto.SerializeToString())


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return f"Pipeline({', '.join(type(step).__name__ for _, step in steps)})"
    return type(model).__name__
