"""Banks: create, update, list, delete, and who they are shared with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ConflictError, InputError, NotFoundError
from ..model import DEFAULT_TENANT, Bank, bank_key
from ._db import check_name, check_tenants, now, utc
from ._part import Part
from .schema import bank_shares, banks, entries, id_floors

__all__ = ["Banks"]


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        raise InputError(
            f"an enabled ratio is a number from 0 to 1, not {str(ratio)[:40]!r}",
            code="invalid_enabled_ratio",
        )
    return float(ratio)


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold <= 128:
        raise InputError(
            f"a PDQ threshold is 0-128 bits, not {threshold}", code="invalid_threshold"
        )


class Banks(Part):
    """The store's banks (a part of `Store`)."""

    #: The PDQ threshold of a bank created without one (the `pdq_threshold` setting).
    _default_threshold: int

    def create_bank(
        self,
        name: str,
        *,
        description: str = "",
        threshold: int | None = None,
        tenant: str = DEFAULT_TENANT,
        shared_with: Iterable[str] = (),
        enabled_ratio: float = 1.0,
    ) -> Bank:
        """A new empty bank owned by `tenant`, matchable by the tenants in `shared_with`. It is
        stored under `bank_key(name, tenant)`: names are unique within a tenant."""
        check_name(name, what="bank", code="invalid_bank_name")
        threshold = self._default_threshold if threshold is None else threshold
        _check_threshold(threshold)
        enabled_ratio = _check_ratio(enabled_ratio)
        shares = check_tenants([tenant, *shared_with])[1:]
        key = bank_key(name, tenant)
        with self._db.write() as conn:
            exists = conn.execute(sa.select(banks.c.id).where(banks.c.name == key)).first()
            if exists:
                raise ConflictError(f"bank {name!r} already exists", code="bank_exists", bank=name)
            bank_id = conn.execute(
                banks.insert()
                .values(
                    name=key,
                    description=description,
                    pdq_threshold=threshold,
                    created_at=now(),
                    tenant=tenant,
                    enabled_ratio=enabled_ratio,
                )
                .returning(banks.c.id)
            ).scalar_one()
            for other in shares:
                conn.execute(bank_shares.insert().values(bank_id=bank_id, tenant=other))
            self._db.audit(
                conn,
                "bank_created",
                bank=key,
                detail={
                    "pdq_threshold": threshold,
                    "tenant": tenant,
                    "shared_with": shares,
                    "enabled_ratio": enabled_ratio,
                },
            )
            self._db.change(conn, "bank_create", key)
        return self.get_bank(key)

    def update_bank(
        self,
        name: str,
        *,
        description: str | None = None,
        threshold: int | None = None,
        shared_with: Iterable[str] | None = None,
        enabled_ratio: float | None = None,
        review: bool | None = None,
    ) -> Bank:
        """Change what a bank says, its threshold, who may match against it, the share of
        lookups that search it, or whether every match in it opens a review case."""
        if threshold is not None:
            _check_threshold(threshold)
        if enabled_ratio is not None:
            enabled_ratio = _check_ratio(enabled_ratio)
        shares = None if shared_with is None else check_tenants(list(shared_with))
        with self._db.write() as conn:
            bank_id = self._db.bank_id(conn, name)
            values: dict[str, Any] = {}
            if description is not None:
                values["description"] = description
            if threshold is not None:
                values["pdq_threshold"] = threshold
            if enabled_ratio is not None:
                values["enabled_ratio"] = enabled_ratio
            if review is not None:
                values["review"] = review
            if values:
                conn.execute(banks.update().where(banks.c.id == bank_id).values(**values))
            if shares is not None:
                conn.execute(bank_shares.delete().where(bank_shares.c.bank_id == bank_id))
                for other in shares:
                    conn.execute(bank_shares.insert().values(bank_id=bank_id, tenant=other))
                values["shared_with"] = shares
            self._db.audit(conn, "bank_updated", bank=name, detail=values)
            self._db.change(conn, "bank_update", name)
        return self.get_bank(name)

    def list_banks(self, *, counts: bool = True, tenant: str | None = None) -> list[Bank]:
        """Banks by name (those `tenant` owns, if given); `counts=False` skips counting entries
        (a scan of each bank)."""
        query = sa.select(banks).order_by(banks.c.name)
        if tenant is not None:
            query = query.where(banks.c.tenant == tenant)
        with self._db.read() as conn:
            return [_bank(conn, row, counts=counts) for row in conn.execute(query).all()]

    def get_bank(self, name: str, *, counts: bool = True) -> Bank:
        """One bank; `counts=False` when only its settings are needed (counting scans it)."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(banks).where(banks.c.name == name)).first()
            if row is None:
                raise NotFoundError(f"no bank named {name!r}", code="bank_not_found", bank=name)
            return _bank(conn, row, counts=counts)

    def delete_bank(self, name: str) -> None:
        """Delete a bank and all its entries; the audit log keeps that it happened."""
        with self._db.write() as conn:
            bank_id = self._db.bank_id(conn, name)
            count = conn.execute(
                sa.select(sa.func.count()).where(entries.c.bank_id == bank_id)
            ).scalar_one()
            if self._db.dialect == "sqlite":  # its ids are never given out again (entries.py)
                conn.execute(
                    id_floors.update()
                    .where(id_floors.c.name == "entries")
                    .values(
                        floor=sa.func.max(
                            id_floors.c.floor,
                            sa.select(
                                sa.func.coalesce(sa.func.max(entries.c.id), 0)
                            ).scalar_subquery(),
                        )
                    )
                )
            conn.execute(entries.delete().where(entries.c.bank_id == bank_id))
            conn.execute(banks.delete().where(banks.c.id == bank_id))
            self._db.audit(conn, "bank_deleted", bank=name, detail={"entries": count})
            self._db.change(conn, "bank_delete", name)


def _bank(conn: Connection, row: Any, *, counts: bool) -> Bank:
    shared = conn.execute(
        sa.select(bank_shares.c.tenant)
        .where(bank_shares.c.bank_id == row.id)
        .order_by(bank_shares.c.tenant)
    ).scalars()
    active = withdrawn = 0
    by_source: dict[str, int] = {}
    if counts:
        counted = conn.execute(
            sa.select(
                sa.func.count().filter(entries.c.withdrawn_at.is_(None)),
                sa.func.count().filter(entries.c.withdrawn_at.is_not(None)),
            ).where(entries.c.bank_id == row.id)
        ).one()
        active, withdrawn = int(counted[0]), int(counted[1])
        by_source = {
            str(source): int(count)
            for source, count in conn.execute(
                sa.select(entries.c.source, sa.func.count())
                .where(entries.c.bank_id == row.id, entries.c.withdrawn_at.is_(None))
                .group_by(entries.c.source)
                .order_by(entries.c.source)
            )
        }
    return Bank(
        id=row.id,
        name=row.name,
        description=row.description,
        pdq_threshold=row.pdq_threshold,
        created_at=utc(row.created_at) or row.created_at,
        active_entries=active,
        withdrawn_entries=withdrawn,
        tenant=row.tenant,
        shared_with=tuple(shared),
        enabled_ratio=float(row.enabled_ratio),
        review=bool(row.review),
        active_by_source=by_source,
    )
