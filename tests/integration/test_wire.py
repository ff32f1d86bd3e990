"""The rest of the wire protocol through the real proxy: COPY both ways (and COPY
BOTH on a replication connection), long pipelines with an error inside them,
partial results with Flush, messages near PostgreSQL's size limit, and
backpressure in both directions.

Where the same bytes mean the same thing, the proxy's answer is compared with a
direct connection's byte for byte (RawClient from test_passthrough).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct

import pytest

from proxy import codec
from proxy.codec import (
    Bind,
    CopyData,
    CopyDone,
    Describe,
    Execute,
    Flush,
    Frame,
    Parse,
    Query,
    Sync,
)

from .conftest import RunningProxy
from .test_cancel import _cancel_request, _direct_value, _until
from .test_passthrough import RawClient, bounded

# The upstream logs every statement and bind value (tests/conftest.py); the large
# values here would fill its log, so these sessions switch that off.
QUIET = {"options": "-c log_statement=none -c log_min_error_statement=panic"}


async def _both(proxy: RunningProxy, messages: list, until: bytes = b"Z", count=1):
    """The backend messages answering `messages`, direct and through the proxy."""
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port, **QUIET)
        try:
            await client.send(*messages)
            answers.append([f.raw for f in await client.until(until, count)])
        finally:
            await client.close()
    return answers


def _types(frames: list[bytes]) -> str:
    return "".join(chr(f[0]) for f in frames)


# -- pipelines -------------------------------------------------------------------


def _select(i: int) -> list:
    return [Parse("", f"SELECT {i}, repeat('p', {i})"), Bind("", "", (), (), ())] + [
        Execute("")
    ]


@bounded()
async def test_long_pipeline_with_an_error_skips_to_sync_like_postgres(
    proxy: RunningProxy,
) -> None:
    """300 statements before one Sync, an error at the 150th: PostgreSQL answers
    the first 149, the error, then nothing until Sync; the next batch runs."""
    messages: list = []
    for i in range(300):
        messages += _select(i) if i != 150 else [Parse("", "SELEC 1")]
    messages += [Sync()] + _select(7) + [Sync()]
    direct, through = await _both(proxy, messages, count=2)
    assert through == direct
    assert _types(through).count("D") == 150 + 1
    assert _types(through).count("E") == 1


@bounded()
async def test_pgsodium_call_after_an_error_in_a_pipeline_is_skipped(
    proxy: RunningProxy,
) -> None:
    """A statement the proxy would compute is discarded like any other after an
    error before the Sync; after the Sync it runs."""
    encrypt = "SELECT pgsodium.crypto_aead_det_encrypt('x'::bytea, ''::bytea, $1)"
    client = await RawClient.connect(proxy.host, proxy.port)
    try:
        await client.send(Query("SELECT id FROM pgsodium.create_key()"))
        (row,) = [f for f in await client.until(b"Z") if f.type == ord("D")]
        (key,) = codec.data_row_values(row.body)
        call = [Parse("", encrypt, (2950,)), Bind("", "", (), (key,), ()), Execute("")]
        await client.send(*_select(1), Parse("", "SELEC 1"), *call, *_select(2), Sync())
        first = await client.until(b"Z")
        assert "".join(chr(f.type) for f in first) == "12DCEZ"
        await client.send(*call, Sync(), Query("SELECT 'still fine'"))
        second = await client.until(b"Z", count=2)
        rows = [codec.data_row_values(f.body) for f in second if f.type == ord("D")]
        assert len(rows[0][0] or b"") == 2 + 2 * 33  # \x + hex of 33 bytes
        assert rows[1] == [b"still fine"]
    finally:
        await client.close()


@pytest.mark.parametrize("refused_at", ["parse", "bind"])
@bounded()
async def test_statement_the_proxy_refuses_skips_the_pipeline_to_sync(
    proxy: RunningProxy, refused_at: str
) -> None:
    """An error of the proxy's own (0A000 at Parse, P0002 at Bind) ends the
    pipeline exactly as an error of PostgreSQL's would: nothing until Sync."""
    client = await RawClient.connect(proxy.host, proxy.port)
    if refused_at == "parse":
        refused = [Parse("", "SELECT 1 WHERE pgsodium.derive_key(1) IS NOT NULL")]
        sqlstate = "0A000"
    else:
        missing = b"00000000-0000-0000-0000-000000000000"
        refused = [
            Parse("", "SELECT pgsodium.crypto_aead_det_encrypt('x', '', $1)", (2950,)),
            Bind("", "", (), (missing,), ()),
        ]
        sqlstate = "P0002"
    try:
        await client.send(*_select(1), *refused, Execute(""), *_select(2), Sync())
        first = await client.until(b"Z")
        kinds = "".join(chr(f.type) for f in first)
        assert kinds == ("12DCEZ" if refused_at == "parse" else "12DC1EZ")
        (error,) = [codec.decode_backend(f) for f in first if f.type == ord("E")]
        assert error.sqlstate == sqlstate
        await client.send(*_select(3), Sync())
        rows = [f for f in await client.until(b"Z") if f.type == ord("D")]
        assert codec.data_row_values(rows[0].body) == [b"3", b"ppp"]
    finally:
        await client.close()


