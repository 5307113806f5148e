"""The items table of a bundle: written by build-index, read by local_search and the display."""

import json
import re
import shutil
import sqlite3

import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common.bundle import INDEX_FILE, ITEMS_FILE, THUMBNAIL_DIR, write_manifest
from components.common.errors import BundleError
from components.common.items import ITEM_COLUMNS, ItemStore, write_items
from components.common.messages import ITEM_FIELDS, Match
from tests.conftest import DEMO_CATALOG


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "demo"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def row(n: int, **fields) -> dict:
    return {
        "item_id": f"item-{n}",
        "title": f"Item {n}",
        "category": "hat",
        "price": "9.99",
        "location": "Aisle 3",
        "url": "",
        "thumbnail": f"{THUMBNAIL_DIR}/{n}.jpg",
        "image": f"img/{n}.jpg",
        "extra": {"colour": "grey"},
        **fields,
    }


def small_bundle(path, rows) -> ItemStore:
    """A bundle with these item rows and a stand-in index file (ItemStore never reads it)."""
    (path / THUMBNAIL_DIR).mkdir(parents=True)
    for n in range(len(rows)):
        (path / THUMBNAIL_DIR / f"{n}.jpg").write_bytes(b"jpeg")
    (path / INDEX_FILE).write_bytes(b"not an index")
    write_items(path / ITEMS_FILE, rows)
    write_manifest(
        path,
        {
            "index_version": 3,
            "item_count": len(rows),
            "metric": "cosine",
            "index": {},
            "model": {"fingerprint": "f" * 64},
        },
    )
    return ItemStore.open(path)


def test_the_table_holds_the_match_fields_plus_what_stays_in_the_bundle(tmp_path):
    write_items(tmp_path / ITEMS_FILE, [row(0)])
    columns = [c[1] for c in sqlite3.connect(tmp_path / ITEMS_FILE).execute("PRAGMA table_info(items)")]
    assert set(columns) == {"faiss_id", *ITEM_COLUMNS}
    assert set(ITEM_COLUMNS) == set(ITEM_FIELDS) | {"image", "extra"}


def test_rows_are_read_back_by_faiss_id_and_make_matches(tmp_path):
    store = small_bundle(tmp_path / "bundle", [row(0), row(1, title="Red dress", category="dress", price="")])
    rows = store.items([1, 0, 7])
    assert set(rows) == {0, 1} and rows[1]["title"] == "Red dress" and rows[0]["extra"] == {"colour": "grey"}
    assert (
        rows[0]["image"] == "img/0.jpg" and store.thumbnail_path(rows[1]) == store.path / "thumbnails/1.jpg"
    )
    match = Match.from_item(1, 0.8, 1, rows[1])
    assert (match.item_id, match.category, match.price, match.thumbnail) == (
        "item-1",
        "dress",
        "",
        "thumbnails/1.jpg",
    )
    assert len(store) == 2 and store.version == 3 and store.model_fingerprint == "f" * 64


def test_a_row_without_every_column_is_refused_before_anything_is_written(tmp_path):
    broken = row(1)
    del broken["image"]
    with pytest.raises(ValueError, match=r"item row 1 \(item-1\) lacks image"):
        write_items(tmp_path / ITEMS_FILE, [row(0), broken])
    assert not (tmp_path / ITEMS_FILE).exists()


def test_keyword_search_matches_words_and_prefixes(bundle_dir):
    store = ItemStore.open(bundle_dir)
    shoes = store.keyword_search("shoes", limit=100)
    assert len(shoes) == 20 and all(store.items([i])[i]["category"] == "shoes" for i in shoes)
    jackets = store.keyword_search("jack")
    assert jackets and all("jacket" in store.items([i])[i]["title"].lower() for i in jackets)
    red_dresses = store.keyword_search("red dress")
    assert red_dresses and all(store.items([i])[i]["title"] == "Red dress" for i in red_dresses)
    assert set(store.keyword_search("footwear", limit=100)) == set(shoes)  # the location column
    assert store.keyword_search("zebra") == []
    with pytest.raises(ValueError, match="at least one word"):
        store.keyword_search("  !! ")


def test_keywords_are_capped_in_words_and_bytes_and_each_word_searched_once(bundle_dir):
    """Issue 14, item 5: 5,000 words took 15.7 s (the cost grew with the square of the words)."""
    from components.common.catalog_filter import MAX_KEYWORD_BYTES, MAX_KEYWORDS, KeywordError, keyword_words

    store = ItemStore.open(bundle_dir)
    assert keyword_words("Hat hats HAT grey hat") == ["hat", "grey"]  # repeats are one term
    assert store.keyword_search("hat " * 100) == store.keyword_search("hat")
    many = " ".join(f"w{n}" for n in range(5000))
    with pytest.raises(
        KeywordError,
        match=f"the keywords are {len(many)} bytes long; the limit is " f"{MAX_KEYWORD_BYTES} bytes",
    ):
        store.keyword_search(many)
    distinct = " ".join(f"w{n}" for n in range(MAX_KEYWORDS + 1))
    with pytest.raises(
        KeywordError, match=f"{MAX_KEYWORDS + 1} different words; search with at most {MAX_KEYWORDS}"
    ):
        store.keyword_search(distinct)
    assert store.keyword_search(" ".join(["grey", "hat", *(["hat"] * MAX_KEYWORDS)])) == store.keyword_search(
        "grey hat"
    )


