"""Pass-through is byte-identical: the same frontend messages, sent through the proxy
and straight to PostgreSQL, get the same backend messages back, byte for byte.

A tiny raw client (RawClient) sends exact messages built with proxy.codec and keeps
every backend message's raw bytes. Only the startup phase differs by design: the
proxy issues its own cancel key. Real drivers (psql, psycopg, asyncpg) then check
that results through the proxy equal results from PostgreSQL itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import psycopg
import pytest

from proxy import codec
from proxy.codec import (
    Bind,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    Frame,
    FrameReader,
    FunctionCall,
    Message,
    Parse,
    Query,
    Sync,
)

from .conftest import RunningProxy

BOUND = 20.0  # seconds any one test may take; the whole set stays well under it


def bounded(seconds: float = BOUND) -> Callable[..., Any]:
    """Give an async test a hard time bound."""

    def wrap(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run

    return wrap


# -- the raw client ------------------------------------------------------------------


class RawClient:
    """A minimal frontend: exact messages out, every backend message's raw bytes in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.startup: list[Frame] = []

    @classmethod
    async def open(cls, host: str, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @classmethod
    async def connect(
        cls, host: str, port: int, user: str = "postgres", **params: str
    ) -> RawClient:
        """Open a session with trust authentication; keeps the startup messages."""
        client = await cls.open(host, port)
        startup = {"user": user, "database": "postgres", **params}
        await client.send_bytes(
            codec.StartupMessage(codec.PROTOCOL_3_0, startup).encode()
        )
        client.startup = await client.until(b"ZE")
        return client

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, *messages: Message | bytes) -> None:
        await self.send_bytes(
            b"".join(m if isinstance(m, bytes) else m.encode() for m in messages)
        )

    async def next(self) -> Frame | None:
        """The next backend message, or None at end of stream."""
        while (frame := self.frames.next()) is None:
            data = await self.reader.read(65536)
            if not data:
                return None
            self.frames.feed(data)
        return frame

    async def until(self, types: bytes, count: int = 1) -> list[Frame]:
        """Messages up to and including the `count`-th one of a type in `types`."""
        got: list[Frame] = []
        while count:
            frame = await self.next()
            if frame is None:
                raise ConnectionError(f"closed after {[chr(f.type) for f in got]}")
            got.append(frame)
            if frame.type in types:
                count -= 1
        return got

    async def rest(self) -> list[Frame]:
        """Everything until the peer closes the connection."""
        got = []
        while (frame := await self.next()) is not None:
            got.append(frame)
        return got

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(codec.Terminate().encode())
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


@dataclass(frozen=True)
class Step:
    """Send these messages, then read until `count` messages of a type in `until`."""

    messages: Sequence[Message | bytes]
    until: bytes = b"Z"
    count: int = 1


def q(sql: str) -> Step:
    return Step([Query(sql)])


def extended(*messages: Message, until: bytes = b"Z", count: int = 1) -> Step:
    return Step(list(messages), until, count)


@dataclass(frozen=True)
class Script:
    steps: Sequence[Step]
    # A script that creates tables sees new table OIDs on every run.
    fresh_oids: bool = False


async def run_script(host: str, port: int, script: Script) -> list[bytes]:
    client = await RawClient.connect(host, port)
    try:
        received: list[bytes] = []
        for step in script.steps:
            await client.send(*step.messages)
            frames = await client.until(step.until, step.count)
            received += [normalise(f, script.fresh_oids) for f in frames]
        return received
    finally:
        await client.close()


def normalise(frame: Frame, fresh_oids: bool) -> bytes:
    """A NotificationResponse names the notifying backend's pid, which differs
    between two sessions; so do the OIDs of tables a script creates itself."""
    if frame.type == ord("A"):
        message = codec.decode_backend(frame)
        return replace(message, pid=0).encode()
    if frame.type == ord("T") and fresh_oids:
        message = codec.decode_backend(frame)
        fields = tuple(replace(f, table_oid=0) for f in message.fields)
        return replace(message, fields=fields).encode()
    return frame.raw


