"""Fuzz one parser with atheris (coverage-guided, libFuzzer): `make fuzz` runs each.

    python -m tests.fuzz.run TARGET [libFuzzer options] [CORPUS_DIR ...]

A finding is written as `crash-*` / `timeout-*` in the working folder; copy it into
`tests/fuzz/seeds/TARGET/` once fixed, where every test run replays it.
"""

from __future__ import annotations

import importlib
import sys

import atheris

#: The modules the targets call into (the targets import them lazily).
PARSERS = (
    "counterfake.exchange.formats",
    "counterfake.exchange.ncmec",
    "counterfake.exchange.stopncii",
    "counterfake.hashing",
    "counterfake.intake",
    "counterfake.investigate.archive",
    "counterfake.protect",
    "counterfake.service.app",
    "counterfake.service.intake",
    "counterfake.service.omm",
    "counterfake.service.review",
    "counterfake.service.routes",
    "counterfake.service.uploads",
    "counterfake.signals.keypoints",
    "defusedxml.ElementTree",
)

# Numba compiles the index's kernels from their bytecode, which instrumentation would change.
importlib.import_module("counterfake.index._kernels")

# Our parsers and the Python parts of those we build on (Pillow's format plugins, defusedxml)
# are imported here, under instrumentation, so that coverage guides the fuzzer through them.
with atheris.instrument_imports(include=["counterfake", "PIL", "defusedxml"]):
    from PIL import Image

    Image.init()  # every format plugin, now rather than at the first open
    for parser in PARSERS:
        importlib.import_module(parser)
    from tests.fuzz.targets import TARGETS, run


def main() -> None:
    target = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if target not in TARGETS:
        raise SystemExit(f"targets: {', '.join(TARGETS)}")
    atheris.Setup(sys.argv, lambda data: run(target, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
