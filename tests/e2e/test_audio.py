"""Audio clips end to end: Silero VAD exported as the README says, served by a real server,
espeak-ng speech and sox noises and tones over gRPC and every REST shape.

The clips are made at test time by espeak-ng (speech in 14 languages, as WAV and as FLAC)
and sox (noises, tones, silence; speech mixed with noise, resampled, quiet, padded).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pyserving.client import Client
from pyserving.errors import RemoteError
from tests.audio_clips import espeak, sox, tool
from tests.processes import RunningProcess, free_port, run_cli, start_server
from tests.seed_client import seed_classify

SENTENCES = {
    "en": "The weather is lovely today, let us walk to the park.",
    "de": "Heute ist das Wetter schön, lass uns in den Park gehen.",
    "fr": "Il fait beau aujourd'hui, allons nous promener au parc.",
    "es": "Hoy hace buen tiempo, vamos a caminar al parque.",
    "it": "Oggi il tempo è bello, andiamo a fare una passeggiata.",
    "pt": "O tempo está bom hoje, vamos passear no parque.",
    "nl": "Het weer is mooi vandaag, laten we naar het park lopen.",
    "pl": "Dzisiaj jest ładna pogoda, chodźmy na spacer do parku.",
    "cs": "Dnes je krásné počasí, pojďme se projít do parku.",
    "ru": "Сегодня хорошая погода, давайте пойдём гулять в парк.",
    "sv": "Vädret är fint idag, låt oss gå till parken.",
    "fi": "Tänään on kaunis sää, mennään kävelylle puistoon.",
    "cmn": "今天天气很好，我们去公园散步吧。",
    "ja": "今日はいい天気ですね、公園に行きましょう。",
}
# sox's `synth` effects (3 s each unless they say otherwise), at a rate and channel count.
SOUNDS = {
    "white noise": (("synth", "3", "whitenoise", "vol", "0.5"), 16000, 1),
    "pink noise": (("synth", "3", "pinknoise", "vol", "0.5"), 16000, 1),
    "brown noise": (("synth", "3", "brownnoise", "vol", "0.5"), 16000, 1),
    "440 Hz, stereo 44.1 kHz": (("synth", "3", "sine", "440", "vol", "0.5"), 44100, 2),
    "1 kHz at 48 kHz": (("synth", "3", "sine", "1000", "vol", "0.5"), 48000, 1),
    "200 Hz square": (("synth", "3", "square", "200", "vol", "0.3"), 16000, 1),
    "150 Hz sawtooth": (("synth", "3", "sawtooth", "150", "vol", "0.3"), 16000, 1),
    "chirp 100 Hz–4 kHz": (("synth", "3", "sine", "100-4000", "vol", "0.5"), 22050, 1),
    "tremolo": (("synth", "3", "sine", "300", "tremolo", "4", "80", "vol", "0.5"), 16000, 1),
    "plucked string": (("synth", "3", "pluck", "C4", "vol", "0.5"), 44100, 1),
    "DTMF tone, 0.6 s": (("synth", "0.6", "sine", "697", "sine", "1209"), 16000, 2),
    "silence": (("trim", "0", "3"), 16000, 1),
}


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    speech: bool

    @property
    def label(self) -> str:
        return "speech" if self.speech else "no speech"

    @property
    def content_type(self) -> str:
        return {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}[self.path.suffix]


def _speech_variants(folder: Path) -> list[Clip]:
    """Speech as people send it: under noise, quieter, at 8 kHz, in stereo, after silence."""
    wav = {language: str(folder / f"{language}.wav") for language in ("en", "de", "fr", "es", "it")}
    brown = sox(folder / "brown.wav", "synth", "3.1", "brownnoise", "vol", "0.3", rate=22050)
    white = sox(folder / "white.wav", "synth", "3.4", "whitenoise", "vol", "0.3", rate=22050)
    # name: (output file, sox's arguments before it, sox's effects after it)
    variants = {
        "en under brown noise": ("en-brown.wav", ["-m", wav["en"], str(brown)], []),
        "it under white noise": ("it-white.wav", ["-m", wav["it"], str(white)], []),
        "de at 8 kHz": ("de-8k.wav", [wav["de"], "-r", "8000"], []),
        "fr in stereo at 48 kHz": ("fr-48k.wav", [wav["fr"], "-r", "48000", "-c", "2"], []),
        "es at 1/20 the volume": ("es-quiet.wav", ["-v", "0.05", wav["es"]], []),
        "it after 5 s of silence": ("it-late.wav", [wav["it"]], ["pad", "5", "0"]),
        "en as OGG Vorbis": ("en.ogg", [wav["en"]], []),
    }
    clips = []
    for name, (output, before, effects) in variants.items():
        path = folder / output
        subprocess.run(
            [tool("sox"), *before, str(path), *effects], check=True, capture_output=True, timeout=60
        )
        clips.append(Clip(name, path, True))
    return clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("clips")
    made = []
    for language, sentence in SENTENCES.items():
        wav = espeak(sentence, language, folder / f"{language}.wav")
        flac = folder / f"{language}.flac"
        subprocess.run([tool("sox"), str(wav), str(flac)], check=True, timeout=60)
        made += [Clip(f"{language} WAV", wav, True), Clip(f"{language} FLAC", flac, True)]
    made += _speech_variants(folder)
    for i, (name, (effect, rate, channels)) in enumerate(SOUNDS.items()):
        suffix = ".flac" if i % 3 == 0 else ".wav"
        path = sox(folder / f"sound{i}{suffix}", *effect, rate=rate, channels=channels)
        made.append(Clip(name, path, False))
    return made


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's export command, as it stands: the model's folder of versions."""
    work = tmp_path_factory.mktemp("speech")
    run_cli(
        "export",
        "silero-vad",
        "--repository",
        "models",
        "--name",
        "speech",
        cwd=work,
        timeout=120,
        check=True,
    )
    return work / "models" / "speech"


