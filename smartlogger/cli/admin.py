"""``smartlogger admin``: the first organisation, users with roles, tokens, migrations.

Thin wrapper over ``smartlogger.api.admin.Admin``. The database is the one
``smartlogger serve --data DIR`` uses (SQLite in DIR) unless ``--database-url``
(or ``SMARTLOGGER_DATABASE_URL``) names another, e.g. PostgreSQL in production.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from smartlogger.api.admin import Admin
from smartlogger.api.migrate import current_revision


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
