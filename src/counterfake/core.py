"""The core object: one `Counterfake` behind every face (CLI, /v1, the HMA routes, the demo,
`investigate`).

It owns the settings, the store, the matcher and the limits, and it holds the rules the faces
share: what an image or a signature file adds to a bank, how an image is looked up (decoded
once; digests and PDQ first, derivatives only when nothing matched and a searched bank
protects photos), that a write is matched by this process at once, and who may see which bank.
A face translates its protocol (arguments, HTTP, HMA shapes) into these calls and back.

A `principal` is the API key a service request carries; `None` is the local operator (the
CLI, the demo, an investigation), who sees every bank.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import random
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

from .errors import (
    AccessError,
    ConflictError,
    CounterfakeError,
    FormatError,
    InputError,
    NotFoundError,
    StoreError,
    UnavailableError,
    UsageError,
)
from .hashing import ImageHashes, bank_entries, hash_bytes, hash_decoded, hash_file, read_input
from .media import DecodedImage, Limits, decode
from .model import (
    DEFAULT_TENANT,
    AddResult,
    ApiKey,
    Bank,
    Case,
    Comment,
    Delivery,
    Entry,
    Exchange,
    NewEntry,
    Webhook,
    bank_key,
    shown_bank,
)
from .settings import Settings, load_settings
from .signals import get_signal_type

if TYPE_CHECKING:  # the store, the matcher and OpenCV load only when an operation needs them
    from .intake import Receipt
    from .matching import Match, Matcher
    from .protect import ProtectedPhoto
    from .signals.keypoints import Features
    from .store import Store

#: A change-feed page stops growing past this many signature bytes (about 200 signatures).
_FEED_PAGE_BYTES: Final = 16 * 1024 * 1024
#: The side of the working image local features are computed on (signals.keypoints.WORK_SIDE).
_WORK_SIDE: Final = 480
#: Batches of at least this many files are hashed on several processes, this many per task.
_POOL_FROM: Final = 32
_CHUNK: Final = 8


_AddRequest = tuple[str, Sequence[NewEntry], str | None]
_AddOutcome = list[AddResult] | StoreError | InputError
_In = TypeVar("_In")
_Out = TypeVar("_Out")


class _Slot(Generic[_In, _Out]):
    def __init__(self, item: _In) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.outcome: _Out | BaseException | None = None


class _Group(Generic[_In, _Out]):
    """Group commit: callers on several threads hand in work; one of them (the leader) runs
    everything waiting as one batch, then passes the lead to the first caller that arrived
    meanwhile. Alone, a caller runs its own work at once; under load each transaction carries
    as many requests as arrived while the previous one ran, so SQLite's single writer and
    PostgreSQL's commits are shared instead of queued for. A batch that fails as a whole with
    `shared` (the store is away) fails the callers queued behind it too: each would otherwise
    wait out the same timeout again, one after the other."""

    def __init__(
        self,
        run: Callable[[list[_In]], Sequence[_Out]],
        *,
        shared: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> None:
        self._run = run
        self._shared = shared
        self._lock = threading.Lock()
        self._waiting: list[_Slot[_In, _Out]] = []
        self._busy = False

    def submit(self, item: _In) -> _Out:
        slot: _Slot[_In, _Out] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            slot.lead = not self._busy
            self._busy = True
        if not slot.lead:
            slot.done.wait()
        if slot.lead:
            with self._lock:
                batch, self._waiting = self._waiting, []
            failed: BaseException | None = None
            try:
                outcomes: Sequence[_Out | BaseException] = self._run([s.item for s in batch])
            except BaseException as exc:  # the whole batch failed: every caller hears of it
                outcomes = [exc] * len(batch)
                failed = exc if isinstance(exc, self._shared) else None
            for member, outcome in zip(batch, outcomes, strict=True):
                member.outcome = outcome
            with self._lock:
                if failed is not None:
                    for member in self._waiting:
                        member.outcome = failed
                    batch, self._waiting = batch + self._waiting, []
                following = self._waiting[0] if self._waiting else None
                if following is None:
                    self._busy = False
                else:
                    following.lead = True
            for member in batch:
                if member is not slot:
                    member.done.set()
            if following is not None:
                following.done.set()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome  # type: ignore[return-value]


def _hash_path(path: Path, limits: Limits, dihedral: bool) -> ImageHashes | CounterfakeError:
    try:
        return hash_file(path, dihedral=dihedral, limits=limits)
    except CounterfakeError as exc:
        return exc


def _hash_chunk(
    paths: list[Path], limits: Limits, dihedral: bool
) -> list[tuple[Path, ImageHashes | CounterfakeError]]:
    return [(path, _hash_path(path, limits, dihedral)) for path in paths]


__all__ = ["Added", "Counterfake", "Lookup"]

_Filed = TypeVar("_Filed", "Entry", "Match")


def _tenant(principal: ApiKey | None) -> str:
    return principal.tenant if principal is not None else DEFAULT_TENANT


def _shown(bank: Bank, viewer: str) -> Bank:
    """A bank with its stored name as `viewer` names it."""
    shown = shown_bank(bank.name, viewer)
    return bank if shown == bank.name else dataclasses.replace(bank, name=shown)


def _scope(principal: ApiKey | None) -> str | None:
    """The tenant whose records a principal sees: its own, or every one (None) for the
    operator and admin keys."""
    return None if principal is None or principal.is_admin else principal.tenant


def _reviewer(principal: ApiKey | None) -> str:
    """Who claims and decides: the key's id, or the local operator."""
    return principal.key_id if principal is not None else "operator"


def _shown_exchange(exchange: Exchange, viewer: str) -> Exchange:
    """An exchange with its own and its bank's stored names as `viewer` names them."""
    return dataclasses.replace(
        exchange, name=shown_bank(exchange.name, viewer), bank=shown_bank(exchange.bank, viewer)
    )


def _filed(item: _Filed, viewer: str) -> _Filed:
    """An entry or a match with its bank's stored name as `viewer` names it."""
    shown = shown_bank(item.bank, viewer)
    return item if shown == item.bank else dataclasses.replace(item, bank=shown)


@dataclasses.dataclass(frozen=True)
class Lookup:
    """What a lookup of an image found: its hashes, its matches, and notes (for example that
    its PDQ quality is too low to match on PDQ)."""

    hashes: ImageHashes
    matches: list[Match]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hashes": self.hashes.to_dict(),
            "matches": [m.to_dict() for m in self.matches],
        }
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclasses.dataclass(frozen=True)
class Added:
    """What an add did: one result per entry, and the image's hashes when it was an image."""

    results: list[AddResult]
    hashes: ImageHashes | None = None

    @property
    def created(self) -> int:
        """Entries created or reinstated (not those that were there already)."""
        return sum(r.status != "existing" for r in self.results)


