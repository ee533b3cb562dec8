"""One real service (SQLite) shared by the tests of a module, with keys for two tenants."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from counterfake import Store
from counterfake.store import SCOPES

from .server import Server


@dataclasses.dataclass
class Service:
    server: Server
    #: keys["acme"]["curate"]: a key of tenant acme with only that scope.
    keys: dict[str, dict[str, str]]
    key_ids: dict[str, dict[str, str]]

    def client(self, tenant: str | None = None, scope: str | None = None) -> httpx.Client:
        key = self.keys[tenant][scope] if tenant and scope else None
        return self.server.client(key)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home: Path = tmp_path_factory.mktemp("service-home")
    keys: dict[str, dict[str, str]] = {}
    key_ids: dict[str, dict[str, str]] = {}
    with Store.open(f"sqlite:///{home / 'counterfake.db'}") as store:
        for tenant in ("acme", "beta"):
            for scope in SCOPES:
                key, secret = store.keys.create(tenant, [scope], name=f"{tenant}-{scope}")
                keys.setdefault(tenant, {})[scope] = secret
                key_ids.setdefault(tenant, {})[scope] = key.key_id
    with Server(home) as server:
        yield Service(server, keys, key_ids)
