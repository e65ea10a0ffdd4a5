"""The demo end to end in a real headless Chromium (Debian's, driven by Playwright): pick a class, generate.

Saves a screenshot to ``$COCKTAIL_SCREENSHOT`` (e.g. docs/screenshot.png) or the test's tmp folder.
"""

import os
import socket
from pathlib import Path

import pytest

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
