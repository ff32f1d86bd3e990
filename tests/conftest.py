"""Shared fixtures: one throwaway PostgreSQL for the whole test run."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cluster import Cluster, free_port

DATA = Path(__file__).parent / "data"

# Roles the integration tests log in as, one per authentication method.
AUTH_HBA = [
    "host all scram_user 127.0.0.1/32 scram-sha-256",
    "host all md5_user 127.0.0.1/32 md5",
    "host all password_user 127.0.0.1/32 password",
]


@pytest.fixture(scope="session")
def vectors() -> list[dict]:
    return json.loads((DATA / "pgsodium-3.1.11.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster started for this test session, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pgsodium-proxy-test-"))
    os.chmod(base, 0o755)
    # Every statement and bind value the upstream receives is logged, so tests can
    # prove that no key, password or protected plaintext ever reached it.
    cluster = Cluster(
        base / "data",
        free_port(),
        hba_lines=AUTH_HBA,
        settings={"log_statement": "all", "log_min_error_statement": "error"},
    )
    cluster.initdb()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
