"""``smartlogger serve``: the API (and its OpenAPI docs) with zero setup.

Creates DIR, migrates the SQLite database in it (or ``--database-url``), makes
the server key and runs the app on werkzeug's threaded server: right for a
laptop or a small office. Production runs the same app under gunicorn (see
docs/API.md): ``gunicorn 'smartlogger.api.wsgi:app'``.
"""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--data", default="smartlogger-data", show_default=True, envvar="SMARTLOGGER_DATA_DIR",
              type=click.Path(file_okay=False), help="data directory (SQLite database, logfiles, server key)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--database-url", envvar="SMARTLOGGER_DATABASE_URL", default=None,
              help="database URL instead of SQLite in --data (e.g. postgresql://...)")
@click.option("--cors-origin", envvar="SMARTLOGGER_CORS_ORIGIN", default=None,
              help="the companion web app's origin (the only origin given CORS headers)")
def serve(data: str, host: str, port: int, database_url: str | None, cors_origin: str | None) -> None:
    """Run the API on HOST:PORT with its data in DIR (migrated on start)."""
    # Lazy: Flask and the API only when the server runs (``smartlogger serve --help`` stays fast).
    from werkzeug.serving import run_simple

    from smartlogger.api import create_app

    config: dict[str, object] = {"DATA_DIR": data}
    if database_url:
        config["DATABASE_URL"] = database_url
    if cors_origin:
        config["CORS_ORIGIN"] = cors_origin
    app = create_app(config)
    click.echo(f"smartlogger API on http://{host}:{port}/api (docs: /api/docs), data in {app.config['DATA_DIR']}",
               err=True)
    run_simple(host, port, app, threaded=True, use_reloader=False)
