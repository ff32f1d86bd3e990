"""Configuration: a frozen value built from defaults, then a TOML file, then flags.

Every setting is documented in config.example.toml; this module and that file must
name the same settings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from keystore.rootkey import RootKey, load_from_command, load_from_file


class ConfigError(ValueError):
    """The configuration file or a flag is wrong; the message says where."""


@dataclass(frozen=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 6432
    max_clients: int = 1000
    # TLS for clients: off answers SSLRequest with 'N' (plain text only).
    ssl: bool = False
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    # Seconds a client has to finish startup and authentication (PostgreSQL's
    # authentication_timeout); 0 means no limit.
    startup_timeout: float = 60.0
    # Seconds a client may stay idle between statements before it is closed
    # (PostgreSQL's idle_session_timeout); 0 means no limit.
    idle_timeout: float = 0.0
    # Seconds open sessions get to finish after SIGTERM/SIGINT.
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class UpstreamConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    # Used by `init`, and by `serve` once at start to verify the root key fingerprint.
    # Client sessions always log in upstream with the client's own credentials.
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    connect_timeout: float = 10.0
    # TLS to the upstream, as libpq's sslmode: disable, allow, prefer, require,
    # verify-ca, verify-full. Unset: verify-full when sslrootcert is set, else prefer.
    sslmode: str | None = None
    sslrootcert: str | None = None
    # A client certificate for the upstream, when pg_hba.conf asks for one.
    sslcert: str | None = None
    sslkey: str | None = None

    @property
    def effective_sslmode(self) -> str:
        if self.sslmode is not None:
            return self.sslmode
        return "verify-full" if self.sslrootcert else "prefer"


@dataclass(frozen=True)
class RootKeyConfig:
    command: str | None = None
    file: str | None = None

    def load(self) -> RootKey:
        if self.command and self.file:
            raise ConfigError("[root_key]: set either command or file, not both")
        if self.command:
            return load_from_command(self.command)
        if self.file:
            return load_from_file(Path(self.file))
        raise ConfigError("[root_key]: set command or file; no root key is configured")


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    # SQL text appears in logs only when this is true; bind values never do.
    sql_text: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    # Prometheus metrics over HTTP at http://host:port/metrics; off by default.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9187


@dataclass(frozen=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    root_key: RootKeyConfig = field(default_factory=RootKeyConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOG_LEVELS = ("debug", "info", "warning", "error")


_SECTIONS = {f.name: f.type for f in fields(Config)}


def _section(cls: type, name: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"[{name}]: unknown setting(s) {', '.join(unknown)}")
    default = cls()
    checked: dict[str, Any] = {}
    for key, value in values.items():
        expected = type(getattr(default, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if getattr(default, key) is None:
            expected = str  # every optional setting is a string (a path, a mode)
        if not isinstance(value, expected):
            raise ConfigError(
                f"[{name}] {key}: expected {expected.__name__}, "
                f"got {type(value).__name__}"
            )
        checked[key] = value
    return replace(default, **checked)


def load(path: Path | None) -> Config:
    """Defaults, overlaid by the TOML file at `path` when given."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}")
    parts = {
        name: _section(type(getattr(Config(), name)), name, data[name])
        for name in _SECTIONS
        if name in data
    }
    return validate(replace(Config(), **parts))


def validate(config: Config) -> Config:
    """Checks that span settings; raises ConfigError naming the setting."""
    listen, upstream = config.listen, config.upstream
    if listen.ssl and not (listen.ssl_cert_file and listen.ssl_key_file):
        raise ConfigError("[listen] ssl = true needs ssl_cert_file and ssl_key_file")
    if upstream.effective_sslmode not in SSLMODES:
        raise ConfigError(
            f"[upstream] sslmode: {upstream.sslmode!r} is not one of "
            f"{', '.join(SSLMODES)}"
        )
    if upstream.effective_sslmode.startswith("verify") and not upstream.sslrootcert:
        raise ConfigError(f"[upstream] sslmode {upstream.sslmode} needs sslrootcert")
    if config.log.level.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"[log] level: {config.log.level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    for name in ("max_clients", "startup_timeout", "idle_timeout", "shutdown_timeout"):
        if getattr(listen, name) < 0:
            raise ConfigError(f"[listen] {name} must not be negative")
    return config
