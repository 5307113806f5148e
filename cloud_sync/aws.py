"""Thin helpers over boto3 for the cloud commands: S3 reads, and AWS failures as one line.

Clients are created by the callers (tests pass their own, e.g. with event hooks); nothing
here talks to AWS on import.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                 NoCredentialsError)

from components.common.errors import VisualSearchError

ACCESS_DENIED = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


class CloudError(VisualSearchError):
    """An AWS call that failed: missing bucket, access denied, endpoint unreachable, ..."""


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
        raise CloudError("no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY") from None
    except EndpointConnectionError as exc:
        url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        raise CloudError(f"{where}: cannot reach {url.scheme}://{url.netloc} "
                         f"(network down, or a wrong endpoint or region?)") from None
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
