"""The `dces` command: `dces curate` (engine, no server) and `dces serve` (the HTTP service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app import __version__
from app.formats import Format

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
    input: Annotated[Path, typer.Argument(
        help="Candidate samples: a JSONL file (- for stdin), a Parquet file (.parquet) or a "
             "datasets directory (save_to_disk)",
    )],
    budget: Annotated[int, typer.Option(help="How many samples to select (>= 1)")],
    reference: Annotated[
        Path | None, typer.Option(help="Real reference samples, in any input format")
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="Run state: read if it exists, rewritten after the round")
    ] = None,
    feedback: Annotated[
        Path | None, typer.Option(help="JSON object of training metrics of the last round")
    ] = None,
    output: Annotated[Path | None, typer.Option(
        help="Every input row with its decision (default, or -: JSONL on stdout)",
    )] = None,
    output_format: Annotated[Format | None, typer.Option(
        show_default="the output's extension, else the input's format",
        help="Format of --output",
    )] = None,
    text_field: Annotated[str, typer.Option(
        help="Field with the text; a row without it is flattened from its chat 'messages'",
    )] = "text",
    id_field: Annotated[str, typer.Option(
        help="Field with the id (string or integer); a row without it gets its row number",
    )] = "id",
    report: Annotated[
        Path | None, typer.Option(help="Write clusters, ratios, health as JSON")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON object of curation config overrides")
    ] = None,
    edit: Annotated[bool | None, typer.Option(
        "--edit/--no-edit", show_default="off, or edit.enabled of --config",
        help="Token-edit the selected center samples",
    )] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: config's)")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress lines on stderr (one per stage, at most one a second)",
    )] = False,
    ray: Annotated[str | None, typer.Option(
        metavar="ADDRESS", show_default="embed here",
        help="Embed on the Ray cluster at ADDRESS (host:port, or auto), 2 actors of 1 CPU; "
             "clustering and selection stay here, and select the same samples. Needs dces[ray]",
    )] = None,
) -> None:
    """Curate one round of INPUT; repeated calls with the same --state run successive rounds."""
    from app.curate_command import run_curate
    from curation.records import Fields

    try:
        run_curate(input, budget, reference, state, feedback, output, report, config, edit, seed,
                   quiet, Fields(text=text_field, id=id_field), output_format, ray)
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


db = typer.Typer(no_args_is_help=True, help="The service's database.")
cli.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL (default: DCES_DATABASE_URL, else the SQLite file in DCES_DATA_DIR)",
    )] = None,
) -> None:
    """Migrate the database to this DCES's schema (`dces serve` also does it at every start);
    running it again changes nothing."""
    from app.db_command import upgrade_database

    upgrade_database(database_url)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
