"""/healthz, /readyz (no token: probes) and /api/v1/me (who am I)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from callrec.api.deps import State, Viewer
from callrec.api.routes.calls import AUTH_ERRORS
from callrec.api.schemas import Health, Me

probes = APIRouter(tags=["health"])
router = APIRouter(tags=["session"])


def health(state: State) -> Health:
    p = state.progress
    return Health(replica=state.settings.api_replica_id, ready=p.caught_up_once, lag=p.lag,
                  applied=p.applied, resumed_from=p.resumed_from, error=p.error,
                  cache=asdict(state.reader.cache.stats))


@probes.get("/healthz", response_model=Health)
def healthz(state: State) -> Health:
    """Alive; how far behind the log this replica is."""
    return health(state)


@probes.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(state: State) -> JSONResponse:
    """503 until the replica has read the topics up to where they ended when it started."""
    report = health(state)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)


@router.get("/me", response_model=Me, responses=AUTH_ERRORS)
def me(who: Viewer) -> Me:
    """The holder of the token: the page signs in with this."""
    return Me(name=who.name, role=who.role.name, token_id=who.token_id)
