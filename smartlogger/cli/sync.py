"""``smartlogger sync``: upload new logfiles and test metadata from the work folder.

Thin wrapper over ``smartlogger.field.sync``; the queue lives in the work folder
and survives runs without network. Exit code 0 when everything is on the server,
3 when items are still queued (no network), 4 when the server rejected files.
"""

from __future__ import annotations

import json
import sys

import click


@click.command("sync")
@click.option("--api", required=True, envvar="SMARTLOGGER_API", help="API base URL, e.g. https://host/api")
@click.option("--token", required=True, envvar="SMARTLOGGER_TOKEN", help="bearer token (smartlogger admin issue-token)")
@click.option("--dir", "folder", default=".", show_default=True, type=click.Path(exists=True, file_okay=False),
              help="the field tool's work folder")
@click.option("--json", "as_json", is_flag=True, help="print the sync report as JSON")
def sync(api: str, token: str, folder: str, as_json: bool) -> None:
    """Upload what is new in DIR to the API (exactly once per file content)."""
    # Lazy: only this command needs these (the other commands start without them).
    from smartlogger.field.sync import sync_folder

    report = sync_folder(api, token, folder)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(f"uploaded {report.uploaded}, already there {report.duplicates}, tests {report.tests}, "
                   f"rejected {len(report.rejected)}, still queued {report.pending}")
        for r in report.rejected:
            click.echo(f"  rejected {r['path']}: {r['message']}", err=True)
        for e in report.errors[:5]:
            click.echo(f"  {e}", err=True)
    if report.rejected:
        sys.exit(4)
    if report.pending:
        sys.exit(3)
