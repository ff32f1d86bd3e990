"""The driver matrix: one small pgsodium scenario and some ordinary SQL through every
client driver people put in front of PostgreSQL.

The scenario: encrypt a value with crypto_aead_det_encrypt through a key uuid bound
as a parameter, decrypt it back, read pgsodium.valid_key, and decrypt a column of
rows (the proxy computes those in the result stream, so cursors and fetch sizes
exercise partial results). Every driver must get the same answer as the reference
computed once through the proxy with psycopg.

psql, psycopg, asyncpg and SQLAlchemy are Python-side or the machine's; pgjdbc and
node-postgres are installed by .ci/run (a test skips only when its tool is absent).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import RunningProxy, make_database, server_log

HERE = Path(__file__).parent
PLAINTEXT = "alice ü"
AD = "drivers"
ROWS = 30  # more than every fetch size below, so cursors fetch in several rounds

ENCRYPT = (
    "select pgsodium.crypto_aead_det_encrypt(convert_to({p}, 'utf8'),"
    " convert_to('drivers', 'utf8'), cast({k} as uuid))"
)
DECRYPT = (
    "select convert_from(pgsodium.crypto_aead_det_decrypt(cast({p} as bytea),"
    " convert_to('drivers', 'utf8'), cast({k} as uuid)), 'utf8')"
)
VALID_KEY = (
    "select key_type::text, name from pgsodium.valid_key where id = cast({k} as uuid)"
)
ROW_DECRYPT = (
    "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret,"
    " convert_to('drivers', 'utf8'), cast({k} as uuid)), 'utf8')"
    " from driver_rows order by id"
)
ORDINARY = (
    "select cast({p} as int) + 1, (select sum(g) from generate_series(1, 100) g)::int"
)


def sql(template: str, style: str) -> str:
    """A statement with placeholders in a driver's style: '%s' or '$n' or '?'."""
    if style == "$":
        return template.format(p="$1", k="$2" if "{p}" in template else "$1")
    return template.format(p=style, k=style)


@dataclass(frozen=True)
class Expected:
    key: str
    ciphertext: bytes
    rows: list[tuple[int, str]]

    def check(self, got: dict[str, Any]) -> None:
        """`got` as each driver reports it: bytes as hex, rows as [id, text]."""
        assert got["ciphertext"] == self.ciphertext.hex()
        assert got["plaintext"] == PLAINTEXT
        assert got["valid_key"] == ["aead-det", "drivers"]
        assert [tuple(r) for r in got["rows"]] == self.rows
        assert got["ordinary"] == [42, 5050]


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    return make_database(proxy, "drivers")


@pytest.fixture(scope="module")
def expected(proxy: RunningProxy, db: str) -> Expected:
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        key = str(
            conn.execute(
                "select id from pgsodium.create_key(name => 'drivers')"
            ).fetchone()[0]
        )
        ciphertext = conn.execute(sql(ENCRYPT, "%s"), [PLAINTEXT, key]).fetchone()[0]
        conn.execute("create table driver_rows (id int primary key, secret bytea)")
        rows = [(i, f"row {i} ✓") for i in range(1, ROWS + 1)]
        for i, text in rows:
            secret = conn.execute(sql(ENCRYPT, "%s"), [text, key]).fetchone()[0]
            conn.execute("insert into driver_rows values (%s, %s)", [i, secret])
    return Expected(key, bytes(ciphertext), rows)


# -- psql ------------------------------------------------------------------------


def test_psql(proxy: RunningProxy, db: str, expected: Expected) -> None:
    """psql speaks the simple protocol: the key uuid goes in as a psql variable."""
    key, ciphertext = ":'k'", ":'c'"
    script = "\n".join(
        [
            ENCRYPT.format(p=f"'{PLAINTEXT}'", k=key) + ";",
            DECRYPT.format(p=ciphertext, k=key) + ";",
            VALID_KEY.format(k=key) + ";",
            ROW_DECRYPT.format(k=key) + ";",
            ORDINARY.format(p="41") + ";",
        ]
    )
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"k={expected.key}",
            "-v",
            "c=\\x" + expected.ciphertext.hex(),
            "-F",
            "\t",
            proxy.url(dbname=db),
        ],  # fmt: skip
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected.check(
        {
            "ciphertext": lines[0].removeprefix("\\x"),
            "plaintext": lines[1],
            "valid_key": lines[2].split("\t"),
            "rows": [
                (int(i), t) for i, t in (x.split("\t") for x in lines[3 : 3 + ROWS])
            ],
            "ordinary": [int(v) for v in lines[3 + ROWS].split("\t")],
        }
    )


def test_psql_fetch_count_reads_decrypted_rows_through_a_cursor(
    proxy: RunningProxy, db: str, expected: Expected
) -> None:
    """With FETCH_COUNT psql declares a cursor for the select and FETCHes it."""
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "FETCH_COUNT=7",
            "-v",
            f"k={expected.key}",
            "-F",
            "\t",
            proxy.url(dbname=db),
        ],  # fmt: skip
        input=ROW_DECRYPT.format(k=":'k'") + ";\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(int(i), t) for i, t in rows] == expected.rows
    assert "FETCH FORWARD 7 FROM _psql_cursor" in server_log(proxy)


