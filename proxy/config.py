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


@dataclass(frozen=True)
class UpstreamConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    # Used by `init`, and by `serve` once at start to verify the root key fingerprint.
    # Client sessions always log in upstream with the client's own credentials.
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    connect_timeout: float = 10.0


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
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    root_key: RootKeyConfig = field(default_factory=RootKeyConfig)
    log: LogConfig = field(default_factory=LogConfig)


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
        if getattr(default, key) is not None and not isinstance(value, expected):
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
    return replace(Config(), **parts)
