"""`counterfake <noun> <verb>`: the library from the shell, and nothing more.

Human tables by default, `--json` for one JSON object per line. A bad input never stops a
batch: each failure is reported, a summary counts ok and failed, and the exit code is 1 when
anything failed (2 for wrong usage, as Click does).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .errors import CounterfakeError, FileInputError, FormatError, InputError
from .model import SCOPES, Case, Exchange

if TYPE_CHECKING:  # imported where used: `counterfake --version` loads none of them
    from rich.console import Console

    from .core import Added, Counterfake
    from .hashing import ImageHashes
    from .matching import Match
    from .model import NewEntry

__all__ = ["main"]

_IMPORT_BATCH = 1000
T = TypeVar("T")

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=(name == "err"), soft_wrap=True)
    return _consoles[name]


def _print(*args: Any, stderr: bool = False, **kwargs: Any) -> None:
    _console("err" if stderr else "out").print(*args, **kwargs)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, sort_keys=False))


def _fail(exc: CounterfakeError, as_json: bool) -> None:
    if as_json:
        _emit({"error": exc.to_dict()})
    else:
        detail = _escape(f"[{exc.code}] {exc.message}")
        _print(f"[red]Error[/red] {detail}", stderr=True, highlight=False)
    sys.exit(1)


@contextmanager
def _errors(as_json: bool = False) -> Iterator[None]:
    try:
        yield
    except CounterfakeError as exc:
        _fail(exc, as_json)


@contextmanager
def _writing(path: str | Path) -> Iterator[IO[str]]:
    """A file opened for writing; a missing folder or a refusal is a coded error."""
    try:
        fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except FileNotFoundError as exc:
        raise FileInputError(
            "its folder does not exist", code="unwritable_file", path=str(path)
        ) from exc
    except OSError as exc:
        raise FileInputError(
            f"cannot write it ({exc.strerror})", code="unwritable_file", path=str(path)
        ) from exc
    with fh:
        yield fh


def _folder(path: str | Path) -> Path:
    """A folder to write into, made if missing; a file in the way is a coded error."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileInputError(
            f"cannot make a folder here ({exc.strerror})", code="unwritable_file", path=str(path)
        ) from exc
    return folder


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    from .media import IMAGE_SUFFIXES

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            found.append(path)
    return found


class _Batch:
    """Counts ok and failed items, prints failures as they happen and a summary at the end."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.ok = 0
        self.failed = 0

    def run(
        self, items: Sequence[T], label: str, work: Callable[[T], None], name: Callable[[T], str]
    ) -> None:
        show = not self.as_json and len(items) > 1 and sys.stderr.isatty()
        if not show:
            for item in items:
                self._one(item, work, name)
            return
        from rich.progress import Progress

        with Progress(console=_console("err"), transient=True) as progress:
            task = progress.add_task(label, total=len(items))
            for item in items:
                self._one(item, work, name)
                progress.advance(task)

    def _one(self, item: T, work: Callable[[T], None], name: Callable[[T], str]) -> None:
        try:
            work(item)
            self.ok += 1
        except CounterfakeError as exc:
            self.failure(name(item), exc)

    def failure(self, where: str, exc: CounterfakeError) -> None:
        self.failed += 1
        if self.as_json:
            _emit({"path": where, "error": exc.to_dict()})
        else:
            detail = _escape(f"{where}: [{exc.code}] {exc.message}")
            _print(f"[red]failed[/red] {detail}", stderr=True, highlight=False)

    def finish(self) -> None:
        if not self.as_json:
            colour = "red" if self.failed else "green"
            summary = f"[{colour}]{self.ok} ok, {self.failed} failed[/{colour}]"
            _print(summary, stderr=True, highlight=False)
        if self.failed:
            sys.exit(1)


def _core(
    ctx: click.Context, banks: Sequence[str] | None = None, *, as_json: bool = False
) -> Counterfake:
    """The core object every command calls (its store opens on first use)."""
    from .core import Counterfake

    key = "core" if banks is None else f"core:{','.join(banks)}"
    if key not in ctx.obj:
        with _errors(as_json):
            ctx.obj[key] = core = Counterfake(ctx.obj.get("settings"), banks=banks)
            if banks is not None:
                core.matcher  # noqa: B018 (an unknown bank fails here)
        ctx.call_on_close(ctx.obj[key].close)
    core = ctx.obj[key]
    assert isinstance(core, Counterfake)
    return core


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="counterfake")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Counterfake: hash images on this machine, keep hash banks, match images against them.

    Settings come from COUNTERFAKE_* environment variables (see the README); the store is a
    SQLite file under COUNTERFAKE_HOME unless COUNTERFAKE_DATABASE_URL names another.
    """
    from ._warnings import log_warnings

    log_warnings()
    ctx.ensure_object(dict)


# hash ----------------------------------------------------------------------------------------


