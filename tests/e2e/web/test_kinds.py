"""The page for every kind of model, in a real browser against real processes.

`kinds_app` serves an image, a text (a scikit-learn pipeline exported with the CLI here)
and a features model, and an audio model where the audio kind is installed. What the page
sends (a text's bytes, a recording's WAV) is checked against a scripted gRPC server
(tests/scripted_server.py), which keeps the exact requests.
"""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, FilePayload, Locator, Page, expect

from tests.e2e.web.conftest import FEATURES, HAS_AUDIO, KindsApp, StartWeb
from tests.onnx_models import png
from tests.scripted_server import ScriptedModel, ScriptedServer, scripted_server

PHOTO_ZONE = "Drop photos here or choose files"
CLIP_ZONE = "Drop audio clips here or choose files"


def cards(page: Page) -> Locator:
    return page.locator("#cards article.card")


def percent(p: float) -> str:
    return f"{p * 100:.1f}%"


def expect_language(page: Page, app: KindsApp, text: str) -> None:
    """The card for `text` shows what scikit-learn says, class for class.

    scikit-learn is given the text as the server normalises it for this model (whitespace
    collapsed, ends trimmed), so the two see the same characters.
    """
    (probabilities,) = app.language_model.predict_proba([" ".join(text.split())])
    order = np.argsort(-probabilities)
    names = [str(app.language_model.classes_[i]) for i in order]
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(names)
    expect(card.locator(".prediction-score")).to_have_text(
        [percent(probabilities[i]) for i in order]
    )
    expect(card.locator("[data-slot=model]")).to_have_text("lang")


def test_a_typed_sentence_is_classified_like_scikit_learn(
    page: Page, kinds_app: KindsApp, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(kinds_app.url)
    page.get_by_label("Model").select_option("lang")
    expect(page.get_by_role("heading", level=1)).to_have_text("What's this text?")
    box = page.get_by_label("Text to classify")
    expect(box).to_be_visible()
    expect(page.get_by_role("button", name=PHOTO_ZONE)).to_be_hidden()

    sentence = "Die Kinder spielen heute im Garten hinter dem Haus."
    box.fill(sentence)
    page.get_by_role("button", name="Classify", exact=True).click()
    expect_language(page, kinds_app, sentence)
    expect(cards(page).first.locator(".prediction-name").first).to_have_text("German")
    expect(cards(page).first.locator(".card-title")).to_have_text(f"“{sentence}”")
    expect(page.get_by_role("status").first).to_have_text("Classified 1 text.")
    page.screenshot(path=tmp_path / "text.png", full_page=True)

    # Ctrl+Enter classifies too; a long text is quoted in full above its shortened title.
    long_text = "Nous allons au marché avec les enfants ce matin, puis à la plage. " * 3
    box.fill(long_text)
    box.press("Control+Enter")
    expect_language(page, kinds_app, long_text)
    expect(cards(page).first.locator(".prediction-name").first).to_have_text("French")
    expect(cards(page).first.locator("blockquote")).to_have_text(long_text)
    expect(cards(page).first.locator(".card-title")).to_have_text(re.compile(r"^“Nous .{40,}…”$"))

    box.fill("   ")
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.locator("#form-error")).to_have_text("Type a text to classify.")
    assert errors == []


