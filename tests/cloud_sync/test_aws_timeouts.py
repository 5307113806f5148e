"""An S3 (or IoT) endpoint that accepts connections and never answers fails the command in a
bounded time, with one line (issue 14, item 15: publish-index took 181 s)."""

from __future__ import annotations

import socket
import threading

import pytest
from click.testing import CliRunner

import cloud_sync.aws as aws
from cloud_sync.cli.main import main
from tests.support.network import free_port


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; counts them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent(aws_env, monkeypatch):
    server = SilentServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setattr(aws, "READ_TIMEOUT_S", 1)  # the behaviour, not the wait: 1 s instead of 20
    yield server
    server.close()


@pytest.mark.timeout(120)
def test_an_s3_endpoint_that_never_answers_fails_after_a_few_bounded_tries(silent, tmp_path):
    result = CliRunner().invoke(main, ["list-indexes", "--bucket", "b", "--prefix", "p"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"no answer from http://127.0.0.1:{silent.port}" in result.output
    assert f"within {aws.READ_TIMEOUT_S} s, {aws.ATTEMPTS} tries" in result.output
    assert len(silent.accepted) == aws.ATTEMPTS


def test_every_cloud_client_has_the_timeouts(aws_env):
    from cloud_sync.cli.index_commands import _s3
    from cloud_sync.publishing.index_versions import iot_data_client

    for client in (_s3(), iot_data_client("example.iot.us-east-1.amazonaws.com"), aws.client("s3")):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (aws.CONNECT_TIMEOUT_S, aws.READ_TIMEOUT_S)
        assert config.retries["total_max_attempts"] == aws.ATTEMPTS


# ---- catalog images by URL: a stream that trickles or never ends ------------------------------
class TricklingServer:
    """An HTTP server whose one answer is a header, then `chunk` every `every_s`, for ever."""

    def __init__(self, chunk: bytes, every_s: float):
        import http.server

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                try:
                    while not outer.stop.wait(every_s):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.stop = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/photo.jpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.timeout(60)
def test_a_catalog_image_url_that_trickles_for_ever_is_cut_at_the_deadline(monkeypatch, tmp_path):
    import cloud_sync.indexing.catalog as catalog
    from components.common.errors import ImageError

    monkeypatch.setattr(catalog, "URL_DEADLINE_S", 1)
    server = TricklingServer(b"\xff", every_s=0.05)  # never silent long enough for a read timeout
    try:
        with pytest.raises(ImageError, match=r"photo.jpg: the download took more than 1 s; not read"):
            catalog.read_image_bytes(tmp_path, server.url)
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_a_catalog_image_url_that_never_ends_is_cut_at_the_size_limit(monkeypatch, tmp_path):
    import cloud_sync.indexing.catalog as catalog
    from components.common.errors import ImageError

    monkeypatch.setattr(catalog, "MAX_IMAGE_BYTES", 64 * 1024)
    server = TricklingServer(b"\xff" * 65536, every_s=0.001)
    try:
        with pytest.raises(ImageError, match=r"photo.jpg: more than 0.0625 MiB; not read as a catalog image"):
            catalog.read_image_bytes(tmp_path, server.url)
    finally:
        server.close()
