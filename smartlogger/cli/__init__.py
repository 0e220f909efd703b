"""The ``smartlogger`` command: a thin click front end, no logic of its own.

Each command group lives in its own module under ``smartlogger.cli`` and is
imported only when used, so ``smartlogger --help`` stays fast. Errors derived
from ``SmartLoggerError`` become one line on stderr and the error's exit code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from smartlogger import __version__
from smartlogger.errors import SmartLoggerError

#: command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("smartlogger.cli.demo", "demo", "Run the whole job on a simulated string."),
    "sim": ("smartlogger.cli.sim", "sim", "Simulate loggers on virtual batteries."),
    "device": ("smartlogger.cli.device", "device", "Work with a logger's firmware model and flash image."),
    "logfile": ("smartlogger.cli.logfile", "logfile", "Inspect, verify and convert logfiles."),
    "nfc": ("smartlogger.cli.nfc", "nfc", "Program loggers by NFC tap."),
    "ble": ("smartlogger.cli.ble", "ble", "Pull logs over Bluetooth LE."),
    "test": ("smartlogger.cli.test", "test", "Analyse a capacity test."),
    "export": ("smartlogger.cli.export", "export", "Write Excel workbooks and data files."),
    "serve": ("smartlogger.cli.serve", "serve", "Run the API and the web app."),
    "sync": ("smartlogger.cli.sync", "sync", "Upload logfiles to the API."),
    "admin": ("smartlogger.cli.admin", "admin", "Organisations, users, tokens, the server key, the file store."),
    "worker": ("smartlogger.cli.worker", "worker", "Run the API's background jobs from Redis."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _, _) in COMMANDS.items() if _module_exists(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        cmd: click.Command = getattr(module, entry[1])
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SmartLoggerError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except click.UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
                raise
            # Click would print the usage and a blank line first: one line is the house rule.
            where = err.ctx.command_path if err.ctx is not None else "smartlogger"
            click.echo(f"error: {err.format_message()} (see '{where} --help')", err=True)
            sys.exit(err.exit_code)
        except FileNotFoundError as err:
            click.echo(f"error: file not found: {err.filename}", err=True)
            sys.exit(2)
        except (IsADirectoryError, PermissionError) as err:
            click.echo(f"error: cannot use {err.filename}: {err.strerror}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartlogger")
def main() -> None:
    """smartlogger: battery block loggers from NFC tap to capacity report.

    Program loggers over NFC, pull their logs over Bluetooth LE, analyse a
    capacity test, export Excel workbooks and sync to the API. Everything also
    runs against simulated loggers on virtual batteries.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
