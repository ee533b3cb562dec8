"""One exception tree with stable codes, so the CLI and the service map errors in one place.

    CounterfakeError                 .code, .message
    ├── InputError                   bad input from outside; the batch goes on
    │   ├── MediaError               image bytes we refuse to decode
    │   │     empty_input, input_too_large, unsupported_format, corrupt_image,
    │   │     image_too_large, too_many_frames
    │   ├── SignalError              invalid_signal, unknown_signal_type
    │   ├── FormatError              invalid_record (a bad line in an import file)
    │   ├── RejectedFileError        invalid_signature_file, empty_signature_file,
    │   │                            too_many_photos: a whole file refused, per line
    │   ├── FetchError               url_refused, url_fetch_failed (fetching an image by URL)
    │   └── FileInputError           file_not_found, unreadable_file
    ├── AccessError                  missing_key, invalid_key (401); forbidden,
    │                                url_fetch_disabled (403)
    ├── UnavailableError             busy: the service is at its hashing limit; retry
    │                                rate_limited (429): intake's per-day limits
    └── StoreError                   the store refused or failed
        ├── NotFoundError            bank_not_found, entry_not_found, intake_disabled,
        │                            unknown_withdrawal_code
        ├── ConflictError            bank_exists
        └── DatabaseError            database_error (driver errors, translated)
    UsageError                       programmer misuse; never caught as a CounterfakeError

The codes are a compatibility promise: clients branch on `.code`, never on message text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessError",
    "ConflictError",
    "CounterfakeError",
    "DatabaseError",
    "FetchError",
    "FileInputError",
    "FormatError",
    "InputError",
    "MediaError",
    "NotFoundError",
    "RejectedFileError",
    "SignalError",
    "StoreError",
    "UnavailableError",
    "UsageError",
]


class CounterfakeError(Exception):
    """Root of every error a caller is expected to handle."""

    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled whole (class, code, context) when it crosses a process: a hashing pool, Dask.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _rebuild(cls: type[CounterfakeError], message: str, state: dict[str, object]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InputError(CounterfakeError):
    default_code = "invalid_input"


class MediaError(InputError):
    default_code = "corrupt_image"


class SignalError(InputError):
    default_code = "invalid_signal"


class FormatError(InputError):
    default_code = "invalid_record"

    def __init__(
        self, message: str, *, code: str | None = None, path: str | None = None, line: int = 0
    ) -> None:
        super().__init__(message, code=code, path=path)
        self.line = line


class RejectedFileError(InputError):
    """A file refused whole (nothing of it stored), with each bad line's own error."""

    default_code = "invalid_signature_file"

    def __init__(
        self, message: str, *, code: str | None = None, lines: list[FormatError] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.lines = lines or []

    def to_dict(self) -> dict[str, Any]:
        lines = [{"line": e.line, "code": e.code, "message": e.message} for e in self.lines]
        return {**super().to_dict(), "lines": lines}


class FetchError(InputError):
    default_code = "url_fetch_failed"


class FileInputError(InputError):
    default_code = "unreadable_file"


class AccessError(CounterfakeError):
    """The caller is not who it must be, or may not do this."""

    default_code = "forbidden"


class UnavailableError(CounterfakeError):
    """Temporarily unable to serve: the same request later may succeed."""

    default_code = "busy"


class StoreError(CounterfakeError):
    default_code = "store_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        bank: str | None = None,
        entry_id: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.bank = bank
        self.entry_id = entry_id


class NotFoundError(StoreError):
    default_code = "not_found"


class ConflictError(StoreError):
    default_code = "conflict"


class DatabaseError(StoreError):
    default_code = "database_error"


class UsageError(Exception):
    """Raised for misuse of the API (a bug in the caller), kept outside CounterfakeError."""
