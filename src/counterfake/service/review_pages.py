"""The review pages: server-rendered HTML for a platform's moderators, over the same core calls
as the JSON routes (`Counterfake.claim_case`, `decide_case`...). They work without JavaScript;
a small script adds keyboard shortcuts.

A reviewer signs in with an API key that has the `review` scope. The key opens a session (an
HttpOnly, SameSite=Strict cookie; only its SHA-256 is stored) and is not kept by the browser.
Every form carries the session's form token, so another site cannot post one. Images reach the
browser only as the server's renders (blurred preview, evidence overlay, an audited reveal),
inlined in pages that are never cached.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from ..errors import AccessError, CounterfakeError, InputError, NotFoundError
from ..model import ApiKey
from ..review import BANDS, REOPENING
from ..store.keys import SESSION_SECONDS
from .auth import core_of
from .statuses import status_for

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_FOLDER: Final = Path(__file__).parent.parent / "pages" / "review"
_TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_FOLDER), autoescape=True, undefined=jinja2.StrictUndefined
)
_COOKIE: Final = "counterfake_review"
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_STATIC: Final = {"review.css": "text/css", "review.js": "text/javascript"}
_QUEUES: Final = {"open": "Open", "escalated": "Escalated", "appeal": "Appeals"}
#: What the decision form suggests; the API takes any action and policy.
_ACTIONS: Final = ("remove", "remove_and_block", "restrict", "report")
_POLICIES: Final = ("ncii", "synthetic_ncii", "sextortion", "not_intimate")
_NOTICES: Final = {
    "decided": "Case {case} decided.",
    "released": "Case {case} given back to its queue.",
    "appealed": "Appeal filed: the case waits in the appeal queue.",
    "commented": "Comment added.",
    "saved": "Settings saved.",
    "empty": "Nothing is waiting in the {queue} queue.",
}


@dataclass(frozen=True)
class _Signed:
    """A signed-in reviewer: their key, their session's token and its form token."""

    key: ApiKey
    token: str
    form_token: str