# -- the corpus ----------------------------------------------------------------------

TYPES_TABLE = """
CREATE TABLE IF NOT EXISTS pt_types (
    id int PRIMARY KEY, i2 int2, i8 int8, n numeric(20, 5), f4 float4, f8 float8,
    t text, vc varchar(20), c char(5), b bool, by bytea, d date, ts timestamp,
    tstz timestamptz, iv interval, u uuid, j json, jb jsonb, ia int[], ta text[],
    ip inet, pt point, m money
);
TRUNCATE pt_types;
INSERT INTO pt_types VALUES
 (1, 1, 9223372036854775807, 12345.6789, 1.5, 'NaN', 'plain', 'vc', 'ch',
  true, '\\x00ff10', '2024-02-29', '2024-02-29 12:34:56.789',
  '2024-02-29 12:34:56+02', '1 year 2 mons 3 days 04:05:06',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{"k": [1, 2]}',
  '{1,NULL,3}', '{"a b",NULL,"c\\"d"}', '192.168.0.1/24', '(1.5,-2)', 12.34),
 (2, -32768, -1, -0.00001, '-Infinity', 'Infinity',
  'Grüße, 日本語, 🐘 and a tab	here', 'ü', 'ñ', false, '', '0001-01-01',
  'infinity', '-infinity', '-1 day', '00000000-0000-0000-0000-000000000000',
  '[]', '{}', '{}', '{}', '::1', '(0,0)', -1),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE IF NOT EXISTS pt_scratch (id int PRIMARY KEY, note text);
TRUNCATE pt_scratch;
INSERT INTO pt_scratch VALUES (1, 'one'), (2, 'two');
"""

SELECT_TYPES = "SELECT * FROM pt_types ORDER BY id"
TWENTY_ROWS = "SELECT g, repeat('x', g) FROM generate_series(1, 20) AS g"


