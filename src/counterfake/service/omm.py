"""The HMA 2.0 (OpenMediaMatch) API, so that HMA clients such as ROOST Coop run unchanged.

Paths, parameters, answer shapes and status codes follow HMA's blueprints (facebook/
ThreatExchange, `hasher-matcher-actioner/src/OpenMediaMatch/blueprints`, commit baefb4ed).
Errors carry HMA's top-level `message` (and our `error.code`). What Counterfake does
differently, or cannot do, is listed in the README ("OpenMediaMatch compatibility") and
answered in HMA's error style. A content id is the id of the entry an add created (for an
image, its PDQ entry: each signal is its own entry here).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from ..core import Added, Lookup
from ..errors import InputError, NotFoundError
from ..matching import Match
from ..model import ApiKey, Bank, Entry, Exchange, NewEntry
from ..signals import get_signal_type, signal_types
from .auth import Curate, Hashing, MatchKey, Submit, core_of
from .uploads import read_upload, request_image, run_image_work

__all__ = ["router"]

router = APIRouter(tags=["OpenMediaMatch"])

#: HMA's magic values of `disable_until_ts`.
_ENABLED, _DISABLED = 1, 0
#: HMA limits a content note to this many characters.
_NOTE_MAX = 255


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


def _content_type(content_type: str | None) -> None:
    if content_type not in (None, "", "photo"):
        raise InputError(
            f"content type {content_type!r} is not supported; only 'photo'",
            code="unsupported_content_type",
        )


def _bank_filter(banks: str | None) -> set[str] | None:
    """HMA's `banks=A,B`: results outside them are dropped (unknown names are no error)."""
    return {b.strip() for b in banks.split(",") if b.strip()} if banks else None


