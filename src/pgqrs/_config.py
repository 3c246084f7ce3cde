"""Connection and behaviour settings, each with a named default.

Every default below is the value used when neither the caller nor the
environment says otherwise; the README's configuration table lists them with
their environment variables.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg.conninfo

from pgqrs._errors import ConfigError
from pgqrs._validate import validate_schema_name

#: Schema holding pgqrs's tables; created by ``Admin.install()`` when missing.
DEFAULT_SCHEMA = "pgqrs"
#: Seconds a dequeued message stays invisible to other consumers (queue default).
DEFAULT_VISIBILITY_TIMEOUT = 30.0
#: Deliveries after which an unfinished message is archived as ``dead``.
DEFAULT_MAX_ATTEMPTS = 5
#: Connections a pool keeps open while idle.
DEFAULT_POOL_MIN_SIZE = 1
#: Connections a pool opens at most (per Admin/Producer/Consumer unless shared).
DEFAULT_POOL_MAX_SIZE = 10
#: Seconds to wait for a connection (from the server, or from a busy pool).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Largest encoded payload accepted, in bytes (checked before any round trip).
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: Server-side prepared statements. Off: pgBouncer in transaction mode cannot
#: keep them; turn on only for direct connections.
DEFAULT_PREPARE_STATEMENTS = False
#: ``application_name`` reported in ``pg_stat_activity``.
DEFAULT_APPLICATION_NAME = "pgqrs"

#: Environment variables read by ``Config.from_env()``, by option.
ENV_VARS: dict[str, str] = {
    "dsn": "PGQRS_DSN",
    "schema": "PGQRS_SCHEMA",
    "pool_min_size": "PGQRS_POOL_MIN_SIZE",
    "pool_max_size": "PGQRS_POOL_MAX_SIZE",
    "connect_timeout": "PGQRS_CONNECT_TIMEOUT",
    "max_payload_bytes": "PGQRS_MAX_PAYLOAD_BYTES",
    "prepare_statements": "PGQRS_PREPARE_STATEMENTS",
    "application_name": "PGQRS_APPLICATION_NAME",
}
#: Read for the DSN when ``PGQRS_DSN`` is not set, as many platforms set it.
FALLBACK_DSN_ENV_VAR = "DATABASE_URL"
#: A file holding the DSN (first line), read when ``PGQRS_DSN`` is not set:
#: keeps a password out of the process list and of shell history.
DSN_FILE_ENV_VAR = "PGQRS_DSN_FILE"


@dataclasses.dataclass(frozen=True)
class Config:
    """Where the database is and how pgqrs talks to it. Immutable; share it freely."""

    dsn: str
    schema: str = DEFAULT_SCHEMA
    pool_min_size: int = DEFAULT_POOL_MIN_SIZE
    pool_max_size: int = DEFAULT_POOL_MAX_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    prepare_statements: bool = DEFAULT_PREPARE_STATEMENTS
    application_name: str = DEFAULT_APPLICATION_NAME

    def __post_init__(self) -> None:
        if not isinstance(self.dsn, str) or not self.dsn.strip():
            raise ConfigError(
                "dsn must be a non-empty connection string, e.g. postgresql://user@host/db"
            )
        check_dsn(self.dsn)
        validate_schema_name(self.schema)
        if (
            self.pool_min_size < 0
            or self.pool_max_size < 1
            or self.pool_min_size > self.pool_max_size
        ):
            raise ConfigError(
                f"pool sizes must satisfy 0 <= pool_min_size ({self.pool_min_size}) "
                f"<= pool_max_size ({self.pool_max_size}) and pool_max_size >= 1"
            )
        if not self.connect_timeout > 0:
            raise ConfigError(f"connect_timeout must be > 0 seconds, got {self.connect_timeout!r}")
        if self.max_payload_bytes < 1:
            raise ConfigError(f"max_payload_bytes must be >= 1, got {self.max_payload_bytes!r}")

    def __repr__(self) -> str:
        # The DSN may hold a password: show it masked, as in every log and error.
        fields = [f"dsn={mask_dsn(self.dsn)!r}"] + [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "dsn"
        ]
        return f"Config({', '.join(fields)})"

    __str__ = __repr__

    @classmethod
    def from_dsn(cls, dsn: str, **options: Any) -> Config:
        """Build a Config from a connection string; ``options`` are the other fields."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)} - {"dsn"}
        if unknown:
            raise ConfigError(f"unknown Config option(s): {', '.join(sorted(unknown))}")
        return cls(dsn=dsn, **options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Config:
        """Build a Config from ``PGQRS_*`` variables (see ``ENV_VARS``); ``options`` win.

        With no DSN at all, starts or reuses the embedded local server (see
        ``pgqrs._embedded``; installed by ``pip install 'pgqrs[embedded]'``)
        unless ``PGQRS_EMBEDDED=0``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_VARS[field.name])
            if raw is None or raw == "":
                continue
            values[field.name] = _parse_env(field.name, ENV_VARS[field.name], raw, field.type)
        if "dsn" not in values and env.get(DSN_FILE_ENV_VAR):
            values["dsn"] = read_dsn_file(env[DSN_FILE_ENV_VAR], DSN_FILE_ENV_VAR)
        if "dsn" not in values and env.get(FALLBACK_DSN_ENV_VAR):
            values["dsn"] = env[FALLBACK_DSN_ENV_VAR]
        values.update(options)
        if not values.get("dsn"):
            # No DSN anywhere: the embedded default (a local server, see _embedded).
            from pgqrs import _embedded

            if not _embedded.enabled(env):
                raise ConfigError(
                    f"no database given: set {ENV_VARS['dsn']} (or {FALLBACK_DSN_ENV_VAR}) "
                    "to a connection string such as postgresql://user@localhost/db "
                    f"(or unset {_embedded.EMBEDDED_ENV_VAR} to use the embedded server)"
                )
            _embedded.require_installed(no_dsn=True)
            values["dsn"] = _embedded.ensure_server(env)
        return cls(**values)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every connection pgqrs opens."""
        return {
            "autocommit": True,
            "prepare_threshold": 5 if self.prepare_statements else None,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": self.application_name,
        }


def _parse_env(name: str, var: str, raw: str, type_: Any) -> Any:
    kind = str(type_)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind} for option {name!r}") from None
    return raw


