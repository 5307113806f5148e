"""Read a catalog (or an evaluation query set) in either format of product.md.

* a folder with `catalog.csv` or `catalog.jsonl` (columns: id, image, title, and optional
  category, price, location, url; any other column is kept as metadata), or
* a folder of class folders, `<category>/<image>`: id = relative path, title = category.

A product may have several pictures: rows sharing an `id` (each with its `image`), or an
`images` column listing several (separated by `|` in CSV, a list in JSONL). Each picture is
one `CatalogItem` (same id and fields); the first row of an id gives the product's fields,
and a later row may leave them empty but not contradict them.

Rows that cannot be used are never dropped silently: each becomes a `CatalogProblem`
with its line and reason, and the caller decides whether to fail or skip.
"""

from __future__ import annotations

import csv
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from components.common.errors import CatalogError, ImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
KNOWN_COLUMNS = ("id", "image", "images", "title", "category", "price", "location", "url")
PRODUCT_FIELDS = ("title", "category", "price", "location", "url")  # the same on every row of an id
URL_TIMEOUT_S = 30  # per connect or read of an image URL
URL_DEADLINE_S = 120  # for the whole download: a server that trickles bytes is cut off
MAX_IMAGE_BYTES = 64 * 2**20  # an image URL or S3 object larger than this is not read


@dataclass
class CatalogItem:
    id: str
    image: str
    title: str
    category: str = ""
    price: str = ""
    location: str = ""
    url: str = ""
    extra: dict = field(default_factory=dict)
    where: str = ""  # "catalog.csv:12" or the image's relative path, for error messages


@dataclass(frozen=True)
class CatalogProblem:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Catalog:
    root: Path
    items: list[CatalogItem]
    problems: list[CatalogProblem]
    source: str  # the file read, or "class folders"

    @property
    def location(self) -> str:
        """The catalog file (or folder) to name in messages."""
        return str(self.root / self.source) if self.source != "class folders" else str(self.root)


def read_catalog(path: str | Path) -> Catalog:
    root = Path(path)
    if root.is_file() and root.name in ("catalog.csv", "catalog.jsonl"):
        root = root.parent
    if not root.is_dir():
        raise CatalogError(f"{root}: catalog folder not found")
    for name, reader in (("catalog.csv", _csv_rows), ("catalog.jsonl", _jsonl_rows)):
        if (root / name).is_file():
            items, problems = _rows_to_items(reader(root / name), name)
            return Catalog(root, items, problems, name)
    items, problems = _class_folders(root)
    if not items and not problems:
        raise CatalogError(f"{root}: no catalog.csv, catalog.jsonl or <category>/<image> folders")
    return Catalog(root, items, problems, "class folders")


def _csv_rows(path: Path):
    """(line, row, None) per row, or (line, None, reason) for a row that cannot be used; `line`
    is where the row starts. Quoting is read strictly: a quote that never closes (or closes in
    another row) would otherwise swallow the rows after it silently; such a row is reported
    and reading goes on from the line after it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(handle)  # split at \r, \n and \r\n only, as csv does
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        header = next(csv.reader(lines[:1], strict=True), [])
    except csv.Error as exc:
        raise CatalogError(f"{path}: the header line cannot be read as CSV ({exc})") from None
    missing = [c for c in ("id", "image") if c not in header]
    if "images" in header and "image" in missing:
        missing.remove("image")
    if missing:
        raise CatalogError(
            f"{path}: header lacks column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) or 'nothing'})"
        )
    position = 1  # lines before the reader's first
    while position < len(lines):
        reader, done = csv.reader(iter(lines[position:]), strict=True), 0
        try:
            for cells in reader:
                line, done = position + done + 1, reader.line_num  # the row's first line, 1-based
                if not cells:
                    continue
                if len(cells) > len(header):
                    yield line, None, "more cells than the header has columns"
                    continue
                yield line, dict(zip(header, cells + [None] * (len(header) - len(cells)))), None
            return
        except csv.Error as exc:
            start = position + done + 1
            yield start, None, _csv_problem(exc, start, position + reader.line_num, len(lines))
            position = start  # go on from the line after the first line of that row


def _csv_problem(exc: csv.Error, start: int, at: int, total: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a cell is longer than the CSV field limit ({csv.field_size_limit()} characters)"
    if "unexpected end of data" in text:
        later = f", {total - start} line(s) later" if total > start else ""
        return (
            "unterminated quote: the quoted field opened on this line never closes "
            f"(the file ends inside it{later})"
        )
    return (
        f"bad quoting ({text}, line {at}): a quoted field opened on this line closes in the middle "
        f"of a cell; an unterminated or stray quote?"
    )


def _jsonl_rows(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, None, f"not valid JSON ({exc.msg})"
                    continue
                if not isinstance(row, dict):
                    yield number, None, "expected a JSON object"
                    continue
                yield number, row, None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _pictures(row: dict) -> list[str]:
    """The row's `image`, then each of its `images` (a list, or text split at |)."""
    listed = row.get("images")
    if isinstance(listed, list):
        extra = [_text(v) for v in listed]
    else:
        extra = [part.strip() for part in _text(listed).split("|")]
    return [p for p in dict.fromkeys([_text(row.get("image")), *extra]) if p]