@main.command("hash")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.option("--dihedral", is_flag=True, help="Also print PDQ of the 8 rotations and flips.")
@click.pass_context
def hash_command(ctx: click.Context, paths: tuple[str, ...], as_json: bool, dihedral: bool) -> None:
    """Hash images (files or folders, recursively). Nothing leaves this machine."""
    core = _core(ctx)
    batch = _Batch(as_json)
    rows: list[tuple[str, ImageHashes]] = []
    files = expand_paths(paths)
    hashed = core.hash_files(files, dihedral=dihedral)

    def work(path: Path) -> None:
        _, hashes = next(hashed)  # in the order of `files`
        if isinstance(hashes, CounterfakeError):
            raise hashes
        if as_json:
            _emit({"path": str(path), **hashes.to_dict()})
        else:
            rows.append((str(path), hashes))

    batch.run(files, "hashing", work, str)
    if not as_json and rows:
        from rich.table import Table

        table = Table("path", "size", "pdq", "quality", "md5")
        for path, hashes in rows:
            quality = str(hashes.quality)
            if hashes.quality < core.settings.pdq_min_quality:
                quality += " (too low to match)"
            table.add_row(
                path,
                f"{hashes.width}x{hashes.height}",
                hashes.signals["pdq"],
                quality,
                hashes.signals["md5"],
            )
            if hashes.dihedral:
                for variant, value in hashes.dihedral.items():
                    table.add_row("", f"  {variant}", value, "", "")
        _print(table)
    batch.finish()


# bank ----------------------------------------------------------------------------------------


@main.group()
def bank() -> None:
    """Create, fill, list, export and import hash banks."""


