"""Query files are read only from the upload folder, only if regular (issue 14, item 7)."""

from __future__ import annotations

import os
import threading

import pytest

from components.featurizer.query_files import (
    QueryFileRefused,
    confined_path,
    read_query_file,
    resolve_upload_dir,
)


@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "q1.jpg").write_bytes(b"a photo")
    (tmp_path / "secret.txt").write_bytes(b"not for the kiosk")
    return resolve_upload_dir(str(folder))


def test_a_file_in_the_upload_folder_is_read(uploads):
    assert read_query_file(str(uploads / "q1.jpg"), uploads) == b"a photo"
    os.symlink(uploads / "q1.jpg", uploads / "q2.jpg")  # a link that stays inside is fine
    assert read_query_file(str(uploads / "q2.jpg"), uploads) == b"a photo"


@pytest.mark.parametrize("name", ["../secret.txt", "/etc/hostname", "sub/q1.jpg"])
def test_paths_outside_the_upload_folder_are_refused(uploads, name):
    (uploads / "sub").mkdir()
    (uploads / "sub" / "q1.jpg").write_bytes(b"deeper")
    with pytest.raises(QueryFileRefused, match="outside the upload folder"):
        read_query_file(str(uploads / name) if not name.startswith("/") else name, uploads)


def test_a_link_out_of_the_upload_folder_is_refused(uploads):
    os.symlink(uploads.parent / "secret.txt", uploads / "evil.jpg")
    with pytest.raises(QueryFileRefused, match="outside the upload folder"):
        read_query_file(str(uploads / "evil.jpg"), uploads)


def test_a_relative_path_is_refused(uploads, monkeypatch):
    monkeypatch.chdir(uploads)
    with pytest.raises(QueryFileRefused, match="not an absolute path"):
        read_query_file("q1.jpg", uploads)


def test_a_fifo_is_refused_without_blocking(uploads):
    fifo = uploads / "q3.jpg"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_refusal(str(fifo), uploads)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the FIFO blocked")
    assert "not a regular file (a FIFO)" in outcome[0]


def test_a_directory_is_refused(uploads):
    (uploads / "q4.jpg").mkdir()
    with pytest.raises(QueryFileRefused, match=r"not a regular file \(a directory\)"):
        confined_path(str(uploads / "q4.jpg"), uploads)


def test_a_missing_file_says_so(uploads):
    with pytest.raises(QueryFileRefused, match="file not found"):
        read_query_file(str(uploads / "gone.jpg"), uploads)


def test_a_relative_upload_dir_is_under_the_work_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path / "work" / "com.visualsearch.Featurizer"))
    assert (
        resolve_upload_dir("../com.visualsearch.Display/uploads")
        == tmp_path / "work" / "com.visualsearch.Display" / "uploads"
    )


def _refusal(path, uploads) -> str:
    try:
        read_query_file(path, uploads)
    except QueryFileRefused as exc:
        return str(exc)
    return "read"
