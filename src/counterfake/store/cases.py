"""Review cases: opened from a match, claimed by one reviewer at a time (a lock that
expires), decided with a policy and a reason, appealed back into a queue. Every change writes
its webhook events in the same transaction (`webhooks.enqueue`) and its audit event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..errors import ConflictError, NotFoundError
from ..model import Case, Comment
from ..review import REOPENING
from ._db import now, utc
from ._part import Part
from .schema import case_comments, case_images, case_rejections, cases, review_settings
from .webhooks import enqueue

__all__ = ["Cases"]


def _case(row: Any) -> Case:
    return Case(
        id=row.id,
        tenant=row.tenant,
        bank=row.bank,
        signal=row.signal,
        status=row.status,
        opened_at=utc(row.opened_at) or row.opened_at,
        content_id=row.content_id,
        content_url=row.content_url,
        evidence=list(row.evidence),
        claimed_by=row.claimed_by,
        claim_until=utc(row.claim_until),
        decision=row.decision,
        action=row.action,
        policy=row.policy,
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=utc(row.decided_at),
        appeal_reason=row.appeal_reason,
        band=row.band,
    )


def _within(bank: str | None, signal: str | None, band: str | None) -> list[Any]:
    """A queue's narrowing: one bank, one signal, one score band."""
    where = []
    for column, value in ((cases.c.bank, bank), (cases.c.signal, signal), (cases.c.band, band)):
        if value is not None:
            where.append(column == value)
    return where


def _row(conn: Any, case_id: int, tenant: str | None) -> Any:
    """A case's row, if `tenant` (None: any) owns it; `case_not_found` otherwise."""
    query = sa.select(cases).where(cases.c.id == case_id)
    if tenant is not None:
        query = query.where(cases.c.tenant == tenant)
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"no case {case_id}", code="case_not_found")
    return row


