"""Review's JSON routes: a tenant's cases (listed, claimed, decided, appealed) and its
webhooks (made, listed, removed, their delivery logs, replays). The rules are the core's
(`Counterfake.claim_case`, `decide_case`...) and `counterfake.review`'s."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..review import write_decisions
from .auth import Curate, Review, ReviewOrCurate, core_of

__all__ = ["router"]

router = APIRouter(tags=["review"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Claim(_Body):
    queue: Literal["open", "escalated", "appeal"] = "open"
    bank: str | None = None
    signal: str | None = None
    band: Literal["high", "medium", "low"] | None = None


class Decision(_Body):
    decision: str = Field(description="confirm, not_a_match or escalate")
    policy: str
    reason: str
    action: str | None = Field(default=None, description="what the platform does (confirm)")
    remember: bool = Field(default=False, description="not_a_match: do not reopen this pair")


class Appeal(_Body):
    reason: str


class Reveal(_Body):
    confirm: bool = False


class ReviewSettings(_Body):
    blur: float | None = Field(default=None, description="4 to 40")
    grey: bool | None = None
    confirm_reveal: bool | None = None

    def values(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CommentCreate(_Body):
    body: str


class WebhookCreate(_Body):
    url: str
    events: list[str]


@router.get("/v1/cases")
def list_cases(
    request: Request,
    key: ReviewOrCurate,
    status: str | None = None,
    bank: str | None = None,
    signal: str | None = None,
    band: Literal["high", "medium", "low"] | None = None,
    after: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """The tenant's cases, oldest first (`after`: the last id of the previous page), of one
    status, bank, signal or score band."""
    found = core_of(request).cases(
        status=status,
        bank=bank,
        signal=signal,
        band=band,
        after=after,
        limit=limit,
        principal=key,
    )
    return {"cases": [c.to_dict() for c in found]}


@router.get("/v1/cases/export")
def export_decisions(
    request: Request,
    key: ReviewOrCurate,
    format: Literal["jsonl", "csv"] = "jsonl",
    since: datetime | None = None,
    decision: Literal["confirm", "not_a_match", "escalate"] | None = None,
    bank: str | None = None,
) -> Response:
    """The tenant's decision log (decided and escalated cases, oldest first) as JSON Lines or
    CSV, optionally since a time, of one decision or in one bank."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    log = core_of(request).decision_log(since=since, decision=decision, bank=bank, principal=key)
    buffer = io.StringIO()
    write_decisions(log, buffer, format)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return Response(buffer.getvalue(), media_type=f"{media}; charset=utf-8")


@router.get("/v1/cases/{case_id}")
def show_case(request: Request, key: ReviewOrCurate, case_id: int) -> dict[str, Any]:
    return core_of(request).case(case_id, principal=key).to_dict()


@router.post("/v1/cases/claim")
def claim_case(request: Request, key: Review, body: Claim | None = None) -> dict[str, Any]:
    """Lock the oldest free case of a queue (of one bank, signal or score band) for this
    reviewer (`case` is null when the queue is empty); the lock ends after five minutes or
    with a decision or a release."""
    wanted = body or Claim()
    case = core_of(request).claim_case(
        queue=wanted.queue,
        bank=wanted.bank,
        signal=wanted.signal,
        band=wanted.band,
        principal=key,
    )
    return {"case": None if case is None else case.to_dict()}


_PRIVATE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@router.get(
    "/v1/cases/{case_id}/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def case_preview(
    request: Request,
    key: Review,
    case_id: int,
    blur: float | None = None,
    grey: bool | None = None,
) -> Response:
    """A small blurred (by default grey) JPEG of the case's kept image, rendered here as the
    reviewer's settings say (or `blur`, `grey`): the upload itself is never sent. 404
    `no_case_image` without a review retention."""
    data = core_of(request).case_preview(case_id, blur=blur, grey=grey, principal=key)
    return Response(data, media_type="image/jpeg", headers=_PRIVATE)