def _by_bank(matches: Iterable[Match], banks: set[str] | None) -> dict[str, list[dict[str, Any]]]:
    """HMA's `{BANK: [{"bank_content_id", "distance"}]}`; a derivative match also says its
    score and the share of the photo that was changed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for match in matches:
        if banks is not None and match.bank not in banks:
            continue
        found: dict[str, Any] = {"bank_content_id": match.entry_id, "distance": str(match.distance)}
        if match.score is not None:
            found["score"] = round(match.score, 3)
            found["changed_fraction"] = round(match.changed_fraction or 0.0, 3)
            found["matched_part"] = match.matched_part or "photo"
        out.setdefault(match.bank, []).append(found)
    return out


def _by_signal_type(found: Lookup, banks: set[str] | None) -> dict[str, Any]:
    """An image's matches per signal type it was hashed with (`derivative` when a protected
    photo was found changed), each as `_by_bank`."""
    out: dict[str, Any] = {name: {} for name in found.hashes.signals}
    for name in {m.signal for m in found.matches}:
        out[name] = _by_bank((m for m in found.matches if m.signal == name), banks)
    return out


async def _image_lookup(
    request: Request, key: ApiKey, url: str | None, seed: str | None, bypass: bool
) -> Lookup:
    """The request's image (fetched from `url`, or the multipart field `photo`) looked up,
    derivatives included, on the hashing threads; a case opens where a matched bank's review
    rule says so."""
    core = core_of(request)
    data = await request_image(request, url, field="photo")
    found = await run_image_work(
        request, lambda: core.lookup(data, principal=key, seed=seed, bypass_coinflip=bypass)
    )
    if found.matches:  # a matched bank's review rule opens a case (HMA's answer is unchanged)
        await run_in_threadpool(
            core.open_case,
            found.matches,
            query=f"sha256:{found.hashes.signals.get('sha256', '')}",
            content_url=url,
            image=data,
            requested=False,
            principal=key,
        )
    return found


# matching ----------------------------------------------------------------------------------------


@router.get("/m/raw_lookup")
async def raw_lookup(
    request: Request,
    key: MatchKey,
    signal: str,
    signal_type: str,
    banks: str | None = None,
    include_distance: bool = False,
) -> dict[str, list[Any]]:
    """HMA: the content ids a signal matches (with their distances if `include_distance`),
    in every bank the key may match or only `banks`; enabled ratios are not applied."""
    wanted = _bank_filter(banks)
    matches = core_of(request).lookup_signal(
        signal_type, signal, principal=key, bypass_coinflip=True
    )
    kept = [m for m in matches if wanted is None or m.bank in wanted]
    if include_distance:
        return {
            "matches": [{"bank_content_id": m.entry_id, "distance": str(m.distance)} for m in kept]
        }
    return {"matches": [m.entry_id for m in kept]}


@router.get("/m/lookup")
async def lookup_get(
    request: Request,
    key: MatchKey,
    signal: str | None = None,
    signal_type: str | None = None,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
    banks: str | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> dict[str, Any]:
    """HMA: `{BANK: [{"bank_content_id", "distance"}]}` for a signal; for `url`, the same per
    signal type of the fetched image (only `signal_type`'s, if given), derivatives of
    protected photos included. A bank with an enabled ratio below 1 is searched by that share
    of lookups (`seed` makes the draw repeatable; `bypass_coinflip` skips it)."""
    wanted = _bank_filter(banks)
    core = core_of(request)
    if url:
        _content_type(content_type)
        found = await _image_lookup(request, key, url, seed, bypass_coinflip)
        per_type = _by_signal_type(found, wanted)
        if types is not None:
            per_type = {t: per_type.get(t, {}) for t in _types(types)}
        return per_type.get(signal_type, {}) if signal_type else per_type
    if not signal or not signal_type:
        raise InputError(
            "Either url or both signal and signal_type are required", code="invalid_request"
        )
    if signal_type == core.matcher.local_type:  # a reference from /h/hash
        matches = core.lookup_reference(
            signal, principal=key, seed=seed, bypass_coinflip=bypass_coinflip
        )
    else:
        matches = core.lookup_signal(
            signal_type, signal, principal=key, seed=seed, bypass_coinflip=bypass_coinflip
        )
    return _by_bank(matches, wanted)


@router.post("/m/lookup")
async def lookup_post(
    request: Request,
    key: MatchKey,
    banks: str | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> dict[str, Any]:
    """HMA: the uploaded file's (multipart field `photo`) matches per signal type, as
    `GET /m/lookup?url=` answers them."""
    found = await _image_lookup(request, key, None, seed, bypass_coinflip)
    return _by_signal_type(found, _bank_filter(banks))


@router.get("/m/index/status")
async def index_status(
    request: Request, key: MatchKey, signal_type: str | None = None
) -> dict[str, dict[str, Any]]:
    """HMA: per signal type, whether an index is loaded, up to when, and its size."""
    core = core_of(request)
    matcher = core.matcher
    sizes = matcher.sizes(core.searchable(principal=key))
    names = _types(signal_type)
    built_to = int(matcher.refreshed_at)
    return {
        name: {"built_to": built_to, "present": True, "size": sizes.get(name, 0)} for name in names
    }


@router.post("/m/compare")
async def compare(
    request: Request, key: Hashing, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """HMA: `{"pdq": [a, b]}` -> `{"pdq": [is_match, {"distance": d}]}` per signal type."""
    out: dict[str, Any] = {}
    for name, pair in body.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, str) for v in pair)
        ):
            raise InputError(
                "Comparison hash list length must be exactly 2", code="invalid_request"
            )
        compared = core_of(request).compare(name, pair[0], pair[1])
        out[name] = [compared["match"], {"distance": compared["distance"]}]
    return out


# hashing -----------------------------------------------------------------------------------------


async def _hashes(
    request: Request, key: ApiKey, url: str | None, types: str | None
) -> dict[str, str]:
    """The image's hashes (only `types`, if given) and, when the key may match a bank that
    protects photos, a `derivative` reference: `/m/lookup` with it reports the derivative
    matches of this image, on any worker, for REF_TTL seconds."""
    core = core_of(request)
    local = core.matcher.local_type
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    if wanted is not None and local in wanted:
        wanted.remove(local)
    refer = types is None or local in types.split(",")
    data = await request_image(request, url, field="photo")
    if refer:
        hashes, ref = await run_image_work(
            request, lambda: core.hash_with_reference(data, principal=key)
        )
    else:
        hashes, ref = await run_image_work(request, lambda: core.hash(data)), None
    out: dict[str, str] = {}
    if wanted is None or wanted:
        out = {t: hashes.signals[t] for t in _types(",".join(wanted) if wanted else None)}
    if ref is not None:
        out[local] = ref
    return out


@router.get("/h/hash")
async def hash_url(
    request: Request,
    key: Hashing,
    url: str,
    content_type: str | None = None,
    types: str | None = None,
) -> dict[str, str]:
    """HMA: fetch `url` (only if the operator enabled fetching) and return its hashes."""
    _content_type(content_type)
    return await _hashes(request, key, url, types)


@router.post("/h/hash")
async def hash_post(request: Request, key: Hashing, types: str | None = None) -> dict[str, str]:
    """HMA: hash the uploaded file (multipart field `photo`)."""
    return await _hashes(request, key, None, types)


# banks -------------------------------------------------------------------------------------------


def _bank_config(bank: Bank) -> dict[str, Any]:
    return {"name": bank.name, "matching_enabled_ratio": bank.enabled_ratio}


def _ratio(enabled_ratio: Any, enabled: Any) -> float | None:
    """HMA's `enabled_ratio` (a number, or a numeric string as Coop sends it) or `enabled`."""
    if enabled_ratio is not None:
        try:
            return float(enabled_ratio)
        except (TypeError, ValueError):
            raise InputError(
                f"enabled_ratio must be a number, not {str(enabled_ratio)[:40]!r}",
                code="invalid_enabled_ratio",
            ) from None
    if enabled is not None:
        return 1.0 if enabled else 0.0
    return None


@router.get("/c/banks")
def banks_index(request: Request, key: Curate) -> list[dict[str, Any]]:
    """HMA: the banks (of the key's tenant) as HMA bank configs."""
    return [_bank_config(b) for b in core_of(request).banks(principal=key, counts=False)]


@router.post("/c/banks", status_code=201)
def bank_create(
    request: Request, key: Curate, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """HMA: create a bank `{"name", "enabled_ratio" | "enabled"}`; 403 if it exists."""
    name = body.get("name")
    if not isinstance(name, str):
        raise InputError("name is required", code="invalid_request")
    ratio = _ratio(body.get("enabled_ratio"), body.get("enabled"))
    bank = core_of(request).create_bank(
        name, enabled_ratio=1.0 if ratio is None else ratio, principal=key
    )
    return _bank_config(bank)


@router.get("/c/bank/{bank_name}")
def bank_show(request: Request, key: Curate, bank_name: str) -> dict[str, Any]:
    """HMA: one bank's config; 404 if the key's tenant has no such bank."""
    return _bank_config(core_of(request).bank(bank_name, principal=key, counts=False))


@router.put("/c/bank/{bank_name}")
def bank_update(
    request: Request, key: Curate, bank_name: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """HMA: change `enabled_ratio` (or `enabled`). Renaming is not supported (400): create
    the new bank and delete the old one, as Coop does."""
    core = core_of(request)
    current = core.bank(bank_name, principal=key, counts=False)
    renamed = body.get("name")
    if renamed is not None and renamed != current.name:
        raise InputError(
            "renaming a bank is not supported here; create the new bank and delete this one",
            code="unsupported_option",
        )
    ratio = _ratio(body.get("enabled_ratio"), body.get("enabled"))
    bank = core.update_bank(bank_name, enabled_ratio=ratio, principal=key)
    return _bank_config(bank)


@router.delete("/c/bank/{bank_name}")
def bank_delete(request: Request, key: Curate, bank_name: str) -> dict[str, str]:
    """HMA: delete a bank and its content; deleting a bank that does not exist (for this
    tenant) succeeds too, as in HMA."""
    with contextlib.suppress(NotFoundError):
        core_of(request).delete_bank(bank_name, principal=key)
    return {"message": "Done"}


# bank content ------------------------------------------------------------------------------------


def _note(note: Any) -> str | None:
    if not note:
        return None
    if not isinstance(note, str):
        raise InputError("note should be a string", code="invalid_request")
    if len(note) > _NOTE_MAX:
        raise InputError(f"note must be at most {_NOTE_MAX} characters", code="invalid_request")
    return note


def _hma_metadata(raw: Any, note: Any) -> dict[str, Any]:
    """HMA's content metadata (`content_id`, `content_uri`, `json`) and note, kept as the
    entries' metadata."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InputError(
                "metadata form field must be valid JSON", code="invalid_metadata"
            ) from None
    if raw is not None and not isinstance(raw, dict):
        raise InputError("metadata should be a json object", code="invalid_metadata")
    kept = {k: v for k, v in (raw or {}).items() if k in ("content_id", "content_uri", "json")}
    if unknown := set(raw or {}) - {"content_id", "content_uri", "json", "collab"}:
        raise InputError(
            f"Invalid metadata: unexpected {', '.join(sorted(unknown))}", code="invalid_metadata"
        )
    if checked := _note(note):
        kept["note"] = checked
    return kept


def _content_answer(hashes: dict[str, str], added: Added, key: ApiKey) -> dict[str, Any]:
    """HMA's answer. A submit-only key learns only the ids of entries this call created (as on
    /v1): otherwise it could probe a bank for what it holds (`id` is then null)."""
    results = added.results
    if key.submit_only:
        results = [r for r in results if r.status == "created"]
    ids = {r.signal_type: r.entry_id for r in results}
    content_id = ids.get("pdq", next(iter(ids.values()), None))
    return {"id": content_id, "signals": hashes}


@router.post("/c/bank/{bank_name}/content")
async def bank_add_content(
    request: Request,
    key: Submit,
    bank_name: str,
    url: str | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """HMA: add an uploaded file (multipart field `photo`, with optional `metadata` JSON and
    `note` fields) or `url` to a bank."""
    core = core_of(request)
    await run_in_threadpool(core.bank, bank_name, principal=key, counts=False)
    _content_type(content_type)
    if url:
        data = await request_image(request, url, field="photo")
        metadata = _hma_metadata(None, None)
    else:
        upload = await read_upload(request, core.limits)
        if upload.field not in (None, "photo"):
            raise InputError(
                f"the file field must be named 'photo' (the content type); got {upload.field!r}",
                code="unsupported_content_type",
            )
        data = upload.data
        metadata = _hma_metadata(upload.fields.get("metadata"), upload.fields.get("note"))
    added = await run_image_work(
        request, lambda: core.add_image(bank_name, data, principal=key, metadata=metadata)
    )
    assert added.hashes is not None
    return _content_answer(dict(added.hashes.signals), added, key)


@router.post("/c/bank/{bank_name}/signal")
def bank_add_as_signals(
    request: Request, key: Submit, bank_name: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """HMA: add signals `{"pdq": "<hex>", ..., "note"?}` directly."""
    signals = dict(body)
    metadata = _hma_metadata(None, signals.pop("note", None))
    if not signals:
        raise InputError("No signals given", code="invalid_request")
    for name, value in signals.items():
        if not isinstance(value, str):
            raise InputError(f"Invalid {name} signal: not a string", code="invalid_signal")
    entries = [NewEntry(t, v, source="hashes", metadata=metadata) for t, v in signals.items()]
    added = core_of(request).add_signals(bank_name, entries, principal=key)
    stored = {t: get_signal_type(t).normalize(v) for t, v in signals.items()}
    return _content_answer(stored, added, key)


def _content(entry: Entry, bank: Bank, *, signals: bool, metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": entry.id,
        "disable_until_ts": _DISABLED if entry.withdrawn_at else _ENABLED,
        "original_media_uri": None,
        "bank": _bank_config(bank),
    }
    if signals:
        out["signals"] = {entry.signal_type: entry.value}
    shown = {k: v for k, v in entry.metadata.items() if k in ("content_id", "content_uri", "json")}
    if metadata and shown:
        out["metadata"] = shown
    if entry.metadata.get("note"):
        out["note"] = entry.metadata["note"]
    return out


@router.get("/c/bank/{bank_name}/content/{content_id}")
def bank_get_content(
    request: Request,
    key: Curate,
    bank_name: str,
    content_id: int,
    include_signals: bool = False,
    include_metadata: bool = True,
) -> dict[str, Any]:
    """HMA: one content item (an entry) of a bank."""
    core = core_of(request)
    bank = core.bank(bank_name, principal=key, counts=False)
    entry = core.entry(bank_name, content_id, principal=key)
    return _content(entry, bank, signals=include_signals, metadata=include_metadata)


@router.put("/c/bank/{bank_name}/content/{content_id}")
def bank_update_content(
    request: Request,
    key: Curate,
    bank_name: str,
    content_id: int,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """HMA: `disable_until_ts` 0 disables (withdraws) the item, 1 or a past time enables it
    again; a future time is refused (no timed disabling here). A `note` is not changed."""
    core = core_of(request)
    bank = core.bank(bank_name, principal=key, counts=False)
    entry = core.entry(bank_name, content_id, principal=key)
    if "note" in body:
        raise InputError("changing a note is not supported here", code="unsupported_option")
    if "disable_until_ts" in body:
        try:
            until = int(body["disable_until_ts"])
        except (TypeError, ValueError):
            raise InputError(
                "disable_until_ts must be an integer", code="invalid_request"
            ) from None
        if until < 0:
            raise InputError(
                "disable_until_ts must be a non-negative integer", code="invalid_request"
            )
        if until > time.time():
            raise InputError(
                "disabling until a time is not supported here; 0 disables, 1 enables",
                code="unsupported_option",
            )
        if until == _DISABLED and entry.withdrawn_at is None:
            entry = core.withdraw(bank_name, content_id, principal=key)
        elif until != _DISABLED and entry.withdrawn_at is not None:
            again = NewEntry(entry.signal_type, entry.value, entry.quality, entry.source)
            core.add_signals(bank_name, [again], principal=key)
            entry = core.entry(bank_name, content_id, principal=key)
    return _content(entry, bank, signals=False, metadata=True)


@router.delete("/c/bank/{bank_name}/content/{content_id}")
def bank_delete_content(
    request: Request, key: Curate, bank_name: str, content_id: int
) -> dict[str, int]:
    """HMA: remove an item from matching. It is withdrawn, not erased (the audit log and
    exchanges keep that it was withdrawn); `deleted` counts items that stopped matching."""
    core = core_of(request)
    core.bank(bank_name, principal=key, counts=False)
    try:
        entry = core.entry(bank_name, content_id, principal=key)
    except NotFoundError:
        return {"deleted": 0}
    if entry.withdrawn_at is not None:
        return {"deleted": 0}
    core.withdraw(bank_name, content_id, principal=key)
    return {"deleted": 1}


# signal and content types ------------------------------------------------------------------------


@router.get("/c/signal_type")
def signal_type_list(key: Curate) -> list[dict[str, Any]]:
    """HMA: the signal types, each fully enabled."""
    return [{"name": name, "enabled_ratio": 1.0} for name in signal_types()]


@router.put("/c/signal_type/{signal_type_name}")
def signal_type_update(key: Curate, signal_type_name: str) -> dict[str, Any]:
    """HMA: not supported here: every signal type is always enabled (400)."""
    get_signal_type(signal_type_name)  # an unknown one is 400 too
    raise InputError(
        "signal types cannot be disabled here; every installed type is enabled",
        code="unsupported_option",
    )


@router.get("/c/signal_type/index")
def signal_type_index(
    request: Request, key: Curate, signal_type: str | None = None
) -> dict[str, dict[str, Any]]:
    """HMA: per signal type, entries held by this worker's index and whether it is behind."""
    core = core_of(request)
    matcher = core.matcher
    sizes = matcher.sizes(core.searchable(principal=key))
    built_to = int(matcher.refreshed_at)
    return {
        name: {
            "db_size": sizes.get(name, 0),
            "index_size": sizes.get(name, 0),
            "index_out_of_date": not matcher.caught_up,
            "newest_db_item": built_to,
            "index_built_to": built_to,
        }
        for name in _types(signal_type)
    }


@router.get("/c/content_type")
def content_type_list(key: Curate) -> list[dict[str, Any]]:
    """HMA: the content types: photos only."""
    return [{"name": "photo", "enabled": True}]


# exchanges ---------------------------------------------------------------------------------------
# HMA's exchange APIs are python-threatexchange's SignalExchangeAPI names; each is one of our
# exchange types, its `api_json` and `credential_json` fields translated to the core's. HMA keeps
# one credential per API: here per API and tenant, used by the tenant's exchanges of that type.

#: HMA's exchange API name -> our exchange type.
_APIS: dict[str, str] = {
    "counterfake": "counterfake",
    "local_file": "threatexchange-file",
    "ncmec": "ncmec",
    "stop_ncii": "stopncii",
}
_API_OF = {type_: api for api, type_ in _APIS.items()}
#: python-threatexchange's NCMECEnvironment values (any other http(s) URL is taken too).
_NCMEC_ENVIRONMENTS = [
    "https://report.cybertip.org/hashsharing",
    "https://report.cybertip.org/exploitative-hashsharing",
    "https://lesp.ncmec.org/csam-hashsharing",
    "https://hashsharing.ncmec.org/npo",
    "https://hashsharing.ncmec.org/exploitative",
    "https://hashsharing.ncmec.org/generative-ai-csam",
    "https://hashsharing.ncmec.org/generative-ai-exploitative",
    "https://exttest.cybertip.org/hashsharing",
    "https://exttest.cybertip.org/exploitative-hashsharing",
    "https://betalesp.ncmec.org/csam-hashsharing",
    "https://hashsharing-test.ncmec.org/npo",
    "https://hashsharing-test.ncmec.org/exploitative",
    "https://hashsharing-test.ncmec.org/generative-ai-csam",
]


def _field(
    name: str,
    help: str,
    *,
    type: str = "string",
    required: bool = True,
    default: Any = None,
    choices: list[str] | None = None,
) -> dict[str, Any]:
    """A field descriptor as HMA's exchange schema route gives it."""
    return {
        "name": name,
        "type": type,
        "required": required,
        "default": default,
        "help": help,
        "choices": choices,
    }


_CONFIG_FIELDS: dict[str, list[dict[str, Any]]] = {
    "counterfake": [
        _field("url", "the hub's address (https://...)"),
        _field("remote_bank", "the hub's bank to follow"),
    ],
    "local_file": [
        _field("filename", "the absolute file path to the signal file"),
        _field(
            "signal_type",
            "if the file row doesn't list the signal type, interpret as this type (pdq only)",
            required=False,
        ),
    ],
    "ncmec": [
        _field(
            "environment",
            "which database to connect to",
            type="enum",
            choices=_NCMEC_ENVIRONMENTS,
        ),
        _field(
            "only_esp_ids",
            "Only take entries from these electronic service provider (ESP) ids",
            type="set_of_number",
            required=False,
            default=[],
        ),
    ],
    "stop_ncii": [],
}
_CREDENTIAL_FIELDS: dict[str, list[dict[str, Any]] | None] = {
    "counterfake": [_field("api_key", "a key of the hub's follow scope for its bank")],
    "local_file": None,
    "ncmec": [
        _field("user", "NCMEC hash sharing API username."),
        _field("password", "NCMEC hash sharing API password."),
    ],
    "stop_ncii": [
        _field(
            "fetch_function_key",
            "API key for the Fetch Hashes endpoint. Used when downloading hashes from StopNCII.",
        ),
        _field(
            "subscription_key",
            "Azure API Management subscription key. Sent as Ocp-Apim-Subscription-Key on all"
            " requests.",
        ),
        _field(
            "base_url_override",
            "Override the StopNCII API base URL (a stand-in, a proxy).",
            required=False,
        ),
    ],
}


def _api(name: str) -> str:
    """Our exchange type for an HMA exchange API name."""
    if name not in _APIS:
        raise InputError(f"no such Exchange API '{name}'", code="unknown_exchange_api")
    return _APIS[name]


def _strings(raw: dict[str, Any], api: str, fields: list[dict[str, Any]], what: str) -> None:
    """`raw` has only `fields`, every required one, and strings where strings are asked."""
    known = {f["name"] for f in fields}
    unknown = sorted(set(raw) - known - {"name", "api", "enabled"})
    if unknown:
        raise InputError(
            f"Failed to parse `{what}` - {api} takes no field {unknown[0]!r}",
            code="invalid_request",
        )
    for f in fields:
        value = raw.get(f["name"])
        if f["required"] and value in (None, ""):
            raise InputError(
                f"Failed to parse `{what}` - {f['name']} is required", code="invalid_request"
            )
        if f["type"] in ("string", "enum") and value is not None and not isinstance(value, str):
            raise InputError(
                f"Failed to parse `{what}` - {f['name']} must be a string", code="invalid_request"
            )


def _exchange_args(api: str, raw: dict[str, Any]) -> dict[str, Any]:
    """An HMA `api_json` as `Counterfake.add_exchange` arguments."""
    _strings(raw, api, _CONFIG_FIELDS[api], "api_json")
    if api == "counterfake":
        return {"url": raw["url"], "remote_bank": raw["remote_bank"]}
    if api == "local_file":
        if raw.get("signal_type") not in (None, "", "pdq"):
            raise InputError(
                "Failed to parse `api_json` - signal_type: only pdq files are read",
                code="invalid_request",
            )
        return {"path": raw["filename"]}
    if api == "ncmec":
        members = raw.get("only_esp_ids") or []
        if not isinstance(members, list) or not all(
            isinstance(m, int) and not isinstance(m, bool) for m in members
        ):
            raise InputError(
                "Failed to parse `api_json` - only_esp_ids must be a list of numbers",
                code="invalid_request",
            )
        return {"url": raw["environment"], "only_members": members}
    return {}


def _credential(api: str, raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An HMA `credential_json` as our credential text and the settings that go with it."""
    fields = _CREDENTIAL_FIELDS[api]
    if fields is None:
        raise InputError(f"{api} takes no credentials", code="invalid_request")
    _strings(raw, api, fields, "credential_json")
    if api == "counterfake":
        return str(raw["api_key"]), {}
    if api == "ncmec":
        return f"{raw['user']}:{raw['password']}", {}
    override = raw.get("base_url_override")
    return (
        f"{raw['subscription_key']}:{raw['fetch_function_key']}",
        {"url": override} if override else {},
    )


def _exchange_config(exchange: Exchange) -> dict[str, Any]:
    """An exchange as HMA's collaboration config: name, api, enabled and the API's fields."""
    api = _API_OF[exchange.type]
    out: dict[str, Any] = {"name": exchange.name, "api": api, "enabled": exchange.enabled}
    config = exchange.config
    if api == "counterfake":
        out |= {"url": config.get("url"), "remote_bank": config.get("remote_bank")}
    elif api == "local_file":
        out |= {"filename": config.get("path"), "signal_type": None}
    elif api == "ncmec":
        out |= {"environment": config.get("url"), "only_esp_ids": config.get("only_esp_ids", [])}
        if "path" in config:
            out["filename"] = config["path"]
    return out


def _stamp(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


@router.get("/c/exchanges/apis")
def exchange_api_list(key: Curate) -> list[str]:
    """HMA: the exchange API types that can be configured."""
    return list(_APIS)


@router.get("/c/exchanges/api/{api_name}")
def exchange_api_get(request: Request, key: Curate, api_name: str) -> dict[str, bool]:
    """HMA: whether an exchange API takes credentials and whether the key's tenant has set
    them (they are never returned)."""
    type_ = _api(api_name)
    return {
        "supports_authentification": _CREDENTIAL_FIELDS[api_name] is not None,
        "has_set_authentification": core_of(request).has_exchange_credential(type_, principal=key),
    }


@router.post("/c/exchanges/api/{api_name}")
def exchange_api_update(
    request: Request, key: Curate, api_name: str, body: Annotated[Any, Body()] = None
) -> dict[str, bool]:
    """HMA: set the key's tenant's credentials for an exchange API (`{"credential_json":
    {...}}`; an empty one clears them), used by its exchanges of that API."""
    type_ = _api(api_name)
    if not isinstance(body, dict):
        raise InputError("this endpoint expects a json object payload", code="invalid_request")
    raw = body.get("credential_json")
    if raw is not None:
        core = core_of(request)
        if not raw:
            core.set_exchange_credential(type_, None, principal=key)
        elif not isinstance(raw, dict):
            raise InputError("credential_json must be an object", code="invalid_request")
        else:
            credential, config = _credential(api_name, raw)
            core.set_exchange_credential(type_, credential, config=config, principal=key)
    return exchange_api_get(request, key, api_name)


@router.get("/c/exchanges/api/{api_name}/schema")
def exchange_api_schema(key: Curate, api_name: str) -> dict[str, Any]:
    """HMA: the fields an exchange of this API takes (`api_json`) and its credentials take
    (`credential_json`, null when it takes none)."""
    if api_name not in _APIS:
        raise NotFoundError(f"Exchange API '{api_name}' not found", code="unknown_exchange_api")
    credentials = _CREDENTIAL_FIELDS[api_name]
    return {
        "config_schema": {"fields": _CONFIG_FIELDS[api_name]},
        "credentials_schema": None if credentials is None else {"fields": credentials},
    }


@router.get("/c/exchanges")
def exchange_list(request: Request, key: Curate) -> list[str]:
    """HMA: the names of the exchanges that fetch into the key's tenant's banks."""
    return [x.name for x in core_of(request).exchanges(principal=key)]


@router.post("/c/exchanges", status_code=201)
def exchange_create(
    request: Request, key: Curate, body: Annotated[dict[str, Any], Body()]
) -> dict[str, str]:
    """HMA: create an exchange and its bank, both named `bank` (`{"bank", "api",
    "api_json"}`); the service fetches it in the background."""
    bank = body.get("bank")
    if not bank:
        raise InputError("bank is required", code="invalid_request")
    if not isinstance(bank, str) or not re.fullmatch(r"[A-Z0-9_]+", bank):
        raise InputError("Field `bank` must match /^[A-Z0-9_]+$/", code="invalid_request")
    raw = body.get("api_json", {})
    if not isinstance(raw, dict):
        raise InputError("Field `api_json` must be object", code="invalid_request")
    api = body.get("api")
    if api is None:
        raise InputError("Field `api_type` is required", code="invalid_request")
    if api not in _APIS:
        raise InputError(f"No such exchange type '{api}'", code="unknown_exchange_api")
    core_of(request).add_exchange(
        bank,
        type=_APIS[api],
        bank=bank,
        new_bank=True,
        principal=key,
        **_exchange_args(api, raw),
    )
    return {"message": "Created successfully"}


@router.get("/c/exchange/{exchange_name}")
def exchange_show(request: Request, key: Curate, exchange_name: str) -> dict[str, Any]:
    """HMA: one exchange's configuration (never its credentials)."""
    return _exchange_config(core_of(request).exchange(exchange_name, principal=key))


@router.get("/c/exchange/{exchange_name}/status")
def exchange_status(request: Request, key: Curate, exchange_name: str) -> dict[str, Any]:
    """HMA: one exchange's fetch status (`fetched_items` counts the entries it applied)."""
    found = core_of(request).exchange(exchange_name, principal=key)
    complete = found.last_complete_at
    return {
        "checkpoint_ts": _stamp(found.last_success_at),
        "running_fetch_start_ts": _stamp(found.last_fetch_at) if found.fetching else None,
        "last_fetch_complete_ts": _stamp(complete),
        "last_fetch_succeeded": None if complete is None else found.last_error is None,
        "up_to_date": found.last_success_at is not None and found.last_error is None,
        "fetched_items": found.applied,
    }


@router.put("/c/exchange/{exchange_name}")
def exchange_update(
    request: Request, key: Curate, exchange_name: str, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """HMA: pause (`{"enabled": false}`) or resume an exchange."""
    core = core_of(request)
    enabled = body.get("enabled") if isinstance(body, dict) else None
    if enabled is not None and not isinstance(enabled, bool):
        raise InputError("enabled must be true or false", code="invalid_request")
    found = (
        core.exchange(exchange_name, principal=key)
        if enabled is None
        else core.enable_exchange(exchange_name, enabled, principal=key)
    )
    return _exchange_config(found)


@router.delete("/c/exchange/{exchange_name}")
def exchange_delete(request: Request, key: Curate, exchange_name: str) -> dict[str, str]:
    """HMA: remove an exchange; its bank and what it brought stay (delete the bank to drop
    them). Removing one that does not exist succeeds too, as in HMA."""
    with contextlib.suppress(NotFoundError):
        core_of(request).remove_exchange(exchange_name, principal=key)
    return {"message": "Exchange deleted"}
