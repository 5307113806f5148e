"""Pure functions over match results: cards for the pages, merged clip parts, keyword filters.

A card is what a page shows for one item: the Match's fields plus a similarity bar and
the thumbnail's URL on the display; a keyword-only result has no score.
"""

from __future__ import annotations

import re
from dataclasses import replace

from components.common.messages import ITEM_FIELDS, Match, MatchesMessage

FILTER_MODES = ("hard", "soft")  # hard: only keyword matches; soft: keyword matches first
MAX_THUMBNAIL_CHARS = 200_000
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
SHOWN_FIELDS = tuple(name for name in ITEM_FIELDS if name != "thumbnail")  # the thumbnail becomes a URL


def thumbnail_url(thumbnail: str, index_version) -> str:
    """Bundle-relative `thumbnails/12.jpg` of index `index_version` -> the display's URL for it
    ('' when there is none). The version is in the URL: another bundle's 12.jpg is another item."""
    prefix = "thumbnails/"
    if (
        not thumbnail
        or not thumbnail.startswith(prefix)
        or "/" in thumbnail[len(prefix) :]
        or not isinstance(index_version, int)
    ):
        return ""
    return f"/catalog/{index_version}/{thumbnail}"


def card(match: Match, index_version) -> dict:
    """What a page shows for one matched item (similarity as a 0-100 bar)."""
    item = {name: getattr(match, name) for name in ITEM_FIELDS}
    shown = _card(match.rank, match.score, match.faiss_id, item, index_version)
    # near-identical products folded into this one by local_search (other sizes, colours)
    shown["also"] = [v.title or v.item_id for v in match.variants]
    return shown


def keyword_cards(ids: list[int], items: dict[int, dict], index_version) -> list[dict]:
    """A keyword search alone: catalog items (ItemStore rows) in keyword-rank order, without a similarity."""
    return [
        _card(rank, None, fid, items[fid], index_version, keyword_match=True)
        for rank, fid in enumerate((i for i in ids if i in items), start=1)
    ]


def _card(
    rank: int,
    score: float | None,
    faiss_id: int,
    item: dict,
    index_version,
    keyword_match: bool | None = None,
) -> dict:
    bar = None if score is None else round(100 * min(1.0, max(0.0, float(score))))
    return {
        "rank": rank,
        "score": score,
        "faiss_id": faiss_id,
        **{name: item.get(name) or "" for name in SHOWN_FIELDS},
        "similarity_percent": bar,
        "thumbnail_url": thumbnail_url(str(item.get("thumbnail") or ""), index_version),
        "keyword_match": keyword_match,
        "also": [],
    }


def merge_parts(answers: list[MatchesMessage]) -> list[Match]:
    """The matches of every part of a clip query, one per item with its best score, re-ranked."""
    best: dict[str, Match] = {}
    for answer in answers:
        for match in answer.matches:
            if match.item_id not in best or match.score > best[match.item_id].score:
                best[match.item_id] = match
    merged = sorted(best.values(), key=lambda m: -m.score)
    return [replace(match, rank=rank) for rank, match in enumerate(merged, start=1)]


def apply_keywords(cards: list[dict], keyword_items: set[str], mode: str) -> list[dict]:
    """Hard: keep the cards whose item (item_id) matched the keywords. Soft: those first, then
    the rest, each group in its visual order. Every card is marked with `keyword_match`."""
    if mode not in FILTER_MODES:
        raise ValueError(f"filter mode {mode!r}, expected one of {', '.join(FILTER_MODES)}")
    marked = [{**c, "keyword_match": c["item_id"] in keyword_items} for c in cards]
    if mode == "hard":
        kept = [c for c in marked if c["keyword_match"]]
    else:
        kept = sorted(marked, key=lambda c: not c["keyword_match"])  # stable: visual order kept inside
    return [{**c, "rank": rank} for rank, c in enumerate(kept, start=1)]


def safe_thumbnail(value) -> str:
    """A query thumbnail if it is plain base64 of a sane size (pages put it in a data: URL)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_THUMBNAIL_CHARS
        or not _BASE64.match(value)
    ):
        return ""
    return value
