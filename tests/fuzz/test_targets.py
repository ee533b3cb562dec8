"""Every parser of untrusted input takes its seeds (and every finding kept as a regression)
or refuses them with a coded error, and so it does for a fixed set of mutations of them: the
short pass each test run makes. `make fuzz` runs the long, coverage-guided one (atheris)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .targets import SEEDS, TARGETS, run

ROOT = Path(__file__).resolve().parents[2]


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(max(1, len(out)))
        if kind == 0 and out:  # flip bytes
            for i in range(rng.randint(1, 8)):
                out[(at + i) % len(out)] = rng.randrange(256)
        elif kind == 1:  # truncate
            del out[at:]
        elif kind == 2:  # repeat a chunk
            chunk = out[at : at + rng.randint(1, 64)]
            out[at:at] = chunk * rng.randint(2, 20)
        elif kind == 3:  # insert an interesting value
            out[at:at] = rng.choice([b"\x00", b"\xff" * 4, b"-1", b"9" * 30, b'"', b"{", b"<"])
        else:  # splice with another seed
            other = rng.choice(seeds)
            out = out[:at] + other[rng.randrange(max(1, len(other))) :]
    return bytes(out)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_is_taken_or_refused_with_a_code(target: str) -> None:
    seeds = sorted((SEEDS / target).iterdir())
    assert seeds, f"no seeds for {target}"
    for seed in seeds:
        run(target, seed.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutated_seeds_are_taken_or_refused_with_a_code_in_time(target: str) -> None:
    seeds = [p.read_bytes() for p in sorted((SEEDS / target).iterdir())]
    rng = random.Random(f"counterfake-{target}")
    slowest = 0.0
    for _ in range(300):
        data = _mutate(rng, rng.choice(seeds), seeds)
        started = time.perf_counter()
        try:
            run(target, data)
        except Exception as exc:  # a finding: say which input
            raise AssertionError(f"{target} raised {exc!r} on {data[:200]!r}") from exc
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 5


def test_the_coverage_guided_runner_runs(tmp_path: Path) -> None:
    """What `make fuzz` runs, briefly: atheris over one parser's seeds, nothing found."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS / "import_lines", corpus)
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "import_lines", "-runs=3000", str(corpus)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 3000 runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))
