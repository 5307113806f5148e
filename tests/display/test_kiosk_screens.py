"""The kiosk page on real screens (1920x1080, portrait 1080x1920, 1366x768) in headless Chromium.

The display app is served in-process on a free port and fed matches and statuses directly (no
IPC: what appears on the page is all that is tested here). Each screen is checked through the
DOM (every card's title, price and similarity bar visible, uncovered and on the screen; the
history clear of the footer; nothing scrolls) and saved as a PNG under test-output/ for a person
to look at.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest

from components.common.messages import Variant
from components.display.server import WebServer
from tests.conftest import DEMO_QUERIES, REPO
from tests.display.app_helpers import Clock, make_display, matches_for, status
from tests.display.chromium import Chromium
from tests.display.conftest import catalog_item, small_jpeg_b64

TEST_OUTPUT = REPO / "test-output"
SCREENS = [(1920, 1080), (1080, 1920), (1366, 768)]
TEN = [
    "dress-004",
    "skirt-002",
    "dress-011",
    "t-shirt-005",
    "dress-007",
    "shirt-001",
    "pants-003",
    "hat-002",
    "shoes-004",
    "outwear-001",
]
LONG_TITLE = "Long-sleeved organic cotton wrap dress with a tie belt and pockets, in midnight blue"

# Every problem a shopper would see: what is cut off, covered or off the screen.
LAYOUT_PROBLEMS = """(() => {
  const problems = [];
  const view = {left: 0, top: 0, right: innerWidth, bottom: innerHeight};
  const inside = (r, b) => r.left >= b.left - 0.5 && r.top >= b.top - 0.5
    && r.right <= b.right + 0.5 && r.bottom <= b.bottom + 0.5;
  const uncovered = (el, r) => {
    const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    return hit !== null && (hit === el || el.contains(hit));
  };
  const root = document.documentElement;
  if (root.scrollWidth > innerWidth || root.scrollHeight > innerHeight) problems.push("the page scrolls");
  document.querySelectorAll("#cards .card").forEach((card, i) => {
    const box = card.getBoundingClientRect();
    for (const part of [".title", ".price", ".similarity progress", ".percent", ".card-image img"]) {
      const el = card.querySelector(part);
      const r = el && el.getBoundingClientRect();
      if (!el) problems.push(`card ${i + 1}: no ${part}`);
      else if (r.width < 4 || r.height < 4) problems.push(`card ${i + 1}: ${part} is ${r.width}x${r.height}`);
      else if (!inside(r, view)) problems.push(`card ${i + 1}: ${part} is off the screen`);
      else if (!inside(r, box)) problems.push(`card ${i + 1}: ${part} is cut off by its card`);
      else if (!uncovered(el, r)) problems.push(`card ${i + 1}: ${part} is covered`);
    }
    const price = card.querySelector(".price");
    if (price && price.scrollWidth > price.clientWidth) problems.push(`card ${i + 1}: the price is cut`);
  });
  const footer = document.querySelector(".footbar").getBoundingClientRect();
  if (!inside(footer, view)) problems.push("the footer is off the screen");
  document.querySelectorAll("#history li:not([hidden])").forEach((li, i) => {
    const r = li.getBoundingClientRect();
    if (r.bottom > footer.top + 0.5) problems.push(`history ${i + 1} overlaps the footer`);
    if (!inside(r, view)) problems.push(`history ${i + 1} is off the screen`);
  });
  document.querySelectorAll(".brand, .topbar .pill:not([hidden]), #notice:not([hidden])").forEach(el => {
    const name = el.id || el.className;
    if (!inside(el.getBoundingClientRect(), view)) problems.push(`${name} is off the screen`);
  });
  return problems;
})()"""
PICTURES_LOADED = "[...document.images].filter(i => !i.hidden).every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(tmp_path_factory.mktemp("chromium-screens"))
    yield chromium
    chromium.close()


@contextlib.contextmanager
def served(tmp_path, bundle, **settings):
    """The display app as production builds it, on a free port of 127.0.0.1, with a hand clock."""
    clock = Clock()
    display = make_display(tmp_path, bundle, clock=clock, **settings)
    server = WebServer(display.app, "127.0.0.1", 0, threads=4)
    server.start()
    try:
        yield display, server.url, clock
    finally:
        display.state.hub.close()
        server.stop()


def show(display, bundle, item_ids, query_photo, query_id, **fields):
    faiss_ids = [catalog_item(bundle, item_id)["faiss_id"] for item_id in item_ids]
    scores = [round(0.93 - 0.04 * i, 2) for i in range(len(faiss_ids))]
    message = matches_for(
        bundle,
        faiss_ids,
        scores,
        query_id=query_id,
        track_id=query_id,
        thumbnail=small_jpeg_b64(query_photo, 160),
        **fields,
    )
    display.state.handle_match(message)


def everyone_running(display, bundle, online=None):
    """Running statuses, local_search's announcing the bundle it serves (as on a device)."""
    display.state.handle_status(status("featurizer"))
    display.state.handle_status(
        status(
            "local_search",
            index_version=bundle.version,
            items=len(bundle),
            bundle_dir=str(bundle.path),
            **({} if online is None else {"online": online}),
        )
    )
    display.state.handle_status(status("display"))


def with_history(display, bundle):
    """Eight earlier queries, one of them answered 'no good match'."""
    for n, category in enumerate(
        ["hat", "shoes", "pants", "skirt", "shirt", "shorts", "outwear", "longsleeve"]
    ):
        photo = sorted((DEMO_QUERIES / category).glob("*.jpg"))[0]
        show(display, bundle, [] if n == 3 else [f"{category}-00{i}" for i in (1, 2, 3)], photo, f"h{n}")


