"""No key bytes, passwords, bind values or protected plaintext in the proxy's logs
(at any level) or in the error texts clients receive (STYLE "Logging")."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from keystore.derive import Env

from .conftest import ROOT_KEY, RunningProxy, make_database, server_log

PASSWORD = "correct horse battery staple 7"
RAW_KEY = bytes(range(200, 232))
PLAINTEXT = "attack at dawn, said nobody"


@pytest.fixture(scope="module")
def db(proxy: RunningProxy) -> str:
    name = make_database(proxy, "secrets")
    proxy.upstream.psql("DROP ROLE IF EXISTS scram_user")
    proxy.upstream.psql(
        "SET password_encryption = 'scram-sha-256'; "
        f"CREATE ROLE scram_user LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
    )
    return name


def test_secrets_never_appear_in_logs_or_errors(
    proxy: RunningProxy, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    dsn = proxy.dsn(user="scram_user", dbname=db) + f" password='{PASSWORD}'"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "select * from pgsodium.create_key('auth', raw_key := %s)", [RAW_KEY]
        )
        conn.execute(
            "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), '', 1)",
            [PLAINTEXT],
        )
        conn.execute("select pgsodium.derive_key(3)")
        for bad in (
            (
                "select pgsodium.crypto_aead_det_encrypt(convert_to(%s, 'utf8'), '', "
                "%s::bytea)",
                [PLAINTEXT, RAW_KEY[:5]],
            ),
            (
                "select pgsodium.crypto_auth(convert_to(%s, 'utf8'), %s::bytea)",
                [PLAINTEXT, RAW_KEY + b"x"],
            ),
            (
                "insert into nowhere values "
                "(pgsodium.crypto_aead_det_decrypt(%s::bytea, '', 1))",
                [RAW_KEY],
            ),
        ):
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(*bad)
            errors.append(str(caught.value))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn(user="scram_user", dbname=db) + " password='nope'")

    text = caplog.text + "\n".join(errors)
    for secret in (
        PASSWORD,
        RAW_KEY.hex(),
        RAW_KEY[:5].hex(),
        PLAINTEXT,
        PLAINTEXT.encode().hex(),
        ROOT_KEY.secret.hex(),
        "fd2126ac878901c31b0eaada293687af",  # derive_key(1) under the root key
    ):
        assert secret not in text
    assert any("statement failed: 22000" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("sql", "params", "secret"),
    [
        # The token the parser stopped at, and an unterminated bytea literal.
        (
            "select pgsodium.crypto_auth(convert_to('m', 'utf8'), "
            f"'' '{RAW_KEY.hex()}')",
            None,
            RAW_KEY.hex(),
        ),
        (
            f"select pgsodium.crypto_auth(convert_to('m', 'utf8'), '\\x{RAW_KEY.hex()}",
            None,
            RAW_KEY.hex(),
        ),
        # Invalid input of a type the proxy converts itself.
        (
            "select pgsodium.crypto_aead_det_encrypt(convert_to('m', 'utf8'), '', "
            f"'{PLAINTEXT}'::uuid)",
            None,
            PLAINTEXT,
        ),
        (
            "select pgsodium.crypto_hash_sha256("
            "convert_to(convert_from(%s::bytea, 'utf8'), 'utf8'))",
            [RAW_KEY],
            "0xc8 0xc9",  # RAW_KEY's first two bytes, not UTF-8
        ),
    ],
    ids=["syntax-error-token", "unterminated-bytea", "uuid-input", "utf8-bytes"],
)
def test_values_quoted_in_error_messages_stay_out_of_the_log(
    proxy: RunningProxy,
    db: str,
    caplog: pytest.LogCaptureFixture,
    sql: str,
    params: list[bytes] | None,
    secret: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    logged_before = len(server_log(proxy))  # other tests log their own bytes
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql, params)
    assert secret in str(caught.value)  # the client gets PostgreSQL's whole message
    assert "statement failed" in caplog.text
    assert secret not in caplog.text
    # The error the proxy raises upstream (to abort the transaction as the server
    # would) does not carry it either: the server's log never sees it.
    assert secret not in server_log(proxy)[logged_before:]


def test_debug_log_follows_statements_without_their_text(
    proxy: RunningProxy, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG each statement the proxy intercepts gets a line with its strategy,
    a keyed fingerprint and its length; never its text (a literal may be a key or
    plaintext)."""
    caplog.set_level(logging.DEBUG)
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        conn.execute(
            f"select pgsodium.crypto_aead_det_encrypt("
            f"convert_to('{PLAINTEXT}', 'utf8'), '', 1)"
        )
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(
        "Query statement " in line
        and ": fold, " in line
        and "ms of the proxy's own" in line
        for line in lines
    ), lines
    assert PLAINTEXT not in caplog.text


