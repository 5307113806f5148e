"""The staff page's search: an uploaded photo or clip, keywords, label filters, or a mix.

With a photo or clip, labels are always a hard filter and keywords are one in mode "hard":
both travel in the query, and local_search searches only the products that pass them, so
the best of those are found however far down the whole catalog's ranking they are. In mode
"soft" the keyword matches among the visual results come first. Without a photo, keywords
list the products by relevance and labels narrow that list (or the catalog).
"""

from __future__ import annotations

from pathlib import Path

from components.common.catalog_filter import KeywordError, LabelError
from components.common.messages import QueryMessage, new_id
from components.display.catalog import Catalog, CatalogUnavailable
from components.display.results import (
    FILTER_MODES,
    apply_keywords,
    card,
    keyword_cards,
    merge_parts,
    safe_thumbnail,
)
from components.display.settings import DisplaySettings
from components.display.upload_search import QueryNotSent, SearchBusy, UploadSearches
from components.display.uploads import UploadError, Uploads


class StaffSearch:
    def __init__(
        self, settings: DisplaySettings, catalog: Catalog, searches: UploadSearches, upload_dir: Path
    ):
        self.settings = settings
        self.catalog = catalog
        self.searches = searches
        self.uploads = Uploads(upload_dir)

    @property
    def upload_dir(self) -> Path:
        return self.uploads.directory

    @property
    def max_bytes(self) -> int:
        return int(self.settings.max_upload_mb * 2**20)

    def run(self, data: bytes | None, keywords: str | None, mode: str = "hard", labels: str = "") -> dict:
        """`data`: the uploaded file (None: keywords and labels only). Raises UploadError with an
        HTTP status."""
        keywords, labels = (keywords or "").strip(), (labels or "").strip()
        if mode not in FILTER_MODES:
            raise UploadError(400, f"filter mode {mode!r} is not one of {', '.join(FILTER_MODES)}")
        if data is None and not keywords and not labels:
            raise UploadError(
                400, "type keywords or a label filter, or choose a photo or clip to search with"
            )
        # checked before an upload is sent anywhere; a plain photo search needs no catalog, so it is
        # answered even before the display has opened the bundle local_search serves
        passing = self._filter(keywords, labels) if keywords or labels else set()
        if data is None:
            return self._catalog_only(keywords, labels, passing)
        return self._visual(data, keywords, labels, mode)

    def _filter(self, keywords: str, labels: str) -> set[int]:
        """faiss ids of the pictures of every product passing both filters (UploadError 400 if
        one cannot be applied)."""
        try:
            return set(self.catalog.require().filter_ids(keywords, labels).tolist())
        except (KeywordError, LabelError) as exc:  # no words, over the caps, a bad expression
            raise UploadError(400, str(exc)) from None
        except CatalogUnavailable as exc:
            raise UploadError(503, str(exc)) from None

    def _catalog_only(self, keywords: str, labels: str, passing: set[int]) -> dict:
        store = self.catalog.require()
        if keywords:
            ids = [i for i in store.keyword_search(keywords, limit=len(store)) if i in passing]
        else:
            first = {}
            for faiss_id in sorted(passing):  # one card per product, at its first picture
                first.setdefault(store.items([faiss_id])[faiss_id]["item_id"], faiss_id)
            ids = list(first.values())
        ids = ids[: self.settings.keyword_limit]
        cards = keyword_cards(ids, store.items(ids), store.version)
        query = {"kind": "keywords", "keywords": keywords, "labels": labels, "mode": ""}
        return _result(query, cards, index_version=store.version)

    def _visual(self, data: bytes, keywords: str, labels: str, mode: str) -> dict:
        hard_keywords = keywords if mode == "hard" else ""
        query_id = new_id()
        saved = self.uploads.save(
            data,
            query_id,
            max_bytes=self.max_bytes,
            max_clip_s=self.settings.max_clip_s,
            keep=self.settings.keep_uploads,
        )
        try:
            outcome = self.searches.search(
                QueryMessage(
                    query_id=query_id,
                    image_path=str(saved.path.resolve()),
                    kind=saved.kind,
                    keywords=hard_keywords,
                    labels=labels,
                )
            )
        except (SearchBusy, QueryNotSent) as exc:
            raise UploadError(503, str(exc)) from None
        finally:
            self.uploads.release(saved.path, keep=self.settings.keep_uploads)
        if not outcome.answers:
            raise UploadError(
                504,
                f"no answer within {self.searches.timeout_s:g} s: the featurizer or "
                f"local_search is not running or is overloaded (see the kiosk's warnings)",
            )
        first = outcome.answers[0]
        refused = next((a.filter_error for a in outcome.answers if a.filter_error), "")
        if refused:
            raise UploadError(400, refused)
        cards = [card(match, first.index_version) for match in merge_parts(outcome.answers)]
        if keywords:
            cards = apply_keywords(cards, self._keyword_items(keywords), mode)
        query = {
            "kind": saved.kind,
            "query_id": query_id,
            "keywords": keywords,
            "labels": labels,
            "mode": mode if keywords else "",
            "media": saved.media,
            "width": saved.width,
            "height": saved.height,
            "duration_s": saved.duration_s,
            "upload_url": f"/uploads/{query_id}" if saved.kind == "image" else "",
            "frames": _frames(outcome.answers) if saved.kind == "video" else [],
            "clip_frames": max((a.clip_frames for a in outcome.answers), default=0),
        }
        note = ""
        if outcome.timed_out:
            note = (
                f"only {len(outcome.answers)} of {outcome.parts} frames were answered within "
                f"{self.searches.timeout_s:g} s; results are from those"
            )
        return _result(
            query,
            cards,
            parts=outcome.parts,
            answered=len(outcome.answers),
            note=note,
            index_version=first.index_version,
            waited_s=outcome.waited_s,
        )

    def _keyword_items(self, keywords: str) -> set[str]:
        store = self.catalog.require()
        ids = store.keyword_search(keywords, limit=len(store))
        return {item["item_id"] for item in store.items(ids).values()}


def _frames(answers) -> list[dict]:
    """The clip frames searched (those showing an item), each with its time and whether it
    found a match above min_score (only those are merged into the results)."""
    return [
        {"thumbnail": safe_thumbnail(a.thumbnail), "source_time": a.source_time, "matched": not a.no_match}
        for a in answers[:12]
    ]


def _result(
    query: dict,
    cards: list[dict],
    *,
    parts: int = 0,
    answered: int = 0,
    note: str = "",
    index_version=None,
    waited_s: float = 0.0,
) -> dict:
    return {
        "query": query,
        "matches": cards,
        "no_match": not cards,
        "parts": parts,
        "parts_answered": answered,
        "note": note,
        "index_version": index_version,
        "waited_s": waited_s,
    }
