"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright.

Run as a script, it makes the screenshot of the docs:

    python tests/test_browser.py runs/quickstart docs/images/web-page.png
"""

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from kanime.inference import CharacterGenerator
from kanime.models import Generator
from kanime.serve.app import create_app
from kanime.serve.background import BackgroundServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True)


@pytest.fixture(scope="module")
def url():
    model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1, upsample_channels=16)
    with BackgroundServer(create_app(CharacterGenerator(model))) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")
    yield page
    context.close()
    assert errors == [], errors


def test_pick_tags_generate_and_see_the_seed(page):
    page.select_option("#opt-hair_color", "blonde hair")
    page.select_option("#opt-eye_color", "blue eyes")
    page.check("input[name='opt-smile'][value='on']")
    page.fill("#count", "2")
    page.click("#generate")
    page.wait_for_selector(".card img")
    cards = page.locator("#results .card")
    assert cards.count() == 2
    for i in range(2):
        card = cards.nth(i)
        seed = card.locator(".seed-value").inner_text()
        assert re.fullmatch(r"\d+", seed) and card.get_attribute("data-seed") == seed
        tags = card.locator(".tags").inner_text()
        assert "blonde hair" in tags and "blue eyes" in tags and "smile" in tags
        width = card.locator("img").evaluate("img => img.complete && img.naturalWidth")
        assert width == 32
        assert card.locator("a.save").get_attribute("download") == f"kanime-seed-{seed}.png"
    assert page.locator("#history button").count() == 2


def test_noise_controls_export_import_and_transition(page, tmp_path):
    from playwright.sync_api import expect

    # Before any image the caption says it once (it used to repeat itself).
    assert page.inner_text("#noise-label") == "new noise for every image"
    # Lock the noise, then re-generate: the noise (not the seed) is the same in every image.
    page.click("#generate")
    page.wait_for_selector(".card img")
    page.check("#lock")
    page.select_option("#opt-hair_color", "red hair")
    page.click("#generate")
    expect(page.locator(".card .tags").first).to_contain_text("red hair")
    assert "locked" in page.inner_text("#noise-label")
    page.click("#reroll")
    expect(page.locator("#status")).to_contain_text("images in")
    assert page.locator(".card .noise-note").first.inner_text().startswith("noise of seed")
    page.click("#perturb")
    expect(page.locator("#noise-label")).to_contain_text("+ 1 perturbation")

    # Export the noise and options, change them, import them back.
    with page.expect_download() as download:
        page.click("#export")
    exported = tmp_path / "character.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert len(data["noise"]) == 8 and data["options"]["hair_color"] == "red hair"
    page.select_option("#opt-hair_color", "green hair")
    page.uncheck("#lock")
    page.set_input_files("#import-file", str(exported))
    expect(page.locator("#status")).to_contain_text("Imported the noise (locked)")
    assert page.input_value("#opt-hair_color") == "red hair" and page.is_checked("#lock")

    # A transition between two characters of the history plays and saves its frames.
    page.fill("#count", "2")
    page.uncheck("#lock")
    page.click("#generate")
    expect(page.locator("#results .card")).to_have_count(2)
    page.click("#results .card:nth-child(1) .pick-a")
    page.click("#results .card:nth-child(2) .pick-b")
    page.fill("#frames", "5")
    page.select_option("#method", "lerp")
    page.click("#morph")
    page.wait_for_selector("#filmstrip img")
    assert page.locator("#filmstrip img").count() == 5
    page.click("#play")
    expect(page.locator("#frame-t")).not_to_have_text("t = 0.00")
    page.click("#play")
    with page.expect_download() as strip:
        page.click("#save-strip")
    assert strip.value.suggested_filename.endswith("-lerp.png")
    assert page.locator("#history button").count() >= 6

    # A character of the history comes back; "Use" locks its noise and sets its tags.
    page.click("#history button >> nth=3")
    card = page.locator("#results .card")
    expect(card).to_have_count(1)
    seed = card.locator(".seed-value").inner_text()
    page.uncheck("#lock")
    card.locator(".use").click()
    expect(page.locator("#status")).to_contain_text(f"Using seed {seed}")
    assert page.is_checked("#lock")
    assert page.input_value("#opt-hair_color") in card.locator(".tags").inner_text()


def screenshot(generator, out):
    """Serves `generator`, makes a few characters and a transition, and saves the page."""
    from playwright.sync_api import expect, sync_playwright

    with BackgroundServer(create_app(generator)) as server, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 1340})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='true']")
        page.select_option("#opt-hair_color", "blonde hair")
        page.check("input[name='opt-smile'][value='on']")
        page.check("input[name='opt-blush'][value='random']")
        page.click("#generate")
        page.wait_for_selector(".card img")
        page.click("#results .card:nth-child(1) .pick-a")
        page.select_option("#opt-hair_color", "random")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("images in")
        page.click("#results .card:nth-child(2) .pick-b")
        page.fill("#frames", "10")
        page.click("#morph")
        page.wait_for_selector("#filmstrip img")
        page.click("#filmstrip img:nth-child(5)")
        page.evaluate("window.scrollTo(0, 0)")
        page.evaluate("document.querySelector('.controls').scrollTop = 0")
        png = page.screenshot()
        browser.close()
    # 256 colours keep the picture faithful and the file small.
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, dither=Image.Dither.NONE)
    image.save(out, optimize=True)


if __name__ == "__main__":
    screenshot(sys.argv[1], Path(sys.argv[2]))
