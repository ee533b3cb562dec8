"""Image bytes are never persisted: after uploads through every upload route, no file in the
data directory (database, WAL, temporary files) holds any part of any uploaded image."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
from PIL import Image

from counterfake import Store

from ..images import encode, photo_like
from .server import Server


def _images() -> list[bytes]:
    rng = np.random.default_rng(5)
    noisy = Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8), "RGB")
    return [
        encode(photo_like(640, 480, seed=101), quality=92),
        encode(photo_like(800, 600, seed=102), "PNG"),
        encode(noisy, quality=95),  # over 1 MB: Starlette would spool this to a temp file
    ]


def _windows(data: bytes) -> list[bytes]:
    """Distinctive 48-byte slices from the body of an image (headers are shared by many)."""
    return [data[i : i + 48] for i in range(len(data) // 5, len(data) - 48, len(data) // 5)]


def test_uploaded_image_bytes_are_found_nowhere_on_disk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    images = _images()
    assert len(images[2]) > 1_100_000
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        store.create_bank("retained", tenant="t")
        _, secret = store.keys.create("t", ["curate", "match"])
    # Temporary files go inside the data directory, so the search covers them too.
    env = {"TMPDIR": str(home / "tmp")}
    (home / "tmp").mkdir(parents=True)
    with Server(home, env=env) as server:
        client = server.client(secret)
        for data in images:
            as_file = {"files": {"photo": ("x.jpg", data, "application/octet-stream")}}
            raw = {"content": data, "headers": {"Content-Type": "application/octet-stream"}}
            for kwargs in (as_file, raw):
                for path in (
                    "/v1/banks/retained/content",
                    "/v1/lookup",
                    "/v1/lookup?review=1",  # a case opens; without a retention, no image stays
                    "/v1/hash",
                ):
                    assert client.post(path, **kwargs).status_code < 300  # type: ignore[arg-type]
            for path in ("/c/bank/retained/content", "/m/lookup", "/h/hash"):
                assert client.post(path, **as_file).status_code < 300  # type: ignore[arg-type]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # concurrent uploads too
            list(pool.map(lambda d: client.post("/v1/lookup", content=d), images * 4))
        assert client.get("/v1/banks/retained").json()["active_entries"] == 9

    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "counterfake.db" for p in files)
    for path in files:
        content = path.read_bytes()
        for number, data in enumerate(images):
            for window in _windows(data):
                assert window not in content, f"bytes of image {number} found in {path}"
