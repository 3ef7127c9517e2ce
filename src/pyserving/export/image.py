"""What every image export shares: the uint8 NHWC input, its normalisation, its signature.

All image servables take `image`, uint8 [N, H, W, 3]; scaling and mean/std normalisation
are put inside the ONNX graph by the exporters, so the server only decodes and resizes.
Once the graph agrees with its framework, every image exporter closes the same way:
`write_image_signature`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyserving.errors import ExportError
from pyserving.export.labels import match_labels
from pyserving.export.quantize import Calibration, quantize_servable
from pyserving.export.verify import Agreement
from pyserving.export.write import Progress
from pyserving.kinds import write_signature
from pyserving.kinds.image import RESIZE_FILTERS, ImageFields
from pyserving.signature import Signature

INPUT_NAME = "image"

# The mean and std of ImageNet photos on the 0–1 scale: torchvision's convention.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_normalisation(
    mean: float | Sequence[float], std: float | Sequence[float]
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in pixel units (0–255) from values on the 0–1 scale.

    The graph computes `(x / 255 - mean) / std`, which is `(x - 255 mean) / (255 std)`.
    One value applies to all three channels.
    """
    means, stds = _three(mean, "mean"), _three(std, "std")
    if not all(s > 0 for s in stds):
        raise ExportError(f"std must be positive, got {stds}")
    return [255.0 * m for m in means], [255.0 * s for s in stds]


def _three(value: float | Sequence[float], what: str) -> list[float]:
    values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ExportError(f"{what} takes 1 or 3 values (one per RGB channel), got {len(values)}")
    return values


def image_size(
    size: int | Sequence[int] | None, known: tuple[Any, Any] = (None, None)
) -> tuple[int, int]:
    """(height, width) from `size` (one side or two) and the model's own input dims.

    `known` holds the model's fixed height and width where it has them (else None or a
    name); `size` must agree with them, and is needed where they are not fixed.
    """
    fixed = tuple(d if isinstance(d, int) and d > 0 else None for d in known)
    if size is None:
        if fixed[0] is None or fixed[1] is None:
            raise ExportError(
                "the model does not fix its input's height and width; give --input-size"
            )
        return fixed[0], fixed[1]
    sides = [size] if isinstance(size, int) else list(size)
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(isinstance(s, int) and s > 0 for s in sides):
        raise ExportError(f"input size must be one or two positive integers, got {size!r}")
    height, width = sides
    for given, model, what in ((height, fixed[0], "height"), (width, fixed[1], "width")):
        if model is not None and given != model:
            raise ExportError(f"input size {height}×{width}: the model's input {what} is {model}")
    return height, width


@dataclass(frozen=True)
class ImageChoices:
    """What an image export was told about the model's classes and how to serve it."""

    class_names: tuple[str, ...]  # from --labels
    background: bool = False  # output 0 is a background class without a name
    scores: Literal["logits", "probabilities"] | None = None  # None: as the outputs look
    resize: str = "bilinear"
    top_k: int = 5


def write_image_signature(
    folder: Path,
    size: tuple[int, int],
    output_name: str,
    agreement: Agreement,
    source: dict[str, Any],
    choices: ImageChoices,
    calibration: Calibration | None,
    progress: Progress,
) -> Signature:
    """Close an image export whose graph agrees with its framework: the signature of a
    graph taking `image` uint8 NHWC of `size` (height, width), the int8 version in place
    of the graph where `calibration` asks for it, then `servable.json` and `labels.txt`."""
    if choices.resize not in RESIZE_FILTERS:
        raise ExportError(f"resize {choices.resize!r} is not one of {', '.join(RESIZE_FILTERS)}")
    labels = match_labels(choices.class_names, agreement.classes, choices.background)
    height, width = size
    signature = Signature(
        kind="image",
        input_name=INPUT_NAME,
        input_dtype="uint8",
        output_name=output_name,
        scores=choices.scores or agreement.looks_like,
        labels=labels,
        top_k=max(1, min(choices.top_k, len(labels))),
        fields=ImageFields(height, width, resize=choices.resize),
        source=source,
    )
    if calibration is not None:
        signature = quantize_servable(folder, signature, calibration, progress)
    write_signature(signature, folder)
    return signature
