"""Benchmark of posting the live state (``smartlogger test watch --post``): what one post costs.

Builds a ``LiveWatch`` snapshot of ``--blocks`` blocks (every block discharging, with a
prediction), times ``live_body`` (the watcher's side, per update), then sends the body ``--posts``
times to ``PUT /api/tests/{id}/live`` and reads it back with ``GET`` through the Flask test client
(no network: the server's own work) on SQLite and, with ``SMARTLOGGER_TEST_DATABASE_URL`` set, on
PostgreSQL. Prints ONE JSON object: ``body_bytes``, ``live_body_ms``, and per database the p50 /
p95 of ``put_ms`` and ``get_ms``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from smartlogger.field.live import LiveWatch, WatchOptions
from smartlogger.field.livepost import live_body
from smartlogger.protocol.live import COMPANY_ID, KitKey, LiveAdvert, LiveState, tag_for_test
from smartlogger.testing.api import api_env, backends

KEY = KitKey(bytes(range(16)))


def snapshot(blocks: int) -> dict[str, Any]:
    """A watch of ``blocks`` blocks 40 min into a 20 A discharge, every block predicted."""
    w = LiveWatch(KEY, WatchOptions(end_v=10.5, test_id="B", current_a=20.0, blocks=blocks, cells=6),
                  predict_budget_s=None)

    def adv(pos: int, seq: int, t_ds: int, mv: int, state: LiveState) -> dict[int, bytes]:
        a = LiveAdvert(state, False, KEY.key_id, tag_for_test("B"), pos, seq, t_ds, mv, 250)
        return {COMPANY_ID: a.sealed(KEY).to_bytes()}

    for p in range(1, blocks + 1):
        w.receive(adv(p, 1, 0, 13500, LiveState.FLOAT), "A", 1_000_000, 0.0)
    for k in range(1, 81):
        for p in range(1, blocks + 1):
            w.receive(adv(p, 1 + k, 300 * k, 12200 - k * (3 if p % 8 == 0 else 2), LiveState.DISCHARGE), "A",
                      1_000_000 + 30_000 * k, float(k))
    return w.snapshot(1_000_000 + 30_000 * 80, 80.0)


def pct(xs: list[float], q: float) -> float:
    return round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=240)
    ap.add_argument("--posts", type=int, default=100)
    args = ap.parse_args()
    snap = snapshot(args.blocks)
    t = time.perf_counter()
    for _ in range(100):
        body = live_body(snap, started_ms=0, blocks_expected=args.blocks)
    out: dict[str, Any] = {"benchmark": "live_post", "blocks": args.blocks, "posts": args.posts,
                           "body_bytes": len(json.dumps(body, separators=(",", ":"))),
                           "live_body_ms": round((time.perf_counter() - t) / 100 * 1000, 3)}
    for kind in backends():
        with tempfile.TemporaryDirectory() as d, api_env(kind, Path(d)) as env:
            c, h = env.client, env.a.headers("technician")
            tid = c.post("/api/tests", headers=h, json={"load": "20A", "blocks": args.blocks}).get_json()["id"]
            puts, gets = [], []
            for _ in range(args.posts):
                body["now_ms"] += 2000
                t = time.perf_counter()
                r = c.put(f"/api/tests/{tid}/live", headers=h, json=body)
                puts.append(time.perf_counter() - t)
                assert r.status_code == 200, r.get_json()
                t = time.perf_counter()
                r = c.get(f"/api/tests/{tid}/live", headers=h)
                gets.append(time.perf_counter() - t)
                assert r.status_code == 200 and r.get_json()["snapshot"]["now_ms"] == body["now_ms"]
            out[kind] = {"put_ms_p50": round(statistics.median(puts) * 1000, 2), "put_ms_p95": pct(puts, 0.95),
                         "get_ms_p50": round(statistics.median(gets) * 1000, 2), "get_ms_p95": pct(gets, 0.95)}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