@bounded()
async def test_flush_without_sync_returns_partial_results_of_a_pgsodium_portal(
    proxy: RunningProxy,
) -> None:
    """Execute with a row limit and Flush: PortalSuspended reaches the client with
    the rows computed so far, for a portal whose rows the proxy computes."""
    client = await RawClient.connect(proxy.host, proxy.port)
    sql = (
        "SELECT g, pgsodium.crypto_aead_det_encrypt(convert_to(g::text, 'utf8'),"
        " ''::bytea, k.id) FROM generate_series(1, 10) g,"
        " (SELECT id FROM pgsodium.valid_key WHERE key_type = 'aead-det'"
        " ORDER BY id LIMIT 1) k"
    )
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        await client.send(Query("BEGIN"))
        await client.until(b"Z")
        await client.send(
            Parse("", sql), Bind("", "", (), (), ()), Execute("", 4), Flush()
        )
        first = await client.until(b"s")
        assert "".join(chr(f.type) for f in first) == "12" + "D" * 4 + "s"
        await client.send(Execute("", 4), Flush())
        second = await client.until(b"s")
        await client.send(Execute("", 4), Sync())
        third = await client.until(b"Z")
        assert "".join(chr(f.type) for f in second + third) == "DDDDsDDCZ"
        rows = [
            codec.data_row_values(f.body)
            for f in first + second + third
            if f.type == ord("D")
        ]
        assert [r[0] for r in rows] == [str(i).encode() for i in range(1, 11)]
        assert all(len(r[1] or b"") == 2 + 2 * (32 + len(r[0] or b"")) for r in rows)
        await client.send(Query("COMMIT"))
        await client.until(b"Z")
    finally:
        await client.close()


@pytest.mark.parametrize("formats", [(1, 0), (0, 1), (1, 1, 1)], ids=str)
@bounded()
async def test_per_column_result_formats_on_computed_rows(
    proxy: RunningProxy, formats: tuple[int, ...]
) -> None:
    """Bind with one result format per column (as pgjdbc sends it) for a select
    list whose second column the proxy decrypts per row; a count that matches no
    column count is PostgreSQL's own 08P01."""
    client = await RawClient.connect(proxy.host, proxy.port)
    decrypt = (
        "SELECT g, pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt("
        "convert_to('v' || g, 'utf8'), ''::bytea, k.id), ''::bytea, k.id)"
        " FROM generate_series(1, 3) g, (SELECT id FROM pgsodium.valid_key"
        " WHERE key_type = 'aead-det' ORDER BY id LIMIT 1) k"
    )
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        await client.send(
            Parse("", decrypt), Bind("", "", (), (), formats), Execute(""), Sync()
        )
        frames = await client.until(b"Z")
    finally:
        await client.close()
    if len(formats) == 3:
        (error,) = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        assert error.sqlstate == "08P01"
        return
    rows = [codec.data_row_values(f.body) for f in frames if f.type == ord("D")]
    ids = [struct.pack("!i", g) if formats[0] else b"%d" % g for g in (1, 2, 3)]
    plain = [
        b"v%d" % g if formats[1] else b"\\x" + (b"v%d" % g).hex().encode()
        for g in (1, 2, 3)
    ]
    assert rows == [list(pair) for pair in zip(ids, plain, strict=True)]