def look(browser, url: str, size: tuple[int, int], name: str) -> list[str]:
    browser.set_viewport(*size)
    browser.open(url)
    browser.wait_for("document.body.dataset.live === 'true'", timeout=20)
    browser.wait_for(PICTURES_LOADED, timeout=20)
    browser.screenshot(TEST_OUTPUT / f"kiosk-{size[0]}x{size[1]}-{name}.png")
    return browser.evaluate(LAYOUT_PROBLEMS)


@pytest.mark.parametrize("cards", [5, 10])
def test_every_card_is_complete_on_each_screen(tmp_path, demo_bundle, browser, cards):
    with served(tmp_path, demo_bundle) as (display, url, _):
        everyone_running(display, demo_bundle, online=True)
        with_history(display, demo_bundle)
        dress = sorted((DEMO_QUERIES / "dress").glob("*.jpg"))[1]
        show(display, demo_bundle, TEN[:cards], dress, "shown")
        for size in SCREENS:
            problems = look(browser, url + "/", size, f"{cards}-cards")
            assert problems == [], f"{size}: {problems}"
            assert browser.evaluate("document.querySelectorAll('#cards .card').length") == cards
            assert browser.evaluate("document.querySelectorAll('#history li:not([hidden])').length") >= 3
            assert browser.evaluate("document.getElementById('online').textContent") == "Online"


def test_a_long_title_is_clamped_and_the_price_and_folded_variants_stay_on_the_card(
    tmp_path, demo_bundle, browser
):
    with served(tmp_path, demo_bundle) as (display, url, _):
        everyone_running(display, demo_bundle)
        faiss_ids = [catalog_item(demo_bundle, item_id)["faiss_id"] for item_id in TEN[:5]]
        message = matches_for(demo_bundle, faiss_ids, query_id="long")
        folded = [Variant(900 + n, f"v{n}", title=f"Same photo, size {size}") for n, size in enumerate("SML")]
        first = dataclasses.replace(message.matches[0], title=LONG_TITLE, price="1249.5", variants=folded)
        display.state.handle_match(dataclasses.replace(message, matches=[first, *message.matches[1:]]))
        for size in SCREENS:
            problems = look(browser, url + "/", size, "long-title")
            assert problems == [], f"{size}: {problems}"
            assert browser.evaluate("document.querySelector('.card .price').textContent") == "$1,249.50"
            assert browser.evaluate("document.querySelector('.card .also').textContent") == (
                "Also: Same photo, size S, Same photo, size M, Same photo, size L"
            )


def test_the_idle_screen_is_a_hint_without_an_empty_picture_frame(tmp_path, demo_bundle, browser):
    with served(tmp_path, demo_bundle) as (display, url, clock):
        everyone_running(display, demo_bundle)
        for size in SCREENS:
            assert look(browser, url + "/", size, "idle") == []
            assert browser.evaluate("document.body.dataset.mode") == "idle"
            assert "Hold an item up to the camera" in browser.evaluate(
                "document.getElementById('idle').innerText"
            )
            shown_frames = (
                "[...document.querySelectorAll('.query-picture, .recent')].filter(e => e.offsetParent)"
            )
            assert browser.evaluate(f"{shown_frames}.length") == 0
        show(display, demo_bundle, ["hat-001"], sorted((DEMO_QUERIES / "hat").glob("*.jpg"))[0], "q")
        clock.now += display.state.settings.idle_after_s + 1
        display.state.refresh()
        assert look(browser, url + "/", SCREENS[0], "idle-with-history") == []
        assert browser.evaluate("document.body.dataset.mode") == "idle"
        assert browser.evaluate("document.querySelector('.query-picture').offsetParent") is None
        assert browser.evaluate("document.querySelectorAll('#history li').length") == 1


def test_shoppers_read_not_available_while_staff_read_why(tmp_path, demo_bundle, browser):
    with served(tmp_path, demo_bundle) as (display, url, _):
        everyone_running(display, demo_bundle, online=False)
        display.state.handle_status(status("featurizer", "camera_lost", detail="/dev/video0 unplugged"))
        show(display, demo_bundle, [], sorted((DEMO_QUERIES / "shorts").glob("*.jpg"))[0], "nothing")
        for size in SCREENS:
            assert look(browser, url + "/", size, "not-available") == []
            page = browser.evaluate("document.body.innerText")
            assert "not available right now" in page
            assert "camera_lost" not in page and "video0" not in page and "featurizer" not in page
            assert browser.evaluate("document.getElementById('online').textContent") == "Offline"
        browser.open(url + "/search")
        staff = browser.evaluate("document.getElementById('health').innerText")
        assert "featurizer" in staff and "camera_lost" in staff and "/dev/video0 unplugged" in staff


def test_prices_and_the_catalog_date_follow_the_currency_and_locale(tmp_path, demo_bundle, browser):
    price = catalog_item(demo_bundle, "dress-004")["price"]
    with served(tmp_path, demo_bundle, currency="EUR", locale="de-DE") as (display, url, _):
        everyone_running(display, demo_bundle)
        show(display, demo_bundle, ["dress-004"], sorted((DEMO_QUERIES / "dress").glob("*.jpg"))[0], "q")
        assert look(browser, url + "/", SCREENS[0], "euro") == []
        shown = browser.evaluate("document.querySelector('.card .price').textContent")
        assert shown == price.replace(".", ",") + "\u00a0\u20ac"  # 57,99 €
        created = json.loads((demo_bundle.path / "manifest.json").read_text())["created_at"]
        date = browser.evaluate("document.getElementById('catalog-date').textContent")
        assert date.startswith("Catalog of ") and created[:4] in date and str(demo_bundle.version) not in date
