"""Silero VAD → one graph that tells `speech` from `no speech` in a 16 kHz clip.

The `silero-vad` wheel (MIT) ships `silero_vad_16k_sequence.onnx`, which scores every
32 ms frame of a clip in one call: `input` [frames, 576] (the last 64 samples of the frame
before, zeros for the first, then the frame's 512), LSTM state `h`, `c` [1, 1, 128] in,
`speech_probs` [frames] out. The exported graph wraps it whole: `samples` float32 [N, T]
(N clips of T samples at 16 kHz, in [-1, 1]) in; for each clip (a Loop over N: the LSTM's
state has batch 1) the framing as silero's own `frame_blocks` does it, the model, and the
clip's decision: P(speech) is the best 256 ms (8-frame) moving average of the frame
probabilities (the mean of them all for a clip under 256 ms); `probabilities` [N, 2] =
[P, 1 - P] out.

Install the wheel with `pip install --no-deps silero-vad==6.2.3`: it declares torch, which
the ONNX file does not need. Nothing here imports it; the file is found through the
distribution's list of files.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pyserving.errors import ExportError, MissingExtra
from pyserving.export.verify import compare, load_session
from pyserving.export.write import Progress, missing_extra, provenance, write_servable
from pyserving.kinds import write_signature
from pyserving.kinds.audio import AudioFields
from pyserving.signature import MODEL_FILE, Signature

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:
    raise missing_extra(exc.name or "onnx", "onnx") from exc

__all__ = ["export_silero_vad", "frame_probabilities", "sample_clips", "silero_onnx"]

DISTRIBUTION = "silero-vad"
VERSION = "6.2.3"  # the release whose ONNX file this graph was built and checked against
ONNX_FILE = "silero_vad_16k_sequence.onnx"
SAMPLE_RATE = 16_000
FRAME = 512  # samples per 32 ms frame
CONTEXT = 64  # samples of the frame before, prefixed to each frame
STATE = (1, 1, 128)
WINDOW = 8  # frames in the moving average: 256 ms
LABELS = ("speech", "no speech")
INPUT_NAME = "samples"
OUTPUT_NAME = "probabilities"
STEPS = 5  # find, build, verify, agree, wrote
SAMPLE_SECONDS = 2.0


def _install() -> str:
    """How to install the wheel this graph was built for."""
    return f"pip install --no-deps {DISTRIBUTION}=={VERSION}"


def silero_onnx() -> Path:
    """The installed wheel's `silero_vad_16k_sequence.onnx`; ExportError saying how to get it."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        # --no-deps: the wheel declares torch, which its ONNX file does not need.
        raise MissingExtra(DISTRIBUTION, "", install=_install()) from None
    found = [f for f in dist.files or () if f.name == ONNX_FILE]
    path = Path(str(found[0].locate())) if found else None
    if path is None or not path.is_file():
        raise ExportError(f"{DISTRIBUTION} {dist.version} has no {ONNX_FILE}; install {_install()}")
    return path


def export_silero_vad(
    repository: Path | str, name: str = "speech", progress: Progress | None = None
) -> Path:
    """Export Silero VAD as an audio servable with classes `speech` and `no speech`."""
    progress = progress or Progress(STEPS)
    path = silero_onnx()
    version = metadata.version(DISTRIBUTION)
    progress.step(f"found {ONNX_FILE} in {DISTRIBUTION} {version}")
    vad = onnx.load(str(path))
    _check_vad(vad, path)
    clips = sample_clips()
    session = load_session(path)

    def reference(inputs: np.ndarray) -> np.ndarray:
        speech = np.array([clip_speech(frame_probabilities(session, c)) for c in inputs])
        return np.stack([speech, 1 - speech], axis=1)

    def write(folder: Path) -> None:
        progress.step("wrapping it into one graph: framing, the model, the clip's decision")
        onnx.save(clip_graph(vad), str(folder / MODEL_FILE))
        agreement = compare(
            folder / MODEL_FILE,
            INPUT_NAME,
            OUTPUT_NAME,
            clips,
            reference,
            f"{DISTRIBUTION}'s model framed in numpy",
            progress,
            tolerance=1e-5,
        )
        signature = Signature(
            kind="audio",
            input_name=INPUT_NAME,
            input_dtype="float32",
            output_name=OUTPUT_NAME,
            scores="probabilities",
            labels=LABELS,
            top_k=len(LABELS),
            fields=AudioFields(SAMPLE_RATE),
            source=provenance(
                "onnx",
                model=f"{DISTRIBUTION} {version} {ONNX_FILE}",
                license="MIT",
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                decision=f"best {WINDOW * FRAME * 1000 // SAMPLE_RATE} ms moving average of "
                "frame speech probabilities",
                max_abs_difference=agreement.max_abs_difference,
            ),
        )
        write_signature(signature, folder)

    written = write_servable(Path(repository), name, write)
    progress.step(f"wrote {written}")
    return written


