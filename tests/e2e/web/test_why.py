"""Each card's "Why?" in a real browser: a heatmap over a photo, shaded words, a strip under a
clip, a bar per feature; keyboard-operable and legible on a phone.

The explanations come from a scripted gRPC server (tests/scripted_server.py: known weights,
so what is drawn can be checked against them).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import FilePayload, Locator, Page, ViewportSize, expect

from tests.conftest import encode
from tests.e2e.web.conftest import KindsApp, StartWeb
from tests.scripted_server import ScriptedModel, ScriptedServer, scripted_server

PHOTO_ZONE = "Drop photos here or choose files"
CLIP_ZONE = "Drop audio clips here or choose files"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}  # a phone held upright, in CSS pixels
WAV = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\0\0\0"
MODELS = (
    ScriptedModel("colours", "image"),
    ScriptedModel("lang", "text"),
    ScriptedModel("speech", "audio"),
    ScriptedModel("lin", "features", ("petal length", "petal width")),
    ScriptedModel(
        "old",
        "features",
        ("a", "b"),
        explain_error=("FAILED_PRECONDITION", "version 1 has no reference values: export it again"),
    ),
)


@pytest.fixture
def scripted(start_web: StartWeb) -> Iterator[tuple[ScriptedServer, str]]:
    with scripted_server(MODELS, default="colours") as server:
        yield server, start_web(server.address, "--models", ",".join(m.name for m in MODELS))


def cards(page: Page) -> Locator:
    return page.locator("#cards article.card")


def why(card: Locator) -> Locator:
    return card.get_by_role("button", name="Why?")


def open_why(card: Locator) -> Locator:
    """Click the card's "Why?" and return its panel, checked to be the one it controls."""
    button = why(card)
    expect(button).to_have_attribute("aria-expanded", "false")
    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    panel = card.locator(".why-panel")
    expect(panel).to_be_visible()
    assert panel.get_attribute("id") == button.get_attribute("aria-controls")
    return panel


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)


def fits_the_page(page: Page) -> None:
    """Nothing is wider than the viewport (no sideways scrolling on a phone)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the viewport"


def inside(inner: Locator, outer: Locator) -> None:
    box, around = inner.bounding_box(), outer.bounding_box()
    assert box and around
    edge = 0.5
    assert box["x"] >= around["x"] - edge and box["y"] >= around["y"] - edge
    assert box["x"] + box["width"] <= around["x"] + around["width"] + edge
    assert box["y"] + box["height"] <= around["y"] + around["height"] + edge


def expect_red_on_the_left_of_the_photo(card: Locator, aspect: float) -> None:
    """What the heatmap adds to the card's media box (a photo `aspect` wide for its height,
    fitted to the box's height): nothing on the letterbox bars, and red (the scripted
    weights lower the score on the left half) mostly left of the photo's middle."""
    media = card.locator(".card-media")
    heatmap = card.locator("canvas.heatmap")
    after = pixels(media.screenshot())
    heatmap.evaluate("canvas => { canvas.style.visibility = 'hidden'; }")
    before = pixels(media.screenshot())
    heatmap.evaluate("canvas => { canvas.style.visibility = ''; }")
    change = np.abs(after - before).sum(axis=2).astype(float)
    height, width = change.shape
    shown = round(height * aspect)
    left, right = (width - shown) // 2, (width + shown) // 2
    assert change[:, : left - 2].sum() == 0 and change[:, right + 2 :].sum() == 0
    middle = (left + right) // 2
    assert change[:, left:middle].sum() >= 0.8 * change.sum()
    redder = (after - before)[:, left : middle - 10]
    assert redder[..., 0].mean() > redder[..., 2].mean()


