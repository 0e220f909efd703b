"""``smartlogger admin``: the first organisation, users with roles, tokens, migrations, the file store.

Thin wrapper over ``smartlogger.api.admin.Admin`` and ``smartlogger.api.storecheck``. The
database is the one ``smartlogger serve --data DIR`` uses (SQLite in DIR) unless
``--database-url`` (or ``SMARTLOGGER_DATABASE_URL``) names another, e.g. PostgreSQL in
production; the file store is ``DIR/files`` unless ``--store`` (or ``SMARTLOGGER_STORE``) names
another (``file://DIR`` or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.progress import Progress, SpinnerColumn, TextColumn

from smartlogger.api.admin import Admin
from smartlogger.api.migrate import current_revision
from smartlogger.api.receipts import new_key_pem
from smartlogger.api.storecheck import check_store, copy_store
from smartlogger.api.stores import open_store


def _admin(ctx: click.Context) -> Admin:
    obj = ctx.obj  # set by the group
    data, url = obj["data"], obj["url"]
    if url is None:
        Path(data).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(data).resolve() / 'smartlogger.db'}"
    return Admin(url)


def _out(as_json: bool, payload: dict[str, object], text: str) -> None:
    click.echo(json.dumps(payload, default=str) if as_json else text)


@click.group("admin")
@click.option("--data", default="smartlogger-data", show_default=True, envvar="SMARTLOGGER_DATA_DIR",
              type=click.Path(file_okay=False), help="data directory of `smartlogger serve` (SQLite)")
@click.option("--database-url", "url", envvar="SMARTLOGGER_DATABASE_URL", default=None,
              help="database URL instead of the SQLite file in --data")
@click.pass_context
def admin(ctx: click.Context, data: str, url: str | None) -> None:
    """Create organisations, users and tokens (works on the database directly)."""
    ctx.obj = {"data": data, "url": url}


@admin.command("migrate")
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the database schema up to date (run once before starting gunicorn workers)."""
    a = _admin(ctx)
    click.echo(f"database at revision {current_revision(a.engine)}")
    a.close()