def test_keywords_find_plurals_never_hidden_columns_and_rank_by_relevance(tmp_path):
    """Issue 13: "dresses" found nothing where "dress" found many; an image file name made
    "aisle 4" return Aisle 1 items."""
    rows = [
        row(0, title="Red dress", category="dress", location="Aisle 1", image="img/4b9f-aisle.jpg"),
        row(
            1, title="Blue dress", category="dress", location="Aisle 1", extra={"source_file": "aisle 4.jpg"}
        ),
        row(2, title="Grey hat", category="hat", location="Aisle 4, dresses nearby"),
        row(3, title="Summer dresses", category="dress", location="Aisle 4", extra={"tags": "red"}),
    ]
    store = small_bundle(tmp_path / "bundle", rows)
    assert store.keyword_search("dresses") == store.keyword_search("dress")
    assert store.keyword_search("dress")[-1] == 2  # only its location mentions dresses
    assert store.keyword_search("aisle 4") == [2, 3]  # not 0 (image name) nor 1 (a hidden column)
    assert store.keyword_search("red") == [0, 3]  # the title before the tags column


def test_a_product_with_several_pictures_is_found_once_and_filtered_whole(tmp_path):
    rows = [
        row(0, item_id="hat-1", title="Red hat"),
        row(1, item_id="shoe-1", title="Red shoe", category="shoes", extra={"brand": "Acme"}),
        row(2, item_id="hat-1", title="Red hat"),
        row(3, item_id="hat-2", title="Blue hat", extra={"colour": "blue", "brand": "Acme"}),
    ]
    store = small_bundle(tmp_path / "bundle", rows)
    assert store.keyword_search("red hat") == [0]
    assert store.filter_ids(keywords="red").tolist() == [0, 1, 2]
    assert store.filter_ids(labels="category=hat").tolist() == [0, 2, 3]
    assert store.filter_ids(labels="(colour=blue OR category=shoes) AND brand=acme").tolist() == [1, 3]
    assert store.filter_ids(labels="id!=hat-1", keywords="hat").tolist() == [3]
    assert store.filter_ids().tolist() == [0, 1, 2, 3]


def test_a_label_filter_on_a_column_no_product_has_or_that_does_not_parse_is_refused_by_name(tmp_path):
    from components.common.catalog_filter import LabelError

    store = small_bundle(tmp_path / "bundle", [row(0), row(1)])
    with pytest.raises(LabelError, match=r"no product has a column 'color' \(columns: .*colour"):
        store.filter_ids(labels="color=red")
    for bad, reason in [
        ("category=", "has no value"),
        ("(category=hat", "never closed"),
        ("category hat", "needs =value"),
        ("category=hat AND", "ends where"),
        ("category=hat)", "unexpected ')' at position 13"),
    ]:
        with pytest.raises(LabelError, match=re.escape(reason)):
            store.filter_ids(labels=bad)


def test_a_keyword_search_does_not_wait_for_other_reads_of_the_store(bundle_dir):
    """The expensive part runs on its own connection, not under the store's lock."""
    import threading

    store = ItemStore.open(bundle_dir)
    found = []
    with store._lock:  # another request reading items, for as long as it likes
        searcher = threading.Thread(
            target=lambda: found.append(store.keyword_search("grey hat")), daemon=True
        )
        searcher.start()
        searcher.join(timeout=30)
        assert not searcher.is_alive(), "the keyword search waited for the store's lock"
    assert found[0] and found[0] == store.keyword_search("grey hat")


def test_the_item_store_reads_metadata_without_the_faiss_index(bundle_dir, tmp_path):
    """The display opens only items and thumbnails: a second copy of the index is not loaded."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "index.faiss").write_bytes(b"not read by the display")
    store = ItemStore.open(copy)
    assert (
        len(store) == 200
        and store.version == json.loads((bundle_dir / "manifest.json").read_text())["index_version"]
    )
    [hat] = store.items(store.keyword_search("grey hat")[:1]).values()
    assert hat["category"] == "hat" and store.thumbnail_path(hat).is_file()
    assert hat["extra"]["colour"]  # extra catalog columns are kept as metadata
    with open(copy / "items.sqlite", "r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="items.sqlite: sha256"):
        ItemStore.open(copy)
