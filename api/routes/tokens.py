"""/tokens (admin): the same token management as `callrec api token ...`, over HTTP."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from callrec.api.deps import State, require
from callrec.api.errors import TokenStoreError
from callrec.api.routes.calls import AUTH_ERRORS
from callrec.api.schemas import Problem
from callrec.api.tokens import Principal, Role, TokenRecord

router = APIRouter(prefix="/tokens", tags=["tokens"])
Admin = Annotated[Principal, require(Role.admin)]


class RoleName(StrEnum):
    """The roles by name (``Role`` orders them)."""

    viewer = "viewer"
    auditor = "auditor"
    admin = "admin"


class TokenPublic(BaseModel):
    id: str
    name: str
    role: RoleName
    created_at: str
    revoked_at: str | None


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="Who will hold it")
    role: RoleName = RoleName.viewer


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token: shown this once, only its hash is kept")


def public(record: TokenRecord) -> TokenPublic:
    return TokenPublic(id=record.id, name=record.name, role=RoleName(record.role),
                       created_at=record.created_at, revoked_at=record.revoked_at)


@router.get("", response_model=list[TokenPublic], responses=AUTH_ERRORS)
def list_tokens(state: State, who: Admin) -> list[TokenPublic]:
    """Every token, revoked ones included; never a secret."""
    return [public(t) for t in state.tokens.list()]


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED,
             responses={**AUTH_ERRORS,
                        400: {"model": Problem, "description": "The body is not JSON"}})
def add_token(body: TokenCreate, state: State, who: Admin) -> TokenCreated:
    """Create a token; the response is the only place its secret ever appears."""
    token = state.tokens.add(body.name, Role[body.role.value])
    record = next(t for t in state.tokens.list() if token.startswith(f"crk_{t.id}_"))
    return TokenCreated(**public(record).model_dump(), token=token)


@router.delete("/{token_id}", response_model=TokenPublic,
               responses={**AUTH_ERRORS, 404: {"model": Problem, "description": "No such token"},
                          409: {"model": Problem, "description": "That is your own token"}})
def revoke_token(token_id: str, state: State, who: Admin) -> TokenPublic:
    """Revoke at once on every replica (they re-read the token file). Not the caller's own:
    the last admin must not lock everyone out by mistake (the CLI still can)."""
    if token_id == who.token_id:
        raise HTTPException(status.HTTP_409_CONFLICT, "you cannot revoke the token you use")
    try:
        return public(state.tokens.revoke(token_id))
    except TokenStoreError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e