def test_why_on_a_photo_shows_the_heatmap_over_it(
    page: Page, scripted: tuple[ScriptedServer, str], chelsea: np.ndarray, tmp_path: Path
) -> None:
    server, url = scripted
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_viewport_size(DESKTOP)
    page.goto(url)
    # Portrait, in a landscape box: letterboxed, so the heatmap must be fitted like it.
    portrait = encode(np.ascontiguousarray(np.rot90(chelsea)), "JPEG")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=PHOTO_ZONE).click()
    photo: FilePayload = {"name": "portrait.jpg", "mimeType": "image/jpeg", "buffer": portrait}
    chooser.value.set_files([photo])
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    heatmap = card.locator("canvas.heatmap")
    expect(heatmap).to_be_hidden()

    panel = open_why(card)
    expect(panel.get_by_role("status")).to_have_text(
        "Why “heard” (75.0%): how much hiding each part of the photo lowers its score."
    )
    expect(heatmap).to_be_visible()
    expect(heatmap).to_have_attribute(
        "aria-label",
        "Heatmap over portrait.jpg, 2 × 4 cells: hiding the cell in row 1, column 1 "
        "lowers the score most (+40.0 points)",
    )
    expect(panel.locator(".why-legend-labels span")).to_have_text(["−40.0", "0", "+40.0"])
    expect(panel.locator(".why-method")).to_have_text(re.compile(r"^scripted · took [\d.]+ ms$"))
    (request,) = server.explain_requests
    assert (request.model_name, request.class_name, request.input) == ("colours", "heard", portrait)

    expect_red_on_the_left_of_the_photo(card, 300 / 451)
    page.screenshot(path=tmp_path / "why-photo-desktop.png", full_page=True)

    # Keyboard: Enter and Space on the button close and open it; the answer is kept.
    why(card).focus()
    page.keyboard.press("Enter")
    expect(why(card)).to_have_attribute("aria-expanded", "false")
    expect(panel).to_be_hidden()
    expect(heatmap).to_be_hidden()
    page.keyboard.press(" ")
    expect(why(card)).to_have_attribute("aria-expanded", "true")
    expect(heatmap).to_be_visible()
    assert len(server.explain_requests) == 1

    page.set_viewport_size(PHONE)
    fits_the_page(page)
    inside(panel.locator(".why-legend"), card)
    assert heatmap.bounding_box() == card.locator("img[data-slot=preview]").bounding_box()
    page.screenshot(path=tmp_path / "why-photo-phone.png", full_page=True)
    assert errors == []


def test_why_on_a_text_shades_each_word(
    page: Page, scripted: tuple[ScriptedServer, str], tmp_path: Path
) -> None:
    server, url = scripted
    page.set_viewport_size(PHONE)
    page.goto(url)
    page.get_by_label("Model").select_option("lang")
    text = "Wo ist der Bahnhof, bitte? Merci beaucoup"
    page.get_by_label("Text to classify").fill(text)
    page.get_by_role("button", name="Classify", exact=True).click()
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    panel = open_why(card)
    words = panel.locator(".why-word")
    expect(words).to_have_count(7)
    # The scripted weights go 0.4, -0.1, 0.05, 0 round the words.
    expect(words.first).to_have_attribute("title", "Wo: hiding it lowers the score by 40.0 points")
    expect(words.nth(1)).to_have_attribute(
        "title", "ist: hiding it raises the score by 10.0 points"
    )
    expect(words.nth(3)).to_have_attribute(
        "title", "Bahnhof,: hiding it changes the score by less than 0.1 points"
    )
    expect(words.first).to_have_class(re.compile(r"\blowers\b"))
    expect(words.nth(1)).to_have_class(re.compile(r"\braises\b"))
    # Shaded by weight: the text is there as it is, the weight for screen readers.
    assert words.first.evaluate("w => w.firstChild.textContent") == "Wo"
    expect(words.first.locator(".visually-hidden")).to_have_text(" (+40.0)")
    alphas = [
        float(
            re.findall(
                r"[\d.]+", words.nth(i).evaluate("w => getComputedStyle(w).backgroundColor")
            )[3]
        )
        for i in (0, 2)
    ]
    assert alphas[0] > alphas[1] > 0
    (request,) = server.explain_requests
    assert request.input == text.encode() and request.model_name == "lang"
    fits_the_page(page)
    inside(panel, card)
    page.screenshot(path=tmp_path / "why-text-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=tmp_path / "why-text-desktop.png", full_page=True)


def test_why_on_a_clip_is_a_strip_and_on_features_a_bar_each(
    page: Page, scripted: tuple[ScriptedServer, str], tmp_path: Path
) -> None:
    server, url = scripted
    page.set_viewport_size(PHONE)
    page.goto(url)
    page.get_by_label("Model").select_option("speech")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=CLIP_ZONE).click()
    clip: FilePayload = {"name": "a.wav", "mimeType": "audio/wav", "buffer": WAV}
    chooser.value.set_files([clip])
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    panel = open_why(card)
    cells = panel.locator(".why-strip li")
    expect(cells).to_have_count(4)
    expect(cells.nth(1)).to_have_attribute(
        "title", "0.5–1 s: hiding it lowers the score by 35.0 points"
    )
    expect(panel.locator(".why-axis span")).to_have_text(["0 s", "2 s"])
    widths = [cells.nth(i).bounding_box()["width"] for i in range(4)]  # type: ignore[index]
    assert max(widths) - min(widths) < 1  # windows of the same length
    # The strip lies under the player.
    player = card.locator(".card-media").bounding_box()
    strip = panel.locator(".why-strip").bounding_box()
    assert player and strip and strip["y"] >= player["y"] + player["height"]
    fits_the_page(page)
    page.screenshot(path=tmp_path / "why-clip-phone.png", full_page=True)

    page.get_by_label("Model").select_option("lin")
    page.get_by_label("petal length").fill("1.5")
    page.get_by_label("petal width").fill("0.2")
    page.get_by_role("button", name="Classify", exact=True).click()
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    panel = open_why(card)
    expect(panel.locator(".why-feature-name")).to_have_text(["petal length", "petal width"])
    expect(panel.locator(".why-value")).to_have_text(["+25.0", "−10.0"])
    fills = panel.locator(".why-fill")
    tracks = panel.locator(".why-track")
    lowers, raises = fills.nth(0).bounding_box(), fills.nth(1).bounding_box()
    track = tracks.nth(0).bounding_box()
    assert lowers and raises and track
    middle = track["x"] + track["width"] / 2
    assert abs(lowers["x"] - middle) < 1 and abs(raises["x"] + raises["width"] - middle) < 1
    assert lowers["width"] == pytest.approx(track["width"] / 2, abs=1)  # the strongest: full
    assert raises["width"] == pytest.approx(track["width"] / 2 * 0.4, abs=1)
    assert dict(server.explain_requests[-1].features) == pytest.approx(
        {"petal length": 1.5, "petal width": 0.2}
    )
    fits_the_page(page)
    page.screenshot(path=tmp_path / "why-features-phone.png", full_page=True)


