"""Upload of a large bundle file as content-defined chunks (components/common/chunks.py).

Each chunk is a content-addressed object, put only when S3 does not hold it yet and checked
after upload; the file's chunk list goes up last, so a chunk list in S3 means every chunk it
names is there. A one-item change of a catalog thus uploads the few chunks around it.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor

from cloud_sync.aws import head_object, s3_url
from components.common.chunks import ChunkList
from components.common.errors import BundleError
from components.common.s3_layout import object_key

CHUNK_WORKERS = 8


def chunk_list_entry(body: bytes) -> dict:
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def put_chunked(
    s3, bucket: str, prefix: str, list_key: str, data: bytes, listing: ChunkList, held: dict[str, int]
) -> int:
    """Put the chunks S3 lacks (`held`: content-addressed keys already there, with their
    sizes), then the chunk list; returns the bytes uploaded."""
    view, offsets, offset = memoryview(data), {}, 0
    for sha, size in listing.chunks:
        offsets.setdefault(sha, (offset, size))
        offset += size

    def put_chunk(sha: str) -> int:
        start, size = offsets[sha]
        key, entry = object_key(prefix, sha), {"size": size, "sha256": sha}
        if held.get(key) == size:
            return 0
        _put_checked(s3, bucket, key, bytes(view[start : start + size]), entry)
        return size

    with ThreadPoolExecutor(CHUNK_WORKERS) as pool:
        uploaded = sum(pool.map(put_chunk, offsets))
    body = listing.to_json()
    _put_checked(s3, bucket, list_key, body, chunk_list_entry(body))
    return uploaded + len(body)


def _put_checked(s3, bucket: str, key: str, body: bytes, entry: dict) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": entry["sha256"]},
        ContentType="application/octet-stream",
    )
    if not stored_object_matches(s3, bucket, key, entry):
        s3.delete_object(Bucket=bucket, Key=key)  # only checked objects stay under these keys
        raise BundleError(
            f"{s3_url(bucket, key)}: the uploaded object does not match its sha256; LATEST was not moved"
        )


def stored_object_matches(s3, bucket: str, key: str, entry: dict) -> bool:
    """Whether S3 holds exactly the bytes a manifest entry describes (size, then sha256)."""
    head = head_object(s3, bucket, key)
    if head is None or head.get("ContentLength") != entry["size"]:
        return False
    checksum = head.get("ChecksumSHA256") or ""
    if checksum and "-" not in checksum:
        return base64.b64decode(checksum).hex() == entry["sha256"]
    digest = hashlib.sha256()  # multipart or uploaded without a checksum: read it back
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest() == entry["sha256"]
