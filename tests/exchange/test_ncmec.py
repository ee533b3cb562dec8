"""The `ncmec` exchange type against a local server that implements NCMEC's documented
hash-sharing API v2 (the real one is not reachable from here, so this is a stand-in; that
python-threatexchange's own NCMEC client reads the stand-in's XML is checked too), and from a
file of the same XML. PDQ and MD5 fingerprints arrive; a tombstone withdraws its entry."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from counterfake import Counterfake
from counterfake.errors import CounterfakeError

USER, PASSWORD = "platform", "s3cret"
NS = "https://hashsharing.ncmec.org/hashsharing/v2"


def _pdq(n: int) -> str:
    return hashlib.sha256(f"pdq{n}".encode()).hexdigest()


def _md5(n: int) -> str:
    return hashlib.md5(f"md5{n}".encode()).hexdigest()


def _image(n: int) -> str:
    return (
        f"<image><id>image{n}</id><member id='7'>Example ESP</member>"
        f"<timestamp>2024-01-0{1 + n % 8}T00:00:00Z</timestamp><classification>A1</classification>"
        f"<fingerprints><md5>{_md5(n)}</md5><pdq>{_pdq(n)}</pdq><pdna>AAAA</pdna></fingerprints>"
        "</image>"
    )


PAGE_ONE = (
    f"<queryResult xmlns='{NS}'><images count='3' maxTimestamp='2024-01-05T00:00:00Z'>"
    + _image(1)
    + _image(2)
    + _image(3)
    + "</images><videos count='1' maxTimestamp='2024-01-04T00:00:00Z'>"
    "<video><id>video1</id><member id='7'>Example ESP</member>"
    f"<fingerprints><md5>{_md5(9)}</md5><tmk_pdqf>xx</tmk_pdqf></fingerprints></video></videos>"
    "<paging><next>/v2/entries?from=2024-01-01T00%3A00%3A00Z&amp;to=X&amp;start=4&amp;size=3"
    "&amp;max=6</next></paging></queryResult>"
)
PAGE_TWO = (
    f"<queryResult xmlns='{NS}'><images count='2' maxTimestamp='2024-01-08T00:00:00Z'>"
    + _image(4)
    + "<deletedImage><id>image2</id><member id='7'>Example ESP</member>"
    "<timestamp>2024-01-08T00:00:00Z</timestamp></deletedImage>"
    "</images><paging/></queryResult>"
)


class _NcmecStandIn(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.calls.append(self.path)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, b"<error>unauthorized</error>")
            return
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
        if not self.path.startswith("/v2/entries"):
            self._answer(404, b"<error/>")
            return
        self._answer(200, (PAGE_TWO if "start" in query else PAGE_ONE).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    _NcmecStandIn.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NcmecStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_stand_in_speaks_what_python_threatexchange_reads(stand_in: str) -> None:
    from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEnvironment, NCMECHashAPI

    api = NCMECHashAPI(USER, PASSWORD, NCMECEnvironment.test_Industry)
    api._base_url = stand_in  # the stand-in in place of NCMEC's test environment
    first = api.get_entries(start_timestamp=0, end_timestamp=2_000_000_000)
    assert [u.id for u in first.updates] == ["image1", "image2", "image3", "video1"]
    assert first.updates[0].fingerprints["pdq"] == _pdq(1)
    second = api.get_entries(start_timestamp=0, end_timestamp=0, next_=first.next)
    assert [(u.id, u.deleted) for u in second.updates] == [("image4", False), ("image2", True)]


def _matched(core: Counterfake, signal: str, value: str) -> bool:
    return bool(core.lookup_signal(signal, value))


def test_against_a_local_ncmec_stand_in_fingerprints_arrive_and_tombstones_withdraw(
    stand_in: str, core: Counterfake
) -> None:
    core.add_exchange(
        "ncmec", type="ncmec", bank="ncmec", url=stand_in, credential=f"{USER}:{PASSWORD}"
    )
    status = core.fetch_exchange("ncmec")
    assert status.last_error is None
    assert len(_NcmecStandIn.calls) == 2  # the first range's page, then its next link
    assert _matched(core, "pdq", _pdq(1)) and _matched(core, "md5", _md5(1))
    assert _matched(core, "pdq", _pdq(4)) and _matched(core, "md5", _md5(9))
    assert not _matched(core, "pdq", _pdq(2)) and not _matched(core, "md5", _md5(2))
    kinds = {e.signal_type for e in core.store.iter_entries("ncmec")}
    assert kinds == {"pdq", "md5"}  # PDNA and TMK fingerprints are skipped
    newest = int(status.cursor)
    assert newest >= 1_704_672_000  # 2024-01-08, the newest maxTimestamp


def test_a_file_of_ncmec_xml_is_read_the_same_way(core: Counterfake, tmp_path: Path) -> None:
    xml = tmp_path / "ncmec.xml"
    xml.write_text(PAGE_ONE)
    core.add_exchange("file", type="ncmec", bank="ncmec", path=str(xml))
    core.fetch_exchange("file")
    assert _matched(core, "pdq", _pdq(2))
    xml.write_text(PAGE_TWO)
    core.fetch_exchange("file")
    assert not _matched(core, "pdq", _pdq(2))  # its tombstone
    assert _matched(core, "pdq", _pdq(1))


@pytest.mark.parametrize(
    "body",
    [
        "<queryResult><images><image><id>x</id></image></images></queryResult>",  # no member
        "<queryResult><images><image><id>x</id><member id='1'/><fingerprints>"
        "<pdq>not-a-hash</pdq></fingerprints></image></images></queryResult>",
        "<!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]><queryResult>&b;</queryResult>",
        "not xml at all",
    ],
)
def test_bad_or_hostile_xml_is_refused_whole(core: Counterfake, tmp_path: Path, body: str) -> None:
    xml = tmp_path / "bad.xml"
    xml.write_text(body)
    core.add_exchange("bad", type="ncmec", bank="ncmec", path=str(xml))
    with pytest.raises(CounterfakeError) as raised:
        core.fetch_exchange("bad")
    assert raised.value.code == "exchange_bad_page"
    assert core.bank("ncmec").active_entries == 0


def test_a_wrong_password_is_refused(stand_in: str, core: Counterfake) -> None:
    core.add_exchange("wrong", type="ncmec", bank="ncmec", url=stand_in, credential="a:b")
    with pytest.raises(CounterfakeError) as raised:
        core.fetch_exchange("wrong")
    assert raised.value.code == "exchange_refused"


def test_only_the_chosen_members_entries_are_taken(core: Counterfake, tmp_path: Path) -> None:
    xml = tmp_path / "ncmec.xml"
    xml.write_text(
        PAGE_ONE.replace(
            "<image><id>image3</id><member id='7'>", "<image><id>image3</id><member id='8'>"
        )
    )
    core.add_exchange("only8", type="ncmec", bank="ncmec", path=str(xml), only_members=[8])
    core.fetch_exchange("only8")
    assert _matched(core, "pdq", _pdq(3))
    assert not _matched(core, "pdq", _pdq(1))  # member 7's
    assert core.exchange("only8").config["only_esp_ids"] == [8]
