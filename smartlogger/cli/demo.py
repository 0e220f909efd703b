"""``smartlogger demo``: the whole job on a simulated string (see ``smartlogger.demo``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from smartlogger.cli.options import CURRENT, POWER, load_text
from smartlogger.demo import STEPS, DemoOptions, DemoSummary, prepare_output, run_demo
from smartlogger.quantities import Current, Power


@click.command("demo")
@click.option("--blocks", default=24, show_default=True, type=click.IntRange(2, 1000),
              help="Blocks (and loggers) in the simulated string.")
@click.option("--weak", default=2, show_default=True, type=click.IntRange(0, 1000),
              help="Aged blocks hidden in the string.")
@click.option("--out", "out", default="demo-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the simulation.")
@click.option("--load", default=None, type=CURRENT, metavar="CURRENT",
              help="Constant current of the test, e.g. 20A (default 20A).")
@click.option("--load-power", default=None, type=POWER, metavar="POWER",
              help="Constant string power instead, e.g. 4800W or 4.8kW.")
@click.option("-k", "--concurrency", default=3, show_default=True, type=click.IntRange(1, 20),
              help="BLE connections at once (a phone holds a few).")
@click.option("--no-logger-workbooks", is_flag=True, help="Only the string report, no per-logger workbooks.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(blocks: int, weak: int, out: Path, seed: int, load: Current | None, load_power: Power | None,
         concurrency: int, no_logger_workbooks: bool, as_json: bool) -> None:
    """Run the whole job on a simulated string: NFC programming, a discharge test, BLE pulls,
    verification, analysis, Excel reports and a sync to the API."""
    load_t = load_text(load, load_power, default="20A")
    assert load_t is not None
    opts = DemoOptions(blocks=blocks, weak=weak, out=out, seed=seed, load=load_t,
                       concurrency=concurrency, logger_workbooks=not no_logger_workbooks)
    # Before any progress bar: an earlier demo's folder is cleared (said on stderr), any other
    # non-empty folder refused.
    removed = prepare_output(out)
    if removed:
        click.echo(f"starting clean: removed the earlier demo's {', '.join(removed)} from {out}", err=True)
    if as_json:
        summary = run_demo(opts)
        click.echo(json.dumps(summary.to_json(), indent=1))
        return
    # Lazy: rich's display only when there is something to show.
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    with Progress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bars:
        tasks = {key: bars.add_task(f"{i + 1}. {desc}", total=None, start=False)
                 for i, (key, desc) in enumerate(STEPS)}
        current: list[str] = []

        def on_step(key: str, description: str) -> None:
            if current:
                prev = tasks[current[-1]]
                bars.update(prev, total=bars.tasks[prev].total or 1,
                            completed=bars.tasks[prev].total or 1)
            current.append(key)
            bars.start_task(tasks[key])

        def on_progress(done: int, total: int) -> None:
            bars.update(tasks[current[-1]], completed=done, total=total)

        summary = run_demo(opts, on_step=on_step, on_progress=on_progress)
        last = tasks[current[-1]]
        bars.update(last, total=bars.tasks[last].total or 1, completed=bars.tasks[last].total or 1)
    _print_summary(console, summary)


def _print_summary(console: object, summary: DemoSummary) -> None:
    # Lazy: rich's display only when there is something to show.
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    assert isinstance(console, Console)
    f = summary.facts
    cap = f.get("capacity_pct")
    console.print()
    console.print(f"[bold]String result[/]  (SIMULATED data - {summary.options['blocks']} blocks, "
                  f"load {summary.options['load']})")
    verdict = f.get("verdict") or "n/a"
    colour = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
    console.print(f"  [bold {colour}]{verdict.upper()}[/] against {escape(f.get('verdict_criterion') or '-')}")
    console.print(f"  {escape(f.get('verdict_sentence') or '')}")
    console.print(f"  logfiles: {f['verified_simulated']} intact, verified as SIMULATED "
                  "(like `smartlogger logfile verify --allow-simulated`): not evidence from real hardware")
    if f.get("evidence_statement"):
        console.print(f"  evidence: {escape(f['evidence_statement'])}")
    console.print(f"  discharge: {f['discharge_h']:.2f} h, ended by {f['end_reason'].replace('_', ' ')}")
    for warning in f.get("warnings", []):
        console.print(f"  [yellow]note:[/] {escape(warning)}")
    cap_text = "n/a" if cap is None else f"{'>= ' if f.get('capacity_lower_bound') else ''}{cap:.1f} %"
    console.print(f"  string capacity: {cap_text}{' (lower bound: not determined further)' if f.get('capacity_lower_bound') else ''} "
                  f"({f['capacity_method'].replace('_', '-')} method)")
    table = Table(title="Weakest blocks", show_edge=False)
    for col in ("rank", "position", "serial", "capacity %", "min V", "result"):
        table.add_column(col)
    words = {"fail": "[red]FAIL: replace[/]", "pass": "pass", "not_determined": "not determined (>=)",
             "no_result": "no result"}
    for i, b in enumerate(f["weakest"]):
        pct = "n/a" if b["capacity_pct"] is None else f"{b['capacity_pct']:.1f}"
        if b["lower_bound"] and b["capacity_pct"] is not None:
            pct = ">=" + pct  # the block outlasted the string: its capacity is at least this
        table.add_row(str(i + 1), str(b["position"]), b["serial"], pct,
                      "-" if b.get("min_voltage_v") is None else f"{b['min_voltage_v']:.2f}",
                      words.get(b.get("disposition", ""), "REPLACE" if b["replace"] else "ok"))
    console.print(table)
    if f.get("ranking_rule"):
        console.print(f"  rank: {escape(f['ranking_rule'])}")
    if any(b["lower_bound"] for b in f["weakest"]):
        console.print("  >= : lower bound: the block had not reached its end voltage when the test ended "
                      "(not determined further)")
    console.print(f"  exceedances: [yellow]{f['yellow']} yellow[/] (warning), [red]{f['red']} red[/] (alarm)")
    console.print(f"  weak blocks in the simulation (truth): {f['weak_blocks_truth']}")
    console.print()
    console.print("[bold]Outputs[/]")
    for name, path in summary.outputs.items():
        console.print(f"  {name:<18} {path}")
    console.print()
    console.print("[bold]Browse it[/]")
    console.print(f"  smartlogger serve --data {summary.options['out']}/api")
    if "api_app_url" in f:
        console.print(f"  then open {f['api_app_url']} and sign in with the token in "
                      f"{summary.outputs.get('api_token', 'the token file')}")
    console.print("  step times (s): " + ", ".join(f"{k} {v:g}" for k, v in summary.steps.items()))