def test_why_says_what_went_wrong_and_asks_again(
    page: Page, scripted: tuple[ScriptedServer, str], tmp_path: Path
) -> None:
    server, url = scripted
    page.goto(url)
    page.get_by_label("Model").select_option("old")
    page.get_by_label("a", exact=True).fill("1")
    page.get_by_label("b", exact=True).fill("2")
    page.get_by_role("button", name="Classify", exact=True).click()
    card = cards(page).first
    expect(card.locator(".prediction-name")).to_have_text(["heard"])
    panel = open_why(card)
    expect(panel.get_by_role("status")).to_have_text(
        "Features could not be explained: version 1 has no reference values: export it again"
    )
    expect(card).to_have_attribute("data-why", "error")
    page.screenshot(path=tmp_path / "why-error.png", full_page=True)
    why(card).click()
    why(card).click()
    expect(panel.get_by_role("status")).to_have_text(re.compile("could not be explained"))
    assert len(server.explain_requests) == 2


# --- against the real model server (EfficientNet-Lite0) and the language identifier ------


def red_mass(card: Locator) -> tuple[float, float]:
    """The heatmap's red (hiding lowers the score) in its left and right halves, as drawn."""
    left, right = card.locator("canvas.heatmap").evaluate(
        """canvas => {
            const { width, height } = canvas;
            const { data } = canvas.getContext("2d").getImageData(0, 0, width, height);
            const halves = [0, 0];
            for (let i = 0; i < data.length; i += 4) {
                const x = (i / 4) % width;
                if (data[i] > data[i + 2]) halves[x < width / 2 ? 0 : 1] += data[i + 3];
            }
            return halves;
        }"""
    )
    return float(left), float(right)


def cat_on_one_side(chelsea: np.ndarray) -> np.ndarray:
    """Chelsea on the left half of a plain grey photo twice as wide."""
    height, width, _ = chelsea.shape
    composite = np.full((height, 2 * width, 3), 128, dtype=np.uint8)
    composite[:, :width] = chelsea
    return composite


