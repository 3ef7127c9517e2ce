"""PyTorch → ONNX: wrap the network so the graph takes uint8 NHWC images, export, verify."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from pyserving.errors import ExportError

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17


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


def export_image_model(module: ImageInput, path: Path, height: int, width: int) -> None:
    """Write `module` to `path` as ONNX with input `image` uint8 [N,H,W,3], output `logits`."""
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
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc


def sample_images(height: int, width: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic test images: random noise plus smooth gradients, uint8 [N,H,W,3]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    images[0] = np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1).astype(np.uint8)
    return images


def max_difference(module: torch.nn.Module, onnx_path: Path, images: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's outputs."""
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        (ours,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
    with torch.no_grad():
        reference = module(torch.from_numpy(images)).numpy()
    return float(np.max(np.abs(np.asarray(ours) - reference)))
