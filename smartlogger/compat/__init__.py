"""Adapters for the private interfaces of our dependencies: one module per dependency.

Where smartlogger must reach past a dependency's public API (a private base class, a hook, an
attribute with a leading underscore), that access lives in ``smartlogger.compat.<dependency>`` and
nowhere else. Each adapter calls :func:`require` at import, so an installed release outside the
range the adapter was written and tested against fails at once with a message that names the
supported range, instead of misbehaving later. The tested versions are pinned in
``constraints.txt`` at the top of the repository.
"""

from __future__ import annotations

from importlib import metadata

from smartlogger.errors import SmartLoggerError

__all__ = ["UnsupportedDependency", "require"]


class UnsupportedDependency(SmartLoggerError, ImportError):
    """An installed dependency is outside the version range its adapter supports."""

    exit_code = 3

    def __init__(self, dist: str, installed: str, supported: str) -> None:
        self.dist = dist
        self.installed = installed
        self.supported = supported
        super().__init__(
            f"{dist} {installed} is installed, but smartlogger supports {dist} {supported}; "
            f"install the tested versions with: pip install -c constraints.txt -e ."
        )


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string (``"0.0.236"`` -> ``(0, 0, 236)``)."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def require(dist: str, minimum: str, below: str) -> str:
    """Check that ``minimum <= installed < below`` for distribution ``dist``; return the
    installed version. Raises ``UnsupportedDependency`` otherwise."""
    installed = metadata.version(dist)
    if not (_release(minimum) <= _release(installed) < _release(below)):
        raise UnsupportedDependency(dist, installed, f">={minimum},<{below}")
    return installed
