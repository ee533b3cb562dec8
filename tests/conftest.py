"""Shared fixtures: real files, a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from counterfake import Store

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COUNTERFAKE_SHARED", REPO.parent / "shared"))
POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERFAKE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = SHARED / "corpus" / "photos"
    if not path.is_dir():
        pytest.skip(f"benign photo corpus not found at {path}")
    return path


@pytest.fixture(scope="session")
def pdq_vectors_dir() -> Path:
    path = SHARED / "pdq-vectors"
    if not (path / "expected.tsv").is_file():
        pytest.skip(f"PDQ reference vectors not found at {path}")
    return path


_pg_reason: str | None = None


def _postgres_admin() -> sa.Engine:
    global _pg_reason
    if _pg_reason:
        pytest.skip(_pg_reason)
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        _pg_reason = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc.__class__.__name__}"
        print(f"\nSKIPPING PostgreSQL tests: {_pg_reason}")
        pytest.skip(_pg_reason)
    return engine


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    admin = _postgres_admin()
    name = f"counterfake_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    pg: str = request.getfixturevalue("postgres_url")
    return pg


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An empty store on each backend: the contract both must keep."""
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private COUNTERFAKE_HOME (SQLite default) for CLI tests."""
    path = tmp_path / "home"
    monkeypatch.setenv("COUNTERFAKE_HOME", str(path))
    monkeypatch.delenv("COUNTERFAKE_DATABASE_URL", raising=False)
    monkeypatch.delenv("COUNTERFAKE_CONFIG", raising=False)
    return path
