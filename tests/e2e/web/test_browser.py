"""The page in a real browser (Debian's chromium) against the real web app and model server."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
from playwright.sync_api import (
    Browser,
    Dialog,
    FilePayload,
    FloatRect,
    Locator,
    Page,
    Route,
    expect,
)
from skimage import data as skimage_data

from tests.conftest import encode
from tests.e2e.web.conftest import SCRIPT_LABEL

NOT_AN_IMAGE = "notes.txt is not an image we can read (expected JPEG, PNG, WebP, GIF or BMP)"


def jpeg(name: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


def text_file(name: str = "notes.txt") -> FilePayload:
    return {"name": name, "mimeType": "text/plain", "buffer": b"hello, this is not a photo\n"}


def choose(page: Page, *files: FilePayload) -> None:
    """Click the drop zone and pick `files` in the file chooser it opens."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Drop photos here or choose files").click()
    chooser.value.set_files(list(files))


def cards(page: Page) -> Locator:
    return page.locator("#cards article.card")


def expect_top_class(card: Locator, name: str) -> None:
    expect(card.locator(".prediction-name").first).to_have_text(name)
    expect(card.locator(".prediction")).to_have_count(5)
    expect(card.locator(".prediction-score").first).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
    expect(card.locator("[data-slot=model]")).to_have_text("imagenet")
    expect(card.locator("[data-slot=version]")).to_have_text(re.compile(r"^\d+$"))
    expect(card.locator("[data-slot=elapsed]")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))


def mark_page(page: Page) -> None:
    """Tag the loaded document, so `expect_same_page` shows that nothing reloaded it."""
    page.evaluate("window.loadedOnce = true")


def expect_same_page(page: Page) -> None:
    assert page.evaluate("window.loadedOnce === true"), "the page was reloaded"