@pytest.fixture(scope="module")
def speech_server(exported: Path) -> Iterator[tuple[str, str]]:
    """`pyserving serve` on the exported model: its gRPC address and REST URL."""
    port = free_port()
    log = exported.parent.parent / "server.log"
    server: RunningProcess = start_server("speech", exported, log, "--rest_api_port", str(port))
    yield f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def client(speech_server: tuple[str, str]) -> Iterator[Client]:
    with Client(speech_server[0]) as c:
        yield c


@pytest.fixture(scope="module")
def http(speech_server: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=speech_server[1], timeout=30) as c:
        yield c


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_every_clip_is_classified_right_over_grpc(client: Client, clips: list[Clip]) -> None:
    wrong = {}
    for clip in clips:
        result = client.classify(clip.path.read_bytes(), model_name="speech")
        top = result.predictions[0]
        if top.name != clip.label:
            wrong[clip.name] = top
        assert [p.name for p in result.predictions] in (
            ["speech", "no speech"],
            ["no speech", "speech"],
        )
        assert sum(p.score for p in result.predictions) == pytest.approx(1.0, abs=1e-5)
    assert not wrong
    assert len(clips) == 47


def test_speech_is_sure_and_no_speech_far_from_it(client: Client, clips: list[Clip]) -> None:
    def speech(clip: Clip) -> float:
        result = client.classify(clip.path.read_bytes(), model_name="speech")
        return next(p.score for p in result.predictions if p.name == "speech")

    assert min(speech(c) for c in clips if c.speech) > 0.95
    assert max(speech(c) for c in clips if not c.speech) < 0.2


def test_the_seed_s_own_client_sends_every_clip(
    speech_server: tuple[str, str], clips: list[Clip], tmp_path: Path
) -> None:
    """A client compiled from the original 2016 proto, as it stands, in its own process."""
    replies = seed_classify(speech_server[0], [c.path.read_bytes() for c in clips], tmp_path)
    assert [reply[0][0] for reply in replies] == [c.label for c in clips]


