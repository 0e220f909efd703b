"""The API passes data, not folders: no temporary file or folder outside the file store's own writes.

The library seams take bytes and objects (logfiles, datasheets, results, workbooks), so the
API never writes a file to hand it to a library function. Checked two ways:

- statically: no module of ``smartlogger/api`` but the file store imports ``tempfile``;
- at run time, through a whole test's life on the API (upload, deferred checks, analysis,
  report workbook, series, a datasheet given as text): the temporary-file functions record
  every call, and the default temporary directory points at a folder that does not exist,
  so a library that creates a temporary file behind our back (openpyxl's write-only sheets
  do by default) fails the workflow instead of passing quietly. Only the file store's
  atomic writes (``mkstemp`` inside the store's own folder) are allowed.
"""

from __future__ import annotations

import ast
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from smartlogger.testing.api import ApiEnv, api_env, simulated_logfiles

ROOT = Path(__file__).resolve().parents[1]
DATASHEET = (ROOT / "tests" / "data" / "datasheet_synthetic_12v100.csv").read_text(encoding="utf-8")
OCTET = "application/octet-stream"
_WATCHED = ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile",
            "TemporaryDirectory")


def test_no_api_module_but_the_file_store_uses_tempfile() -> None:
    users = []
    for path in sorted((ROOT / "smartlogger" / "api").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "tempfile" for n in names):
                users.append(path.relative_to(ROOT).as_posix())
    assert users == ["smartlogger/api/filestore.py"]


@contextmanager
def watch_tempfiles(tmp_path: Path) -> Iterator[list[tuple[str, Any, str]]]:
    """Record every tempfile call (name, ``dir`` argument, stack); default temp dir made unusable."""
    calls: list[tuple[str, Any, str]] = []

    def watch(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, kwargs.get("dir"), "".join(traceback.format_stack(limit=12))))
            return real(*args, **kwargs)
        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        for name in _WATCHED:
            mp.setattr(tempfile, name, watch(name, getattr(tempfile, name)))
        mp.setattr(tempfile, "tempdir", str(tmp_path / "no-temporary-files-here"))
        yield calls


def _strays(calls: list[tuple[str, Any, str]], files_dir: Path) -> list[str]:
    return [f"{name}(dir={d!r}) from\n{stack}" for name, d, stack in calls
            if d is None or not Path(d).resolve().is_relative_to(files_dir.resolve())]


def test_a_whole_test_on_the_api_writes_no_temporary_file(tmp_path: Path) -> None:
    logfiles = simulated_logfiles(4)
    env: ApiEnv
    # The test's own database (a throw-away SQLite file) is made before the watch starts.
    with api_env("sqlite", tmp_path / "api") as env, watch_tempfiles(tmp_path) as temp_calls:
        c, tech, viewer = env.client, env.a.headers("technician"), env.a.headers("viewer")
        # A datasheet arrives as text and is parsed as text (it used to take a trip through a file).
        sheet = c.post("/api/tests", headers=tech, json={"load": "10A", "blocks": 4, "datasheet_csv": DATASHEET})
        assert sheet.status_code == 201, sheet.get_json()
        bad = c.post("/api/tests", headers=tech, json={"load": "10A", "blocks": 4,
                                                        "datasheet_csv": DATASHEET.replace("1.7,", "x,", 1)})
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "datasheet_csv"
        tid = c.post("/api/tests", headers=tech, json={"load": "50A", "rated_time": "2h", "blocks": 4}
                     ).get_json()["id"]
        ids = []
        for data in logfiles:
            r = c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=data, content_type=OCTET)
            assert r.status_code == 201
            ids.append(r.get_json()["id"])
        env.wait_jobs()  # check jobs, the analysis and the report it enqueues
        assert c.get(f"/api/tests/{tid}", headers=viewer).get_json()["status"] == "analysed"
        rep = c.get(f"/api/tests/{tid}/report", headers=viewer).get_json()
        assert rep["status"] == "ready", rep
        xlsx = c.get(rep["download"], headers=viewer)
        assert xlsx.status_code == 200 and xlsx.data[:4] == b"PK\x03\x04"
        series = c.get(f"/api/logfiles/{ids[0]}/series?max_points=50", headers=viewer)
        assert series.status_code == 200 and series.get_json()["reduced"]
        assert c.get(f"/api/logfiles/{ids[0]}", headers=viewer).status_code == 200
        files_dir = Path(env.app.config["FILES_DIR"])
    allowed = [name for name, d, _ in temp_calls if d is not None
               and Path(d).resolve().is_relative_to(files_dir.resolve())]
    assert allowed, "the file store's atomic writes were not seen: the watch itself is broken"
    assert not _strays(temp_calls, files_dir), "temporary files outside the file store:\n" + "\n".join(
        _strays(temp_calls, files_dir))


def test_the_watch_catches_a_temporary_file(tmp_path: Path) -> None:
    """The run-time check can fail: a temporary folder in the default place is both refused
    (the default temp dir does not exist) and recorded."""
    with watch_tempfiles(tmp_path) as temp_calls, pytest.raises(FileNotFoundError):
        tempfile.mkdtemp()
    assert _strays(temp_calls, tmp_path / "files")
