"""What the kiosk page is given to show: the catalog's date, the shopper notice, display settings."""

from components.common.settings import check_settings
from components.display.kiosk_state import UNAVAILABLE, catalog_date
from components.display.settings import DisplaySettings
from tests.display.app_helpers import Clock, make_display, matches_for, status


def test_the_catalog_date_comes_from_the_manifest_else_from_a_default_version():
    assert catalog_date(7, "2026-11-30T07:27:24+00:00") == "2026-11-30T07:27:24+00:00"
    assert catalog_date(20261130072724) == "2026-11-30T07:27:24+00:00"
    assert catalog_date(3) is None and catalog_date(None) is None and catalog_date(20261399999999) is None


def test_currency_and_locale_are_checked_with_the_key_and_value_named():
    assert check_settings(DisplaySettings, {"currency": "EUR", "locale": "de-CH"}, "display").ok
    problems = check_settings(DisplaySettings, {"currency": "euro", "locale": "de_CH!"}, "display").problems
    assert problems == [
        "display.currency: 'euro' is not a 3-letter ISO 4217 code such as USD",
        "display.locale: 'de_CH!' is not a language tag such as en-US",
    ]


def test_shoppers_get_a_notice_and_the_reasons_stay_in_warnings(tmp_path, demo_bundle):
    display = make_display(tmp_path, demo_bundle, currency="GBP", locale="en-GB")
    display.state.handle_status(status("featurizer", "camera_lost", detail="/dev/video0 unplugged"))
    snapshot = display.state.snapshot()
    assert snapshot["notice"] == UNAVAILABLE
    assert snapshot["warnings"] == ["featurizer is down: camera_lost: /dev/video0 unplugged"]
    assert (snapshot["currency"], snapshot["locale"]) == ("GBP", "en-GB")
    display.state.handle_status(status("featurizer"))
    assert display.state.snapshot()["notice"] == ""


def test_once_idle_the_last_query_is_the_first_of_the_history(tmp_path, demo_bundle):
    clock = Clock()
    display = make_display(tmp_path, demo_bundle, clock=clock, history_size=2)
    for n in range(3):
        display.state.handle_match(matches_for(demo_bundle, [n], query_id=f"q{n}", track_id=f"t{n}"))
    assert [h["query_id"] for h in display.state.snapshot()["history"]] == ["q1", "q0"]
    clock.now += display.state.settings.idle_after_s + 1
    snapshot = display.state.snapshot()
    assert snapshot["mode"] == "idle" and [h["query_id"] for h in snapshot["history"]] == ["q2", "q1"]
