"""The S3 back end of the file store: blobs as objects in an S3-compatible bucket (boto3).

Owns ``S3FileStore`` and the translation of S3 answers into the file store's failure types.
Keys are ``prefix/ab/abcd...`` (the local layout: a folder store copied with any S3 tool is a
valid object store and back). Chosen by ``SMARTLOGGER_STORE=s3://bucket/prefix``; the endpoint,
region and credentials come from boto3's usual sources (``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role), so a deployment configures it like every other S3 tool.

Why boto3: it is the S3 reference client (AWS's own, released weekly), synchronous like the
Flask request threads and RQ jobs that call it, thread-safe per client, and it speaks the two
S3 features the promises rest on: ``If-None-Match: *`` on PutObject (written once: a second
write of a name is refused by the store itself, 412) and ``x-amz-checksum-sha256`` (the store
verifies the bytes it received against the SHA-256 we name them by, and refuses a mismatch).
obstore (Rust, fast) is async-first and younger; s3fs is a file-system layer over aiobotocore,
two layers more for the four calls used here. Tested against SeaweedFS (``weed server -s3``),
which answers both features as AWS does.

Promises as in ``api.filestore``: ``put`` returns once the store has acknowledged bytes whose
SHA-256 it checked; an existing object is never overwritten; ``get`` re-hashes what it received.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from smartlogger.api.filestore import (
    _SHA_RE,
    BlobDamaged,
    BlobMissing,
    FileStoreError,
    StoredBlob,
    StoreFull,
    StoreMisconfigured,
    StoreSettings,
    StoreUnavailable,
    sha256_name,
)
from smartlogger.errors import ConfigError

#: S3 bucket names: 3-63 characters, lower-case letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISCONFIGURED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "AllAccessDisabled",
                  "AccountProblem", "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "403"}
_FULL = {"QuotaExceeded", "XMinioStorageFull", "StorageFull", "InsufficientStorage", "507"}


def endpoint_from_environment() -> str | None:
    """The S3 endpoint the environment names (boto3 reads the same variables), or None for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


