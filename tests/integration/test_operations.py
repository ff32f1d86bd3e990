"""The `serve` process as an operator runs it: SIGTERM, SIGHUP, `check`, metrics."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from keystore.rootkey import generate_key_file
from proxy.cluster import Cluster, free_port

from .certs import Certs, make_certs
from .test_cli import BIN, _run, _wait_for_port


@pytest.fixture(scope="module")
def ops_db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the schema installed under a root key of its own."""
    pg_cluster.psql("DROP DATABASE IF EXISTS opsdb")
    pg_cluster.psql("CREATE DATABASE opsdb")
    key = tmp_path_factory.mktemp("ops") / "root.key"
    generate_key_file(key)
    return key


def _write(path: Path, cluster: Cluster, key: Path, port: int, extra: str = "") -> Path:
    path.write_text(
        f"""
[listen]
port = {port}
shutdown_timeout = 2.0
{extra}
[upstream]
port = {cluster.port}
admin_dsn = "postgresql://postgres@127.0.0.1:{cluster.port}/opsdb"
connect_timeout = 5.0
[root_key]
file = "{key}"
"""
    )
    return path


class Serving:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.process = subprocess.Popen(
            [str(BIN), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w"),  # noqa: SIM115 - the child owns it
            text=True,
        )

    def dsn(self, port: int | None = None) -> str:
        return f"host=127.0.0.1 port={port or self.port} user=postgres dbname=opsdb"

    def wait_log(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the log:\n{self.log.read_text()}")


@pytest.fixture
def serving(tmp_path: Path, pg_cluster: Cluster, ops_db: Path) -> Iterator[Serving]:
    init = _write(tmp_path / "init.toml", pg_cluster, ops_db, 1)
    assert _run("init", "--config", str(init)).returncode == 0
    port = free_port()
    config = _write(tmp_path / "proxy.toml", pg_cluster, ops_db, port)
    running = Serving(config, port, tmp_path / "proxy.log")
    _wait_for_port(port, running.process)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(10)


def test_sigterm_lets_a_running_statement_finish_and_refuses_new_sessions(
    serving: Serving, pg_cluster: Cluster
) -> None:
    results: list[object] = []
    with psycopg.connect(serving.dsn(), autocommit=True) as conn:

        def slow() -> None:
            try:
                results.append(conn.execute("select pg_sleep(1.5), 7").fetchone())
            except psycopg.Error as exc:
                results.append(exc)

        worker = threading.Thread(target=slow)
        worker.start()
        probe = (
            "select count(*) from pg_stat_activity"
            " where query like 'select pg_sleep(1.5)%'"
        )
        while pg_cluster.psql(probe).strip() != "1":
            time.sleep(0.05)
        serving.process.send_signal(signal.SIGTERM)
        serving.wait_log("shutting down: no new sessions")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(serving.dsn(), connect_timeout=2)
        worker.join(10)
        assert results == [("", 7)]
        # Past shutdown_timeout the idle session is closed (with 57P01, checked
        # byte for byte in test_faults; here the client's next write may meet the
        # closed socket's reset before libpq reads the FATAL, so either is seen).
        assert serving.process.wait(15) == 0
        with pytest.raises(
            psycopg.OperationalError,
            match="administrator command|closed the connection",
        ):
            conn.execute("select 1")
    assert "shut down" in serving.log.read_text()


def test_sighup_applies_what_it_can_and_names_what_needs_a_restart(
    serving: Serving, pg_cluster: Cluster, ops_db: Path
) -> None:
    _write(
        serving.config,
        pg_cluster,
        ops_db,
        free_port(),
        "max_clients = 1\nidle_timeout = 30.0\n[log]\nlevel = 'debug'\n",
    )
    serving.process.send_signal(signal.SIGHUP)
    text = serving.wait_log("changed but not applied")
    assert "changed listen.max_clients, listen.idle_timeout, log.level" in text
    assert "changed but not applied until a restart: listen.port" in text

    with psycopg.connect(serving.dsn()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            psycopg.connect(serving.dsn())

    serving.config.write_text("[listen]\nport = 'not a port'\n")
    serving.process.send_signal(signal.SIGHUP)
    serving.wait_log("reload refused, configuration unchanged")
    with psycopg.connect(serving.dsn()) as conn:
        assert conn.execute("select 2").fetchone() == (2,)


def _tls_extra(certs: Certs) -> str:
    return f"ssl = true\nssl_cert_file = '{certs.cert}'\nssl_key_file = '{certs.key}'\n"


def test_sighup_switches_the_tls_certificate_for_new_sessions(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path, serving: Serving
) -> None:
    old, new = make_certs(tmp_path, "old"), make_certs(tmp_path, "new")
    _write(serving.config, pg_cluster, ops_db, serving.port, _tls_extra(old))
    serving.process.send_signal(signal.SIGHUP)
    serving.wait_log("changed listen.ssl, listen.ssl_cert_file")
    kept = psycopg.connect(
        serving.dsn(), sslmode="verify-full", sslrootcert=str(old.ca)
    )

    _write(serving.config, pg_cluster, ops_db, serving.port, _tls_extra(new))
    serving.process.send_signal(signal.SIGHUP)
    serving.wait_log("changed listen.ssl_cert_file, listen.ssl_key_file")
    with psycopg.connect(
        serving.dsn(), sslmode="verify-full", sslrootcert=str(new.ca)
    ) as conn:
        assert conn.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(serving.dsn(), sslmode="verify-full", sslrootcert=str(old.ca))
    with kept:
        assert kept.execute("select 3").fetchone() == (3,)


# -- check ----------------------------------------------------------------------------


def test_check_reports_a_ready_configuration(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path
) -> None:
    config = _write(tmp_path / "c.toml", pg_cluster, ops_db, free_port())
    assert _run("init", "--config", str(config)).returncode == 0
    done = _run("check", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "admin DSN reached PostgreSQL" in done.stdout
    assert re.search(r"ok +root key matches the recorded fingerprint", done.stdout)
    assert ops_db.read_text().strip() not in done.stdout


def test_check_names_the_client_certificate_and_its_expiry(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path
) -> None:
    certs = make_certs(tmp_path, "check")
    config = _write(
        tmp_path / "c.toml", pg_cluster, ops_db, free_port(), _tls_extra(certs)
    )
    assert _run("init", "--config", str(config)).returncode == 0
    done = _run("check", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    # make_certs' certificates last one day: a note, not a failure.
    line = r"note +client TLS certificate .*CN=localhost.*\(in 0 days\)"
    assert re.search(line, done.stdout)
    assert certs.key.read_text() not in done.stdout


def test_check_fails_on_another_root_key(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path
) -> None:
    wrong = tmp_path / "wrong.key"
    generate_key_file(wrong)
    done = _run(
        "check", "--config", str(_write(tmp_path / "c.toml", pg_cluster, wrong, 1))
    )
    assert done.returncode == 1
    assert re.search(r"FAIL +root key mismatch", done.stdout)
    assert wrong.read_text().strip() not in done.stdout


def test_check_fails_when_the_upstream_is_unreachable(
    tmp_path: Path, ops_db: Path
) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f"[upstream]\nport = {port}\nconnect_timeout = 2.0\n"
        f"admin_dsn = 'postgresql://postgres@127.0.0.1:{port}/postgres'\n"
        f"[root_key]\nfile = '{ops_db}'\n"
    )
    done = _run("check", "--config", str(config))
    assert done.returncode == 1
    assert "FAIL upstream 127.0.0.1" in done.stdout
    assert "FAIL admin DSN" in done.stdout


def test_check_stops_on_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[upstream]\nsslmode = 'verify-full'\n")
    done = _run("check", "--config", str(config))
    assert done.returncode == 2
    assert "sslmode verify-full needs sslrootcert" in done.stderr


# -- metrics --------------------------------------------------------------------------


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_sessions_strategies_errors_bytes_and_crypto(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path
) -> None:
    metrics_port = free_port()
    port = free_port()
    config = _write(
        tmp_path / "m.toml",
        pg_cluster,
        ops_db,
        port,
        f"[metrics]\nenabled = true\nport = {metrics_port}\n",
    )
    assert _run("init", "--config", str(config)).returncode == 0
    running = Serving(config, port, tmp_path / "m.log")
    try:
        _wait_for_port(port, running.process)
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute("select 1")
            conn.execute("select length(pgsodium.crypto_auth_keygen())")
            conn.execute("select * from pgsodium.create_key()")
            conn.execute("select length(decrypted_raw_key) from pgsodium.decrypted_key")
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute(
                    "select 1 from pgsodium.decrypted_key "
                    "where decrypted_raw_key is not null"
                )
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("select 1/0")
            during = _scrape(metrics_port)
        p = "pgsodium_proxy_"
        assert during[p + "sessions_open"] == 1
        assert during[p + "sessions_total"] >= 2  # _wait_for_port's and this one
        assert during[p + 'statements_total{strategy="passthrough"}'] >= 2
        assert during[p + 'statements_total{strategy="fold"}'] == 1
        assert during[p + 'statements_total{strategy="per_row"}'] == 1
        assert during[p + 'statements_total{strategy="refused"}'] == 1
        assert during[p + 'errors_total{sqlstate="0A000"}'] == 1
        assert during[p + 'upstream_errors_total{sqlstate="22012"}'] == 1
        assert during[p + 'crypto_operations_total{function="crypto_auth_keygen"}'] == 1
        assert during[p + 'bytes_total{direction="from_client"}'] > 0
        assert during[p + 'bytes_total{direction="from_upstream"}'] > 0
        assert during[p + 'intercept_seconds_count{strategy="fold"}'] == 1
        assert during[p + "upstream_connect_seconds_count"] >= 2

        # Calls over rows with a key id run bound to their key: counted each row.
        decrypts = p + 'crypto_operations_total{function="crypto_aead_det_decrypt"}'
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            sealed = [
                conn.execute(
                    "select pgsodium.crypto_aead_det_encrypt(%s, ''::bytea, 1::bigint)",
                    [word],
                ).fetchone()[0]  # type: ignore[index]
                for word in (b"a", b"b", b"c")
            ]
            assert conn.execute(
                "select pgsodium.crypto_aead_det_decrypt(c, ''::bytea, 1::bigint) "
                "from (values (%s::bytea), (%s::bytea), (%s::bytea)) v(c)",
                sealed,
            ).fetchall() == [(b"a",), (b"b",), (b"c",)]
        assert _scrape(metrics_port).get(decrypts, 0) - during.get(decrypts, 0) == 3
    finally:
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(20)


def test_serve_names_a_port_it_cannot_listen_on(
    tmp_path: Path, pg_cluster: Cluster, ops_db: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _write(tmp_path / "c.toml", pg_cluster, ops_db, port)
        assert _run("init", "--config", str(config)).returncode == 0
        done = _run("serve", "--config", str(config))
    assert done.returncode == 2
    assert f"[listen] cannot listen on 127.0.0.1:{port}" in done.stderr
