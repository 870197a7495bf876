"""The `dces` command: `dces curate` (engine, no server) and `dces serve` (the HTTP service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app import __version__

# Plain (click) help: the rich help labels every flag `<bool>`, as if it took a value.
cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dces {__version__}")
        raise typer.Exit()


@cli.callback()
def options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    """Options of `dces` itself (a typer callback is where they go); it has nothing to do."""


@cli.command()
def curate(
    input: Annotated[Path, typer.Argument(help="JSONL of {id, text, ...} candidate samples")],
    budget: Annotated[int, typer.Option(help="How many samples to select (>= 1)")],
    reference: Annotated[Path | None, typer.Option(help="JSONL of real reference samples")] = None,
    state: Annotated[
        Path | None, typer.Option(help="Run state: read if it exists, rewritten after the round")
    ] = None,
    feedback: Annotated[
        Path | None, typer.Option(help="JSON object of training metrics of the last round")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Output JSONL (default: stdout)")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write clusters, ratios, health as JSON")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON object of curation config overrides")
    ] = None,
    edit: Annotated[bool | None, typer.Option(
        "--edit/--no-edit", show_default="on, or edit.enabled of --config",
        help="Token-edit the selected center samples",
    )] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: config's)")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress lines on stderr (one per stage, at most one a second)",
    )] = False,
) -> None:
    """Curate one round of INPUT; repeated calls with the same --state run successive rounds."""
    from app.curate_command import run_curate

    try:
        run_curate(input, budget, reference, state, feedback, output, report, config, edit, seed,
                   quiet)
    except ValueError as exc:  # CurationInputError and config errors
        typer.echo(f"dces curate: error: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (SQLite file)")] = None,
) -> None:
    """Run the HTTP service (uvicorn, one worker); settings come from DCES_* variables."""
    from app.server import serve as run_server

    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
    run_server({k: v for k, v in overrides.items() if v is not None})


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
