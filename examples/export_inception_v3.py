"""Export Inception v3 from `keras.applications` as a servable, as in the TensorFlow Serving
walk-through: 299×299 images scaled to [-1, 1] inside the graph, ImageNet class names.

    python examples/export_inception_v3.py --weights inception_v3_weights.h5 [--classes 1001]

Needs `pip install 'pyserving[tensorflow]'`. `--weights` is a Keras weights file for this
architecture, such as Keras's own ImageNet file (inception_v3_weights_tf_dim_ordering_tf_
kernels.h5) or one you trained. Without it the network has random weights: the export
and the server work the same, but the classes mean nothing. `--classes 1001` is the
TF-slim convention: class 0 is "background", then the 1000 ImageNet classes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras

from pyserving.export import export_keras
from pyserving.export.labels import imagenet_labels

SIZE = 299


def build(classes: int) -> keras.Model:
    """Inception v3 with its softmax classifier, weights to be loaded by the exporter."""
    return keras.applications.InceptionV3(
        weights=None, classes=classes, input_shape=(SIZE, SIZE, 3)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a Keras weights file for Inception v3")
    parser.add_argument("--classes", type=int, choices=[1000, 1001], default=1000)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--name", default="inception")
    args = parser.parse_args()
    if args.weights is None:
        print(
            "no --weights: exporting random weights, so the classes mean nothing", file=sys.stderr
        )
    path = export_keras(
        build(args.classes),
        args.repository,
        args.name,
        labels=imagenet_labels(),
        background=args.classes == 1001,
        # keras.applications.inception_v3.preprocess_input: x / 127.5 - 1
        mean=0.5,
        std=0.5,
        weights=args.weights,
        source={"architecture": "Inception v3 (keras.applications)"},
    )
    print(path)
    print(
        f"serve it:     pyserving serve --model_name {args.name} --model_base_path {path.parent}\n"
        "classify:     pyserving classify photo.jpg",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
