"""Every setting declared once: name, type, default, environment variable and help.

Values come from, in increasing priority: the defaults below, the TOML file named by
`COUNTERFAKE_CONFIG` (or `counterfake.toml` in the home directory), then `COUNTERFAKE_*`
environment variables. Nothing else reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from .errors import UsageError

__all__ = ["DEFAULTS", "SETTINGS", "Setting", "Settings", "load_settings"]


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "COUNTERFAKE_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("home", Path, None, "Data directory; the SQLite store lives here."),
    Setting(
        "database_url",
        str,
        None,
        "SQLAlchemy URL of the store, e.g. postgresql+psycopg://user@host/db."
        " Default: SQLite file counterfake.db in the home directory.",
    ),
    Setting("max_bytes", int, 50_000_000, "Largest image file accepted, in bytes."),
    Setting("max_pixels", int, 100_000_000, "Largest image accepted, in pixels (width x height)."),
    Setting("max_frames", int, 1000, "Most frames accepted in an animated image."),
    Setting(
        "pdq_threshold",
        int,
        31,
        "Default PDQ match distance for new banks (PDQ's recommended 31 bits).",
    ),
    Setting("pdq_min_quality", int, 50, "PDQ hashes below this quality never match."),
    Setting("hash_concurrency", int, 2, "Service: images hashed at once per worker."),
    Setting(
        "hash_processes",
        int,
        0,
        "CLI: processes that hash a batch of files (0: one per core; 1: this one only).",
    ),
    Setting(
        "hash_queue", int, 64, "Service: uploads waiting to be hashed per worker before 503 busy."
    ),
    Setting(
        "json_max_bytes",
        int,
        256 * 1024,
        "Service: largest JSON body (a batch of signals may be 32 times this).",
    ),
    Setting("body_timeout", float, 60.0, "Service: seconds allowed to receive a request body."),
    Setting(
        "client_uploads",
        int,
        16,
        "Service: bodies one client address may be sending at once, per worker.",
    ),
    Setting(
        "rate_limit",
        float,
        0.0,
        "Service: requests a second one API key may make (unless the key has a rate of its"
        " own), across the workers; more get 429 rate_limited with Retry-After. 0 (the"
        " default): no limit.",
    ),
    Setting(
        "rate_burst",
        int,
        0,
        "Service: requests a key (or an address) may make at once before its rate applies"
        " (0: one second's worth).",
    ),
    Setting(
        "address_rate_limit",
        float,
        0.0,
        "Service: requests a second one client address may make to the routes that take no"
        " key (intake, the protect and review pages, keyless HMA), across the workers. 0: no"
        " limit.",
    ),
    Setting(
        "statement_timeout",
        float,
        30.0,
        "Store (PostgreSQL): seconds one SQL statement may run, or wait on a lock, before it is"
        " canceled with store_timeout (503; retry); a call still unanswered 5 s later has its"
        " connection closed (store_unavailable). 0: no limit.",
    ),
    Setting("fetch_urls", bool, False, "Service: let clients submit an image by URL (off)."),
    Setting(
        "fetch_allow",
        str,
        "",
        "Service: comma-separated networks (CIDR) the URL fetcher may reach although they are"
        " private, e.g. an internal CDN. Nothing by default.",
    ),
    Setting("fetch_timeout", float, 10.0, "Service: seconds allowed for one URL fetch."),
    Setting(
        "hma_anonymous_tenant",
        str,
        "",
        "Service: serve the HMA routes (/m, /h, /c) without a key, as this tenant with the"
        " match and curate scopes, to clients in hma_anonymous_networks (HMA clients such as"
        " ROOST Coop send no key). Off when empty (the default).",
    ),
    Setting(
        "hma_anonymous_networks",
        str,
        "127.0.0.0/8,::1/128",
        "Service: comma-separated networks (CIDR) keyless HMA calls may come from.",
    ),
    Setting(
        "intake_bank",
        str,
        "",
        "Service: take signature files without a key at POST /v1/intake (the protect page's"
        " 'send') into this bank, created if missing. Off when empty (the default).",
    ),
    Setting("intake_max_photos", int, 100, "Service: most photos in one intake submission."),
    Setting(
        "intake_address_daily",
        int,
        20,
        "Service: intake submissions one client address may make per UTC day.",
    ),
    Setting("intake_daily", int, 5000, "Service: intake submissions per UTC day, in all."),
    Setting(
        "review_retention",
        str,
        "",
        "Review: keep an image looked up with review=1 this long for its open case (72h, 30m,"
        " 7d), so reviewers see a blurred preview; purged on decision or expiry. Off when empty.",
    ),
    Setting(
        "exchange_timeout",
        float,
        30.0,
        "Exchanges: seconds a source may stay silent; a page must arrive within four times it.",
    ),
    Setting(
        "shards",
        str,
        "",
        "Service: addresses of the derivative shortlist's shards in part order, comma"
        " separated (unix:PATH or HOST:PORT; `counterfake shard`). Empty: each worker holds"
        " the whole shortlist.",
    ),
    Setting(
        "shard_key",
        str,
        "",
        "The secret shards and the workers that ask them share (never logged).",
    ),
)


#: Each setting's default, by name: what every other module takes a default from.
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with `load_settings()`. Defaults come from SETTINGS."""

    home: Path
    database_url: str | None = DEFAULTS["database_url"]
    max_bytes: int = DEFAULTS["max_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    max_frames: int = DEFAULTS["max_frames"]
    pdq_threshold: int = DEFAULTS["pdq_threshold"]
    pdq_min_quality: int = DEFAULTS["pdq_min_quality"]
    hash_concurrency: int = DEFAULTS["hash_concurrency"]
    hash_processes: int = DEFAULTS["hash_processes"]
    hash_queue: int = DEFAULTS["hash_queue"]
    json_max_bytes: int = DEFAULTS["json_max_bytes"]
    body_timeout: float = DEFAULTS["body_timeout"]
    client_uploads: int = DEFAULTS["client_uploads"]
    rate_limit: float = DEFAULTS["rate_limit"]
    rate_burst: int = DEFAULTS["rate_burst"]
    address_rate_limit: float = DEFAULTS["address_rate_limit"]
    fetch_urls: bool = DEFAULTS["fetch_urls"]
    fetch_allow: str = DEFAULTS["fetch_allow"]
    statement_timeout: float = DEFAULTS["statement_timeout"]
    fetch_timeout: float = DEFAULTS["fetch_timeout"]
    hma_anonymous_tenant: str = DEFAULTS["hma_anonymous_tenant"]
    hma_anonymous_networks: str = DEFAULTS["hma_anonymous_networks"]
    intake_bank: str = DEFAULTS["intake_bank"]
    intake_max_photos: int = DEFAULTS["intake_max_photos"]
    intake_address_daily: int = DEFAULTS["intake_address_daily"]
    intake_daily: int = DEFAULTS["intake_daily"]
    exchange_timeout: float = DEFAULTS["exchange_timeout"]
    review_retention: str = DEFAULTS["review_retention"]
    shards: str = DEFAULTS["shards"]
    shard_key: str = dataclasses.field(default=DEFAULTS["shard_key"], repr=False)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'counterfake.db'}"