def _rows_to_items(rows, file_name: str):
    items: list[CatalogItem] = []
    problems: list[CatalogProblem] = []
    first: dict[str, tuple[CatalogItem, dict]] = {}  # id -> (its first picture, the fields given there)
    pictures_seen: dict[tuple[str, str], str] = {}
    for line, row, error in rows:
        where = f"{file_name}:{line}"
        if error:
            problems.append(CatalogProblem(where, error))
            continue
        item_id, pictures = _text(row.get("id")), _pictures(row)
        if not item_id:
            problems.append(CatalogProblem(where, "missing id"))
            continue
        if not pictures:
            problems.append(CatalogProblem(where, f"id {item_id!r}: missing image"))
            continue
        given = {name: _text(row.get(name)) for name in PRODUCT_FIELDS}
        given.update({k: v for k, v in row.items() if k not in KNOWN_COLUMNS and v not in (None, "")})
        if item_id in first:
            product, product_given = first[item_id]
            clash = next(
                (
                    k
                    for k, v in given.items()
                    if v not in ("", None) and product_given.get(k) not in (v, "", None)
                ),
                None,
            )
            if clash is not None:
                problems.append(
                    CatalogProblem(
                        where,
                        f"id {item_id!r}: {clash} {given[clash]!r} differs from {product_given[clash]!r} at "
                        f"{product.where} (rows of one product share its fields; leave them empty)",
                    )
                )
                continue
        else:
            product = CatalogItem(
                id=item_id,
                image="",
                title=given["title"] or item_id,
                **{name: given[name] for name in PRODUCT_FIELDS if name != "title"},
                extra={k: v for k, v in given.items() if k not in PRODUCT_FIELDS},
                where=where,
            )
            first[item_id] = (product, given)
        for picture in pictures:
            if (item_id, picture) in pictures_seen:
                problems.append(
                    CatalogProblem(
                        where,
                        f"id {item_id!r}: picture {picture!r} listed twice (first at "
                        f"{pictures_seen[item_id, picture]})",
                    )
                )
                continue
            pictures_seen[item_id, picture] = where
            items.append(replace(product, image=picture, extra=dict(product.extra), where=where))
    return items, problems


def _class_folders(root: Path):
    items: list[CatalogItem] = []
    problems: list[CatalogProblem] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(CatalogProblem(rel, f"not an image file extension ({path.suffix or 'none'})"))
                continue
            items.append(CatalogItem(id=rel, image=rel, title=folder.name, category=folder.name, where=rel))
    return items, problems


def read_image_bytes(root: Path, ref: str) -> bytes:
    """Bytes of a catalog image: a path relative to the catalog folder, s3:// or https://."""
    if ref.startswith("s3://"):
        return _read_s3(ref)
    if ref.startswith(("https://", "http://")):
        try:
            with urllib.request.urlopen(ref, timeout=URL_TIMEOUT_S) as response:
                return _bounded_read(response, ref)
        except (urllib.error.URLError, OSError) as exc:
            raise ImageError(f"{ref}: cannot download ({getattr(exc, 'reason', exc)})") from None
    path = Path(ref) if Path(ref).is_absolute() else root / ref
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{ref}: image file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{ref}: is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{ref}: cannot read ({exc.strerror})") from None


def _bounded_read(stream, ref: str) -> bytes:
    """Read a download whole, within MAX_IMAGE_BYTES and URL_DEADLINE_S (ImageError beyond)."""
    deadline, parts, size = time.monotonic() + URL_DEADLINE_S, [], 0
    read = getattr(stream, "read1", stream.read)  # read1: what has arrived, without waiting for a full chunk
    while chunk := read(1 << 16):
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise ImageError(f"{ref}: more than {MAX_IMAGE_BYTES / 2**20:g} MiB; not read as a catalog image")
        if time.monotonic() > deadline:
            raise ImageError(f"{ref}: the download took more than {URL_DEADLINE_S:g} s; not read")
        parts.append(chunk)
    return b"".join(parts)


def _read_s3(ref: str) -> bytes:
    import botocore.exceptions

    from cloud_sync.aws import client

    bucket, _, key = ref[len("s3://") :].partition("/")
    try:
        response = client("s3").get_object(Bucket=bucket, Key=key)
        with response["Body"] as body:
            return _bounded_read(body, ref)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ImageError(f"{ref}: cannot download from S3 ({exc})") from None
