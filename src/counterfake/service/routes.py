"""Counterfake's own API, under /v1, and /status. OpenAPI at /docs."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..errors import AccessError, NotFoundError
from ..hashing import bank_entries
from ..matching import Match
from ..signals import get_signal_type
from ..signals.keypoints import image_features
from ..store import AddResult, ApiKey, Entry, NewEntry, Store
from .auth import (
    Admin,
    AnyKey,
    Curate,
    Hashing,
    MatchKey,
    Submit,
    bank_for,
    matcher_of,
    store_of,
    visible_banks,
)
from .uploads import Hasher, hash_request, request_image

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


class BankUpdate(_Body):
    description: str | None = None
    pdq_threshold: int | None = None
    shared_with: list[str] | None = None


class SignalAdd(_Body):
    signal_type: str = "pdq"
    value: str
    metadata: dict[str, Any] = {}


class Compare(_Body):
    signal_type: str = "pdq"
    a: str
    b: str


class KeyCreate(_Body):
    tenant: str
    scopes: list[str]
    name: str = ""


def _added(key: ApiKey, results: list[AddResult], entries: list[NewEntry]) -> dict[str, Any]:
    """What an add returns. A submit-only key reads nothing back but its own entries' ids."""
    rows = [{"entry_id": r.entry_id, "signal": r.signal_type, "status": r.status} for r in results]
    if key.scopes <= {"submit"}:
        return {"accepted": len(entries), "entries": [r for r in rows if r["status"] == "created"]}
    return {"entries": rows}


def _match_dicts(matches: list[Match]) -> list[dict[str, Any]]:
    # Entry metadata never travels with a match: the bank may belong to another tenant.
    return [m.to_dict() for m in matches]


# status --------------------------------------------------------------------------------------


@router.get("/status/live", tags=["status"])
async def live() -> dict[str, str]:
    """Liveness for load balancers: the process answers. No key needed."""
    return {"status": "ok"}


@router.get("/status", tags=["status"])
async def status(request: Request, key: AnyKey) -> dict[str, Any]:
    """The index this worker holds and how fresh it is."""
    matcher = matcher_of(request)
    matcher.refresh_if_due()
    return {
        "status": "ok",
        "worker": os.getpid(),
        "entries": len(matcher),
        "banks": len(matcher.banks),
        "change_seq": matcher.change_seq,
        "refreshed_seconds_ago": round(time.time() - matcher.refreshed_at, 3),
        "uptime_seconds": round(time.time() - request.app.state.started_at, 1),
    }


# banks ---------------------------------------------------------------------------------------


@router.get("/v1/banks", tags=["banks"])
def list_banks(request: Request, key: Curate) -> dict[str, Any]:
    """Banks the key's tenant owns (every bank for an admin key)."""
    tenant = None if "admin" in key.scopes else key.tenant
    return {"banks": [b.to_dict() for b in store_of(request).list_banks(tenant=tenant)]}


@router.post("/v1/banks", tags=["banks"], status_code=201)
def create_bank(request: Request, key: Curate, body: BankCreate) -> dict[str, Any]:
    if body.tenant is not None and body.tenant != key.tenant and "admin" not in key.scopes:
        raise AccessError("only an admin key creates banks for another tenant")
    matcher_of(request).expire()
    bank = store_of(request).create_bank(
        body.name,
        description=body.description,
        threshold=body.pdq_threshold,
        tenant=body.tenant or key.tenant,
        shared_with=body.shared_with,
    )
    return bank.to_dict()


@router.get("/v1/banks/{bank}", tags=["banks"])
def get_bank(request: Request, key: Curate, bank: str) -> dict[str, Any]:
    return bank_for(key, store_of(request).get_bank(bank)).to_dict()


@router.patch("/v1/banks/{bank}", tags=["banks"])
def update_bank(request: Request, key: Curate, bank: str, body: BankUpdate) -> dict[str, Any]:
    """Change the description, the PDQ threshold, or the tenants the bank is shared with."""
    store = store_of(request)
    bank_for(key, store.get_bank(bank))
    matcher_of(request).expire()
    updated = store.update_bank(
        bank,
        description=body.description,
        threshold=body.pdq_threshold,
        shared_with=body.shared_with,
    )
    return updated.to_dict()


