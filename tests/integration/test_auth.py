"""Authentication is relayed, not performed: every method pg_hba.conf asks for works
through the proxy with real drivers, failures come back as PostgreSQL's own errors,
and encryption requests are declined with 'N' as by a server without TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct

import asyncpg
import psycopg
import pytest

from proxy import codec

from .conftest import RunningProxy
from .test_passthrough import RawClient, bounded

# user -> (password, the authentication request code pg_hba.conf makes upstream send)
ROLES = {
    "password_user": ("cleartext pässword", 3),
    "md5_user": ("md5 pässword", 5),
    "scram_user": ("scram pässword", 10),
}


@pytest.fixture(scope="module")
def auth_roles(proxy: RunningProxy) -> dict[str, tuple[str, int]]:
    """The three password roles, created directly upstream as superuser."""
    statements = []
    for user, (password, _) in ROLES.items():
        encryption = "md5" if user == "md5_user" else "scram-sha-256"
        statements += [
            f"DROP ROLE IF EXISTS {user}",
            f"SET password_encryption = '{encryption}'",
            f"CREATE ROLE {user} LOGIN PASSWORD '{password}'",
        ]
    proxy.upstream.psql("; ".join(statements))
    return ROLES


async def _psycopg_login(proxy: RunningProxy, user: str, password: str) -> str:
    async with await psycopg.AsyncConnection.connect(
        proxy.dsn(user=user), password=password, connect_timeout=5
    ) as conn:
        cursor = await conn.execute("SELECT current_user")
        row = await cursor.fetchone()
        assert row is not None
        return str(row[0])


async def _asyncpg_login(proxy: RunningProxy, user: str, password: str) -> str:
    conn = await asyncpg.connect(
        host=proxy.host,
        port=proxy.port,
        user=user,
        password=password,
        database="postgres",
        ssl=False,
    )
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


LOGINS = {"psycopg": _psycopg_login, "asyncpg": _asyncpg_login}


@pytest.mark.parametrize("driver", sorted(LOGINS))
@pytest.mark.parametrize("user", ["postgres", *ROLES])
@bounded()
async def test_login_through_proxy_with_each_auth_method(
    user: str, driver: str, proxy: RunningProxy, auth_roles: dict
) -> None:
    password = auth_roles.get(user, ("", 0))[0]
    assert await LOGINS[driver](proxy, user, password) == user


@pytest.mark.parametrize("user", sorted(ROLES))
@bounded()
async def test_upstream_asks_the_client_for_the_hba_method(
    user: str, proxy: RunningProxy, auth_roles: dict
) -> None:
    """The proxy relays the upstream's own authentication request to the client."""
    client = await RawClient.open(proxy.host, proxy.port)
    try:
        startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": user})
        await client.send(startup.encode())
        (request,) = await client.until(b"R")
        assert struct.unpack_from("!i", request.body)[0] == auth_roles[user][1]
    finally:
        await client.close()


@pytest.mark.parametrize("driver", sorted(LOGINS))
@pytest.mark.parametrize("user", sorted(ROLES))
@bounded()
async def test_wrong_password_is_refused_and_the_proxy_stays_up(
    user: str, driver: str, proxy: RunningProxy, auth_roles: dict
) -> None:
    if driver == "psycopg":
        # libpq reports a failed connection without a SQLSTATE; the raw test
        # below checks the 28P01 on the wire.
        with pytest.raises(psycopg.OperationalError, match="password authentication"):
            await _psycopg_login(proxy, user, "not the password")
    else:
        with pytest.raises(asyncpg.InvalidPasswordError) as caught:
            await _asyncpg_login(proxy, user, "not the password")
        assert caught.value.sqlstate == "28P01"
    assert await _psycopg_login(proxy, "postgres", "") == "postgres"


def _password_message(user: str, password: str, request: codec.Frame) -> bytes:
    code, salt = struct.unpack_from("!i", request.body)[0], request.body[4:]
    if code == 3:
        return codec.PasswordMessage(password.encode() + b"\0").encode()
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
    outer = hashlib.md5(inner + salt).hexdigest().encode()
    return codec.PasswordMessage(b"md5" + outer + b"\0").encode()


@pytest.mark.parametrize("user", ["password_user", "md5_user"])
@bounded()
async def test_wrong_password_gets_fatal_28P01_on_the_wire(
    user: str, proxy: RunningProxy, auth_roles: dict
) -> None:
    answers = []
    for password in ("not the password", auth_roles[user][0]):
        client = await RawClient.open(proxy.host, proxy.port)
        params = {"user": user, "database": "postgres"}
        await client.send(codec.StartupMessage(codec.PROTOCOL_3_0, params).encode())
        (request,) = await client.until(b"R")
        await client.send(_password_message(user, password, request))
        answers.append(await client.until(b"EZ"))
        await client.close()
    refused, accepted = answers
    assert [f.type for f in refused] == [ord("E")]
    error = codec.decode_backend(refused[0])
    assert (error.severity, error.sqlstate) == ("FATAL", "28P01")
    assert accepted[0].raw == codec.Authentication(0).encode()
    assert accepted[-1].raw == codec.ready_for_query("I")


