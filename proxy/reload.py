"""SIGHUP: read the configuration again and apply what can change while running.

Settings that only new sessions read (timeouts, max_clients, TLS files, logging)
take effect at once; the others keep their running value until a restart, with a
warning that names them. A configuration that does not load changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keystore.errors import KeystoreError

from . import config as configuration
from . import tls

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

# section -> settings applied while running. Everything else needs a restart:
# the listening socket, the upstream's address (cancel requests of open sessions go
# there), the admin DSN and root key (checked once at start), the metrics endpoint.
RELOADABLE = {
    "listen": {
        "max_clients",
        "ssl",
        "ssl_cert_file",
        "ssl_key_file",
        "startup_timeout",
        "idle_timeout",
        "shutdown_timeout",
    },
    "upstream": {"connect_timeout", "sslmode", "sslrootcert", "sslcert", "sslkey"},
    "log": {"level", "sql_text"},
}


def changes(
    old: configuration.Config, new: configuration.Config
) -> tuple[configuration.Config, list[str], list[str]]:
    """The config to run with, the settings applied, and those needing a restart."""
    applied: list[str] = []
    restart: list[str] = []
    sections: dict[str, Any] = {}
    for section in fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        kept: dict[str, Any] = {}
        for setting in fields(before):
            name = setting.name
            if getattr(before, name) == getattr(after, name):
                continue
            label = f"{section.name}.{name}"
            if name in RELOADABLE.get(section.name, ()):
                applied.append(label)
            else:
                restart.append(label)
                kept[name] = getattr(before, name)
        sections[section.name] = replace(after, **kept)
    return replace(new, **sections), applied, restart


def reload(server: Server, path: Path) -> bool:
    """Apply the file at `path` to a running server; False if it was refused."""
    try:
        new = configuration.load(path)
        running, applied, restart = changes(server.config, new)
        tls_server = tls.server_context(running.listen)
        tls_upstream = tls.upstream_context(running.upstream)
    except (configuration.ConfigError, KeystoreError) as exc:
        log.error("reload refused, configuration unchanged: %s", exc)
        return False

    server.config = running
    server.tls_server = tls_server
    server.tls_upstream = tls_upstream
    logging.getLogger().setLevel(running.log.level.upper())

    if applied:
        log.info("reloaded %s: changed %s", path, ", ".join(applied))
    else:
        log.info("reloaded %s: nothing changed that applies while running", path)
    if restart:
        log.warning("changed but not applied until a restart: %s", ", ".join(restart))
    return True
