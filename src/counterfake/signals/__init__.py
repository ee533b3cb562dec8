"""Signal types as plug-ins: each knows its name, how to compute, parse and compare itself.

Built-in PDQ and digests register exactly as an outside plug-in would, through `register`;
outside packages are found through the `counterfake.signals` entry-point group. Matching asks
only for `kind`: "hamming256" values go to a Hamming index (searched within the type's
`threshold`), "exact" to a set, "local" to the derivative shortlist.
"""

from __future__ import annotations

import string
from typing import ClassVar, Literal

from ..errors import SignalError
from ..media import DecodedImage, Limits, decode
from . import digests
from .pdq import DIHEDRAL_NAMES, PDQ_THRESHOLD, PdqHash, pdq, pdq_dihedral, pdq_reference

__all__ = [
    "DIHEDRAL_NAMES",
    "ENTRY_POINT_GROUP",
    "PDQ_THRESHOLD",
    "Kind",
    "PdqHash",
    "SignalType",
    "get_signal_type",
    "pdq",
    "pdq_dihedral",
    "pdq_reference",
    "register",
    "signal_types",
]

Kind = Literal["hamming256", "exact", "local"]


class SignalType:
    """Extension point: subclass, set `name` and `kind`, implement the three methods."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    #: Computed for every image by `hash_bytes`; False for signals made on request.
    per_image: ClassVar[bool] = True
    #: Hamming kinds: the largest distance that is a match (PDQ's comes from its bank).
    threshold: ClassVar[int] = 0

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        """The serialised value and, where the type has one, its quality (0-100)."""
        raise NotImplementedError

    def normalize(self, value: str) -> str:
        """Return the canonical form of a serialised value, or raise SignalError."""
        raise NotImplementedError

    def distance(self, a: str, b: str) -> int:
        raise NotImplementedError


class _HexDigest(SignalType):
    kind: ClassVar[Kind] = "exact"
    digits: ClassVar[int]

    def normalize(self, value: str) -> str:
        text = value.strip().lower()
        if len(text) != self.digits or any(c not in string.hexdigits for c in text):
            raise SignalError(
                f"{self.name} is {self.digits} hexadecimal digits, not {value[:80]!r}"
            )
        return text

    def distance(self, a: str, b: str) -> int:
        return 0 if a == b else 1


class Md5Signal(_HexDigest):
    name = "md5"
    digits = 32

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        return digests.md5(data), None


class Sha256Signal(_HexDigest):
    name = "sha256"
    digits = 64

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        return digests.sha256(data), None


class PdqSignal(SignalType):
    name = "pdq"
    kind: ClassVar[Kind] = "hamming256"
    threshold: ClassVar[int] = PDQ_THRESHOLD

    #: Below this quality the hash of a near-flat image swings with rounding, so we decode
    #: again with PDQ's exact luma to stay within tolerance of other implementations.
    exact_below_quality: ClassVar[int] = 50

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        value = pdq(image)
        if value.quality is not None and value.quality < self.exact_below_quality:
            # The image already passed the caller's limits; accept exactly it again.
            accepted = Limits(len(data), image.width * image.height, 2**31)
            value = pdq(decode(data, limits=accepted, exact_luma=True))
        return value.hex, value.quality

    def normalize(self, value: str) -> str:
        return PdqHash.from_hex(value).hex

    def distance(self, a: str, b: str) -> int:
        return PdqHash.from_hex(a) - PdqHash.from_hex(b)


class DerivativeSignal(_HexDigest):
    """A protected photo's local-feature signature (signals.keypoints), made by `counterfake
    protect`. The entry's value is the signature's SHA-256; the signature is stored beside."""

    name = "derivative"
    kind: ClassVar[Kind] = "local"
    per_image: ClassVar[bool] = False
    digits = 64

    def compute(self, data: bytes, image: DecodedImage) -> tuple[str, int | None]:
        raise SignalError("derivative signatures are made by `counterfake protect`")


_REGISTRY: dict[str, SignalType] = {}


def register(signal_type: SignalType) -> None:
    """Make a signal type known to hashing, the store and matching."""
    _REGISTRY[signal_type.name] = signal_type


def get_signal_type(name: str) -> SignalType:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SignalError(
            f"unknown signal type {name!r}; known: {', '.join(sorted(_REGISTRY))}",
            code="unknown_signal_type",
        ) from None


def signal_types(*, per_image: bool = False) -> dict[str, SignalType]:
    """Registered signal types; `per_image=True`: only those every image is hashed with."""
    return {n: t for n, t in _REGISTRY.items() if t.per_image or not per_image}


#: Outside packages register signal types under this entry-point group: the object named is a
#: SignalType subclass or instance, e.g. `ahash = my_package.signals:AverageHash`.
ENTRY_POINT_GROUP = "counterfake.signals"


def _load_plugins() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            signal_type = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:  # a broken plug-in must not stop hashing
            import logging

            logging.getLogger("counterfake").warning(
                "signal plug-in %s could not be loaded: %s", point.name, exc
            )
            continue
        if isinstance(signal_type, SignalType) and signal_type.name not in _REGISTRY:
            register(signal_type)


for _builtin in (PdqSignal(), Md5Signal(), Sha256Signal(), DerivativeSignal()):
    register(_builtin)
_load_plugins()
