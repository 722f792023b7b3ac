"""What a request needs: the replica's state, the caller (bearer token) and a database cursor."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from callrec.api import queries
from callrec.api.live import LiveHub
from callrec.api.objects import ObjectReader
from callrec.api.readmodel import Progress
from callrec.api.settings import ApiSettings
from callrec.api.tokens import Principal, Role, TokenStore
from callrec.eventlog import EventPublisher

CHALLENGE = 'Bearer realm="callrec"'


@dataclass
class AppState:
    settings: ApiSettings
    tokens: TokenStore
    signing_key: bytes
    reader: ObjectReader
    publisher: EventPublisher
    progress: Progress
    hub: LiveHub
    db_path: Path
    _local: threading.local = field(default_factory=threading.local)

    def db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections stay in the thread that uses them)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = queries.reader(self.db_path)
            self._local.conn = conn
        return conn


# The dependencies below are async on purpose: they are a few microseconds of work, and a sync
# dependency costs a thread hop per request (FastAPI runs it in the thread pool).
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.callrec
    return state


State = Annotated[AppState, Depends(get_state)]


def unauthorized(why: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, why,
                         headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'})


async def bearer(request: Request, state: State) -> Principal:
    """The caller of a bearer-authenticated request; 401 for no, malformed or unknown tokens."""
    return authenticate(request, state)


def authenticate(request: Request, state: AppState) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                            headers={"WWW-Authenticate": CHALLENGE})
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("use 'Authorization: Bearer <token>'")
    who = state.tokens.authenticate(token.strip())
    if who is None:
        raise unauthorized("unknown or revoked token")
    return who


def require(role: Role) -> object:
    """A dependency: the caller, if their role is at least ``role``; 403 otherwise."""

    async def check(who: Annotated[Principal, Depends(bearer)]) -> Principal:
        if who.role < role:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs the {role.name} role; your token is {who.role.name}")
        return who

    return Depends(check)


Viewer = Annotated[Principal, require(Role.viewer)]
Auditor = Annotated[Principal, require(Role.auditor)]


def client_addr(request: Request) -> str | None:
    return f"{request.client.host}:{request.client.port}" if request.client else None
