"""The protect page, in a real headless Chromium against the real server: photos are signed in
the page and nothing but the signature file ever leaves it; the file is the one `counterfake
protect` writes; intake and withdrawal work from the page; it speaks four languages, works
with the keyboard and on a phone, and also works opened from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from counterfake.cli import main
from counterfake.hashing import hash_bytes
from counterfake.protect import ProtectedPhoto, read_signatures
from counterfake.signals import PdqHash

from ..service.server import Server
from .conftest import Run, open_page, protect_in_page

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"ftypheic", b"ftypmif1")


@pytest.fixture(scope="module")
def chosen(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Photos as people have them: plain JPEGs, one stored sideways with an EXIF rotation,
    a PNG with transparency, a 12-megapixel photo, an iPhone HEIC and a file that is no photo."""
    folder = tmp_path_factory.mktemp("chosen")
    sources = sorted(corpus_dir.glob("*.jpg"))[60:66]
    files: dict[str, Path] = {}
    for source in sources[:3]:
        files[source.name] = folder / source.name
        files[source.name].write_bytes(source.read_bytes())
    upright = Image.open(sources[3]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = upright.rotate(90, expand=True)
    files["sideways.jpg"] = folder / "sideways.jpg"
    sideways.save(files["sideways.jpg"], "JPEG", quality=92, exif=exif.tobytes())
    files["upright.jpg"] = folder / "upright.jpg"
    upright.save(files["upright.jpg"], "JPEG", quality=92)
    rgba = Image.open(sources[4]).convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, rgba.width // 3, rgba.height))
    rgba.putalpha(alpha)
    files["transparent.png"] = folder / "transparent.png"
    rgba.save(files["transparent.png"], "PNG")
    files["twelve-mp.jpg"] = folder / "twelve-mp.jpg"
    Image.open(sources[5]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(
        files["twelve-mp.jpg"], "JPEG", quality=90
    )
    import pillow_heif

    pillow_heif.register_heif_opener()
    files["phone.heic"] = folder / "phone.heic"
    Image.open(sources[0]).convert("RGB").save(files["phone.heic"], "HEIF", quality=80)
    files["notes.jpg"] = folder / "notes.jpg"
    files["notes.jpg"].write_text("not a photo at all\n" * 40)
    return files


@pytest.fixture(scope="module")
def served_run(browser, page_server: Server, chosen: dict[str, Path]) -> tuple[Run, object]:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect")
    run = protect_in_page(page, list(chosen.values()))
    return run, page


def _photos(text: str) -> dict[str, ProtectedPhoto]:
    out = {}
    for item in read_signatures(text.splitlines()):
        assert isinstance(item, ProtectedPhoto), item
        assert item.name is not None
        out[item.name] = item
    return out


def _pdq(path: Path) -> PdqHash:
    return PdqHash.from_hex(hash_bytes(path.read_bytes()).signals["pdq"])


def test_each_photo_gets_a_signature_that_counterfake_reads(
    served_run: tuple[Run, object], chosen: dict[str, Path]
) -> None:
    run, _ = served_run
    photos = _photos(run.text)
    assert sorted(photos) == sorted(n for n in chosen if n not in ("phone.heic", "notes.jpg"))
    for name, photo in photos.items():
        distance = PdqHash.from_hex(photo.pdq) - _pdq(chosen[name])
        assert distance <= 8, f"{name}: PDQ {distance} bits from counterfake hash"
        assert len(photo.entries()) == 2


def test_an_exif_rotated_photo_is_signed_upright(served_run: tuple[Run, object]) -> None:
    photos = _photos(served_run[0].text)
    sideways, upright = photos["sideways.jpg"], photos["upright.jpg"]
    assert PdqHash.from_hex(sideways.pdq) - PdqHash.from_hex(upright.pdq) <= 8
    assert sideways.signature[4:8] == upright.signature[4:8]  # the same working width, height


def test_what_the_browser_cannot_read_is_named_plainly(
    served_run: tuple[Run, object], chosen: dict[str, Path]
) -> None:
    run, _ = served_run
    by_name = dict(zip([p.name for p in chosen.values()], run.messages, strict=True))
    states = dict(zip([p.name for p in chosen.values()], run.states, strict=True))
    assert states["phone.heic"] == "failed"
    assert "cannot read HEIC" in by_name["phone.heic"]
    assert states["notes.jpg"] == "failed"
    assert "not a photo this browser can read" in by_name["notes.jpg"]
    assert [s for n, s in states.items() if n not in ("phone.heic", "notes.jpg")] == ["done"] * 7


def test_no_request_carries_a_photo_or_goes_elsewhere(
    served_run: tuple[Run, object], page_server: Server
) -> None:
    run, _ = served_run
    urls = [r.url for r in run.requests]
    assert f"{page_server.url}/protect/assets/opencv.js" in urls  # the page's own loads are seen
    assert f"{page_server.url}/v1/intake" in urls  # it asks whether it may offer to send
    for request in run.requests:
        assert request.url.startswith((page_server.url + "/", "blob:" + page_server.url)), request
        assert request.method == "GET", request
        assert not request.body
        assert not any(magic in request.body for magic in IMAGE_MAGIC)


def test_the_page_sends_only_the_signature_file_and_the_code_withdraws_it(
    served_run: tuple[Run, object], page_server: Server
) -> None:
    run, page = served_run
    sent: list[tuple[str, str, bytes]] = []
    page.on("request", lambda r: sent.append((r.method, r.url, r.post_data_buffer or b"")))  # type: ignore[attr-defined]
    page.click("#submit")  # type: ignore[attr-defined]
    page.wait_for_selector("#receipt:not([hidden])")  # type: ignore[attr-defined]
    code = page.inner_text("#code")  # type: ignore[attr-defined]
    assert len(code.replace("-", "")) == 24
    posts = [s for s in sent if s[0] == "POST"]
    assert [(m, u) for m, u, _ in posts] == [("POST", f"{page_server.url}/v1/intake")]
    assert posts[0][2].decode() == run.text  # exactly the file offered for download
    assert page.evaluate("document.activeElement.id") == "receipt-title"  # type: ignore[attr-defined]

    page.click("text=Withdraw signatures you sent")  # type: ignore[attr-defined]
    page.fill("#code", code.lower())  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("#status:not(:empty)")  # type: ignore[attr-defined]  (no eval: CSP)
    assert page.inner_text("#status") == "Withdrawn: 14 signatures no longer match."  # type: ignore[attr-defined]
    body = json.loads([s for s in sent if s[0] == "POST"][-1][2])
    assert body == {"code": code.lower()}


def test_opened_from_disk_the_page_works_and_makes_no_request_beyond_its_folder(
    browser, chosen: dict[str, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["page", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    page = open_page(browser, (tmp_path / "site" / "index.html").as_uri())
    photos = [chosen[n] for n in sorted(chosen) if n.endswith(".jpg") and n != "notes.jpg"][:2]
    run = protect_in_page(page, photos, names=False)
    assert len([line for line in run.text.splitlines() if line]) == 3
    assert '"name"' not in run.text
    assert page.is_hidden("#intake")  # nowhere to send to
    for request in run.requests:
        assert request.url.startswith(("file://", "blob:")), request


def test_the_page_speaks_the_browsers_language_and_can_be_switched(
    browser, page_server: Server
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect", locale="uk-UA")
    assert page.inner_text("h1") == "Захистіть свої фотографії"
    assert page.get_attribute("html", "lang") == "uk"
    page.select_option("#language", "fr")
    assert page.inner_text("h1") == "Protégez vos photos"
    assert page.get_attribute("html", "lang") == "fr"
    assert page.inner_text("#status").startswith("Prêt.")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("h1") == "Protégez vos photos"  # remembered on this device


def test_it_works_with_the_keyboard_and_tells_a_screen_reader_what_happens(
    browser, page_server: Server
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect")
    focused = []
    for _ in range(6):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused[:3] == ["language", "photos", "names"]
    assert page.get_attribute("#status", "role") == "status"
    assert page.get_attribute("#status", "aria-live") == "polite"
    for control in ("photos", "names", "language"):
        assert page.locator(f"label[for={control}]").count() >= 1, control
    with page.expect_file_chooser() as chooser:
        page.focus("#photos")
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()


def test_it_fits_a_phone_screen(browser, page_server: Server) -> None:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect", viewport={"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = page.locator("label.button").bounding_box()
    assert box is not None and box["height"] >= 40  # a thumb-sized target


def test_a_signature_file_names_no_photo_unless_asked(
    browser, page_server: Server, chosen: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{page_server.url}/protect")
    run = protect_in_page(page, [chosen["upright.jpg"]], names=False)
    record = json.loads(run.text.splitlines()[1])
    assert sorted(record) == ["pdq", "quality", "signature"]