def test_chelsea_is_an_egyptian_cat(
    page: Page, web_url: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    page.goto(web_url)
    mark_page(page)
    choose(page, jpeg("chelsea.jpg", chelsea_jpeg))
    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    expect_top_class(card, "Egyptian cat")
    expect(card.locator(".card-title")).to_have_text("chelsea.jpg")
    preview = card.get_by_role("img", name="Preview of chelsea.jpg")
    expect(preview).to_be_visible()
    assert preview.evaluate("img => img.naturalWidth") > 0
    expect(page.get_by_role("status")).to_have_text("Classified 1 photo.")
    expect_same_page(page)
    page.screenshot(path=tmp_path / "chelsea.png", full_page=True)


def test_two_photos_give_two_cards(
    page: Page, web_url: str, chelsea_jpeg: bytes, coffee_jpeg: bytes, tmp_path: Path
) -> None:
    page.goto(web_url)
    mark_page(page)
    choose(page, jpeg("chelsea.jpg", chelsea_jpeg), jpeg("coffee.jpg", coffee_jpeg))
    expect(cards(page)).to_have_count(2)
    expect_top_class(cards(page).nth(0), "Egyptian cat")
    expect_top_class(cards(page).nth(1), "espresso")
    expect(cards(page).nth(1).locator(".card-title")).to_have_text("coffee.jpg")
    expect_same_page(page)
    page.screenshot(path=tmp_path / "two.png", full_page=True)


def test_dropped_photos_are_classified(
    page: Page, web_url: str, chelsea_jpeg: bytes, coffee_jpeg: bytes, tmp_path: Path
) -> None:
    page.goto(web_url)
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const [name, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            }
            return transfer;
        }""",
        [
            ["coffee.jpg", base64.b64encode(coffee_jpeg).decode()],
            ["chelsea.jpg", base64.b64encode(chelsea_jpeg).decode()],
        ],
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#dropzone")).to_have_class(re.compile(r"\bdragging\b"))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#dropzone")).not_to_have_class(re.compile(r"\bdragging\b"))
    expect(cards(page)).to_have_count(2)
    expect_top_class(cards(page).nth(0), "espresso")
    expect_top_class(cards(page).nth(1), "Egyptian cat")
    page.screenshot(path=tmp_path / "dropped.png", full_page=True)


def test_keyboard_opens_the_picker(
    page: Page, web_url: str, chelsea_jpeg: bytes, coffee_jpeg: bytes, tmp_path: Path
) -> None:
    page.goto(web_url)
    page.keyboard.press("Tab")  # the brand link
    page.keyboard.press("Tab")
    dropzone = page.get_by_role("button", name="Drop photos here or choose files")
    expect(dropzone).to_be_focused()
    for key, photo, top in (
        ("Enter", chelsea_jpeg, "Egyptian cat"),
        (" ", coffee_jpeg, "espresso"),
    ):
        with page.expect_file_chooser() as chooser:
            page.keyboard.press(key)
        chooser.value.set_files([jpeg("photo.jpg", photo)])
        expect_top_class(cards(page).first, top)
    page.screenshot(path=tmp_path / "keyboard.png", full_page=True)


def test_spinner_shows_while_waiting(
    page: Page, web_url: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    held: list[Route] = []
    page.route("**/api/classify", lambda route: held.append(route))
    page.goto(web_url)
    choose(page, jpeg("chelsea.jpg", chelsea_jpeg))
    card = cards(page).first
    expect(card.locator(".card-loading")).to_be_visible()
    expect(card).to_have_attribute("aria-busy", "true")
    expect(page.get_by_role("status")).to_have_text("Classifying 1 photo…")
    page.screenshot(path=tmp_path / "waiting.png", full_page=True)
    assert len(held) == 1
    held[0].continue_()
    expect_top_class(card, "Egyptian cat")
    expect(card.locator(".card-loading")).to_be_hidden()


def test_a_text_file_shows_an_error(
    page: Page, web_url: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(web_url)
    choose(page, text_file())
    card = cards(page).first
    expect(card.locator(".card-error")).to_have_text(NOT_AN_IMAGE)
    expect(card.locator(".prediction")).to_have_count(0)
    expect(card.get_by_text("No preview")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("The photo could not be classified.")
    page.screenshot(path=tmp_path / "text-file.png", full_page=True)

    # The page keeps working, and a bad file among good ones spoils only its own card.
    choose(page, jpeg("chelsea.jpg", chelsea_jpeg), text_file())
    expect(cards(page)).to_have_count(2)
    expect_top_class(cards(page).nth(0), "Egyptian cat")
    expect(cards(page).nth(1).locator(".card-error")).to_have_text(NOT_AN_IMAGE)
    expect(page.get_by_role("status")).to_have_text(
        "Classified 1 of 2 photos; 1 could not be classified."
    )
    page.screenshot(path=tmp_path / "mixed.png", full_page=True)
    assert errors == []


def test_labels_are_text_not_html(
    page: Page, script_label_url: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.goto(script_label_url)
    choose(page, jpeg("chelsea.jpg", chelsea_jpeg))
    name = cards(page).first.locator(".prediction-name").first
    expect(name).to_have_text(SCRIPT_LABEL)
    assert name.evaluate("el => el.children.length") == 0
    assert page.locator("#cards script").count() == 0
    page.screenshot(path=tmp_path / "script-label.png", full_page=True)
    assert dialogs == []


def test_works_without_javascript(
    browser: Browser, web_url: str, chelsea_jpeg: bytes, coffee_jpeg: bytes, tmp_path: Path
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(web_url)
    expect(page.get_by_role("button", name="Drop photos here or choose files")).to_have_count(0)
    page.get_by_label("Choose photos to classify").set_input_files(
        [jpeg("chelsea.jpg", chelsea_jpeg), jpeg("coffee.jpg", coffee_jpeg), text_file()]
    )
    with page.expect_navigation():
        page.get_by_role("button", name="Classify", exact=True).click()
    expect(cards(page)).to_have_count(3)
    expect_top_class(cards(page).nth(0), "Egyptian cat")
    expect_top_class(cards(page).nth(1), "espresso")
    expect(cards(page).nth(2).locator(".card-error")).to_have_text(NOT_AN_IMAGE)
    expect(page.get_by_role("status")).to_have_text(
        "Classified 2 of 3 photos; 1 could not be classified."
    )
    preview = cards(page).nth(0).get_by_role("img", name="Preview of chelsea.jpg")
    assert preview.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=tmp_path / "no-javascript.png", full_page=True)
    context.close()


def overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def expect_preview_inside(card: Locator) -> None:
    """The card's preview lies inside the card and covers none of its text."""
    preview = card.locator("img[data-slot=preview]")
    assert preview.evaluate("img => img.complete && img.naturalWidth") > 0
    box, outer = preview.bounding_box(), card.bounding_box()
    assert box and outer
    edge = 0.5  # sub-pixel rounding
    assert box["x"] >= outer["x"] - edge and box["y"] >= outer["y"] - edge
    assert box["x"] + box["width"] <= outer["x"] + outer["width"] + edge
    assert box["y"] + box["height"] <= outer["y"] + outer["height"] + edge
    for text in (".card-title", ".predictions", ".meta"):
        other = card.locator(text).bounding_box()
        assert other and not overlap(box, other), f"the preview covers {text}"


def test_square_and_portrait_previews_stay_inside_their_cards(
    page: Page, web_url: str, chelsea: np.ndarray, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    photos = [
        jpeg("chelsea.jpg", chelsea_jpeg),  # landscape, 451 × 300
        jpeg("astronaut.jpg", encode(np.asarray(skimage_data.astronaut()), "JPEG")),  # 512²
        jpeg("portrait.jpg", encode(np.ascontiguousarray(np.rot90(chelsea)), "JPEG")),
    ]
    page.goto(web_url)
    choose(page, *photos)
    expect(cards(page)).to_have_count(3)
    for i in range(3):
        expect(cards(page).nth(i).locator(".prediction")).to_have_count(5)
    for width in (1280, 760, 420):  # three, two and one card to a row
        page.set_viewport_size({"width": width, "height": 900})
        for i in range(3):
            expect_preview_inside(cards(page).nth(i))
        page.screenshot(path=tmp_path / f"grid-{width}.png", full_page=True)
    # A lone card lays its photo beside its classes.
    page.set_viewport_size({"width": 1280, "height": 900})
    choose(page, photos[2])
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first.locator(".prediction")).to_have_count(5)
    expect_preview_inside(cards(page).first)
    page.screenshot(path=tmp_path / "portrait-alone.png", full_page=True)
