"""GET /audit: who played, downloaded or verified what (auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from callrec.api import present, queries
from callrec.api.deps import Auditor, State
from callrec.api.routes.calls import AUTH_ERRORS, utc
from callrec.api.rows import micros
from callrec.api.schemas import AuditPublic

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPublic, responses=AUTH_ERRORS)
def audit_log(
    state: State, who: Auditor,
    call_key: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    before: Annotated[datetime | None, Query(description="Entries older than this")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPublic:
    """The access log, newest first, as this replica has read it from rec.audit.v1."""
    moment = utc("before", before)
    rows = queries.audit_log(state.db(), call_key, limit,
                             micros(moment) if moment else None)
    entries = [present.audit_entry(r) for r in rows]
    return AuditPublic(data=entries,
                       next_before=entries[-1].time if len(entries) == limit else None)
