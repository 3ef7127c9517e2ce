"""The `pyserving export SOURCE ...` subcommands. Heavy imports happen only when one runs."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyserving.errors import ExportError

if TYPE_CHECKING:
    import numpy as np

    from pyserving.export.quantize import QuantizeOptions

_MEAN_STD_HELP = (
    "per channel, 1 or 3 values on the 0–1 scale: the graph computes (x/255 - mean)/std"
)


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object); each source runs itself."""
    export = commands.add_parser("export", help="export a model into a repository")
    sources = export.add_subparsers(required=True, metavar="SOURCE")
    add_export_sources(sources)
    # Every source exports into a local folder; an s3:// --repository is uploaded from one.
    for source in sources.choices.values():
        source.set_defaults(run=_to_repository(source.get_default("run")))


def _to_repository(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """`run`, exporting into a temporary folder and uploading from it when `--repository`
    is an s3:// URI; it prints the version's URI instead of a folder."""

    def run_to_repository(args: argparse.Namespace) -> int:
        if not isinstance(args.repository, str):
            return run(args)
        from pyserving.export.publish import export_to_storage

        def export_into(folder: Path) -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # the temporary folder's path
                run(argparse.Namespace(**{**vars(args), "repository": folder}))

        for uri in export_to_storage(args.repository, args.s3_endpoint, export_into):
            print(uri)
        return 0

    return run_to_repository


def _repository(text: str) -> Path | str:
    """--repository: a local folder, or a URI (`s3://...`) kept as it is."""
    from pyserving.storage import is_uri

    return text if is_uri(text) else Path(text)


def add_export_sources(sources: Any) -> None:
    """Add one subcommand per export source to `sources` (an argparse subparsers object)."""
    zoo = sources.add_parser(
        "efficientnet-lite0", help="EfficientNet-Lite0 with ImageNet weights (offline)"
    )
    _add_destination(zoo, "imagenet")
    _add_quantize_options(zoo)
    zoo.set_defaults(run=run_export_zoo, zoo_model="efficientnet-lite0")

    vad = sources.add_parser(
        "silero-vad",
        help="Silero VAD: speech or no speech in an audio clip (from the silero-vad wheel)",
    )
    _add_destination(vad, "speech")
    vad.set_defaults(run=run_export_silero_vad)

    torch = sources.add_parser("torch", help="a PyTorch image classifier (torch.nn.Module)")
    torch.add_argument(
        "--factory",
        required=True,
        metavar="MODULE:FUNCTION",
        help="builds the model, e.g. package.module:build_model (the current folder is searched)",
    )
    torch.add_argument(
        "--checkpoint",
        type=Path,
        help="weights saved with torch.save: a state dict, or a dict holding one under "
        "'state_dict' or 'model'",
    )
    _add_image_options(torch, size_required=True, mean="ImageNet's", std="ImageNet's")
    _add_common(torch)
    _add_quantize_options(torch)
    torch.set_defaults(run=run_export_torch)

    keras = sources.add_parser("keras", help="a Keras .keras file or a TensorFlow SavedModel")
    keras.add_argument("model", type=Path, help="a .keras (or .h5) file or a SavedModel folder")
    keras.add_argument("--weights", type=Path, help="a weights file to load into the model")
    keras.add_argument("--signature", default="serving_default", help="SavedModel signature")
    keras.add_argument("--output", help="the output holding the scores, if there are several")
    _add_image_options(keras, size_required=False, mean="0", std="1/255: pixels as 0–255")
    _add_common(keras)
    _add_quantize_options(keras)
    keras.set_defaults(run=run_export_keras)

    sklearn = sources.add_parser("sklearn", help="a scikit-learn classifier saved with joblib")
    sklearn.add_argument("model", type=Path, help="a fitted classifier or pipeline (joblib.dump)")
    sklearn.add_argument(
        "--input",
        choices=("features", "text"),
        default="features",
        help="what the model takes: named features, or text (a pipeline whose first step is "
        "a CountVectorizer or TfidfVectorizer)",
    )
    sklearn.add_argument(
        "--whitespace",
        choices=("collapse", "keep"),
        default="collapse",
        help="text: how the server normalises whitespace, as the training texts were "
        "(collapse: runs of whitespace become one space)",
    )
    sklearn.add_argument(
        "--features",
        help="the feature names in the order the model takes them, comma-separated "
        "(default: the names it was fitted with)",
    )
    sklearn.add_argument(
        "--labels",
        help="class names in the order of the model's classes_: a file, one per line, or "
        "a comma-separated list (default: the classes themselves)",
    )
    sklearn.add_argument(
        "--samples",
        type=Path,
        help="rows to verify the ONNX model on: a CSV file, or for text a UTF-8 file of "
        "one text per line",
    )
    sklearn.add_argument(
        "--reference",
        help="features: each feature's training mean, comma-separated in the model's order, "
        "which explanations put in place of a feature (default: a leading StandardScaler's)",
    )
    sklearn.add_argument("--top-k", type=int, default=5, help="default number of classes")
    _add_destination(sklearn)
    _add_quantize_options(sklearn)  # refused with a reason, rather than "unrecognized"
    sklearn.set_defaults(run=run_export_sklearn)

    onnx = sources.add_parser("onnx", help="an existing ONNX model, as it is")
    onnx.add_argument("model", type=Path, help="a .onnx file")
    onnx.add_argument(
        "--kind",
        choices=["classifier", "tensor"],
        default="classifier",
        help="classifier: an image or features (--features) classifier with labels; "
        "tensor: any model, served as raw tensors through predict (no labels)",
    )
    onnx.add_argument(
        "--allow-nan",
        "--allow_nan",
        action="store_true",
        help="tensor: let float inputs hold NaN and infinities (refused by default)",
    )
    onnx.add_argument(
        "--features", help="for a model on features [N, F]: their names, comma-separated"
    )
    onnx.add_argument(
        "--layout",
        choices=["auto", "NCHW", "NHWC"],
        default="auto",
        help="the image input's axes (auto: read from the model)",
    )
    onnx.add_argument("--output", help="the output holding the scores, if there are several")
    _add_image_options(onnx, size_required=False, mean="0", std="1/255: pixels as 0–255")
    _add_common(onnx, labels_required=False)
    _add_quantize_options(onnx)
    onnx.set_defaults(run=run_export_onnx)


def _add_destination(parser: argparse.ArgumentParser, name: str | None = None) -> None:
    parser.add_argument(
        "--repository",
        type=_repository,
        default=Path("models"),
        help="where the version is written: a folder, or s3://BUCKET/PREFIX (the [s3] extra)",
    )
    parser.add_argument(
        "--s3_endpoint",
        default="",
        help="S3-compatible server's URL for an s3:// repository (default: $AWS_ENDPOINT_URL, "
        "$S3_ENDPOINT, else AWS)",
    )
    parser.add_argument(
        "--name",
        default=name,
        help="model name in the repository" + ("" if name else " (default: the file's name)"),
    )


def _add_image_options(
    parser: argparse.ArgumentParser, size_required: bool, mean: str, std: str
) -> None:
    parser.add_argument(
        "--input-size",
        type=_size,
        required=size_required,
        metavar="N|HxW",
        help="the model's input height and width"
        + ("" if size_required else " (default: read from the model)"),
    )
    parser.add_argument("--mean", type=float, nargs="+", help=f"{_MEAN_STD_HELP} (default {mean})")
    parser.add_argument("--std", type=float, nargs="+", help=f"(default {std})")
    parser.add_argument(
        "--resize",
        default="bilinear",
        choices=["bilinear", "bicubic", "nearest", "lanczos"],
        help="how the server resizes images to the input size",
    )


def _add_common(parser: argparse.ArgumentParser, labels_required: bool = True) -> None:
    parser.add_argument(
        "--labels",
        required=labels_required,
        help="class names: a file with one per line (line i is class i), or a comma-separated list"
        + ("" if labels_required else " (required for a classifier)"),
    )
    parser.add_argument(
        "--background",
        action="store_true",
        help="class 0 is 'background' and the labels name classes 1..N (1001-class models)",
    )
    parser.add_argument(
        "--scores",
        choices=["logits", "probabilities"],
        help="what the output holds (default: told from the outputs)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="default number of classes")
    _add_destination(parser)


def _add_quantize_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("int8 export (image models)")
    group.add_argument(
        "--quantize",
        choices=["int8"],
        help="write a statically quantised model (ONNX QDQ), calibrated on --calibration",
    )
    group.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="a folder of images like those the model will serve (searched recursively)",
    )
    group.add_argument(
        "--calibration_limit",
        "--calibration-limit",
        type=int,
        metavar="N",
        help="most images that calibrate (default 100); every 5th image, and those past "
        "this limit, are held back to measure agreement with f32",
    )
    group.add_argument(
        "--held_back",
        "--held-back",
        type=int,
        metavar="N",
        help="most images held back to measure agreement (default 500)",
    )
    group.add_argument(
        "--int8_weights",
        "--int8-weights",
        choices=["auto", "8", "7"],
        help="weight bits: 8 needs a CPU with VNNI or AMX where it is served (x86), 7 runs "
        "on any (default auto: 8 where this CPU has VNNI or AMX, else 7)",
    )
    group.add_argument(
        "--min_agreement",
        "--min-agreement",
        type=float,
        metavar="FRACTION",
        help="least top-1 agreement of int8 with f32 on the held-back images (default 0.98)",
    )
    group.add_argument(
        "--precision_tolerance",
        "--precision-tolerance",
        type=float,
        metavar="P",
        help="largest probability difference from f32 on the reference set (default 0.02, "
        "as for serve; a larger one needs the same serve --precision_tolerance)",
    )


# The flags after --quantize, as argparse names them, and the QuantizeOptions field of each.
_QUANTIZE_FIELDS = {
    "calibration_limit": "limit",
    "held_back": "held_back",
    "int8_weights": "weights",
    "min_agreement": "min_agreement",
    "precision_tolerance": "tolerance",
}
_QUANTIZE_FLAGS = ("calibration", *_QUANTIZE_FIELDS)


def _quantize_options(args: argparse.Namespace) -> QuantizeOptions | None:
    """The int8 export asked for by the flags, or None; ExportError for flags that clash."""
    if args.quantize is None:
        given = [f"--{key}" for key in _QUANTIZE_FLAGS if getattr(args, key) is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ExportError(f"{', '.join(given)} {verb} only with --quantize int8")
        return None
    if args.calibration is None:
        raise ExportError(
            "--quantize int8 needs --calibration DIR: a folder of images like those the "
            "model will serve"
        )
    from pyserving.export.quantize import QuantizeOptions

    options = {
        field: getattr(args, key)
        for key, field in _QUANTIZE_FIELDS.items()
        if getattr(args, key) is not None
    }
    return QuantizeOptions(args.calibration, precision=args.quantize, **options)


def _size(text: str) -> tuple[int, ...]:
    try:
        sides = tuple(int(part) for part in text.lower().split("x"))
        if len(sides) not in (1, 2) or min(sides) < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N or HxW with positive integers, got {text!r}"
        ) from None
    return sides


def _image_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "labels": args.labels,
        "input_size": args.input_size,
        "scores": args.scores,
        "background": args.background,
        "resize": args.resize,
        "top_k": args.top_k,
    }
    if args.mean is not None:
        kwargs["mean"] = args.mean
    if args.std is not None:
        kwargs["std"] = args.std
    return kwargs


