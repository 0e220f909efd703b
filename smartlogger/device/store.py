"""The storage seam of the firmware: where a logger's records go.

Owns the ``LogStore`` contract and ``MemoryStore``, the in-RAM implementation
used before (and besides) the NOR-flash blackbox in ``device.blackbox``.
Does not own record encoding (``logfile.records``) or the flash layout.

Contract:
- ``append`` gives every record the next sequence number (``next_seq``); a
  sequence number is never reused, also not across ``reset``.
- ``records(from_seq)`` yields ``(seq, record)`` in sequence order starting at
  ``max(from_seq, oldest_seq)``; records older than ``oldest_seq`` have been
  overwritten (ring) or reset.
- ``mark_read(up_to_seq)`` records that everything below ``up_to_seq`` was pulled
  and verified; ``reset`` is refused (``ResetRefused``) while unread records
  exist, unless ``force=True``, and a forced reset is itself logged.
- Two streams, each with its own sequence numbers and hash chain
  (``logfile.chain``): stream 0 "main" is what ``append``/``records`` handle;
  stream 1 "summary" holds the long-lived copies a blackbox keeps
  (``summary_records``). ``chain_anchor(stream)`` is ``(oldest available seq,
  chain value just before it)`` and ``chain_head(stream)`` is ``(next_seq, chain
  value after the newest record)``; a verifier recomputes the chain from the
  anchor over the records and compares it with the (signed) head.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from smartlogger.errors import ResetRefused, StoreError
from smartlogger.logfile import chain
from smartlogger.logfile.records import encode_record
from smartlogger.model import Event, EventKind, Record

#: Stream numbers of a logger's log.
MAIN_STREAM = 0
SUMMARY_STREAM = 1


def stream_genesis(serial: str, stream: int) -> bytes:
    """The chain value before the first record of ``stream`` of logger ``serial`` (``chain.stream_genesis``)."""
    if stream not in (MAIN_STREAM, SUMMARY_STREAM):
        raise StoreError(f"stream {stream} does not exist (0 = main, 1 = summary)")
    return chain.stream_genesis(serial, stream)


@runtime_checkable
class LogStore(Protocol):
    """A logger's append-only log (see module docstring for the contract)."""

    @property
    def next_seq(self) -> int: ...

    @property
    def oldest_seq(self) -> int: ...

    @property
    def read_up_to_seq(self) -> int: ...

    def append(self, record: Record) -> int: ...

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]: ...

    def mark_read(self, up_to_seq: int) -> None: ...

    def reset(self, *, t_ms: int, force: bool = False) -> None: ...

    def flush(self) -> None: ...

    def chain_anchor(self, stream: int = 0) -> tuple[int, bytes]: ...

    def chain_head(self, stream: int = 0) -> tuple[int, bytes]: ...

    def summary_records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]: ...


class MemoryStore:
    """Unbounded in-RAM ``LogStore``. Optional ``capacity`` makes it a ring of that many records.

    ``serial`` starts the hash chains (``bind_serial`` can supply it later, as long as
    no record has been overwritten yet). The summary stream of a ``MemoryStore`` is empty.
    """

    def __init__(self, capacity: int | None = None, *, serial: str | None = None) -> None:
        self._records: list[tuple[int, Record]] = []
        self._next = 0
        self._read_up_to = 0
        self._capacity = capacity
        self._reset_floor = 0  # oldest_seq after the last reset
        self._serial: str | None = None
        self._anchor = b""  # chain value before the oldest kept record
        self._head = b""  # chain value after the newest record
        self._hash_after: list[bytes] = []  # parallel to _records, chain value after each
        if serial is not None:
            self.bind_serial(serial)

    def bind_serial(self, serial: str) -> None:
        """Start the chains for logger ``serial``; recomputes over the kept records."""
        if self._serial == serial:
            return
        if self._next and (not self._records or self._records[0][0] != 0):
            raise StoreError(f"cannot start the chain for {serial}: records before seq "
                             f"{self.oldest_seq} are gone")
        self._serial = serial
        self._anchor = self._head = chain.stream_genesis(serial, MAIN_STREAM)
        self._hash_after = []
        for seq, record in self._records:
            self._head = chain.chain_next(self._head, seq, encode_record(record))
            self._hash_after.append(self._head)

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def oldest_seq(self) -> int:
        return self._records[0][0] if self._records else self._next

    @property
    def read_up_to_seq(self) -> int:
        return self._read_up_to

    def append(self, record: Record) -> int:
        seq = self._next
        self._records.append((seq, record))
        if self._serial is not None:
            self._head = chain.chain_next(self._head, seq, encode_record(record))
            self._hash_after.append(self._head)
        self._next += 1
        if self._capacity is not None and len(self._records) > self._capacity:
            self._drop_oldest(len(self._records) - self._capacity)
        return seq

    def _drop_oldest(self, count: int) -> None:
        if self._serial is not None and count:
            self._anchor = self._hash_after[count - 1]
            del self._hash_after[:count]
        del self._records[:count]

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]:
        if not self._records:
            return
        start = max(0, from_seq - self._records[0][0])
        yield from self._records[start:]

    def mark_read(self, up_to_seq: int) -> None:
        self._read_up_to = max(self._read_up_to, min(up_to_seq, self._next))

    def reset(self, *, t_ms: int, force: bool = False) -> None:
        unread_from = max(self._read_up_to, self._reset_floor)
        if unread_from < self._next and not force:
            raise ResetRefused(
                f"records {unread_from}..{self._next - 1} since the last reset have not been read out",
                unread_from_seq=unread_from,
            )
        self._drop_oldest(len(self._records))
        self._reset_floor = self._next
        self.append(Event(t_ms, EventKind.RESET, value=1 if force else 0))
        self._read_up_to = self._reset_floor

    def flush(self) -> None:
        return None

    def chain_anchor(self, stream: int = 0) -> tuple[int, bytes]:
        if stream == MAIN_STREAM:
            return self.oldest_seq, self._chain_value(self._anchor)
        return 0, stream_genesis(self._need_serial(), stream)

    def chain_head(self, stream: int = 0) -> tuple[int, bytes]:
        if stream == MAIN_STREAM:
            return self._next, self._chain_value(self._head)
        return 0, stream_genesis(self._need_serial(), stream)

    def summary_records(self, from_seq: int = 0) -> Iterator[tuple[int, Record]]:
        return iter(())

    def _chain_value(self, value: bytes) -> bytes:
        self._need_serial()
        return value

    def _need_serial(self) -> str:
        if self._serial is None:
            raise StoreError("this MemoryStore has no serial, so its hash chain is unknown "
                             "(pass serial= or call bind_serial)")
        return self._serial
