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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from smartlogger.errors import ResetRefused
from smartlogger.model import Event, EventKind, Record


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


class MemoryStore:
    """Unbounded in-RAM ``LogStore``. Optional ``capacity`` makes it a ring of that many records."""

    def __init__(self, capacity: int | None = None) -> None:
        self._records: list[tuple[int, Record]] = []
        self._next = 0
        self._read_up_to = 0
        self._capacity = capacity
        self._reset_floor = 0  # oldest_seq after the last reset

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
        self._next += 1
        if self._capacity is not None and len(self._records) > self._capacity:
            del self._records[: len(self._records) - self._capacity]
        return seq

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
        self._records.clear()
        self._reset_floor = self._next
        self.append(Event(t_ms, EventKind.RESET, value=1 if force else 0))
        self._read_up_to = self._reset_floor

    def flush(self) -> None:
        return None
