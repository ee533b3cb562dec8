"""Review's rules: what a decision may be, which events a webhook may take, how an event is
signed (and checked by its receiver), and how long a failed delivery waits.

An event's body is signed with HMAC-SHA256 over `{t}.{body}` (`t` the Unix time of sending), sent
as `Counterfake-Signature: t=...,v1=...`. A receiver recomputes it and rejects a timestamp
older than its tolerance, so a captured event cannot be replayed later (ROOST Coop's signature
covers the body alone). `Counterfake-Event-Id` is the idempotency key: the same for every
attempt at one event.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any, Final

from .errors import InputError
from .model import Case

__all__ = [
    "BANDS",
    "DECISIONS",
    "EVENTS",
    "MAX_ATTEMPTS",
    "REOPENING",
    "SIGNATURE_HEADER",
    "backoff",
    "band",
    "check_band",
    "check_decision",
    "check_events",
    "check_settings",
    "render",
    "retention_seconds",
    "sign",
    "verify",
    "write_decisions",
]

#: confirm: it is the protected photo or a derivative (with an action the platform takes);
#: not_a_match: it is not; escalate: someone else decides (the escalated queue).
DECISIONS: Final = ("confirm", "not_a_match", "escalate")
EVENTS: Final = ("case.opened", "case.decided", "appeal.decided", "entry.withdrawn")
#: Statuses a reviewer may claim from: each is a queue.
REOPENING: Final = ("open", "escalated", "appeal")
SIGNATURE_HEADER: Final = "Counterfake-Signature"
#: A delivery is given up on (dead, replayable) after this many attempts.
MAX_ATTEMPTS: Final = 8
_FIRST_WAIT: Final = 2.0
_LONGEST_WAIT: Final = 3600.0
#: A receiver's default tolerance for the signature's timestamp.
TOLERANCE: Final = 300


#: Score bands, by which a queue can be worked strongest first: `band` says which.
BANDS: Final = ("high", "medium", "low")
#: PDQ distances (bits of 256) at most this are a high band's copy; beyond the other, low.
_PDQ_HIGH: Final = 10
_PDQ_LOW: Final = 24
#: Derivative scores (0-1) at least this are high; under the other, low.
_SCORE_HIGH: Final = 0.6
_SCORE_LOW: Final = 0.25


def band(evidence: Iterable[Mapping[str, Any]]) -> str:
    """How strong a case's best match is. high: an exact digest or copy (distance 0), a PDQ
    copy within 10 bits, or a derivative scoring 0.6 or more on the person or the whole photo.
    low: a match on the background alone (two portraits shot against one backdrop share it),
    a PDQ copy beyond 24 bits, or a derivative scoring under 0.25. medium: the rest."""
    best = len(BANDS) - 1
    for match in evidence:
        if match.get("score") is not None:
            score = float(match["score"])
            if match.get("matched_part") == "background" or score < _SCORE_LOW:
                rank = 2
            else:
                rank = 0 if score >= _SCORE_HIGH else 1
        else:
            distance = int(match.get("distance", 0))
            if distance == 0 or (match.get("signal") == "pdq" and distance <= _PDQ_HIGH):
                rank = 0
            else:
                rank = 2 if match.get("signal") == "pdq" and distance > _PDQ_LOW else 1
        best = min(best, rank)
    return BANDS[best]


def check_band(value: str | None) -> str | None:
    if value is not None and value not in BANDS:
        raise InputError(
            f"a score band is one of {', '.join(BANDS)}; got {value!r}", code="invalid_queue"
        )
    return value


def check_decision(decision: str, policy: str, reason: str) -> None:
    """A decision names its kind, the policy it applies and the reviewer's reason."""
    if decision not in DECISIONS:
        raise InputError(
            f"a decision is one of {', '.join(DECISIONS)}; got {decision!r}",
            code="invalid_decision",
        )
    if not policy.strip() or not reason.strip() or len(policy) > 200 or len(reason) > 4000:
        raise InputError(
            "a decision needs its policy (at most 200 characters) and a reason (at most 4,000)",
            code="invalid_decision",
        )


