"""The exception tree: one root, ``SmartLoggerError``, and subclasses that carry facts.

Each part adds finer subclasses in its own modules, always under one of the
classes here, so a caller (the CLI, the API) can catch ``SmartLoggerError``
and show ``str(err)`` as a one-line message. Builtins are mixed in where the
meaning matches (bad values are also ``ValueError``).
"""

from __future__ import annotations


class SmartLoggerError(Exception):
    """Root of every error smartlogger raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it.
    """

    exit_code: int = 1


class ConfigError(SmartLoggerError, ValueError):
    """An invalid logger configuration, threshold profile or block type.

    ``field`` names the offending field (dotted path, e.g. ``thresholds.v_low_warn_mv``).
    """

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InputFileError(SmartLoggerError, ValueError):
    """A user-supplied file (trace CSV, load CSV, datasheet, profile) is unusable.

    ``path``, ``line`` (1-based, None if not line-related) and ``column`` locate it.
    """

    exit_code = 2

    def __init__(
        self, path: str, message: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        where = path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class SimulationError(SmartLoggerError):
    """The simulation was asked for something it cannot model."""


class StoreError(SmartLoggerError):
    """The logger's log store refused or failed an operation."""


class ResetRefused(StoreError):
    """A reset for reuse was refused; ``reason`` says why (e.g. unread records)."""

    def __init__(self, reason: str, *, unread_from_seq: int | None = None) -> None:
        self.reason = reason
        self.unread_from_seq = unread_from_seq
        super().__init__(f"reset refused: {reason}")


class FlashError(SmartLoggerError):
    """The NOR flash model reports a fault (bad sector, wear-out, out of range)."""


class LogfileError(SmartLoggerError, ValueError):
    """A logfile (or a record inside one) cannot be decoded.

    ``offset`` is the byte offset in the file where the problem was found.
    """

    exit_code = 4

    def __init__(self, message: str, *, offset: int | None = None, path: str | None = None) -> None:
        self.message = message
        self.offset = offset
        self.path = path
        where = ""
        if path is not None:
            where += f"{path}: "
        if offset is not None:
            where += f"at byte {offset}: "
        super().__init__(f"{where}{message}")


class TransportError(SmartLoggerError):
    """NFC or BLE communication with a logger failed (``serial`` if known)."""

    def __init__(self, message: str, *, serial: str | None = None) -> None:
        self.serial = serial
        super().__init__(f"{serial}: {message}" if serial else message)


class AnalysisError(SmartLoggerError, ValueError):
    """A capacity test cannot be analysed as asked (bad metadata, no discharge, ...)."""

    exit_code = 2


class ExportError(SmartLoggerError):
    """A workbook or data export could not be written."""