def test_the_picker_switches_the_input_by_kind(
    page: Page, kinds_app: KindsApp, tmp_path: Path
) -> None:
    page.goto(kinds_app.url)
    picker = page.get_by_label("Model")
    heading = page.get_by_role("heading", level=1)
    classify = page.get_by_role("button", name="Classify", exact=True)
    expect(picker).to_have_value("colours")
    expect(heading).to_have_text("What's in your photo?")
    expect(page.get_by_role("button", name=PHOTO_ZONE)).to_be_visible()
    expect(classify).to_be_hidden()  # a photo is classified as soon as it is chosen
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=PHOTO_ZONE).click()
    red: FilePayload = {"name": "red.png", "mimeType": "image/png", "buffer": png((250, 5, 5))}
    chooser.value.set_files([red])
    expect(cards(page).first.locator(".prediction-name").first).to_have_text("red")

    picker.select_option("lang")
    expect(page.get_by_label("Text to classify")).to_be_visible()
    expect(page.get_by_role("button", name=PHOTO_ZONE)).to_be_hidden()
    expect(classify).to_be_visible()

    picker.select_option("lin")
    expect(heading).to_have_text("Which class is it?")
    expect(page.get_by_label("Text to classify")).to_be_hidden()
    fields = page.locator("#features input")
    expect(fields).to_have_count(2)
    page.get_by_label(FEATURES[0]).fill("0.5")
    page.get_by_label(FEATURES[1]).fill("3")
    classify.click()
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["wider", "longer"])
    expect(card.locator("blockquote")).to_have_text("petal length = 0.5 · petal width = 3")
    expect(card.locator("[data-slot=model]")).to_have_text("lin")
    page.screenshot(path=tmp_path / "features.png", full_page=True)
    page.get_by_label(FEATURES[1]).fill("wide")
    classify.click()
    expect(cards(page).first.locator(".card-error")).to_have_text(
        "feature 'petal width' must be a number, got 'wide'"
    )

    if HAS_AUDIO:
        picker.select_option("speech")
        expect(page.get_by_role("button", name=CLIP_ZONE)).to_be_visible()
        expect(page.get_by_role("button", name="Record")).to_be_visible()
    picker.select_option("colours")
    expect(page.get_by_role("button", name=PHOTO_ZONE)).to_be_visible()
    expect(page.locator("#features")).to_be_hidden()
    expect(classify).to_be_hidden()


def test_without_javascript_the_picker_switches_by_reloading(
    browser: Browser, kinds_app: KindsApp, tmp_path: Path
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(kinds_app.url)
    expect(page.get_by_label("Text to classify")).to_be_hidden()
    page.get_by_label("Model").select_option("lang")
    with page.expect_navigation():
        page.get_by_role("button", name="Use this model").click()
    assert parse_qs(urlparse(page.url).query)["model"] == ["lang"]
    sentence = "Where is the nearest market, please?"
    page.get_by_label("Text to classify").fill(sentence)
    with page.expect_navigation():
        page.get_by_role("button", name="Classify", exact=True).click()
    expect_language(page, kinds_app, sentence)
    expect(cards(page).first.locator(".prediction-name").first).to_have_text("English")
    page.screenshot(path=tmp_path / "text-no-javascript.png", full_page=True)
    context.close()


def test_the_wav_encoder_writes_16_bit_mono_pcm(page: Page, kinds_app: KindsApp) -> None:
    page.goto(kinds_app.url)
    data = page.evaluate(
        """() => Array.from(new Uint8Array(
            encodeWav(Float32Array.from([0, 0.5, -0.5, 1, -1, 2, -2]), 22050)))"""
    )
    with wave.open(io.BytesIO(bytes(data))) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 22050)
        frames = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
    assert frames.tolist() == [0, 16383, -16384, 32767, -32768, 32767, -32768]


# --- what the page sends: a scripted model server keeps the exact requests -------------


@pytest.fixture
def scripted(start_web: StartWeb) -> Iterator[tuple[ScriptedServer, str]]:
    """A web app in front of a scripted gRPC server with a text and an audio model."""
    models = [ScriptedModel("lang", "text"), ScriptedModel("speech", "audio")]
    with scripted_server(models, default="lang") as server:
        yield server, start_web(server.address, "--models", "lang,speech")


@pytest.fixture
def microphone(browser: Browser) -> Iterator[BrowserContext]:
    """A browser context that may use Chromium's fake microphone (a beeping tone)."""
    context = browser.new_context(permissions=["microphone"])
    yield context
    context.close()


def test_typed_text_is_sent_as_its_utf8_bytes(
    page: Page, scripted: tuple[ScriptedServer, str]
) -> None:
    server, url = scripted
    page.goto(url)
    text = "Grüße aus München,\n  ça va?\tПривет 👋"
    page.get_by_label("Text to classify").fill(text)
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(cards(page).first.locator(".prediction-name")).to_have_text(["heard"])
    (request,) = server.received()
    assert request.input == text.encode("utf-8")  # as `pyserving classify --text` sends it
    assert request.model_name == "lang"