class S3FileStore:
    """A ``FileStore`` in ``bucket`` under ``prefix`` of an S3-compatible object store."""

    def __init__(self, bucket: str, prefix: str = "", settings: StoreSettings | None = None) -> None:
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ConfigError("STORE", f"{bucket!r} is not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')")
        prefix = prefix.strip("/")
        if prefix and (not all(part not in ("", ".", "..") for part in prefix.split("/"))):
            raise ConfigError("STORE", f"{prefix!r} is not a usable key prefix")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.settings = settings or StoreSettings()
        self.endpoint = endpoint_from_environment()
        self.location = f"s3://{bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the client, one per process

    @property
    def client(self) -> Any:
        """The boto3 client of this process (a client's connection pool must not cross a fork:
        gunicorn and RQ workers fork after the app is built)."""
        pid = os.getpid()
        c = self._clients.get(pid)
        if c is None:
            with self._lock:
                c = self._clients.get(pid)
                if c is None:
                    c = self._clients[pid] = self._make_client()
        return c

    def _make_client(self) -> Any:
        s = self.settings
        config = Config(
            connect_timeout=s.connect_timeout_s, read_timeout=s.read_timeout_s,
            retries={"mode": "standard", "max_attempts": max(1, s.attempts)},
            max_pool_connections=32,
            # An own endpoint (SeaweedFS, MinIO, Ceph) is addressed by path: its bucket names are
            # rarely DNS names there. AWS itself chooses (virtual-hosted style).
            s3={"addressing_style": "path" if self.endpoint else "auto"},
            # Our own SHA-256 goes with every put; no second (CRC) checksum on top.
            request_checksum_calculation="when_required", response_checksum_validation="when_required")
        try:
            return boto3.session.Session().client("s3", config=config)
        except BotoCoreError as err:  # e.g. no region for AWS, a malformed endpoint URL
            raise StoreMisconfigured(f"cannot set up the S3 client for {self.location}: {err}") from None

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}{sha256[:2]}/{sha256_name(sha256)}"

    # ------------------------------------------------------------------ the seam

    def put(self, data: bytes) -> str:
        h = hashlib.sha256(data)
        digest = h.hexdigest()
        try:
            # If-None-Match: the store itself refuses to replace an object (412): written once,
            # also when two hosts put the same bytes at the same moment (409 for the loser).
            self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data,
                                   ChecksumSHA256=base64.b64encode(h.digest()).decode(), IfNoneMatch="*",
                                   ContentType="application/octet-stream")
        except ClientError as err:
            code, status = _code(err)
            if status == 412 or code == "PreconditionFailed":
                return digest  # these bytes are there already (content addressing)
            if code == "ConditionalRequestConflict" and self.exists(digest):
                return digest  # a concurrent put of the same bytes won
            if (code == "NotImplemented" or status == 501) and not self.exists(digest):
                # A store without conditional writes: look first, then write. A race can only
                # replace the object with the same bytes (the name is their SHA-256).
                return self._put_unconditional(digest, h.digest(), data)
            if code == "NotImplemented" or status == 501:
                return digest
            raise self._failure(err, f"cannot store blob {digest}", digest) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, f"cannot store blob {digest}", digest) from None
        return digest

    def _put_unconditional(self, digest: str, raw_digest: bytes, data: bytes) -> str:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data,
                                   ChecksumSHA256=base64.b64encode(raw_digest).decode(),
                                   ContentType="application/octet-stream")
        except ClientError as err:
            raise self._failure(err, f"cannot store blob {digest}", digest) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, f"cannot store blob {digest}", digest) from None
        return digest

    def get(self, sha256: str) -> bytes:
        key = self._key(sha256)
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            code, status = _code(err)
            if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                raise BlobMissing(f"blob {sha256} is not in the file store ({self.location})",
                                  sha256=sha256) from None
            raise self._failure(err, f"cannot read blob {sha256}", sha256) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, f"cannot read blob {sha256}", sha256) from None
        # Evidence: never hand out bytes that do not match their name (damaged at rest or on the way).
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobDamaged(f"blob {sha256} is damaged in the file store ({self.location}; hash mismatch)",
                              sha256=sha256)
        return data

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as err:
            if _code(err)[1] == 404:  # a HEAD answer has no body: no code tells key from bucket
                if self._bucket_exists():
                    return False
                raise StoreMisconfigured(f"cannot look up blob {sha256}: the bucket {self.bucket!r} does not "
                                         f"exist ({self.location})", sha256=sha256) from None
            raise self._failure(err, f"cannot look up blob {sha256}", sha256) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, f"cannot look up blob {sha256}", sha256) from None
        return True

    def delete(self, sha256: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as err:
            raise self._failure(err, f"cannot delete blob {sha256}", sha256) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, f"cannot delete blob {sha256}", sha256) from None

    def blobs(self) -> Iterator[StoredBlob]:
        """Blobs in name order: S3 lists keys in ascending byte order, and ``ab/abcd...`` sorts as
        the names do. Objects under the prefix that are not blobs are skipped."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(self.prefix):]
                    top, _, name = rest.partition("/")
                    if _SHA_RE.match(name) and name[:2] == top:
                        yield StoredBlob(name, int(obj.get("Size", 0)), obj.get("LastModified"))
        except ClientError as err:
            raise self._failure(err, "cannot list the blobs", None) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, "cannot list the blobs", None) from None

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            raise self._failure(err, "the file store does not answer as it should", None) from None
        except (BotoCoreError, NoCredentialsError) as err:
            raise self._unreachable(err, "the file store does not answer", None) from None

    # ------------------------------------------------------------------ failures

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True

    def _failure(self, err: ClientError, what: str, sha256: str | None) -> FileStoreError:
        code, status = _code(err)
        where = self.location
        if code == "NoSuchBucket" or (status == 404 and sha256 is None):
            return StoreMisconfigured(f"{what}: the bucket {self.bucket!r} does not exist ({where})", sha256=sha256)
        if code in _MISCONFIGURED or status == 403:
            return StoreMisconfigured(f"{what}: the object store refused our credentials ({code}; {where})",
                                      sha256=sha256)
        if code in _FULL or status == 507:
            return StoreFull(f"{what}: the object store is full ({code}; {where})", sha256=sha256)
        if status >= 500 and not self._bucket_exists():
            # Some stores (SeaweedFS) answer a put into a missing bucket with a 500: say what is wrong.
            return StoreMisconfigured(f"{what}: the bucket {self.bucket!r} does not exist or cannot be "
                                      f"reached ({where})", sha256=sha256)
        message = err.response.get("Error", {}).get("Message") or code
        return StoreUnavailable(f"{what}: the object store answered {status or ''} {code}: {message} ({where})",
                                sha256=sha256)

    def _unreachable(self, err: Exception, what: str, sha256: str | None) -> FileStoreError:
        if isinstance(err, NoCredentialsError | PartialCredentialsError):
            return StoreMisconfigured(f"{what}: no credentials for the object store (set AWS_ACCESS_KEY_ID and "
                                      f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; {self.location})", sha256=sha256)
        return StoreUnavailable(f"{what}: the object store does not answer ({type(err).__name__}; "
                                f"{self.location})", sha256=sha256)


def _code(err: ClientError) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a ``ClientError``."""
    code = str(err.response.get("Error", {}).get("Code") or "")
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status
