"""The kiosk and staff pages in headless Chromium, against the whole kiosk over real IPC.

Chromium is a CI dependency (Debian package `chromium`): these tests never skip.
Screenshots go to test-output/ at the repository root, where CI keeps test output.
"""

import json

import pytest

from components.common import messages
from tests.conftest import DEMO_QUERIES, REPO
from tests.display.app_helpers import match_message
from tests.display.chromium import Chromium
from tests.display.conftest import catalog_image, catalog_item, small_jpeg_b64

TEST_OUTPUT = REPO / "test-output"
CARD_IDS = "[...document.querySelectorAll('.card')].map(c => c.dataset.itemId)"
SHOWCASE = ["dress-004", "skirt-002", "dress-011", "t-shirt-005", "dress-007"]
# generous: these tests check what appears; speed is measured by `visual-search bench`, not here
DEADLINE = 30.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def publish_match(kiosk, item_ids, query_photo, **fields):
    faiss_ids = [catalog_item(kiosk.bundle, item_id)["faiss_id"] for item_id in item_ids]
    message = match_message(
        kiosk.bundle,
        faiss_ids,
        [0.91, 0.84, 0.77, 0.69, 0.62][: len(faiss_ids)],
        thumbnail=small_jpeg_b64(query_photo, 160),
        **fields,
    )
    kiosk.local_search.ipc.publish_json(messages.MATCHES, message)


def test_a_published_match_appears_as_cards(kiosk, browser):
    browser.open(kiosk.url + "/")
    browser.wait_for("document.body.dataset.live === 'true'")
    assert browser.evaluate("document.body.dataset.mode") == "idle"
    for n, category in enumerate(["hat", "shoes", "pants"]):  # a little history first
        ids = [f"{category}-{i:03d}" for i in (1, 2, 3)]
        publish_match(
            kiosk, ids, sorted((DEMO_QUERIES / category).glob("*.jpg"))[0], query_id=f"h{n}", track_id=f"h{n}"
        )
    browser.wait_for(f"JSON.stringify({CARD_IDS}) === JSON.stringify(['pants-001','pants-002','pants-003'])")
    publish_match(
        kiosk, SHOWCASE, sorted((DEMO_QUERIES / "dress").glob("*.jpg"))[1], query_id="shown", track_id="t"
    )
    browser.wait_for(
        f"JSON.stringify({CARD_IDS}) === {json.dumps(json.dumps(SHOWCASE, separators=(',', ':')))}",
        timeout=DEADLINE,
    )
    browser.wait_for(
        "[...document.images].filter(i => !i.hidden).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert browser.evaluate("document.querySelectorAll('.card img').length") == 5
    assert browser.evaluate("document.querySelectorAll('#history li').length") == 3
    assert browser.evaluate("document.getElementById('notice').hidden") is True
    assert (
        browser.evaluate("document.querySelector('.card .price').textContent")
        == "$" + catalog_item(kiosk.bundle, SHOWCASE[0])["price"]  # USD in en-US by default
    )
    browser.screenshot(TEST_OUTPUT / "kiosk.png")


def test_an_uploaded_catalog_photo_finds_its_item_and_keywords_narrow_the_results(kiosk, browser):
    # The tiny untrained test model does not sort photos by category reliably, so the upload
    # is a catalog photo: its own item must come first (similarity 1), whatever the model.
    item = catalog_item(kiosk.bundle, "hat-003")
    browser.open(kiosk.url + "/search")
    browser.set_file("input[type=file]", catalog_image(item))
    browser.submit("form.search-form")
    visual = browser.evaluate(CARD_IDS)
    assert visual[0] == "hat-003" and len(visual) == 10
    assert browser.evaluate("document.querySelector('.card').dataset.category") == item["category"] == "hat"
    assert browser.evaluate("document.querySelector('.card .title').textContent") == item["title"]
    browser.set_file("input[type=file]", catalog_image(item))
    browser.evaluate(f"document.querySelector('input[name=q]').value = {json.dumps(item['title'])}")
    browser.submit("form.search-form")
    narrowed = browser.evaluate(CARD_IDS)
    assert narrowed[0] == "hat-003" and set(narrowed) < set(visual)
    assert browser.evaluate(
        "[...document.querySelectorAll('.card')].every(c => c.classList.contains('keyword-match'))"
    )
    browser.screenshot(TEST_OUTPUT / "staff-search.png")


def test_no_good_match_and_a_component_in_error_are_shown(kiosk, browser):
    browser.open(kiosk.url + "/")
    browser.wait_for("document.body.dataset.live === 'true'")
    publish_match(kiosk, [], sorted((DEMO_QUERIES / "shorts").glob("*.jpg"))[0], query_id="nothing")
    browser.wait_for(
        "document.body.dataset.mode === 'no_match' && !document.getElementById('no-match').hidden", DEADLINE
    )
    assert browser.evaluate("document.querySelectorAll('#cards .card').length") == 0
    kiosk.featurizer.ipc.publish_json(
        messages.status_topic("featurizer"),
        messages.status_message("featurizer", "error", detail="camera 0 cannot be opened"),
    )
    text = browser.wait_for(
        "!document.getElementById('notice').hidden && document.getElementById('notice').textContent",
        DEADLINE,
    )
    assert "not available right now" in text and "camera 0" not in text  # the reason is for staff
    browser.screenshot(TEST_OUTPUT / "kiosk-no-match-warning.png")
    kiosk.featurizer.ipc.publish_json(
        messages.status_topic("featurizer"), messages.status_message("featurizer", "running")
    )
    browser.wait_for("document.getElementById('notice').hidden", DEADLINE)


def test_the_page_shows_reconnecting_and_recovers_when_the_display_restarts(kiosk, browser):
    browser.open(kiosk.url + "/")
    browser.wait_for("document.body.dataset.live === 'true'")
    kiosk.restart_display()
    browser.wait_for("document.body.dataset.live === 'false'", timeout=DEADLINE)
    assert browser.evaluate("document.getElementById('connection').textContent") == "Reconnecting\u2026"
    browser.wait_for("document.body.dataset.live === 'true'", timeout=DEADLINE)
    publish_match(kiosk, ["shoes-004"], sorted((DEMO_QUERIES / "shoes").glob("*.jpg"))[0], query_id="after")
    browser.wait_for(f"{CARD_IDS}[0] === 'shoes-004'", timeout=DEADLINE)