# -- COPY ------------------------------------------------------------------------


@bounded()
async def test_copy_in_and_out_of_many_rows_equal_direct(proxy: RunningProxy) -> None:
    proxy.upstream.psql("CREATE TABLE IF NOT EXISTS wire_copy (id int, note text)")
    rows = b"".join(b"%d\tnote %d\n" % (i, i) for i in range(50_000))
    chunks = [CopyData(rows[i : i + 65536]) for i in range(0, len(rows), 65536)]
    messages = [
        Query("BEGIN; TRUNCATE wire_copy"),
        Query("COPY wire_copy FROM STDIN"),
        *chunks,
        CopyDone(),
        Query("COPY (SELECT * FROM wire_copy ORDER BY id) TO STDOUT"),
        Query("ROLLBACK"),
    ]
    direct, through = await _both(proxy, messages, count=4)
    assert through == direct
    out = b"".join(f[5:] for f in through if f[0] == ord("d"))
    assert out == rows


@bounded()
async def test_copy_both_on_a_replication_connection(proxy: RunningProxy) -> None:
    """A logical-replication walsender (replication=database) streams physical WAL
    in COPY BOTH mode: CopyBothResponse, keepalives as CopyData, CopyDone from the
    client ends it, and the connection takes commands again."""
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port, replication="database")
        try:
            await client.send(Query("IDENTIFY_SYSTEM"))
            frames = await client.until(b"Z")
            (row,) = [f for f in frames if f.type == ord("D")]
            position = (codec.data_row_values(row.body)[2] or b"").decode()
            await client.send(Query(f"START_REPLICATION PHYSICAL {position}"))
            (both,) = await client.until(b"W")
            # A standby status update from the client, then the end of the stream.
            status = b"r" + struct.pack("!qqqqB", 0, 0, 0, 0, 1)
            await client.send(CopyData(status), CopyDone())
            ended = await client.until(b"Z")
            await client.send(Query("SELECT 1"))
            after = await client.until(b"Z")
            answers.append((both.raw, _types([f.raw for f in ended]), after))
        finally:
            await client.close()
    (direct, through) = answers
    assert through[0] == direct[0]
    assert through[0][0] == ord("W")
    assert through[1].strip("d")[:1] == "c" and through[1].endswith("Z")
    assert [f.raw for f in through[2]] == [f.raw for f in direct[2]]


# -- size limits -----------------------------------------------------------------

BIG = 100 * 2**20  # 100 MB: well within PostgreSQL's 1 GB message limit


@bounded(60)
async def test_100_mb_bind_value_reaches_the_upstream_intact(
    proxy: RunningProxy,
) -> None:
    value = b"0123456789abcdef" * (BIG // 16)
    messages = [
        Parse("", "SELECT length($1), md5($1)", (25,)),
        Bind("", "", (), (value,), ()),
        Execute(""),
        Sync(),
    ]
    client = await RawClient.connect(proxy.host, proxy.port, **QUIET)
    try:
        await client.send(*messages)
        frames = await client.until(b"Z")
    finally:
        await client.close()
    (row,) = [f for f in frames if f.type == ord("D")]
    expected = [str(BIG).encode(), hashlib.md5(value).hexdigest().encode()]
    assert codec.data_row_values(row.body) == expected


@bounded(60)
async def test_16_mb_query_and_result_equal_direct(proxy: RunningProxy) -> None:
    text = "x" * (16 * 2**20)
    direct, through = await _both(proxy, [Query(f"SELECT '{text}'::text, 1")])
    assert through == direct
    assert len(through[1]) > 16 * 2**20


@bounded()
async def test_message_over_the_1_gb_limit_gets_08p01_and_a_close(
    proxy: RunningProxy,
) -> None:
    """Only the length word is sent. PostgreSQL refuses it before reading the body
    and closes without a word to the client (COMMERROR goes to its log only); the
    proxy closes too, after telling the client why."""
    header = b"Q" + struct.pack("!i", codec.MAX_MESSAGE + 1)
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port)
        await client.send_bytes(header)
        answers.append(await asyncio.wait_for(client.rest(), 5))
        await client.close()
    direct, through = answers
    assert direct == []
    assert [f.type for f in through] == [ord("E")]
    error = codec.decode_backend(through[0])
    assert (error.severity, error.sqlstate) == ("FATAL", "08P01")
    assert error.message.startswith("invalid message length")


