"""Signal types are plug-ins: built-ins register like any outside type would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from counterfake import SignalError, SignalType, hash_bytes, register
from counterfake.media import DecodedImage
from counterfake.signals import _REGISTRY, get_signal_type, signal_types
from tests.images import encode, photo_like


def test_builtins_are_registered() -> None:
    assert {"pdq", "md5", "sha256"} <= set(signal_types())
    assert get_signal_type("pdq").kind == "hamming256"
    assert get_signal_type("md5").kind == "exact"


def test_unknown_type_has_its_own_code() -> None:
    with pytest.raises(SignalError) as info:
        get_signal_type("nope")
    assert info.value.code == "unknown_signal_type"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [("md5", "A" * 32, "a" * 31), ("sha256", "0" * 64, "z" * 64), ("pdq", "F" * 64, "f")],
)
def test_normalize_canonicalises_and_refuses(name: str, good: str, bad: str) -> None:
    signal_type = get_signal_type(name)
    assert signal_type.normalize(good) == good.lower()
    with pytest.raises(SignalError):
        signal_type.normalize(bad)


def test_digests_are_of_the_bytes() -> None:
    data = encode(photo_like(64, 64), "PNG")
    import hashlib

    result = hash_bytes(data)
    assert result.signals["md5"] == hashlib.md5(data).hexdigest()
    assert result.signals["sha256"] == hashlib.sha256(data).hexdigest()


class _MeanLuma(SignalType):
    name = "mean_luma"
    kind: ClassVar = "exact"

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        return str(int(image.luma.mean())), None

    def normalize(self, value: str) -> str:
        if not value.isdigit():
            raise SignalError("digits only")
        return value

    def distance(self, a: str, b: str) -> int:
        return abs(int(a) - int(b))


@pytest.fixture
def plugin() -> Iterator[None]:
    register(_MeanLuma())
    yield
    del _REGISTRY["mean_luma"]


def test_a_plugin_is_computed_by_hashing(plugin: None) -> None:
    result = hash_bytes(encode(photo_like(64, 64), "PNG"))
    assert result.signals["mean_luma"].isdigit()
