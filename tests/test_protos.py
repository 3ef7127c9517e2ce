import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    committed = ROOT / "src" / "pyserving" / "_proto"
    for fresh in sorted(tmp_path.glob("*.py*")):
        assert (committed / fresh.name).read_text() == fresh.read_text(), (
            f"{fresh.name} is out of date: run `make proto`"
        )


def test_method_path_keeps_the_original_contract() -> None:
    from pyserving._proto import classification_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["ClassificationService"]
    assert service.full_name == "ClassificationService"  # no proto package
    assert service.methods_by_name["classify"].input_type.full_name == "ClassificationRequest"
    fields = {f.name: f.number for f in pb.ClassificationRequest.DESCRIPTOR.fields}
    # The seed's numbers, then fields added later, each with a new number.
    assert fields == {
        "input": 1,
        "model_name": 2,
        "model_version": 3,
        "top_k": 4,
        "features": 5,
        "version_label": 6,
    }
    assert sys.modules["pyserving._proto.classification_pb2"] is pb


@pytest.mark.slow  # importing TensorFlow takes 4-5 s, a tenth of `make test-fast`
def test_the_tf_serving_stubs_and_tensorflow_load_in_one_process() -> None:
    """TensorFlow's own protos (package `tensorflow`) must not clash with the stubs' subset."""
    script = (
        "import pyserving.grpc_api.tfs, tensorflow;"
        "from tensorflow.core.framework import tensor_pb2;"
        "print(tensor_pb2.TensorProto.DESCRIPTOR.full_name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("tensorflow.TensorProto")