class Cases(Part):
    """The store's review cases (a part of `Store`)."""

    def open_case(
        self,
        tenant: str,
        *,
        bank: str,
        signal: str,
        evidence: list[dict[str, Any]],
        query: str,
        content_id: str | None,
        content_url: str | None,
        band: str = "medium",
        image: bytes | None = None,
        keep_until: datetime | None = None,
    ) -> Case | None:
        """A new open case, unless a reviewer found every one of its matches not to match this
        query before (None). `image` is kept with it until `keep_until` (a review retention)."""
        entry_ids = [int(m["entry_id"]) for m in evidence]
        with self._db.write() as conn:
            rejected = set(
                conn.execute(
                    sa.select(case_rejections.c.entry_id).where(
                        case_rejections.c.tenant == tenant,
                        case_rejections.c.query == query,
                        case_rejections.c.entry_id.in_(entry_ids),
                    )
                ).scalars()
            )
            if rejected >= set(entry_ids):
                return None
            case_id = conn.execute(
                cases.insert()
                .values(
                    tenant=tenant,
                    bank=bank,
                    signal=signal,
                    status="open",
                    opened_at=now(),
                    content_id=content_id,
                    content_url=content_url,
                    query=query,
                    evidence=evidence,
                    band=band,
                )
                .returning(cases.c.id)
            ).scalar_one()
            if image is not None and keep_until is not None:
                conn.execute(
                    case_images.insert().values(case_id=case_id, data=image, expires_at=keep_until)
                )
            case = _case(_row(conn, case_id, None))
            enqueue(conn, tenant, "case.opened", case.to_dict())
            self._db.audit(conn, "case_opened", bank=bank, detail={"case": case.id})
        return case

    def get_case(self, case_id: int, tenant: str | None) -> Case:
        with self._db.read() as conn:
            return _case(_row(conn, case_id, tenant))

    def list_cases(
        self,
        tenant: str | None,
        *,
        statuses: Sequence[str] = (),
        bank: str | None = None,
        signal: str | None = None,
        band: str | None = None,
        limit: int = 100,
        after: int = 0,
        held_by: str | None = None,
        newest_first: bool = False,
    ) -> list[Case]:
        """Cases oldest first (a queue's order) or newest first, optionally only some
        statuses, one bank, signal or band, or those a reviewer holds now. `after` pages
        oldest first."""
        query = sa.select(cases).where(cases.c.id > after, *_within(bank, signal, band))
        if tenant is not None:
            query = query.where(cases.c.tenant == tenant)
        if statuses:
            query = query.where(cases.c.status.in_(list(statuses)))
        if held_by is not None:
            query = query.where(cases.c.claimed_by == held_by, cases.c.claim_until > now())
        order = cases.c.id.desc() if newest_first else cases.c.id
        with self._db.read() as conn:
            rows = conn.execute(query.order_by(order).limit(limit))
            return [_case(r) for r in rows]

    def queue_counts(self, tenant: str) -> list[tuple[str, str, str, str, int]]:
        """How many cases wait in each queue (status), per bank, signal and band."""
        columns = (cases.c.status, cases.c.bank, cases.c.signal, cases.c.band)
        query = (
            sa.select(*columns, sa.func.count())
            .where(cases.c.tenant == tenant, cases.c.status != "decided")
            .group_by(*columns)
        )
        with self._db.read() as conn:
            return [(r[0], r[1], r[2], r[3], int(r[4])) for r in conn.execute(query)]

    def claim_case(
        self,
        tenant: str,
        reviewer: str,
        *,
        statuses: Sequence[str] = ("open",),
        bank: str | None = None,
        signal: str | None = None,
        band: str | None = None,
        lease_seconds: float,
    ) -> Case | None:
        """Lock the oldest free case of the queue for `reviewer` until the lease ends; None
        when every case is decided or locked. One transaction finds and locks it: SQLite has
        one writer at a time, and PostgreSQL skips rows another claim holds (`FOR UPDATE SKIP
        LOCKED`), so a case is never locked for two reviewers and claimers do not queue."""
        at = now()
        free = sa.or_(cases.c.claim_until.is_(None), cases.c.claim_until < at)
        where = [cases.c.tenant == tenant, cases.c.status.in_(list(statuses)), free]
        where += _within(bank, signal, band)
        with self._db.write() as conn:
            case_id = conn.execute(
                sa.select(cases.c.id)
                .where(*where)
                .order_by(cases.c.opened_at, cases.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if case_id is None:
                return None
            conn.execute(
                cases.update()
                .where(cases.c.id == case_id)
                .values(claimed_by=reviewer, claim_until=at + timedelta(seconds=lease_seconds))
            )
            self._db.audit(conn, "case_claimed", detail={"case": case_id, "reviewer": reviewer})
            return _case(_row(conn, case_id, None))

    def release_case(self, case_id: int, tenant: str | None, reviewer: str) -> Case:
        """Give a claimed case back to its queue."""
        with self._db.write() as conn:
            self._locked_row(conn, case_id, tenant, reviewer)
            conn.execute(
                cases.update()
                .where(cases.c.id == case_id)
                .values(claimed_by=None, claim_until=None)
            )
        return self.get_case(case_id, tenant)

    def _locked_row(self, conn: Any, case_id: int, tenant: str | None, reviewer: str) -> Any:
        """The case's row, if it waits in a queue and no other reviewer holds it."""
        row = _row(conn, case_id, tenant)
        if row.status not in REOPENING:
            raise ConflictError(f"case {case_id} is decided", code="case_decided")
        held = utc(row.claim_until)
        if row.claimed_by not in (None, reviewer) and held is not None and held > now():
            raise ConflictError(
                f"case {case_id} is claimed by another reviewer", code="case_claimed"
            )
        return row

    def decide_case(
        self,
        case_id: int,
        tenant: str | None,
        reviewer: str,
        *,
        decision: str,
        policy: str,
        reason: str,
        action: str | None,
        remember: bool,
    ) -> Case:
        """Record a decision: `confirm` or `not_a_match` closes the case (`remember` keeps the
        pair from opening a case again), `escalate` moves it to the escalated queue."""
        at = now()
        with self._db.write() as conn:
            row = self._locked_row(conn, case_id, tenant, reviewer)
            appeal = row.status == "appeal"
            conn.execute(
                cases.update()
                .where(cases.c.id == case_id)
                .values(
                    status="escalated" if decision == "escalate" else "decided",
                    decision=decision,
                    action=action if decision == "confirm" else None,
                    policy=policy,
                    reason=reason,
                    decided_by=reviewer,
                    decided_at=at,
                    claimed_by=None,
                    claim_until=None,
                )
            )
            purged = False
            if decision != "escalate":  # decided: its image, if kept, goes now
                purged = bool(
                    conn.execute(
                        case_images.delete().where(case_images.c.case_id == case_id)
                    ).rowcount
                )
            if remember and decision == "not_a_match":
                for match in row.evidence:
                    key = (row.tenant, int(match["entry_id"]), row.query)
                    known = conn.execute(
                        sa.select(case_rejections.c.at).where(
                            case_rejections.c.tenant == key[0],
                            case_rejections.c.entry_id == key[1],
                            case_rejections.c.query == key[2],
                        )
                    ).first()
                    if known is None:
                        conn.execute(
                            case_rejections.insert().values(
                                tenant=key[0], entry_id=key[1], query=key[2], at=at
                            )
                        )
            case = _case(_row(conn, case_id, None))
            event = "appeal.decided" if appeal and decision != "escalate" else "case.decided"
            enqueue(conn, row.tenant, event, case.to_dict())
            self._db.audit(
                conn,
                "case_decided",
                bank=row.bank,
                detail={"case": case_id, "decision": decision, "reviewer": reviewer},
            )
        if purged:
            self._db.scrub()
        return case

    def appeal_case(self, case_id: int, tenant: str | None, reason: str) -> Case:
        """Reopen a decided case into the appeal queue."""
        with self._db.write() as conn:
            row = _row(conn, case_id, tenant)
            if row.status != "decided":
                raise ConflictError(
                    f"case {case_id} is not decided, so it cannot be appealed",
                    code="case_not_decided",
                )
            conn.execute(
                cases.update()
                .where(cases.c.id == case_id)
                .values(status="appeal", appeal_reason=reason, claimed_by=None, claim_until=None)
            )
            self._db.audit(conn, "case_appealed", bank=row.bank, detail={"case": case_id})
        return self.get_case(case_id, tenant)

    def case_image(self, case_id: int, tenant: str | None) -> bytes:
        """The image kept for an open case (for rendering only; never sent as it is)."""
        self.get_case(case_id, tenant)
        with self._db.read() as conn:
            data = conn.execute(
                sa.select(case_images.c.data).where(
                    case_images.c.case_id == case_id, case_images.c.expires_at > now()
                )
            ).scalar_one_or_none()
        if data is None:
            raise NotFoundError(
                f"no image is kept for case {case_id} (no review retention, or purged)",
                code="no_case_image",
            )
        return bytes(data)

    def audit_reveal(self, case_id: int, tenant: str | None, reviewer: str) -> None:
        """A reviewer asked for the clearer render: allowed only while holding the case."""
        with self._db.write() as conn:
            row = self._locked_row(conn, case_id, tenant, reviewer)
            if row.claimed_by != reviewer:
                raise ConflictError(
                    f"claim case {case_id} before revealing its image", code="case_not_claimed"
                )
            self._db.audit(
                conn, "case_revealed", bank=row.bank, detail={"case": case_id, "reviewer": reviewer}
            )

    def purge_case_images(self) -> int:
        """Delete the images whose retention has passed; returns how many."""
        with self._db.write() as conn:
            gone = int(
                conn.execute(case_images.delete().where(case_images.c.expires_at <= now())).rowcount
            )
        if gone:
            self._db.scrub()
        return gone

    def comment_case(self, case_id: int, tenant: str | None, author: str, body: str) -> Comment:
        """Add a comment to a case (open or decided)."""
        self.get_case(case_id, tenant)
        at = now()
        with self._db.write() as conn:
            comment_id = conn.execute(
                case_comments.insert()
                .values(case_id=case_id, author=author, body=body, at=at)
                .returning(case_comments.c.id)
            ).scalar_one()
            self._db.audit(conn, "case_commented", detail={"case": case_id, "author": author})
        return Comment(int(comment_id), case_id, author, body, at)

    def case_comments(self, case_id: int, tenant: str | None) -> list[Comment]:
        self.get_case(case_id, tenant)
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(case_comments)
                .where(case_comments.c.case_id == case_id)
                .order_by(case_comments.c.id)
            )
            return [Comment(r.id, r.case_id, r.author, r.body, utc(r.at) or r.at) for r in rows]

    def review_settings(self, tenant: str, reviewer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The tenant's defaults and the reviewer's own settings (each possibly empty)."""
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(review_settings.c.reviewer, review_settings.c.settings).where(
                    review_settings.c.tenant == tenant,
                    review_settings.c.reviewer.in_(["", reviewer]),
                )
            ).all()
        found = {r.reviewer: dict(r.settings) for r in rows}
        return found.get("", {}), found.get(reviewer, {}) if reviewer else {}

    def set_review_settings(self, tenant: str, reviewer: str, settings: dict[str, Any]) -> None:
        """Replace a reviewer's settings (reviewer "": the tenant's defaults)."""
        where = (review_settings.c.tenant == tenant, review_settings.c.reviewer == reviewer)
        with self._db.write() as conn:
            conn.execute(review_settings.delete().where(*where))
            conn.execute(
                review_settings.insert().values(tenant=tenant, reviewer=reviewer, settings=settings)
            )
            self._db.audit(
                conn,
                "review_settings_set",
                detail={"tenant": tenant, "reviewer": reviewer or "(defaults)", **settings},
            )
