"""The best a performance-minded person writes without pyserving: FastAPI and OpenVINO.

`python -m bench.plain_openvino_app --model-dir models/imagenet/1 --port 0` serves
`POST /classify` (the raw JPEG as the body) with uvicorn, one worker. OpenVINO compiles
`model.onnx` with `PERFORMANCE_HINT=THROUGHPUT` at its default precision (bf16 where the
CPU has it). The endpoint is a plain `def`, so FastAPI runs it in its threadpool, and
each call takes an infer request of its own from a pool made at start-up, one per
threadpool thread, and one inference runs before the first request, as a careful app's
warm-up does. Without it the app can hang on its first concurrent requests: OpenVINO
2026.4's Python binding sets up its numpy access lazily, on the first input copied, and
two threads racing that deadlock (py-spy: one waits for the GIL inside pybind11's
`call_once`, the other holds the GIL at the same static's guard). Pillow decodes in
draft mode, converts to RGB and resizes to the model's input (bilinear), one image per
request, top-5 as JSON. The access log is off, as on pyserving's REST port.
"""

from __future__ import annotations

import argparse
import io
import queue
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import Body, FastAPI
from PIL import Image

# `import openvino` would otherwise send a usage event through openvino_telemetry.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
import openvino  # noqa: E402

TOP_K = 5
THREADPOOL_THREADS = 40  # AnyIO's default, which FastAPI runs plain `def` endpoints on


def create_app(model_dir: Path) -> FastAPI:
    """The app for the model.onnx and labels.txt in `model_dir`."""
    compiled = openvino.Core().compile_model(
        str(model_dir / "model.onnx"), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}
    )
    labels = (model_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    model_input, model_output = compiled.input(0), compiled.output(0)
    # uint8 NHWC with a free batch axis: the model normalises the pixels itself.
    shape = model_input.get_partial_shape()
    height, width = shape[1].get_length(), shape[2].get_length()
    # As many as the threadpool has threads (AnyIO's default limiter), made before any
    # inference runs.
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for _ in range(THREADPOOL_THREADS):
        requests.put(compiled.create_infer_request())
    # The warm-up: the first inference sets up the binding's numpy access, one thread alone.
    warm = requests.get()
    warm.infer({model_input: np.zeros((1, height, width, 3), np.uint8)})
    requests.put(warm)
    app = FastAPI()

    @app.post("/classify")
    def classify(
        image: Annotated[bytes, Body(media_type="image/jpeg")],
    ) -> list[dict[str, str | float]]:
        photo = Image.open(io.BytesIO(image))
        photo.draft("RGB", (width, height))
        rgb = photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        request = requests.get()
        try:
            results = request.infer({model_input: np.asarray(rgb)[np.newaxis]})
        finally:
            requests.put(request)
        logits = results[model_output][0]
        exp = np.exp(logits - logits.max())
        scores = exp / exp.sum()
        best = np.argsort(scores)[::-1][:TOP_K]
        return [{"label": labels[i], "score": float(scores[i])} for i in best]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plain_openvino_app", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir), host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
