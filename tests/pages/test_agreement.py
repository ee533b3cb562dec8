"""The page's signatures against Python's, on real photos: PDQ within 8 bits of `counterfake
hash`, and derivatives found by the Python verifier as often as with signatures made by
`counterfake protect` (within 2 points of recall), with no false match on unrelated photos.
The whole corpus is measured by benchmarks/protect_page.py; this is a fixed sample of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from counterfake.derivatives import verify
from counterfake.hashing import hash_bytes
from counterfake.protect import ProtectedPhoto, protect_bytes, read_signatures
from counterfake.signals import PdqHash
from counterfake.signals.keypoints import Features, image_features
from tests.derivative_images import reencode, replace_region

from ..service.server import Server
from .conftest import open_page, protect_in_page

FRACTIONS = (0.2, 0.4, 0.6)


@pytest.fixture(scope="module")
def sample(corpus_dir: Path) -> list[Path]:
    return sorted(corpus_dir.glob("*.jpg"))[100:140]


@pytest.fixture(scope="module")
def page_photos(browser, page_server: Server, sample: list[Path]) -> dict[str, ProtectedPhoto]:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect")
    run = protect_in_page(page, sample)
    photos = [p for p in read_signatures(run.text.splitlines()) if isinstance(p, ProtectedPhoto)]
    return {p.name: p for p in photos if p.name}


def test_pdq_from_the_page_is_within_8_bits_of_counterfake_hash(
    page_photos: dict[str, ProtectedPhoto], sample: list[Path]
) -> None:
    assert len(page_photos) == len(sample)
    distances = {
        path.name: PdqHash.from_hex(page_photos[path.name].pdq)
        - PdqHash.from_hex(hash_bytes(path.read_bytes()).signals["pdq"])
        for path in sample
    }
    within = sum(d <= 8 for d in distances.values())
    assert within >= 0.99 * len(sample), distances


def test_page_signatures_find_derivatives_as_python_ones_do_and_nothing_else(
    page_photos: dict[str, ProtectedPhoto], sample: list[Path], corpus_dir: Path
) -> None:
    protected, others = sample[:20], sample[20:]
    sources = {
        "page": [Features.from_bytes(page_photos[p.name].signature) for p in protected],
        "python": [Features.from_bytes(protect_bytes(p.read_bytes()).signature) for p in protected],
    }
    found = {"page": 0, "python": 0}
    trials = 0
    for number, path in enumerate(protected):
        photo = Image.open(path).convert("RGB")
        other = Image.open(others[number]).convert("RGB")
        for fraction in FRACTIONS:
            edited, _ = replace_region(photo, other, fraction)
            query = image_features(reencode(edited), query=True)
            trials += 1
            for kind in found:
                found[kind] += verify(sources[kind][number], query) is not None
    for path in sorted(corpus_dir.glob("*.jpg"))[200:215]:
        query = image_features(path.read_bytes(), query=True)
        for kind, signatures in sources.items():
            assert not any(verify(s, query) for s in signatures), (kind, path.name)
    assert found["python"] >= 0.8 * trials  # edits that Python signatures survive
    assert found["page"] >= found["python"] - max(1, 0.02 * trials), found
