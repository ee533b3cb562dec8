"""The protect page over HTTP: its files under /protect, and the keyless intake it sends
signature files to (off unless the operator names an intake bank). No key is asked for; the
rules (validation, limits, receipts) are the core's."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from ..errors import InputError
from ..pages import CONTENT_SECURITY_POLICY, protect_page_file
from .auth import core_of

__all__ = ["router"]

router = APIRouter()

_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES: Final = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str


@router.get("/protect", include_in_schema=False)
async def protect_page() -> Response:
    return RedirectResponse("/protect/index.html", status_code=308)


@router.get("/protect/withdraw", include_in_schema=False)
async def withdraw_page() -> Response:
    return RedirectResponse("/protect/withdraw.html", status_code=308)


@router.get("/protect/{name:path}", include_in_schema=False)
async def protect_file(name: str) -> Response:
    path = protect_page_file(name)
    if path is None:
        return JSONResponse(
            {"error": {"code": "not_found", "message": "no such file"}}, status_code=404
        )
    headers = dict(_PAGE_HEADERS)
    headers["Cache-Control"] = "no-cache" if path.suffix == ".html" else "max-age=3600"
    return FileResponse(path, headers=headers, media_type=_TYPES.get(path.suffix))


@router.get("/v1/intake", tags=["intake"])
def intake_status(request: Request) -> dict[str, Any]:
    """Whether this service takes signature files without a key (COUNTERFAKE_INTAKE_BANK), and
    how many photos one may hold."""
    return core_of(request).intake_status()


@router.post("/v1/intake", tags=["intake"], status_code=201)
async def intake(request: Request) -> dict[str, Any]:
    """Take a signature file (JSON Lines, as `counterfake protect` or the protect page writes
    it) without a key. All lines are checked first; one bad line refuses the file, naming each
    bad line. The answer holds the withdrawal code, shown this once."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("a signature file is UTF-8 text", code="invalid_signature_file") from None
    address = request.client.host if request.client else "?"
    core = core_of(request)
    receipt = await run_in_threadpool(core.intake, text.splitlines(), address=address)
    return receipt.to_dict()


@router.post("/v1/intake/withdraw", tags=["intake"])
def withdraw(request: Request, body: Withdrawal) -> dict[str, Any]:
    """Withdraw everything one submission added, by its withdrawal code: it stops matching
    within a second on every worker."""
    return {"entries": core_of(request).withdraw_submission(body.code)}
