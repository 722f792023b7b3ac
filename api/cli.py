"""`callrec api serve` and `callrec api token add|list|revoke`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvloop

from callrec.api.routes.tokens import RoleName
from callrec.api.settings import ApiSettings, TokenSettings
from callrec.api.tokens import Role, TokenStore

app = typer.Typer(help="The REST server and web page; its bearer tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens (stored hashed; a new token is shown once).",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")
ROLE_HELP = "viewer: search, play; auditor: + verify, audit, download; admin: + tokens"


@app.command()
def serve() -> None:
    """Run one replica: read model, REST API and page (settings: CALLREC_API_*)."""
    from callrec.api.main import serve as run

    # uvloop (and httptools, which uvicorn picks when installed): the event loop and the HTTP
    # parser in C, about half the replica's CPU per ranged GET (bench/api_playback.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(ApiSettings()))  # type: ignore[call-arg]  # S3 keys come from the env


@token_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Who holds it, e.g. a person's login")],
    role: Annotated[RoleName, typer.Option(help=ROLE_HELP)] = RoleName.viewer,
) -> None:
    """Create a token and print it: it is never shown again (only its hash is kept)."""
    store = TokenStore(TokenSettings().api_tokens_file)
    typer.echo(store.add(name, Role[role.value]))


@token_app.command("list")
def list_tokens() -> None:
    """Every token: id, holder, role, created, revoked."""
    for t in TokenStore(TokenSettings().api_tokens_file).list():
        typer.echo(f"{t.id}  {t.name:<20} {t.role:<8} created {t.created_at}"
                   f"{'  REVOKED ' + t.revoked_at if t.revoked_at else ''}")


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The id from `token list`")]) -> None:
    """Revoke a token at once, on every replica (they re-read the file)."""
    record = TokenStore(TokenSettings().api_tokens_file).revoke(token_id)
    typer.echo(f"revoked {record.id} ({record.name})")
