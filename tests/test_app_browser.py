"""The demo end to end in a real headless Chromium (Debian's, driven by Playwright): pick a class, generate;
upload an image and project it.

Saves a screenshot to ``$COCKTAIL_SCREENSHOT`` (e.g. docs/screenshot.png) or the test's tmp folder.
"""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cocktail.assets import DEFAULT_UNION
from cocktail.union import UnionModel

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (CI runs as root), and nothing that would reach the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install it)")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]


@pytest.fixture(scope="module")
def url():
    """The demo of the shipped example union, the one `python app.py` serves, on a free port."""
    from test_app import load_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = load_app().build_demo(UnionModel.from_pretrained(DEFAULT_UNION, load_discriminator=False))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_generate_in_a_real_browser(url, tmp_path):
    model = UnionModel.from_pretrained(DEFAULT_UNION, load_discriminator=False)
    chosen = model.class_names[-1]
    screenshot = Path(os.environ.get("COCKTAIL_SCREENSHOT") or tmp_path / "demo.png")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url)
            generate = page.get_by_role("button", name="Generate", exact=True)
            generate.wait_for(timeout=30_000)

            page.get_by_label("class").first.click()
            page.get_by_role("option", name=chosen, exact=True).click()
            generate.click()
            images = page.locator(f'img[alt^="{chosen} · seed"]')
            sync_api.expect(images).to_have_count(8, timeout=30_000)
            resolution = model.generator.img_resolution
            for i in range(8):
                sync_api.expect(images.nth(i)).to_have_attribute("alt", f"{chosen} · seed {i} · ψ 0.7")
                assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") == resolution
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))

            page.get_by_label("seeds").first.fill("0-99")  # a bad request gets a readable message
            generate.click()
            sync_api.expect(page.get_by_text("asks for more than 16 images")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000


def test_your_image_projects_an_uploaded_file_in_a_real_browser(url, tmp_path):
    """Upload a 16-bit grey PNG (converted, not clipped), watch it converge, see it in every class; then a file
    that is not an image gets a readable message."""
    wide = np.zeros([28, 28], np.uint16)
    wide[4:24, 6:22] = 52000  # a bright bag-like block in 16 bits
    Image.fromarray(wide).save(tmp_path / "scan.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_role("tab", name="Your image").click()
            tab = page.locator("#your-image")
            tab.locator("input[type=file]").set_input_files(str(tmp_path / "scan.png"))
            tab.get_by_label("the class it shows").click()
            page.get_by_role("option", name="bag", exact=True).click()
            tab.get_by_label("number input for steps").fill("100")
            tab.get_by_role("button", name="Project").click()
            sync_api.expect(tab.locator('img[alt^="step "]')).to_have_count(1, timeout=60_000)  # converging
            sync_api.expect(tab.get_by_text("Projected into bag")).to_be_visible(timeout=180_000)
            for caption in ("your image", "projection", "as trouser", "as sneaker", "as bag"):
                image = tab.locator(f'img[alt="{caption}"]')
                sync_api.expect(image).to_have_count(1)
                assert image.evaluate("img => img.complete && img.naturalWidth") == 32
            sync_api.expect(tab.locator('img[alt$="σ"]')).to_have_count(15)
            page.screenshot(path=str(tmp_path / "your-image.png"))

            tab.get_by_role("button", name="Clear").click()  # the file box takes a new upload once emptied
            tab.locator("input[type=file]").set_input_files(str(tmp_path / "notes.png"))
            tab.get_by_role("button", name="Project").click()
            sync_api.expect(page.get_by_text("not an image this program can read")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
