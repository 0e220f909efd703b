"""The API under hostile input and faults: unstorable text, oversized and chunked bodies, a database
lost around a commit, throttled authentication, security headers, the cost budget. (A full or
failing file store: tests/test_api_store*.py, with the store back ends.)

Each case runs on SQLite and, when ``SMARTLOGGER_TEST_DATABASE_URL`` is set, on PostgreSQL: the
answer must be the same on both (PostgreSQL refuses NUL where SQLite would store it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, text

from smartlogger.api.db import database
from smartlogger.logfile import LogfileMetadata, simulated_credentials
from smartlogger.model import Generation, LoggerIdentity
from smartlogger.testing.api import ApiEnv, api_env, backends, simulated_logfiles
from smartlogger.testing.logfile_examples import EPOCH_2026_MS, example_log

SLOG = {"Content-Type": "application/vnd.smartlogger.slog"}


def _logfile_with(serial: str = "SIM-0100", firmware: str = "2.1.0", label: str = "B07",
                  test: dict[str, str] | None = None) -> bytes:
    """A signed simulated logfile whose header strings are as given (NUL and all)."""
    ident = LoggerIdentity(serial, Generation.GEN2, firmware, simulated=True)
    cred = simulated_credentials(ident)
    log = example_log(serial)
    att = log.sign(cred, bytes(16), EPOCH_2026_MS + 10**7, None)
    return log.logfile(ident, cred, [att], LogfileMetadata(label, 7, test or {"site": "x"}))


def _count_logfiles(env: ApiEnv) -> int:
    with database(env.app).system_session() as s:
        return int(s.execute(text("SELECT count(*) FROM logfiles")).scalar_one())


# ----------------------------------------------------------------------------- unstorable text


@pytest.mark.parametrize("kind", backends())
def test_nul_and_surrogates_are_422_naming_the_field(kind: str, tmp_path: Path) -> None:
    with api_env(kind, tmp_path) as env:
        c, h = env.client, env.a.headers("admin")
        cases = [
            ("post", "/api/sites", {"name": "Plant\x00North"}, "json.name"),
            ("post", "/api/sites", {"name": "ok", "customer": "Bank\ud800"}, "json.customer"),
            ("post", "/api/tests", {"blocks": 2, "load": "50A", "rated_time": "3h", "client_key": "k\x00"},
             "json.client_key"),
            ("post", "/api/tests", {"blocks": 2, "load": "50A", "rated_time": "3h",
                                    "metadata": {"site": "a\x00"}}, "json.metadata.site"),
            ("post", "/api/tests", {"blocks": 2, "load": "50A", "rated_time": "3h",
                                    "metadata": {"si\x00te": "a"}}, "json.metadata.<key>"),
            ("post", "/api/users", {"email": "x@y.example", "role": "viewer", "name": "\x00"}, "json.name"),
        ]
        for method, path, body, field in cases:
            r = getattr(c, method)(path, json=body, headers=h)
            assert r.status_code == 422, (path, body, r.get_json())
            err = r.get_json()["error"]
            assert err["field"] == field and "U+" in err["message"], err
        for query, field in (("/api/logfiles?serial=SIM%00", "query.serial"),
                             ("/api/logfiles?sha256=ab%00cd", "query.sha256"),
                             ("/api/audit?action=upload%00", "query.action")):
            r = c.get(query, headers=h)
            assert r.status_code == 422 and r.get_json()["error"]["field"] == field, (query, r.get_json())
        # Nothing was stored by any of them, and the API still works.
        assert c.get("/api/sites", headers=h).get_json() == []
        assert c.post("/api/sites", json={"name": "Plant North"}, headers=h).status_code == 201


@pytest.mark.parametrize("kind", backends())
def test_logfile_header_with_nul_is_refused_at_upload(kind: str, tmp_path: Path) -> None:
    """A firmware string ending in NUL (a C string's padding, say) was 201 on SQLite and 500 on
    PostgreSQL, which a sync client retries forever: now 422 naming the header field, on both."""
    with api_env(kind, tmp_path) as env:
        c, h = env.client, env.a.headers("technician")
        patched = bytearray(_logfile_with(serial="SIM-0100"))
        patched[patched.find(b"SIM-0100") + 7] = 0  # the serial's last byte NUL (hash aside)
        for data, field in ((_logfile_with(firmware="2.1.0\x00"), "identity.firmware"),
                            (bytes(patched), "identity.serial"),
                            (_logfile_with(label="B\x0007"), "metadata.block_label"),
                            (_logfile_with(test={"site": "Hall\x003"}), "metadata.test.site")):
            r = c.post("/api/logfiles", data=data, headers={**h, **SLOG})
            assert r.status_code == 422, r.get_json()
            err = r.get_json()["error"]
            assert err["code"] == "invalid_logfile" and err["field"] == "body"
            assert field in err["message"], err
        assert _count_logfiles(env) == 0
        r = c.post("/api/logfiles", data=_logfile_with(), headers={**h, **SLOG})
        assert r.status_code == 201


# ----------------------------------------------------------------------------- bodies and methods


def test_405_lists_the_allowed_methods(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env:
        r = env.client.delete("/api/health")
        assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
        assert set(r.headers["Allow"].split(", ")) >= {"GET", "HEAD"}
        r = env.client.put("/api/logfiles", headers=env.a.headers("admin"))
        assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}


@contextlib.contextmanager
def _served(app: object) -> Iterator[int]:
    """The app on a real HTTP server (werkzeug's, which terminates chunked bodies) on 127.0.0.1."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(10)


def _post_chunked(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(k, v)
        conn.endheaders()
        for i in range(0, len(body), 1 << 16):
            chunk = body[i:i + (1 << 16)]
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (BrokenPipeError, ConnectionResetError):  # the server may stop reading at the limit
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_chunked_body_over_the_limit_is_413_and_under_it_works(tmp_path: Path) -> None:
    files = simulated_logfiles(1)
    with api_env("sqlite", tmp_path, MAX_CONTENT_LENGTH=len(files[0]) + 100) as env, _served(env.app) as port:
        h = {**env.a.headers("technician"), **SLOG}
        status, body = _post_chunked(port, "/api/logfiles", files[0] + b"\x00" * 200, h)
        assert status == 413 and b'"payload_too_large"' in body
        status, body = _post_chunked(port, "/api/logfiles", files[0], h)
        assert status == 201, body
        assert _count_logfiles(env) == 1


# ----------------------------------------------------------------------------- a database lost at commit


@pytest.mark.skipif("postgresql" not in backends(), reason="needs SMARTLOGGER_TEST_DATABASE_URL")
def test_connection_lost_after_the_upload_committed_is_not_a_503(tmp_path: Path) -> None:
    """The upload's one-statement INSERT commits on its own connection; the request's other
    connection is then dropped by the server (as in a restart). Before, the follow-up query failed
    and the client got 503 "nothing was written" for a stored file; now it gets its 201."""
    with api_env("postgresql", tmp_path, DB_PING_AFTER_IDLE_SECONDS=3600) as env:
        c, h = env.client, env.a.headers("technician")
        t = c.post("/api/tests", json={"blocks": 2, "load": "50A", "rated_time": "3h"}, headers=h).get_json()
        files = simulated_logfiles(2)
        db = database(env.app)
        name = f"smartlogger:{env.schema}"

        def drop_others(conn: object, *_: object) -> None:
            # Terminate this app's other connections (the request session's), not ours.
            conn.exec_driver_sql(  # type: ignore[attr-defined]
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %(n)s AND pid <> pg_backend_pid()", {"n": name})

        def after_insert(conn: object, clause: object, *_: object) -> None:
            if "INSERT INTO logfiles" in str(clause):
                drop_others(conn)

        assert db.autocommit is not None
        event.listen(db.autocommit, "after_execute", after_insert)
        try:
            r = c.post(f"/api/logfiles?test_id={t['id']}", data=files[0], headers={**h, **SLOG})
        finally:
            event.remove(db.autocommit, "after_execute", after_insert)
        assert r.status_code == 201, r.get_json()
        again = c.post(f"/api/logfiles?test_id={t['id']}", data=files[0], headers={**h, **SLOG})
        assert again.status_code == 200 and again.get_json()["id"] == r.get_json()["id"]


# ----------------------------------------------------------------------------- throttling and headers


def test_failed_authentication_is_throttled_per_address_without_database_lookups(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path, AUTH_FAILURES_PER_MINUTE=5) as env:
        c = env.client
        lookups: list[str] = []
        engine = database(env.app).engine
        assert engine is not None

        def count(_conn: object, _cur: object, statement: str, *_: object) -> None:
            if "api_tokens" in statement:
                lookups.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        bad = {"Authorization": "Bearer slt_" + "x" * 43}
        codes = [c.get("/api/me", headers=bad).status_code for _ in range(8)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
        assert len(lookups) == 5  # the throttled ones never reached the token table
        r = c.get("/api/me", headers=env.a.headers("viewer"))  # the same address, a good token
        assert r.status_code == 429 and r.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        other = c.get("/api/me", headers=env.a.headers("viewer"), environ_base={"REMOTE_ADDR": "127.0.0.9"})
        assert other.status_code == 200  # another client address is not affected
        event.remove(engine, "before_cursor_execute", count)


def test_security_headers_and_docs_page_without_third_party_assets(tmp_path: Path) -> None:
    with api_env("sqlite", tmp_path) as env:
        c = env.client
        app = c.get("/app/")
        assert "frame-ancestors 'none'" in app.headers["Content-Security-Policy"]
        assert "script-src 'self'" in app.headers["Content-Security-Policy"]
        assert app.headers["X-Frame-Options"] == "DENY"
        api = c.get("/api/health")
        assert "frame-ancestors 'none'" in api.headers["Content-Security-Policy"]
        docs = c.get("/api/docs")
        assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]
        page = docs.data.decode()
        assert "http://" not in page and "https://" not in page and "<script>" not in page
        refs = re.findall(r'(?:src|href)="(/api/docs/assets/[^"]+)" integrity="(sha384-[^"]+)"', page)
        assert len(refs) == 3
        for url, sri in refs:
            asset = c.get(url)
            assert asset.status_code == 200
            assert sri == "sha384-" + base64.b64encode(hashlib.sha384(asset.data).digest()).decode()
        assert c.get("/api/docs/assets/index.html").status_code == 404


# ----------------------------------------------------------------------------- the cost budget


def test_a_sample_bomb_over_the_upload_limit_is_413_naming_it(tmp_path: Path) -> None:
    """A small file whose blocks declare more samples than MAX_UPLOAD_SAMPLES is refused before
    anything is stored; at the limit it is accepted, checked and charted within the batch bound."""
    from smartlogger.testing.hostile import sample_bomb

    with api_env("sqlite", tmp_path, MAX_UPLOAD_SAMPLES=1 << 18) as env:
        c, h = env.client, {**env.a.headers("technician"), **SLOG}
        r = c.post("/api/logfiles", data=sample_bomb((1 << 18) + 1, block_samples=1 << 16), headers=h)
        assert r.status_code == 413, r.get_json()
        err = r.get_json()["error"]
        assert err["code"] == "too_many_samples" and "262144" in err["message"] and "MAX_UPLOAD_SAMPLES" in err["message"]
        assert _count_logfiles(env) == 0
        ok = c.post("/api/logfiles", data=sample_bomb(1 << 18, block_samples=1 << 16), headers=h)
        assert ok.status_code == 201
        env.wait_jobs()
        got = c.get(f"/api/logfiles/{ok.get_json()['id']}", headers=h).get_json()
        assert got["verification_status"] != "unreadable"
        s = c.get(f"/api/logfiles/{ok.get_json()['id']}/series?max_points=100", headers=h).get_json()
        assert s["samples"] == 1 << 18 and s["reduced"] and len(s["t_ms"]) == 100 and set(s["mv"]) == {12_700}


def test_the_check_and_the_series_of_a_bomb_stay_within_one_decode_batch() -> None:
    """Memory follows the batch (logfile.format.BATCH_SAMPLES), not what the file declares: four
    batches' worth of samples cost what one does (tracemalloc counts numpy's buffers)."""
    import tracemalloc

    from smartlogger.export.chart_series import chart_series
    from smartlogger.logfile import check_sample_payloads, read_logfile
    from smartlogger.testing.hostile import sample_bomb

    peaks = {}
    for n in (1 << 20, 1 << 22):
        lf = read_logfile(sample_bomb(n), decode=False)
        tracemalloc.start()
        check_sample_payloads(lf)
        series = chart_series(lf, max_points=500)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert series.samples == n and series.reduced
    assert peaks[1 << 22] < 1.3 * peaks[1 << 20] and peaks[1 << 22] < 256 * 2**20, peaks


def test_the_analysis_of_a_bomb_holds_its_samples_within_the_per_sample_budget() -> None:
    """The analysis path (load as evidence, align, look for the discharge) must not materialise the
    file: its peak per declared sample stays within the budget of 256 MB for a file at the upload
    limit (256 MiB / MAX_UPLOAD_SAMPLES = 32 B per sample), measured at 2**21 samples with
    tracemalloc (numpy's buffers). Before the analysis was streamed it took ~73 B per sample."""
    import tracemalloc

    from smartlogger.analysis.analyze import analyze_test
    from smartlogger.analysis.inputs import MetadataError, metadata_from_values
    from smartlogger.analysis.loading import load_test_files
    from smartlogger.api.services import MAX_UPLOAD_SAMPLES
    from smartlogger.testing.hostile import sample_bomb

    n = 1 << 21
    data = sample_bomb(n, block_samples=1 << 16)
    tracemalloc.start()
    try:
        loaded = load_test_files([("bomb", data)])
        assert [len(log) for log in loaded.logs] == [n] and not loaded.excluded
        with pytest.raises(MetadataError, match="no discharge found"):
            analyze_test(loaded.logs, metadata_from_values(load="50A", rated_time="3h"), excluded=loaded.excluded)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    per_sample = (256 << 20) / MAX_UPLOAD_SAMPLES
    assert peak <= per_sample * n, f"{peak / n:.1f} B per sample, budget {per_sample:.0f}"


def test_a_window_of_more_samples_than_a_discharge_is_refused_and_a_long_one_coarsened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose every sample is below the start level is one long "discharge": the window's
    samples per logger are bounded (refused, named), and its grid times (a coarser step, warned)."""
    from smartlogger.analysis import analyze
    from smartlogger.analysis.inputs import MetadataError, metadata_from_values
    from smartlogger.analysis.loading import load_test_files
    from smartlogger.testing.hostile import sample_bomb

    meta = metadata_from_values(load="50A", rated_time="3h")
    loaded = load_test_files([("low", sample_bomb(5000, mv=11_500, block_samples=1000))])
    monkeypatch.setattr(analyze, "MAX_WINDOW_SAMPLES", 4000)
    with pytest.raises(MetadataError, match=r"holds 5,000 samples of SIM-BOMB \(at most 4,000 per logger\)"):
        analyze.analyze_test(loaded.logs, meta)
    monkeypatch.setattr(analyze, "MAX_WINDOW_SAMPLES", 5000)
    monkeypatch.setattr(analyze, "MAX_GRID_POINTS", 2000)
    result = analyze.analyze_test(loaded.logs, meta)
    assert result.grid_step_s == 3.0 and any("analysed on a 3 s grid" in w for w in result.warnings)


def test_a_test_whose_files_declare_more_than_the_analysis_budget_fails_naming_it(tmp_path: Path) -> None:
    from sqlalchemy import select

    from smartlogger.api.models import Job
    from smartlogger.testing.hostile import sample_bomb

    with api_env("sqlite", tmp_path, ANALYSIS_MAX_SAMPLES=100_000) as env:
        c, h = env.client, env.a.headers("technician")
        t = c.post("/api/tests", json={"blocks": 1, "load": "50A", "rated_time": "3h"}, headers=h).get_json()
        r = c.post(f"/api/logfiles?test_id={t['id']}", data=sample_bomb(100_001), headers={**h, **SLOG})
        assert r.status_code == 201
        env.wait_jobs()
        with database(env.app).system_session() as s:
            job = s.scalars(select(Job).where(Job.kind == "analyse")).one()
            assert job.status == "failed" and job.attempts == 1
            # The budget counts the samples the analysis holds (no float history to leave out here).
            assert "hold 100001 samples" in job.error and "ANALYSIS_MAX_SAMPLES" in job.error, job.error
        assert c.get(f"/api/tests/{t['id']}", headers=h).get_json()["status"] == "failed"
