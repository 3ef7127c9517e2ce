"""The baseline a person would write without pyserving: FastAPI, Pillow and ONNX Runtime.

`python -m bench.plain_app --model-dir models/imagenet/1 --port 0` serves `POST /classify`
(the raw JPEG as the body) with uvicorn, one worker. The endpoint is a plain `def`, so
FastAPI runs it in its threadpool: decode with Pillow, convert to RGB, resize to the model's
input (bilinear), one `InferenceSession.run` with the default thread count, top-5 as JSON.
Deliberately not optimised beyond that; only the access log is off, as on pyserving's
REST port, so that both write the same (nothing) per request.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import Body, FastAPI
from PIL import Image

TOP_K = 5


def create_app(model_dir: Path) -> FastAPI:
    """The app for the model.onnx and labels.txt in `model_dir`."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    labels = (model_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    model_input = session.get_inputs()[0]
    _, height, width, _ = model_input.shape  # uint8 NHWC: the model normalises itself
    app = FastAPI()

    @app.post("/classify")
    def classify(
        image: Annotated[bytes, Body(media_type="image/jpeg")],
    ) -> list[dict[str, str | float]]:
        rgb = Image.open(io.BytesIO(image)).convert("RGB")
        pixels = np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR))
        (logits,) = session.run(None, {model_input.name: pixels[np.newaxis]})
        exp = np.exp(logits[0] - logits[0].max())
        scores = exp / exp.sum()
        best = np.argsort(scores)[::-1][:TOP_K]
        return [{"label": labels[i], "score": float(scores[i])} for i in best]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plain_app", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="a model version folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    # uvicorn binds the port itself, as `uvicorn app:app` would, and logs the one it got.
    uvicorn.run(create_app(args.model_dir), host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
