"""HMA's own API tests, replayed against a real `counterfake serve`: the calls and expectations
of OpenMediaMatch/tests/test_api_banks.py and test_match_api.py (facebook/ThreatExchange at
baefb4ed), where Counterfake follows HMA. The deliberate differences (the README lists them)
are asserted as such, so that a change to either side shows here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server import Server

# PdqSignal.get_examples()[0] in python-threatexchange.
PDQ_EXAMPLE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@pytest.fixture(scope="module")
def hma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home: Path = tmp_path_factory.mktemp("hma-expectations")
    server = Server(home, env={"COUNTERFAKE_HMA_ANONYMOUS_TENANT": "hma"})
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_banks_create_update_delete(hma: httpx.Client) -> None:
    created = hma.post("/c/banks", json={"name": "MY_TEST_BANK_01"})
    assert created.status_code == 201
    assert created.json() == {"matching_enabled_ratio": 1.0, "name": "MY_TEST_BANK_01"}
    assert created.json() in hma.get("/c/banks").json()

    assert (
        hma.put("/c/bank/MY_TEST_BANK_01", json={"enabled": False}).json()["matching_enabled_ratio"]
        == 0
    )
    updated = hma.put("/c/bank/MY_TEST_BANK_01", json={"enabled_ratio": 0.5})
    assert updated.status_code == 200 and updated.json()["matching_enabled_ratio"] == 0.5
    assert hma.get("/c/bank/MY_TEST_BANK_01").json() == {
        "name": "MY_TEST_BANK_01",
        "matching_enabled_ratio": 0.5,
    }
    # Difference: HMA renames a bank on PUT {"name"}; Counterfake refuses (400, HMA's style).
    renamed = hma.put("/c/bank/MY_TEST_BANK_01", json={"name": "MY_TEST_BANK_RENAMED"})
    assert renamed.status_code == 400 and "message" in renamed.json()
    # Difference: HMA refuses lower-case names and a leading digit; Counterfake takes them.
    assert hma.post("/c/banks", json={"name": "01_TEST_BANK"}).status_code == 201

    assert hma.delete("/c/bank/MY_TEST_BANK_01").status_code == 200
    assert hma.delete("/c/bank/MY_TEST_BANK_01").status_code == 200  # "should succeed"


def test_bank_content_get_and_404s(hma: httpx.Client) -> None:
    assert hma.get("/c/bank/TEST_BANK_GET/content/1").status_code == 404  # no bank
    assert hma.post("/c/banks", json={"name": "TEST_BANK_GET"}).status_code == 201
    assert hma.get("/c/bank/TEST_BANK_GET/content/1").status_code == 404  # no content
    added = hma.post("/c/bank/TEST_BANK_GET/signal", json={"pdq": PDQ_EXAMPLE})
    content_id = added.json()["id"]
    got = hma.get(f"/c/bank/TEST_BANK_GET/content/{content_id}")
    assert got.status_code == 200 and got.json()["id"] == content_id
    # Difference: HMA disables until a future time; Counterfake takes 0 or 1 only (400).
    later = hma.put(f"/c/bank/TEST_BANK_GET/content/{content_id}", json={"disable_until_ts": 2**40})
    assert later.status_code == 400


def test_lookups_with_bank_filters(hma: httpx.Client) -> None:
    for bank in ("BANK_A", "BANK_B", "BANK_C"):
        assert hma.post("/c/banks", json={"name": bank}).status_code == 201
        assert hma.post(f"/c/bank/{bank}/signal", json={"pdq": PDQ_EXAMPLE}).status_code == 200
    query = {"signal": PDQ_EXAMPLE, "signal_type": "pdq"}

    def raw(**extra: str) -> list[object]:
        response = hma.get("/m/raw_lookup", params={**query, **extra})
        assert response.status_code == 200
        matches: list[object] = response.json()["matches"]
        return matches

    assert len(raw(banks="BANK_A,BANK_B,BANK_C")) == 3
    assert len(raw(banks="BANK_A")) == 1
    assert len(raw(banks="BANK_A,BANK_B")) == 2
    assert len(raw(banks="NON_EXISTENT_BANK")) == 0
    with_distance = raw(banks="BANK_A,BANK_B", include_distance="true")
    assert len(with_distance) == 2
    assert all(set(m) == {"bank_content_id", "distance"} for m in with_distance)  # type: ignore[arg-type]

    everything = hma.get("/m/lookup", params=query).json()
    assert {"BANK_A", "BANK_B", "BANK_C"} <= set(everything)
    only_a = hma.get("/m/lookup", params={**query, "banks": "BANK_A"}).json()
    assert list(only_a) == ["BANK_A"] and len(only_a["BANK_A"]) > 0
    assert all({"bank_content_id", "distance"} == set(m) for m in only_a["BANK_A"])


def test_compare_and_status(hma: httpx.Client) -> None:
    compared = hma.post("/m/compare", json={"pdq": [PDQ_EXAMPLE, PDQ_EXAMPLE]})
    assert compared.json() == {"pdq": [True, {"distance": 0}]}
    bad = hma.post("/m/compare", json={"pdq": [PDQ_EXAMPLE]})
    assert bad.status_code == 400 and "message" in bad.json()
    assert hma.get("/status/live").status_code == 200
    assert {"pdq"} <= {t["name"] for t in hma.get("/c/signal_type").json()}
    assert hma.get("/c/content_type").json() == [{"name": "photo", "enabled": True}]
