"""API resources, roles and the one error shape, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smartlogger.api.auth import PUBLIC_ENDPOINTS
from smartlogger.testing.api import ApiEnv, api_env, backends


@pytest.fixture(scope="module", params=backends())
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    with api_env(request.param, tmp_path_factory.mktemp("api")) as e:
        yield e


def _error(resp: object, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.get_data(as_text=True)  # type: ignore[attr-defined]
    body = resp.get_json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert "Traceback" not in resp.get_data(as_text=True)  # type: ignore[attr-defined]
    return body["error"]  # type: ignore[no-any-return]


def test_public_endpoints_and_openapi(env: ApiEnv) -> None:
    c = env.client
    assert c.get("/").headers["Location"] == "/app/"
    app = c.get("/app/")
    assert app.status_code == 200 and b"<html" in app.data.lower()
    assert c.get("/app/manifest.webmanifest").headers["Content-Type"] == "application/manifest+json"
    assert c.get("/app/../pyproject.toml").status_code == 404
    assert c.get("/api/health").get_json()["status"] == "ok"
    spec = c.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/logfiles" in spec["paths"] and "/api/tests/{test_id}/report" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert c.get("/api/docs").status_code == 200


def test_every_api_endpoint_demands_a_token(env: ApiEnv) -> None:
    c = env.client
    checked = 0
    for rule in env.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        view = env.app.view_functions[rule.endpoint]
        assert getattr(view, "_sl_role", None) in ("viewer", "technician", "admin"), rule.endpoint
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            _error(c.open(url, method=method), 401, "unauthorized")
            checked += 1
    assert checked >= 40


def test_error_shape_for_404_405_413_415_422(env: ApiEnv) -> None:
    c = env.client
    h = env.a.headers("technician")
    _error(c.get("/api/no/such/thing"), 404, "not_found")
    _error(c.get("/api/sites/999999", headers=h), 404, "not_found")
    _error(c.put("/api/sites", headers=h, json={}), 405, "method_not_allowed")
    err = _error(c.post("/api/sites", headers=h, json={"nam": "x"}), 422, "validation")
    assert err["field"] in ("json.name", "json.nam")
    err = _error(c.post("/api/strings", headers=h, json={"system_id": 1, "name": "s", "blocks": 0}),
                 422, "validation")
    assert err["field"] == "json.blocks"
    err = _error(c.post("/api/logfiles", headers=h, data=b"x", content_type="text/plain"), 415,
                 "unsupported_media_type")
    assert err["field"] == "Content-Type"
    big = b"\x89SLOG\r\n\x1a" + bytes(env.app.config["MAX_CONTENT_LENGTH"])
    _error(c.post("/api/logfiles", headers=h, data=big, content_type="application/octet-stream"), 413,
           "payload_too_large")
    err = _error(c.post("/api/tests", headers=h, json={"load": "fifty amps", "blocks": 2}), 422, "validation")
    assert err["field"] == "load"


def test_battery_hierarchy_crud(env: ApiEnv) -> None:
    c = env.client
    tech, viewer, admin = env.a.headers("technician"), env.a.headers("viewer"), env.a.headers("admin")
    site = c.post("/api/sites", headers=tech, json={"name": "DC Basement", "address": "Main St 1"}).get_json()
    system = c.post("/api/systems", headers=tech, json={"site_id": site["id"], "name": "UPS A"}).get_json()
    string = c.post("/api/strings", headers=tech, json={"system_id": system["id"], "name": "String 1",
                                                         "blocks": 6, "rated_ah": 100}).get_json()
    assert string["blocks"] == 6 and string["chemistry"] == "vrla"
    positions = c.get(f"/api/strings/{string['id']}/positions", headers=viewer).get_json()
    assert [p["position"] for p in positions] == [1, 2, 3, 4, 5, 6] and positions[0]["label"] == "B1"
    logger = c.post("/api/loggers", headers=tech, json={"serial": "SL2-0042", "generation": 2}).get_json()
    _error(c.post("/api/loggers", headers=tech, json={"serial": "SL2-0042", "generation": 2}), 409, "conflict")
    p = c.patch(f"/api/positions/{positions[2]['id']}", headers=tech,
                json={"logger_id": logger["id"], "label": "B3 left"}).get_json()
    assert p["logger_id"] == logger["id"] and p["label"] == "B3 left"
    assert c.get(f"/api/systems?site_id={site['id']}", headers=viewer).get_json()[0]["name"] == "UPS A"
    assert c.get(f"/api/strings?system_id={system['id']}", headers=viewer).get_json()[0]["id"] == string["id"]
    assert c.patch(f"/api/sites/{site['id']}", headers=tech, json={"name": "DC-1"}).get_json()["name"] == "DC-1"
    # A test on the string takes its block count.
    t = c.post("/api/tests", headers=tech, json={"string_id": string["id"], "load": "50A", "rated_time": "2h"})
    assert t.status_code == 201 and t.get_json()["blocks"] == 6 and t.get_json()["status"] == "collecting"
    c.post("/api/tests", headers=tech, json={"load": "50A", "blocks": 2})  # not on this string
    on_string = c.get(f"/api/tests?string_id={string['id']}", headers=viewer).get_json()
    assert [x["id"] for x in on_string] == [t.get_json()["id"]]
    # Deleting is admin only, cascades to the children, and is audited.
    _error(c.delete(f"/api/sites/{site['id']}", headers=tech), 403, "forbidden")
    assert c.delete(f"/api/sites/{site['id']}", headers=admin).status_code == 204
    _error(c.get(f"/api/strings/{string['id']}", headers=viewer), 404, "not_found")
    audit = c.get("/api/audit?action=delete", headers=admin).get_json()
    assert audit[0]["object_type"] == "site" and audit[0]["object_id"] == site["id"]


def test_roles(env: ApiEnv) -> None:
    c = env.client
    viewer, tech, admin = (env.a.headers(r) for r in ("viewer", "technician", "admin"))
    _error(c.post("/api/sites", headers=viewer, json={"name": "x"}), 403, "forbidden")
    _error(c.post("/api/logfiles", headers=viewer, data=b"x", content_type="application/octet-stream"),
           403, "forbidden")
    _error(c.post("/api/users", headers=tech, json={"email": "x@y.example", "role": "viewer"}), 403, "forbidden")
    _error(c.get("/api/audit", headers=tech), 403, "forbidden")
    _error(c.get("/api/users", headers=tech), 403, "forbidden")
    assert c.get("/api/sites", headers=viewer).status_code == 200
    new = c.post("/api/users", headers=admin, json={"email": "New@Acme.example", "role": "technician"})
    assert new.status_code == 201 and new.get_json()["email"] == "new@acme.example"
    _error(c.post("/api/users", headers=admin, json={"email": "new@acme.example", "role": "viewer"}),
           409, "conflict")
    err = _error(c.post("/api/users", headers=admin, json={"email": "a@b.example", "role": "root"}),
                 422, "validation")
    assert err["field"] == "json.role"
    uid = new.get_json()["id"]
    assert c.patch(f"/api/users/{uid}", headers=admin, json={"role": "viewer"}).get_json()["role"] == "viewer"
    _error(c.patch(f"/api/users/{env.a.user_ids['admin']}", headers=admin, json={"role": "viewer"}),
           403, "forbidden")


def test_tokens_issue_use_revoke(env: ApiEnv) -> None:
    c = env.client
    tech, admin = env.a.headers("technician"), env.a.headers("admin")
    issued = c.post("/api/tokens", headers=tech, json={"days": 7, "label": "phone"})
    assert issued.status_code == 201
    tok = issued.get_json()
    assert tok["token"].startswith("slt_") and tok["prefix"] == tok["token"][:8]
    h = {"Authorization": f"Bearer {tok['token']}"}
    me = c.get("/api/me", headers=h).get_json()
    assert me["user"]["role"] == "technician" and me["organisation"]["name"] == "Acme Service"
    # Only hashes are stored.
    from sqlalchemy import select

    from smartlogger.api.db import database
    from smartlogger.api.models import ApiToken

    with database(env.app).system_session() as s:
        stored = s.scalar(select(ApiToken).where(ApiToken.id == tok["id"]))
        assert stored is not None and tok["token"] not in (stored.token_sha256, stored.prefix)
    # A technician cannot issue for others; an admin can.
    _error(c.post("/api/tokens", headers=tech, json={"user_id": env.a.user_ids["viewer"]}), 403, "forbidden")
    other = c.post("/api/tokens", headers=admin, json={"user_id": env.a.user_ids["viewer"]}).get_json()
    assert other["user_id"] == env.a.user_ids["viewer"]
    assert all(t["user_id"] == env.a.user_ids["technician"] for t in c.get("/api/tokens", headers=tech).get_json())
    assert c.delete(f"/api/tokens/{tok['id']}", headers=tech).get_json()["revoked_at"] is not None
    err = _error(c.get("/api/me", headers=h), 401, "unauthorized")
    assert "revoked" in err["message"]
    _error(c.get("/api/me", headers={"Authorization": "Bearer slt_nonsense"}), 401, "unauthorized")


def test_organisation_is_own_only(env: ApiEnv) -> None:
    c = env.client
    orgs = c.get("/api/organisations", headers=env.a.headers("viewer")).get_json()
    assert [o["id"] for o in orgs] == [env.a.org_id]
    _error(c.patch(f"/api/organisations/{env.a.org_id}", headers=env.a.headers("technician"),
                   json={"name": "x"}), 403, "forbidden")
    r = c.patch(f"/api/organisations/{env.a.org_id}", headers=env.a.headers("admin"),
                json={"name": "Acme Service GmbH"})
    assert r.get_json()["name"] == "Acme Service GmbH"


def test_end_voltage_per_block_or_string_as_typed(env: ApiEnv) -> None:
    c = env.client
    h = env.a.headers("technician")
    t = c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 4, "end_voltage": "10.5V/block"})
    assert t.status_code == 201, t.get_data(as_text=True)
    body = t.get_json()
    assert body["end_voltage"] == "10.5V/block" and body["end_v_per_cell"] is None
    patched = c.patch(f"/api/tests/{body['id']}", headers=h, json={"end_voltage": "42 V per string"}).get_json()
    assert patched["end_voltage"] == "42 V per string"
    err = _error(c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 4, "end_voltage": "10.5"}),
                 422, "validation")
    assert err["field"] == "end_voltage" and "10.5V/block" in err["message"]
    err = _error(c.post("/api/tests", headers=h, json={"load": "50A", "blocks": 4, "end_voltage": "1.75V/cell",
                                                        "end_v_per_cell": 1.75}), 422, "validation")
    assert err["field"] == "end_voltage"
