"""Every registered signal type passes the same properties, and a signal type from an outside
package (the toy `ahash` in tests/plugins, found through the `counterfake.signals` entry-point
group) is hashed, stored, indexed, searched and exported like a built-in one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from counterfake import Counterfake, NewEntry, SignalError, load_settings
from counterfake.media import decode
from counterfake.signals import _REGISTRY, SignalType, register, signal_types
from tests.images import encode, photo_like
from tests.service.server import Server

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def _toy() -> type[SignalType]:
    """The toy plug-in's class, loaded from its file (this process's registry is left alone:
    only the processes started below find it through its entry point)."""
    path = PLUGINS / "counterfake_toy_signal" / "__init__.py"
    spec = importlib.util.spec_from_file_location("counterfake_toy_signal", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    toy: type[SignalType] = module.AverageHash
    return toy


AverageHash = _toy()

COUNTERFAKE = Path(sys.executable).with_name("counterfake")
TYPES = [*signal_types().values(), AverageHash()]


def _value(signal_type: SignalType, seed: int = 0) -> str:
    if not signal_type.per_image:  # made elsewhere (derivative signatures): a valid value
        return f"{seed:064x}"
    data = encode(photo_like(320, 240, seed=seed))
    return signal_type.compute(data, decode(data))[0]


@pytest.mark.parametrize("signal_type", TYPES, ids=lambda t: t.name)
def test_parse_format_round_trip_and_distance(signal_type: SignalType) -> None:
    a, b = _value(signal_type, 1), _value(signal_type, 2)
    assert signal_type.normalize(a) == a
    assert signal_type.normalize(a.upper()) == a
    assert signal_type.distance(a, a) == 0
    assert signal_type.distance(a, b) == signal_type.distance(b, a) > 0
    with pytest.raises(SignalError):
        signal_type.normalize("not a value")


@pytest.mark.parametrize(
    "signal_type", [t for t in TYPES if t.kind == "hamming256"], ids=lambda t: t.name
)
def test_a_hamming_type_matches_within_its_threshold_only(
    signal_type: SignalType, tmp_path: Path
) -> None:
    registered = signal_type.name in _REGISTRY
    register(signal_type)
    try:
        value = _value(signal_type, 3)
        bits = int(value, 16)

        def flipped(count: int) -> str:
            return format(bits ^ ((1 << count) - 1), "064x")

        with Counterfake(load_settings(home=tmp_path)) as app:
            app.create_bank("b", threshold=signal_type.threshold)
            app.add_signals("b", [NewEntry(signal_type.name, value)])
            threshold = signal_type.threshold
            assert [
                m.distance for m in app.lookup_signal(signal_type.name, flipped(threshold))
            ] == [threshold]
            assert app.lookup_signal(signal_type.name, flipped(threshold + 1)) == []
    finally:
        if not registered:
            del _REGISTRY[signal_type.name]


# the toy plug-in from outside, end to end ---------------------------------------------------


@pytest.fixture
def plugin_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    env["COUNTERFAKE_HOME"] = str(tmp_path / "home")
    yield env


def _cli(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(COUNTERFAKE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_an_outside_signal_type_works_through_the_cli(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    photo, other = tmp_path / "photo.jpg", tmp_path / "other.jpg"
    photo.write_bytes(encode(photo_like(640, 480, seed=5)))
    other.write_bytes(encode(photo_like(640, 480, seed=6)))
    (hashed,) = _cli(plugin_env, "hash", "--json", str(photo))
    ahash = str(hashed["ahash"])
    assert AverageHash().normalize(ahash) == ahash
    # A bank that holds only the plug-in's value: a match can come from nothing else.
    (tmp_path / "list.txt").write_text(f"ahash {ahash}\n")
    _cli(plugin_env, "bank", "create", "toy")
    added = _cli(plugin_env, "bank", "add", "--json", "toy", "--hashes", str(tmp_path / "list.txt"))
    assert [a["signal"] for a in added] == ["ahash"]
    (matched,) = _cli(plugin_env, "match", "--json", str(photo))
    assert [(m["signal"], m["distance"]) for m in matched["matches"]] == [("ahash", 0)]  # type: ignore[index]
    (unrelated,) = _cli(plugin_env, "match", "--json", str(other))
    assert unrelated["matches"] == []
    exported = subprocess.run(
        [str(COUNTERFAKE), "bank", "export", "toy"],
        env=plugin_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [json.loads(line)["signal"] for line in exported.splitlines()] == ["ahash"]
    # Where the plug-in is not installed, its entries are left out, and nothing breaks.
    without = {k: v for k, v in plugin_env.items() if k != "PYTHONPATH"}
    (alone,) = _cli(without, "match", "--json", str(photo))
    assert alone["matches"] == []


def test_an_outside_signal_type_works_through_http(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    data = encode(photo_like(640, 480, seed=7))
    home = Path(plugin_env["COUNTERFAKE_HOME"])
    _cli(plugin_env, "bank", "create", "toy")
    key = subprocess.run(
        [
            str(COUNTERFAKE),
            "key",
            "create",
            "--tenant",
            "default",
            "--scope",
            "curate",
            "--scope",
            "match",
        ],
        env=plugin_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    extra = {"PYTHONPATH": plugin_env["PYTHONPATH"]}
    with Server(home, env=extra) as server, server.client(key) as client:
        hashes = client.post("/v1/hash", content=data).json()
        ahash = hashes["ahash"]
        added = client.post("/v1/banks/toy/signals", json={"signal_type": "ahash", "value": ahash})
        assert added.status_code == 201, added.text
        near = format(int(ahash, 16) ^ 0b111, "064x")
        by_value = client.get("/v1/lookup", params={"signal_type": "ahash", "signal": near})
        assert [(m["signal"], m["distance"]) for m in by_value.json()["matches"]] == [("ahash", 3)]
        by_image = client.post("/v1/lookup", content=data).json()
        assert [m["signal"] for m in by_image["matches"]] == ["ahash"]
        sizes = client.get("/m/index/status").json()
        assert sizes["ahash"]["size"] == 1
