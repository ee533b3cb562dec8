"""Submissions through the protect page's intake: which entries one signature file added,
under the SHA-256 of its withdrawal code (the code itself is never stored), and a keyed hash
of the sending address for per-day limits (the address itself is never stored)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from ..errors import NotFoundError
from ._db import now
from ._part import Part
from .schema import banks, entries, instance_secrets, submission_entries, submissions
from .webhooks import tell_withdrawn

__all__ = ["Submissions"]


class Submissions(Part):
    """The store's intake submissions (a part of `Store`)."""

    def instance_secret(self, name: str) -> str:
        """A random secret of this installation, made on first use and the same for every
        worker after: keys hashes that must agree across processes but not be guessable."""
        with self._db.read() as conn:
            value = conn.execute(
                sa.select(instance_secrets.c.value).where(instance_secrets.c.name == name)
            ).scalar_one_or_none()
        if value is not None:
            return str(value)
        with self._db.write() as conn:
            value = conn.execute(
                sa.select(instance_secrets.c.value).where(instance_secrets.c.name == name)
            ).scalar_one_or_none()
            if value is None:
                value = secrets.token_hex(32)
                conn.execute(instance_secrets.insert().values(name=name, value=value))
        return str(value)

    def count_submissions(self, since: datetime, *, address_key: str | None = None) -> int:
        """Submissions made since `since`, from one address (its keyed hash) or from all."""
        query = sa.select(sa.func.count()).select_from(submissions)
        query = query.where(submissions.c.created_at >= since)
        if address_key is not None:
            query = query.where(submissions.c.address_key == address_key)
        with self._db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def add_submission(
        self, submission_id: str, bank: str, *, code_sha256: str, address_key: str, photos: int
    ) -> None:
        """Record a submission before its entries are added (so that none is unowned)."""
        with self._db.write() as conn:
            bank_id = self._db.bank_id(conn, bank)
            conn.execute(
                submissions.insert().values(
                    id=submission_id,
                    bank_id=bank_id,
                    code_sha256=code_sha256,
                    address_key=address_key,
                    photos=photos,
                    created_at=now(),
                )
            )
            self._db.audit(
                conn,
                "intake_submitted",
                bank=bank,
                detail={"submission": submission_id, "photos": photos},
            )

    def link_submission(self, submission_id: str, entry_ids: Sequence[int]) -> None:
        """The entries a submission added or named again (one it shares with another
        submission stays until both are withdrawn)."""
        with self._db.write() as conn:
            for entry_id in sorted(set(entry_ids)):
                conn.execute(
                    submission_entries.insert().values(
                        submission_id=submission_id, entry_id=entry_id
                    )
                )

    def withdraw_submission(self, code_sha256: str) -> tuple[str, int]:
        """Withdraw every entry of the submission whose code hashes to `code_sha256` that no
        other live submission holds: (submission id, entries withdrawn). Twice is a no-op."""
        with self._db.write() as conn:
            found = conn.execute(
                sa.select(submissions.c.id, submissions.c.withdrawn_at).where(
                    submissions.c.code_sha256 == code_sha256
                )
            ).first()
            if found is None:
                raise NotFoundError(
                    "no submission has this withdrawal code", code="unknown_withdrawal_code"
                )
            if found.withdrawn_at is not None:
                return found.id, 0
            at = now()
            conn.execute(
                submissions.update().where(submissions.c.id == found.id).values(withdrawn_at=at)
            )
            others = (
                sa.select(submission_entries.c.entry_id)
                .join(submissions, submissions.c.id == submission_entries.c.submission_id)
                .where(submissions.c.withdrawn_at.is_(None))
            )
            rows = conn.execute(
                sa.select(entries.c.id, banks.c.name)
                .join(submission_entries, submission_entries.c.entry_id == entries.c.id)
                .join(banks, banks.c.id == entries.c.bank_id)
                .where(
                    submission_entries.c.submission_id == found.id,
                    entries.c.withdrawn_at.is_(None),
                    entries.c.id.not_in(others),
                )
            ).all()
            by_bank: dict[str, list[int]] = {}
            for entry_id, bank in rows:
                conn.execute(
                    entries.update().where(entries.c.id == entry_id).values(withdrawn_at=at)
                )
                self._db.change(conn, "withdraw", bank, entry_id)
                by_bank.setdefault(bank, []).append(entry_id)
            for bank, withdrawn in by_bank.items():
                tell_withdrawn(conn, bank, withdrawn)
            self._db.audit(
                conn,
                "intake_withdrawn",
                bank=rows[0][1] if rows else None,
                detail={"submission": found.id, "entries": len(rows)},
            )
            return found.id, len(rows)