@admin.command("create-org")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create_org(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create an organisation (a service company)."""
    a = _admin(ctx)
    org = a.create_org(name)
    a.close()
    _out(as_json, {"id": org.id, "name": org.name}, f"organisation {org.id}: {org.name}")


@admin.command("create-user")
@click.option("--org", required=True, help="organisation name or id")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "technician", "viewer"]))
@click.option("--name", default="")
@click.option("--customer", default=None, help="viewers only: limit them to this customer's sites")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create_user(ctx: click.Context, org: str, email: str, role: str, name: str, customer: str | None,
                as_json: bool) -> None:
    """Create a user with a role in an organisation."""
    a = _admin(ctx)
    user = a.create_user(org, email, role, name, customer)
    a.close()
    _out(as_json, {"id": user.id, "email": user.email, "role": user.role, "org_id": user.org_id},
         f"user {user.id}: {user.email} ({user.role})")


@admin.command("issue-token")
@click.option("--email", required=True)
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650))
@click.option("--label", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def issue_token(ctx: click.Context, email: str, days: int, label: str, as_json: bool) -> None:
    """Issue a bearer token for a user (printed once; only its hash is stored)."""
    a = _admin(ctx)
    t = a.issue_token(email, days=days, label=label)
    a.close()
    _out(as_json, {"token": t.token, "id": t.token_id, "user_id": t.user_id, "expires_at": t.expires_at},
         f"{t.token}\n(token {t.token_id} for {email}, expires {t.expires_at:%Y-%m-%d})")


@admin.command("revoke-token")
@click.argument("token_id", type=int)
@click.pass_context
def revoke_token(ctx: click.Context, token_id: int) -> None:
    """Revoke a token by id."""
    a = _admin(ctx)
    row = a.revoke_token(token_id)
    a.close()
    click.echo(f"token {row.id} revoked at {row.revoked_at}")


def _store_moniker(data: str, store: str | None) -> str:
    if store:
        return store
    files = os.environ.get("SMARTLOGGER_FILES_DIR")
    return f"file://{Path(files or Path(data) / 'files').resolve()}"


_STORE_HELP = "file store: file://DIR or s3://bucket/prefix (default: DATA/files)"


@admin.command("store-check")
@click.option("--store", envvar="SMARTLOGGER_STORE", default=None, help=_STORE_HELP)
@click.option("--verify", is_flag=True, help="also read every blob back and check its SHA-256 (reads everything)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def store_check(ctx: click.Context, store: str | None, verify: bool, as_json: bool) -> None:
    """Find orphaned blobs (no row names them) and rows whose blob is missing or damaged.

    Reports only: nothing is deleted. Exit 0 when blobs and rows match, 3 when there are
    orphans only (harmless: an upload interrupted between its blob and its row; its retry uses
    the blob), 4 when a row's blob is missing or damaged (restore it from a backup).
    """
    a = _admin(ctx)
    target = open_store(_store_moniker(ctx.obj["data"], store))
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True,
                      disable=as_json or not sys.stderr.isatty()) as bar:
            task = bar.add_task("checking the file store", total=None)
            report = check_store(a.engine, target, verify=verify,
                                 progress=lambda n: bar.update(task, description=f"{n:,} blobs checked"))
    finally:
        a.close()
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(f"{report.location}: {report.blobs} blobs ({report.blob_bytes:,} bytes), "
                   f"{report.referenced} named by rows; orphans {report.orphan_count} "
                   f"({report.orphan_bytes:,} bytes), missing {report.missing_count}, "
                   f"damaged {report.damaged_count if verify else 'not checked (--verify)'}")
        for o in report.orphans[:20]:
            click.echo(f"  orphan {o['sha256']} {o['size']} bytes, written {o['modified']}"
                       + (" (recent: may be an upload in progress)" if o["recent"] else ""))
        for m in report.missing[:20]:
            click.echo(f"  MISSING {m['sha256']} named by {', '.join(m['rows'])}", err=True)
        for d in report.damaged[:20]:
            click.echo(f"  DAMAGED {d['sha256']} named by {', '.join(d['rows'])}", err=True)
    if report.missing_count or report.damaged_count:
        sys.exit(4)
    if report.orphan_count:
        sys.exit(3)


@admin.command("store-copy")
@click.option("--from", "source", required=True, help="the store to copy from (file://DIR or s3://bucket/prefix)")
@click.option("--to", "target", required=True, help="the store to copy into")
@click.option("--json", "as_json", is_flag=True)
def store_copy(source: str, target: str, as_json: bool) -> None:
    """Copy every blob from one file store into another (e.g. a folder into an object store).

    Each blob's SHA-256 is checked on the way; blobs already in the target are skipped, so an
    interrupted copy is resumed by running it again. Exit 4 if a source blob was damaged.
    """

    src, dst = open_store(source), open_store(target)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True,
                  disable=as_json or not sys.stderr.isatty()) as bar:
        task = bar.add_task("copying", total=None)
        report = copy_store(src, dst, progress=lambda n: bar.update(task, description=f"{n:,} blobs"))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(f"copied {report.copied} blobs ({report.bytes:,} bytes) from {report.source} to "
                   f"{report.target}; {report.present} were there already; {len(report.failed)} failed")
        for f in report.failed[:20]:
            click.echo(f"  {f['sha256']}: {f['message']}", err=True)
    if report.failed:
        sys.exit(4)


@admin.command("server-key")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the key to this file (mode 0600; refused if it exists) instead of stdout")
def server_key(output: str | None) -> None:
    """Make a new receipt-signing key (Ed25519, PEM) for a deployment with several web hosts.

    Every host gets the same key: SMARTLOGGER_SERVER_KEY (the PEM text) or
    SMARTLOGGER_SERVER_KEY_PATH (this file). Keep a backup: receipts are checked against it.
    """
    pem = new_key_pem()
    if output is None:
        click.echo(pem, nl=False)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{output} exists; a server key is never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    click.echo(f"server key written to {output}", err=True)
