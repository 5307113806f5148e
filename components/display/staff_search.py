"""The staff page's search: an uploaded photo or clip, keywords, or both (keywords as a filter)."""

from __future__ import annotations

from pathlib import Path

from components.common.items import KeywordError
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

    def run(self, data: bytes | None, keywords: str | None, mode: str = "hard") -> dict:
        """`data`: the uploaded file (None: keywords only). Raises UploadError with an HTTP status."""
        keywords = (keywords or "").strip()
        if mode not in FILTER_MODES:
            raise UploadError(400, f"filter mode {mode!r} is not one of {', '.join(FILTER_MODES)}")
        if data is None and not keywords:
            raise UploadError(400, "type keywords or choose a photo or clip to search with")
        keyword_ids = self._keyword_ids(keywords) if keywords else None
        if data is None:
            return self._keywords_only(keywords, keyword_ids)
        return self._visual(data, keywords, keyword_ids, mode)

    def _keyword_ids(self, keywords: str) -> list[int]:
        try:
            return self.catalog.keyword_ids(keywords)
        except KeywordError as exc:  # no words, or over the caps (MAX_KEYWORDS, MAX_KEYWORD_BYTES)
            raise UploadError(400, str(exc)) from None
        except CatalogUnavailable as exc:
            raise UploadError(503, str(exc)) from None

    def _keywords_only(self, keywords: str, ids: list[int]) -> dict:
        ids = ids[: self.settings.keyword_limit]
        version = self.catalog.require().version
        cards = keyword_cards(ids, self.catalog.items(ids), version)
        return _result({"kind": "keywords", "keywords": keywords, "mode": ""}, cards, index_version=version)

    def _visual(self, data: bytes, keywords: str, keyword_ids: list[int] | None, mode: str) -> dict:
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
                QueryMessage(query_id=query_id, image_path=str(saved.path.resolve()), kind=saved.kind)
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
        cards = [card(match, first.index_version) for match in merge_parts(outcome.answers)]
        if keyword_ids is not None:
            cards = apply_keywords(cards, set(keyword_ids), mode)
        query = {
            "kind": saved.kind,
            "query_id": query_id,
            "keywords": keywords,
            "mode": mode if keywords else "",
            "media": saved.media,
            "width": saved.width,
            "height": saved.height,
            "duration_s": saved.duration_s,
            "upload_url": f"/uploads/{query_id}" if saved.kind == "image" else "",
            "frames": [t for t in (safe_thumbnail(a.thumbnail) for a in outcome.answers) if t][:12]
            if saved.kind == "video"
            else [],
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