#: Connection parameters whose values are shown in masked DSNs: a whitelist,
#: so any other (``password``, ``sslpassword``, ``oauth_client_secret``, a
#: parameter added by a later libpq) is masked, as in the Rust client.
SHOWN_DSN_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "application_name",
        "fallback_application_name",
        "connect_timeout",
        "client_encoding",
        "sslmode",
        "sslnegotiation",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "sslcertmode",
        "channel_binding",
        "target_session_attrs",
        "load_balance_hosts",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "gssencmode",
        "require_auth",
        "min_protocol_version",
        "max_protocol_version",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "passfile",
        "service",
    }
)
_QUOTED = re.compile(r'"([^"]*)"')


def mask_dsn(dsn: str) -> str:
    """The DSN with every value not known to be harmless replaced, for errors and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    return psycopg.conninfo.make_conninfo(
        **{
            k: str(v) if k in SHOWN_DSN_PARAMETERS else "***"
            for k, v in params.items()
            if v is not None
        }
    )


def has_password(dsn: str) -> bool:
    """Whether ``dsn`` carries a password (or another secret) in its text."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return bool(re.search(r"password|://[^/@]*:[^/@]+@", dsn, re.IGNORECASE))
    return any(v and k not in SHOWN_DSN_PARAMETERS and k != "options" for k, v in params.items())


def check_dsn(dsn: str, what: str = "DSN") -> None:
    """Raise a ConfigError unless libpq can parse ``dsn``; the message never repeats it.

    libpq's parse errors quote the fragment they stopped at, which may be a
    piece of the password (``missing "=" after "cret"``): quoted fragments are
    kept only when they are parameter names.
    """
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"invalid {what}: {scrub_dsn_error(str(exc), dsn)}; "
            "expected e.g. postgresql://user:password@host:5432/dbname"
        ) from None


def scrub_dsn_error(message: str, dsn: str) -> str:
    """libpq's message about ``dsn`` with the quoted pieces of the DSN masked."""

    def keep_names(match: re.Match[str]) -> str:
        fragment = match[1]
        if fragment in ("=", "") or (
            re.fullmatch(r"[a-z_]{1,40}", fragment) and re.search(rf"\b{fragment}=", dsn)
        ):
            return match[0]
        return '"***"'

    return " ".join(_QUOTED.sub(keep_names, message).split())


def read_dsn_file(path: str, where: str) -> str:
    """The DSN in the file ``path`` (its first non-blank line), for ``--dsn-file`` and
    ``PGQRS_DSN_FILE``: the way to pass a DSN that holds a password."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the DSN file {path!r} ({where}): {exc.__class__.__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"the DSN file {path!r} ({where}) is empty: write the DSN on its line")
    return lines[0]