def frame_probabilities(session: Any, clip: np.ndarray) -> np.ndarray:
    """The model's speech probability for each 32 ms frame of `clip`, in numpy.

    The framing of silero's `sequence_vad.frame_blocks` (which imports torch), in one block.
    """
    frames = np.zeros(((len(clip) + FRAME - 1) // FRAME, FRAME), dtype=np.float32)
    frames.reshape(-1)[: len(clip)] = clip
    contexts = np.zeros((len(frames), CONTEXT), dtype=np.float32)
    contexts[1:] = frames[:-1, -CONTEXT:]
    zeros = np.zeros(STATE, dtype=np.float32)
    (probs,) = session.run(
        ["speech_probs"], {"input": np.concatenate([contexts, frames], 1), "h": zeros, "c": zeros}
    )
    return np.asarray(probs, dtype=np.float64)


def clip_speech(probs: np.ndarray) -> float:
    """The clip's P(speech): the best moving average of WINDOW frame probabilities."""
    window = min(WINDOW, len(probs))
    return float(np.convolve(probs, np.ones(window) / window, "valid").max())


def sample_clips(seconds: float = SAMPLE_SECONDS, seed: int = 0) -> np.ndarray:
    """Made-up clips of one length, float32 [N, T]: silence, noises, tones, voiced sounds.

    The reference set: the voiced sounds (pulses through formant resonators) score from
    clearly speech to clearly not, so a precision that flips a decision is caught.
    """
    count = int(seconds * SAMPLE_RATE)
    t = np.arange(count) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(count)
    brown = np.cumsum(white)
    brown -= np.linspace(brown[0], brown[-1], count)  # no drift
    chirp = np.sin(2 * np.pi * (200 * t + (4000 - 200) / (2 * seconds) * t**2))
    clips = [
        np.zeros(count),
        0.1 * white,
        0.3 * brown / np.abs(brown).max(),
        0.5 * np.sin(2 * np.pi * 440 * t),
        0.3 * chirp,
        _voiced(t, 200, ((300, 60), (2300, 100), (3000, 150)), 3),
        _voiced(t, 150, ((500, 80), (1500, 90), (2500, 120)), 5),
        _voiced(t, 220, ((800, 100), (1300, 80), (2800, 150)), 3) + 0.02 * white,
    ]
    return np.stack(clips).astype(np.float32)


def _voiced(
    t: np.ndarray, f0: float, formants: tuple[tuple[float, float], ...], syllables: float
) -> np.ndarray:
    """Glottal-like pulses at a wavering pitch through resonators, `syllables` a second."""
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    pulses = np.diff(np.floor(np.cumsum(pitch) / SAMPLE_RATE), prepend=0.0)
    n = np.arange(FRAME)
    response = np.zeros(FRAME)
    for centre, bandwidth in formants:
        r, theta = np.exp(-np.pi * bandwidth / SAMPLE_RATE), 2 * np.pi * centre / SAMPLE_RATE
        response += (1 - r) * r**n * np.sin((n + 1) * theta) / np.sin(theta)
    sound = np.convolve(pulses, response)[: len(t)]
    sound *= np.clip(np.sin(np.pi * syllables * t), 0, None) ** 0.5
    return np.asarray(0.3 * sound / np.abs(sound).max())


def _check_vad(vad: Any, path: Path) -> None:
    """The ONNX file's tensors are the ones this graph was built for."""
    inputs = {i.name: _dims(i) for i in vad.graph.input}
    outputs = {o.name: _dims(o) for o in vad.graph.output}
    expected = {"input": ["?", FRAME + CONTEXT], "h": list(STATE), "c": list(STATE)}
    if inputs != expected or "speech_probs" not in outputs:
        raise ExportError(
            f"{path}: inputs {inputs} and outputs {list(outputs)} are not those of "
            f"{DISTRIBUTION} {VERSION} ({expected}, speech_probs); install {_install()}"
        )


def _dims(value: Any) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else "?" for d in value.type.tensor_type.shape.dim
    ]


def clip_graph(vad: Any) -> Any:
    """`samples` [N, T] → `probabilities` [N, 2]: `vad` run on each clip, then decided."""
    body = helper.make_graph(
        [*_framing(), *vad.graph.node, *_decision()],
        "clip",
        [
            helper.make_tensor_value_info("clip_index", TensorProto.INT64, []),
            helper.make_tensor_value_info("clip_cond_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("clip_cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("clip_scores", TensorProto.FLOAT, [2]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Shape", [INPUT_NAME], ["clip_count_1"], end=1),
            helper.make_node("Squeeze", ["clip_count_1"], ["clip_count"]),
            helper.make_node("Loop", ["clip_count", ""], [OUTPUT_NAME], body=body),
        ],
        "silero_vad_clip",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 2])],
        initializer=list(vad.graph.initializer),  # the loop body reads them from outside
    )
    model = helper.make_model(
        graph, opset_imports=list(vad.opset_import), ir_version=vad.ir_version
    )
    model.producer_name = "pyserving"
    model.doc_string = f"{DISTRIBUTION} {VERSION} {ONNX_FILE}, one clip decision per input"
    onnx.checker.check_model(model, full_check=True)
    return model


