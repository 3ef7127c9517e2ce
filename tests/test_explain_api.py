"""The explain API's wire contract: the new RPC and messages, and the client's reading of them."""

from __future__ import annotations

from pyserving._proto import classification_pb2 as pb
from pyserving.client.client import _explain_request, _explanation
from pyserving.results import Explanation, ExplanationPart, Prediction


def test_explain_is_a_new_method_beside_the_seeds() -> None:
    service = pb.DESCRIPTOR.services_by_name["ClassificationService"]
    assert service.methods_by_name["classify"].input_type.full_name == "ClassificationRequest"
    explain = service.methods_by_name["explain"]
    assert explain.input_type.full_name == "ExplainRequest"
    assert explain.output_type.full_name == "ExplainResponse"
    fields = {f.name: f.number for f in pb.ExplainRequest.DESCRIPTOR.fields}
    # The numbers ClassificationRequest gives the same inputs, and the class to explain.
    assert fields == {
        "input": 1,
        "model_name": 2,
        "model_version": 3,
        "features": 5,
        "version_label": 6,
        "class_name": 7,
    }


def test_the_request_carries_every_input() -> None:
    request = _explain_request(b"jpeg", "m", 3, {"a": 1.5}, "stable", "Egyptian cat")
    assert (request.input, request.model_name, request.model_version) == (b"jpeg", "m", 3)
    assert dict(request.features) == {"a": 1.5}
    assert (request.version_label, request.class_name) == ("stable", "Egyptian cat")


def test_a_response_becomes_the_plain_value() -> None:
    response = pb.ExplainResponse(
        model_name="imagenet",
        model_version=7,
        explained=pb.ClassificationClass(name="tabby", score=0.5, index=281),
        kind="image",
        parts=[
            pb.ExplanationPart(weight=0.25, row=0, column=1),
            pb.ExplanationPart(weight=-0.125, name="w", start_seconds=0.5, end_seconds=1.0),
        ],
        grid_rows=7,
        grid_columns=7,
        method="each cell blurred",
    )
    assert _explanation(response) == Explanation(
        "imagenet",
        7,
        Prediction("tabby", 0.5, 281),
        "image",
        (ExplanationPart(0.25, row=0, column=1), ExplanationPart(-0.125, "w", 0.5, 1.0)),
        (7, 7),
        "each cell blurred",
    )
