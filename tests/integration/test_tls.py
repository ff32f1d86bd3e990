"""TLS on both legs: clients verify the proxy's certificate (psql, psycopg, asyncpg),
the proxy verifies the upstream's, and SCRAM never offers channel binding across
the proxy."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import psycopg
import pytest

from proxy import codec
from proxy.cluster import Cluster
from proxy.config import Config, ListenConfig, UpstreamConfig

from .background import background_proxy, own_cluster
from .certs import Certs, make_certs
from .conftest import RunningProxy
from .test_passthrough import RawClient, bounded

SCRAM_USER, SCRAM_PASSWORD = "tls_scram_user", "scram över tls"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"), "proxy")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls-other"), "other")


def _listen_tls(certs: Certs) -> ListenConfig:
    return ListenConfig(
        host="127.0.0.1",
        port=0,
        ssl=True,
        ssl_cert_file=str(certs.cert),
        ssl_key_file=str(certs.key),
    )


@pytest.fixture(scope="module")
def tls_proxy(pg_cluster: Cluster, certs: Certs) -> Iterator[RunningProxy]:
    """A TLS-offering proxy in front of the suite's (plain text) cluster."""
    pg_cluster.psql(
        f"DROP ROLE IF EXISTS {SCRAM_USER}; SET password_encryption = 'scram-sha-256';"
        f" CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"
    )
    dsn = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/postgres"
    config = Config(
        listen=_listen_tls(certs),
        upstream=UpstreamConfig(port=pg_cluster.port, admin_dsn=dsn, sslmode="disable"),
    )
    with background_proxy(config, pg_cluster, install=True) as running:
        yield running


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_psycopg_connects_with_each_sslmode(
    sslmode: str, tls_proxy: RunningProxy, certs: Certs
) -> None:
    with psycopg.connect(
        tls_proxy.dsn(), sslmode=sslmode, sslrootcert=str(certs.ca), connect_timeout=10
    ) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 1 + 1").fetchone() == (2,)
        row = conn.execute("select length(pgsodium.crypto_auth_keygen())").fetchone()
        assert row == (32,)