def _corpus(function_oid: int) -> dict[str, Script]:
    unnamed = [Parse("", TWENTY_ROWS), Bind("", "", (), (), ())]
    return {
        "select_many_types_text": Script([q(SELECT_TYPES)]),
        "select_literals_nulls_bytea_arrays_unicode": Script(
            [
                q(
                    "SELECT NULL AS n, 1::int8, '\\x00ff'::bytea, ARRAY[1, NULL, 3],"
                    " ARRAY[['a', NULL], ['b', 'c']], 'Ωμέγα ☃'::text AS \"ünï\","
                    " ''::text, '{\"a\": null}'::jsonb, 1e300::float8, 0.1::numeric"
                )
            ]
        ),
        "division_by_zero": Script([q("SELECT 1/0")]),
        "syntax_error_with_position": Script([q("SELECT 1 FROM WHERE x")]),
        "undefined_table_with_position": Script([q("SELECT a FROM pt_nowhere")]),
        "unique_violation_with_detail": Script(
            [q("INSERT INTO pt_scratch VALUES (1, 'again')")]
        ),
        "notices_from_do_block": Script(
            [
                q(
                    "DO $$BEGIN RAISE NOTICE 'hello %', 42; "
                    "RAISE WARNING 'careful' USING DETAIL = 'd', HINT = 'h'; END$$"
                )
            ]
        ),
        "multi_statement_simple_query": Script(
            [
                q("SELECT 1; SELECT 'two' AS b; SHOW DateStyle; VALUES (1, 2), (3, 4)"),
                q("SELECT 1; SELECT 1/0; SELECT 3"),
            ]
        ),
        "transaction_savepoints_and_rollback": Script(
            [
                q("BEGIN"),
                q("INSERT INTO pt_scratch VALUES (10, 'ten')"),
                q("SAVEPOINT a"),
                q("SELECT 1/0"),
                q("SELECT 1"),  # 25P02 in a failed transaction block
                q("ROLLBACK TO SAVEPOINT a"),
                q("SELECT count(*) FROM pt_scratch"),
                q("RELEASE SAVEPOINT a"),
                q("ROLLBACK"),
                q("COMMIT"),  # a warning: no transaction in progress
            ]
        ),
        "ddl_and_dml_with_returning": Script(
            [
                q("CREATE TABLE pt_ddl (id serial PRIMARY KEY, v text NOT NULL)"),
                q("INSERT INTO pt_ddl (v) VALUES ('a'), ('b') RETURNING *"),
                q("UPDATE pt_ddl SET v = v || '!' WHERE id = 2 RETURNING v"),
                q("ALTER TABLE pt_ddl ADD COLUMN w int DEFAULT 7"),
                q("CREATE INDEX pt_ddl_v ON pt_ddl (v)"),
                q("INSERT INTO pt_ddl (v) VALUES (NULL)"),  # 23502 with detail
                q("DELETE FROM pt_ddl WHERE id = 1"),
                q("SELECT * FROM pt_ddl"),
                q("DROP TABLE pt_ddl"),
            ],
            fresh_oids=True,
        ),
        "copy_to_stdout_text_and_binary": Script(
            [
                q("COPY pt_types TO STDOUT"),
                q(
                    "COPY (SELECT * FROM pt_types ORDER BY id) TO STDOUT (FORMAT "
                    "binary)"
                ),
                q("COPY (SELECT 1, NULL, 'a,b') TO STDOUT (FORMAT csv, HEADER)"),
            ]
        ),
        "copy_from_stdin_done_and_fail": Script(
            [
                q("BEGIN"),
                Step([Query("COPY pt_scratch FROM STDIN")], b"G"),
                Step([CopyData(b"20\ttwenty\n21\t"), CopyData(b"\\N\n"), CopyDone()]),
                q("SELECT * FROM pt_scratch ORDER BY id"),
                Step([Query("COPY pt_scratch FROM STDIN")], b"G"),
                Step([CopyFail("client gave up")]),
                q("ROLLBACK"),
                Step([Query("COPY pt_scratch FROM STDIN (FORMAT csv)")], b"G"),
                Step([CopyData(b"30,thirty\nnot a number,x\n"), CopyDone()]),
            ]
        ),
        "listen_notify": Script(
            [
                q("LISTEN pt_channel"),
                q("NOTIFY pt_channel, 'payload ü'"),
                q("SELECT pg_notify('pt_channel', 'second'); NOTIFY pt_channel"),
                q("UNLISTEN *"),
                q("NOTIFY pt_channel, 'not heard'"),
            ]
        ),
        "empty_queries": Script(
            [
                q(""),
                q(";"),
                q("  -- only a comment"),
                extended(Parse("", ""), Bind("", "", (), (), ()), Execute(""), Sync()),
            ]
        ),
        "set_reports_parameter_status": Script(
            [
                q("SET application_name = 'passthrough ü'"),
                q("SET TimeZone = 'Asia/Kolkata'; SHOW TimeZone"),
                q("SET DateStyle = 'SQL, DMY'; SELECT '2024-02-29'::date"),
                q("RESET ALL"),
            ]
        ),
        "named_statements_and_portals": Script(
            [
                extended(
                    Parse("s1", "SELECT $1::int + 1 AS next, $2::text AS t", (23, 25)),
                    Describe("S", "s1"),
                    Bind("p1", "s1", (), (b"41", "ünï".encode()), ()),
                    Describe("P", "p1"),
                    Execute("p1"),
                    Bind("p2", "s1", (), (None, None), ()),
                    Execute("p2"),
                    Close("P", "p1"),
                    Close("P", "p2"),
                    Sync(),
                ),
                extended(Bind("", "s1", (), (b"1", b"x"), ()), Execute(""), Sync()),
                extended(Parse("s1", "SELECT 2"), Sync()),  # 42P05: already exists
                extended(Close("S", "s1"), Close("S", "never"), Sync()),
                extended(Bind("", "s1", (), (), ()), Execute(""), Sync()),  # 26000
                extended(
                    Parse("ins", "INSERT INTO pt_scratch VALUES ($1, $2)"),
                    Describe("S", "ins"),
                    Bind("", "ins", (), (b"1", b"dup"), ()),
                    Execute(""),
                    Sync(),
                ),
            ]
        ),
        "errors_skip_until_sync": Script(
            [
                extended(
                    Parse("", "SELEC 1"),
                    Bind("", "", (), (), ()),
                    Describe("P", ""),
                    Execute(""),
                    Sync(),
                ),
                # A Query while skipping until Sync is discarded too, unanswered.
                extended(
                    Parse("", "SELECT 1/0"),
                    Bind("", "", (), (), ()),
                    Execute(""),
                    Query("SELECT 'ignored'"),
                    Sync(),
                ),
                q("SELECT 'after'"),
                extended(Describe("X", "bad kind"), Sync()),
            ]
        ),
        "pipelined_syncs": Script(
            [
                extended(
                    Parse("", "SELECT 1"),
                    Bind("", "", (), (), ()),
                    Execute(""),
                    Sync(),
                    Parse("", "SELECT 'b'"),
                    Bind("", "", (), (), ()),
                    Execute(""),
                    Sync(),
                    Query("SELECT 3"),
                    count=3,
                )
            ]
        ),
        "execute_with_row_limit": Script(
            [
                extended(
                    *unnamed, Execute("", 7), Execute("", 7), Execute("", 0), Sync()
                ),
                extended(*unnamed, Execute("", 5), Flush(), until=b"s"),
                extended(Execute("", 5), Flush(), until=b"s"),
                extended(Execute("", 100), Sync()),
                q("BEGIN"),
                extended(
                    Parse("rows", TWENTY_ROWS),
                    Bind("cur", "rows", (), (), ()),
                    Execute("cur", 15),
                    Sync(),
                ),
                extended(Execute("cur", 15), Sync()),
                extended(Execute("cur", 1), Sync()),  # exhausted: CommandComplete
                q("COMMIT"),
            ]
        ),
        "binary_formats": Script(
            [
                extended(
                    Parse("", SELECT_TYPES),
                    Bind("", "", (), (), (1,)),
                    Describe("P", ""),
                    Execute(""),
                    Sync(),
                ),
                extended(
                    Parse("", "SELECT $1::int4 * 2, $2::bytea, $3::text", (23, 17, 25)),
                    Bind(
                        "",
                        "",
                        (1, 1, 0),
                        (b"\x00\x00\x00\x15", b"\x00\x01\xfe", b"text"),
                        (1, 0, 1),
                    ),
                    Execute(""),
                    Sync(),
                ),
                extended(
                    Parse("", "SELECT $1::int4", (23,)),
                    Bind("", "", (1,), (b"\x01",), ()),  # 22P03: wrong binary size
                    Execute(""),
                    Sync(),
                ),
            ]
        ),
        "function_call": Script(
            [
                Step([FunctionCall(function_oid, (0, 0), (b"40", b"2"), 0)]),
                Step([FunctionCall(function_oid, (1, 1), (b"\0\0\0\1", None), 1)]),
            ]
        ),
        "large_values_and_many_rows": Script(
            [
                q("SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g"),
                q("SELECT repeat('ab', 1500000)"),
                q("SELECT length('" + "y" * 1_000_000 + "')"),
                extended(
                    Parse("", "SELECT length($1), $1"),
                    Bind("", "", (), (b"z" * 500_000,), ()),
                    Execute(""),
                    Sync(),
                ),
            ]
        ),
    }


