"""The file store seam: immutable blobs named by their SHA-256 (logfiles, report workbooks).

Owns the ``FileStore`` protocol, its failure types, ``LocalFileStore`` (a directory with one
level of fan-out by the first two hex digits, as git's object store; writes via a temporary
file and ``os.replace`` so a crash never leaves a half blob under a real name), the object store
client's settings (``StoreSettings``; the back end is ``api.objectstore``, chosen by its moniker in
``api.stores``), and ``PatientStore (jobs wait out a
short store outage instead of failing). Content addressing makes ``put`` idempotent: the same
bytes twice are stored once, which is also what lets two organisations upload the same file
without sharing any database row.

Every back end keeps the same promises: a blob is written once and never overwritten, a
``put`` returns only once the bytes are durable, ``get`` hands out bytes only after checking
their SHA-256 against the name, and failures are typed (``StoreUnavailable`` -> 503 with
Retry-After, ``StoreFull`` -> 507, ``BlobMissing`` / ``BlobDamaged`` for a blob the database
names but the store cannot give back; see ``api.errors``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from smartlogger.errors import StoreError

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
#: A folder store with less free space than this answers uploads 507 and reports degraded health.
MIN_FREE_BYTES = 64 * 1024 * 1024


# ----------------------------------------------------------------------------- failures


class FileStoreError(StoreError):
    """The file store failed an operation. ``sha256`` names the blob when one is concerned."""

    def __init__(self, message: str, *, sha256: str | None = None) -> None:
        self.sha256 = sha256
        self.message = message
        super().__init__(message)


class BlobNameError(FileStoreError, ValueError):
    """A name that is not lower-case SHA-256 hex (never looked up: it could be a path)."""


class StoreUnavailable(FileStoreError):
    """The store cannot be reached or does not answer in time; worth retrying after ``retry_after_s``."""

    retry_after_s = 5


class StoreMisconfigured(StoreUnavailable):
    """The store answers but refuses us: bucket missing, credentials wrong or not allowed.

    Retrying helps only once an operator fixes the configuration, hence the longer Retry-After.
    """

    retry_after_s = 30


class StoreFull(FileStoreError):
    """The store has no room for new bytes (disk full, quota exceeded)."""

    retry_after_s = 60


class BlobMissing(FileStoreError):
    """A blob the database names is not in the store (lost, or deleted behind the API's back)."""


class BlobDamaged(FileStoreError):
    """The store gave back bytes that do not hash to the blob's name: never served."""


# ----------------------------------------------------------------------------- the seam


@dataclass(frozen=True)
class StoredBlob:
    """One blob as the store lists it: name, size in bytes, last-modified time (UTC) if known."""

    sha256: str
    size: int
    modified: datetime | None


class FileStore(Protocol):
    """Where blob bytes live. ``sha256`` is lower-case hex of the bytes.

    ``location`` says where (for messages and the health answer; never a secret).
    """

    location: str

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its SHA-256 (hex). Storing existing bytes again is a no-op."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes named ``sha256``; ``BlobMissing`` / ``BlobDamaged`` if absent or damaged."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...

    def blobs(self) -> Iterator[StoredBlob]:
        """Every blob in the store, in ascending order of name (a merge with the database's names)."""
        ...

    def check(self) -> None:
        """Raise a ``FileStoreError`` if the store could not take or serve a blob now (health)."""
        ...


def sha256_name(sha256: str) -> str:
    """``sha256`` if it is a blob name; else ``BlobNameError`` (it is never used as a path or key)."""
    if not _SHA_RE.match(sha256):
        raise BlobNameError(f"{sha256[:80]!r} is not a SHA-256 hex name")
    return sha256


# ----------------------------------------------------------------------------- a folder


class LocalFileStore:
    """A ``FileStore`` in a local directory: ``root/ab/abcd...`` (256 fan-out directories).

    Stores written by earlier builds used two levels (``root/ab/cd/abcd...``): those blobs are
    still found, served and deleted where they are; new blobs go to the one-level path. (Two
    levels made almost every upload to a young store create one or two directories, which cost
    more than writing the blob; 256 directories hold millions of blobs on ext4 or XFS.)
    """

    def __init__(self, root: str | os.PathLike[str], *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.root = Path(root)
        self.location = f"file://{self.root}"
        self.min_free_bytes = min_free_bytes
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _os_failure(err, f"cannot create the file store folder {self.root}") from None
        # Fan-out directories known to exist: saves a mkdir system call per put. (A directory
        # removed behind our back makes mkstemp fail with FileNotFoundError; put then retries.)
        self._dirs: set[Path] = set()

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256_name(sha256)

    def _legacy_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _found(self, sha256: str) -> Path | None:
        """Where the blob is (one-level path first, then the legacy two-level one), or None."""
        path = self._path(sha256)
        if path.exists():
            return path
        legacy = self._legacy_path(sha256)
        return legacy if legacy.exists() else None

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self._found(digest) is not None:
            return digest
        try:
            self._write(self._path(digest), data)
        except OSError as err:
            raise _os_failure(err, f"cannot write blob {digest} to {self.root}", sha256=digest) from None
        return digest

    def _write(self, path: Path, data: bytes) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:
            self._dirs.discard(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                # One fsync per new blob, before the database row that names it is committed: a
                # receipt must never name bytes a crash can lose. (Known blobs return above.)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, sha256: str) -> bytes:
        path = self._found(sha256)
        if path is None:
            raise BlobMissing(f"blob {sha256} is not in the file store", sha256=sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted between the lookup and the read
            raise BlobMissing(f"blob {sha256} is not in the file store", sha256=sha256) from None
        except OSError as err:
            raise _os_failure(err, f"cannot read blob {sha256}", sha256=sha256) from None
        # Evidence: never hand out bytes that no longer match their name.
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobDamaged(f"blob {sha256} is damaged in the file store (hash mismatch)", sha256=sha256)
        return data

    def exists(self, sha256: str) -> bool:
        return self._found(sha256) is not None

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
        self._legacy_path(sha256).unlink(missing_ok=True)

    def blobs(self) -> Iterator[StoredBlob]:
        """Blobs in name order (both layouts; temporary files of unfinished writes are not blobs)."""
        if not self.root.is_dir():
            raise StoreUnavailable(f"the file store folder {self.root} is missing")
        for top in sorted(p for p in self.root.iterdir() if len(p.name) == 2 and p.is_dir()):
            found: list[StoredBlob] = []
            for entry in top.iterdir():
                candidates = [entry] if entry.is_file() else (
                    [e for e in entry.iterdir() if e.is_file()] if len(entry.name) == 2 and entry.is_dir() else [])
                for blob in candidates:
                    if _SHA_RE.match(blob.name) and blob.name.startswith(top.name):
                        st = blob.stat()
                        found.append(StoredBlob(blob.name, st.st_size,
                                                datetime.fromtimestamp(st.st_mtime, UTC)))
            yield from sorted(found, key=lambda b: b.sha256)

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"the file store folder {self.root} is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreMisconfigured(f"the file store folder {self.root} is not writable")
        free = shutil.disk_usage(self.root).free
        if free < self.min_free_bytes:
            raise StoreFull(f"the file store's disk has {free // (1024 * 1024)} MiB free "
                            f"(needs {self.min_free_bytes // (1024 * 1024)} MiB for an upload)")


def _os_failure(err: OSError, what: str, *, sha256: str | None = None) -> FileStoreError:
    """The typed failure for an OS error of the folder store (no space -> full, else unavailable)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"{what}: the disk is full", sha256=sha256)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreMisconfigured(f"{what}: {err.strerror}", sha256=sha256)
    return StoreUnavailable(f"{what}: {err.strerror or err}", sha256=sha256)


# ----------------------------------------------------------------------------- jobs: patience


class PatientStore:
    """A ``FileStore`` that waits out a short outage: what a background job reads and writes through.

    A request answers 503 at once when the store is unavailable (the client retries; a web
    thread must not hang). A job has no client to retry for it: it retries ``StoreUnavailable``
    with doubling pauses for up to ``patience_s`` seconds (an object store restarting or failing
    over takes seconds), then fails with the store's message. Missing or damaged blobs and a full
    store are not waited for. Once it has waited in vain, the calls of the next ``patience_s``
    seconds try once (a batch of jobs does not wait once per job for a store that is down).
    """

    def __init__(self, store: FileStore, patience_s: float, *, first_pause_s: float = 0.25) -> None:
        self.store = store
        self.location = store.location
        self.patience_s = patience_s
        self.first_pause_s = first_pause_s
        self._gave_up_at = -float("inf")

    def _patiently(self, call: str, *args: object) -> object:
        now = time.monotonic()
        deadline = now if now - self._gave_up_at < self.patience_s else now + self.patience_s
        pause = self.first_pause_s
        while True:
            try:
                out = getattr(self.store, call)(*args)
                self._gave_up_at = -float("inf")
                return out
            except StoreUnavailable:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._gave_up_at = time.monotonic()
                    raise
                time.sleep(min(pause, left))  # waiting for the store to come back, bounded
                pause = min(pause * 2, 5.0)

    def put(self, data: bytes) -> str:
        return str(self._patiently("put", data))

    def get(self, sha256: str) -> bytes:
        out = self._patiently("get", sha256)
        assert isinstance(out, bytes)
        return out

    def exists(self, sha256: str) -> bool:
        return bool(self._patiently("exists", sha256))

    def delete(self, sha256: str) -> None:
        self._patiently("delete", sha256)

    def blobs(self) -> Iterator[StoredBlob]:
        return self.store.blobs()

    def check(self) -> None:
        self.store.check()


# ----------------------------------------------------------------------------- choosing a back end


@dataclass(frozen=True)
class StoreSettings:
    """How patient the object store client is: seconds to connect, to wait for a read, attempts."""

    connect_timeout_s: float = 2.0
    read_timeout_s: float = 10.0
    attempts: int = 3