def check_events(events: list[str]) -> tuple[str, ...]:
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        raise InputError(
            f"webhook events are {', '.join(EVENTS)}; got {unknown or 'none'}",
            code="invalid_webhook",
        )
    return tuple(e for e in EVENTS if e in events)


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The `Counterfake-Signature` header's value for `body` sent at `at` (now)."""
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE) -> bool:
    """What a receiver does: the signature matches the body and its timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp).split(",v1=")[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 2, 4, 8... up to an hour."""
    return float(min(_LONGEST_WAIT, _FIRST_WAIT * 2.0 ** max(0, attempts - 1)))


#: The decision log's columns, in order (CSV); JSON Lines carries the whole case.
DECISION_COLUMNS: Final = (
    "id",
    "tenant",
    "bank",
    "signal",
    "status",
    "decision",
    "action",
    "policy",
    "reason",
    "decided_by",
    "decided_at",
    "band",
    "content_id",
    "content_url",
    "opened_at",
    "appeal_reason",
)


def write_decisions(cases: Iterable[Case], out: IO[str], fmt: str) -> int:
    """Write the decision log as JSON Lines (each case whole) or CSV (`DECISION_COLUMNS`);
    returns how many were written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(DECISION_COLUMNS)
        for case in cases:
            row = case.to_dict()
            writer.writerow(["" if row[c] is None else row[c] for c in DECISION_COLUMNS])
            count += 1
        return count
    for case in cases:
        out.write(json.dumps(case.to_dict(), sort_keys=True) + "\n")
        count += 1
    return count


#: A preview's longer side, and the most a reveal shows.
PREVIEW_SIDE: Final = 256
#: The evidence overlay's longer side (over a blurred render).
OVERLAY_SIDE: Final = 512
REVEAL_SIDE: Final = 768
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def retention_seconds(text: str) -> float | None:
    """COUNTERFAKE_REVIEW_RETENTION as seconds ('72h', '30m', '7d', '90s'); None when off."""
    text = text.strip().lower()
    if not text:
        return None
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) == 0:
        raise InputError(
            f"a review retention is a number and a unit (s, m, h, d), like 72h; got {text!r}",
            code="invalid_setting",
        )
    return float(int(number) * _UNITS[unit])


def render(image: Any, *, side: int, blur: float, grey: bool) -> bytes:
    """A JPEG of a decoded image (PIL, RGB) made for a reviewer's eyes: at most `side` pixels
    on its longer side, blurred (Gaussian radius `blur`, relative to a 256-pixel preview) and
    optionally grey. The upload itself never leaves the server."""
    from PIL import ImageFilter

    shown = image.copy()
    shown.thumbnail((side, side))
    if grey:
        shown = shown.convert("L")
    if blur > 0:
        shown = shown.filter(ImageFilter.GaussianBlur(blur * max(shown.size) / PREVIEW_SIDE))
    out = io.BytesIO()
    shown.save(out, "JPEG", quality=80)
    return out.getvalue()


#: What a reviewer sees unless they or their tenant chose otherwise: a blurred, grey preview,
#: and a reveal that must be confirmed (a second click).
DEFAULT_SETTINGS: Final = {"blur": 12.0, "grey": True, "confirm_reveal": True}


def check_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Reviewer settings: any of `blur` (4-40), `grey` and `confirm_reveal` (true or false)."""
    unknown = sorted(set(values) - set(DEFAULT_SETTINGS))
    if unknown:
        raise InputError(
            f"review settings are blur, grey and confirm_reveal; got {unknown[0]!r}",
            code="invalid_settings",
        )
    out: dict[str, Any] = {}
    if "blur" in values:
        blur = values["blur"]
        if isinstance(blur, bool) or not isinstance(blur, int | float) or not 4 <= blur <= 40:
            raise InputError("blur is a number from 4 to 40", code="invalid_settings")
        out["blur"] = float(blur)
    for name in ("grey", "confirm_reveal"):
        if name in values:
            if not isinstance(values[name], bool):
                raise InputError(f"{name} is true or false", code="invalid_settings")
            out[name] = values[name]
    return out