# -- psycopg 3 -------------------------------------------------------------------


def _psycopg_scenario(conn: psycopg.Connection, key: str, binary: bool) -> dict:
    cur = conn.cursor(binary=binary)
    ciphertext = cur.execute(sql(ENCRYPT, "%s"), [PLAINTEXT, key]).fetchone()[0]
    return {
        "ciphertext": bytes(ciphertext).hex(),
        "plaintext": cur.execute(sql(DECRYPT, "%s"), [ciphertext, key]).fetchone()[0],
        "valid_key": list(cur.execute(sql(VALID_KEY, "%s"), [key]).fetchone()),
        "rows": cur.execute(sql(ROW_DECRYPT, "%s"), [key]).fetchall(),
        "ordinary": list(cur.execute(sql(ORDINARY, "%s"), [41]).fetchone()),
    }


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg(proxy: RunningProxy, db: str, expected: Expected, binary: bool):
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        expected.check(_psycopg_scenario(conn, expected.key, binary))


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_pipeline_mode(
    proxy: RunningProxy, db: str, expected: Expected, binary: bool
) -> None:
    """Pipeline mode sends every statement before reading any result, with one
    Sync at the end: the proxy's own key lookups run inside that pipeline."""
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        with conn.pipeline():
            cursors = [conn.cursor(binary=binary) for _ in range(5)]
            key = expected.key
            cursors[0].execute(sql(ENCRYPT, "%s"), [PLAINTEXT, key])
            cursors[1].execute(sql(DECRYPT, "%s"), [expected.ciphertext, key])
            cursors[2].execute(sql(VALID_KEY, "%s"), [key])
            cursors[3].execute(sql(ROW_DECRYPT, "%s"), [key])
            cursors[4].execute(sql(ORDINARY, "%s"), [41])
        got = [c.fetchall() for c in cursors]
        expected.check(
            {
                "ciphertext": bytes(got[0][0][0]).hex(),
                "plaintext": got[1][0][0],
                "valid_key": list(got[2][0]),
                "rows": got[3],
                "ordinary": list(got[4][0]),
            }
        )
        # An error inside a pipeline aborts the rest of it, as on PostgreSQL.
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.execute("select 1/0")
                conn.execute(sql(ENCRYPT, "%s"), [PLAINTEXT, key])
        assert conn.execute(sql(ORDINARY, "%s"), [41]).fetchone() == (42, 5050)


FOLDED_ROWS = (
    "select g, pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'),"
    " convert_to('drivers', 'utf8'), cast(%s as uuid))"
    " from generate_series(1, 30) g"
)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_server_side_cursor(
    proxy: RunningProxy, db: str, expected: Expected, binary: bool
) -> None:
    """DECLARE … CURSOR and FETCH, a few rows at a time, over a pgsodium call the
    proxy folds to one value before the statement goes upstream."""
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        with conn.cursor(name="folded", binary=binary) as cur:
            cur.itersize = 7
            cur.execute(FOLDED_ROWS, [PLAINTEXT, expected.key])
            rows = cur.fetchmany(4) + list(cur)
        assert [r[0] for r in rows] == list(range(1, ROWS + 1))
        assert {bytes(r[1]) for r in rows} == {expected.ciphertext}


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_server_side_cursor_over_decrypted_rows(
    proxy: RunningProxy, db: str, expected: Expected, binary: bool
) -> None:
    """DECLARE over rows the proxy decrypts, then FETCH 7 at a time: text
    cursors FETCH with simple queries, binary ones through the extended protocol."""
    with psycopg.connect(proxy.dsn(dbname=db)) as conn:
        with conn.cursor(name="decrypting", binary=binary) as cur:
            cur.itersize = 7
            cur.execute(sql(ROW_DECRYPT, "%s"), [expected.key])
            first = cur.fetchmany(4)
            rest = list(cur)
        assert first + rest == expected.rows


# -- asyncpg ---------------------------------------------------------------------


async def _asyncpg_scenario(conn: asyncpg.Connection, key: str) -> dict:
    ciphertext = await conn.fetchval(sql(ENCRYPT, "$"), PLAINTEXT, key)
    valid = await conn.fetchrow(sql(VALID_KEY, "$"), key)
    ordinary = await conn.fetchrow(sql(ORDINARY, "$"), 41)
    return {
        "ciphertext": ciphertext.hex(),
        "plaintext": await conn.fetchval(sql(DECRYPT, "$"), ciphertext, key),
        "valid_key": list(valid),
        "rows": [tuple(r) for r in await conn.fetch(sql(ROW_DECRYPT, "$"), key)],
        "ordinary": list(ordinary),
    }