# -- backpressure ----------------------------------------------------------------

# Far more than the proxy may ever hold for one session.
BOUND_BYTES = 4 * 2**20


def _session_of(proxy: RunningProxy, client: RawClient):
    (key,) = [f for f in client.startup if f.type == ord("K")]
    message = codec.decode_backend(key)
    return proxy.server._cancel_keys[(message.pid, message.secret)], message.pid


def _held(session) -> int:
    """Bytes the proxy holds for a session in its own buffers, both directions."""
    held = 0
    for writer in (session.client_writer, session.upstream_writer):
        held += writer.transport.get_write_buffer_size()
    for reader in (session.client_reader, session.upstream_reader):
        held += len(reader._buffer)
    return held


async def _wait_event(proxy: RunningProxy, pid: int) -> str | None:
    return await _direct_value(
        proxy, "SELECT wait_event FROM pg_stat_activity WHERE pid = $1", pid
    )


async def _slow_reader(proxy: RunningProxy) -> RawClient:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((proxy.host, proxy.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    client = RawClient(reader, writer)
    startup = {"user": "postgres", "database": "postgres", **QUIET}
    await client.send(codec.StartupMessage(codec.PROTOCOL_3_0, startup).encode())
    client.startup = await client.until(b"ZE")
    return client


@bounded(40)
async def test_client_that_stops_reading_stalls_the_upstream_not_the_proxy_memory(
    proxy: RunningProxy,
) -> None:
    """A 1.6 GB result to a client that reads nothing: the upstream ends up waiting
    to write (ClientWrite) while the proxy holds a bounded number of bytes."""
    client = await _slow_reader(proxy)
    session, pid = _session_of(proxy, client)
    try:
        await client.send(
            Query("SELECT repeat('x', 8192) FROM generate_series(1, 200000)")
        )
        # The client's own StreamReader stops reading at 2 x its limit.
        await _until(lambda: _is(proxy, pid, "ClientWrite"), timeout=20)
        samples = []
        for _ in range(10):
            samples.append(_held(session))
            await asyncio.sleep(0.05)
        assert max(samples) < BOUND_BYTES, samples
        assert await _wait_event(proxy, pid) == "ClientWrite"
    finally:
        client.writer.transport.abort()


@bounded(40)
async def test_a_slow_reader_of_rows_the_proxy_computes_stalls_the_upstream_too(
    proxy: RunningProxy,
) -> None:
    """The same with every row computed by the proxy (an 8 kB keystream xor a
    row): computing waits for the client like forwarding does, so the proxy
    holds a bounded number of bytes and the upstream waits to write."""
    client = await _slow_reader(proxy)
    session, pid = _session_of(proxy, client)
    key, nonce = "\\x" + "11" * 32, "\\x" + "22" * 24
    try:
        await client.send(
            Query(
                "SELECT g, pgsodium.crypto_stream_xchacha20_xor("
                "convert_to(repeat('x', 8192) || g, 'utf8'), "
                f"'{nonce}'::bytea, '{key}'::bytea) FROM generate_series(1, 200000) g"
            )
        )
        await _until(lambda: _is(proxy, pid, "ClientWrite"), timeout=20)
        samples = []
        for _ in range(10):
            samples.append(_held(session))
            await asyncio.sleep(0.05)
        assert max(samples) < BOUND_BYTES, samples
        assert await _wait_event(proxy, pid) == "ClientWrite"
    finally:
        client.writer.transport.abort()


async def _is(proxy: RunningProxy, pid: int, event: str) -> bool:
    return await _wait_event(proxy, pid) == event


@bounded(40)
async def test_client_that_writes_faster_than_the_upstream_reads_is_paused(
    proxy: RunningProxy,
) -> None:
    """COPY data sent while the upstream waits for a lock: the proxy stops reading
    the client instead of buffering what it sends; the rows all arrive later."""
    proxy.upstream.psql("CREATE TABLE IF NOT EXISTS wire_slow (note text)")
    proxy.upstream.psql("TRUNCATE wire_slow")
    locker = await RawClient.connect("127.0.0.1", proxy.upstream.port)
    await locker.send(Query("BEGIN; LOCK TABLE wire_slow IN ACCESS EXCLUSIVE MODE"))
    await locker.until(b"Z")
    client = await RawClient.connect(proxy.host, proxy.port, **QUIET)
    session, pid = _session_of(proxy, client)
    line = b"y" * 1023 + b"\n"
    total = 64 * 2**20  # 64 MB of COPY data
    chunk = CopyData(line * 64).encode()

    async def send_all() -> None:
        client.writer.write(Query("COPY wire_slow FROM STDIN").encode())
        for _ in range(total // (len(line) * 64)):
            client.writer.write(chunk)
            await client.writer.drain()
        client.writer.write(CopyDone().encode())
        await client.writer.drain()

    sender = asyncio.create_task(send_all())
    try:
        await _until(lambda: _is(proxy, pid, "relation"), timeout=10)
        samples = []
        for _ in range(10):
            samples.append(_held(session))
            await asyncio.sleep(0.05)
        assert not sender.done()  # the client is being held back
        assert max(samples) < BOUND_BYTES, samples
        await locker.send(Query("ROLLBACK"))
        await locker.until(b"Z")
        await sender
        frames = await client.until(b"Z")
        (done,) = [f for f in frames if f.type == ord("C")]
        assert codec.decode_backend(done).tag == f"COPY {total // len(line)}"
    finally:
        sender.cancel()
        await locker.close()
        await client.close()


# -- FunctionCall ----------------------------------------------------------------


@bounded()
async def test_function_call_of_a_pgsodium_function_never_returns_a_value(
    proxy: RunningProxy,
) -> None:
    """The fastpath names a function by OID, so the proxy cannot see that it is
    pgsodium's: the upstream's own declaration refuses it (fail closed), and the
    session goes on."""
    oid = int(
        proxy.upstream.psql(
            "SELECT 'pgsodium.crypto_aead_det_encrypt(bytea, bytea, bigint, bytea,"
            " bytea)'::regprocedure::oid"
        ).strip()
    )
    call = codec.FunctionCall(oid, (0,), (b"x", b"", b"1", b"pgsodium", None), 0)
    client = await RawClient.connect(proxy.host, proxy.port)
    try:
        await client.send(call)
        frames = await client.until(b"Z")
        assert [f.type for f in frames] == [ord("E"), ord("Z")]
        error = codec.decode_backend(frames[0])
        assert (error.severity, error.sqlstate) == ("ERROR", "0A000"), error.message
        await client.send(Query("SELECT 1"))
        assert [f.type for f in await client.until(b"Z")] == list(b"TDCZ")
    finally:
        await client.close()


@pytest.mark.parametrize("type_byte", [b"H", b"S", b"D", b"C", b"E"])
@bounded()
async def test_small_message_with_a_huge_length_word_is_refused_at_its_header(
    proxy: RunningProxy, type_byte: bytes
) -> None:
    """PostgreSQL bounds Flush, Sync, Describe, Close and Execute at 10 000 bytes
    and checks the length word before reading the body; so does the proxy, which
    never waits for (or buffers) the megabyte announced."""
    client = await RawClient.connect(proxy.host, proxy.port)
    try:
        await client.send_bytes(type_byte + struct.pack("!i", 2**20))
        frames = await asyncio.wait_for(client.rest(), 5)
    finally:
        await client.close()
    (error,) = [codec.decode_backend(f) for f in frames]
    assert (error.severity, error.sqlstate) == ("FATAL", "08P01")
    assert error.message.startswith("invalid message length")


# -- cancel ----------------------------------------------------------------------

SLOW_ROWS = (
    "SELECT g, pgsodium.crypto_aead_det_encrypt(convert_to(g::text, 'utf8'),"
    " ''::bytea, k.id) FROM (SELECT id FROM pgsodium.valid_key"
    " WHERE key_type = 'aead-det' ORDER BY id LIMIT 1) k,"
    " pg_sleep(30) s, generate_series(1, 3) g"
)


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
@bounded()
async def test_cancel_stops_a_statement_whose_rows_the_proxy_computes(
    proxy: RunningProxy, extended: bool
) -> None:
    """The proxy's own cancel key cancels a rewritten statement too (its Execute
    is awaited before anything else goes upstream); the session goes on."""
    client = await RawClient.connect(proxy.host, proxy.port)
    (key,) = [f for f in client.startup if f.type == ord("K")]
    cancel_key = codec.decode_backend(key)
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        if extended:
            await client.send(
                Parse("", SLOW_ROWS), Bind("", "", (), (), ()), Execute(""), Sync()
            )
        else:
            await client.send(Query(SLOW_ROWS))
        await _until(lambda: _is(proxy, cancel_key.pid, "PgSleep"), timeout=10)
        await _cancel_request(proxy, proxy.port, cancel_key.pid, cancel_key.secret)
        frames = await client.until(b"Z")
        errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
        assert [e.sqlstate for e in errors] == ["57014"]
        assert not [f for f in frames if f.type == ord("D")]
        await client.send(Query("SELECT 'after'"))
        rows = [f for f in await client.until(b"Z") if f.type == ord("D")]
        assert codec.data_row_values(rows[0].body) == [b"after"]
    finally:
        await client.close()


# -- cursors over computed rows --------------------------------------------------

CURSOR_ROWS = (
    "DECLARE wire_c {options} CURSOR {hold} FOR SELECT g, convert_from("
    "pgsodium.crypto_aead_det_decrypt(pgsodium.crypto_aead_det_encrypt("
    "convert_to('v' || g, 'utf8'), ''::bytea, k.id), ''::bytea, k.id), 'utf8')"
    " FROM generate_series(1, 10) g, (SELECT id FROM pgsodium.valid_key"
    " WHERE key_type = 'aead-det' ORDER BY id LIMIT 1) k"
)


def _rows(frames: list[Frame]) -> list[list[bytes | None]]:
    return [codec.data_row_values(f.body) for f in frames if f.type == ord("D")]


def _values(start: int, stop: int) -> list[list[bytes | None]]:
    return [[b"%d" % g, b"v%d" % g] for g in range(start, stop)]


@bounded()
async def test_cursor_over_computed_rows_read_every_way(proxy: RunningProxy) -> None:
    """FETCH by simple query and by the extended protocol, the cursor's portal
    described and executed by name, MOVE in between; the rows computed each time."""
    client = await RawClient.connect(proxy.host, proxy.port)
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        await client.send(Query("BEGIN; " + CURSOR_ROWS.format(options="", hold="")))
        await client.until(b"Z")

        await client.send(Query("FETCH 2 FROM wire_c"))
        frames = await client.until(b"Z")
        (description,) = [f for f in frames if f.type == ord("T")]
        names = [f.name for f in codec.decode_backend(description).fields]
        assert names == ["g", "convert_from"]
        assert _rows(frames) == _values(1, 3)

        await client.send(
            Parse("", "FETCH FORWARD 2 FROM wire_c"),
            Bind("", "", (), (), ()),
            Describe("P", ""),
            Execute(""),
            Sync(),
        )
        assert _rows(await client.until(b"Z")) == _values(3, 5)

        await client.send(Query("MOVE 1 IN wire_c"))
        assert [f.type for f in await client.until(b"Z")] == list(b"CZ")
        await client.send(Describe("P", "wire_c"), Execute("wire_c", 2), Sync())
        frames = await client.until(b"Z")
        assert "".join(chr(f.type) for f in frames) == "TDDsZ"
        assert _rows(frames) == _values(6, 8)
        await client.send(Execute("wire_c", 0), Sync())
        assert _rows(await client.until(b"Z")) == _values(8, 11)

        # A FETCH among other statements is refused rather than left unread.
        await client.send(Query("FETCH 1 FROM wire_c; SELECT 1"))
        errors = [f for f in await client.until(b"Z") if f.type == ord("E")]
        assert codec.decode_backend(errors[0]).sqlstate == "0A000"
        await client.send(Query("ROLLBACK"))
        await client.until(b"Z")

        # After the transaction the cursor is gone: PostgreSQL's own errors.
        await client.send(Execute("wire_c", 1), Sync())
        errors = [f for f in await client.until(b"Z") if f.type == ord("E")]
        assert codec.decode_backend(errors[0]).sqlstate == "34000"
        await client.send(Query("FETCH 1 FROM wire_c"))
        errors = [f for f in await client.until(b"Z") if f.type == ord("E")]
        assert codec.decode_backend(errors[0]).sqlstate == "34000"
    finally:
        await client.close()


@bounded()
async def test_binary_scroll_cursor_with_hold_over_computed_rows(
    proxy: RunningProxy,
) -> None:
    client = await RawClient.connect(proxy.host, proxy.port)
    options = CURSOR_ROWS.format(options="BINARY SCROLL", hold="WITH HOLD")
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        await client.send(Query(options))  # held: read after its transaction
        await client.until(b"Z")
        await client.send(Query("FETCH LAST FROM wire_c"))
        assert _rows(await client.until(b"Z")) == [[struct.pack("!i", 10), b"v10"]]
        await client.send(Query("FETCH BACKWARD 2 FROM wire_c"))
        rows = _rows(await client.until(b"Z"))
        assert rows == [[struct.pack("!i", g), b"v%d" % g] for g in (9, 8)]
        await client.send(Query("CLOSE wire_c"))
        await client.until(b"Z")
    finally:
        await client.close()


@bounded()
async def test_with_a_cursor_open_statements_saying_fetch_still_pass_unchanged(
    proxy: RunningProxy,
) -> None:
    """While a cursor over computed rows is open, the proxy looks closer at every
    statement that says "fetch"; those that read no such cursor pass untouched."""
    statements = [
        Query("SELECT 'fetch' AS fetch"),
        Query("SELEC 'fetch'"),  # the upstream's own syntax error
        Query("FETCH 1 FROM no_such_cursor"),
        Parse("", "SELECT 'fetch'"),
        Bind("", "", (), (), ()),
        Execute(""),
        Sync(),
    ]
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.connect("127.0.0.1", port)
        try:
            if port == proxy.port:
                await client.send(Query("SELECT * FROM pgsodium.create_key()"))
                await client.until(b"Z")
            await client.send(Query("BEGIN"))
            await client.until(b"Z")
            if port == proxy.port:
                await client.send(Query(CURSOR_ROWS.format(options="", hold="")))
                await client.until(b"Z")
            await client.send(*statements)
            answers.append([f.raw for f in await client.until(b"Z", count=4)])
        finally:
            await client.close()
    assert answers[1] == answers[0]


@bounded()
async def test_cursor_ends_with_its_block_and_the_limit_refuses_instead_of_forgetting(
    proxy: RunningProxy,
) -> None:
    """A cursor without WITH HOLD is forgotten once its block ends (a new one of the
    same name works), and past the per-session limit a DECLARE is refused (54000)
    rather than an open cursor forgotten (it would be read back as raw inputs)."""
    import proxy.intercept as intercept

    client = await RawClient.connect(proxy.host, proxy.port)
    limit = intercept._CURSORS
    intercept._CURSORS = 3
    try:
        await client.send(Query("SELECT * FROM pgsodium.create_key()"))
        await client.until(b"Z")
        for _ in range(2):
            await client.send(
                Query("BEGIN; " + CURSOR_ROWS.format(options="", hold="") + ";")
            )
            await client.until(b"Z")
            await client.send(Query("FETCH 2 FROM wire_c"))
            assert _rows(await client.until(b"Z")) == _values(1, 3)
            await client.send(Query("COMMIT"))
            await client.until(b"Z")
        await client.send(Query("BEGIN"))
        await client.until(b"Z")
        states = []
        for name in ("c1", "c2", "c3", "c4"):
            declare = CURSOR_ROWS.format(options="", hold="").replace("wire_c", name)
            await client.send(Query(declare))
            frames = await client.until(b"Z")
            errors = [codec.decode_backend(f) for f in frames if f.type == ord("E")]
            states.append(errors[0].sqlstate if errors else "ok")
        assert states == ["ok", "ok", "ok", "54000"]
        await client.send(Query("ROLLBACK"))
        await client.until(b"Z")
    finally:
        intercept._CURSORS = limit
        await client.close()