def test_psql_verify_full_reports_a_tls_connection(
    tls_proxy: RunningProxy, certs: Certs
) -> None:
    done = subprocess.run(
        [
            shutil.which("psql") or "psql",
            "-X",
            f"{tls_proxy.dsn()} sslmode=verify-full sslrootcert={certs.ca}",
            "-c",
            "\\conninfo",
            "-c",
            "select 42",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "SSL connection (protocol: TLSv1." in done.stdout
    assert "42" in done.stdout


def test_a_client_trusting_another_ca_refuses_the_proxy(
    tls_proxy: RunningProxy, other_ca: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(
            tls_proxy.dsn(), sslmode="verify-full", sslrootcert=str(other_ca.ca)
        )
    # The client's refusal is its own business: a warning, never "internal error".
    deadline = time.monotonic() + 10
    while "session closed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake with the client failed" in caplog.text
    assert "internal error" not in caplog.text


@bounded()
async def test_asyncpg_verifies_the_proxy_and_logs_in_with_scram(
    tls_proxy: RunningProxy, certs: Certs
) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    conn = await asyncpg.connect(
        host="localhost",
        port=tls_proxy.port,
        user=SCRAM_USER,
        password=SCRAM_PASSWORD,
        database="postgres",
        ssl=context,
    )
    try:
        assert await conn.fetchval("select current_user") == SCRAM_USER
    finally:
        await conn.close()


def test_psycopg_scram_over_tls_with_default_channel_binding(
    tls_proxy: RunningProxy, certs: Certs
) -> None:
    """libpq prefers channel binding over TLS; the proxy never offers it, so libpq
    uses plain SCRAM-SHA-256 and the (plain text) upstream accepts that."""
    with psycopg.connect(
        tls_proxy.dsn(user=SCRAM_USER),
        password=SCRAM_PASSWORD,
        sslmode="verify-full",
        sslrootcert=str(certs.ca),
    ) as conn:
        assert conn.execute("select current_user").fetchone() == (SCRAM_USER,)
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        psycopg.connect(
            tls_proxy.dsn(user=SCRAM_USER),
            password=SCRAM_PASSWORD,
            sslmode="verify-full",
            sslrootcert=str(certs.ca),
            channel_binding="require",
        )


@bounded()
async def test_plain_bytes_after_sslrequest_are_refused(
    tls_proxy: RunningProxy,
) -> None:
    """CVE-2021-23214: bytes sent before the handshake must not count as encrypted."""
    client = await RawClient.open(tls_proxy.host, tls_proxy.port)
    startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "postgres"}).encode()
    await client.send_bytes(codec.SSLRequest().encode() + startup)
    frame = await client.next()
    assert frame is not None and frame.type == ord("E")
    error = codec.decode_backend(frame)
    assert error.sqlstate == "08P01"
    assert "unencrypted data after SSL request" in error.message
    assert await client.next() is None


# -- proxy -> upstream ----------------------------------------------------------------


def _ssl_files(certs: Certs) -> object:
    def prepare(cluster: Cluster) -> None:
        for source, name in ((certs.cert, "server.crt"), (certs.key, "server.key")):
            target = cluster.datadir / name
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
        cluster._chown(cluster.datadir)

    return prepare


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[Cluster]:
    """A cluster that takes TLS connections only (hostnossl is rejected)."""
    hba = [
        "hostnossl all all 127.0.0.1/32 reject",
        f"hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256",
        "hostssl all all 127.0.0.1/32 trust",
    ]
    with own_cluster(
        hba_lines=hba,
        settings={
            "ssl": "on",
            "ssl_cert_file": "server.crt",
            "ssl_key_file": "server.key",
        },
        prepare=_ssl_files(certs),
    ) as cluster:
        cluster.psql(
            "SET password_encryption = 'scram-sha-256';"
            f" CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"
        )
        yield cluster


def _upstream(cluster: Cluster, **tls: str) -> UpstreamConfig:
    # The admin DSN goes through libpq-style sslmode in asyncpg's URL.
    dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=require"
    return UpstreamConfig(port=cluster.port, admin_dsn=dsn, connect_timeout=5, **tls)


def test_upstream_tls_verified_by_default_when_a_ca_is_given(
    tls_cluster: Cluster, certs: Certs
) -> None:
    upstream = _upstream(tls_cluster, sslrootcert=str(certs.ca))
    assert upstream.effective_sslmode == "verify-full"
    config = Config(listen=ListenConfig(port=0), upstream=upstream)
    with (
        background_proxy(config, tls_cluster, install=True) as running,
        psycopg.connect(running.dsn()) as conn,
    ):
        row = conn.execute(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
        assert row == (True,)
        row = conn.execute("select length(pgsodium.crypto_auth_keygen())").fetchone()
        assert row == (32,)


def test_upstream_with_an_unknown_ca_is_refused(
    tls_cluster: Cluster, other_ca: Certs
) -> None:
    upstream = _upstream(tls_cluster, sslrootcert=str(other_ca.ca))
    config = Config(listen=ListenConfig(port=0), upstream=upstream)
    with background_proxy(config, tls_cluster) as running:
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(running.dsn())
        assert "cannot reach the upstream" in str(caught.value)


def test_sslmode_disable_reaches_an_upstream_that_wants_tls_in_plain_text(
    tls_cluster: Cluster,
) -> None:
    config = Config(
        listen=ListenConfig(port=0), upstream=_upstream(tls_cluster, sslmode="disable")
    )
    with background_proxy(config, tls_cluster) as running:
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(running.dsn())


@bounded()
async def test_upstream_channel_binding_is_not_offered_to_clients(
    tls_cluster: Cluster, certs: Certs
) -> None:
    """The upstream offers SCRAM-SHA-256-PLUS over its TLS; the client must not see
    it (it would bind to a certificate the upstream never presented to it)."""
    upstream = _upstream(tls_cluster, sslmode="verify-ca", sslrootcert=str(certs.ca))
    config = Config(listen=ListenConfig(port=0), upstream=upstream)
    with background_proxy(config, tls_cluster) as running:
        client = await RawClient.open(running.host, running.port)
        params = {"user": SCRAM_USER, "database": "postgres"}
        await client.send(codec.StartupMessage(codec.PROTOCOL_3_0, params))
        frame = await client.next()
        assert frame is not None and frame.type == ord("R")
        assert struct.unpack_from("!i", frame.body)[0] == 10
        assert frame.body[4:] == b"SCRAM-SHA-256\0\0"
        client.writer.close()

        conn = await asyncpg.connect(
            host=running.host,
            port=running.port,
            user=SCRAM_USER,
            password=SCRAM_PASSWORD,
            database="postgres",
            ssl=False,
        )
        try:
            assert await conn.fetchval("select current_user") == SCRAM_USER
        finally:
            await conn.close()


def test_scram_with_tls_on_both_legs_needs_channel_binding_disabled(
    tls_cluster: Cluster, certs: Certs
) -> None:
    """Over TLS, libpq with channel_binding=prefer sends the SCRAM flag "y" (the
    server offered no binding); an upstream on TLS must refuse that flag, so libpq
    clients set channel_binding=disable when both legs use TLS (README)."""
    upstream = _upstream(tls_cluster, sslrootcert=str(certs.ca))
    config = Config(listen=_listen_tls(certs), upstream=upstream)
    with background_proxy(config, tls_cluster) as running:
        common = {
            "password": SCRAM_PASSWORD,
            "sslmode": "verify-full",
            "sslrootcert": str(certs.ca),
        }
        with psycopg.connect(
            running.dsn(user=SCRAM_USER), channel_binding="disable", **common
        ) as conn:
            assert conn.execute("select current_user").fetchone() == (SCRAM_USER,)
        with pytest.raises(psycopg.OperationalError, match="channel binding"):
            psycopg.connect(running.dsn(user=SCRAM_USER), **common)


def test_tls_settings_are_checked_at_start(certs: Certs, tmp_path: Path) -> None:
    from proxy.config import ConfigError
    from proxy.server import Server

    from .conftest import ROOT_KEY

    missing = replace(_listen_tls(certs), ssl_key_file=str(tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match="cannot load ssl_cert_file"):
        Server(Config(listen=missing), ROOT_KEY)


@bounded()
async def test_cancel_reaches_a_statement_of_a_tls_session(
    tls_proxy: RunningProxy, certs: Certs
) -> None:
    """libpq's non-blocking cancel opens a new connection, encrypted like the
    session's (libpq 17+); the proxy takes the CancelRequest inside TLS. (Not the
    blocking conn.cancel(): it holds the GIL, and this proxy runs in-process.)"""
    async with await psycopg.AsyncConnection.connect(
        tls_proxy.dsn(), sslmode="verify-full", sslrootcert=str(certs.ca)
    ) as conn:
        query = asyncio.create_task(conn.execute("select pg_sleep(20)"))
        await asyncio.sleep(0.3)
        await conn.cancel_safe(timeout=10)
        with pytest.raises(psycopg.errors.QueryCanceled):
            await query
        await conn.rollback()
        cursor = await conn.execute("select 5")
        assert await cursor.fetchone() == (5,)