def test_a_recording_is_sent_as_a_wav_clip(
    microphone: BrowserContext, scripted: tuple[ScriptedServer, str], tmp_path: Path
) -> None:
    server, url = scripted
    page = microphone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.get_by_label("Model").select_option("speech")
    expect(page.get_by_role("heading", level=1)).to_have_text("What's in your clip?")
    page.get_by_role("button", name="Record").click()
    status = page.locator("#record-status")
    expect(page.get_by_role("button", name="Stop")).to_have_class(re.compile(r"\brecording\b"))
    expect(status).to_have_text(re.compile(r"^Recording… [1-9] s of 30$"), timeout=10_000)
    page.screenshot(path=tmp_path / "recording.png", full_page=True)
    page.get_by_role("button", name="Stop").click()
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    expect(card.locator(".card-title")).to_have_text("recording.wav")
    expect(card.locator("audio")).to_be_visible()
    expect(status).to_have_text(re.compile(r"^Recorded \d+\.\d s\.$"))
    page.screenshot(path=tmp_path / "recorded.png", full_page=True)

    (request,) = server.received()
    assert request.model_name == "speech"
    with wave.open(io.BytesIO(request.input)) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getcomptype()) == (1, 2, "NONE")
        seconds = clip.getnframes() / clip.getframerate()
        samples = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
    shown = float(status.inner_text().split()[1])
    assert 1.0 <= seconds < 10 and abs(seconds - shown) < 0.051
    assert np.abs(samples.astype(np.int32)).max() > 1000  # the fake microphone's beeps
    assert errors == []


# --- audio: the real voice-activity model, where the audio kind is installed -------------

needs_audio = pytest.mark.skipif(
    not HAS_AUDIO, reason="the audio kind (pyserving.kinds.audio) is not installed"
)


def speech_wav(tmp_path: Path) -> bytes:
    import subprocess

    out = tmp_path / "hello.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(out), "Hello, this is a test of the speech detector."],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@needs_audio
def test_an_uploaded_clip_is_classified(page: Page, kinds_app: KindsApp, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    import subprocess

    subprocess.run(
        ["sox", "-n", "-r", "16000", "-b", "16", str(tone), "synth", "2", "sine", "440"],
        check=True,
        capture_output=True,
    )
    page.goto(kinds_app.url)
    page.get_by_label("Model").select_option("speech")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=CLIP_ZONE).click()
    clips: list[FilePayload] = [
        {"name": "hello.wav", "mimeType": "audio/wav", "buffer": speech_wav(tmp_path)},
        {"name": "tone.wav", "mimeType": "audio/wav", "buffer": tone.read_bytes()},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a clip"},
    ]
    chooser.value.set_files(clips)
    expect(cards(page)).to_have_count(3)
    expect(cards(page).nth(0).locator(".prediction-name").first).to_have_text("speech")
    expect(cards(page).nth(1).locator(".prediction-name").first).to_have_text("no speech")
    expect(cards(page).nth(2).locator(".card-error")).to_have_text(
        "notes.txt is not an audio clip we can read "
        "(expected WAV, FLAC, OGG (Vorbis or Opus) or MP3)"
    )
    page.screenshot(path=tmp_path / "clips.png", full_page=True)


@needs_audio
def test_a_recording_is_classified_by_the_speech_model(
    microphone: BrowserContext, kinds_app: KindsApp, tmp_path: Path
) -> None:
    page = microphone.new_page()
    page.goto(kinds_app.url)
    page.get_by_label("Model").select_option("speech")
    page.get_by_role("button", name="Record").click()
    expect(page.locator("#record-status")).to_have_text(re.compile(r"^Recording… [2-9] s"))
    page.get_by_role("button", name="Stop").click()
    card = cards(page).first
    # The fake microphone beeps: a tone, which the voice-activity model calls no speech.
    expect(card.locator(".prediction-name")).to_have_text(["no speech", "speech"])
    expect(card.locator("[data-slot=model]")).to_have_text("speech")
    page.screenshot(path=tmp_path / "recorded-speech-model.png", full_page=True)