@bank.command("create")
@click.argument("name")
@click.option(
    "--threshold",
    type=int,
    default=None,
    help="PDQ match distance (default: the pdq_threshold setting).",
)
@click.option("--description", default="", help="What the bank holds.")
@click.option("--tenant", default="default", show_default=True, help="Who owns the bank.")
@click.option("--share", "shares", multiple=True, help="Tenant that may match against it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_create(
    ctx: click.Context,
    name: str,
    threshold: int | None,
    description: str,
    tenant: str,
    shares: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create an empty bank."""
    with _errors(as_json):
        created = _core(ctx).create_bank(
            name, description=description, threshold=threshold, tenant=tenant, shared_with=shares
        )
    if as_json:
        _emit(created.to_dict())
    else:
        _print(f"Created bank [bold]{created.name}[/bold] (PDQ threshold {created.pdq_threshold})")


@bank.command("update")
@click.argument("name")
@click.option("--threshold", type=int, default=None, help="New PDQ match distance.")
@click.option("--description", default=None, help="New description.")
@click.option(
    "--share", "shares", multiple=True, help="Tenant that may match against it (replaces)."
)
@click.option("--unshare-all", is_flag=True, help="Share with no other tenant.")
@click.option(
    "--review/--no-review",
    default=None,
    help="Every match in this bank opens a review case (or only lookups that ask).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_update(
    ctx: click.Context,
    name: str,
    threshold: int | None,
    description: str | None,
    shares: tuple[str, ...],
    unshare_all: bool,
    review: bool | None,
    as_json: bool,
) -> None:
    """Change a bank's threshold, description, the tenants it is shared with, or its review
    rule."""
    shared_with = () if unshare_all else (shares or None)
    with _errors(as_json):
        updated = _core(ctx).update_bank(
            name,
            description=description,
            threshold=threshold,
            shared_with=shared_with,
            review=review,
        )
    if as_json:
        _emit(updated.to_dict())
    else:
        _print(f"Updated bank [bold]{updated.name}[/bold]")


@bank.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_list(ctx: click.Context, as_json: bool) -> None:
    """List banks with their entry counts."""
    with _errors(as_json):
        banks = _core(ctx).banks()
    if as_json:
        for b in banks:
            _emit(b.to_dict())
        return
    from rich.table import Table

    table = Table("bank", "threshold", "active", "withdrawn", "description")
    for b in banks:
        table.add_row(
            b.name,
            str(b.pdq_threshold),
            str(b.active_entries),
            str(b.withdrawn_entries),
            b.description,
        )
    _print(table if banks else "No banks yet: counterfake bank create NAME")


@bank.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one bank."""
    with _errors(as_json):
        b = _core(ctx).bank(name)
    if as_json:
        _emit(b.to_dict())
        return
    for key, value in b.to_dict().items():
        _print(f"{key:>18}: {value}", highlight=False)


@bank.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def bank_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a bank and every entry in it. Asks first, at a terminal; elsewhere needs --yes."""
    core = _core(ctx)
    with _errors():
        b = core.bank(name)
    if not yes:
        if not sys.stdin.isatty():
            message = _escape(
                f"[confirmation_required] deleting bank {name} and its {b.active_entries}"
                " entries needs --yes when no terminal can answer the question"
            )
            _print(f"[red]Error[/red] {message}", stderr=True, highlight=False)
            sys.exit(2)
        if not click.confirm(f"Delete bank {name} and its {b.active_entries} entries?"):
            _print(f"Kept bank [bold]{name}[/bold]")
            sys.exit(1)
    with _errors():
        core.delete_bank(name)
    _print(f"Deleted bank [bold]{name}[/bold]")


def _add_parsed(
    core: Counterfake, bank_name: str, path: str, lines: Iterator[str], batch: _Batch
) -> Iterator[Added]:
    """Add parsed lines in batches, yielding each batch once committed: what the caller
    prints has been acknowledged, so a run that is killed tells how far it got."""
    from .exchange import parse_lines

    pending: list[NewEntry] = []
    for item in parse_lines(lines, source="import", path=path):
        if isinstance(item, FormatError):
            batch.failure(f"{path}:{item.line}", item)
            continue
        pending.append(item)
        if len(pending) >= _IMPORT_BATCH:
            yield core.add_signals(bank_name, pending)
            batch.ok += len(pending)
            pending = []
    if pending:
        yield core.add_signals(bank_name, pending)
        batch.ok += len(pending)


def _print_added(added: Added, where: str, as_json: bool) -> None:
    for result in added.results:  # "existing" too: --json says what happened to every input
        if as_json:
            _emit(
                {
                    "path": where,
                    "entry_id": result.entry_id,
                    "signal": result.signal_type,
                    "status": result.status,
                }
            )


@bank.command("add")
@click.argument("name")
@click.argument("paths", nargs=-1)
@click.option(
    "--hashes",
    "hashes_file",
    type=click.Path(),
    help="A file of hashes, one per line: 'pdq <hex>' or bare hex.",
)
@click.option(
    "--signatures",
    "signatures_file",
    type=click.Path(),
    help="A signature file from `counterfake protect`: protected photos.",
)
@click.option(
    "--names/--no-names",
    default=True,
    help="Store each file's name as source_name (default) or not.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_add(
    ctx: click.Context,
    name: str,
    paths: tuple[str, ...],
    hashes_file: str | None,
    signatures_file: str | None,
    names: bool,
    as_json: bool,
) -> None:
    """Hash images into a bank, or add hashes (--hashes) or protected photos (--signatures)."""
    if not paths and not hashes_file and not signatures_file:
        raise click.UsageError("give image PATHs, --hashes FILE or --signatures FILE")
    core = _core(ctx)
    min_quality = core.settings.pdq_min_quality
    with _errors(as_json):
        core.bank(name, counts=False)
    batch = _Batch(as_json)
    created = 0

    def work(path: Path) -> None:
        nonlocal created
        added = core.add_image(name, core.read(path), source_name=path.name if names else None)
        assert added.hashes is not None
        if added.hashes.quality < min_quality and not as_json:
            warning = (
                f"warning: {path}: PDQ quality {added.hashes.quality} is below {min_quality};"
                " its PDQ hash is stored but will not match (exact copies still will)"
            )
            _print(_escape(warning), stderr=True, highlight=False)
        created += added.created
        _print_added(added, str(path), as_json)

    batch.run(expand_paths(paths), "adding", work, str)
    if hashes_file:
        with _errors(as_json):
            text = _read_text(hashes_file)
            for added in _add_parsed(core, name, hashes_file, iter(text.splitlines()), batch):
                created += added.created
                _print_added(added, hashes_file, as_json)
    if signatures_file:
        with _errors(as_json):
            lines = _read_text(signatures_file).splitlines()
            for number, item in enumerate(core.signature_file(lines, path=signatures_file), 1):
                if isinstance(item, FormatError):
                    batch.failure(f"{signatures_file}:{item.line}", item)
                    continue
                added = core.add_signatures(name, [item])
                batch.ok += 1
                created += added.created
                _print_added(added, f"{signatures_file}#{number}", as_json)
    if not as_json:
        noun = "entry" if created == 1 else "entries"
        _print(f"Bank [bold]{name}[/bold]: {created} {noun} added or reinstated")
    batch.finish()


def _read_text(path: str) -> str:
    from .hashing import read_input
    from .media import Limits

    return read_input(Path(path), limits=Limits(max_bytes=2**40)).decode("utf-8", "replace")


@bank.command("withdraw")
@click.argument("name")
@click.argument("entry_ids", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_withdraw(ctx: click.Context, name: str, entry_ids: tuple[int, ...], as_json: bool) -> None:
    """Withdraw entries: from now on they never match."""
    core = _core(ctx)
    batch = _Batch(as_json)

    def work(entry_id: int) -> None:
        entry = core.withdraw(name, entry_id)
        if as_json:
            _emit(
                {
                    "entry_id": entry.id,
                    "withdrawn_at": entry.withdrawn_at.isoformat() if entry.withdrawn_at else None,
                }
            )
        else:
            _print(f"Withdrew entry {entry.id} ({entry.signal_type}) from {name}")

    batch.run(list(entry_ids), "withdrawing", work, str)
    batch.finish()


@bank.command("export")
@click.argument("name")
@click.option(
    "--format", "fmt", type=click.Choice(("jsonl", "te")), default="jsonl", show_default=True
)
@click.option("-o", "--output", type=click.Path(), help="File to write (default stdout).")
@click.pass_context
def bank_export(ctx: click.Context, name: str, fmt: str, output: str | None) -> None:
    """Export a bank: jsonl (every entry, withdrawals included) or te (active PDQ hashes)."""
    core = _core(ctx)
    with _errors():
        core.bank(name, counts=False)
        if output:
            with _writing(output) as fh:
                count = core.export(name, fh, format=fmt)
            _print(f"Wrote {count} entries to {output}", stderr=True)
        else:
            core.export(name, sys.stdout, format=fmt)


@bank.command("import")
@click.argument("name")
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bank_import(ctx: click.Context, name: str, file: str, as_json: bool) -> None:
    """Import a jsonl or te file into a bank (idempotent; withdrawals are honoured)."""
    core = _core(ctx)
    batch = _Batch(as_json)
    with _errors(as_json):
        core.bank(name, counts=False)
        text = _read_text(file)
        counts: dict[str, int] = {}
        for part in _add_parsed(core, name, file, iter(text.splitlines()), batch):
            _print_added(part, file, as_json)
            for r in part.results:
                counts[r.status] = counts.get(r.status, 0) + 1
    if not as_json:
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing"
        _print(f"Bank [bold]{name}[/bold]: {summary}")
    batch.finish()


# match ---------------------------------------------------------------------------------------


@main.command("match")
@click.argument("paths", nargs=-1, required=True)
@click.option("--bank", "banks", multiple=True, help="Bank to match against (default: all).")
@click.option("--dihedral", is_flag=True, help="Also match rotated and flipped copies.")
@click.option(
    "--explain",
    "explain_dir",
    type=click.Path(),
    help="Write, per derivative match, an overlay PNG and its evidence JSON here.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def match_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    banks: tuple[str, ...],
    dihedral: bool,
    explain_dir: str | None,
    as_json: bool,
) -> None:
    """Match images against banks: copies by PDQ and digests, then derivatives of protected
    photos when nothing else matched."""
    with _errors(as_json):
        core = _core(ctx, list(banks) or None, as_json=as_json)
        if explain_dir:
            _folder(explain_dir)
    batch = _Batch(as_json)
    rows: list[tuple[str, ...]] = []

    def work(path: Path) -> None:
        data = core.read(path)
        found = core.lookup(data, dihedral=dihedral)
        if explain_dir:
            _explain(core, Path(explain_dir), path, data, found.matches)
        if as_json:
            record: dict[str, Any] = {
                "path": str(path),
                "matches": [m.to_dict() for m in found.matches],
                "quality": found.hashes.quality,
            }
            if found.notes:
                record["notes"] = found.notes
            _emit(record)
            return
        note = "; ".join(found.notes)
        if not found.matches:
            rows.append((str(path), "-", "-", "-", "-", note or "no match"))
        for m in found.matches:
            how = "; ".join(x for x in (m.how, note) if x)
            rows.append((str(path), m.bank, str(m.entry_id), m.signal, m.shown_distance, how))

    batch.run(expand_paths(paths), "matching", work, str)
    if not as_json and rows:
        from rich.table import Table

        table = Table("path", "bank", "entry", "signal", "distance", "note")
        for row in rows:
            table.add_row(*row)
        _print(table)
    batch.finish()


def _explain(
    core: Counterfake, folder: Path, path: Path, data: bytes, matches: list[Match]
) -> None:
    explained = [m for m in matches if m.evidence is not None]
    if not explained:
        return
    from .derivatives import overlay
    from .media import decode_rgb

    image = decode_rgb(data, limits=core.limits)
    for m in explained:
        assert m.evidence is not None
        stem = f"{path.stem}-{m.bank}-{m.entry_id}"
        overlay(image, m.evidence.outline).save(folder / f"{stem}.png")
        record = {"path": str(path), **m.to_dict(), "evidence": m.evidence.to_dict()}
        with _writing(folder / f"{stem}.json") as fh:
            fh.write(json.dumps(record, indent=2) + "\n")


# keys and the service ------------------------------------------------------------------------


@main.group()
def key() -> None:
    """API keys for the service: each has a tenant and scopes."""


@key.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="submit, match, curate or admin (repeat for several).",
)
@click.option("--name", default="", help="A note on who holds the key.")
@click.option(
    "--rate-limit",
    type=float,
    default=None,
    help="Requests a second for this key in place of COUNTERFAKE_RATE_LIMIT (0: no limit).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def key_create(
    ctx: click.Context,
    tenant: str,
    scopes: tuple[str, ...],
    name: str,
    rate_limit: float | None,
    as_json: bool,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    with _errors(as_json):
        created, secret = _core(ctx).store.keys.create(
            tenant, scopes, name=name, rate_limit=rate_limit
        )
    if as_json:
        _emit({**created.to_dict(), "key": secret})
        return
    click.echo(secret)
    _print(
        f"Key {created.key_id} for tenant {created.tenant} ({', '.join(sorted(created.scopes))})."
        " Copy it now: it is not shown again.",
        stderr=True,
        highlight=False,
    )


@key.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def key_list(ctx: click.Context, as_json: bool) -> None:
    """List keys (never their secrets)."""
    with _errors(as_json):
        keys = _core(ctx).store.keys.list()
    if as_json:
        for k in keys:
            _emit(k.to_dict())
        return
    from rich.table import Table

    table = Table("key id", "tenant", "scopes", "name", "rate limit", "created", "revoked")
    for k in keys:
        d = k.to_dict()
        table.add_row(
            k.key_id,
            k.tenant,
            " ".join(d["scopes"]),
            k.name,
            "default" if k.rate_limit is None else f"{k.rate_limit:g}/s",
            d["created_at"],
            d["revoked_at"] or "",
        )
    _print(table if keys else "No keys yet: counterfake key create --tenant T --scope S")


@key.command("rate")
@click.argument("key_id")
@click.argument("rate")
@click.pass_context
def key_rate(ctx: click.Context, key_id: str, rate: str) -> None:
    """Set a key's own rate limit in requests a second (0: no limit), or `default` to go back
    to COUNTERFAKE_RATE_LIMIT. A running service applies it within a second."""
    with _errors():
        if rate == "default":
            value = None
        else:
            try:
                value = float(rate)
            except ValueError:
                raise InputError(
                    f"a rate is a number of requests a second or `default`; got {rate!r}",
                    code="invalid_rate_limit",
                ) from None
        _core(ctx).store.keys.set_rate_limit(key_id, value)
    _print(f"Key {key_id}: " + ("the default rate" if value is None else f"{value:g} requests/s"))


@key.command("revoke")
@click.argument("key_id")
@click.pass_context
def key_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key: the service refuses it within a second."""
    with _errors():
        _core(ctx).store.keys.revoke(key_id)
    _print(f"Revoked key {key_id}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--shards",
    default=0,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Split the derivative shortlist over this many shard processes on this machine,"
    " which the workers ask (0: each worker holds it whole).",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, workers: int, shards: int, log_level: str
) -> None:
    """Run the HTTP matching service (OpenAPI at /docs) over this store."""
    from .service.serve import run

    with _errors():
        _core(ctx).store  # noqa: B018 (migrate once, before the workers start)
    held = f", {shards} shard(s)" if shards else ""
    _print(
        f"Counterfake service on http://{host}:{port} ({workers} worker(s){held});"
        " API docs at /docs",
        stderr=True,
        highlight=False,
    )
    run(host, port, workers, log_level, shards=shards)


def _part(value: str) -> tuple[int, int]:
    k, _, n = value.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise click.BadParameter(f"{value!r} is not K/N with 0 <= K < N", param_hint="PART")
    return int(k), int(n)


@main.command("shard")
@click.argument("part")
@click.option("--listen", required=True, help="Where to answer: unix:PATH or HOST:PORT.")
@click.pass_context
def shard_command(ctx: click.Context, part: str, listen: str) -> None:
    """Hold part K/N of the derivative shortlist (photos spread over N parts by a hash of
    their entry id) and answer the workers whose COUNTERFAKE_SHARDS lists this address."""
    import signal
    import threading

    from ._memory import settle_allocator
    from .shards import parse_address

    settle_allocator()  # a process that runs for weeks, as `serve`'s workers do
    where = _part(part)
    try:
        parse_address(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())

    def ready() -> None:
        _print(f"shard {part} answering on {listen}", stderr=True, highlight=False)

    with _errors():
        try:
            _core(ctx).serve_shard(where, listen, ready=ready, stop=stop)
        except OSError as exc:
            raise FileInputError(
                f"cannot listen there ({exc.strerror or exc})", code="unusable_address", path=listen
            ) from exc


@main.command("investigate")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--bank", "banks", multiple=True, help="Bank to match against (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--no-images", is_flag=True, help="Embed no thumbnails or overlays in the report.")
@click.option("--dask", "use_dask", is_flag=True, help="Run the work on a Dask LocalCluster.")
@click.option("--scheduler", help="Address of a Dask scheduler to use instead (implies --dask).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the signature table lives while it runs: a folder every Dask worker sees at "
    "the same path (default: the system's temporary folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def investigate_command(
    ctx: click.Context,
    archive: Path,
    banks: tuple[str, ...],
    out_dir: Path,
    no_images: bool,
    use_dask: bool,
    scheduler: str | None,
    workers: int,
    work_dir: Path | None,
    as_json: bool,
) -> None:
    """Investigate a Telegram Desktop export (its folder or result.json) or a folder of
    images: clusters per source photo, targets, derivatives, growth; a report in --out."""
    from rich.progress import Progress

    from .investigate import BankSpec, investigate, write_report

    with _errors(as_json):
        core = _core(ctx)
        spec = None
        if banks:
            for name in banks:
                core.bank(name, counts=False)
            spec = BankSpec(core.settings, banks)
        _folder(out_dir)
    with _errors(as_json), Progress(console=_console("err"), disable=as_json) as progress:
        result = investigate(
            archive,
            spec=spec,
            limits=core.limits,
            dask=use_dask,
            scheduler=scheduler,
            workers=workers,
            progress=progress,
            work_dir=work_dir,
        )
        written = write_report(result, out_dir, images=not no_images, limits=core.limits)
    summary = result.summary()
    if as_json:
        _emit({"summary": summary, "outputs": {k: str(v) for k, v in written.items()}})
        return
    from rich.table import Table

    table = Table("", "count", title=f"Investigation of {_escape(str(archive))}")
    for name, value in summary.items():
        table.add_row(name.replace("_", " "), str(value))
    _print(table)
    _print(f"Report: {_escape(str(written['report']))}", highlight=False)


@main.command("protect")
@click.argument("photos", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path())
@click.option("--with-names", is_flag=True, help="Record each file's name (stored as source_name).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def protect_command(
    ctx: click.Context, photos: tuple[str, ...], output: str, with_names: bool, as_json: bool
) -> None:
    """Make signatures of your own photos, here, to protect them against manipulated copies.
    The file holds no pixels (and no file names unless --with-names)."""
    from .protect import write_signatures

    core = _core(ctx)
    batch = _Batch(as_json)
    protected = []

    def work(path: Path) -> None:
        photo = core.protect(core.read(path), name=path.name if with_names else None)
        protected.append(photo)
        if as_json:
            _emit({"path": str(path), "pdq": photo.pdq, "signature_bytes": len(photo.signature)})

    with _errors(as_json), _writing(output) as fh:
        batch.run(expand_paths(photos), "protecting", work, str)
        write_signatures(protected, fh)
    if not as_json:
        _print(f"Wrote {len(protected)} signatures to {output}", stderr=True, highlight=False)
    batch.finish()


@main.group()
def exchange() -> None:
    """Other sources this installation fetches signals from (`counterfake serve` fetches them
    in the background; `exchange fetch` does it now)."""


def _print_exchange(found: Exchange, as_json: bool) -> None:
    if as_json:
        _emit(found.to_dict())
        return
    state = f"error: {found.last_error}" if found.last_error else "ok"
    if not found.enabled:
        state = f"paused, {state}"
    _print(
        f"{_escape(found.name)}: {found.type} {_escape(found.config.get('url', ''))} "
        f"{_escape(found.config.get('remote_bank', ''))} -> {_escape(found.bank)}; "
        f"cursor {found.cursor or '0'}, {found.applied} applied, {state}",
        highlight=False,
    )


@exchange.command("add")
@click.argument("name")
@click.option(
    "--type",
    "kind",
    required=True,
    type=click.Choice(["counterfake", "stopncii", "threatexchange-file", "ncmec"]),
)
@click.option("--bank", required=True, help="The bank here that receives what it fetches.")
@click.option(
    "--url",
    help="counterfake: the hub's base URL, e.g. https://hub.example.org; ncmec: the API's base, "
    "e.g. https://report.cybertip.org/hashsharing; stopncii: only to override its address.",
)
@click.option("--remote-bank", help="counterfake: the hub's bank to follow.")
@click.option(
    "--path",
    "file_path",
    help="threatexchange-file: the signal file ('pdq <hex>' lines); ncmec: a file of its XML.",
)
@click.option(
    "--credential-env",
    default="COUNTERFAKE_EXCHANGE_CREDENTIAL",
    show_default=True,
    help="The environment variable holding the credential (counterfake: the hub's key of the "
    "follow scope; stopncii: SUBSCRIPTION_KEY:FUNCTION_KEY; ncmec: USER:PASSWORD); never a "
    "flag, so it stays out of shell history and process lists.",
)
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds between fetches (default: 0.5 for counterfake, 300 for stopncii).",
)
@click.option(
    "--only-member",
    "only_members",
    type=int,
    multiple=True,
    help="ncmec: take only this ESP id's entries (repeatable).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exchange_add(
    ctx: click.Context,
    name: str,
    kind: str,
    bank: str,
    url: str | None,
    remote_bank: str | None,
    credential_env: str,
    interval: float | None,
    file_path: str | None,
    only_members: tuple[int, ...],
    as_json: bool,
) -> None:
    """Fetch another Counterfake's bank, StopNCII's hashes, NCMEC's or a ThreatExchange
    signal file into one of your banks. Without a credential in the environment, the
    exchange uses the one `exchange credential` set for its type."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        found = core.add_exchange(
            name,
            type=kind,
            bank=bank,
            url=url,
            remote_bank=remote_bank,
            credential=os.environ.get(credential_env),
            interval_seconds=interval,
            path=file_path,
            only_members=only_members,
        )
    _print_exchange(found, as_json)


@exchange.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exchange_list(ctx: click.Context, as_json: bool) -> None:
    """Every exchange and its status; never a credential."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        for found in core.exchanges():
            _print_exchange(found, as_json)


@exchange.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exchange_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One exchange's settings and status: cursor, last fetch, last error, entries applied."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        _print_exchange(core.exchange(name), as_json)


@exchange.command("fetch")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exchange_fetch(ctx: click.Context, name: str, as_json: bool) -> None:
    """Fetch now, to the end of what the source has."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        _print_exchange(core.fetch_exchange(name), as_json)


@exchange.command("pause")
@click.argument("name")
@click.pass_context
def exchange_pause(ctx: click.Context, name: str) -> None:
    """Stop the scheduled fetches; the cursor stays, and `exchange resume` goes on from it."""
    core = _core(ctx)
    with _errors():
        core.enable_exchange(name, False)
    _print(f"Paused exchange {_escape(name)}", highlight=False)


@exchange.command("resume")
@click.argument("name")
@click.pass_context
def exchange_resume(ctx: click.Context, name: str) -> None:
    """Fetch on the schedule again, from where it stopped."""
    core = _core(ctx)
    with _errors():
        core.enable_exchange(name, True)
    _print(f"Resumed exchange {_escape(name)}", highlight=False)


@exchange.command("credential")
@click.argument("kind", metavar="TYPE", type=click.Choice(["counterfake", "stopncii", "ncmec"]))
@click.option(
    "--credential-env",
    default="COUNTERFAKE_EXCHANGE_CREDENTIAL",
    show_default=True,
    help="The environment variable holding it, in the same form as for `exchange add`.",
)
@click.option("--url", help="stopncii: override its address for every exchange of the type.")
@click.option("--clear", is_flag=True, help="Forget it.")
@click.pass_context
def exchange_credential(
    ctx: click.Context, kind: str, credential_env: str, url: str | None, clear: bool
) -> None:
    """Set the credential every exchange of TYPE without one of its own uses (HMA keeps one
    per exchange API); it is stored for the fetcher and never shown."""
    core = _core(ctx)
    credential = None if clear else os.environ.get(credential_env)
    if not clear and not credential:
        raise click.UsageError(f"{credential_env} is not set (or pass --clear)")
    with _errors():
        core.set_exchange_credential(kind, credential, config={"url": url} if url else {})
    _print(f"{'Cleared' if clear else 'Set'} the {kind} exchange credential", highlight=False)


@exchange.command("feedback")
@click.argument("name")
@click.argument("values", nargs=-1, required=True, metavar="PDQ...")
@click.option(
    "--value",
    "feedback",
    required=True,
    type=click.Choice(
        ["Blocked", "NotBlocked", "PendingReview", "QualityUnknown", "None", "Unknown"]
    ),
    help="What this platform found: Blocked (reviewed: intimate imagery), NotBlocked...",
)
@click.option("--tag", "tags", multiple=True, help="A tag sent with it (repeatable).")
@click.pass_context
def exchange_feedback(
    ctx: click.Context, name: str, values: tuple[str, ...], feedback: str, tags: tuple[str, ...]
) -> None:
    """Tell a stopncii exchange's source what you found for these PDQ hashes (its credential
    needs the SubmitFeedback function key as a third part)."""
    core = _core(ctx)
    with _errors():
        sent = core.send_exchange_feedback(name, list(values), feedback, tags=list(tags))
    _print(f"Sent {feedback} on {sent} hashes to {_escape(name)}", highlight=False)


@exchange.command("remove")
@click.argument("name")
@click.pass_context
def exchange_remove(ctx: click.Context, name: str) -> None:
    """Stop fetching; what it brought stays in its bank."""
    core = _core(ctx)
    with _errors():
        core.remove_exchange(name)
    _print(f"Removed exchange {_escape(name)}", highlight=False)


@main.command("page")
@click.argument("folder", type=click.Path(file_okay=False))
def page_command(folder: str) -> None:
    """Write the protect page as a static folder: it works from any static host, or opened
    from disk (file://). Photos are signed in the browser; nothing is sent from file://."""
    from .pages import export_protect_page

    with _errors():
        index = export_protect_page(Path(folder))
    _print(f"Wrote the protect page to {_escape(str(index))}", highlight=False)


@main.group()
def intake() -> None:
    """Signature files sent to this service without a key (COUNTERFAKE_INTAKE_BANK)."""


@intake.command("withdraw")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def intake_withdraw(ctx: click.Context, code: str, as_json: bool) -> None:
    """Withdraw everything one submission added, by the withdrawal code its sender got."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        withdrawn = core.withdraw_submission(code)
    if as_json:
        _emit({"entries": withdrawn})
    else:
        _print(f"Withdrew {withdrawn} entries", highlight=False)


# review --------------------------------------------------------------------------------------


@main.group()
def review() -> None:
    """Review cases, for scripted use (reviewers use the service's routes): list, claim,
    decide, appeal, and export the decision log. The local operator reviews as `operator`."""


def _print_case(case: Case, as_json: bool) -> None:
    if as_json:
        _emit(case.to_dict())
        return
    held = f", claimed by {case.claimed_by}" if case.claimed_by else ""
    decided = f", {case.decision} ({_escape(case.policy or '')})" if case.decision else ""
    _print(
        f"case {case.id} [{case.status}] {_escape(case.tenant)}/{_escape(case.bank)} "
        f"{case.signal} ({case.band}), {len(case.evidence)} matches,"
        f" opened {case.opened_at:%Y-%m-%d %H:%M}"
        f"{held}{decided}",
        highlight=False,
    )


_BAND = click.Choice(["high", "medium", "low"])


@review.command("list")
@click.option("--status", type=click.Choice(["open", "escalated", "appeal", "decided"]))
@click.option("--bank")
@click.option("--signal", help="Only cases whose strongest match is of this signal type.")
@click.option("--band", type=_BAND, help="Only cases of this score band.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review_list(
    ctx: click.Context,
    status: str | None,
    bank: str | None,
    signal: str | None,
    band: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Cases, oldest first."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        for case in core.cases(status=status, bank=bank, signal=signal, band=band, limit=limit):
            _print_case(case, as_json)


@review.command("claim")
@click.option("--queue", type=click.Choice(["open", "escalated", "appeal"]), default="open")
@click.option("--bank")
@click.option("--signal", help="Only a case whose strongest match is of this signal type.")
@click.option("--band", type=_BAND, help="Only a case of this score band.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review_claim(
    ctx: click.Context,
    queue: str,
    bank: str | None,
    signal: str | None,
    band: str | None,
    as_json: bool,
) -> None:
    """Lock the oldest free case of a queue for five minutes."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        case = core.claim_case(queue=queue, bank=bank, signal=signal, band=band)
    if case is not None:
        _print_case(case, as_json)
    elif as_json:
        _emit({"case": None})
    else:
        _print("No case is waiting", highlight=False)


@review.command("decide")
@click.argument("case_id", type=int)
@click.option(
    "--decision", required=True, type=click.Choice(["confirm", "not_a_match", "escalate"])
)
@click.option("--policy", required=True)
@click.option("--reason", required=True)
@click.option("--action", help="confirm: what the platform does (remove, restrict...).")
@click.option("--remember", is_flag=True, help="not_a_match: the pair never opens a case again.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review_decide(
    ctx: click.Context,
    case_id: int,
    decision: str,
    policy: str,
    reason: str,
    action: str | None,
    remember: bool,
    as_json: bool,
) -> None:
    """Decide a case; audited and sent to the tenant's webhooks."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        case = core.decide_case(
            case_id, decision, policy=policy, reason=reason, action=action, remember=remember
        )
    _print_case(case, as_json)


@review.command("appeal")
@click.argument("case_id", type=int)
@click.option("--reason", required=True)
@click.pass_context
def review_appeal(ctx: click.Context, case_id: int, reason: str) -> None:
    """Reopen a decided case into the appeal queue."""
    core = _core(ctx)
    with _errors():
        _print_case(core.appeal_case(case_id, reason), False)


@review.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--since", type=click.DateTime(), help="Only decisions from this time (UTC).")
@click.option("--decision", type=click.Choice(["confirm", "not_a_match", "escalate"]))
@click.option("--bank")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Default: standard output.")
@click.pass_context
def review_export(
    ctx: click.Context,
    fmt: str,
    since: datetime | None,
    decision: str | None,
    bank: str | None,
    output: str | None,
) -> None:
    """The decision log, as JSON Lines or CSV."""
    from .review import write_decisions

    core = _core(ctx)
    stamp = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    with _errors():
        cases = core.decision_log(since=stamp, decision=decision, bank=bank)
        if output is None:
            count = write_decisions(cases, sys.stdout, fmt)
        else:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                count = write_decisions(cases, fh, fmt)
    _print(f"Exported {count} decisions", stderr=True, highlight=False)


@main.group()
def webhook() -> None:
    """Where review events go (case.opened, case.decided, appeal.decided, entry.withdrawn),
    signed; the service delivers them in the background."""


@webhook.command("add")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(["case.opened", "case.decided", "appeal.decided", "entry.withdrawn"]),
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_add(ctx: click.Context, url: str, events: tuple[str, ...], as_json: bool) -> None:
    """Send these events to URL; prints the signing secret, this once."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        hook, secret = core.add_webhook(url, list(events))
    if as_json:
        _emit({**hook.to_dict(), "secret": secret})
    else:
        _print(
            f"Webhook {hook.id} -> {_escape(hook.url)}; signing secret: {secret}", highlight=False
        )


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_list(ctx: click.Context, as_json: bool) -> None:
    """Every webhook (never its secret)."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        for hook in core.webhooks():
            if as_json:
                _emit(hook.to_dict())
            else:
                _print(
                    f"{hook.id}: {_escape(hook.tenant)} {_escape(hook.url)} "
                    f"{', '.join(hook.events)}",
                    highlight=False,
                )


@webhook.command("deliveries")
@click.argument("webhook_id", type=int)
@click.option("--dead", is_flag=True, help="Only the dead letters.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_deliveries(ctx: click.Context, webhook_id: int, dead: bool, as_json: bool) -> None:
    """A webhook's delivery log, newest first."""
    core = _core(ctx, as_json=as_json)
    with _errors(as_json):
        for item in core.deliveries(webhook_id, status="dead" if dead else None):
            if as_json:
                _emit(item.to_dict())
            else:
                why = f"; {_escape(item.last_error)}" if item.last_error else ""
                _print(
                    f"{item.id}: {item.event} {item.event_id} {item.status}, "
                    f"{item.attempts} attempts{why}",
                    highlight=False,
                )


@webhook.command("replay")
@click.argument("delivery_id", type=int)
@click.pass_context
def webhook_replay(ctx: click.Context, delivery_id: int) -> None:
    """Send a delivery again (a dead letter), with its event id."""
    core = _core(ctx)
    with _errors():
        core.replay_delivery(delivery_id)
    _print(f"Delivery {delivery_id} will be sent again", highlight=False)


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@click.pass_context
def webhook_remove(ctx: click.Context, webhook_id: int) -> None:
    """Remove a webhook and what it had still to deliver."""
    core = _core(ctx)
    with _errors():
        core.remove_webhook(webhook_id)
    _print(f"Removed webhook {webhook_id}", highlight=False)


# demo ----------------------------------------------------------------------------------------


@main.command("demo")
def demo_command() -> None:
    """Build a bank from the bundled sample photos and match altered copies against it."""
    from .demo import run_demo

    sys.exit(run_demo(_console("out")))
