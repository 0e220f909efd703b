"""Custody: what a party that keeps every upload of a logger can tell that one ``verify`` cannot.

A file verifies on its own; whether it is the logger's *latest* pull, and whether the logger has
one device key, needs memory. A custodian (the API server) keeps per logger its registered kind
(hardware, or SIMULATED/REPLAYED), the device key it first saw certified and the highest signed
pull counter seen under that key (``LoggerCustody``), and judges each new file against it:

- ``check_provenance``: a SIMULATED or REPLAYED file never joins a logger registered as hardware,
  nor a hardware file a simulated one (``ProvenanceConflict``, the API answers 409);
- ``custody_flags``: a certified file under another device key is a *possible clone*; a file whose
  latest pull counter is below the highest already seen is an *older pull after a newer one*
  (*possible replay*). Flags are recorded, never silent, and never change the file's status;
- ``after``: the state once the file is accepted (first key registered, counter raised).

Pure functions on ``VerifyReport`` values; storage is the caller's (``api.services``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from smartlogger.errors import SmartLoggerError
from smartlogger.logfile.verify import VerifyReport

#: Flag kinds.
POSSIBLE_CLONE: Final = "possible_clone"
POSSIBLE_REPLAY: Final = "possible_replay"
#: Statuses whose certificate and pull counter are trustworthy enough to keep custody by.
_SIGNED_INTACT: Final = ("verified", "simulated")


@dataclass(frozen=True)
class LoggerCustody:
    """What the custodian holds about one logger."""

    serial: str
    hardware: bool  # registered as real hardware (else SIMULATED/REPLAYED)
    device_key: str | None = None  # fingerprint of the first certified device key seen
    max_pull_counter: int | None = None  # highest signed pull counter seen under that key


@dataclass(frozen=True)
class CustodyFlag:
    kind: str  # POSSIBLE_CLONE or POSSIBLE_REPLAY
    message: str


class ProvenanceConflict(SmartLoggerError, ValueError):
    """A file of one kind (hardware or SIMULATED/REPLAYED) for a logger registered as the other."""

    exit_code = 5

    def __init__(self, serial: str, message: str) -> None:
        self.serial = serial
        self.message = message
        super().__init__(message)


def _kind(markers: tuple[str, ...] | list[str]) -> str:
    return " + ".join(markers) if markers else "hardware"


def check_provenance(report: VerifyReport, custody: LoggerCustody) -> None:
    """Raise ``ProvenanceConflict`` if the file's kind differs from the logger's registered kind.

    The file's kind is its header's markers (inside the signed certificate for an intact signed
    file; a tampered file is judged by what it claims)."""
    simulated_file = bool(report.markers)
    if custody.hardware and simulated_file:
        raise ProvenanceConflict(custody.serial, (
            f"{custody.serial} is registered as a hardware logger; this file is from a "
            f"{_kind(report.markers)} logger ({report.status}): a simulated or replayed file cannot join a "
            "hardware logger's history"))
    if not custody.hardware and not simulated_file:
        raise ProvenanceConflict(custody.serial, (
            f"{custody.serial} is registered as a SIMULATED/REPLAYED logger; this file claims real hardware "
            f"({report.status}): it cannot join a simulated logger's history"))


def custody_flags(report: VerifyReport, custody: LoggerCustody) -> list[CustodyFlag]:
    """Possible clone and possible replay of a file against the logger's custody (none for files whose
    certificate and counter cannot be trusted: unsigned, tampered, unreadable)."""
    if report.status not in _SIGNED_INTACT or not report.device_key:
        return []
    flags = []
    counter = report.latest_pull["counter"] if report.latest_pull else None
    if custody.device_key is not None and report.device_key != custody.device_key:
        flags.append(CustodyFlag(POSSIBLE_CLONE, (
            f"{custody.serial} is registered with device key {custody.device_key}, but this file is "
            f"certified under key {report.device_key}: two keys for one serial, possible clone")))
    elif custody.max_pull_counter is not None and counter is not None and counter < custody.max_pull_counter:
        flags.append(CustodyFlag(POSSIBLE_REPLAY, (
            f"this file's latest pull of {custody.serial} is #{counter}, but pull #{custody.max_pull_counter} "
            "was already received: an older pull after a newer one, possible replay")))
    return flags


def after(report: VerifyReport, custody: LoggerCustody) -> LoggerCustody:
    """The custody once the file is kept: the first certified key is registered; the highest pull
    counter under the registered key is raised."""
    if report.status not in _SIGNED_INTACT or not report.device_key:
        return custody
    key = custody.device_key or report.device_key
    if report.device_key != key:
        return custody  # a clone's counter says nothing about this logger
    counter = report.latest_pull["counter"] if report.latest_pull else None
    if counter is None:
        return replace(custody, device_key=key)
    high = counter if custody.max_pull_counter is None else max(custody.max_pull_counter, counter)
    return replace(custody, device_key=key, max_pull_counter=high)