def _coerce(setting: Setting, raw: Any) -> Any:
    try:
        if setting.type is Path:
            return Path(str(raw)).expanduser()
        if setting.type is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if setting.type is int:
            return int(raw)
        if setting.type is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"setting {setting.name}: cannot read {raw!r} as {setting.type.__name__}"
        ) from exc


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from defaults, the optional TOML file, the environment and overrides."""
    env = os.environ if environ is None else environ
    known = {s.name: s for s in SETTINGS}
    unknown = set(overrides) - set(known)
    if unknown:
        raise UsageError(f"unknown settings: {sorted(unknown)}")

    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    home_raw = overrides.get("home") or env.get("COUNTERFAKE_HOME")
    home = (
        Path(home_raw).expanduser() if home_raw else Path(platformdirs.user_data_dir("counterfake"))
    )
    config = env.get("COUNTERFAKE_CONFIG")
    config_path = Path(config) if config else home / "counterfake.toml"
    if config_path.is_file():
        with config_path.open("rb") as fh:
            data = tomllib.load(fh)
        for key, raw in data.items():
            if key not in known:
                raise UsageError(f"{config_path}: unknown setting {key!r}")
            values[key] = _coerce(known[key], raw)
    for setting in SETTINGS:
        if setting.env in env and env[setting.env] != "":
            values[setting.name] = _coerce(setting, env[setting.env])
    for key, raw in overrides.items():
        if raw is not None:
            values[key] = _coerce(known[key], raw)
    values["home"] = values["home"] or home
    return Settings(**values)
