"""Settings: defaults, then the TOML file, then COUNTERFAKE_* variables, then overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfake import UsageError, load_settings


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"COUNTERFAKE_HOME": str(tmp_path)})
    assert settings.max_bytes == 50_000_000
    assert settings.max_pixels == 100_000_000
    assert settings.pdq_threshold == 31
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'counterfake.db'}"


def test_toml_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "counterfake.toml").write_text("max_pixels = 1000\nmax_bytes = 5\n")
    env = {"COUNTERFAKE_HOME": str(tmp_path), "COUNTERFAKE_MAX_BYTES": "7"}
    settings = load_settings(env)
    assert (settings.max_pixels, settings.max_bytes) == (1000, 7)
    assert load_settings(env, max_bytes=9).max_bytes == 9


def test_database_url_from_environment(tmp_path: Path) -> None:
    url = "postgresql+psycopg://u@h/db"
    env = {"COUNTERFAKE_HOME": str(tmp_path), "COUNTERFAKE_DATABASE_URL": url}
    assert load_settings(env).resolved_database_url == url


def test_bad_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_settings({"COUNTERFAKE_HOME": str(tmp_path), "COUNTERFAKE_MAX_BYTES": "lots"})
    (tmp_path / "counterfake.toml").write_text("colour = 'blue'\n")
    with pytest.raises(UsageError):
        load_settings({"COUNTERFAKE_HOME": str(tmp_path)})


def test_every_default_is_declared_once() -> None:
    """The settings table is the only place a default lives: Settings, Limits, the matcher and
    PDQ's threshold read it, and no other module writes the limits' numbers."""
    import ast
    from pathlib import Path

    from counterfake.matching import Matcher
    from counterfake.media import Limits
    from counterfake.settings import DEFAULTS, Settings
    from counterfake.signals import PDQ_THRESHOLD, get_signal_type

    settings = Settings(home=Path("."))
    assert all(getattr(settings, name) == value for name, value in DEFAULTS.items() if value)
    assert Limits() == Limits(DEFAULTS["max_bytes"], DEFAULTS["max_pixels"], DEFAULTS["max_frames"])
    assert PDQ_THRESHOLD == get_signal_type("pdq").threshold == DEFAULTS["pdq_threshold"]
    assert Matcher.__init__.__kwdefaults__["min_quality"] == DEFAULTS["pdq_min_quality"]
    distinctive = {v for v in DEFAULTS.values() if isinstance(v, int) and v >= 1_000_000}
    src = Path(__file__).resolve().parent.parent / "src" / "counterfake"
    for path in src.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in distinctive:
                raise AssertionError(f"{path.name}:{node.lineno} repeats a default: {node.value}")
