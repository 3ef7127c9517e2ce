"""The one pipeline every transport calls: look up, preprocess, batch, postprocess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from functools import partial

import numpy as np

from pyserving import metrics
from pyserving.errors import DeadlineExceeded, InvalidInput
from pyserving.manager import ModelManager
from pyserving.postprocess import softmax, top_k
from pyserving.preprocess import decode_image, features_vector
from pyserving.results import Classification, ModelStatus, Scores
from pyserving.servable import Servable
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
        with (
            self.manager.use(model_name, model_version) as servable,
            servable.batcher.admit(),
        ):
            _check_deadline(deadline)
            sig = servable.signature
            if sig.kind == "image":
                if features:
                    raise InvalidInput(
                        f"model {servable.name!r} takes an image in `input`, not features"
                    )
                scores = await servable.batcher.run_alone(
                    partial(self._timed_decode, servable, image), deadline
                )
                if scores is None:
                    array = await self._decode(servable, image)
                    scores = await servable.batcher.submit(array, deadline)
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

    async def predict(
        self,
        model_name: str = "",
        model_version: int = 0,
        images: Sequence[bytes] | None = None,
        features: np.ndarray | None = None,
        deadline: float | None = None,
    ) -> Scores:
        """Class probabilities for a batch: encoded `images` for image models, or a
        `features` matrix [N, F] in the signature's feature order for features models.
        """
        if images is not None:
            inputs = len(images)
        else:
            inputs = len(features) if features is not None and features.ndim else 1
        with (
            self.manager.use(model_name, model_version) as servable,
            servable.batcher.admit(max(1, inputs)),
        ):
            _check_deadline(deadline)
            sig = servable.signature
            if sig.kind == "image":
                if images is None:
                    raise InvalidInput(f"model {servable.name!r} takes encoded images (BYTES)")
                arrays = await asyncio.gather(*(self._decode(servable, i) for i in images))
            else:
                if features is None:
                    raise InvalidInput(
                        f"model {servable.name!r} takes features [N, {len(sig.features)}] "
                        f"({', '.join(sig.features)})"
                    )
                arrays = list(_feature_rows(features, sig.features))
            if not arrays:
                raise InvalidInput("the request holds no inputs (shape [0])")
            rows = await asyncio.gather(*(servable.batcher.submit(a, deadline) for a in arrays))
            scores = np.stack(rows)
            probs = softmax(scores) if sig.scores == "logits" else scores
            return Scores(probs.astype(np.float32), sig.labels, servable.name, servable.version)

    async def _decode(self, servable: Servable, image: bytes) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed_decode, servable, image)

    def _timed_decode(self, servable: Servable, image: bytes) -> np.ndarray:
        """Decode and resize for `servable` (in the pool), and record how long it took."""
        sig = servable.signature
        started = time.perf_counter()
        array = decode_image(
            image, sig.height, sig.width, sig.resize, self._settings.max_image_pixels
        )
        metrics.PREPROCESS_SECONDS.labels(servable.name).observe(time.perf_counter() - started)
        return array

    def servable(self, model_name: str = "", model_version: int = 0) -> Servable:
        """The servable a request for this name and version would get (for metadata)."""
        return self.manager.get(model_name, model_version)

    def model_status(self, model_name: str = "") -> list[ModelStatus]:
        """The lifecycle state of every version (of every model when the name is empty)."""
        return self.manager.status(model_name)


def _check_deadline(deadline: float | None) -> None:
    """Turn away a request whose deadline passed before it cost anything."""
    if deadline is not None and deadline <= asyncio.get_running_loop().time():
        raise DeadlineExceeded("the request's deadline passed before it could be served")


def _feature_rows(features: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    if features.ndim != 2 or features.shape[1] != len(names):
        raise InvalidInput(
            f"features must have shape [N, {len(names)}] ({', '.join(names)}), "
            f"got {list(features.shape)}"
        )
    rows = features.astype(np.float32)
    if not np.all(np.isfinite(rows)):
        raise InvalidInput("features must be finite numbers (no NaN or infinity)")
    return rows
