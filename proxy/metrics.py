"""Prometheus metrics: what the proxy counts, and the HTTP endpoint that serves them.

Metrics live in a registry of their own (not prometheus_client's global one), so
the endpoint shows the proxy's figures only. Labels take values from small fixed
sets (strategy, direction, SQLSTATE, pgsodium function name): never SQL text,
user names or values.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily

from . import codec
from .config import ConfigError, MetricsConfig

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
_PREFIX = "pgsodium_proxy_"

SESSIONS_OPEN = Gauge(
    _PREFIX + "sessions_open", "Client sessions open now", registry=REGISTRY
)
SESSIONS = Counter(
    _PREFIX + "sessions", "Client connections accepted", registry=REGISTRY
)
SESSIONS_REFUSED = Counter(
    _PREFIX + "sessions_refused",
    "Client connections refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
STATEMENTS = Counter(
    _PREFIX + "statements",
    "Query and Parse messages by evaluation strategy: passthrough, fold, per_row, "
    "refused",
    ["strategy"],
    registry=REGISTRY,
)
ERRORS = Counter(
    _PREFIX + "errors",
    "ErrorResponse messages the proxy itself sent, by SQLSTATE",
    ["sqlstate"],
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    _PREFIX + "upstream_errors",
    "ErrorResponse messages received from the upstream, by SQLSTATE",
    ["sqlstate"],
    registry=REGISTRY,
)
BYTES = Counter(
    _PREFIX + "bytes",
    "Bytes received, by direction (from_client, from_upstream)",
    ["direction"],
    registry=REGISTRY,
)


class _Tally:
    """crypto_operations_total, counted once per computed value (a million for a
    million rows), so a plain integer per function: Counter.inc() takes a lock and
    costs a tenth of a row's decryption (bench/rows.py). The event loop's thread
    alone counts; a scrape, from prometheus_client's thread, reads the integers
    through its custom-collector interface."""

    name = _PREFIX + "crypto_operations"
    documentation = "pgsodium functions evaluated by the proxy, by function name"

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}

    def cell(self, function: str) -> list[int]:
        """The one-element list whose item counts `function`'s evaluations."""
        cell = self._counts.get(function)
        if cell is None:
            cell = self._counts[function] = [0]
        return cell

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation, labels=["function"])]

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["function"])
        for function, cell in sorted(self._counts.items()):
            family.add_metric([function], cell[0])
        return [family]


CRYPTO = _Tally()
REGISTRY.register(CRYPTO)
INTERCEPT_SECONDS = Histogram(
    _PREFIX + "intercept_seconds",
    "Time the proxy spent on a statement that involves pgsodium before it went "
    "upstream (planning, key lookups, computing), by strategy",
    ["strategy"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
UPSTREAM_CONNECT = Histogram(
    _PREFIX + "upstream_connect_seconds",
    "Time to open a connection to the upstream (TLS included)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    registry=REGISTRY,
)

# Bound once: these are counted on the hot path (labels() costs ~1 µs, inc() ~0.3).
FROM_CLIENT = BYTES.labels("from_client")
FROM_UPSTREAM = BYTES.labels("from_upstream")
PASSTHROUGH = STATEMENTS.labels("passthrough")


def error_response(severity: str, sqlstate: str, message: str) -> bytes:
    """codec.error_response for an error of the proxy's own, counted."""
    ERRORS.labels(sqlstate).inc()
    return codec.error_response(severity, sqlstate, message)


class Endpoint:
    """The /metrics HTTP endpoint, served from a thread of prometheus_client's."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        if not self.config.enabled:
            return
        try:
            self._server, self._thread = start_http_server(
                self.config.port, addr=self.config.host, registry=REGISTRY
            )
        except OSError as exc:
            raise ConfigError(
                f"[metrics] cannot listen on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", self.config.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