def _name(args: argparse.Namespace, path: Path) -> str:
    return str(args.name or path.resolve().name.split(".")[0])


def run_export_zoo(args: argparse.Namespace) -> int:
    from pyserving.export.zoo import ZOO

    path = ZOO[args.zoo_model](args.repository, args.name, _quantize_options(args))
    print(path)
    return 0


def run_export_silero_vad(args: argparse.Namespace) -> int:
    from pyserving.export.silero import export_silero_vad

    print(export_silero_vad(args.repository, args.name))
    return 0


def run_export_torch(args: argparse.Namespace) -> int:
    from pyserving.export.quantize import QUANTIZE_STEPS
    from pyserving.export.torch import STEPS, export_torch, load_checkpoint, load_factory
    from pyserving.export.write import Progress

    quantize = _quantize_options(args)
    steps = STEPS + 1 + (args.checkpoint is not None) + (QUANTIZE_STEPS if quantize else 0)
    progress = Progress(steps)
    progress.step(f"building the model with {args.factory}")
    model = load_factory(args.factory)
    if args.checkpoint is not None:
        progress.step(f"loading checkpoint {args.checkpoint}")
        load_checkpoint(model, args.checkpoint)
    default = args.checkpoint.stem if args.checkpoint else args.factory.rpartition(":")[2]
    path = export_torch(
        model,
        args.repository,
        args.name or default,
        source={"factory": args.factory, "checkpoint": str(args.checkpoint or "")},
        progress=progress,
        quantize=quantize,
        **_image_kwargs(args),
    )
    print(path)
    return 0


