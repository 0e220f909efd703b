"""``python -m smartlogger.device.site DIR ...``: the site process ``sim site start`` spawns.

Not a user command (use ``smartlogger sim site start``): it runs one site until it is
stopped and reports readiness, or why it could not start, as one JSON line on the file
descriptor ``--ready-fd`` (``launch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from smartlogger.device.site.launch import configure_logging
from smartlogger.device.site.server import serve
from smartlogger.device.site.state import SiteError, SiteSpec
from smartlogger.errors import SmartLoggerError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartlogger.device.site")
    ap.add_argument("directory", type=Path)
    ap.add_argument("--create", default=None, help="JSON of the SiteSpec of a new site")
    ap.add_argument("--speed", type=float, default=0.0)
    ap.add_argument("--nfc-port", type=int, default=0)
    ap.add_argument("--ble-port", type=int, default=0)
    ap.add_argument("--ready-fd", type=int, required=True)
    ap.add_argument("--owner-pid", type=int, default=None,
                    help="stop when this process is gone (a site owned by the demo or a test)")
    a = ap.parse_args(argv)
    configure_logging(a.directory, foreground=False)
    reported = False

    def report(obj: dict[str, Any]) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        try:
            os.write(a.ready_fd, json.dumps(obj).encode() + b"\n")
            os.close(a.ready_fd)
        except OSError:
            pass  # the starter is gone; the site runs on regardless

    try:
        create = SiteSpec(**json.loads(a.create)) if a.create else None
        serve(a.directory, create=create, speed=a.speed, nfc_port=a.nfc_port,
              ble_port=a.ble_port, on_ready=lambda info: report({"ok": True, "site": info}),
              owner_pid=a.owner_pid)
    except SiteError as err:
        report({"ok": False, "error": {"code": err.code, "message": str(err)}})
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except SmartLoggerError as err:
        report({"ok": False, "error": {"code": "bad_input", "message": str(err)}})
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BaseException as err:
        report({"ok": False, "error": {"code": "failed",
                                       "message": f"{type(err).__name__}: {err} (see the site's log)"}})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
