"""The display's Flask app, built by one factory used the same way in tests and on the device.

Pages and their JSON twins:
    /                 kiosk page (live via /events)      /api/state
    /search           staff search (upload, keywords)     /api/search
    /healthz          health (JSON)
    /metrics          Prometheus text exposition (metrics.py)
Assets are served from this app only (the kiosk is offline); a Content-Security-Policy
keeps the pages from loading anything from elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flask import Flask, Response, abort, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from components.display.catalog import Catalog
from components.display.events import EventHub, TooManyClients, format_event
from components.display.kiosk_state import KioskState
from components.display.metrics import CONTENT_TYPE, DisplayMetrics
from components.display.request_guard import host_problem, origin_problem
from components.display.settings import COMPONENT, DisplaySettings
from components.display.staff_search import StaffSearch
from components.display.upload_search import UploadSearches
from components.display.uploads import ACCEPTED, UploadError, find_upload

log = logging.getLogger("display")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'"
)
FORM_OVERHEAD = 64 * 1024


@dataclass
class DisplayApp:
    """The display's parts, wired: what the IPC side feeds (state, searches) and the app."""

    app: Flask
    state: KioskState
    search: StaffSearch
    metrics: DisplayMetrics

    @property
    def searches(self) -> UploadSearches:
        return self.search.searches


def build_display_app(
    settings: DisplaySettings,
    publish: Callable[[str, dict], None],
    clock: Callable[[], float] = time.monotonic,
) -> DisplayApp:
    """`publish(topic, message)` sends a query over IPC (raises if the nucleus does not take it)."""
    catalog = Catalog(settings.bundle_dir)
    state = KioskState(settings, catalog, EventHub(settings.max_event_clients), clock=clock)
    upload_dir = Path(settings.work_dir or ".").resolve() / "uploads"
    search = StaffSearch(settings, catalog, UploadSearches(publish, settings.upload_timeout_s), upload_dir)
    metrics = DisplayMetrics()
    return DisplayApp(create_app(state, search, settings, metrics), state, search, metrics)


def create_app(
    state: KioskState, search: StaffSearch, settings: DisplaySettings, metrics: DisplayMetrics
) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = search.max_bytes + FORM_OVERHEAD
    app.json.sort_keys = False

    @app.before_request
    def guard():  # DNS rebinding and cross-site requests: see request_guard.py
        problem = host_problem(request.host, search.settings.allowed_hosts)
        if problem:
            return _error(400, problem)
        problem = origin_problem(
            request.method,
            request.headers.get("Origin"),
            request.headers.get("Sec-Fetch-Site"),
            request.scheme,
            request.host,
        )
        if problem:
            return _error(403, problem)
        return None

    @app.get("/")
    def kiosk():
        return render_template("kiosk.html", snapshot=state.snapshot())

    @app.get("/api/state")
    def api_state():
        return jsonify(state.snapshot())

    @app.get("/events")
    def events():
        try:
            client = state.hub.connect()
        except TooManyClients as exc:
            return _json_error(503, str(exc))
        first = format_event("state", state.snapshot())
        gone = request.environ.get("waitress.client_disconnected")  # None under other servers
        return Response(
            state.hub.stream(client, first, gone),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/healthz")
    def healthz():
        snapshot = state.snapshot()
        return jsonify(
            {
                "ok": True,
                "component": COMPONENT,
                "index_version": snapshot["index_version"],
                "warnings": snapshot["warnings"],
                "live_pages": state.hub.client_count,
                "pending_searches": search.searches.pending,
            }
        )

    @app.get("/metrics")
    def prometheus_metrics():
        text = metrics.render(state.snapshot(), state.hub.client_count)
        return Response(text, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    @app.route("/search", methods=["GET", "POST"])
    def search_page():
        health = state.snapshot()  # component problems are for staff, not on the kiosk page
        if request.method == "GET" and "q" not in request.args and "labels" not in request.args:
            return render_template(
                "search.html",
                result=None,
                form={"q": "", "mode": "hard", "labels": ""},
                accepted=ACCEPTED,
                settings=search.settings,
                health=health,
            )
        form, result = _run_search(search)
        # live settings (max_clip_s) as they are now
        return render_template(
            "search.html",
            result=result,
            form=form,
            accepted=ACCEPTED,
            settings=search.settings,
            health=health,
        )

    @app.route("/api/search", methods=["GET", "POST"])
    def api_search():
        return jsonify(_run_search(search)[1])

    @app.get("/catalog/<int:index_version>/thumbnails/<name>")
    def catalog_thumbnail(index_version: int, name: str):
        path = state.catalog.thumbnail_file(index_version, name)
        if path is None:
            abort(404, description=f"no thumbnail {name!r} in catalog version {index_version}")
        return send_file(path, max_age=86400)  # the version in the URL makes it immutable

    @app.get("/uploads/<query_id>")
    def uploaded(query_id: str):
        path = find_upload(search.upload_dir, query_id)
        if path is None or path.suffix == ".mp4":
            abort(404, description="no such uploaded image (old uploads are deleted)")
        try:
            return send_file(path, max_age=60)
        except FileNotFoundError:  # pruned by another request since it was found
            abort(404, description="no such uploaded image (old uploads are deleted)")

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.errorhandler(UploadError)
    def upload_error(exc: UploadError):
        return _error(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            return _error(413, f"the upload is larger than the {settings.max_upload_mb:g} MiB limit")
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, f"internal error ({type(exc).__name__}); the display's log has the details")

    return app


def _run_search(search: StaffSearch) -> tuple[dict, dict]:
    values = request.form if request.method == "POST" else request.args
    form = {
        "q": values.get("q", ""),
        "mode": values.get("mode", "hard") or "hard",
        "labels": values.get("labels", ""),
    }
    upload = request.files.get("file") if request.method == "POST" else None
    data = None
    if upload is not None and upload.filename:
        data = upload.stream.read(search.max_bytes + 1)
    return form, search.run(data, form["q"], form["mode"], form["labels"])


def _wants_json() -> bool:
    return (
        request.path.startswith(("/api/", "/events", "/healthz", "/metrics"))
        or request.accept_mimetypes.best == "application/json"
    )


def _json_error(status: int, message: str):
    return jsonify({"error": message, "status": status}), status


def _error(status: int, message: str):
    if _wants_json():
        return _json_error(status, message)
    return render_template("error.html", status=status, message=message), status
