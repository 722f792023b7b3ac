"""`callrec mixer ...`: run the mixer and archiver."""

import typer

app = typer.Typer(help="The mixer and archiver (sinks/).", no_args_is_help=True)