def run_export_keras(args: argparse.Namespace) -> int:
    from pyserving.export.keras import export_keras

    path = export_keras(
        args.model,
        args.repository,
        _name(args, args.model),
        weights=args.weights,
        signature=args.signature,
        output=args.output,
        quantize=_quantize_options(args),
        **_image_kwargs(args),
    )
    print(path)
    return 0


def run_export_sklearn(args: argparse.Namespace) -> int:
    if args.quantize is not None or any(getattr(args, key) is not None for key in _QUANTIZE_FLAGS):
        raise ExportError(
            "--quantize int8 applies to image models; a scikit-learn model takes features "
            "and is exported f32 only"
        )
    from pyserving.export.sklearn import export_sklearn

    samples: Any = None
    if args.samples is not None:
        samples = _read_lines(args.samples) if args.input == "text" else _read_csv(args.samples)
    path = export_sklearn(
        args.model,
        args.repository,
        _name(args, args.model),
        input=args.input,
        features=args.features,
        labels=args.labels,
        samples=samples,
        whitespace=args.whitespace,
        reference=_numbers(args.reference, "--reference") if args.reference else None,
        top_k=args.top_k,
    )
    print(path)
    return 0


def _numbers(text: str, flag: str) -> list[float]:
    """Comma-separated numbers, or ExportError naming the flag."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ExportError(f"{flag} takes numbers separated by commas, got {text!r}") from None


def run_export_onnx(args: argparse.Namespace) -> int:
    if args.kind == "tensor":
        return _run_export_onnx_tensor(args)
    if args.allow_nan:
        raise ExportError("--allow-nan applies to --kind tensor")
    if args.labels is None:
        raise ExportError(
            "a classifier needs --labels (a file, one class per line, or a comma-separated "
            "list); to serve the model's raw outputs instead, give --kind tensor"
        )
    from pyserving.export.onnx import export_onnx

    path = export_onnx(
        args.model,
        args.repository,
        _name(args, args.model),
        features=args.features,
        layout=args.layout,
        output=args.output,
        quantize=_quantize_options(args),
        **_image_kwargs(args),
    )
    print(path)
    return 0


# Classifier options a tensor export refuses, as argparse names them, with their defaults.
_CLASSIFIER_OPTIONS = {
    "labels": None,
    "features": None,
    "output": None,
    "input_size": None,
    "mean": None,
    "std": None,
    "scores": None,
    "background": False,
    "layout": "auto",
    "resize": "bilinear",
    "top_k": 5,
}


def _run_export_onnx_tensor(args: argparse.Namespace) -> int:
    given = [
        f"--{k.replace('_', '-')}" for k, v in _CLASSIFIER_OPTIONS.items() if getattr(args, k) != v
    ]
    given += [
        f"--{key}" for key in ("quantize", *_QUANTIZE_FLAGS) if getattr(args, key) is not None
    ]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ExportError(
            f"{', '.join(given)} {verb} to classifiers; a tensor model (--kind tensor) is served "
            "as its raw inputs and outputs"
        )
    from pyserving.export.onnx_tensor import export_onnx_tensor

    path = export_onnx_tensor(
        args.model, args.repository, _name(args, args.model), allow_nan=args.allow_nan
    )
    print(path)
    return 0


def _read_csv(path: Path) -> np.ndarray:
    """Numeric rows of a CSV file; a header line is skipped."""
    import numpy as np

    try:
        rows = np.genfromtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read samples {path}: {exc}") from exc
    rows = rows[~np.all(np.isnan(rows), axis=1)]
    if rows.size == 0 or np.isnan(rows).any():
        raise ExportError(f"samples {path}: expected rows of numbers separated by commas")
    return np.asarray(rows, dtype=np.float64)


def _read_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file: one text each."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read samples {path} as UTF-8 text: {exc}") from exc
    return [line for line in lines if line.strip()]