@router.delete("/v1/banks/{bank}", tags=["banks"], status_code=204)
def delete_bank(request: Request, key: Curate, bank: str) -> Response:
    store = store_of(request)
    bank_for(key, store.get_bank(bank))
    store.delete_bank(bank)
    matcher_of(request).expire()
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
    store = store_of(request)
    bank_for(key, store.get_bank(bank))
    page = store.list_entries(
        bank,
        after=after,
        limit=limit,
        signal_type=signal_type,
        source=source,
        withdrawn=withdrawn,
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
    store = store_of(request)
    bank_for(key, await run_in_threadpool(store.get_bank, bank))
    hashes = await hash_request(request, url)
    entries = bank_entries(hashes, source_name=source_name)
    results = await run_in_threadpool(
        lambda: store.add_entries(bank, entries, submitted_by=key.key_id)
    )
    matcher_of(request).expire()
    out = _added(key, results, entries)
    if not key.scopes <= {"submit"}:
        out["hashes"] = hashes.to_dict()
    return out


@router.post("/v1/banks/{bank}/signals", tags=["entries"], status_code=201)
def add_signal(request: Request, key: Submit, bank: str, body: SignalAdd) -> dict[str, Any]:
    """Add one signal value (PDQ hex, MD5, SHA-256) computed elsewhere."""
    store = store_of(request)
    bank_for(key, store.get_bank(bank))
    entries = [
        NewEntry(body.signal_type, body.value, source="hashes", metadata=dict(body.metadata))
    ]
    results = store.add_entries(bank, entries, submitted_by=key.key_id)
    matcher_of(request).expire()
    return _added(key, results, entries)


def _entry_in(store: Store, key: ApiKey, bank: str, entry_id: int) -> Entry:
    bank_for(key, store.get_bank(bank))
    try:
        entry = store.get_entry(entry_id)
    except NotFoundError:
        entry = None
    mine = key.scopes & {"curate", "admin"} or (entry and entry.submitted_by == key.key_id)
    if entry is None or entry.bank != bank or not mine:
        raise NotFoundError(f"bank {bank!r} has no entry {entry_id}", code="entry_not_found")
    return entry


@router.get("/v1/banks/{bank}/entries/{entry_id}", tags=["entries"])
def get_entry(request: Request, key: Curate, bank: str, entry_id: int) -> dict[str, Any]:
    return _entry_in(store_of(request), key, bank, entry_id).to_dict()


@router.delete("/v1/banks/{bank}/entries/{entry_id}", tags=["entries"])
def withdraw_entry(request: Request, key: Submit, bank: str, entry_id: int) -> dict[str, Any]:
    """Withdraw an entry: it stops matching everywhere within a second. A submit key may
    withdraw only what it submitted."""
    store = store_of(request)
    _entry_in(store, key, bank, entry_id)
    entry = store.withdraw(bank, entry_id)
    matcher_of(request).expire()
    if key.scopes <= {"submit"}:
        return {"entry_id": entry.id, "withdrawn": True}
    return entry.to_dict()


# matching ------------------------------------------------------------------------------------


@router.get("/v1/lookup", tags=["matching"])
async def lookup_signal(
    request: Request, key: MatchKey, signal: str, signal_type: str = "pdq", bank: Banks = None
) -> dict[str, Any]:
    """Match one signal value against the banks this key may match (or those named)."""
    matcher = matcher_of(request)
    allowed = visible_banks(matcher, key, bank or ())
    return {"matches": _match_dicts(matcher.match_signal(signal_type, signal, banks=allowed))}


@router.post("/v1/lookup", tags=["matching"])
async def lookup_upload(
    request: Request,
    key: MatchKey,
    bank: Banks = None,
    dihedral: bool = False,
    url: str | None = None,
) -> dict[str, Any]:
    """Hash an image (body or `url`) and match it in one call: its hashes and its matches.
    When copies match nothing and a bank protects photos, derivatives of them too."""
    matcher = matcher_of(request)
    allowed = visible_banks(matcher, key, bank or ())
    data = await request_image(request, url)
    hasher: Hasher = request.app.state.hasher
    hashes = await hasher.hash(data, dihedral=dihedral)
    result = matcher.match(hashes, banks=allowed)
    matches = result.matches
    if not matches and matcher.protects_photos(allowed):
        limits = request.app.state.limits
        matches = await hasher.run(
            lambda: matcher.derivatives(
                image_features(data, query=True, limits=limits), banks=allowed
            )
        )
    out: dict[str, Any] = {"hashes": hashes.to_dict(), "matches": _match_dicts(matches)}
    if result.notes:
        out["notes"] = result.notes
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
    kind = get_signal_type(body.signal_type)
    a, b = kind.normalize(body.a), kind.normalize(body.b)
    distance = kind.distance(a, b)
    threshold = request.app.state.settings.pdq_threshold if kind.kind != "exact" else 0
    return {"distance": distance, "threshold": threshold, "match": distance <= threshold}


# keys ----------------------------------------------------------------------------------------


@router.get("/v1/keys", tags=["keys"])
def list_keys(request: Request, key: Admin) -> dict[str, Any]:
    return {"keys": [k.to_dict() for k in store_of(request).keys.list()]}


@router.post("/v1/keys", tags=["keys"], status_code=201)
def create_key(request: Request, key: Admin, body: KeyCreate) -> dict[str, Any]:
    """A new key; its secret is in this answer and nowhere else."""
    created, secret = store_of(request).keys.create(body.tenant, body.scopes, name=body.name)
    return {**created.to_dict(), "key": secret}


@router.delete("/v1/keys/{key_id}", tags=["keys"])
def revoke_key(request: Request, key: Admin, key_id: str) -> dict[str, Any]:
    return store_of(request).keys.revoke(key_id).to_dict()
