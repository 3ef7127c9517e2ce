"""`pyserving export silero-vad`: one graph that frames, scores and decides, checked against
silero's own code, written as an audio servable with a reference set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pyserving.errors import MissingExtra
from pyserving.export import export_silero_vad, silero
from pyserving.kinds import load_signature
from pyserving.kinds.audio import AudioFields
from pyserving.reference import load_reference
from pyserving.signature import MODEL_FILE, list_versions
from tests.processes import run_cli


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_silero_vad(tmp_path_factory.mktemp("models"), "speech")


@pytest.fixture(scope="module")
def session(exported: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported / MODEL_FILE), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def raw() -> ort.InferenceSession:
    return ort.InferenceSession(str(silero.silero_onnx()), providers=["CPUExecutionProvider"])


def test_the_wheel_s_model_has_the_tensors_the_graph_was_built_for() -> None:
    model = onnx.load(str(silero.silero_onnx()))
    assert [i.name for i in model.graph.input] == ["input", "h", "c"]
    assert "speech_probs" in [o.name for o in model.graph.output]
    assert silero.silero_onnx().stat().st_size == pytest.approx(1.25e6, rel=0.01)


def test_the_servable_is_an_audio_model_of_speech_and_no_speech(exported: Path) -> None:
    sig = load_signature(exported)
    assert (sig.kind, sig.input_name, sig.input_dtype, sig.fields) == (
        "audio",
        "samples",
        "float32",
        AudioFields(16000),
    )
    assert sig.labels == ("speech", "no speech") and sig.scores == "probabilities"
    doc = json.loads((exported / "servable.json").read_text())
    assert doc["input"] == {"name": "samples", "dtype": "float32", "sample_rate": 16000}
    assert doc["source"]["model"] == "silero-vad 6.2.3 silero_vad_16k_sequence.onnx"
    assert doc["source"]["license"] == "MIT"
    reference = load_reference(exported)
    assert reference is not None and reference.inputs.shape == (8, 32000)
    # The made-up clips fall on both sides, so a reduced precision that flips one is caught.
    assert set(reference.outputs.argmax(axis=1)) == {0, 1}
    assert list_versions(exported.parent) == [int(exported.name)]
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("samples", [1, 100, 511, 512, 513, 3000, 4096, 4097, 16000, 56_000])
def test_the_graph_equals_the_model_framed_in_numpy(
    session: ort.InferenceSession, raw: ort.InferenceSession, samples: int
) -> None:
    """Every length: under one frame, at and around frame edges, under and over 256 ms."""
    clips = np.random.default_rng(samples).standard_normal((3, samples)).astype(np.float32)
    clips[1] *= 0.01
    (ours,) = session.run(None, {"samples": clips})
    speech = [silero.clip_speech(silero.frame_probabilities(raw, c)) for c in clips]
    assert ours.shape == (3, 2)
    assert np.allclose(ours[:, 0], speech, atol=1e-6)
    assert np.allclose(ours.sum(axis=1), 1.0, atol=1e-6)
    # Each clip of a batch is scored alone: the LSTM's state does not leak between them.
    alone = [session.run(None, {"samples": c[np.newaxis]})[0][0] for c in clips]
    assert np.allclose(ours, alone, atol=1e-7)


def test_the_framing_is_silero_s_own(raw: ort.InferenceSession) -> None:
    """silero's `SileroVADSequence.audio_forward` (which imports torch) frame by frame."""
    from silero_vad.sequence_vad import SileroVADSequence

    theirs = SileroVADSequence(str(silero.silero_onnx()))
    clip = silero.sample_clips(seconds=20.0)[5]  # over silero's 512-frame blocks
    assert np.array_equal(
        silero.frame_probabilities(raw, clip).astype(np.float32), theirs.audio_forward(clip)
    )


def test_the_decision_is_the_best_256_ms_average() -> None:
    probs = np.array([0.1] * 20 + [0.9] * 8 + [0.1] * 20)
    assert silero.clip_speech(probs) == pytest.approx(0.9)
    assert silero.clip_speech(np.array([0.9] * 7 + [0.1] * 40)) == pytest.approx(0.8)
    assert silero.clip_speech(np.array([0.2, 0.4])) == pytest.approx(0.3)  # under 256 ms


def test_a_missing_wheel_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(silero, "DISTRIBUTION", "silero-vad-not-installed")
    with pytest.raises(
        MissingExtra,
        match=r"^silero-vad-not-installed is not installed; install it with: "
        r"pip install --no-deps silero-vad-not-installed==",
    ):
        silero.silero_onnx()


def test_the_cli_exports_it_as_the_readme_says(tmp_path: Path) -> None:
    out = run_cli(
        "export",
        "silero-vad",
        "--repository",
        "models",
        "--name",
        "speech",
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    version = tmp_path / out.stdout.strip()
    assert version.parent == tmp_path / "models" / "speech"
    assert load_signature(version).kind == "audio"
    assert "outputs agree" in out.stderr