@pytest.fixture(scope="module")
def function_oid(proxy: RunningProxy) -> int:
    """Sets up the corpus tables; the OID of int4pl for FunctionCall."""
    proxy.upstream.psql(TYPES_TABLE)
    return int(proxy.upstream.psql("SELECT 'int4pl'::regproc::oid").strip())


CORPUS_NAMES = list(_corpus(0))


@pytest.mark.parametrize("name", CORPUS_NAMES)
@bounded()
async def test_backend_bytes_through_proxy_equal_direct(
    name: str, proxy: RunningProxy, function_oid: int
) -> None:
    script = _corpus(function_oid)[name]
    direct = await run_script("127.0.0.1", proxy.upstream.port, script)
    through = await run_script(proxy.host, proxy.port, script)
    assert [chr(m[0]) for m in through] == [chr(m[0]) for m in direct]
    assert through == direct


def _by_type(frames: list[Frame]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for frame in frames:
        grouped.setdefault(chr(frame.type), []).append(frame.raw)
    return grouped


@bounded()
async def test_startup_differs_only_by_cancel_key(proxy: RunningProxy) -> None:
    direct = await RawClient.connect("127.0.0.1", proxy.upstream.port)
    through = await RawClient.connect(proxy.host, proxy.port)
    try:
        got, want = _by_type(through.startup), _by_type(direct.startup)
        assert set(got) == set(want) == {"R", "S", "K", "Z"}
        assert got["R"] == want["R"]  # AuthenticationOk
        assert set(got["S"]) == set(want["S"])
        assert got["Z"] == want["Z"] == [codec.ready_for_query("I")]
        assert len(got["K"]) == 1 and len(got["K"][0]) == 13
        assert got["K"] != want["K"]
    finally:
        await through.close()
        await direct.close()


@bounded()
async def test_backend_pid_is_the_upstream_pid_and_matches_notifications(
    proxy: RunningProxy,
) -> None:
    """The proxy issues its own cancel key secret but keeps the upstream's pid, so
    BackendKeyData, pg_backend_pid() and a session's own notifications agree."""
    client = await RawClient.connect(proxy.host, proxy.port)
    try:
        (key,) = [f for f in client.startup if f.type == ord("K")]
        pid = codec.decode_backend(key).pid
        await client.send(
            Query("LISTEN pt_own; NOTIFY pt_own; SELECT pg_backend_pid()")
        )
        frames = await client.until(b"Z")
        (notification,) = [f for f in frames if f.type == ord("A")]
        (row,) = [f for f in frames if f.type == ord("D")]
        assert codec.decode_backend(notification).pid == pid
        assert codec.data_row_values(row.body) == [str(pid).encode()]
    finally:
        await client.close()


@bounded()
async def test_notification_from_another_session_reaches_an_idle_client(
    proxy: RunningProxy,
) -> None:
    listener = await RawClient.connect(proxy.host, proxy.port)
    try:
        await listener.send(Query("LISTEN pt_idle"))
        await listener.until(b"Z")
        await asyncio.to_thread(proxy.upstream.psql, "NOTIFY pt_idle, 'from outside'")
        (frame,) = await listener.until(b"A")
        assert codec.decode_backend(frame).payload == "from outside"
    finally:
        await listener.close()


# -- real drivers --------------------------------------------------------------------

PSQL_SCRIPT = r"""
\pset null '<null>'
SELECT * FROM pt_types ORDER BY id;
\d pt_types
\copy (SELECT id, t FROM pt_types ORDER BY id) TO STDOUT WITH (FORMAT csv)
BEGIN;
\copy pt_scratch FROM STDIN
40	forty
\.
SELECT * FROM pt_scratch ORDER BY id;
ROLLBACK;
SELECT 1/0;
DO $$BEGIN RAISE NOTICE 'from psql'; END$$;
SELECT 'a' AS x \gset
\echo :x
PREPARE st(int) AS SELECT $1 * 3;
EXECUTE st(14);
SELECT g FROM generate_series(1, 5) g \g
"""


async def _psql(dsn_port: int, host: str) -> tuple[int, str, str]:
    psql = shutil.which("psql")
    assert psql is not None, "the machine's psql is needed"
    process = await asyncio.create_subprocess_exec(
        psql,
        "-X",
        "-h",
        host,
        "-p",
        str(dsn_port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "pt"},
    )
    out, err = await process.communicate(PSQL_SCRIPT.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@bounded()
async def test_psql_output_through_proxy_equals_direct(
    proxy: RunningProxy, function_oid: int
) -> None:
    direct = await _psql(proxy.upstream.port, "127.0.0.1")
    through = await _psql(proxy.port, proxy.host)
    assert "division by zero" in direct[2]
    assert through == direct


# Python's datetime has no infinity, so the driver tests leave those columns out.
FINITE_TYPES = (
    "SELECT id, i2, i8, n, f4, f8, t, vc, c, b, by, d, iv, u, j, jb, ia, ta, ip"
    " FROM pt_types ORDER BY id"
)
PSYCOPG_QUERIES: list[tuple[str, tuple[Any, ...]]] = [
    (FINITE_TYPES, ()),
    ("SELECT %s::int + 1, %s::text, %s::bytea, %s", (41, "ü", b"\x00\x01", None)),
    ("SELECT %s::int[], %s::jsonb", ([1, None, 3], '{"a": [1]}')),
    ("SELECT g FROM generate_series(1, %s) AS g", (1000,)),
]


async def _psycopg_results(dsn: str, binary: bool) -> list[Any]:
    results: list[Any] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for sql, params in PSYCOPG_QUERIES:
            cursor = conn.cursor(binary=binary)
            await cursor.execute(sql, params)
            description = [(d.name, d.type_code) for d in cursor.description or ()]
            results.append((description, await cursor.fetchall()))
        try:
            await conn.execute("SELECT 1/0")
        except psycopg.Error as exc:
            results.append((exc.sqlstate, exc.diag.message_primary))
        async with conn.cursor(name="server_side") as cursor:
            async with conn.transaction():
                await cursor.execute("SELECT g FROM generate_series(1, 50) AS g")
                results.append(await cursor.fetchmany(7))
                results.append(await cursor.fetchall())
        copied = []
        async with conn.cursor() as cursor:
            async with cursor.copy("COPY pt_types TO STDOUT") as copy:
                async for block in copy:
                    copied.append(bytes(block))
        results.append(b"".join(copied))
    return results


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@bounded()
async def test_psycopg_results_through_proxy_equal_direct(
    binary: bool, proxy: RunningProxy, function_oid: int
) -> None:
    direct = await _psycopg_results(proxy.direct_dsn(), binary)
    through = await _psycopg_results(proxy.dsn(), binary)
    assert repr(through) == repr(direct)  # repr: NaN never equals itself


async def _asyncpg_results(port: int) -> list[Any]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="postgres", database="postgres"
    )
    try:
        results: list[Any] = [
            [tuple(r) for r in await conn.fetch(SELECT_TYPES)],
            await conn.fetchrow(
                "SELECT $1::int * 2, $2::text, $3::bytea", 21, "ü", b"\0"
            ),
            await conn.fetchval("SELECT $1::int[]", [1, None]),
        ]
        statement = await conn.prepare(
            "SELECT g, $1::text FROM generate_series(1, 30) g"
        )
        async with conn.transaction():
            results.append([tuple(r) async for r in statement.cursor("x", prefetch=4)])
        await conn.execute("CREATE TEMP TABLE pt_copy (id int, note text)")
        await conn.copy_records_to_table("pt_copy", records=[(1, "a"), (2, None)])
        results.append([tuple(r) for r in await conn.fetch("TABLE pt_copy")])
        await conn.executemany(
            "INSERT INTO pt_copy VALUES ($1, $2)", [(3, "c"), (4, "d")]
        )
        results.append(await conn.fetchval("SELECT count(*) FROM pt_copy"))
        try:
            await conn.execute("SELECT 1/0")
        except asyncpg.PostgresError as exc:
            results.append((exc.sqlstate, str(exc)))
        return results
    finally:
        await conn.close()


@bounded()
async def test_asyncpg_results_through_proxy_equal_direct(
    proxy: RunningProxy, function_oid: int
) -> None:
    direct = await _asyncpg_results(proxy.upstream.port)
    through = await _asyncpg_results(proxy.port)
    assert repr(through) == repr(direct)  # repr: NaN never equals itself