class Counterfake:
    """The application. `Counterfake()` reads the settings (COUNTERFAKE_* variables, the TOML
    file); the store opens on first use. `banks` narrows what its matcher holds (an
    investigation matching against two banks need not load the others)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        banks: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.limits = Limits.from_settings(self.settings)
        from .review import retention_seconds

        try:  # a malformed retention fails at start, not at the first case it would keep
            retention_seconds(self.settings.review_retention)
        except InputError as exc:
            raise UsageError(f"setting review_retention: {exc.message}") from None
        self._store = store
        self._owns_store = store is None
        self._matcher_banks = list(banks) if banks is not None else None
        self._matcher: Matcher | None = None
        # Adds from concurrent threads (a service worker's requests) share transactions.
        self._adds: _Group[_AddRequest, _AddOutcome] = _Group(
            lambda requests: self.store.add_many(requests), shared=UnavailableError
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            from .store import Store

            self._store = Store.open(settings=self.settings)
        return self._store

    @property
    def matcher(self) -> Matcher:
        """The in-memory indexes, loaded on first use and following the store's change log."""
        if self._matcher is None:
            from .matching import Matcher

            shards = None
            if self.settings.shards:
                from .shards import Shards

                shards = Shards(self.settings.shards.split(","), self.settings.shard_key)
            self._matcher = Matcher(
                self.store,
                self._matcher_banks,
                min_quality=self.settings.pdq_min_quality,
                shards=shards,
            )
        return self._matcher

    def serve_shard(
        self,
        part: tuple[int, int],
        address: str,
        *,
        ready: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Be shard k of n of the derivative shortlist (`part`): hold the shortlists of the
        photos `part_of` gives shard k of n, follow the change log, and answer the workers
        that list this shard in `shards` on `address`, until `stop` is set."""
        from .matching import Matcher
        from .shards import secret, serve_shard

        secret(self.settings.shard_key)  # refused now, not after the photos are loaded
        matcher = Matcher(
            self.store,
            self._matcher_banks,
            min_quality=self.settings.pdq_min_quality,
            part=part,
        )
        matcher.follow()
        try:
            serve_shard(matcher, address, self.settings.shard_key, ready=ready, stop=stop)
        finally:
            matcher.stop()

    def close(self) -> None:
        if self._matcher is not None:
            self._matcher.stop()
        if self._store is not None and self._owns_store:
            self._store.close()
        self._store = None
        self._matcher = None

    def __enter__(self) -> Counterfake:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # hashing -----------------------------------------------------------------------------------

    def read(self, path: str | Path) -> bytes:
        """A file's bytes under the size limit; FileInputError with a code otherwise."""
        return read_input(Path(path), limits=self.limits)

    def hash(self, data: bytes, *, dihedral: bool = False) -> ImageHashes:
        """Every per-image signal of an image held in memory; nothing is kept."""
        return hash_bytes(data, dihedral=dihedral, limits=self.limits)

    def hash_files(
        self, paths: Sequence[Path], *, dihedral: bool = False
    ) -> Iterator[tuple[Path, ImageHashes | CounterfakeError]]:
        """Hash files in order, each with its hashes or its error; a batch large enough is
        hashed on `hash_processes` processes (one per core by default)."""
        processes = self.settings.hash_processes or os.cpu_count() or 1
        if processes <= 1 or len(paths) < _POOL_FROM:
            for path in paths:
                yield path, _hash_path(path, self.limits, dihedral)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        chunks = [list(paths[i : i + _CHUNK]) for i in range(0, len(paths), _CHUNK)]
        with ProcessPoolExecutor(min(processes, len(chunks)), mp_context=context) as pool:
            jobs = pool.map(
                _hash_chunk, chunks, [self.limits] * len(chunks), [dihedral] * len(chunks)
            )
            for done in jobs:
                yield from done

    def protect(self, data: bytes, *, name: str | None = None) -> ProtectedPhoto:
        """A photo's PDQ hash and derivative signature, made here; the bytes are not kept."""
        from .protect import protect_bytes

        return protect_bytes(data, name=name, limits=self.limits)

    # banks -------------------------------------------------------------------------------------
    #
    # Each tenant names its banks independently: a bank is stored under `bank_key` (`tenant:name`
    # outside the default tenant). A principal names its own tenant's banks plainly and any
    # other as `owner:name`, and sees names the same way (`shown_bank`); the operator's tenant
    # is the default one.

    def create_bank(
        self,
        name: str,
        *,
        description: str = "",
        threshold: int | None = None,
        tenant: str | None = None,
        shared_with: Iterable[str] = (),
        enabled_ratio: float = 1.0,
        principal: ApiKey | None = None,
    ) -> Bank:
        """A new bank, owned by `tenant` (default: the one a qualified `owner:name` gives, else
        the principal's, else `default`). Only the operator or an admin key creates banks for
        another tenant. Names are unique within a tenant only."""
        own = _tenant(principal)
        owner, qualified, plain = name.partition(":")
        if qualified:
            if tenant not in (None, owner):
                raise InputError(
                    f"bank {name!r} cannot belong to tenant {tenant!r}", code="invalid_tenant"
                )
            tenant, name = owner, plain
        if (
            principal is not None
            and tenant not in (None, principal.tenant)
            and not principal.is_admin
        ):
            raise AccessError("only an admin key creates banks for another tenant")
        bank = self.store.create_bank(
            name,
            description=description,
            threshold=threshold,
            tenant=tenant or own,
            shared_with=shared_with,
            enabled_ratio=enabled_ratio,
        )
        self._wrote(bank=True)
        return _shown(bank, own)

    def update_bank(
        self,
        name: str,
        *,
        description: str | None = None,
        threshold: int | None = None,
        shared_with: Iterable[str] | None = None,
        enabled_ratio: float | None = None,
        review: bool | None = None,
        principal: ApiKey | None = None,
    ) -> Bank:
        """Change a bank's description, PDQ threshold, the tenants it is shared with, the
        share of lookups that search it, or whether every match in it opens a review case."""
        key = self._own(name, principal).name
        bank = self.store.update_bank(
            key,
            description=description,
            threshold=threshold,
            shared_with=shared_with,
            enabled_ratio=enabled_ratio,
            review=review,
        )
        self._wrote(bank=True)
        return _shown(bank, _tenant(principal))

    def delete_bank(self, name: str, *, principal: ApiKey | None = None) -> None:
        """Delete a bank and every entry in it."""
        self.store.delete_bank(self._own(name, principal).name)
        self._wrote(bank=True)

    def bank(self, name: str, *, principal: ApiKey | None = None, counts: bool = True) -> Bank:
        """A bank the principal's tenant owns (any, for the operator or an admin key); any
        other is answered as if it did not exist, so that names do not leak across tenants.
        `counts=False` skips counting its entries (a scan of the bank)."""
        return _shown(self._own(name, principal, counts=counts), _tenant(principal))

    def banks(self, *, principal: ApiKey | None = None, counts: bool = True) -> list[Bank]:
        """The banks the principal's tenant owns (every bank for the operator or an admin)."""
        viewer = _tenant(principal)
        return [
            _shown(b, viewer)
            for b in self.store.list_banks(counts=counts, tenant=_scope(principal))
        ]

    def _own(self, name: str, principal: ApiKey | None, *, counts: bool = False) -> Bank:
        """The stored bank a principal names, if it may curate it (its `name` is the stored
        key). Without counts, answered from the matcher's copy when it holds the bank
        (refreshed every 0.5 s: owners never change, and a bank deleted meanwhile fails the
        write that follows)."""
        key = bank_key(name, _tenant(principal))
        held = self._matcher.held_bank(key) if self._matcher is not None and not counts else None
        try:
            bank = held or self.store.get_bank(key, counts=counts)
        except NotFoundError:
            bank = None
        if bank is not None and (
            principal is None or principal.is_admin or bank.tenant == principal.tenant
        ):
            return bank
        raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)

    # entries -----------------------------------------------------------------------------------

    def add_image(
        self,
        bank: str,
        data: bytes,
        *,
        source_name: str | None = None,
        dihedral: bool = False,
        metadata: dict[str, Any] | None = None,
        principal: ApiKey | None = None,
    ) -> Added:
        """Hash an image and add every signal of it to a bank (each with `metadata`, if
        given); the bytes are not kept."""
        key = self._own(bank, principal).name
        hashes = self.hash(data, dihedral=dihedral)
        entries = bank_entries(hashes, source_name=source_name)
        if metadata:
            entries = [dataclasses.replace(e, metadata={**e.metadata, **metadata}) for e in entries]
        results = self._add(key, entries, principal)
        return Added(results, hashes)

    def add_signals(
        self, bank: str, entries: Iterable[NewEntry], *, principal: ApiKey | None = None
    ) -> Added:
        """Add signal values computed elsewhere (one transaction; idempotent per value)."""
        key = self._own(bank, principal).name
        return Added(self._add(key, list(entries), principal))

    def add_signatures(
        self, bank: str, photos: Iterable[ProtectedPhoto], *, principal: ApiKey | None = None
    ) -> Added:
        """Add protected photos (from a signature file): a PDQ and a derivative entry each."""
        key = self._own(bank, principal).name
        entries = [entry for photo in photos for entry in photo.entries()]
        return Added(self._add(key, entries, principal))

    def signature_file(
        self, lines: Iterable[str], *, path: str | None = None
    ) -> Iterator[ProtectedPhoto | FormatError]:
        """The photos of a signature file, a bad line as a FormatError in its place."""
        from .protect import read_signatures

        return read_signatures(lines, path=path)

    # following another Counterfake -----------------------------------------------------------

    def bank_feed(
        self, bank: str, *, after: int = 0, limit: int = 1000, principal: ApiKey | None = None
    ) -> dict[str, Any]:
        """A page of a bank's change feed for a follower: adds and withdrawals after the
        cursor `after`, each with what matching needs (signal, value, quality, signature) and
        nothing else. The bank must be the principal's tenant's or shared with it."""
        key = bank_key(bank, _tenant(principal))
        try:
            found = self.store.get_bank(key, counts=False)
        except NotFoundError:
            found = None
        if found is None or not (
            principal is None or principal.is_admin or found.visible_to(principal.tenant)
        ):
            raise NotFoundError(f"no bank named {bank!r}", code="bank_not_found", bank=bank)
        if not 1 <= limit <= 10_000 or after < 0:
            raise InputError("limit is 1 to 10,000 and after >= 0", code="invalid_request")
        changes = self.store.bank_feed(found.name, after, limit=limit)
        more = len(changes) == limit
        size = 0
        for number, change in enumerate(changes):  # signatures are ~74 KB: pages stay bounded
            size += len(change["signature"] or b"")
            if size > _FEED_PAGE_BYTES and number:
                changes, more = changes[:number], True
                break
        return {
            "changes": changes,
            "next_after": changes[-1]["seq"] if changes else after,
            "more": more,
        }

    #: Exchange types this installation can fetch.
    EXCHANGE_TYPES: ClassVar[tuple[str, ...]] = (
        "counterfake",
        "stopncii",
        "threatexchange-file",
        "ncmec",
    )
    #: How long a fetcher holds an exchange before another may take it over.
    _EXCHANGE_LEASE: ClassVar[float] = 60.0

    def add_exchange(
        self,
        name: str,
        *,
        type: str,
        bank: str,
        url: str | None = None,
        remote_bank: str | None = None,
        credential: str | None = None,
        interval_seconds: float | None = None,
        path: str | None = None,
        only_members: Collection[int] = (),
        new_bank: bool = False,
        principal: ApiKey | None = None,
    ) -> Exchange:
        """Fetch a source into `bank` every `interval_seconds` (the service's workers share the
        schedule; `fetch_exchange` runs one fetch now). `counterfake`: `remote_bank` of the
        Counterfake at `url`, with a key of its `follow` scope as the credential (default
        interval 0.5 s). `stopncii`: StopNCII's hash API (`url` overrides its address), the
        credential `SUBSCRIPTION_KEY:FUNCTION_KEY` (default interval 5 minutes).
        `threatexchange-file`: python-threatexchange's signal file at `path`, a snapshot
        (default interval a minute). `ncmec`: NCMEC's hash-sharing API at `url` (credential
        `USER:PASSWORD`; `only_members` keeps those ESP ids' entries) or a file of its XML at
        `path` (default interval 5 minutes). An exchange without a credential of its own uses
        its tenant's credential for the type (`set_exchange_credential`). Credentials are
        stored for the fetcher and never shown. Exchanges are named per tenant, as banks are.
        `new_bank` creates the bank with the exchange (HMA's way): neither stays if either
        fails."""
        if type not in self.EXCHANGE_TYPES:
            raise InputError(
                f"exchange types are {', '.join(self.EXCHANGE_TYPES)}; got {type!r}",
                code="unknown_exchange_type",
            )
        credential = credential or None
        if type == "threatexchange-file":
            if not path:
                raise InputError(
                    "a threatexchange-file exchange needs the file's path",
                    code="invalid_exchange",
                )
            config: dict[str, Any] = {"path": str(Path(path).resolve())}
            interval = 60.0 if interval_seconds is None else interval_seconds
        elif type == "ncmec":
            if bool(path) == bool(url):
                raise InputError(
                    "an ncmec exchange reads either its API's URL or a file's path",
                    code="invalid_exchange",
                )
            if url and credential is not None and ":" not in credential:
                raise InputError(
                    "an ncmec exchange needs its credential as USER:PASSWORD",
                    code="invalid_exchange",
                )
            config = {"url": url} if url else {"path": str(Path(str(path)).resolve())}
            if only_members:
                config["only_esp_ids"] = sorted(int(m) for m in only_members)
            interval = 300.0 if interval_seconds is None else interval_seconds
        elif type == "stopncii":
            from .exchange.stopncii import BASE_URL, credentials

            if credential is not None:
                credentials(credential)  # both keys, or a coded refusal now, not at fetch
            config = {"url": url or BASE_URL}
            interval = 300.0 if interval_seconds is None else interval_seconds
        else:
            if not url or not remote_bank:
                raise InputError(
                    "a counterfake exchange needs the hub's URL and its bank",
                    code="invalid_exchange",
                )
            config = {"url": url, "remote_bank": remote_bank}
            interval = 0.5 if interval_seconds is None else interval_seconds
        if not str(config.get("url", "https://")).startswith(("http://", "https://")) or not (
            0.1 <= interval <= 86400
        ):
            raise InputError(
                "an exchange needs an http(s) URL and an interval of 0.1 s to a day",
                code="invalid_exchange",
            )
        if new_bank:
            self.create_bank(bank, description=f"fetched by exchange {name}", principal=principal)
        try:
            added = self.store.add_exchange(
                bank_key(name, _tenant(principal)),
                type=type,
                bank=self._own(bank, principal).name,
                config=config,
                credential=credential,
                interval_seconds=interval,
            )
        except CounterfakeError:
            if new_bank:
                self.delete_bank(bank, principal=principal)
            raise
        return _shown_exchange(added, _tenant(principal))

    def exchanges(self, *, principal: ApiKey | None = None) -> list[Exchange]:
        """The exchanges that fetch into the principal's tenant's banks (every one for the
        operator or an admin key)."""
        viewer = _tenant(principal)
        return [
            _shown_exchange(x, viewer) for x in self.store.list_exchanges(tenant=_scope(principal))
        ]

    def exchange(self, name: str, *, principal: ApiKey | None = None) -> Exchange:
        """An exchange's settings and status (cursor, last fetch, last error, entries applied)."""
        return _shown_exchange(self._own_exchange(name, principal), _tenant(principal))

    def _own_exchange(self, name: str, principal: ApiKey | None) -> Exchange:
        """The stored exchange a principal names, if its tenant owns it (any, for the operator
        or an admin key); any other is answered as if it did not exist."""
        found = self.store.get_exchange(bank_key(name, _tenant(principal)))
        owner = found.bank.partition(":")[0] if ":" in found.bank else DEFAULT_TENANT
        if principal is None or principal.is_admin or owner == principal.tenant:
            return found
        raise NotFoundError(f"no exchange named {name!r}", code="exchange_not_found")

    def enable_exchange(
        self, name: str, enabled: bool, *, principal: ApiKey | None = None
    ) -> Exchange:
        """Pause an exchange's scheduled fetches, or resume them from where it stopped."""
        stored = self._own_exchange(name, principal).name
        return _shown_exchange(self.store.enable_exchange(stored, enabled), _tenant(principal))

    def remove_exchange(self, name: str, *, principal: ApiKey | None = None) -> None:
        """Stop fetching; the entries it brought stay."""
        self.store.remove_exchange(self._own_exchange(name, principal).name)

    def set_exchange_credential(
        self,
        type: str,
        credential: str | None,
        *,
        config: dict[str, Any] | None = None,
        principal: ApiKey | None = None,
    ) -> None:
        """Set (None: clear) the tenant's credential for its exchanges of `type` that have
        none of their own, as HMA keeps one per exchange API; `config` goes with it (a
        `stopncii` base `url`)."""
        if type not in self.EXCHANGE_TYPES:
            raise InputError(
                f"exchange types are {', '.join(self.EXCHANGE_TYPES)}; got {type!r}",
                code="unknown_exchange_type",
            )
        if credential is not None and type == "stopncii":
            from .exchange.stopncii import credentials

            credentials(credential)
        self.store.set_type_credential(_tenant(principal), type, credential, config or {})

    def has_exchange_credential(self, type: str, *, principal: ApiKey | None = None) -> bool:
        """Whether the tenant has set a credential for `type` (it is never shown)."""
        return self.store.has_type_credential(_tenant(principal), type)

    def fetch_exchange(self, name: str, *, principal: ApiKey | None = None) -> Exchange:
        """Fetch an exchange now, to the end of what its source has."""
        stored = self._own_exchange(name, principal).name
        if self.store.claim_exchange(stored, lease_seconds=self._EXCHANGE_LEASE) is None:
            raise ConflictError(f"exchange {name!r} is being fetched", code="exchange_busy")
        self._fetch_claimed(stored)
        return _shown_exchange(self.store.get_exchange(stored), _tenant(principal))

    def send_exchange_feedback(
        self,
        name: str,
        values: Sequence[str],
        feedback: str,
        *,
        tags: Sequence[str] = (),
        principal: ApiKey | None = None,
    ) -> int:
        """Tell a `stopncii` exchange's source what this platform found for these PDQ hashes
        (`Blocked`: reviewed and found to be intimate imagery; `NotBlocked`, `PendingReview`...).
        Needs the SubmitFeedback function key as a third part of the credential. Returns how
        many hashes were sent; audited with the count only."""
        from .exchange import follow, stopncii

        found = self._own_exchange(name, principal)
        if found.type != "stopncii":
            raise InputError(
                f"only stopncii exchanges take feedback; {name!r} is {found.type}",
                code="unsupported_option",
            )
        if feedback not in stopncii.FEEDBACK:
            raise InputError(
                f"feedback is one of {', '.join(stopncii.FEEDBACK)}; got {feedback!r}",
                code="invalid_feedback",
            )
        pdq = get_signal_type("pdq")
        hashes = list(dict.fromkeys(pdq.normalize(v) for v in values))
        if not hashes or len(hashes) > 100_000:
            raise InputError("feedback is on 1 to 100,000 hashes", code="invalid_feedback")
        credential, shared = self.store.exchange_credential(found.name)
        config = {**found.config, **shared}
        with follow.client(self.settings.exchange_timeout) as client:
            stopncii.send_feedback(client, config, credential, hashes, feedback, list(tags))
        self.store.audit_exchange_feedback(found.name, feedback, len(hashes))
        return len(hashes)

    def fetch_due_exchanges(self) -> int:
        """Fetch every exchange that is due and that no other fetcher holds (what the service
        does in the background); returns how many were fetched. A failure is recorded on its
        exchange (retried with backoff), not raised."""
        fetched = 0
        while (
            name := self.store.claim_exchange(None, lease_seconds=self._EXCHANGE_LEASE)
        ) is not None:
            try:
                self._fetch_claimed(name)
            except CounterfakeError as exc:  # recorded on the exchange; retried with backoff
                logging.getLogger("counterfake.exchange").warning(
                    "exchange %s failed: %s", name, exc.code
                )
            fetched += 1
        return fetched

    def _gone(self, exchange: Exchange, present: list[NewEntry]) -> list[NewEntry]:
        """Withdrawals of what `exchange` brought before that a snapshot no longer lists."""
        listed = {(e.signal_type, e.value) for e in present}
        at = datetime.now(UTC)
        return [
            NewEntry(e.signal_type, e.value, source="exchange", withdrawn_at=at)
            for e in self.store.iter_entries(exchange.bank)
            if e.metadata.get("exchange") == exchange.name
            and e.signal_type != "derivative"
            and (e.signal_type, e.value) not in listed
        ]

    def _fetch_claimed(self, name: str) -> None:
        from .exchange import follow, ncmec, stopncii, te_file

        reader = {
            "counterfake": follow.read_page,
            "stopncii": stopncii.read_page,
            "threatexchange-file": te_file.read_page,
            "ncmec": ncmec.read_page,
        }
        exchange = self.store.get_exchange(name)
        credential, shared = self.store.exchange_credential(name)
        config = {**exchange.config, **shared}
        position: Any = exchange.cursor
        try:
            with follow.client(self.settings.exchange_timeout) as client:
                while True:
                    page = reader[exchange.type](
                        client, config, credential, position, exchange=name
                    )
                    if page.more and str(page.next_position) == str(position or 0):
                        raise follow.bad_page("more pages promised, but the next is this one")
                    entries = page.entries
                    if page.snapshot:
                        entries = [*entries, *self._gone(exchange, entries)]
                    withdrawn = 0
                    if entries:
                        outcome = self._add(exchange.bank, entries, None)
                        withdrawn += sum(r.status == "withdrawn" for r in outcome)
                    if page.withdraw_remote:  # tombstones, once this page's adds are in
                        at = datetime.now(UTC)
                        brought = self.store.brought_by(exchange.bank, name, page.withdraw_remote)
                        withdrawals = [
                            NewEntry(kind, value, source="exchange", withdrawn_at=at)
                            for kind, value in brought
                        ]
                        if withdrawals:
                            outcome = self._add(exchange.bank, withdrawals, None)
                            withdrawn += sum(r.status == "withdrawn" for r in outcome)
                    self.store.advance_exchange(
                        name,
                        page.cursor,
                        len(page.entries),
                        withdrawn=withdrawn,
                        lease_seconds=self._EXCHANGE_LEASE,
                    )
                    position = page.next_position
                    if not page.more:
                        break
        except CounterfakeError as exc:
            self.store.release_exchange(name, error=f"{exc.code}: {exc.message}")
            raise
        self.store.release_exchange(name)

    # review ------------------------------------------------------------------------------------
    #: How long a reviewer's claim on a case holds before the case is free again.
    CLAIM_SECONDS: ClassVar[float] = 300.0

    def open_case(
        self,
        matches: Sequence[Match],
        *,
        query: str,
        content_id: str | None = None,
        content_url: str | None = None,
        image: bytes | None = None,
        requested: bool = True,
        principal: ApiKey | None = None,
    ) -> Case | None:
        """Open a review case for a lookup's matches (as the principal names their banks):
        it waits in the queue of the strongest match's bank. `query` names what was looked
        up (its SHA-256, or `signal:value`); `content_id` and `content_url` are the
        platform's own. The `image` is kept only under a review retention
        (COUNTERFAKE_REVIEW_RETENTION), for previews, until a decision or the retention's
        end. None when there is no match, or when a reviewer found each of them not to match
        this query before. `requested=False` (a lookup that did not ask) opens one only when a
        matched bank has its `review` rule on."""
        from .review import band, retention_seconds

        if not matches:
            return None
        if not requested and not self._review_rule(matches, principal):
            return None
        if len(content_id or "") > 200 or len(content_url or "") > 2000:
            raise InputError(
                "content_id is at most 200 characters and content_url at most 2,000",
                code="invalid_case",
            )
        top = matches[0]
        keep = retention_seconds(self.settings.review_retention)
        evidence = [_case_evidence(m) for m in matches]
        return self.store.open_case(
            _tenant(principal),
            bank=top.bank,
            signal=top.signal,
            evidence=evidence,
            query=query,
            content_id=content_id or None,
            content_url=content_url or None,
            band=band(evidence),
            image=image if keep else None,
            keep_until=datetime.now(UTC) + timedelta(seconds=keep) if keep else None,
        )

    def _review_rule(self, matches: Sequence[Match], principal: ApiKey | None) -> bool:
        """Whether a matched bank says every match in it opens a case."""
        viewer = _tenant(principal)
        for name in {m.bank for m in matches}:
            key = bank_key(name, viewer)
            held = self.matcher.held_bank(key)
            try:
                bank = held or self.store.get_bank(key, counts=False)
            except NotFoundError:  # deleted since it matched
                continue
            if bank.review:
                return True
        return False

    def review_settings(self, *, principal: ApiKey | None = None) -> dict[str, Any]:
        """How this reviewer sees cases: their own settings over their tenant's defaults over
        the built-in ones (blurred, grey, a reveal confirmed by a second request)."""
        from .review import DEFAULT_SETTINGS

        defaults, own = self.store.review_settings(_tenant(principal), _reviewer(principal))
        return {**DEFAULT_SETTINGS, **defaults, **own}

    def set_review_settings(
        self,
        values: dict[str, Any],
        *,
        tenant_default: bool = False,
        principal: ApiKey | None = None,
    ) -> dict[str, Any]:
        """Change this reviewer's settings (`blur`, `grey`, `confirm_reveal`), or with
        `tenant_default` the tenant's defaults for reviewers who set none; returns what now
        applies (to this reviewer, or the defaults)."""
        from .review import DEFAULT_SETTINGS, check_settings

        checked = check_settings(values)
        tenant = _tenant(principal)
        defaults, own = self.store.review_settings(tenant, _reviewer(principal))
        if tenant_default:
            self.store.set_review_settings(tenant, "", {**defaults, **checked})
            return {**DEFAULT_SETTINGS, **defaults, **checked}
        self.store.set_review_settings(tenant, _reviewer(principal), {**own, **checked})
        return self.review_settings(principal=principal)

    def case_preview(
        self,
        case_id: int,
        *,
        blur: float | None = None,
        grey: bool | None = None,
        principal: ApiKey | None = None,
    ) -> bytes:
        """A small (256 px), blurred, by default grey JPEG of a case's kept image: what a
        reviewer sees first, as their settings say unless `blur` or `grey` are given.
        `no_case_image` when none is kept."""
        from .media import decode_rgb
        from .review import PREVIEW_SIDE, render

        settings = self.review_settings(principal=principal)
        blur = float(settings["blur"]) if blur is None else blur
        grey = bool(settings["grey"]) if grey is None else grey
        if not 4.0 <= blur <= 40.0:
            raise InputError("blur is 4 to 40", code="invalid_preview")
        data = self.store.case_image(case_id, _scope(principal))
        image = decode_rgb(data, limits=self.limits)
        return render(image, side=PREVIEW_SIDE, blur=blur, grey=grey)

    def case_overlay(self, case_id: int, *, principal: ApiKey | None = None) -> bytes:
        """The evidence overlay of a derivative case, as a JPEG: where the protected photo lies
        in the upload (green) and what was changed in it (red), drawn from the match's outline
        over the reviewer's blurred preview, or over a blank of the upload's shape when no
        image is kept. `no_overlay` for a case of copies (nothing was changed)."""
        from PIL import Image

        from .derivatives import Outline, overlay
        from .media import decode_rgb
        from .review import OVERLAY_SIDE, render

        case = self.store.get_case(case_id, _scope(principal))
        drawn = [m["outline"] for m in case.evidence if isinstance(m.get("outline"), dict)]
        if not drawn:
            raise NotFoundError(
                "this case's matches are copies: there is no changed region to draw",
                code="no_overlay",
            )
        outline = Outline.from_dict(drawn[0])
        try:
            data = self.store.case_image(case_id, _scope(principal))
        except NotFoundError:
            width, height = outline.query_size
            fit = OVERLAY_SIDE / max(width, height)
            base = Image.new("RGB", (round(width * fit), round(height * fit)), (128, 128, 128))
        else:
            settings = self.review_settings(principal=principal)
            shown = render(
                decode_rgb(data, limits=self.limits),
                side=OVERLAY_SIDE,
                blur=float(settings["blur"]),
                grey=bool(settings["grey"]),
            )
            base = Image.open(io.BytesIO(shown)).convert("RGB")
        out = io.BytesIO()
        overlay(base, outline).save(out, "JPEG", quality=85)
        return out.getvalue()

    def reveal_case_image(
        self, case_id: int, *, confirm: bool = False, principal: ApiKey | None = None
    ) -> bytes:
        """A clearer render (768 px at most, not blurred) of a case this reviewer holds,
        audited as `case_revealed`; the upload itself is never sent. Unless the reviewer
        turned `confirm_reveal` off, the request must say `confirm` (the second click)."""
        from .media import decode_rgb
        from .review import REVEAL_SIDE, render

        if self.review_settings(principal=principal)["confirm_reveal"] and not confirm:
            raise InputError(
                "confirm the reveal (confirm: true); the image is shown clearer",
                code="reveal_unconfirmed",
            )
        data = self.store.case_image(case_id, _scope(principal))
        self.store.audit_reveal(case_id, _scope(principal), _reviewer(principal))
        image = decode_rgb(data, limits=self.limits)
        return render(image, side=REVEAL_SIDE, blur=0.0, grey=False)

    def purge_case_images(self) -> int:
        """Delete kept images whose retention has passed (the service does it in the
        background); returns how many."""
        return self.store.purge_case_images()

    def cases(
        self,
        *,
        status: str | None = None,
        bank: str | None = None,
        signal: str | None = None,
        band: str | None = None,
        after: int = 0,
        limit: int = 100,
        held: bool = False,
        newest_first: bool = False,
        principal: ApiKey | None = None,
    ) -> list[Case]:
        """The principal's tenant's cases, oldest first (every tenant's for the operator or an
        admin key): all, or one status (open, escalated, appeal, decided), bank, signal or
        score band; `held`: only those this reviewer holds now."""
        from .review import check_band

        return self.store.list_cases(
            _scope(principal),
            statuses=(status,) if status else (),
            bank=bank,
            signal=signal,
            band=check_band(band),
            after=after,
            limit=max(1, min(limit, 1000)),
            held_by=_reviewer(principal) if held else None,
            newest_first=newest_first,
        )

    def review_queues(self, *, principal: ApiKey | None = None) -> dict[str, dict[str, Any]]:
        """What waits in each of the tenant's queues (open, escalated, appeal): a total, and
        counts per bank, signal and score band."""
        from .review import REOPENING

        out: dict[str, dict[str, Any]] = {
            queue: {"total": 0, "banks": {}, "signals": {}, "bands": {}} for queue in REOPENING
        }
        for status, bank, signal, band, count in self.store.queue_counts(_tenant(principal)):
            queue = out.get(status)
            if queue is None:
                continue
            queue["total"] += count
            for name, value in (("banks", bank), ("signals", signal), ("bands", band)):
                queue[name][value] = queue[name].get(value, 0) + count
        return out

    def case(self, case_id: int, *, principal: ApiKey | None = None) -> Case:
        return self.store.get_case(case_id, _scope(principal))

    def claim_case(
        self,
        *,
        queue: str = "open",
        bank: str | None = None,
        signal: str | None = None,
        band: str | None = None,
        principal: ApiKey | None = None,
    ) -> Case | None:
        """The oldest free case of a queue (`open`, `escalated` or `appeal`, optionally one
        bank, signal or score band), locked for this reviewer for `CLAIM_SECONDS`; None when
        the queue is empty."""
        from .review import REOPENING, check_band

        if queue not in REOPENING:
            raise InputError(
                f"queues are {', '.join(REOPENING)}; got {queue!r}", code="invalid_queue"
            )
        return self.store.claim_case(
            _tenant(principal),
            _reviewer(principal),
            statuses=(queue,),
            bank=bank,
            signal=signal,
            band=check_band(band),
            lease_seconds=self.CLAIM_SECONDS,
        )

    def release_case(self, case_id: int, *, principal: ApiKey | None = None) -> Case:
        """Give a claimed case back to its queue."""
        return self.store.release_case(case_id, _scope(principal), _reviewer(principal))

    def decide_case(
        self,
        case_id: int,
        decision: str,
        *,
        policy: str,
        reason: str,
        action: str | None = None,
        remember: bool = False,
        principal: ApiKey | None = None,
    ) -> Case:
        """Decide a case this reviewer claimed (or that nobody holds): `confirm` (with the
        `action` the platform takes), `not_a_match` (`remember`: the same pair does not open
        a case again) or `escalate`. Policy and reason are required. Audited, and sent to the
        tenant's webhooks as `case.decided` (`appeal.decided` for an appeal)."""
        from .review import check_decision

        check_decision(decision, policy, reason)
        if action is not None and len(action) > 64:
            raise InputError("an action is at most 64 characters", code="invalid_decision")
        return self.store.decide_case(
            case_id,
            _scope(principal),
            _reviewer(principal),
            decision=decision,
            policy=policy.strip(),
            reason=reason.strip(),
            action=action,
            remember=remember,
        )

    def appeal_case(self, case_id: int, reason: str, *, principal: ApiKey | None = None) -> Case:
        """Reopen a decided case into the appeal queue (the uploader disputes the decision)."""
        if not reason.strip() or len(reason) > 4000:
            raise InputError(
                "an appeal needs a reason (at most 4,000 characters)", code="invalid_appeal"
            )
        return self.store.appeal_case(case_id, _scope(principal), reason.strip())

    def decision_log(
        self,
        *,
        since: datetime | None = None,
        decision: str | None = None,
        bank: str | None = None,
        principal: ApiKey | None = None,
    ) -> Iterator[Case]:
        """The tenant's decided cases (escalations included), oldest case first, optionally
        only those decided since a time, of one decision or in one bank: what a platform
        keeps as its record. Pages through the store."""
        after = 0
        while True:
            page = self.store.list_cases(_scope(principal), bank=bank, after=after, limit=1000)
            for case in page:
                if case.decided_at is None or (decision and case.decision != decision):
                    continue
                if since is not None and case.decided_at < since:
                    continue
                yield case
            if len(page) < 1000:
                return
            after = page[-1].id

    def comment_case(self, case_id: int, body: str, *, principal: ApiKey | None = None) -> Comment:
        """Add a comment to a case: what a reviewer wants the next one (or an appeal) to know."""
        if not body.strip() or len(body) > 4000:
            raise InputError("a comment is 1 to 4,000 characters", code="invalid_comment")
        return self.store.comment_case(
            case_id, _scope(principal), _reviewer(principal), body.strip()
        )

    def case_comments(self, case_id: int, *, principal: ApiKey | None = None) -> list[Comment]:
        """A case's comments, oldest first."""
        return self.store.case_comments(case_id, _scope(principal))

    def add_webhook(
        self, url: str, events: Sequence[str], *, principal: ApiKey | None = None
    ) -> tuple[Webhook, str]:
        """Send the tenant's review events to `url`, signed; returns the webhook and its
        signing secret, shown this once."""
        from .review import check_events

        if not url.startswith(("http://", "https://")) or len(url) > 2000:
            raise InputError("a webhook needs an http(s) URL", code="invalid_webhook")
        return self.store.add_webhook(_tenant(principal), url, check_events(list(events)))

    def webhooks(self, *, principal: ApiKey | None = None) -> list[Webhook]:
        return self.store.list_webhooks(_scope(principal))

    def remove_webhook(self, webhook_id: int, *, principal: ApiKey | None = None) -> None:
        self.store.remove_webhook(webhook_id, _scope(principal))

    def deliveries(
        self,
        webhook_id: int,
        *,
        status: str | None = None,
        limit: int = 100,
        principal: ApiKey | None = None,
    ) -> list[Delivery]:
        """A webhook's delivery log, newest first; `status="dead"` lists its dead letters."""
        return self.store.list_deliveries(
            webhook_id, _scope(principal), status=status, limit=max(1, min(limit, 1000))
        )

    def replay_delivery(self, delivery_id: int, *, principal: ApiKey | None = None) -> Delivery:
        """Send a delivery again, with its event id (the receiver's idempotency key)."""
        return self.store.replay_delivery(delivery_id, _scope(principal))

    def deliver_due_events(self) -> int:
        """Send every due webhook delivery this worker can lease (what the service does in the
        background); returns how many were attempted. A failure waits with backoff."""
        import httpx

        from .review import SIGNATURE_HEADER, sign

        claimed = self.store.claim_deliveries(limit=50, lease_seconds=60.0)
        if not claimed:
            return 0
        outcomes: dict[int, str | None] = {}
        with httpx.Client(timeout=httpx.Timeout(10.0), follow_redirects=False) as client:
            for item in claimed:
                body = str(item["body"]).encode()
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "Counterfake-Webhooks",
                    "Counterfake-Event-Id": str(item["event_id"]),
                    SIGNATURE_HEADER: sign(str(item["secret"]), body),
                }
                error: str | None = None
                try:
                    answer = client.post(str(item["url"]), content=body, headers=headers)
                    if not 200 <= answer.status_code < 300:
                        error = f"the receiver answered {answer.status_code}"
                except httpx.HTTPError as exc:
                    error = f"the receiver could not be reached ({type(exc).__name__})"
                outcomes[int(item["id"])] = error
        self.store.finish_deliveries(outcomes)
        return len(claimed)

    # intake ------------------------------------------------------------------------------------

    def intake_status(self) -> dict[str, Any]:
        """Whether this installation takes signature files without a key, and how many photos
        per file (the protect page asks before it offers to send)."""
        enabled = bool(self.settings.intake_bank)
        return {"enabled": enabled, "max_photos": self.settings.intake_max_photos if enabled else 0}

    def intake(self, lines: Iterable[str], *, address: str) -> Receipt:
        """Take a signature file sent without a key (rules in `counterfake.intake`): all of it
        into the intake bank under a new submission, or none of it."""
        from . import intake

        name = self.settings.intake_bank
        if not name:
            raise NotFoundError(
                "this service does not take signature files", code="intake_disabled"
            )
        photos = intake.check_file(lines, max_photos=self.settings.intake_max_photos)
        since = intake.day_start()
        key = intake.address_key(self.store.instance_secret("intake_address"), address)
        if (
            self.store.count_submissions(since, address_key=key)
            >= self.settings.intake_address_daily
        ):
            raise UnavailableError(
                "this address has sent as many signature files as it may today; try tomorrow",
                code="rate_limited",
            )
        if self.store.count_submissions(since) >= self.settings.intake_daily:
            raise UnavailableError(
                "this service has taken as many signature files as it may today; try tomorrow",
                code="rate_limited",
            )
        try:
            bank = self.store.get_bank(bank_key(name, DEFAULT_TENANT), counts=False).name
        except NotFoundError:
            try:
                bank = self.create_bank(name, description="signature files sent to intake").name
            except StoreError:  # another worker made it meanwhile
                bank = self.store.get_bank(bank_key(name, DEFAULT_TENANT), counts=False).name
        submission, code = intake.new_submission_id(), intake.new_code()
        self.store.add_submission(
            submission,
            bank,
            code_sha256=intake.code_digest(code),
            address_key=key,
            photos=len(photos),
        )
        entries = [entry for photo in photos for entry in photo.entries()]
        outcome = self._adds.submit((bank, entries, submission[:32]))
        self._wrote()
        if isinstance(outcome, Exception):
            raise outcome
        self.store.link_submission(submission, [r.entry_id for r in outcome])
        return intake.Receipt(submission, code, len(photos))

    def withdraw_submission(self, code: str) -> int:
        """Withdraw what the submission with this withdrawal code added (entries another live
        submission also sent stay): matched nowhere within the matchers' refresh interval.
        Returns the number of entries withdrawn."""
        from .intake import code_digest

        if not code.strip() or len(code) > 200:
            raise InputError("a withdrawal code is 24 characters", code="invalid_withdrawal_code")
        _, withdrawn = self.store.withdraw_submission(code_digest(code))
        self._wrote()
        return withdrawn

    def withdraw(self, bank: str, entry_id: int, *, principal: ApiKey | None = None) -> Entry:
        """Withdraw an entry: it stops matching here at once, and in every other process
        within its refresh interval. A submit-only key withdraws only what it submitted."""
        found = self._entry(bank, entry_id, principal)
        entry = self.store.withdraw(found.bank, entry_id)
        self._wrote()
        return _filed(entry, _tenant(principal))

    def entry(self, bank: str, entry_id: int, *, principal: ApiKey | None = None) -> Entry:
        """An entry of a bank the principal may curate, or one the principal submitted."""
        return _filed(self._entry(bank, entry_id, principal), _tenant(principal))

    def _entry(self, bank: str, entry_id: int, principal: ApiKey | None) -> Entry:
        key = self._own(bank, principal).name
        entry: Entry | None = None
        if 0 < entry_id < 2**63:  # a database integer; anything else names no entry
            try:
                entry = self.store.get_entry(entry_id)
            except NotFoundError:
                entry = None
        mine = (
            principal is None
            or bool(principal.scopes & {"curate", "admin"})
            or (entry is not None and entry.submitted_by == principal.key_id)
        )
        if entry is None or entry.bank != key or not mine:
            raise NotFoundError(f"bank {bank!r} has no entry {entry_id}", code="entry_not_found")
        return entry

    def entries(
        self,
        bank: str,
        *,
        after: int = 0,
        limit: int = 100,
        signal_type: str | None = None,
        source: str | None = None,
        withdrawn: bool | None = None,
        principal: ApiKey | None = None,
    ) -> list[Entry]:
        """A page of a bank's entries in id order after entry id `after`."""
        key = self._own(bank, principal).name
        found = self.store.list_entries(
            key,
            after=after,
            limit=limit,
            signal_type=signal_type,
            source=source,
            withdrawn=withdrawn,
        )
        viewer = _tenant(principal)
        return [_filed(entry, viewer) for entry in found]

    def export(
        self, bank: str, out: IO[str], *, format: str = "jsonl", principal: ApiKey | None = None
    ) -> int:
        """Write a bank to `out`: jsonl (every entry, withdrawals included, signatures too) or
        te (active PDQ hashes). Returns how many entries were written."""
        from .exchange import FORMATS, write_entries

        if format not in FORMATS:
            raise InputError(
                f"formats are {', '.join(FORMATS)}; not {format[:40]!r}", code="unknown_format"
            )
        key = self._own(bank, principal).name
        viewer = _tenant(principal)
        entries = self.store.iter_entries(key, include_withdrawn=(format == "jsonl"))
        return write_entries((_filed(e, viewer) for e in entries), out, format=format)

    def _add(self, bank: str, entries: list[NewEntry], principal: ApiKey | None) -> list[AddResult]:
        submitted_by = principal.key_id if principal is not None else None
        outcome = self._adds.submit((bank, entries, submitted_by))
        self._wrote()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _wrote(self, *, bank: bool = False) -> None:
        # This process reads its own writes: the next match applies the change log first.
        if self._matcher is not None:
            self._matcher.expire(bank=bank)

    # lookups -----------------------------------------------------------------------------------

    def searchable(
        self, requested: Collection[str] = (), *, principal: ApiKey | None = None
    ) -> set[str] | None:
        """The banks a lookup searches, by stored name: those requested (each must be
        visible), else all the principal may match (owned or shared with its tenant). None:
        every bank."""
        matcher = self.matcher
        matcher.refresh_if_due()
        viewer = _tenant(principal)
        keys = {bank_key(name, viewer): name for name in requested}
        if set(keys) - set(matcher.banks):
            matcher.sync()  # a bank created a moment ago is not unknown
        visible = {
            name
            for name in matcher.banks
            if principal is None
            or principal.is_admin
            or matcher.bank(name).visible_to(principal.tenant)
        }
        for key, name in keys.items():
            if key not in visible:
                raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)
        if keys:
            return set(keys)
        return None if principal is None or principal.is_admin else visible

    def lookup(
        self,
        data: bytes,
        *,
        banks: Collection[str] = (),
        dihedral: bool = False,
        principal: ApiKey | None = None,
        image: DecodedImage | None = None,
        seed: str | None = None,
        bypass_coinflip: bool = False,
    ) -> Lookup:
        """Hash an image and match it: exact digests and PDQ first; only when they find
        nothing and a searched bank protects photos, derivatives of those photos. The image
        is decoded once (pass `image` if the caller decoded it already, with `gray`). CPU
        work: run it on the caller's executor. A bank with an enabled ratio below 1 is searched
        by that share of lookups (`seed` makes the draw repeatable, as in HMA;
        `bypass_coinflip` searches it regardless)."""
        searched = self._drawn(self.searchable(banks, principal=principal), seed, bypass_coinflip)
        matcher = self.matcher
        protects = matcher.protects_photos(searched)
        if image is None:
            image = decode(data, limits=self.limits, gray_side=_WORK_SIDE if protects else None)
        hashes = hash_decoded(data, image, dihedral=dihedral)

        def features() -> Features:
            from .media import decode_gray
            from .signals.keypoints import gray_features

            gray = image.gray
            if gray is None:  # a caller's image decoded without it
                gray = decode_gray(data, max_side=_WORK_SIDE, limits=self.limits)
            return gray_features(gray, query=True)

        result = matcher.match(hashes, banks=searched, features=features if protects else None)
        viewer = _tenant(principal)
        return Lookup(hashes, [_filed(m, viewer) for m in result.matches], result.notes)

    def lookup_signal(
        self,
        signal_type: str,
        value: str,
        *,
        banks: Collection[str] = (),
        principal: ApiKey | None = None,
        seed: str | None = None,
        bypass_coinflip: bool = False,
    ) -> list[Match]:
        """Entries matching one signal value (normalised first; SignalError if invalid), in
        the banks this lookup's draw enables (see `lookup`)."""
        searched = self._drawn(self.searchable(banks, principal=principal), seed, bypass_coinflip)
        found = self.matcher.match_signal(signal_type, value, banks=searched)
        viewer = _tenant(principal)
        return [_filed(m, viewer) for m in found]

    def hash_with_reference(
        self, data: bytes, *, principal: ApiKey | None = None
    ) -> tuple[ImageHashes, str | None]:
        """An image's hashes and, when a bank the principal may match protects photos, a
        reference to what a derivative search of it found: an opaque token, readable for
        `REF_TTL` seconds by `lookup_reference` on any worker (HMA's hash-then-look-up flow,
        where the second call no longer has the image). Nothing of the image is kept."""
        searched = self.searchable(principal=principal)
        if not self.matcher.protects_photos(searched):
            return self.hash(data), None
        found = self.lookup(data, principal=principal, bypass_coinflip=True)
        kept = [
            {
                "bank": bank_key(m.bank, _tenant(principal)),
                "entry_id": m.entry_id,
                "score": m.score,
                "changed_fraction": m.changed_fraction,
                "matched_part": m.matched_part,
            }
            for m in found.matches
            if m.score is not None
        ]
        return found.hashes, self.store.remember(_tenant(principal), kept)

    def lookup_reference(
        self,
        token: str,
        *,
        principal: ApiKey | None = None,
        seed: str | None = None,
        bypass_coinflip: bool = False,
    ) -> list[Match]:
        """The derivative matches behind a `hash_with_reference` token, in the banks the
        principal may still match and this lookup's draw enables; an unknown or expired token
        is InputError `unknown_reference`."""
        from .matching import Match

        kept = self.store.recall(token, _tenant(principal))
        if kept is None:
            raise InputError(
                "unknown or expired derivative reference; hash the image again",
                code="unknown_reference",
            )
        searched = self._drawn(self.searchable(principal=principal), seed, bypass_coinflip)
        viewer = _tenant(principal)
        return [
            _filed(
                Match(
                    m["bank"],
                    m["entry_id"],
                    self.matcher.local_type,
                    0,
                    score=m["score"],
                    changed_fraction=m["changed_fraction"],
                    matched_part=m.get("matched_part"),
                ),
                viewer,
            )
            for m in kept
            if searched is None or m["bank"] in searched
        ]

    def _drawn(self, searched: set[str] | None, seed: str | None, bypass: bool) -> set[str] | None:
        """The searched banks that this lookup's draw enables: HMA's coin flip, one draw per
        lookup, a bank kept when its enabled ratio is at least the draw."""
        if bypass:
            return searched
        matcher = self.matcher
        names = matcher.banks if searched is None else searched
        partial = [n for n in names if matcher.bank(n).enabled_ratio < 1.0]
        if not partial:
            return searched  # the usual case: nothing to draw for
        draw = random.Random(seed).random()
        return {n for n in names if n not in partial or matcher.bank(n).enabled_ratio >= draw}

    def compare(self, signal_type: str, a: str, b: str) -> dict[str, Any]:
        """The distance between two values of a Hamming signal type, and whether it is a match
        at the default threshold (PDQ's setting; a plug-in's own); for other types only
        whether they are equal (distance and threshold null)."""
        kind = get_signal_type(signal_type)
        a, b = kind.normalize(a), kind.normalize(b)
        if kind.kind != "hamming256":  # equal or not: no distance to speak of
            return {"distance": None, "threshold": None, "match": a == b}
        distance = kind.distance(a, b)
        threshold = self.settings.pdq_threshold if signal_type == "pdq" else kind.threshold
        return {"distance": distance, "threshold": threshold, "match": distance <= threshold}


def _case_evidence(match: Match) -> dict[str, Any]:
    """A match as a case keeps it: with a derivative's outline, for the evidence overlay."""
    out = match.to_dict()
    if match.evidence is not None:
        out["outline"] = match.evidence.outline.to_dict()
    return out
