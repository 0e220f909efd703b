"""Input hygiene at the edge: text that a database cannot store is refused, naming the field.

PostgreSQL cannot store a NUL character (U+0000) in any text value (psycopg2 refuses the
parameter), and neither database driver can encode an unpaired UTF-16 surrogate
(U+D800..U+DFFF, which JSON's ``\\ud800`` escapes produce). SQLite would store a NUL; the API
refuses it there too, so a client gets the same answer from both databases: 422 with the field.

Owns ``text_problem`` (what is wrong with one string), the webargs parser every blueprint uses
(``HygieneParser``: JSON bodies and query strings, keys and values, at any depth, before the
schema sees them) with the ``Blueprint`` that carries it, ``check_logfile_text`` (the strings a
logfile's header carries: identity, phone metadata, configuration history) and ``storable`` (for
values the server itself takes from a request, such as the client address).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import flask_smorest
import marshmallow as ma
from webargs.flaskparser import FlaskParser

from smartlogger.logfile import Logfile

_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None if it can."""
    m = _BAD.search(text)
    if m is None:
        return None
    ch = m.group()
    if ch == "\x00":
        return f"contains a NUL character (U+0000) at position {m.start()}, which cannot be stored"
    return (f"contains an unpaired surrogate (U+{ord(ch):04X}) at position {m.start()}, "
            "which is not valid Unicode text")


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(dotted path, problem) for every string (dictionary keys too) that cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield path, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (problem := text_problem(key)):
                yield f"{path}.<key>" if path else "<key>", f"a key {problem}"
            yield from _walk(item, sub)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}.{i}" if path else str(i))


def first_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first (path, problem) in ``value`` (JSON-like), or None."""
    return next(_walk(value, path), None)


def _refuse(found: tuple[str, str]) -> ma.ValidationError:
    path, problem = found
    # Nested as marshmallow reports fields, so the error's field is "json.<path>" / "query.<name>".
    messages: Any = [problem]
    for part in reversed(path.split(".")):
        messages = {part: messages}
    return ma.ValidationError(messages)


class HygieneParser(FlaskParser):
    """webargs' Flask parser refusing unstorable text in JSON bodies and query strings (422)."""

    def load_json(self, req: Any, schema: ma.Schema) -> Any:
        data = super().load_json(req, schema)
        found = first_problem(data) if data is not ma.missing else None
        if found is not None:
            raise _refuse(found)
        return data

    def load_querystring(self, req: Any, schema: ma.Schema) -> Any:
        for key in req.args:
            values = req.args.getlist(key)
            found = first_problem({key: values if len(values) > 1 else values[0]})
            if found is not None:
                raise _refuse(found)
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest's ``Blueprint`` with ``HygieneParser`` (its documented extension point)."""

    ARGUMENTS_PARSER = HygieneParser()


def check_logfile_text(lf: Logfile) -> tuple[str, str] | None:
    """The first header string of ``lf`` that cannot be stored: ``(field, problem)``, or None.

    Fields are named as in docs/LOGFILE_FORMAT.md: ``identity.serial``, ``identity.firmware``,
    ``metadata.block_label``, ``metadata.test.<key>``, ``config_history.<i>.block_label``, ...
    """
    ident = lf.identity
    values: dict[str, Any] = {
        "identity": {"serial": ident.serial, "firmware": ident.firmware},
        "metadata": {"block_label": lf.metadata.block_label, "test": dict(lf.metadata.test)},
        "config_history": [{"block_label": c.config.block_label, "test_id": c.config.test_id}
                           for c in lf.config_history],
    }
    if lf.certificate is not None:
        values["certificate"] = {"serial": lf.certificate.identity.serial,
                                 "firmware": lf.certificate.identity.firmware}
    return first_problem(values)


def storable(text: str, limit: int | None = None) -> str:
    """``text`` with what cannot be stored replaced by U+FFFD (for values the server records
    itself, e.g. a client address taken from ``X-Forwarded-For``), cut to ``limit``."""
    clean = _BAD.sub("\ufffd", text)
    return clean[:limit] if limit is not None else clean
