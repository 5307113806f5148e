import json

import pytest

from cloud_sync.indexing.catalog import read_catalog
from components.common.errors import CatalogError
from tests.conftest import DEMO_CATALOG, write_csv_catalog


def test_demo_catalog_csv_reads_all_columns():
    catalog = read_catalog(DEMO_CATALOG)
    assert catalog.source == "catalog.csv" and not catalog.problems
    assert len(catalog.items) == 200
    first = catalog.items[0]
    assert (first.id, first.category, first.where) == ("dress-001", "dress", "catalog.csv:2")
    assert first.price and first.location and first.extra["colour"]


def test_class_folders_give_relative_ids_and_folder_categories(class_folders):
    (class_folders / "hat" / "notes.txt").write_text("not a photo")
    (class_folders / "README.md").write_text("top-level files are not items")
    catalog = read_catalog(class_folders)
    assert catalog.source == "class folders" and len(catalog.items) == 12
    item = catalog.items[0]
    assert item.id == item.image and item.id.startswith("dress/") and item.title == item.category == "dress"
    assert [str(p) for p in catalog.problems] == ["hat/notes.txt: not an image file extension (.txt)"]


def test_bad_csv_rows_are_each_reported_with_their_line(tmp_path):
    root = write_csv_catalog(
        tmp_path / "c",
        [
            {"id": "a", "image": "a.jpg", "title": "A"},
            {"id": "", "image": "b.jpg", "title": "no id"},
            {"id": "a", "image": "c.jpg", "title": "another title"},
            {"id": "d", "image": "", "title": "no image"},
            {"id": "e", "image": "e.jpg", "title": ""},
            {"id": "a", "image": "a.jpg", "title": ""},
        ],
    )
    catalog = read_catalog(root)
    assert [i.id for i in catalog.items] == ["a", "e"]
    assert catalog.items[1].title == "e"  # a missing title falls back to the id
    assert [str(p) for p in catalog.problems] == [
        "catalog.csv:3: missing id",
        "catalog.csv:4: id 'a': title 'another title' differs from 'A' at catalog.csv:2 "
        "(rows of one product share its fields; leave them empty)",
        "catalog.csv:5: id 'd': missing image",
        "catalog.csv:7: id 'a': picture 'a.jpg' listed twice (first at catalog.csv:2)",
    ]


def test_rows_sharing_an_id_or_an_images_column_are_one_product_with_several_pictures(tmp_path):
    """product.md: rows that share an id are one product (all photos indexed)."""
    root = write_csv_catalog(
        tmp_path / "c",
        [
            {"id": "hat-1", "image": "front.jpg", "title": "Red hat", "price": "9.99", "colour": "red"},
            {"id": "hat-1", "image": "back.jpg", "title": "", "price": "", "colour": ""},
            {"id": "hat-1", "image": "worn.jpg", "title": "Red hat", "price": "9.99", "colour": "red"},
            {"id": "shoe-1", "image": "", "images": "left.jpg | right.jpg", "title": "Shoe"},
        ],
    )
    catalog = read_catalog(root)
    assert not catalog.problems
    assert [(i.id, i.image, i.title, i.price) for i in catalog.items] == [
        ("hat-1", "front.jpg", "Red hat", "9.99"),
        ("hat-1", "back.jpg", "Red hat", "9.99"),
        ("hat-1", "worn.jpg", "Red hat", "9.99"),
        ("shoe-1", "left.jpg", "Shoe", ""),
        ("shoe-1", "right.jpg", "Shoe", ""),
    ]
    assert all(i.extra == {"colour": "red"} for i in catalog.items[:3]) and catalog.items[3].extra == {}
    jsonl = tmp_path / "j"
    jsonl.mkdir()
    row = {"id": "bag", "images": ["a.jpg", "b.jpg"], "title": "Bag"}
    (jsonl / "catalog.jsonl").write_text(json.dumps(row) + "\n")
    assert [i.image for i in read_catalog(jsonl).items] == ["a.jpg", "b.jpg"]


def test_jsonl_catalog_and_its_bad_lines(tmp_path):
    root = tmp_path / "j"
    root.mkdir()
    lines = [
        json.dumps({"id": "x", "image": "x.jpg", "title": "X", "category": "hat", "sku": 7}),
        "{broken",
        "[1, 2]",
        "",
    ]
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    catalog = read_catalog(root)
    assert [(i.id, i.category, i.extra) for i in catalog.items] == [("x", "hat", {"sku": 7})]
    assert [p.where for p in catalog.problems] == ["catalog.jsonl:2", "catalog.jsonl:3"]


def test_unusable_catalogs_are_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="catalog folder not found"):
        read_catalog(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="no catalog.csv, catalog.jsonl"):
        read_catalog(tmp_path / "empty")
    root = tmp_path / "noimage"
    root.mkdir()
    (root / "catalog.csv").write_text("id,title\n1,x\n")
    with pytest.raises(CatalogError, match="header lacks column\\(s\\) image"):
        read_catalog(root)
    (root / "catalog.csv").write_bytes(b"id,image\n1,\xff\xfe.jpg\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        read_catalog(root)


def test_an_unterminated_quote_is_a_bad_row_and_the_rows_after_it_are_still_read(tmp_path):
    """Issue 14, item 8: three rows became one item and the build said nothing."""
    root = tmp_path / "q"
    root.mkdir()
    (root / "catalog.csv").write_text(
        "id,image,title\n"
        'a1,a.jpg,"Red hat\n'
        "a2,b.jpg,Blue hat\n"
        'a3,c.jpg,"Green, ""wide"" hat"\n'
        'a4,d.jpg,"two\nlines"\n'
    )
    catalog = read_catalog(root)
    # its quote is closed by the first one of line 4
    assert [str(p) for p in catalog.problems] == [
        "catalog.csv:2: bad quoting (',' expected after '\"', line 4): "
        "a quoted field opened on this line closes in the middle of a cell; an unterminated or stray quote?"
    ]
    assert [(i.id, i.title, i.where) for i in catalog.items] == [
        ("a2", "Blue hat", "catalog.csv:3"),
        ("a3", 'Green, "wide" hat', "catalog.csv:4"),
        ("a4", "two\nlines", "catalog.csv:5"),
    ]


def test_an_unterminated_quote_on_the_last_line_is_reported_too(tmp_path):
    root = tmp_path / "q"
    root.mkdir()
    (root / "catalog.csv").write_text('id,image,title\na1,a.jpg,Red hat\na2,b.jpg,"Blue hat\n')
    catalog = read_catalog(root)
    assert [i.id for i in catalog.items] == ["a1"]
    assert [p.where for p in catalog.problems] == [
        "catalog.csv:3"
    ] and "unterminated quote" in catalog.problems[0].reason


def test_a_field_over_the_csv_field_limit_is_a_bad_row_not_a_traceback(tmp_path):
    """Issue 14, item 9."""
    import csv

    root = tmp_path / "big"
    root.mkdir()
    huge = "x" * (csv.field_size_limit() + 10)
    (root / "catalog.csv").write_text(f"id,image,title\na1,a.jpg,fine\na2,b.jpg,{huge}\na3,c.jpg,after\n")
    catalog = read_catalog(root)
    assert [i.id for i in catalog.items] == ["a1", "a3"]
    assert [str(p) for p in catalog.problems] == [
        f"catalog.csv:3: a cell is longer than the CSV field limit ({csv.field_size_limit()} characters)"
    ]