def test_sql_text_logs_the_statement_never_a_value_the_proxy_computed(
    proxy: RunningProxy, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """log.sql_text adds the failed statement's text as the client wrote it; the
    error message, which may quote a decrypted plaintext, stays redacted."""
    caplog.set_level(logging.DEBUG)
    config = proxy.server.config
    proxy.server.config = replace(config, log=replace(config.log, sql_text=True))
    try:
        with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
            sealed = conn.execute(
                "select pgsodium.crypto_aead_det_encrypt(%s, ''::bytea, 1::bigint)",
                [PLAINTEXT.encode()],
            ).fetchone()[0]  # type: ignore[index]
            with pytest.raises(psycopg.errors.InvalidTextRepresentation) as caught:
                conn.execute(
                    "select convert_from(pgsodium.crypto_aead_det_decrypt("
                    "%s, ''::bytea, 1::bigint), 'utf8')::int /* marker-17 */",
                    [sealed],
                )
    finally:
        proxy.server.config = config
    assert PLAINTEXT in str(caught.value)  # the client asked for it
    assert PLAINTEXT not in caplog.text
    assert "marker-17" in caplog.text  # the statement's own text


@pytest.mark.parametrize("sql_text", [True, False], ids=["sql_text", "no_sql_text"])
@pytest.mark.parametrize(
    "cursor", [psycopg.ClientCursor, psycopg.Cursor], ids=["simple", "extended"]
)
def test_an_error_computing_a_row_is_logged_as_other_failures(
    proxy: RunningProxy,
    db: str,
    caplog: pytest.LogCaptureFixture,
    sql_text: bool,
    cursor: type[psycopg.Cursor[Any]],
) -> None:
    """A value computed in the result stream that fails (its plaintext is no
    integer) gets the same log line as a statement that fails before it runs:
    with its text under log.sql_text, never the plaintext the message quotes."""
    caplog.set_level(logging.DEBUG)
    config = proxy.server.config
    proxy.server.config = replace(config, log=replace(config.log, sql_text=sql_text))
    try:
        with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
            conn.execute("drop table if exists row_logged")
            conn.execute("create table row_logged (c bytea)")
            conn.execute(
                "insert into row_logged values (pgsodium.crypto_aead_det_encrypt("
                "convert_to(%s, 'utf8'), ''::bytea, 1::bigint))",
                [PLAINTEXT],
            )
            with pytest.raises(psycopg.errors.InvalidTextRepresentation) as caught:
                cursor(conn).execute(
                    "select convert_from(pgsodium.crypto_aead_det_decrypt(c, "
                    "''::bytea, 1::bigint), 'utf8')::int /* marker-23 */ "
                    "from row_logged"
                )
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        proxy.server.config = config
    assert PLAINTEXT in str(caught.value)  # the client asked for it
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (line,) = [x for x in lines if "statement failed: 22P02" in x]
    assert ("marker-23" in line) is sql_text
    assert PLAINTEXT not in caplog.text


def test_re_encryption_sends_only_ciphertext_upstream(
    proxy: RunningProxy, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An UPDATE that re-encrypts rows (a new associated data value) sends the
    database its pre-read and the new ciphertexts, never a plaintext or a key;
    neither its log nor the proxy's holds one, nor does the error of a row that
    does not decrypt."""
    caplog.set_level(logging.DEBUG)
    logged_before = len(server_log(proxy))
    marker = "re-encrypted plaintext 5d1f"
    errors: list[str] = []
    with psycopg.connect(proxy.dsn(dbname=db), autocommit=True) as conn:
        row = conn.execute(
            "select id::text, key_id, key_context from pgsodium.create_key()"
        ).fetchone()
        assert row is not None
        key, key_id, context = row
        conn.execute("drop table if exists reenc cascade")
        conn.execute("create table reenc (id int, secret text, raw bytea, ctx text)")
        for column in ("secret", "raw"):
            conn.execute(
                f"security label for pgsodium on column reenc.{column} "
                f"is 'ENCRYPT WITH KEY ID {key} ASSOCIATED (ctx)'"
            )
        conn.execute(
            "insert into reenc values (1, %s, %s, 'a')", [marker, marker.encode()]
        )
        for factory, ctx in ((psycopg.ClientCursor, "b"), (psycopg.Cursor, "c")):
            factory(conn).execute("update reenc set ctx = %s", [ctx])
        assert conn.execute(
            "select decrypted_secret from decrypted_reenc"
        ).fetchone() == (marker,)
        # A row that does not decrypt (row 1's ciphertext under other associated
        # data, written past the proxy), after one that does.
        with psycopg.connect(proxy.direct_dsn(dbname=db), autocommit=True) as direct:
            direct.execute(
                "insert into reenc select 2, null, raw, 'other' from reenc where id = 1"
            )
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("update reenc set ctx = 'd'")
        errors.append(str(caught.value) + str(caught.value.diag.message_detail))
    log = server_log(proxy)[logged_before:]
    assert "FOR UPDATE OF" in log and "_pgsp_reencrypt" in log  # what went upstream
    derived = Env(ROOT_KEY.secret).derive(int(key_id), 32, bytes(context))
    text = log + caplog.text + "\n".join(errors)
    for secret in (
        marker,
        marker.encode().hex(),
        base64.b64encode(marker.encode()).decode(),
        derived.hex(),
        ROOT_KEY.secret.hex(),
    ):
        assert secret not in text
    assert "invalid ciphertext" in errors[0]
