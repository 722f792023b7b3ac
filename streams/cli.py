"""`callrec streams ...`: run the call-state worker."""

import typer

app = typer.Typer(help="The call-state worker (streams/).", no_args_is_help=True)