@router.get(
    "/v1/cases/{case_id}/overlay",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def case_overlay(request: Request, key: Review, case_id: int) -> Response:
    """The evidence overlay of a derivative case (JPEG): the protected photo's outline and the
    changed region, drawn over the blurred preview (or a blank of the upload's shape when no
    image is kept). 404 `no_overlay` for a case of copies."""
    data = core_of(request).case_overlay(case_id, principal=key)
    return Response(data, media_type="image/jpeg", headers=_PRIVATE)


@router.post(
    "/v1/cases/{case_id}/reveal",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def reveal_case(
    request: Request, key: Review, case_id: int, body: Reveal | None = None
) -> Response:
    """A clearer render (at most 768 px, not blurred) of a case this reviewer holds, once
    confirmed (`{"confirm": true}`, unless the reviewer's settings say otherwise); every
    reveal is in the audit log."""
    confirm = body is not None and body.confirm
    data = core_of(request).reveal_case_image(case_id, confirm=confirm, principal=key)
    return Response(data, media_type="image/jpeg", headers=_PRIVATE)


@router.post("/v1/cases/{case_id}/release")
def release_case(request: Request, key: Review, case_id: int) -> dict[str, Any]:
    return core_of(request).release_case(case_id, principal=key).to_dict()


@router.post("/v1/cases/{case_id}/decision")
def decide_case(request: Request, key: Review, case_id: int, body: Decision) -> dict[str, Any]:
    """Decide a case: confirm (with an action), not_a_match, or escalate; policy and reason
    required. Audited and sent to the tenant's webhooks."""
    return (
        core_of(request)
        .decide_case(
            case_id,
            body.decision,
            policy=body.policy,
            reason=body.reason,
            action=body.action,
            remember=body.remember,
            principal=key,
        )
        .to_dict()
    )


@router.post("/v1/cases/{case_id}/appeal")
def appeal_case(
    request: Request, key: ReviewOrCurate, case_id: int, body: Appeal
) -> dict[str, Any]:
    """Reopen a decided case into the appeal queue."""
    return core_of(request).appeal_case(case_id, body.reason, principal=key).to_dict()


@router.get("/v1/cases/{case_id}/comments")
def list_comments(request: Request, key: ReviewOrCurate, case_id: int) -> dict[str, Any]:
    """The case's comments, oldest first."""
    found = core_of(request).case_comments(case_id, principal=key)
    return {"comments": [c.to_dict() for c in found]}


@router.post("/v1/cases/{case_id}/comments", status_code=201)
def add_comment(
    request: Request, key: ReviewOrCurate, case_id: int, body: CommentCreate
) -> dict[str, Any]:
    """Comment on a case (by this key's id); audited."""
    return core_of(request).comment_case(case_id, body.body, principal=key).to_dict()


@router.get("/v1/review/settings")
def get_review_settings(request: Request, key: Review) -> dict[str, Any]:
    """How this reviewer sees cases: their settings over the tenant's defaults."""
    return core_of(request).review_settings(principal=key)


@router.put("/v1/review/settings")
def put_review_settings(request: Request, key: Review, body: ReviewSettings) -> dict[str, Any]:
    """Change this reviewer's own settings (`blur`, `grey`, `confirm_reveal`)."""
    return core_of(request).set_review_settings(body.values(), principal=key)


@router.put("/v1/review/defaults")
def put_review_defaults(request: Request, key: Curate, body: ReviewSettings) -> dict[str, Any]:
    """Change the tenant's defaults for reviewers who set none."""
    return core_of(request).set_review_settings(body.values(), tenant_default=True, principal=key)


@router.get("/v1/webhooks")
def list_webhooks(request: Request, key: Curate) -> dict[str, Any]:
    return {"webhooks": [w.to_dict() for w in core_of(request).webhooks(principal=key)]}


@router.post("/v1/webhooks", status_code=201)
def add_webhook(request: Request, key: Curate, body: WebhookCreate) -> dict[str, Any]:
    """A webhook for the tenant's events; the answer holds its signing secret, this once."""
    hook, secret = core_of(request).add_webhook(body.url, body.events, principal=key)
    return {**hook.to_dict(), "secret": secret}


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def remove_webhook(request: Request, key: Curate, webhook_id: int) -> Response:
    core_of(request).remove_webhook(webhook_id, principal=key)
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries")
def list_deliveries(
    request: Request, key: Curate, webhook_id: int, status: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """The webhook's delivery log, newest first (`status=dead`: its dead letters)."""
    found = core_of(request).deliveries(webhook_id, status=status, limit=limit, principal=key)
    return {"deliveries": [d.to_dict() for d in found]}


@router.post("/v1/deliveries/{delivery_id}/replay")
def replay_delivery(request: Request, key: Curate, delivery_id: int) -> dict[str, Any]:
    return core_of(request).replay_delivery(delivery_id, principal=key).to_dict()
