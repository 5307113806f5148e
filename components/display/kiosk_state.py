"""What the kiosk shows, built from IPC messages: the current query, capped history, component health.

Every change is pushed to the pages as one full snapshot (an SSE `state` event). A ticker
calls `refresh()` so time-driven changes (idle screen, a component gone silent) are pushed
too; the page itself never polls.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timezone

from components.common.messages import MatchesMessage, MessageError, StatusMessage
from components.display.catalog import Catalog
from components.display.events import EventHub
from components.display.results import card, safe_thumbnail
from components.display.settings import COMPONENT, DisplaySettings

BAD_STATES = {"error", "errored", "broken", "stopping", "stopped", "camera_lost"}
# What shoppers read while a component is down; the reasons are for staff (`warnings`, staff page).
UNAVAILABLE = "Camera search is not available right now. Please ask a member of staff for help."


class KioskState:
    def __init__(self, settings: DisplaySettings, catalog: Catalog, hub: EventHub, clock=time.monotonic):
        self.settings = settings
        self.catalog = catalog
        self.hub = hub
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._current: dict | None = None
        self._current_at = 0.0
        self._history: deque[dict] = deque(maxlen=settings.history_size)
        self._watched = settings.watched()
        self._statuses: dict[str, tuple[StatusMessage, float]] = {}
        self._signature = None

    # --- from IPC ------------------------------------------------------------
    def handle_match(self, message: MatchesMessage) -> None:
        """A camera matches message (visualsearch/matches) becomes the current query."""
        entry = {
            "query_id": message.query_id,
            "track_id": message.track_id,
            "capture_time": message.capture_time,
            "received": time.time(),
            "index_version": message.index_version,
            "no_match": message.no_match,
            "min_score": message.min_score,
            "timings_ms": message.timings_ms,
            "thumbnail": safe_thumbnail(message.thumbnail),
            "matches": [card(m, message.index_version) for m in message.matches],
        }
        with self._lock:
            previous = self._current
            if previous is not None and not (entry["track_id"] and entry["track_id"] == previous["track_id"]):
                self._history.appendleft(_history_entry(previous))  # same held item: replaced, not repeated
            self._current, self._current_at = entry, self._clock()
            self._publish_locked()

    def handle_status(self, message: StatusMessage) -> None:
        """A status message (visualsearch/status/<component>)."""
        name = message.component
        if name not in self._watched:  # only watched names are kept, so the table stays bounded
            raise MessageError(f"status of {name!r}, which the display does not watch")
        if name == "local_search" and message.bundle_dir:
            self.catalog.follow(message.bundle_dir, message.index_version)
        with self._lock:
            self._statuses[name] = (message, self._clock())
            self._publish_locked()

    def refresh(self) -> None:
        """Push a snapshot if time alone changed what the page shows (idle, a component down)."""
        with self._lock:
            if self._signature_locked() != self._signature:
                self._publish_locked()

    # --- for the pages -------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict:
        now = self._clock()
        components = [self._health(name, now) for name in self._watched]
        warnings = [_warning(c) for c in components if not c["healthy"]]
        local = self._statuses.get("local_search", (None, 0.0))[0]
        catalog = self.catalog.summary()
        announced = local is not None and local.index_version is not None
        index_version = local.index_version if announced else catalog["index_version"]
        created_at = catalog["created_at"] if catalog["index_version"] == index_version else None
        mode = self._mode(now)
        history = list(self._history)
        if mode == "idle" and self._current is not None:  # the last query is history once idle
            history = [_history_entry(self._current), *history][: self.settings.history_size]
        return {
            "mode": mode,
            "current": self._current,
            "history": history,
            "components": components,
            "warnings": warnings,
            "notice": UNAVAILABLE if warnings else "",
            "index_version": index_version,
            "catalog_date": catalog_date(index_version, created_at),
            "items": local.items if announced else catalog["items"],
            "online": self._online(),
            "currency": self.settings.currency,
            "locale": self.settings.locale,
            "idle_after_s": self.settings.idle_after_s,
            "time": time.time(),
        }

    def _mode(self, now: float) -> str:
        if self._current is None or now - self._current_at > self.settings.idle_after_s:
            return "idle"
        return "no_match" if self._current["no_match"] else "match"

    def _health(self, name: str, now: float) -> dict:
        timeout = self.settings.status_timeout_s
        if name not in self._statuses:
            waited = now - self._started
            problem = f"no status since the display started {waited:.0f} s ago" if waited > timeout else ""
            return {
                "name": name,
                "state": "unknown",
                "detail": "",
                "age_s": None,
                "healthy": not problem,
                "problem": problem,
            }
        message, at = self._statuses[name]
        age = now - at
        state = message.state
        problem = ""
        if age > timeout:
            problem = f"no status for {age:.0f} s"
        elif state.lower() in BAD_STATES:
            problem = f"{state}: {message.detail or 'no detail'}"
        return {
            "name": name,
            "state": state,
            "detail": message.detail,
            "age_s": round(age, 1),
            "healthy": not problem,
            "problem": problem,
        }

    def _online(self):
        """Cloud connectivity as the components report it (`online` in a status), None if none does."""
        reports = [(at, m.online) for m, at in self._statuses.values() if m.online is not None]
        return max(reports)[1] if reports else None

    def _signature_locked(self):
        snapshot = self._snapshot_locked()
        return snapshot["mode"], tuple(snapshot["warnings"]), snapshot["online"]

    def _publish_locked(self) -> None:
        snapshot = self._snapshot_locked()
        self._signature = snapshot["mode"], tuple(snapshot["warnings"]), snapshot["online"]
        self.hub.publish("state", snapshot)


def catalog_date(index_version, created_at: str | None = None) -> str | None:
    """When the catalog was built, as an ISO 8601 UTC time for the page to show as a date: the
    manifest's `created_at`, else the version itself when it is the default YYYYMMDDHHMMSS."""
    if created_at:
        try:
            return datetime.fromisoformat(created_at).astimezone(timezone.utc).isoformat()
        except (TypeError, ValueError):
            pass
    if len(str(index_version)) != 14:
        return None
    try:
        built = datetime.strptime(str(index_version), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return built.replace(tzinfo=timezone.utc).isoformat()


def _history_entry(entry: dict) -> dict:
    top = entry["matches"][0] if entry["matches"] else None
    return {
        "query_id": entry["query_id"],
        "received": entry["received"],
        "thumbnail": entry["thumbnail"],
        "no_match": entry["no_match"],
        "top_title": top["title"] if top else "",
        "top_thumbnail_url": top["thumbnail_url"] if top else "",
        "top_score": top["score"] if top else None,
    }


def _warning(health: dict) -> str:
    if health["name"] == COMPONENT:  # the display's own status did not come back to it over IPC
        return (
            f"the display does not hear its own status over IPC ({health['problem']}): is the nucleus down?"
        )
    return f"{health['name']} is down: {health['problem']}"