def _const(name: str, value: Any, dtype: Any = np.int64) -> Any:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name)
    )


def _framing() -> list[Any]:
    """Clip `clip_index` of the samples → the model's `input` [frames, 576], `h`, `c`."""
    node = helper.make_node
    return [
        node("Gather", [INPUT_NAME, "clip_index"], ["clip"], axis=0),
        node("Shape", ["clip"], ["clip_length"]),
        _const("clip_frame", [FRAME]),
        _const("clip_frame_less_1", [FRAME - 1]),
        node("Add", ["clip_length", "clip_frame_less_1"], ["clip_rounded_up"]),
        node("Div", ["clip_rounded_up", "clip_frame"], ["clip_frames"]),
        node("Mul", ["clip_frames", "clip_frame"], ["clip_padded_length"]),
        node("Sub", ["clip_padded_length", "clip_length"], ["clip_pad_end"]),
        _const("clip_zero", [0]),
        node("Concat", ["clip_zero", "clip_pad_end"], ["clip_pads"], axis=0),
        node("Pad", ["clip", "clip_pads"], ["clip_padded"]),  # zeros after the last sample
        _const("clip_frame_shape", [-1, FRAME]),
        node("Reshape", ["clip_padded", "clip_frame_shape"], ["clip_framed"]),
        _const("clip_tail_start", [-CONTEXT]),
        _const("clip_tail_end", [FRAME]),
        _const("clip_axis_1", [1]),
        node(
            "Slice",
            ["clip_framed", "clip_tail_start", "clip_tail_end", "clip_axis_1"],
            ["clip_tails"],
        ),
        _const("clip_minus_1", [-1]),
        _const("clip_axis_0", [0]),
        node("Slice", ["clip_tails", "clip_zero", "clip_minus_1", "clip_axis_0"], ["clip_before"]),
        _const("clip_first_context", np.zeros((1, CONTEXT)), np.float32),
        node("Concat", ["clip_first_context", "clip_before"], ["clip_contexts"], axis=0),
        node("Concat", ["clip_contexts", "clip_framed"], ["input"], axis=1),
        _const("h", np.zeros(STATE), np.float32),
        _const("c", np.zeros(STATE), np.float32),
    ]


def _decision() -> list[Any]:
    """`speech_probs` [frames] → `clip_scores` [P(speech), 1 - P(speech)].

    A clip under WINDOW frames is padded with its mean, so its one average is that mean.
    """
    node = helper.make_node
    return [
        node("ReduceMean", ["speech_probs"], ["clip_mean"], keepdims=1),
        _const("clip_window", [WINDOW]),
        node("Sub", ["clip_window", "clip_frames"], ["clip_short_by"]),
        node("Max", ["clip_short_by", "clip_zero"], ["clip_fill"]),
        node("Expand", ["clip_mean", "clip_fill"], ["clip_filler"]),
        node("Concat", ["speech_probs", "clip_filler"], ["clip_probs"], axis=0),
        _const("clip_pool_shape", [1, 1, -1]),
        node("Reshape", ["clip_probs", "clip_pool_shape"], ["clip_pool_in"]),
        node("AveragePool", ["clip_pool_in"], ["clip_averages"], kernel_shape=[WINDOW]),
        node("ReduceMax", ["clip_averages"], ["clip_speech"], keepdims=0),
        _const("clip_one", 1.0, np.float32),
        node("Sub", ["clip_one", "clip_speech"], ["clip_no_speech"]),
        node("Unsqueeze", ["clip_speech", "clip_axis_0"], ["clip_speech_1"]),
        node("Unsqueeze", ["clip_no_speech", "clip_axis_0"], ["clip_no_speech_1"]),
        node("Concat", ["clip_speech_1", "clip_no_speech_1"], ["clip_scores"], axis=0),
        node("Identity", ["clip_cond_in"], ["clip_cond_out"]),
    ]
