"""What ``/api/health`` knows about the dependencies a request needs: the file store's state.

Owns ``StoreHealth``: the store's own ``check()`` (a folder: present, writable, free space; an
object store: the bucket answers to our credentials), remembered for ``ttl_s`` seconds so that a
load balancer polling every host every second costs the store one request per host and interval,
and forgotten at once when a request meets a store failure (``note_failure``), so the answer
turns "degraded" with the first failed upload, not after the next probe.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from smartlogger.api.filestore import FileStore, FileStoreError, StoreFull, StoreMisconfigured

log = logging.getLogger("smartlogger.api.health")


@dataclass(frozen=True)
class StoreState:
    status: str  # ok | unavailable | misconfigured | full
    location: str
    message: str = ""
    retry_after_s: int = 0

    def to_dict(self) -> dict[str, str]:
        # The probe is public: the state only. Where the store is and what it said go to the log.
        return {"status": self.status}


def state_of(store: FileStore, err: FileStoreError | None) -> StoreState:
    if err is None:
        return StoreState("ok", store.location)
    status = ("full" if isinstance(err, StoreFull) else
              "misconfigured" if isinstance(err, StoreMisconfigured) else "unavailable")
    return StoreState(status, store.location, err.message, int(getattr(err, "retry_after_s", 5)))


class StoreHealth:
    """The store's state, checked at most every ``ttl_s`` seconds (thread-safe)."""

    def __init__(self, store: FileStore, ttl_s: float = 2.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._state: StoreState | None = None
        self._at = 0.0

    def state(self) -> StoreState:
        with self._lock:
            if self._state is not None and time.monotonic() - self._at < self.ttl_s:
                return self._state
        try:
            self.store.check()
            state = state_of(self.store, None)
        except FileStoreError as err:
            state = state_of(self.store, err)
        self._set(state)
        return state

    def note_failure(self, err: FileStoreError) -> None:
        """A request met ``err``: the next health answer says so without waiting for the probe."""
        self._set(state_of(self.store, err))

    def _set(self, state: StoreState) -> None:
        with self._lock:
            before = self._state
            self._state, self._at = state, time.monotonic()
        if before is None or before.status != state.status:
            if state.status == "ok":
                log.info("file store %s: ok", state.location)
            else:
                log.warning("file store %s: %s: %s", state.location, state.status, state.message)
