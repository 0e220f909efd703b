"""The live state of a test (``PUT``/``GET /api/tests/{id}/live``): roles, tenancy, customer viewers,
bounds, replacement; on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from smartlogger.api.models import LiveSnapshot
from smartlogger.api.schemas import MAX_LIVE_BLOCKS
from smartlogger.testing.api import ApiEnv, api_env, backends


@pytest.fixture(scope="module", params=backends())
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    with api_env(request.param, tmp_path_factory.mktemp("api")) as e:
        yield e


def _snap(now_ms: int = 1_780_000_000_000, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "now_ms": now_ms, "started_ms": now_ms - 600_000, "string_v": 47.9, "blocks_expected": 4,
        "blocks_seen": 4, "discharge_start_ms": now_ms - 300_000, "elapsed_s": 300.0, "delivered_ah": 4.2,
        "predicted_end_ms": now_ms + 3_600_000, "predicted_first_block": 3, "warning_blocks": [3],
        "alarm_blocks": [], "stale": [], "missing": [],
        "alarm": None, "accepted": 1200, "rejected": {"bad_mac": 2},
        "blocks": [{"position": p, "v": 12.0 - 0.1 * p, "c": 21.5, "state": "discharge", "warning": p == 3,
                    "stale": False, "min_v": 11.9 - 0.1 * p, "age_s": 0.8, "to_end_s": 3600.0 + p}
                   for p in (1, 2, 3, 4)],
    }
    body.update(kw)
    return body


def _test(env: ApiEnv, tenant: str = "a", **kw: Any) -> int:
    t = env.a if tenant == "a" else env.b
    r = env.client.post("/api/tests", headers=t.headers("technician"), json={"load": "20A", "blocks": 4, **kw})
    assert r.status_code == 201, r.get_json()
    return int(r.get_json()["id"])


def test_a_technician_posts_and_a_viewer_reads_the_newest_state_with_its_age(env: ApiEnv) -> None:
    c, tid = env.client, _test(env)
    url = f"/api/tests/{tid}/live"
    empty = c.get(url, headers=env.a.headers("viewer"))
    assert empty.status_code == 200
    assert empty.get_json() == {"test_id": tid, "received_at": None, "age_s": None, "snapshot": None}
    first = c.put(url, headers=env.a.headers("technician"), json=_snap())
    assert first.status_code == 200, first.get_json()
    second = c.put(url, headers=env.a.headers("admin"), json=_snap(1_780_000_002_000, string_v=47.8))
    assert second.status_code == 200
    got = c.get(url, headers=env.a.headers("viewer")).get_json()
    assert got["snapshot"]["now_ms"] == 1_780_000_002_000 and got["snapshot"]["string_v"] == 47.8
    assert got["snapshot"]["blocks"][2] == _snap()["blocks"][2]
    assert got["received_at"] >= first.get_json()["received_at"] and 0 <= got["age_s"] < 60
    with env.app.app_context():
        from smartlogger.api.db import database

        s = database(env.app).session
        assert len([r for r in s.query(LiveSnapshot).all() if r.test_id == tid]) == 1  # replaced, not added
        s.close()


def test_roles_tenancy_and_customer_viewers(env: ApiEnv) -> None:
    c = env.client
    tid = _test(env)
    url = f"/api/tests/{tid}/live"
    assert c.put(url, json=_snap()).status_code == 401
    assert c.get(url).status_code == 401
    r = c.put(url, headers=env.a.headers("viewer"), json=_snap())
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    assert c.put(url, headers=env.a.headers("technician"), json=_snap()).status_code == 200
    # another organisation: exactly like a test that does not exist
    for method in ("get", "put"):
        r = getattr(c, method)(url, headers=env.b.headers("admin"), json=_snap())
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found", method
    assert c.put(f"/api/tests/{_test(env, 'b')}/live", headers=env.a.headers("admin"),
                 json=_snap()).status_code == 404
    assert c.get("/api/tests/2147483647/live", headers=env.a.headers("viewer")).status_code == 404
    # a customer's viewer reads the live state of that customer's tests only
    tech, admin = env.a.headers("technician"), env.a.headers("admin")
    ids = {}
    for customer in ("Bank", "Hospital"):
        site = c.post("/api/sites", headers=tech, json={"name": f"{customer} live", "customer": customer}).get_json()
        system = c.post("/api/systems", headers=tech, json={"site_id": site["id"], "name": "UPS"}).get_json()
        string = c.post("/api/strings", headers=tech, json={"system_id": system["id"], "name": "S",
                                                             "blocks": 4}).get_json()
        ids[customer] = _test(env, string_id=string["id"])
        assert c.put(f"/api/tests/{ids[customer]}/live", headers=tech, json=_snap()).status_code == 200
    user = c.post("/api/users", headers=admin, json={"email": "live@bank.example", "role": "viewer",
                                                      "customer": "Bank"}).get_json()
    h = {"Authorization": "Bearer " + c.post("/api/tokens", headers=admin,
                                             json={"user_id": user["id"]}).get_json()["token"]}
    assert c.get(f"/api/tests/{ids['Bank']}/live", headers=h).get_json()["snapshot"]["string_v"] == 47.9
    assert c.get(f"/api/tests/{ids['Hospital']}/live", headers=h).status_code == 404
    assert c.put(f"/api/tests/{ids['Bank']}/live", headers=h, json=_snap()).status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"blocks": [_snap()["blocks"][0]] * (MAX_LIVE_BLOCKS + 1)}, "json.blocks"),
    ({"missing": list(range(1, 10_002))}, "json.missing"),
    ({"rejected": {"x" * 33: 1}}, "json.rejected"),
    ({"rejected": {f"r{i}": 1 for i in range(17)}}, "json.rejected"),
    ({"string_v": -1.0}, "json.string_v"),
    ({"now_ms": 2**53 + 1}, "json.now_ms"),
    ({"blocks": [{"position": 0, "v": 12.0, "state": "discharge"}]}, "json.blocks.0.position"),
    ({"blocks": [{"position": 1, "v": 12.0, "state": "boiling"}]}, "json.blocks.0.state"),
    ({"blocks": [{"position": 1, "v": 1e300, "state": "discharge"}]}, "json.blocks.0.v"),
    ({"alarm": {"position": 1, "v": 10.4}}, "json.alarm"),
    ({"colour": "red"}, "json.colour"),
])
def test_bad_snapshots_are_422_naming_the_field_and_keep_the_stored_one(env: ApiEnv, change: dict[str, Any],
                                                                       field: str) -> None:
    c, tid = env.client, _test(env)
    url, h = f"/api/tests/{tid}/live", env.a.headers("technician")
    assert c.put(url, headers=h, json=_snap()).status_code == 200
    r = c.put(url, headers=h, json=_snap(**change))
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == "validation" and err["field"].startswith(field), err
    assert c.get(url, headers=h).get_json()["snapshot"]["string_v"] == 47.9


def test_non_finite_numbers_and_non_json_are_refused(env: ApiEnv) -> None:
    c, tid = env.client, _test(env)
    url, h = f"/api/tests/{tid}/live", env.a.headers("technician")
    for raw in ('{"now_ms": 1, "string_v": NaN}', '{"now_ms": 1, "elapsed_s": Infinity}',
                '{"now_ms": 1, "blocks": [{"position": 1, "v": -Infinity, "state": "float"}]}'):
        r = c.put(url, headers=h, data=raw, content_type="application/json")
        assert r.status_code == 422, (raw, r.get_json())
    assert c.put(url, headers=h, data="now_ms=1", content_type="text/plain").status_code in (415, 422)
    assert c.put(url, headers=h, json={"now_ms": 1, "blocks": [{"position": 1, "v": 12.0, "state": "float",
                                                               "note": "\x00"}]}).status_code == 422
    assert c.get(url, headers=h).get_json()["snapshot"] is None


def test_the_live_state_goes_with_its_test(env: ApiEnv) -> None:
    c, tid = env.client, _test(env)
    assert c.put(f"/api/tests/{tid}/live", headers=env.a.headers("technician"), json=_snap()).status_code == 200
    assert c.delete(f"/api/tests/{tid}", headers=env.a.headers("admin")).status_code == 204
    assert c.get(f"/api/tests/{tid}/live", headers=env.a.headers("viewer")).status_code == 404