def test_raw_audio_bodies_over_rest(http: httpx.Client, clips: list[Clip]) -> None:
    for clip in clips:
        reply = http.post(
            "/v1/models/speech:classify",
            content=clip.path.read_bytes(),
            headers={"Content-Type": clip.content_type},
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"][0][0][0] == clip.label, clip.name


def test_multipart_tf_serving_and_v2_bodies(http: httpx.Client, clips: list[Clip]) -> None:
    some = [c for c in clips if c.name in ("ru WAV", "cmn FLAC", "white noise", "silence")]
    labels = [c.label for c in some]
    files = [("clip", (c.path.name, c.path.read_bytes(), c.content_type)) for c in some]
    multipart = http.post("/v1/models/speech:classify", files=files).json()
    assert [r[0][0] for r in multipart["results"]] == labels

    examples = {"examples": [{"samples": {"b64": b64(c.path)}} for c in some]}
    classified = http.post("/v1/models/speech:classify", json=examples).json()
    assert [r[0][0] for r in classified["results"]] == labels

    instances = {"instances": [{"b64": b64(c.path)} for c in some]}
    predictions = http.post("/v1/models/speech:predict", json=instances).json()["predictions"]
    assert [("speech" if p[0] > p[1] else "no speech") for p in predictions] == labels

    v2 = {
        "inputs": [
            {
                "name": "samples",
                "datatype": "BYTES",
                "shape": [len(some)],
                "data": [b64(c.path) for c in some],
            }
        ]
    }
    (output,) = http.post("/v2/models/speech/infer", json=v2).json()["outputs"]
    assert output["shape"] == [len(some), 2]
    speech = output["data"][0::2]
    assert [("speech" if s > 0.5 else "no speech") for s in speech] == labels


def test_one_v2_request_of_clips_of_many_lengths(http: httpx.Client, clips: list[Clip]) -> None:
    """Inputs of one request are batched by length; none is stacked with another length."""
    body = {
        "inputs": [
            {
                "name": "samples",
                "datatype": "BYTES",
                "shape": [len(clips)],
                "data": [b64(c.path) for c in clips],
            }
        ]
    }
    reply = http.post("/v2/models/speech/infer", json=body)
    assert reply.status_code == 200, reply.text
    speech = reply.json()["outputs"][0]["data"][0::2]
    assert [s > 0.5 for s in speech] == [c.speech for c in clips]


def test_metadata_says_audio_clips_go_in_as_bytes(http: httpx.Client) -> None:
    meta = http.get("/v2/models/speech").json()
    assert meta["inputs"] == [{"name": "samples", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["parameters"]["kind"] == "audio"


@pytest.fixture(scope="module")
def bad_clips(clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("bad")
    flac = clips[1].path.read_bytes()
    return {
        "empty": b"",
        "broken": flac[: len(flac) // 3],
        "unsupported": b"\x00\x00\x00\x20ftypM4A " + bytes(2000),  # AAC in MP4
        "not audio": b"hello, I am not a clip",
        "too long": sox(folder / "two-hours.flac", "trim", "0", "7200").read_bytes(),
    }


MESSAGES = {
    "empty": "the audio clip is empty (0 bytes)",
    "broken": "is broken after",
    "unsupported": "could not decode audio (2,012 bytes, starts with b'\\x00\\x00\\x00 ftypM4A '",
    "not audio": "libsndfile says 'Format not recognised'; expected WAV, FLAC, OGG Vorbis, Opus",
    "too long": "the clip is 7,200.0 s long (FLAC PCM_24, 16,000 Hz, 1 channel), over the limit "
    "of 60 s (--max_audio_seconds)",
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_bad_clips_are_invalid_argument_and_the_server_keeps_serving(
    client: Client, http: httpx.Client, clips: list[Clip], bad_clips: dict[str, bytes], case: str
) -> None:
    with pytest.raises(RemoteError) as info:
        client.classify(bad_clips[case], model_name="speech")
    assert info.value.grpc_code == "INVALID_ARGUMENT"
    assert MESSAGES[case] in str(info.value)
    reply = http.post(
        "/v1/models/speech:classify",
        content=bad_clips[case],
        headers={"Content-Type": "audio/flac"},
    )
    assert reply.status_code == 400
    assert MESSAGES[case] in reply.json()["error"]
    assert client.classify(clips[0].path.read_bytes()).predictions[0].name == "speech"


def test_the_two_hour_clip_is_small_on_the_wire(bad_clips: dict[str, bytes]) -> None:
    """So the size limit cannot be what refuses it: the header's length does."""
    assert len(bad_clips["too long"]) < 1_000_000


def test_cli_classify_a_clip(speech_server: tuple[str, str], clips: list[Clip]) -> None:
    for clip in (clips[0], clips[-1]):
        out = run_cli(
            "classify",
            str(clip.path),
            "--model",
            "speech",
            "--server",
            speech_server[0],
            timeout=60,
            check=True,
        ).stdout
        header, _columns, first, _second = out.splitlines()
        assert header.startswith(f"{clip.path}  (model speech, version ")
        assert first.split()[:2] == ["1", *clip.label.split()[:1]]
        assert (" no speech " in first) == (not clip.speech)


def test_max_audio_seconds_sets_the_longest_clip(exported: Path, clips: list[Clip]) -> None:
    server = start_server(
        "speech", exported, exported.parent.parent / "short.log", "--max_audio_seconds", "2.6"
    )
    try:
        with Client(f"127.0.0.1:{server.match.group(1)}") as short:
            french = next(c for c in clips if c.name == "fr WAV")  # 2.5 s
            assert short.classify(french.path.read_bytes()).predictions[0].name == "speech"
            with pytest.raises(RemoteError, match=r"3\.0 s long .* over the limit of 2\.6 s"):
                short.classify(clips[0].path.read_bytes())  # en: 3.0 s
    finally:
        server.stop()
