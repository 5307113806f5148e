"""Thin helpers over boto3 for the cloud commands: clients, S3 reads, and AWS failures as one line.

Clients are created by the callers with `client()` (tests pass their own, e.g. with event
hooks); nothing here talks to AWS on import. Every client has short connect and read timeouts
and a fixed number of tries, so an endpoint that never answers fails a command in about
ATTEMPTS x READ_TIMEOUT_S (one that refuses connections in ATTEMPTS x CONNECT_TIMEOUT_S)
instead of botocore's 60 s per try; a read timeout is per socket read, so a large upload that
keeps moving is not cut short.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from components.common.errors import VisualSearchError

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 20
ATTEMPTS = 3  # the first try and two retries (botocore's standard retry mode, with back-off)
ACCESS_DENIED = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


class CloudError(VisualSearchError):
    """An AWS call that failed: missing bucket, access denied, endpoint unreachable, ..."""


def client_config() -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
    )


def client(service: str, session=None, **kwargs):
    """A boto3 client (of `session`, or the default one) with the timeouts above."""
    import boto3

    return (session or boto3).client(service, config=client_config(), **kwargs)


def s3_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


@contextmanager
def aws_errors(where: str):
    """Turn boto3/botocore failures inside the block into a CloudError naming `where`."""
    try:
        yield
    except ClientError as exc:
        raise CloudError(describe_client_error(where, exc)) from None
    except S3UploadFailedError as exc:  # s3transfer flattens the ClientError into its text
        reason = "access denied" if "AccessDenied" in str(exc) else str(exc)
        raise CloudError(f"{where}: upload failed: {reason}") from None
    except NoCredentialsError:
        raise CloudError(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and " "AWS_SECRET_ACCESS_KEY"
        ) from None
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        waited = READ_TIMEOUT_S if isinstance(exc, ReadTimeoutError) else CONNECT_TIMEOUT_S
        raise CloudError(
            f"{where}: no answer from {url.scheme}://{url.netloc} within {waited} s, "
            f"{ATTEMPTS} tries (network down, or a wrong endpoint?)"
        ) from None
    except EndpointConnectionError as exc:
        url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        raise CloudError(
            f"{where}: cannot reach {url.scheme}://{url.netloc} "
            f"(network down, or a wrong endpoint or region?)"
        ) from None
    except BotoCoreError as exc:
        raise CloudError(f"{where}: {exc}") from None


def describe_client_error(where: str, exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), error.get("Message", "")
    if code == "NoSuchBucket":
        bucket = error.get("BucketName")
        return f"s3://{bucket}: no such bucket" if bucket else f"{where}: no such bucket"
    if code in ACCESS_DENIED:
        return f"{where}: access denied ({code}); check the credentials in use and the bucket policy"
    return f"{where}: {code or 'error'}: {message or exc}"


def is_not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in NOT_FOUND


def head_object(s3, bucket: str, key: str) -> dict | None:
    """HEAD with checksums requested; None when the object does not exist."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def get_bytes(s3, bucket: str, key: str) -> bytes | None:
    """The whole object (small objects only: manifests, pointers, records); None if missing."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def list_objects(s3, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under `prefix` ({Key, Size, ...}), across all pages."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])
