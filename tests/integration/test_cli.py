"""The pgsodium-proxy command as an operator runs it: init, serve, demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from keystore.rootkey import generate_key_file
from proxy.cluster import Cluster, free_port

BIN = Path(sys.executable).parent / "pgsodium-proxy"


def _config(tmp: Path, cluster: Cluster, db: str, key: Path, port: int) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"""
[listen]
port = {port}
[upstream]
port = {cluster.port}
admin_dsn = "postgresql://postgres@127.0.0.1:{cluster.port}/{db}"
[root_key]
file = "{key}"
"""
    )
    return path


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=timeout
    )


def _wait_for_port(
    port: int, process: subprocess.Popen[str], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read() if process.stderr else "exited")
        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                connect_timeout=2,
            ):
                return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("the proxy did not start listening")


@pytest.fixture(scope="module")
def cli_db(pg_cluster: Cluster) -> str:
    pg_cluster.psql("DROP DATABASE IF EXISTS clidb")
    pg_cluster.psql("CREATE DATABASE clidb")
    return "clidb"


def test_init_is_idempotent_and_serve_runs_until_sigterm(
    tmp_path: Path, pg_cluster: Cluster, cli_db: str
) -> None:
    key = tmp_path / "root.key"
    generate_key_file(key)
    port = free_port()
    config = _config(tmp_path, pg_cluster, cli_db, key, port)
    first = _run("init", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "installed in database 'clidb'" in first.stdout
    again = _run("init", "--config", str(config))
    assert again.returncode == 0, again.stderr

    process = subprocess.Popen(
        [str(BIN), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, process)
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname={cli_db}",
            autocommit=True,
        ) as conn:
            row = conn.execute("select * from pgsodium.create_key()").fetchone()
            assert row[3] == "aead-det"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert key.read_text().strip() not in process.stderr.read()


def test_serve_refuses_a_root_key_other_than_the_recorded_one(
    tmp_path: Path, pg_cluster: Cluster, cli_db: str
) -> None:
    right = tmp_path / "right.key"
    generate_key_file(right)
    assert _run(
        "init", "--config", str(_config(tmp_path, pg_cluster, cli_db, right, 1))
    ).returncode in (0, 2)
    wrong = tmp_path / "wrong.key"
    generate_key_file(wrong)
    done = _run(
        "serve",
        "--config",
        str(_config(tmp_path, pg_cluster, cli_db, wrong, free_port())),
    )
    assert done.returncode == 2
    assert "root key" in done.stderr and "fingerprint" in done.stderr
    assert wrong.read_text().strip() not in done.stderr


def test_init_and_check_say_what_a_role_that_is_not_a_superuser_left_out(
    tmp_path: Path, pg_cluster: Cluster, cli_db: str
) -> None:
    """A database owner without superuser gets the schema, and is told (by init and
    by check) which parts of pgsodium's setup only a superuser's init makes."""
    pg_cluster.psql("DROP DATABASE IF EXISTS cli_weakdb")
    pg_cluster.psql("DROP ROLE IF EXISTS cli_weak")
    pg_cluster.psql("CREATE ROLE cli_weak LOGIN")
    pg_cluster.psql("CREATE DATABASE cli_weakdb OWNER cli_weak")
    key = tmp_path / "root.key"
    generate_key_file(key)
    config = _config(tmp_path, pg_cluster, "cli_weakdb", key, free_port())
    config.write_text(config.read_text().replace("postgres@", "cli_weak@"))
    try:
        # The pgsodium roles exist (other databases' inits made them).
        done = _run("init", "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert "installed in database 'cli_weakdb'" in done.stdout
        assert "note: role cli_weak is not a superuser" in done.stdout
        assert "note: role cli_weak cannot make pgsodium_keymaker" in done.stdout
        checked = _run("check", "--config", str(config))
        assert "note no event triggers" in checked.stdout, checked.stdout
        assert "create_key() is owned by 'cli_weak'" in checked.stdout
    finally:
        pg_cluster.psql("DROP DATABASE IF EXISTS cli_weakdb")
        pg_cluster.psql("DROP ROLE IF EXISTS cli_weak")
    # A superuser's init has nothing to say.
    pg_cluster.psql("DROP DATABASE IF EXISTS cli_superdb")
    pg_cluster.psql("CREATE DATABASE cli_superdb")
    try:
        done = _run(
            "init",
            "--config",
            str(_config(tmp_path, pg_cluster, "cli_superdb", key, 1)),
        )
        assert done.returncode == 0, done.stderr
        assert "note:" not in done.stdout
    finally:
        pg_cluster.psql("DROP DATABASE IF EXISTS cli_superdb")


def test_init_refuses_to_record_a_second_root_key(
    tmp_path: Path, pg_cluster: Cluster, cli_db: str
) -> None:
    key = tmp_path / "other.key"
    generate_key_file(key)
    done = _run("init", "--config", str(_config(tmp_path, pg_cluster, cli_db, key, 1)))
    assert done.returncode == 2
    assert "belongs to root key" in done.stderr
    assert key.read_text().strip() not in done.stderr


@pytest.mark.parametrize(
    "body, message",
    [
        ("[root_key]\n", "no root key is configured"),
        ("[listen]\nport = 'x'\n", "expected int"),
        ("[nonsense]\n", "unknown section"),
        ("[root_key]\nfile = '/does/not/exist'\n", "does not exist"),
    ],
)
def test_bad_configuration_stops_with_a_clear_message(
    tmp_path: Path, body: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(body)
    done = _run("serve", "--config", str(config))
    assert done.returncode == 2
    assert message in done.stderr


def test_demo_starts_serves_and_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    key = tmp_path / "demo.key"
    process = subprocess.Popen(
        [str(BIN), "demo", "--port", str(port), "--root-key-file", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, process, timeout=90)
        assert os.stat(key).st_mode & 0o777 == 0o600
        done = subprocess.run(
            [
                "psql",
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "select length(pgsodium.derive_key(1))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.strip() == "32", done.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    out = process.stdout.read()
    assert code == 0
    assert f"generated a new key in {key}" in out
    assert f"port={port}" in out
    # The PostgreSQL behind it is named too (for pg_dump and the like).
    assert re.search(r"Starting PostgreSQL in \S+ on 127\.0\.0\.1:\d+ ", out)
    workdir = re.search(r"Stopped; removed (\S+)", out)
    assert workdir and not Path(workdir.group(1)).exists()
    assert key.exists()


def _unusable_key_path(tmp: Path, kind: str) -> tuple[Path, str]:
    """A --root-key-file path of `kind` and the one line the demo must print."""
    if kind == "under-a-regular-file":
        parent = tmp / "file.key"
        parent.write_text("")
        path = parent / "x"
        return (
            path,
            f"root key file {path} cannot be created: {parent} is not a directory",
        )
    path = tmp / "keys"
    path.mkdir()
    os.chmod(path, 0o700 if kind == "directory-0700" else 0o755)
    return path, f"root key file {path} is a directory"


@pytest.mark.parametrize(
    "kind", ["directory-0700", "directory-0755", "under-a-regular-file"]
)
def test_demo_with_an_unusable_key_path_says_why_and_starts_nothing(
    tmp_path: Path, kind: str
) -> None:
    path, message = _unusable_key_path(tmp_path, kind)
    workdirs = tmp_path / "tmp"  # where the demo would make its data directory
    workdirs.mkdir()
    done = subprocess.run(
        [str(BIN), "demo", "--port", str(free_port()), "--root-key-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(workdirs)},
    )
    assert done.returncode == 2
    assert done.stderr == f"pgsodium-proxy: {message}\n"
    assert done.stdout == ""  # neither "Starting PostgreSQL" nor "Stopped; removed"
    assert list(workdirs.iterdir()) == []
