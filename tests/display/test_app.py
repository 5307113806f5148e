"""The display app in-process (Flask test client): JSON twins, live events, history cap, bad input."""

import io
import json
import shutil

import cv2
import pytest

from components.common.messages import MessageError, QueryMessage, StatusMessage
from tests.conftest import demo_image
from tests.display.app_helpers import Clock, make_display, matches_for, status, write_clip
from tests.support.images import big_clip, png_bomb


def canned_answers(bundle):
    """Plays featurizer + local_search: a photo gets items 0-4; a clip two parts that overlap."""

    def answer(data):
        query = QueryMessage.from_json(data)
        if query.kind == "image":
            return [matches_for(bundle, [0, 1, 2, 3, 4], query_id=query.query_id, source="upload")]
        return [
            matches_for(
                bundle, [20, 21], [0.6, 0.5], query_id=query.query_id, source="upload", part=1, parts=2
            ),
            matches_for(
                bundle, [21, 40], [0.95, 0.4], query_id=query.query_id, source="upload", part=2, parts=2
            ),
        ]

    return answer


@pytest.fixture
def display(tmp_path, demo_bundle):
    return make_display(
        tmp_path,
        demo_bundle,
        canned_answers(demo_bundle),
        clock=Clock(),
        history_size=3,
        idle_after_s=20,
        status_timeout_s=30,
    )


@pytest.fixture
def client(display):
    return display.app.test_client()


def upload(
    client, data: bytes, name="photo.jpg", content_type="image/jpeg", url="/api/search", headers=None, **form
):
    return client.post(
        url,
        data={"file": (io.BytesIO(data), name, content_type), **form},
        content_type="multipart/form-data",
        headers=headers or {},
    )


