"""Choosing the file store's back end by its moniker (``SMARTLOGGER_STORE``).

Owns ``open_store``: ``file://DIR`` (or a plain folder path; the embedded default is
``file://DATA_DIR/files``) gives ``api.filestore.LocalFileStore``, ``s3://bucket/prefix`` gives
``api.objectstore.S3FileStore``. Apart from both back ends so that the seam (``api.filestore``)
imports neither, and boto3 is imported only when an object store is configured.
"""

from __future__ import annotations

from smartlogger.api.filestore import FileStore, LocalFileStore, StoreSettings
from smartlogger.errors import ConfigError


def open_store(moniker: str, settings: StoreSettings | None = None) -> FileStore:
    """The back end ``moniker`` names: ``file://DIR`` (or a plain folder path), ``s3://bucket[/prefix]``.

    An S3 store takes its endpoint, region and credentials from the usual environment variables
    (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ...), as every S3 tool does. A moniker that names
    no back end is a ``ConfigError`` naming ``STORE``.
    """
    moniker = moniker.strip()
    if moniker.startswith("s3://"):
        bucket, _, prefix = moniker[len("s3://"):].partition("/")
        # Lazy: boto3 only when an object store is configured (the embedded default is a folder).
        from smartlogger.api.objectstore import S3FileStore

        return S3FileStore(bucket, prefix, settings or StoreSettings())
    if moniker.startswith("file://"):
        path = moniker[len("file://"):]
    elif "://" in moniker:
        raise ConfigError("STORE", f"{moniker.split('://', 1)[0]}:// is not a file store; use file://DIR or "
                                   "s3://bucket/prefix")
    else:
        path = moniker
    if not path:
        raise ConfigError("STORE", "file:// needs a folder, e.g. file:///srv/smartlogger/files")
    return LocalFileStore(path)
