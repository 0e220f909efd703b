"""Adapter for nfcpy's private interfaces: the ``udp`` driver's listen loop on a bound socket.

The field tool uses nfcpy's public API only (``ContactlessFrontend``, ``connect``, ``sense``,
``exchange``, the ``Type2Tag`` classes). The tag emulator (``device.nfc_tag.TagEmulator``)
plays a tag on nfcpy's ``udp`` driver and needs one thing the public API does not give:
staying in the field between presentations. nfcpy's public ``listen()`` closes and re-binds
the UDP socket; the reader sends its SENS_REQ right after RFOFF, and a closed socket drops
it, so the reader would wait a full second per logger. The ``udp`` driver's own listen loop
(``Device._listen_tta(target, time_to_return)``) runs on the still-bound socket, exactly like
a tag that stays in the field while the reader resets it: ``listen_on_bound_socket``.

The supported range is checked at import; the tested version is pinned in constraints.txt.
Without the hook (another driver, or an nfcpy that dropped it) the emulator falls back to the
public ``listen()`` and is only slower.
"""

from __future__ import annotations

import importlib
import threading
import time
from types import ModuleType
from typing import Any

from smartlogger.compat import require

NFCPY_VERSION = require("nfcpy", "1.0.4", "1.1")

__all__ = ["NFCPY_VERSION", "listen_on_bound_socket", "load_nfcpy"]

#: nfcpy's modules we use, imported together (the udp driver is what ``udp:`` paths open).
_MODULES = ("nfc", "nfc.clf", "nfc.clf.udp", "nfc.tag", "nfc.tag.tt2", "nfc.tag.tt2_nxp")
_import_lock = threading.Lock()


def load_nfcpy() -> ModuleType:
    """nfcpy's ``nfc`` package, with its reader, udp driver and Type 2 tag modules imported.

    Every import of nfcpy in smartlogger goes through here: one place that names the modules we
    use, after the version check above, one thread at a time (the tag emulator's thread and the
    reader's thread start at once). Raises ImportError as import does, also when another module
    named ``nfc`` shadows nfcpy (a test suite once put ``benchmarks/``, which has an ``nfc.py``,
    first on ``sys.path``)."""
    with _import_lock:
        nfc = importlib.import_module("nfc")
        if not hasattr(nfc, "__path__"):  # e.g. a folder on sys.path with an nfc.py in it
            raise ImportError(f"'nfc' is {getattr(nfc, '__file__', nfc)!r}, not nfcpy: "
                              "something on sys.path shadows the nfcpy package")
        for name in _MODULES[1:]:
            importlib.import_module(name)
        return nfc


def listen_on_bound_socket(clf: Any, target: Any, timeout_s: float) -> Any:
    """Be selected as ``target`` within ``timeout_s`` on the reader's already bound socket.

    Returns the activated target (also set as ``clf.target``, as ``listen()`` would) or None
    on timeout. Falls back to ``clf.listen(target, timeout_s)`` where the driver has no such
    loop."""
    listen = getattr(clf.device, "_listen_tta", None)
    if listen is None:
        return clf.listen(target, timeout_s)
    activated = listen(target, time.time() + timeout_s)
    if activated is not None:
        clf.target = activated
    return activated