def test_state_twin_and_kiosk_page_show_a_camera_match(display, client, demo_bundle):
    assert client.get("/api/state").json["mode"] == "idle"
    display.state.handle_match(matches_for(demo_bundle, [5, 6, 7], thumbnail="QUJD"))
    state = client.get("/api/state").json
    assert state["mode"] == "match" and state["current"]["thumbnail"] == "QUJD"
    assert [c["faiss_id"] for c in state["current"]["matches"]] == [5, 6, 7]
    first = state["current"]["matches"][0]
    assert (
        first["thumbnail_url"] == f"/catalog/{demo_bundle.version}/thumbnails/5.jpg"
        and first["title"]
        and first["price"]
    )
    page = client.get("/")
    assert (
        page.status_code == 200
        and b'id="initial-state"' in page.data
        and first["title"].encode() in page.data
    )
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    thumb = client.get(first["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get(f"/catalog/{demo_bundle.version}/thumbnails/..%2Fmanifest.json").status_code == 404
    # another bundle
    assert client.get(f"/catalog/{demo_bundle.version - 1}/thumbnails/5.jpg").status_code == 404


def test_no_match_then_idle_after_the_configured_time(display, client, demo_bundle):
    display.state.handle_match(matches_for(demo_bundle, []))
    assert client.get("/api/state").json["mode"] == "no_match"
    display.state._clock.now += 21
    assert client.get("/api/state").json["mode"] == "idle"


def test_history_is_capped_and_a_held_item_does_not_repeat(display, client, demo_bundle):
    for n in range(3):
        display.state.handle_match(matches_for(demo_bundle, [n], query_id=f"held{n}", track_id="same"))
    assert client.get("/api/state").json["history"] == []
    for n in range(20):
        display.state.handle_match(matches_for(demo_bundle, [n], query_id=f"q{n}", track_id=f"t{n}"))
    history = client.get("/api/state").json["history"]
    assert [h["query_id"] for h in history] == ["q18", "q17", "q16"]


def test_a_component_in_error_or_silent_is_a_warning(display, client):
    display.state.handle_status(status("featurizer", "error", detail="camera 0 not found"))
    display.state.handle_status(status("local_search", online=True))
    state = client.get("/api/state").json
    assert state["warnings"] == ["featurizer is down: error: camera 0 not found"] and state["online"] is True
    display.state.handle_status(status("featurizer"))
    assert client.get("/api/state").json["warnings"] == []
    display.state._clock.now += 31
    assert client.get("/api/state").json["warnings"] == [
        "featurizer is down: no status for 31 s",
        "local_search is down: no status for 31 s",
        "the display does not hear its own status over IPC (no status since the display started 31 s ago): "
        "is the nucleus down?",
    ]
    display.state.handle_status(status("display"))
    assert len(client.get("/api/state").json["warnings"]) == 2


def test_only_watched_components_are_tracked(display, client):
    with pytest.raises(MessageError):
        display.state.handle_status(status("someone_else"))
    with pytest.raises(MessageError):
        display.state.handle_status(StatusMessage.from_json({"schema": "visualsearch.matches/1"}))
    assert [c["name"] for c in client.get("/api/state").json["components"]] == [
        "featurizer",
        "local_search",
        "display",
    ]


def test_the_event_stream_yields_a_state_event_after_a_match(display, client, demo_bundle):
    response = client.get("/events", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = response.response
    assert next(chunks).startswith(b"retry:")
    assert b'"mode":"idle"' in next(chunks)
    display.state.handle_match(matches_for(demo_bundle, [3], query_id="live"))
    event = next(chunks).decode()
    assert event.startswith("event: state\n")
    assert json.loads(event.split("data: ", 1)[1])["current"]["query_id"] == "live"
    response.close()
    assert display.state.hub.client_count == 0


def test_live_connections_are_capped(tmp_path, demo_bundle):
    client = make_display(tmp_path, demo_bundle, max_event_clients=1).app.test_client()
    first = client.get("/events", buffered=False)
    refused = client.get("/events")
    assert refused.status_code == 503 and "limit 1" in refused.json["error"]
    first.close()


def test_healthz(client):
    health = client.get("/healthz").json
    assert health["ok"] is True and health["component"] == "display" and health["live_pages"] == 0


def test_a_photo_upload_publishes_a_query_and_shows_its_matches(display, client, demo_bundle):
    result = upload(client, demo_image("hat", 0).read_bytes(), q="").json
    query = display.queries[0]
    assert (
        query["kind"] == "image"
        and query["image_path"].endswith(".jpg")
        and query["query_id"] == result["query"]["query_id"]
    )
    assert [c["faiss_id"] for c in result["matches"]] == [0, 1, 2, 3, 4]
    assert client.get(result["query"]["upload_url"]).status_code == 200
    page = upload(client, demo_image("hat", 0).read_bytes(), url="/search")
    assert page.status_code == 200 and b'class="card' in page.data


def test_a_clip_upload_merges_its_parts(client, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", [demo_image("hat", 0), demo_image("dress", 0)])
    result = upload(client, clip.read_bytes(), "clip.mp4", "video/mp4").json
    assert result["query"]["kind"] == "video" and result["parts"] == result["parts_answered"] == 2
    assert [(c["faiss_id"], c["score"]) for c in result["matches"]] == [(21, 0.95), (20, 0.6), (40, 0.4)]
    page = upload(client, clip.read_bytes(), "clip.mp4", "video/mp4", url="/search").data.decode()
    assert "2 frames searched; 2 matched and were merged" in page and page.count('class="frame"') == 2


def test_keywords_alone_and_as_hard_or_soft_filter(client, demo_bundle):
    alone = client.get("/api/search?q=hat").json["matches"]
    assert alone and all(c["category"] == "hat" for c in alone) and alone[0]["score"] is None
    assert b"Items matching" in client.get("/search?q=hat").data
    photo = demo_image("hat", 0).read_bytes()
    category = demo_bundle.items([0])[0]["category"]
    hard = upload(client, photo, q=category, mode="hard").json["matches"]
    assert hard and all(c["category"] == category for c in hard) and len(hard) <= 5
    soft = upload(client, photo, q="shoes", mode="soft").json["matches"]
    assert len(soft) == 5


def test_hard_filters_travel_in_the_query_and_label_filters_list_the_catalog(display, client, demo_bundle):
    photo = demo_image("shoes", 0).read_bytes()
    upload(client, photo, q="red dresses", mode="hard", labels="category=dress")
    assert (display.queries[-1]["keywords"], display.queries[-1]["labels"]) == (
        "red dresses",
        "category=dress",
    )
    upload(client, photo, q="red", mode="soft")
    assert (display.queries[-1]["keywords"], display.queries[-1]["labels"]) == (
        "",
        "",
    )  # soft: reordered here
    hats = client.get("/api/search", query_string={"labels": "category=hat AND colour!=grey"}).json
    assert hats["matches"] and {c["category"] for c in hats["matches"]} == {"hat"}
    assert all(c["title"].split()[0] != "Grey" for c in hats["matches"])
    red = client.get("/api/search", query_string={"q": "red", "labels": "category=dress"}).json["matches"]
    assert [c["title"] for c in red] == ["Red dress", "Red dress"]
    assert b"only where" in upload(client, photo, url="/search", labels="category=hat").data


@pytest.mark.parametrize(
    "labels, reason",
    [("color=red", "no product has a column 'color'"), ("category=hat AND", "ends where a key=value")],
)
def test_a_label_filter_that_cannot_be_applied_is_a_400_naming_it(display, client, labels, reason):
    sent = len(display.queries)
    answer = upload(client, demo_image("hat", 0).read_bytes(), labels=labels)
    assert answer.status_code == 400 and reason in answer.json["error"]
    assert len(display.queries) == sent  # refused before anything was sent


def test_pngs_and_webps_are_accepted_by_content_not_by_name(client):
    image = cv2.imread(str(demo_image("shoes", 1)))
    for ext in (".png", ".webp"):
        data = cv2.imencode(ext, image)[1].tobytes()
        response = upload(client, data, name="picture.jpg", content_type="application/octet-stream")
        assert response.status_code == 200, response.json


def test_uploads_on_disk_are_capped(tmp_path, demo_bundle):
    client = make_display(
        tmp_path, demo_bundle, canned_answers(demo_bundle), keep_uploads=2
    ).app.test_client()
    for _ in range(4):
        assert upload(client, demo_image("hat", 0).read_bytes()).status_code == 200
    assert len(list((tmp_path / "uploads").iterdir())) == 2


BAD_UPLOADS = {
    "corrupt image": (
        b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50,
        "photo.jpg",
        "image/jpeg",
        400,
        "not a decodable image",
    ),
    "video without frames": (
        b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500,
        "clip.mp4",
        "video/mp4",
        400,
        "no decodable frames",
    ),
    "text named .jpg": (b"just some text", "photo.jpg", "image/jpeg", 415, "unsupported file type"),
    "pdf": (b"%PDF-1.7\n...", "doc.pdf", "application/pdf", 415, "unsupported file type"),
    "empty file": (b"", "photo.jpg", "image/jpeg", 400, "empty"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_uploads_get_a_readable_4xx_page_and_json_error(client, case):
    data, name, content_type, code, words = BAD_UPLOADS[case]
    as_json = upload(client, data, name, content_type)
    assert as_json.status_code == code and words in as_json.json["error"]
    page = upload(client, data, name, content_type, url="/search")
    assert page.status_code == code and page.mimetype == "text/html"
    assert words.encode() in page.data and b"Traceback" not in page.data


def test_an_oversize_upload_is_413(tmp_path, demo_bundle):
    client = make_display(tmp_path, demo_bundle, max_upload_mb=0.1).app.test_client()
    response = upload(client, b"\xff\xd8\xff" + b"\x00" * 300_000)
    assert response.status_code == 413 and "0.1 MiB" in response.json["error"]
    page = upload(client, b"\xff\xd8\xff" + b"\x00" * 300_000, url="/search")
    assert page.status_code == 413 and b"limit" in page.data


@pytest.mark.parametrize(
    "query, words",
    [
        ("/api/search?q=", "type keywords"),
        ("/api/search?q=%21%21%21", "no words"),
        ("/api/search?q=hat&mode=sideways", "filter mode"),
    ],
)
def test_empty_or_bad_keywords_are_400(client, query, words):
    response = client.get(query)
    assert response.status_code == 400 and words in response.json["error"]
    page = client.get(query.replace("/api/search", "/search"))
    assert page.status_code == 400 and words.encode() in page.data


def test_thousands_of_keywords_are_a_400_naming_the_cap(client):
    """Issue 14, item 5: 5,000 words took 15.7 s and held every other search up."""
    many = "+".join(["hat"] * 2500 + [f"w{n}" for n in range(2500)])
    response = client.get(f"/api/search?q={many}")
    assert response.status_code == 400 and "bytes long; the limit is 512 bytes" in response.json["error"]
    few = "+".join(f"w{n}" for n in range(40))
    response = client.get(f"/api/search?q={few}")
    assert (
        response.status_code == 400 and "40 different words; search with at most 16" in response.json["error"]
    )


def test_no_answer_within_the_timeout_is_a_clear_504(tmp_path, demo_bundle):
    client = make_display(tmp_path, demo_bundle, answers=None, upload_timeout_s=0.5).app.test_client()
    response = upload(client, demo_image("hat", 0).read_bytes())
    assert response.status_code == 504 and "no answer within 0.5 s" in response.json["error"]


def test_unknown_pages_are_404_pages(client):
    assert client.get("/nope").status_code == 404 and b"404" in client.get("/nope").data
    assert client.get("/api/nope").json["status"] == 404


def test_a_query_the_nucleus_does_not_take_is_a_503_not_a_500(tmp_path, demo_bundle):
    def refuse(_):
        raise TimeoutError("nucleus did not answer")

    client = make_display(tmp_path, demo_bundle, answers=refuse).app.test_client()
    response = upload(client, demo_image("hat", 0).read_bytes())
    assert response.status_code == 503 and "could not send the query" in response.json["error"]


def test_time_alone_pushes_the_idle_screen_to_live_pages(display, client, demo_bundle):
    display.state.handle_match(matches_for(demo_bundle, [3]))
    response = client.get("/events", buffered=False)
    chunks = response.response
    next(chunks), next(chunks)
    display.state.refresh()
    [pending] = display.state.hub._clients
    assert pending.empty()  # nothing changed, nothing pushed
    display.state._clock.now += 21
    display.state.refresh()
    assert '"mode":"idle"' in next(chunks).decode()
    response.close()


def test_the_catalog_follows_the_bundle_local_search_announces(tmp_path, demo_bundle):
    display = make_display(tmp_path, demo_bundle, bundle_dir="")
    client = display.app.test_client()
    assert client.get("/api/search?q=hat").status_code == 503
    thumbnail = f"/catalog/{demo_bundle.version}/thumbnails/0.jpg"
    assert client.get(thumbnail).status_code == 404
    display.state.handle_status(
        status("local_search", bundle_dir=str(demo_bundle.path), index_version=demo_bundle.version, items=200)
    )
    assert client.get("/api/search?q=hat").status_code == 200
    assert client.get(thumbnail).status_code == 200
    assert client.get("/api/state").json["index_version"] == demo_bundle.version


def test_after_a_swap_the_previous_versions_pictures_are_still_served(tmp_path, demo_bundle):
    """Matches published just before local_search swapped index keep their pictures."""

    def copy_as(version):
        out = tmp_path / f"bundle-{version}"
        shutil.copytree(demo_bundle.path, out)
        manifest = json.loads((out / "manifest.json").read_text())
        (out / "manifest.json").write_text(json.dumps({**manifest, "index_version": version}))
        return out

    display = make_display(tmp_path, demo_bundle, bundle_dir="")
    client = display.app.test_client()
    for version in (101, 102, 103):
        display.state.handle_status(
            status("local_search", bundle_dir=str(copy_as(version)), index_version=version, items=200)
        )
    assert client.get("/api/state").json["index_version"] == 103
    assert client.get("/catalog/103/thumbnails/0.jpg").status_code == 200
    assert client.get("/catalog/102/thumbnails/0.jpg").status_code == 200
    assert client.get("/catalog/101/thumbnails/0.jpg").status_code == 404


def test_a_decompression_bomb_is_a_413_before_it_is_decoded(client, tmp_path, monkeypatch):
    """Issue 14, item 3: 390 KB of PNG that would decode to 20000x20000 pixels (1.2 GB)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    response = upload(client, png_bomb(20000, 20000), "photo.png", "image/png")
    assert response.status_code == 413
    assert (
        "20000x20000 pixels" in response.json["error"]
        and "the limit is 50 megapixels" in response.json["error"]
    )
    page = upload(client, png_bomb(20000, 20000), "photo.png", "image/png", url="/search")
    assert page.status_code == 413 and b"megapixels" in page.data
    assert not (tmp_path / "uploads").exists() or not list((tmp_path / "uploads").iterdir())


def test_an_8k_clip_is_a_413_and_is_not_kept(client, tmp_path):
    clip = big_clip(tmp_path / "8k.mp4")
    response = upload(client, clip.read_bytes(), "clip.mp4", "video/mp4")
    assert response.status_code == 413 and "7680x4320" in response.json["error"]
    assert not list((tmp_path / "uploads").glob("*.mp4"))


# ---- cross-origin requests and DNS rebinding (issue 14, item 11) -----------------------------
@pytest.mark.parametrize(
    "host", ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080", "192.168.1.20:8080"]
)
def test_the_pages_answer_to_ip_addresses_and_localhost(client, host):
    assert client.get("/api/state", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("method, url", [("get", "/"), ("get", "/api/state"), ("post", "/api/search")])
def test_a_host_name_that_is_not_ours_is_refused_dns_rebinding(client, method, url):
    response = getattr(client, method)(url, headers={"Host": "attacker.example:8080"})
    assert response.status_code == 400 and b"attacker.example" in response.data  # an HTML or JSON error
    assert b"allowed_hosts" in response.data


def test_host_names_can_be_allowed(tmp_path, demo_bundle):
    client = make_display(tmp_path, demo_bundle, allowed_hosts="kiosk.local, Staff-PC").app.test_client()
    assert client.get("/api/state", headers={"Host": "kiosk.local:8080"}).status_code == 200
    assert client.get("/api/state", headers={"Host": "staff-pc"}).status_code == 200
    assert client.get("/api/state", headers={"Host": "kiosk.local.attacker.example"}).status_code == 400


def test_a_cross_origin_post_is_refused(client):
    photo = demo_image("hat", 0).read_bytes()
    refused = upload(client, photo, headers={"Origin": "http://attacker.example"})
    assert refused.status_code == 403 and "cross-origin" in refused.json["error"]
    assert upload(client, photo, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert upload(client, photo, headers={"Origin": "null"}).status_code == 403
    assert upload(client, photo, headers={"Origin": "http://localhost"}).status_code == 200  # the page itself
    assert upload(client, photo).status_code == 200  # no Origin: not a browser, no ambient credentials


def test_the_pages_cannot_be_framed(client):
    response = client.get("/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
