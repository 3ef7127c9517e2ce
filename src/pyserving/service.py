"""The one pipeline every transport calls: look up, preprocess, batch, postprocess."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor

from pyserving.errors import InvalidInput
from pyserving.manager import ModelManager
from pyserving.postprocess import top_k
from pyserving.preprocess import decode_image, features_vector
from pyserving.results import Classification, ModelStatus
from pyserving.settings import Settings


class Service:
    """Transport-neutral data plane. Called from the event loop by `*_api` modules.

    Raises the domain errors of `pyserving.errors`; the adapters map them to status codes.
    """

    def __init__(self, manager: ModelManager, executor: Executor, settings: Settings) -> None:
        self.manager = manager
        self._executor = executor
        self._settings = settings

    async def classify(
        self,
        model_name: str = "",
        model_version: int = 0,
        image: bytes = b"",
        features: Mapping[str, float] | None = None,
        k: int = 0,
        deadline: float | None = None,
    ) -> Classification:
        """Classify one image (image models) or one feature map (features models).

        `deadline` is in event-loop time; `k` 0 means the signature's default.
        """
        if k < 0:
            raise InvalidInput(f"top_k must be 0 (the default) or positive, got {k}")
        with self.manager.use(model_name, model_version) as servable:
            sig = servable.signature
            if sig.kind == "image":
                if features:
                    raise InvalidInput(
                        f"model {servable.name!r} takes an image in `input`, not features"
                    )
                loop = asyncio.get_running_loop()
                array = await loop.run_in_executor(
                    self._executor,
                    decode_image,
                    image,
                    sig.height,
                    sig.width,
                    sig.resize,
                    self._settings.max_image_pixels,
                )
            else:
                if image:
                    raise InvalidInput(
                        f"model {servable.name!r} takes named features "
                        f"({', '.join(sig.features)}), not an image"
                    )
                array = features_vector(dict(features or {}), sig.features)
            scores = await servable.batcher.submit(array, deadline)
            predictions = top_k(scores, sig.labels, k or sig.top_k, sig.scores == "logits")
            return Classification(predictions, servable.name, servable.version)

    def model_status(self, model_name: str = "") -> list[ModelStatus]:
        """The lifecycle state of every version (of every model when the name is empty)."""
        return self.manager.status(model_name)
