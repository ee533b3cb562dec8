"""The protect page's built files: HTML, its scripts and OpenCV.js, copied here from `web/`
by `make web` (node web/build.mjs), so that an installed Counterfake serves the page offline
and `counterfake page` can write it out as a static folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from ..errors import UnavailableError

__all__ = ["CONTENT_SECURITY_POLICY", "export_protect_page", "protect_page_file"]

_FOLDER: Final = Path(__file__).parent / "protect"

#: What the page may load and send: its own files, and requests to its own origin only.
#: 'unsafe-eval' is OpenCV.js compiling its WebAssembly; nothing is inline.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _built() -> Path:
    if not (_FOLDER / "index.html").is_file() or not (_FOLDER / "assets" / "opencv.js").is_file():
        raise UnavailableError(
            "the protect page is not built in this installation; run `make web`",
            code="page_not_built",
        )
    return _FOLDER


def protect_page_file(name: str) -> Path | None:
    """A file of the page by its path inside the page ("index.html", "assets/pdq.js"), or
    None: only files the build wrote are served, never a path outside the folder."""
    folder = _built()
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    return files.get(name)


def export_protect_page(destination: Path) -> Path:
    """Write the page as a static folder that works from any static host or from file://."""
    folder = _built()
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    return destination / "index.html"
