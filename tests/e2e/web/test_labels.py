"""The web app's model picker with version labels, in Chromium, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_version_labels import write_config
from tests.e2e.web.conftest import StartWeb
from tests.onnx_models import publish, write_version_servable
from tests.processes import start_serve


@pytest.fixture(scope="module")
def labelled_web(start_web: StartWeb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A web app offering model `m`: versions 1 and 2, `stable` on 1 and `canary` on 2."""
    folder = tmp_path_factory.mktemp("labels")
    base = folder / "m"
    for version in (1, 2):
        publish(base, version, partial(write_version_servable, version=version))
    config = folder / "models.config"
    write_config(config, base, (1, 2), stable=1, canary=2)
    server = start_serve(folder / "server.log", f"--model_config_file={config}")
    yield start_web(f"127.0.0.1:{server.match.group(1)}", "--models", "m")
    server.stop()


def test_the_picker_lists_labels_and_asks_by_them(
    page: Page, labelled_web: str, tmp_path: Path
) -> None:
    page.goto(labelled_web)
    picker = page.get_by_label("Model")
    expect(picker.locator("option")).to_have_text(
        ["m", "m · canary (version 2)", "m · stable (version 1)"]
    )
    picker.select_option("m/canary")
    page.get_by_label("x", exact=True).fill("1")
    page.get_by_role("button", name="Classify", exact=True).click()
    card = page.locator("#cards article.card").first
    expect(card.locator("[data-slot=version]")).to_have_text("2")
    expect(card.locator(".prediction-name").first).to_have_text("v2")
    picker.select_option("m/stable")
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.locator("#cards article.card").first.locator("[data-slot=version]")).to_have_text(
        "1"
    )
    page.screenshot(path=tmp_path / "labels.png", full_page=True)
