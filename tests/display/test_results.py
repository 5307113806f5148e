"""Pure functions of the display: cards, merged clip parts, keyword filters, event fan-out, sniffing."""

from dataclasses import replace

import pytest

from components.common.messages import Match, MatchesMessage, Variant
from components.display.events import EventHub, TooManyClients
from components.display.results import (
    apply_keywords,
    card,
    keyword_cards,
    merge_parts,
    safe_thumbnail,
    thumbnail_url,
)
from components.display.uploads import sniff


def m(fid, score, rank=1):
    return Match(
        rank=rank,
        score=score,
        faiss_id=fid,
        item_id=f"item-{fid}",
        title=f"T{fid}",
        thumbnail=f"thumbnails/{fid}.jpg",
    )


def card_of(fid, score):
    return card(m(fid, score), 42)


def answer(part, *matches):
    return MatchesMessage(
        query_id="clip",
        capture_time=1.0,
        index_version=42,
        model_fingerprint="f",
        part=part,
        parts=2,
        source="upload",
        matches=[replace(x, rank=r) for r, x in enumerate(matches, 1)],
    )


def test_merge_parts_keeps_each_items_best_score_and_reranks():
    parts = [answer(1, m(1, 0.5), m(2, 0.4)), answer(2, m(2, 0.9), m(3, 0.3))]
    merged = merge_parts(parts)
    assert [(x.faiss_id, x.score, x.rank) for x in merged] == [(2, 0.9, 1), (1, 0.5, 2), (3, 0.3, 3)]


def test_hard_filter_keeps_only_keyword_matches_soft_ranks_them_first():
    matches = [card_of(1, 0.9), card_of(2, 0.8), card_of(3, 0.7), card_of(4, 0.6)]
    hard = apply_keywords(matches, {"item-2", "item-4"}, "hard")
    assert [(x["faiss_id"], x["rank"]) for x in hard] == [(2, 1), (4, 2)]
    soft = apply_keywords(matches, {"item-2", "item-4"}, "soft")
    assert [x["faiss_id"] for x in soft] == [2, 4, 1, 3] and [x["keyword_match"] for x in soft] == [
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        apply_keywords(matches, set(), "sideways")


def test_card_has_a_thumbnail_url_and_a_bounded_similarity_bar():
    shown = card(m(7, 0.873), 42)
    assert shown["similarity_percent"] == 87 and shown["thumbnail_url"] == "/catalog/42/thumbnails/7.jpg"
    assert (
        card(m(7, -0.2), 42)["similarity_percent"] == 0 and card(m(7, 1.2), 42)["similarity_percent"] == 100
    )
    assert thumbnail_url("thumbnails/../manifest.json", 42) == "" and thumbnail_url("/etc/passwd", 42) == ""
    assert thumbnail_url("thumbnails/7.jpg", None) == ""


def test_a_card_lists_the_products_folded_into_it_by_title_or_id():
    folded = [Variant(8, "item-8", title="Red dress, size M"), Variant(9, "item-9")]
    assert card(replace(m(7, 0.9), variants=folded), 42)["also"] == ["Red dress, size M", "item-9"]
    assert card(m(7, 0.9), 42)["also"] == []


def test_keyword_cards_have_no_similarity_and_never_show_bundle_only_columns():
    items = {
        3: {
            "item_id": "hat-003",
            "title": "Grey hat",
            "category": "hat",
            "price": "",
            "location": "Aisle 3",
            "url": "",
            "thumbnail": "thumbnails/3.jpg",
            "image": "img/hat-003.jpg",
            "extra": {"colour": "grey"},
        }
    }
    [shown] = keyword_cards([9, 3], items, 42)
    assert (shown["rank"], shown["faiss_id"], shown["score"], shown["similarity_percent"]) == (
        1,
        3,
        None,
        None,
    )
    assert shown["keyword_match"] is True and shown["thumbnail_url"] == "/catalog/42/thumbnails/3.jpg"
    assert not {"image", "extra", "thumbnail"} & set(shown) and not {"image", "extra", "thumbnail"} & set(
        card_of(3, 0.5)
    )


def test_query_thumbnails_must_be_plain_base64():
    assert safe_thumbnail("QUJD") == "QUJD"
    assert (
        safe_thumbnail('x" onerror="alert(1)') == ""
        and safe_thumbnail(None) == ""
        and safe_thumbnail("A" * 300_000) == ""
    )


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


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypmp42", "mp4"),
        (b"%PDF-1.7", None),
        (b"hello", None),
    ],
)
def test_sniff_reads_the_type_from_the_content(head, kind):
    assert sniff(head) == kind
