"""``smartlogger sync``: upload a work folder's logfiles and tests to a server; ``--status``: what
each server has.

Thin wrapper over ``smartlogger.field.sync``; the queue lives in the work folder, per server
(URL and organisation), and survives runs without network. Exit code 0 when everything is on the
server, 3 when items are still queued (no network), 4 when the server rejected files.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import click


@click.command("sync")
@click.option("--api", envvar="SMARTLOGGER_API", help="API base URL, e.g. https://host/api")
@click.option("--token", envvar="SMARTLOGGER_TOKEN", help="bearer token (smartlogger admin issue-token)")
@click.option("--dir", "folder", default=".", show_default=True, type=click.Path(exists=True, file_okay=False),
              help="the field tool's work folder (a test folder, or a folder of them)")
@click.option("--status", "status", is_flag=True,
              help="show which server has which files and tests (from the queue; sends nothing)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def sync(api: str | None, token: str | None, folder: str, status: bool, as_json: bool) -> None:
    """Upload what the server at --api has not confirmed yet from DIR: logfiles (exactly once per
    content) and each test.json as a test on its site, system and string."""
    # Lazy: the sync client only when the command runs (start-up of the CLI stays fast).
    from smartlogger.field.sync import sync_folder, sync_status

    if status:
        st = sync_status(folder, api=api)
        if as_json:
            click.echo(json.dumps(st.to_dict(), indent=1))
            return
        click.echo(f"{st.folder}: {st.logfiles} logfile(s), {st.tests} test(s)")
        if not st.servers:
            click.echo("  not synced to any server yet" + (f" (none at {api})" if api else ""))
        for s in st.servers:
            when = "never reached" if s.last_sync is None else \
                dt.datetime.fromtimestamp(s.last_sync, dt.UTC).strftime("last sync %Y-%m-%d %H:%M UTC")
            org = f"organisation {s.organisation!r}" if s.organisation else "organisation not known yet"
            click.echo(f"  {s.api} ({org}, {when}): {s.on_server} on the server "
                       f"({s.uploaded} uploaded, {s.already_there} were there already), {s.waiting} waiting, "
                       f"{len(s.rejected)} refused")
            for t in s.tests:
                where = f"test {t['test_id']}" if t["test_id"] is not None else "test not created yet"
                on = f" on string {t['string_id']}" if t["string_id"] is not None else ""
                err = f": refused: {t['error']}" if t["error"] else ""
                click.echo(f"    {t['folder']}: {where}{on}{err}")
            for r in s.rejected:
                click.echo(f"    refused {r['path']}: {r['message']}")
        for note in st.notes:
            click.echo(f"  note: {note}")
        return
    if not api or not token:
        missing = " and ".join(n for n, v in (("--api", api), ("--token", token)) if not v)
        raise click.UsageError(f"give {missing} (or SMARTLOGGER_API / SMARTLOGGER_TOKEN), or --status")
    report = sync_folder(api, token, folder)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        org = f" ({report.organisation})" if report.organisation else ""
        click.echo(f"{report.server}{org}: uploaded {report.uploaded}, already there {report.duplicates}, "
                   f"tests {report.tests}, rejected {len(report.rejected)}, still queued {report.pending}")
        for link in report.test_links:
            click.echo(f"  in the app: {link}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        for r in report.rejected:
            click.echo(f"  rejected {r['path']}: {r['message']}", err=True)
        for e in report.errors[:5]:
            click.echo(f"  {e}", err=True)
    if report.rejected:
        sys.exit(4)
    if report.pending:
        sys.exit(3)