def _page(
    name: str,
    signed: _Signed | None,
    *,
    status: int = 200,
    problem: CounterfakeError | None = None,
    notice: str = "",
    **values: Any,
) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(
        key=signed.key if signed else None,
        form_token=signed.form_token if signed else "",
        problem=problem,
        notice=notice,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _problem(signed: _Signed | None, exc: CounterfakeError) -> HTMLResponse:
    return _page("error.html", signed, status=status_for(exc), problem=exc)


def _go(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=_HEADERS)


def _session(request: Request) -> _Signed | None:
    token = request.cookies.get(_COOKIE, "")
    if not token:
        return None
    try:
        key, form_token = core_of(request).store.keys.session(token)
    except AccessError:
        return None
    return _Signed(key, token, form_token)


def _checked(request: Request, form_token: str) -> _Signed:
    """The signed-in reviewer of a form's request, which must carry their form token."""
    signed = _session(request)
    if signed is None:
        raise AccessError("sign in again: the session has ended", code="no_session")
    if not hmac.compare_digest(form_token.encode(), signed.form_token.encode()):
        raise AccessError("this form is stale or came from elsewhere; reload it", code="bad_form")
    return signed


def _posted(request: Request, form_token: str, act: Callable[[_Signed], Response]) -> Response:
    """A form's action: back to sign-in without a session, an error page on a refusal."""
    try:
        signed = _checked(request, form_token)
    except AccessError as exc:
        if exc.code == "no_session":
            return _go("/review/login")
        return _problem(None, exc)
    try:
        return act(signed)
    except CounterfakeError as exc:
        return _problem(signed, exc)


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _notice(done: str, case: int = 0, queue: str = "") -> str:
    text = _NOTICES.get(done, "")
    return text.format(case=case, queue=_QUEUES.get(queue, "").lower())


@router.get("/review/static/{name}")
def static_file(name: str) -> Response:
    if name not in _STATIC:
        raise NotFoundError("no such file", code="not_found")
    return FileResponse(
        _FOLDER / name,
        media_type=f"{_STATIC[name]}; charset=utf-8",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/review/login")
def login_page(request: Request) -> Response:
    return _page("login.html", None)


@router.post("/review/login")
def login(request: Request, key: Annotated[str, Form()] = "") -> Response:
    """Sign in: a key with the review scope opens a session; any other is refused."""
    keys = core_of(request).store.keys
    try:
        found = keys.authenticate(key.strip())
        if not found.scopes & {"review", "admin"}:
            raise AccessError("this key cannot review: it needs the review scope", code="forbidden")
        _, token, _ = keys.open_session(key.strip())
    except AccessError as exc:
        return _page("login.html", None, status=status_for(exc), problem=exc)
    response = _go("/review")
    response.set_cookie(
        _COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/review",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/review/logout")
def logout(request: Request, form_token: Annotated[str, Form()] = "") -> Response:
    def act(signed: _Signed) -> Response:
        core_of(request).store.keys.close_session(signed.token)
        response = _go("/review/login")
        response.delete_cookie(_COOKIE, path="/review")
        return response

    return _posted(request, form_token, act)


@router.get("/review")
def queues_page(request: Request, done: str = "", case: int = 0, queue: str = "") -> Response:
    """The tenant's queues with what waits in each, the cases this reviewer holds, and the
    latest decisions (where an appeal starts)."""
    signed = _session(request)
    if signed is None:
        return _go("/review/login")
    core = core_of(request)
    try:
        counts = core.review_queues(principal=signed.key)
        held = core.cases(held=True, principal=signed.key)
        decided = core.cases(status="decided", newest_first=True, limit=20, principal=signed.key)
    except CounterfakeError as exc:
        return _problem(signed, exc)
    queues = [
        {
            "name": name,
            "label": _QUEUES[name],
            "total": counts[name]["total"],
            "banks": sorted(counts[name]["banks"].items()),
            "signals": sorted(counts[name]["signals"].items()),
            "bands": [(b, counts[name]["bands"].get(b, 0)) for b in BANDS],
        }
        for name in REOPENING
    ]
    return _page(
        "queues.html",
        signed,
        notice=_notice(done, case, queue),
        queues=queues,
        held=held,
        decided=decided,
    )


@router.get("/review/find")
def find_case(request: Request, id: str = "") -> Response:
    return _go(f"/review/cases/{int(id)}" if id.isdigit() and len(id) < 19 else "/review")


@router.post("/review/claim")
def claim(
    request: Request,
    form_token: Annotated[str, Form()] = "",
    queue: Annotated[str, Form()] = "open",
    bank: Annotated[str, Form()] = "",
    signal: Annotated[str, Form()] = "",
    band: Annotated[str, Form()] = "",
) -> Response:
    """Claim the oldest free case of a queue (of one bank, signal or score band) and open it."""

    def act(signed: _Signed) -> Response:
        case = core_of(request).claim_case(
            queue=queue,
            bank=bank or None,
            signal=signal or None,
            band=band or None,
            principal=signed.key,
        )
        if case is None:
            return _go(f"/review?done=empty&queue={queue}")
        return _go(f"/review/cases/{case.id}")

    return _posted(request, form_token, act)


def _case_page(
    request: Request,
    signed: _Signed,
    case_id: int,
    *,
    revealed: bytes | None = None,
    confirming: bool = False,
    problem: CounterfakeError | None = None,
    notice: str = "",
) -> Response:
    core = core_of(request)
    principal = signed.key
    case = core.case(case_id, principal=principal)
    now = datetime.now(UTC)
    held = case.claim_until is not None and case.claim_until > now and case.status != "decided"
    renders: dict[str, str | None] = {}
    for name, render in (("preview", core.case_preview), ("overlay", core.case_overlay)):
        try:
            renders[name] = _data_uri(render(case_id, principal=principal))
        except NotFoundError:
            renders[name] = None
    return _page(
        "case.html",
        signed,
        status=200 if problem is None else status_for(problem),
        problem=problem,
        notice=notice,
        case=case,
        mine=held and case.claimed_by == principal.key_id,
        held_by_other=held and case.claimed_by != principal.key_id,
        settings=core.review_settings(principal=principal),
        revealed=_data_uri(revealed) if revealed else None,
        confirming=confirming,
        comments=core.case_comments(case_id, principal=principal),
        actions=_ACTIONS,
        policies=_POLICIES,
        **renders,
    )


@router.get("/review/cases/{case_id}")
def case_page(request: Request, case_id: int, done: str = "") -> Response:
    """A case: blurred preview, evidence overlay, evidence, and the decision form for the
    reviewer who holds it (the appeal form once decided); comments."""
    signed = _session(request)
    if signed is None:
        return _go("/review/login")
    try:
        return _case_page(request, signed, case_id, notice=_notice(done, case_id))
    except CounterfakeError as exc:
        return _problem(signed, exc)


@router.post("/review/cases/{case_id}/reveal")
def reveal(
    request: Request,
    case_id: int,
    form_token: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """The first click asks to confirm (unless the reviewer turned that off); the second
    shows the clearer render, audited."""

    def act(signed: _Signed) -> Response:
        try:
            image = core_of(request).reveal_case_image(
                case_id, confirm=confirm == "1", principal=signed.key
            )
        except InputError as exc:
            if exc.code != "reveal_unconfirmed":
                raise
            return _case_page(request, signed, case_id, confirming=True)
        return _case_page(request, signed, case_id, revealed=image)

    return _posted(request, form_token, act)


@router.post("/review/cases/{case_id}/decision")
def decide(
    request: Request,
    case_id: int,
    form_token: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    policy: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    remember: Annotated[str, Form()] = "",
) -> Response:
    def act(signed: _Signed) -> Response:
        try:
            core_of(request).decide_case(
                case_id,
                decision,
                policy=policy,
                reason=reason,
                action=action or None,
                remember=remember == "1",
                principal=signed.key,
            )
        except InputError as exc:  # the form again, with what was wrong
            return _case_page(request, signed, case_id, problem=exc)
        return _go(f"/review?done=decided&case={case_id}")

    return _posted(request, form_token, act)


@router.post("/review/cases/{case_id}/release")
def release(request: Request, case_id: int, form_token: Annotated[str, Form()] = "") -> Response:
    def act(signed: _Signed) -> Response:
        core_of(request).release_case(case_id, principal=signed.key)
        return _go(f"/review?done=released&case={case_id}")

    return _posted(request, form_token, act)


@router.post("/review/cases/{case_id}/appeal")
def appeal(
    request: Request,
    case_id: int,
    form_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    def act(signed: _Signed) -> Response:
        try:
            core_of(request).appeal_case(case_id, reason, principal=signed.key)
        except InputError as exc:
            return _case_page(request, signed, case_id, problem=exc)
        return _go(f"/review/cases/{case_id}?done=appealed")

    return _posted(request, form_token, act)


@router.post("/review/cases/{case_id}/comments")
def comment(
    request: Request,
    case_id: int,
    form_token: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    def act(signed: _Signed) -> Response:
        try:
            core_of(request).comment_case(case_id, body, principal=signed.key)
        except InputError as exc:
            return _case_page(request, signed, case_id, problem=exc)
        return _go(f"/review/cases/{case_id}?done=commented#comments")

    return _posted(request, form_token, act)


@router.get("/review/settings")
def settings_page(request: Request, done: str = "") -> Response:
    signed = _session(request)
    if signed is None:
        return _go("/review/login")
    settings = core_of(request).review_settings(principal=signed.key)
    return _page("settings.html", signed, notice=_notice(done), settings=settings)


@router.post("/review/settings")
def save_settings(
    request: Request,
    form_token: Annotated[str, Form()] = "",
    blur: Annotated[str, Form()] = "",
    grey: Annotated[str, Form()] = "",
    confirm_reveal: Annotated[str, Form()] = "",
) -> Response:
    """The reviewer's own settings; an unticked box is false (a form does not send it)."""

    def act(signed: _Signed) -> Response:
        core = core_of(request)
        try:
            try:
                level = float(blur)
            except ValueError:
                raise InputError("blur is a number from 4 to 40", code="invalid_settings") from None
            values = {"blur": level, "grey": grey == "1", "confirm_reveal": confirm_reveal == "1"}
            core.set_review_settings(values, principal=signed.key)
        except InputError as exc:
            settings = core.review_settings(principal=signed.key)
            return _page("settings.html", signed, status=400, problem=exc, settings=settings)
        return _go("/review/settings?done=saved")

    return _posted(request, form_token, act)
