"""PyTorch → ONNX: any `nn.Module`, wrapped so the graph takes uint8 NHWC images, verified."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pyserving.errors import ExportError
from pyserving.export.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_NAME,
    ImageChoices,
    image_size,
    pixel_normalisation,
    write_image_signature,
)
from pyserving.export.labels import Labels, read_labels
from pyserving.export.quantize import QUANTIZE_STEPS, QuantizeOptions, load_calibration
from pyserving.export.verify import compare, sample_images
from pyserving.export.write import Progress, missing_extra, provenance, write_servable
from pyserving.signature import MODEL_FILE

try:
    import torch
except ImportError as exc:
    raise missing_extra("torch", "torch") from exc

__all__ = ["ImageInput", "export_image_model", "export_torch", "load_checkpoint", "load_factory"]

OUTPUT_NAME = "scores"
OPSET = 17
STEPS = 4  # export, verify, agree, wrote
_LISTED = 5  # keys named in a mismatch message before "and N more"


class ImageInput(torch.nn.Module):
    """uint8 [N, H, W, 3] → float [N, 3, H, W] as `(x - mean) / std`, then `net`.

    `mean` and `std` are per channel, in pixel units (0–255), so the normalisation is part
    of the exported graph and the server only decodes and resizes.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: torch.nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return self.net((x - self.mean) / self.std)  # type: ignore[no-any-return]


def export_image_model(
    module: ImageInput, path: Path, height: int, width: int, output_name: str = OUTPUT_NAME
) -> None:
    """Write `module` to `path` as ONNX: input `image` uint8 [N,H,W,3], one output."""
    module.eval()
    example = torch.zeros((1, height, width, 3), dtype=torch.uint8)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: fast, and needs nothing beyond torch and onnx.
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc


def export_torch(
    model: torch.nn.Module,
    repository: Path | str,
    name: str,
    *,
    labels: Labels,
    input_size: int | Sequence[int],
    mean: float | Sequence[float] = IMAGENET_MEAN,
    std: float | Sequence[float] = IMAGENET_STD,
    scores: Literal["logits", "probabilities"] | None = None,
    background: bool = False,
    resize: str = "bilinear",
    top_k: int = 5,
    tolerance: float = 1e-3,
    source: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    quantize: QuantizeOptions | None = None,
) -> Path:
    """Export an image classifier taking float NCHW input as a servable; returns its folder.

    The graph takes uint8 NHWC pixels and computes `(x / 255 - mean) / std` (per channel,
    0–1 scale, ImageNet's by default) before `model`. `scores` says whether the model
    outputs logits or probabilities; by default it is told from the outputs themselves.
    With `quantize`, the verified model is replaced by its int8 version (see
    `pyserving.export.quantize`).
    """
    progress = progress or Progress(STEPS + (QUANTIZE_STEPS if quantize else 0))
    choices = ImageChoices(read_labels(labels), background, scores, resize, top_k)
    height, width = image_size(input_size)
    calibration = load_calibration(quantize, height, width, resize, progress) if quantize else None
    mean_px, std_px = pixel_normalisation(mean, std)
    module = ImageInput(model, mean_px, std_px).eval()

    def reference(images: Any) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(images)).numpy()

    def write(folder: Path) -> None:
        progress.step("exporting to ONNX (uint8 NHWC input, normalisation inside the graph)")
        export_image_model(module, folder / MODEL_FILE, height, width)
        agreement = compare(
            folder / MODEL_FILE,
            INPUT_NAME,
            OUTPUT_NAME,
            sample_images(height, width),
            reference,
            "PyTorch",
            progress,
            tolerance,
        )
        details = {
            "model": type(model).__name__,
            **(source or {}),
            "mean": mean_px,
            "std": std_px,
            "torch_version": torch.__version__,
            "max_abs_difference": agreement.max_abs_difference,
        }
        origin = provenance("pytorch", **details)
        write_image_signature(
            folder, (height, width), OUTPUT_NAME, agreement, origin, choices, calibration, progress
        )

    path = write_servable(Path(repository), name, write)
    progress.step(f"wrote {path}")
    return path


def load_factory(spec: str) -> torch.nn.Module:
    """Build a model from `package.module:function` (a function or class taking no arguments).

    The current directory is searched first, as `python -m` does.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ExportError(f"--factory takes package.module:function, got {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExportError(f"cannot import {module_name!r} for --factory {spec}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ExportError(f"{module_name} has no {attribute!r} (--factory {spec})")
        target = getattr(target, part)
    if not callable(target):
        raise ExportError(f"--factory {spec} is not a function or class")
    model = target()
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"--factory {spec} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def load_checkpoint(model: torch.nn.Module, path: Path | str) -> None:
    """Load weights saved with `torch.save` into `model`, strictly.

    The file holds a state dict, or a dict holding one under "state_dict" or "model".
    A "module." prefix (from DataParallel) is dropped. Raises ExportError naming the
    missing, unexpected and mis-shaped keys.
    """
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ExportError(f"checkpoint {path}: no such file") from exc
    except Exception as exc:
        raise ExportError(
            f"cannot load checkpoint {path} as weights ({exc}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    state = _state_dict(checkpoint, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} (checkpoint {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = [
        _listed(missing, "missing key", "missing keys"),
        _listed(unexpected, "unexpected key", "unexpected keys"),
        _listed(mis_shaped, "shape mismatch", "shape mismatches"),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ExportError(
            f"checkpoint {path} does not fit the model {type(model).__name__}: "
            + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def _state_dict(checkpoint: Any, path: Path | str) -> dict[str, torch.Tensor]:
    candidates = [checkpoint]
    if isinstance(checkpoint, Mapping):
        candidates += [checkpoint[k] for k in ("state_dict", "model") if k in checkpoint]
    for candidate in reversed(candidates):
        if (
            isinstance(candidate, Mapping)
            and candidate
            and all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in candidate.items()
            )
        ):
            state = dict(candidate)
            if all(k.startswith("module.") for k in state):
                state = {k.removeprefix("module."): v for k, v in state.items()}
            return state
    keys = list(checkpoint)[:_LISTED] if isinstance(checkpoint, Mapping) else []
    found = f"a dict with keys {keys}" if keys else type(checkpoint).__name__
    raise ExportError(
        f"checkpoint {path} holds {found}: expected a state dict, or a dict holding one "
        "under 'state_dict' or 'model'"
    )


def _listed(items: list[str], singular: str, plural: str) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:_LISTED])
    more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return f"{len(items)} {singular if len(items) == 1 else plural}: {shown}{more}"