async def test_asyncpg_statement_cache_and_binary(
    proxy: RunningProxy, db: str, expected: Expected
) -> None:
    """asyncpg uses binary formats and a cache of named prepared statements: the
    second and third rounds run the cached statements by name."""

    async def scenario() -> None:
        conn = await asyncpg.connect(proxy.url(dbname=db), statement_cache_size=100)
        try:
            for _ in range(3):
                expected.check(await _asyncpg_scenario(conn, expected.key))
            statement = await conn.prepare(sql(ROW_DECRYPT, "$"))
            async with conn.transaction():
                rows = [
                    tuple(r) async for r in statement.cursor(expected.key, prefetch=4)
                ]
            assert rows == expected.rows
        finally:
            await conn.close()

    await asyncio.wait_for(scenario(), 30)


async def test_asyncpg_without_statement_cache(
    proxy: RunningProxy, db: str, expected: Expected
) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(proxy.url(dbname=db), statement_cache_size=0)
        try:
            expected.check(await _asyncpg_scenario(conn, expected.key))
        finally:
            await conn.close()

    await asyncio.wait_for(scenario(), 30)


# -- SQLAlchemy ------------------------------------------------------------------


def _sqlalchemy_scenario(run: Any, key: str) -> dict:
    def named(template: str) -> Any:
        return sqlalchemy.text(template.format(p=":p", k=":k"))

    ciphertext = run(named(ENCRYPT), {"p": PLAINTEXT, "k": key}).scalar_one()
    return {
        "ciphertext": bytes(ciphertext).hex(),
        "plaintext": run(named(DECRYPT), {"p": ciphertext, "k": key}).scalar_one(),
        "valid_key": list(run(named(VALID_KEY), {"k": key}).one()),
        "rows": [tuple(r) for r in run(named(ROW_DECRYPT), {"k": key}).all()],
        "ordinary": list(run(named(ORDINARY), {"p": 41}).one()),
    }


def test_sqlalchemy_over_psycopg(
    proxy: RunningProxy, db: str, expected: Expected
) -> None:
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres@{proxy.host}:{proxy.port}/{db}"
    )
    try:
        with engine.connect() as conn:
            expected.check(_sqlalchemy_scenario(conn.execute, expected.key))
            table = sqlalchemy.Table(
                "driver_rows", sqlalchemy.MetaData(), autoload_with=conn
            )
            count = conn.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(table)
            ).scalar_one()
            assert count == ROWS
    finally:
        engine.dispose()


async def test_sqlalchemy_over_asyncpg(
    proxy: RunningProxy, db: str, expected: Expected
) -> None:
    async def scenario() -> None:
        engine = create_async_engine(
            f"postgresql+asyncpg://postgres@{proxy.host}:{proxy.port}/{db}"
        )
        try:
            async with engine.connect() as conn:
                got = await conn.run_sync(
                    lambda sync: _sqlalchemy_scenario(sync.execute, expected.key)
                )
                expected.check(got)
                result = await conn.stream(
                    sqlalchemy.text(ROW_DECRYPT.format(k=":k")), {"k": expected.key}
                )
                assert [tuple(r) async for r in result] == expected.rows
        finally:
            await engine.dispose()

    await asyncio.wait_for(scenario(), 30)


# -- pgjdbc ----------------------------------------------------------------------

# Debian's libpostgresql-jdbc-java, installed by .ci/run.
PGJDBC = Path("/usr/share/java/postgresql.jar")


@pytest.mark.parametrize(
    "options",
    ["prepareThreshold=0", "prepareThreshold=1", "prepareThreshold=-1"],
    ids=["unnamed", "named_after_one", "binary"],
)
def test_pgjdbc(proxy: RunningProxy, db: str, expected: Expected, options: str):
    """prepareThreshold=0 keeps to unnamed statements, 1 switches to named ones
    after the first run, -1 also asks for binary results; fetchSize=7 reads the
    decrypted rows through a portal in rounds (Execute with a row limit)."""
    java = shutil.which("java")
    if java is None or not PGJDBC.exists():
        pytest.skip("java or pgjdbc is not installed (.ci/run installs both)")
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/{db}?user=postgres&{options}"
    done = subprocess.run(
        [java, "-cp", str(PGJDBC), str(HERE / "drivers" / "JdbcScenario.java")]
        + [url, expected.key, "3"],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rounds = done.stdout.decode().splitlines()
    assert len(rounds) == 3
    for line in rounds:
        expected.check(json.loads(line))


# -- node-postgres ---------------------------------------------------------------

NODE_DIR = HERE / "drivers" / "node"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """pg and pg-cursor, pinned by package-lock.json; .ci/run installs them, and
    this installs them where they are missing (a developer's fresh checkout)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed (.ci/run installs them)")
    if not (NODE_DIR / "node_modules" / "pg-cursor").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NODE_DIR / "node_modules"


def test_node_postgres_with_pg_cursor(
    proxy: RunningProxy, db: str, expected: Expected, node_modules: Path
) -> None:
    """Unnamed statements, then named ones (prepared once, then run by name); the
    decrypted rows through pg-cursor, 7 rows a read."""
    done = subprocess.run(
        ["node", str(NODE_DIR / "scenario.js"), proxy.url(dbname=db), expected.key],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rounds = done.stdout.decode().splitlines()
    assert len(rounds) == 3
    for line in rounds:
        expected.check(json.loads(line))