@bounded()
async def test_client_leaving_at_the_password_prompt_ends_only_its_session(
    proxy: RunningProxy, auth_roles: dict
) -> None:
    client = await RawClient.open(proxy.host, proxy.port)
    startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "md5_user"})
    await client.send(startup.encode())
    await client.until(b"R")
    client.writer.close()  # as libpq does when it has no password to give
    assert await _psycopg_login(proxy, "postgres", "") == "postgres"


@bounded()
async def test_passwords_never_reach_the_log(
    proxy: RunningProxy, auth_roles: dict, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for user, (password, _) in auth_roles.items():
            assert await _psycopg_login(proxy, user, password) == user
            with pytest.raises(psycopg.OperationalError):
                await _psycopg_login(proxy, user, password + " wrong")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "session ready" in text  # the proxy's records were captured
    for password, _ in auth_roles.values():
        assert password not in text and "pässword" not in text


# -- encryption requests ---------------------------------------------------------


@pytest.mark.parametrize("request_", [codec.SSLRequest(), codec.GSSENCRequest()])
@bounded()
async def test_encryption_request_is_declined_and_startup_continues(
    request_: codec.SSLRequest | codec.GSSENCRequest, proxy: RunningProxy
) -> None:
    client = await RawClient.open(proxy.host, proxy.port)
    try:
        await client.send(request_.encode())
        assert await client.reader.readexactly(1) == b"N"
        startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "postgres"})
        await client.send(startup.encode())
        assert (await client.until(b"Z"))[-1].raw == codec.ready_for_query("I")
    finally:
        await client.close()


@bounded()
async def test_gssenc_then_ssl_request_are_both_declined(proxy: RunningProxy) -> None:
    client = await RawClient.open(proxy.host, proxy.port)
    try:
        await client.send(codec.GSSENCRequest().encode())
        assert await client.reader.readexactly(1) == b"N"
        await client.send(codec.SSLRequest().encode())
        assert await client.reader.readexactly(1) == b"N"
        startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "postgres"})
        await client.send(startup.encode())
        assert (await client.until(b"Z"))[-1].type == ord("Z")
    finally:
        await client.close()


@bounded()
async def test_psycopg_sslmode_prefer_works_and_require_fails_cleanly(
    proxy: RunningProxy,
) -> None:
    dsn = proxy.dsn()
    async with await psycopg.AsyncConnection.connect(
        dsn, sslmode="prefer", connect_timeout=5
    ) as conn:
        assert conn.info.pgconn.ssl_in_use is False
        await conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        await psycopg.AsyncConnection.connect(dsn, sslmode="require", connect_timeout=5)
    assert await _psycopg_login(proxy, "postgres", "") == "postgres"


async def _first_answer(port: int, startup: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(startup)
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("major", [2, 4])
@bounded()
async def test_unsupported_protocol_startup_gets_the_upstreams_own_answer(
    proxy: RunningProxy, major: int
) -> None:
    """A startup the upstream refuses (2.0 is gone since PostgreSQL 14, 4.0 never
    existed) is answered exactly as the upstream answers it, then closed."""
    startup = codec.StartupMessage(major << 16, {"user": "postgres"}).encode()
    direct = await _first_answer(proxy.upstream.port, startup)
    through = await _first_answer(proxy.port, startup)
    assert through == direct
    if major == 2:  # the 2.0 error format: 'E', the text, NUL
        assert through.startswith(b"EFATAL:  unsupported frontend protocol 2.0")
        assert through.endswith(b"\n\0") and through.count(b"\0") == 1
        return
    reader = codec.FrameReader()
    reader.feed(through)
    (frame,) = list(reader)
    error = codec.decode_backend(frame)
    assert (error.severity, error.sqlstate) == ("FATAL", "0A000")
    assert error.message.startswith("unsupported frontend protocol 4.0")


@bounded()
async def test_newer_minor_version_is_negotiated_by_upstream(
    proxy: RunningProxy,
) -> None:
    """A 3.x startup with unknown _pq_ options gets the upstream's own
    NegotiateProtocolVersion, relayed unchanged, and the session works."""
    params = {"user": "postgres", "_pq_.pt_unknown": "1"}
    answers = []
    for port in (proxy.upstream.port, proxy.port):
        client = await RawClient.open("127.0.0.1", port)
        await client.send(codec.StartupMessage(3 << 16 | 5, params).encode())
        frames = await client.until(b"Z")
        await client.send(codec.Query("SELECT 1"))
        frames += await client.until(b"Z")
        await client.close()
        answers.append([f.raw for f in frames if f.type not in b"SK"])
    assert answers[1] == answers[0]
    assert answers[0][0][:1] == b"v"


@bounded()
async def test_startup_without_user_is_refused_by_upstream(
    proxy: RunningProxy,
) -> None:
    client = await RawClient.open(proxy.host, proxy.port)
    await client.send(codec.StartupMessage(codec.PROTOCOL_3_0, {}).encode())
    frames = await asyncio.wait_for(client.rest(), 5)
    await client.close()
    assert [f.type for f in frames] == [ord("E")]
    assert codec.decode_backend(frames[0]).sqlstate == "28000"
