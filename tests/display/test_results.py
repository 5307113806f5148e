"""Pure functions of the display: cards, merged clip parts, keyword filters, event fan-out, sniffing."""
import pytest

from components.display.events import EventHub, TooManyClients
from components.display.results import apply_keywords, card, merge_parts, safe_thumbnail, thumbnail_url
from components.display.uploads import sniff


def m(fid, score, item=None):
    return {"rank": 0, "score": score, "faiss_id": fid, "item_id": item or f"item-{fid}", "title": f"T{fid}",
            "thumbnail": f"thumbnails/{fid}.jpg"}


def test_merge_parts_keeps_each_items_best_score_and_reranks():
    parts = [{"part": 1, "matches": [m(1, 0.5), m(2, 0.4)]}, {"part": 2, "matches": [m(2, 0.9), m(3, 0.3)]}]
    merged = merge_parts(parts)
    assert [(x["faiss_id"], x["score"], x["rank"]) for x in merged] == [(2, 0.9, 1), (1, 0.5, 2), (3, 0.3, 3)]
    assert merged[0]["best_part"] == 2


def test_hard_filter_keeps_only_keyword_matches_soft_ranks_them_first():
    matches = [m(1, 0.9), m(2, 0.8), m(3, 0.7), m(4, 0.6)]
    hard = apply_keywords(matches, {2, 4}, "hard")
    assert [(x["faiss_id"], x["rank"]) for x in hard] == [(2, 1), (4, 2)]
    soft = apply_keywords(matches, {2, 4}, "soft")
    assert [x["faiss_id"] for x in soft] == [2, 4, 1, 3] and [x["keyword_match"] for x in soft] == [True, True, False, False]
    with pytest.raises(ValueError):
        apply_keywords(matches, set(), "sideways")


def test_card_has_a_thumbnail_url_and_a_bounded_similarity_bar():
    shown = card(m(7, 0.873), 42)
    assert shown["similarity_percent"] == 87 and shown["thumbnail_url"] == "/catalog/42/thumbnails/7.jpg"
    assert card(m(7, -0.2), 42)["similarity_percent"] == 0 and card(m(7, 1.2), 42)["similarity_percent"] == 100
    assert thumbnail_url("thumbnails/../manifest.json", 42) == "" and thumbnail_url("/etc/passwd", 42) == ""
    assert thumbnail_url("thumbnails/7.jpg", None) == ""


def test_query_thumbnails_must_be_plain_base64():
    assert safe_thumbnail("QUJD") == "QUJD"
    assert safe_thumbnail('x" onerror="alert(1)') == "" and safe_thumbnail(None) == "" and safe_thumbnail("A" * 300_000) == ""


def test_event_hub_queues_are_bounded_and_connections_capped():
    hub = EventHub(max_clients=2)
    client = hub.connect()
    for n in range(100):
        hub.publish("state", {"n": n})
    assert client.qsize() <= 8 and '"n":99' in list(client.queue)[-1]
    hub.connect()
    with pytest.raises(TooManyClients):
        hub.connect()
    hub.disconnect(client)
    hub.connect()


@pytest.mark.parametrize("head, kind", [(b"\xff\xd8\xff\xe0", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"),
                                        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"), (b"\x00\x00\x00\x18ftypmp42", "mp4"),
                                        (b"%PDF-1.7", None), (b"hello", None)])
def test_sniff_reads_the_type_from_the_content(head, kind):
    assert sniff(head) == kind
