"""`callrec recorder ...`: run a recorder."""

import typer

app = typer.Typer(help="The SIP recorder (producers/).", no_args_is_help=True)
