"""OpenMediaMatch-compatible routes: an integration written for OMM (facebook/ThreatExchange,
hasher-matcher-actioner) switches by changing its base URL and adding an API key.

Same paths, parameter names and response shapes as OMM; the differences are listed in the
README ("OpenMediaMatch compatibility"). OMM's content id is the id of the PDQ entry an upload
created (each signal is its own entry here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from ..core import Added
from ..errors import InputError
from ..hashing import ImageHashes
from ..model import ApiKey, NewEntry
from ..signals import get_signal_type, signal_types
from .auth import Curate, Hashing, MatchKey, Submit, core_of
from .uploads import hash_request, request_image, run_image_work

__all__ = ["router"]

router = APIRouter(tags=["OpenMediaMatch"])


def _types(types: str | None) -> list[str]:
    known = list(signal_types(per_image=True))
    if types is None:
        return known
    wanted = [t.strip() for t in types.split(",") if t.strip()]
    for name in wanted:
        if name not in known:
            raise InputError(
                f"signal type {name!r} doesn't exist or is disabled", code="unknown_signal_type"
            )
    if not wanted:
        raise InputError("empty signal type selection", code="unknown_signal_type")
    return wanted


async def _hash_request(request: Request, url: str | None, content_type: str | None) -> ImageHashes:
    if content_type not in (None, "", "photo"):
        raise InputError(
            f"content type {content_type!r} is not supported; only 'photo'",
            code="unsupported_content_type",
        )
    return await hash_request(request, url, field="photo")


def _banks_matching(request: Request, key: ApiKey, signal_type: str, signal: str) -> list[str]:
    matches = core_of(request).lookup_signal(signal_type, signal, principal=key)
    return sorted({m.bank for m in matches})


@router.get("/m/raw_lookup")
async def raw_lookup(
    request: Request, key: MatchKey, signal: str, signal_type: str
) -> dict[str, list[int]]:
    """OMM: ids of the entries the signal matches."""
    matches = core_of(request).lookup_signal(signal_type, signal, principal=key)
    return {"matches": [m.entry_id for m in matches]}


@router.get("/m/lookup")
async def lookup_get(
    request: Request,
    key: MatchKey,
    signal: str | None = None,
    signal_type: str | None = None,
    url: str | None = None,
    content_type: str | None = None,
) -> Any:
    """OMM: names of the banks that match a signal; with `url`, per signal type of the image."""
    if url:
        hashes = await _hash_request(request, url, content_type)
        return {t: _banks_matching(request, key, t, v) for t, v in hashes.signals.items()}
    if not signal or not signal_type:
        raise InputError("give signal and signal_type, or url", code="invalid_request")
    return _banks_matching(request, key, signal_type, signal)


@router.post("/m/lookup")
async def lookup_post(request: Request, key: MatchKey) -> dict[str, list[str]]:
    """OMM: hash the uploaded file (field `photo`) and name the matching banks per signal."""
    hashes = await _hash_request(request, None, None)
    return {t: _banks_matching(request, key, t, v) for t, v in hashes.signals.items()}


@router.get("/m/index/status")
async def index_status(
    request: Request, key: MatchKey, signal_type: str | None = None
) -> dict[str, dict[str, Any]]:
    """OMM: per signal type, whether an index is loaded, up to when, and its size."""
    core = core_of(request)
    matcher = core.matcher
    sizes = matcher.sizes(core.searchable(principal=key))
    names = _types(signal_type)
    built_to = int(matcher.refreshed_at)
    return {
        name: {"built_to": built_to, "present": True, "size": sizes.get(name, 0)} for name in names
    }


@router.get("/h/hash")
async def hash_url(
    request: Request,
    key: Hashing,
    url: str,
    content_type: str | None = None,
    types: str | None = None,
) -> dict[str, str]:
    """OMM: fetch `url` (only if the operator enabled fetching) and return its hashes."""
    hashes = await _hash_request(request, url, content_type)
    return {t: hashes.signals[t] for t in _types(types)}


@router.post("/h/hash")
async def hash_post(request: Request, key: Hashing, types: str | None = None) -> dict[str, str]:
    """OMM: hash the uploaded file (multipart field `photo`)."""
    hashes = await _hash_request(request, None, None)
    return {t: hashes.signals[t] for t in _types(types)}


def _bank_config(name: str) -> dict[str, Any]:
    return {"name": name, "matching_enabled_ratio": 1.0}


@router.get("/c/banks")
def banks_index(request: Request, key: Curate) -> list[dict[str, Any]]:
    """OMM: the banks (of the key's tenant) as OMM bank configs."""
    return [_bank_config(b.name) for b in core_of(request).banks(principal=key, counts=False)]


@router.post("/c/banks", status_code=201)
def bank_create(
    request: Request, key: Curate, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """OMM: create a bank `{"name": ...}`. Only a fully enabled bank (ratio 1.0) exists here."""
    name = body.get("name")
    if not isinstance(name, str):
        raise InputError("field `name` is required", code="invalid_request")
    ratio = body.get("enabled_ratio", 1.0 if body.get("enabled", True) else 0.0)
    if ratio in (True, 1, 1.0, "1", "1.0"):
        ratio = 1.0
    if ratio != 1.0:
        raise InputError(
            "partly or wholly disabled banks (enabled_ratio < 1) are not supported",
            code="unsupported_option",
        )
    bank = core_of(request).create_bank(name, principal=key)
    return _bank_config(bank.name)


def _content_answer(hashes: dict[str, str], added: Added, key: ApiKey) -> dict[str, Any]:
    """OMM's answer. A submit-only key learns only the ids of entries this call created (as on
    /v1): otherwise it could probe a bank for what it holds (`id` is then null)."""
    results = added.results
    if key.submit_only:
        results = [r for r in results if r.status == "created"]
    ids = {r.signal_type: r.entry_id for r in results}
    content_id = ids.get("pdq", next(iter(ids.values()), None))
    return {"id": content_id, "signals": hashes}


@router.post("/c/bank/{bank_name}/content")
async def bank_add_file(
    request: Request, key: Submit, bank_name: str, url: str | None = None
) -> dict[str, Any]:
    """OMM: add an uploaded file (field `photo`) or `url` to a bank."""
    core = core_of(request)
    await run_in_threadpool(core.bank, bank_name, principal=key, counts=False)
    data = await request_image(request, url, field="photo")
    added = await run_image_work(request, lambda: core.add_image(bank_name, data, principal=key))
    assert added.hashes is not None
    return _content_answer(dict(added.hashes.signals), added, key)


@router.post("/c/bank/{bank_name}/signal")
def bank_add_as_signals(
    request: Request, key: Submit, bank_name: str, body: Annotated[dict[str, str], Body()]
) -> dict[str, Any]:
    """OMM: add signals `{"pdq": "<hex>", ...}` directly."""
    if not body:
        raise InputError("No signals given", code="invalid_request")
    entries = [NewEntry(t, v, source="hashes") for t, v in body.items()]
    added = core_of(request).add_signals(bank_name, entries, principal=key)
    stored = {t: get_signal_type(t).normalize(v) for t, v in body.items()}
    return _content_answer(stored, added, key)
