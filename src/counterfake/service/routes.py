"""Counterfake's own API, under /v1, and /status. OpenAPI at /docs."""

from __future__ import annotations

import base64
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..core import Added
from ..matching import Match
from ..model import ApiKey, NewEntry
from .auth import Admin, AnyKey, Curate, Follow, Hashing, MatchKey, Submit, core_of
from .uploads import hash_request, request_image, run_image_work

__all__ = ["router"]

router = APIRouter()

Banks = Annotated[
    list[str] | None, Query(alias="bank", description="Bank to match (repeat; default all)")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BankCreate(_Body):
    name: str
    description: str = ""
    pdq_threshold: int | None = None
    shared_with: list[str] = []
    tenant: str | None = Field(None, description="Owner; admin keys only (default: the key's)")
    enabled_ratio: float = Field(1.0, description="Share of lookups that search it (0-1)")


class BankUpdate(_Body):
    description: str | None = None
    pdq_threshold: int | None = None
    shared_with: list[str] | None = None
    enabled_ratio: float | None = None
    review: bool | None = None


class SignalAdd(_Body):
    signal_type: str = "pdq"
    value: str
    metadata: dict[str, Any] = {}


class SignalBatch(_Body):
    signals: Annotated[list[SignalAdd], Field(min_length=1, max_length=10_000)]


class Compare(_Body):
    signal_type: str = "pdq"
    a: str
    b: str


class KeyCreate(_Body):
    tenant: str
    scopes: list[str]
    name: str = ""
    rate_limit: float | None = Field(
        None, description="Requests a second in place of the service's default (0: no limit)"
    )


class KeyUpdate(_Body):
    rate_limit: float | None = Field(
        description="Requests a second in place of the service's default (0: no limit);"
        " null: the default"
    )


def _added(key: ApiKey, added: Added, accepted: int) -> dict[str, Any]:
    """What an add returns. A submit-only key reads nothing back but its own entries' ids."""
    rows = [
        {"entry_id": r.entry_id, "signal": r.signal_type, "status": r.status} for r in added.results
    ]
    if key.submit_only:
        return {"accepted": accepted, "entries": [r for r in rows if r["status"] == "created"]}
    return {"entries": rows}


def _match_dicts(matches: list[Match]) -> list[dict[str, Any]]:
    # Entry metadata never travels with a match: the bank may belong to another tenant.
    return [m.to_dict() for m in matches]


# status --------------------------------------------------------------------------------------


@router.get("/status/live", tags=["status"])
async def live() -> dict[str, str]:
    """Liveness for load balancers: the process answers. No key needed."""
    return {"status": "ok"}


@router.get("/status/ready", tags=["status"], responses={503: {"description": "not ready"}})
async def ready(request: Request) -> JSONResponse:
    """Readiness for load balancers, per worker: 200 once this worker's indexes are loaded
    and it has caught up with the change log (within a few refresh intervals); 503 while it
    is behind (a bulk import) or cannot read the store. No key needed."""
    matcher = core_of(request).matcher
    caught_up = matcher.caught_up
    body = {"ready": caught_up, "worker": os.getpid()}
    return JSONResponse(body, status_code=200 if caught_up else 503)


@router.get("/status", tags=["status"])
async def status(request: Request, key: AnyKey) -> dict[str, Any]:
    """The index this worker holds and how fresh it is: for a tenant's key, the banks it may
    match and their entries; for an admin key, everything and the change log's position."""
    core = core_of(request)
    matcher = core.matcher
    visible = core.searchable(principal=key)
    out: dict[str, Any] = {
        "status": "ok",
        "worker": os.getpid(),
        "entries": sum(matcher.sizes(visible).values()),
        "banks": len(matcher.banks) if visible is None else len(visible),
        "refreshed_seconds_ago": round(time.time() - matcher.refreshed_at, 3),
        "caught_up": matcher.caught_up,
        "uptime_seconds": round(time.time() - request.app.state.started_at, 1),
    }
    if key.is_admin:
        out["change_seq"] = matcher.change_seq
    return out


# banks ---------------------------------------------------------------------------------------


@router.get("/v1/banks", tags=["banks"])
def list_banks(request: Request, key: Curate) -> dict[str, Any]:
    """Banks the key's tenant owns (every bank for an admin key)."""
    return {"banks": [b.to_dict() for b in core_of(request).banks(principal=key)]}


@router.post("/v1/banks", tags=["banks"], status_code=201)
def create_bank(request: Request, key: Curate, body: BankCreate) -> dict[str, Any]:
    bank = core_of(request).create_bank(
        body.name,
        description=body.description,
        threshold=body.pdq_threshold,
        tenant=body.tenant,
        shared_with=body.shared_with,
        enabled_ratio=body.enabled_ratio,
        principal=key,
    )
    return bank.to_dict()


@router.get("/v1/banks/{bank}", tags=["banks"])
def get_bank(request: Request, key: Curate, bank: str) -> dict[str, Any]:
    return core_of(request).bank(bank, principal=key).to_dict()


@router.patch("/v1/banks/{bank}", tags=["banks"])
def update_bank(request: Request, key: Curate, bank: str, body: BankUpdate) -> dict[str, Any]:
    """Change the description, the PDQ threshold, the tenants the bank is shared with, or
    the share of lookups that search it."""
    updated = core_of(request).update_bank(
        bank,
        description=body.description,
        threshold=body.pdq_threshold,
        shared_with=body.shared_with,
        enabled_ratio=body.enabled_ratio,
        review=body.review,
        principal=key,
    )
    return updated.to_dict()


@router.delete("/v1/banks/{bank}", tags=["banks"], status_code=204)
def delete_bank(request: Request, key: Curate, bank: str) -> Response:
    core_of(request).delete_bank(bank, principal=key)
    return Response(status_code=204)


# entries -------------------------------------------------------------------------------------


@router.get("/v1/banks/{bank}/entries", tags=["entries"])
def list_entries(
    request: Request,
    key: Curate,
    bank: str,
    after: Annotated[int, Query(ge=0, description="Entries with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    signal_type: str | None = None,
    source: str | None = None,
    withdrawn: bool | None = None,
) -> dict[str, Any]:
    """A page of entries in id order; pass `next_after` back as `after` for the next page."""
    page = core_of(request).entries(
        bank,
        after=after,
        limit=limit,
        signal_type=signal_type,
        source=source,
        withdrawn=withdrawn,
        principal=key,
    )
    next_after = page[-1].id if len(page) == limit else None
    return {"entries": [e.to_dict() for e in page], "next_after": next_after}


@router.post("/v1/banks/{bank}/content", tags=["entries"], status_code=201)
async def add_content(
    request: Request,
    key: Submit,
    bank: str,
    url: str | None = None,
    source_name: str | None = None,
) -> dict[str, Any]:
    """Add an image (the request body, raw or multipart, or `url`): it is hashed in memory and
    its bytes are discarded; every signal becomes an entry."""
    core = core_of(request)
    await run_in_threadpool(core.bank, bank, principal=key, counts=False)
    data = await request_image(request, url)
    added = await run_image_work(
        request, lambda: core.add_image(bank, data, source_name=source_name, principal=key)
    )
    out = _added(key, added, len(added.results))
    if not key.submit_only and added.hashes is not None:
        out["hashes"] = added.hashes.to_dict()
    return out


@router.post("/v1/banks/{bank}/signals", tags=["entries"], status_code=201)
def add_signal(request: Request, key: Submit, bank: str, body: SignalAdd) -> dict[str, Any]:
    """Add one signal value (PDQ hex, MD5, SHA-256) computed elsewhere."""
    entries = [
        NewEntry(body.signal_type, body.value, source="hashes", metadata=dict(body.metadata))
    ]
    return _added(key, core_of(request).add_signals(bank, entries, principal=key), 1)


@router.post("/v1/banks/{bank}/signals/batch", tags=["entries"], status_code=201)
def add_signals(request: Request, key: Submit, bank: str, body: SignalBatch) -> dict[str, Any]:
    """Add up to 10,000 signal values in one transaction: how bulk loads go over HTTP."""
    entries = [
        NewEntry(s.signal_type, s.value, source="hashes", metadata=dict(s.metadata))
        for s in body.signals
    ]
    return _added(key, core_of(request).add_signals(bank, entries, principal=key), len(entries))


@router.get("/v1/banks/{bank}/changes", tags=["entries"])
def bank_changes(
    request: Request,
    key: Follow,
    bank: str,
    after: Annotated[int, Query(ge=0, description="The cursor: the last seq read")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """A bank's change feed, for another Counterfake that follows it (`counterfake exchange
    add --type counterfake`): adds and withdrawals after `after`, oldest first, each with its
    signal, value, quality and (derivative entries) base64 signature; never metadata. Answers
    `next_after` (the cursor to send next) and `more`."""
    page = core_of(request).bank_feed(bank, after=after, limit=limit, principal=key)
    for change in page["changes"]:
        data = change.pop("signature")
        change["signature"] = base64.b64encode(data).decode("ascii") if data else None
    return page


@router.get("/v1/banks/{bank}/entries/{entry_id}", tags=["entries"])
def get_entry(request: Request, key: Curate, bank: str, entry_id: int) -> dict[str, Any]:
    return core_of(request).entry(bank, entry_id, principal=key).to_dict()


@router.delete("/v1/banks/{bank}/entries/{entry_id}", tags=["entries"])
def withdraw_entry(request: Request, key: Submit, bank: str, entry_id: int) -> dict[str, Any]:
    """Withdraw an entry: it stops matching everywhere within a second. A submit key may
    withdraw only what it submitted. The answer is the same for every scope."""
    entry = core_of(request).withdraw(bank, entry_id, principal=key)
    withdrawn_at = entry.withdrawn_at.isoformat() if entry.withdrawn_at else None
    return {"entry_id": entry.id, "withdrawn": True, "withdrawn_at": withdrawn_at}


# matching ------------------------------------------------------------------------------------


@router.get("/v1/lookup", tags=["matching"])
async def lookup_signal(
    request: Request,
    key: MatchKey,
    signal: str,
    signal_type: str = "pdq",
    bank: Banks = None,
    review: bool = False,
    content_id: str | None = None,
    content_url: str | None = None,
) -> dict[str, Any]:
    """Match one signal value against the banks this key may match (or those named).
    `review=1` opens a review case for the matches (`case`), with the platform's own
    `content_id` and `content_url`."""
    core = core_of(request)
    matches = core.lookup_signal(signal_type, signal, banks=bank or (), principal=key)
    out: dict[str, Any] = {"matches": _match_dicts(matches)}
    case = core.open_case(
        matches,
        query=f"{signal_type}:{signal.strip().lower()}",
        content_id=content_id,
        content_url=content_url,
        requested=review,
        principal=key,
    )
    if review or case is not None:
        out["case"] = None if case is None else case.to_dict()
    return out


@router.post("/v1/lookup", tags=["matching"])
async def lookup_upload(
    request: Request,
    key: MatchKey,
    bank: Banks = None,
    dihedral: bool = False,
    url: str | None = None,
    review: bool = False,
    content_id: str | None = None,
    content_url: str | None = None,
) -> dict[str, Any]:
    """Hash an image (body or `url`) and match it in one call: its hashes and its matches.
    When copies match nothing and a bank protects photos, derivatives of them too.
    `review=1` opens a review case for the matches (`case`), with the platform's own
    `content_id` and `content_url` (default: `url`); the image itself is not kept."""
    core = core_of(request)
    core.searchable(bank or (), principal=key)  # an unknown bank fails before the upload is read
    data = await request_image(request, url)
    found = await run_image_work(
        request,
        lambda: core.lookup(data, banks=bank or (), dihedral=dihedral, principal=key),
    )
    out = found.to_dict()
    if found.matches:
        case = await run_in_threadpool(
            core.open_case,
            found.matches,
            query=f"sha256:{found.hashes.signals.get('sha256', '')}",
            content_id=content_id,
            content_url=content_url or url,
            image=data,
            requested=review,
            principal=key,
        )
        if review or case is not None:
            out["case"] = None if case is None else case.to_dict()
    elif review:
        out["case"] = None
    return out


@router.post("/v1/hash", tags=["matching"])
async def hash_upload(
    request: Request, key: Hashing, dihedral: bool = False, url: str | None = None
) -> dict[str, Any]:
    """Hash an image (body or `url`); nothing is stored."""
    return (await hash_request(request, url, dihedral=dihedral)).to_dict()


@router.post("/v1/compare", tags=["matching"])
def compare(request: Request, key: Hashing, body: Compare) -> dict[str, Any]:
    """The distance between two signal values, and whether the default threshold joins them."""
    return core_of(request).compare(body.signal_type, body.a, body.b)


# keys ----------------------------------------------------------------------------------------


@router.get("/v1/keys", tags=["keys"])
def list_keys(request: Request, key: Admin) -> dict[str, Any]:
    return {"keys": [k.to_dict() for k in core_of(request).store.keys.list()]}


@router.post("/v1/keys", tags=["keys"], status_code=201)
def create_key(request: Request, key: Admin, body: KeyCreate) -> dict[str, Any]:
    """A new key; its secret is in this answer and nowhere else."""
    created, secret = core_of(request).store.keys.create(
        body.tenant, body.scopes, name=body.name, rate_limit=body.rate_limit
    )
    return {**created.to_dict(), "key": secret}


@router.patch("/v1/keys/{key_id}", tags=["keys"])
def update_key(request: Request, key: Admin, key_id: str, body: KeyUpdate) -> dict[str, Any]:
    """Give a key its own rate limit, or back the default; services apply it within 1 s."""
    return core_of(request).store.keys.set_rate_limit(key_id, body.rate_limit).to_dict()


@router.delete("/v1/keys/{key_id}", tags=["keys"])
def revoke_key(request: Request, key: Admin, key_id: str) -> dict[str, Any]:
    return core_of(request).store.keys.revoke(key_id).to_dict()
