"""Pure functions over match results: cards for the pages, merged clip parts, keyword filters."""
from __future__ import annotations

import re

FILTER_MODES = ("hard", "soft")   # hard: only keyword matches; soft: keyword matches first
MAX_THUMBNAIL_CHARS = 200_000
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
CARD_KEYS = ("rank", "score", "faiss_id", "item_id", "title", "category", "price", "location", "url")


def thumbnail_url(thumbnail: str, index_version) -> str:
    """Bundle-relative `thumbnails/12.jpg` of index `index_version` -> the display's URL for it
    ('' when there is none). The version is in the URL: another bundle's 12.jpg is another item."""
    prefix = "thumbnails/"
    if not thumbnail or not thumbnail.startswith(prefix) or "/" in thumbnail[len(prefix):] \
            or not isinstance(index_version, int):
        return ""
    return f"/catalog/{index_version}/{thumbnail}"


def card(match: dict, index_version) -> dict:
    """What a page shows for one matched item (similarity as a 0-100 bar, None without one)."""
    score = match.get("score")
    bar = None if score is None else round(100 * min(1.0, max(0.0, float(score))))
    return {**{key: match.get(key, "") for key in CARD_KEYS}, "score": score, "similarity_percent": bar,
            "thumbnail_url": thumbnail_url(str(match.get("thumbnail", "")), index_version),
            "keyword_match": match.get("keyword_match")}


def merge_parts(messages: list[dict]) -> list[dict]:
    """The matches of every part of a clip query, one per item with its best score, re-ranked."""
    best: dict[str, dict] = {}
    for message in messages:
        for match in message.get("matches", []):
            key = str(match.get("item_id") or match.get("faiss_id"))
            if key not in best or float(match["score"]) > float(best[key]["score"]):
                best[key] = {**match, "best_part": message.get("part", 1)}
    merged = sorted(best.values(), key=lambda m: -float(m["score"]))
    return [{**match, "rank": rank} for rank, match in enumerate(merged, start=1)]


def apply_keywords(matches: list[dict], keyword_ids: set[int], mode: str) -> list[dict]:
    """Hard: keep the matches whose item matched the keywords. Soft: those first, then the rest,
    each group in its visual order. Every match is marked with `keyword_match`."""
    if mode not in FILTER_MODES:
        raise ValueError(f"filter mode {mode!r}, expected one of {', '.join(FILTER_MODES)}")
    marked = [{**m, "keyword_match": int(m.get("faiss_id", -1)) in keyword_ids} for m in matches]
    if mode == "hard":
        kept = [m for m in marked if m["keyword_match"]]
    else:
        kept = sorted(marked, key=lambda m: not m["keyword_match"])  # stable: visual order kept inside
    return [{**match, "rank": rank} for rank, match in enumerate(kept, start=1)]


def keyword_results(ids: list[int], items: dict[int, dict]) -> list[dict]:
    """A keyword search alone: catalog items in keyword-rank order, without a similarity."""
    return [{"rank": rank, "score": None, "faiss_id": fid, "keyword_match": True,
             **{k: items[fid].get(k, "") for k in ("item_id", "title", "category", "price", "location",
                                                   "url", "thumbnail")}}
            for rank, fid in enumerate((i for i in ids if i in items), start=1)]


def safe_thumbnail(value) -> str:
    """A query thumbnail if it is plain base64 of a sane size (pages put it in a data: URL)."""
    if not isinstance(value, str) or not value or len(value) > MAX_THUMBNAIL_CHARS or not _BASE64.match(value):
        return ""
    return value