def test_why_on_a_real_photo_shows_where_the_cat_is(
    page: Page, web_url: str, chelsea: np.ndarray, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_viewport_size(DESKTOP)
    page.goto(web_url)
    composite = cat_on_one_side(chelsea)
    photos: list[FilePayload] = [
        {"name": name, "mimeType": "image/jpeg", "buffer": encode(array, "JPEG")}
        for name, array in (("left.jpg", composite), ("right.jpg", np.fliplr(composite).copy()))
    ]
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=PHOTO_ZONE).click()
    chooser.value.set_files(photos)
    expect(cards(page)).to_have_count(2)
    for i, cat_side in enumerate((0, 1)):
        card = cards(page).nth(i)
        expect(card.locator(".prediction")).to_have_count(5)
        top = card.locator(".prediction-name").first.inner_text()
        panel = open_why(card)
        expect(panel.get_by_role("status")).to_have_text(
            re.compile(rf"^Why “{re.escape(top)}” \(\d+\.\d%\): how much hiding each part"),
            timeout=60_000,
        )
        expect(card.locator("canvas.heatmap")).to_be_visible()
        expect(card.locator("canvas.heatmap")).to_have_attribute(
            "aria-label", re.compile(r"^Heatmap over (left|right)\.jpg, \d+ × \d+ cells: ")
        )
        expect(panel.locator(".why-legend")).to_be_visible()
        halves = red_mass(card)
        assert halves[cat_side] >= 0.7 * sum(halves), (top, halves)
    page.screenshot(path=tmp_path / "why-real-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    fits_the_page(page)
    page.screenshot(path=tmp_path / "why-real-phone.png", full_page=True)
    assert errors == []


def test_why_on_a_real_sentence_shades_its_words(
    page: Page, kinds_app: KindsApp, tmp_path: Path
) -> None:
    page.set_viewport_size(PHONE)
    page.goto(kinds_app.url)
    page.get_by_label("Model").select_option("lang")
    text = "Wo ist der Bahnhof bitte ? Nous allons au marché samedi matin"
    page.get_by_label("Text to classify").fill(text)
    page.get_by_role("button", name="Classify", exact=True).click()
    card = cards(page).first
    expect(card.locator(".prediction-name").first).to_have_text(re.compile(r"^(German|French)$"))
    panel = open_why(card)
    words = panel.locator(".why-word")
    expect(words.first).to_be_visible(timeout=30_000)
    shown = [w.evaluate("w => w.firstChild.textContent") for w in words.all()]
    assert shown == text.split()
    weights = [float(w.get_attribute("data-weight") or "nan") for w in words.all()]
    # The top class's own words weigh more: hiding them lowers its score most.
    german, french = sum(weights[:5]), sum(weights[6:])
    top = card.locator(".prediction-name").first.inner_text()
    assert (german > french) if top == "German" else (french > german), (top, weights)
    assert all(
        re.fullmatch(
            r".+: hiding it (lowers|raises|changes) the score .*", w.get_attribute("title") or ""
        )
        for w in words.all()
    )
    fits_the_page(page)
    page.screenshot(path=tmp_path / "why-real-text-phone.png", full_page=True)


def test_why_explains_the_class_chosen(
    page: Page, web_url: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    page.goto(web_url)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=PHOTO_ZONE).click()
    photo: FilePayload = {"name": "chelsea.jpg", "mimeType": "image/jpeg", "buffer": chelsea_jpeg}
    chooser.value.set_files([photo])
    card = cards(page).first
    expect(card.locator(".prediction")).to_have_count(5)
    names = card.locator(".prediction-name").all_inner_texts()
    panel = open_why(card)
    status = panel.get_by_role("status")
    expect(status).to_have_text(re.compile(rf"^Why “{names[0]}”"), timeout=60_000)
    picker = panel.get_by_label("Class to explain")
    expect(picker.locator("option")).to_have_count(5)
    assert picker.locator("option").evaluate_all("os => os.map(o => o.value)") == names
    picker.select_option(names[2])
    expect(status).to_have_text(re.compile(rf"^Why “{names[2]}” \(\d+\.\d%\)"), timeout=60_000)
    expect(panel.locator(".why-method")).to_have_text(re.compile(r" · took \d+(\.\d)? ms$"))
    page.screenshot(path=tmp_path / "why-another-class.png", full_page=True)
