"""Webhooks and the outbox of their deliveries. An event is written, one row per subscribed
webhook, in the same transaction as what it reports (`enqueue`): it is delivered even if the
process dies just after. Any worker leases due deliveries; a failure waits `review.backoff`
and, after `review.MAX_ATTEMPTS`, is dead until replayed. The signing secret is read only by
`claim_deliveries`."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import NotFoundError
from ..model import Delivery, Webhook, shown_bank
from ..review import MAX_ATTEMPTS, backoff
from ._db import now, utc
from ._part import Part
from .schema import bank_shares, banks, deliveries, webhooks

__all__ = ["Webhooks", "enqueue", "tell_withdrawn"]


def enqueue(conn: Connection, tenant: str, event: str, data: dict[str, Any]) -> int:
    """Write `event` for every webhook of `tenant` that takes it; returns how many."""
    at = now()
    hooks = conn.execute(
        sa.select(webhooks.c.id, webhooks.c.events).where(webhooks.c.tenant == tenant)
    ).all()
    rows = []
    for hook in hooks:
        if event not in hook.events:
            continue
        event_id = f"evt_{uuid.uuid4().hex}"
        body = {"id": event_id, "type": event, "created_at": at.isoformat(), "data": data}
        rows.append(
            {
                "webhook_id": hook.id,
                "event_id": event_id,
                "event": event,
                "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
            }
        )
    if rows:
        conn.execute(deliveries.insert(), rows)
    return len(rows)


def tell_withdrawn(conn: Connection, bank: str, entry_ids: list[int]) -> None:
    """`entry.withdrawn` for each entry, to the webhooks of the bank's tenant and of those it
    is shared with (they may have acted on a match of it), however it was withdrawn: by hand,
    by an intake withdrawal code, or by an exchange."""
    if not entry_ids:
        return
    row = conn.execute(sa.select(banks.c.id, banks.c.tenant).where(banks.c.name == bank)).first()
    if row is None:
        return
    shared = conn.execute(
        sa.select(bank_shares.c.tenant).where(bank_shares.c.bank_id == row.id)
    ).scalars()
    for tenant in dict.fromkeys([row.tenant, *shared]):
        shown = shown_bank(bank, tenant)
        for entry_id in entry_ids:
            enqueue(conn, tenant, "entry.withdrawn", {"bank": shown, "entry_id": entry_id})


def _webhook(row: Any) -> Webhook:
    return Webhook(
        row.id, row.tenant, row.url, tuple(row.events), utc(row.created_at) or row.created_at
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event=row.event,
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=utc(row.next_attempt_at) or row.next_attempt_at,
        created_at=utc(row.created_at) or row.created_at,
        last_error=row.last_error,
        delivered_at=utc(row.delivered_at),
    )


class Webhooks(Part):
    """The store's webhooks and deliveries (a part of `Store`)."""

    def add_webhook(self, tenant: str, url: str, events: tuple[str, ...]) -> tuple[Webhook, str]:
        """A new webhook and its signing secret (returned this once, stored for signing)."""
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        with self._db.write() as conn:
            hook_id = conn.execute(
                webhooks.insert()
                .values(
                    tenant=tenant, url=url, secret=secret, events=list(events), created_at=now()
                )
                .returning(webhooks.c.id)
            ).scalar_one()
            self._db.audit(conn, "webhook_added", detail={"tenant": tenant, "webhook": hook_id})
        return self.get_webhook(int(hook_id), tenant), secret

    def get_webhook(self, webhook_id: int, tenant: str | None) -> Webhook:
        query = sa.select(webhooks).where(webhooks.c.id == webhook_id)
        if tenant is not None:
            query = query.where(webhooks.c.tenant == tenant)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}", code="webhook_not_found")
        return _webhook(row)

    def list_webhooks(self, tenant: str | None) -> list[Webhook]:
        query = sa.select(webhooks).order_by(webhooks.c.id)
        if tenant is not None:
            query = query.where(webhooks.c.tenant == tenant)
        with self._db.read() as conn:
            return [_webhook(r) for r in conn.execute(query)]

    def remove_webhook(self, webhook_id: int, tenant: str | None) -> None:
        """Remove a webhook and what it had still to deliver."""
        where = [webhooks.c.id == webhook_id]
        if tenant is not None:
            where.append(webhooks.c.tenant == tenant)
        with self._db.write() as conn:
            conn.execute(deliveries.delete().where(deliveries.c.webhook_id == webhook_id))
            if not conn.execute(webhooks.delete().where(*where)).rowcount:
                raise NotFoundError(f"no webhook {webhook_id}", code="webhook_not_found")
            self._db.audit(conn, "webhook_removed", detail={"webhook": webhook_id})

    def list_deliveries(
        self, webhook_id: int, tenant: str | None, *, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """A webhook's delivery log, newest first (`status="dead"`: its dead letters)."""
        self.get_webhook(webhook_id, tenant)
        query = sa.select(deliveries).where(deliveries.c.webhook_id == webhook_id)
        if status is not None:
            query = query.where(deliveries.c.status == status)
        with self._db.read() as conn:
            rows = conn.execute(query.order_by(deliveries.c.id.desc()).limit(limit))
            return [_delivery(r) for r in rows]

    def replay_delivery(self, delivery_id: int, tenant: str | None) -> Delivery:
        """Send a delivery again (a dead one, or a delivered one the receiver lost), with its
        event id unchanged so that the receiver can tell."""
        query = sa.select(deliveries.c.id).join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        query = query.where(deliveries.c.id == delivery_id)
        if tenant is not None:
            query = query.where(webhooks.c.tenant == tenant)
        with self._db.write() as conn:
            if conn.execute(query).first() is None:
                raise NotFoundError(f"no delivery {delivery_id}", code="delivery_not_found")
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(status="pending", attempts=0, next_attempt_at=now(), lease_until=None)
            )
            self._db.audit(conn, "delivery_replayed", detail={"delivery": delivery_id})
            row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).one()
        return _delivery(row)

    def claim_deliveries(self, *, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Lease up to `limit` due deliveries for this worker: id, url, secret, body, event id
        and attempts so far. For the deliverer only: the secret is never shown."""
        at = now()
        free = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < at)
        due = (deliveries.c.status == "pending", deliveries.c.next_attempt_at <= at, free)
        with self._db.read() as conn:  # most polls find nothing due
            ids = (
                conn.execute(
                    sa.select(deliveries.c.id).where(*due).order_by(deliveries.c.id).limit(limit)
                )
                .scalars()
                .all()
            )
        if not ids:
            return []
        claimed = []
        with self._db.write() as conn:
            for delivery_id in ids:
                if conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == delivery_id, *due)
                    .values(lease_until=at + timedelta(seconds=lease_seconds))
                ).rowcount:
                    claimed.append(delivery_id)
            if not claimed:
                return []
            rows = conn.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.body,
                    deliveries.c.event_id,
                    deliveries.c.attempts,
                    webhooks.c.url,
                    webhooks.c.secret,
                )
                .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
                .where(deliveries.c.id.in_(claimed))
                .order_by(deliveries.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def finish_deliveries(self, outcomes: dict[int, str | None]) -> None:
        """Delivery attempts are over (delivery id -> None, or why it failed): delivered, or
        retried after a backoff, dead after `MAX_ATTEMPTS`. One transaction for a batch."""
        at = now()
        with self._db.write() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.id, deliveries.c.attempts).where(
                    deliveries.c.id.in_(list(outcomes))
                )
            )
            known = {int(r.id): int(r.attempts) for r in rows}
            for delivery_id, error in outcomes.items():
                if delivery_id not in known:
                    continue
                attempts = known[delivery_id] + 1
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "lease_until": None,
                    "last_error": error,
                }
                if error is None:
                    values |= {"status": "delivered", "delivered_at": at}
                elif attempts >= MAX_ATTEMPTS:
                    values["status"] = "dead"
                else:
                    values["next_attempt_at"] = at + timedelta(seconds=backoff(attempts))
                conn.execute(
                    deliveries.update().where(deliveries.c.id == delivery_id).values(**values)
                )
