"""Vault calls and view reads on exact SQL text."""

from __future__ import annotations

import re

import pytest

from rewriter import tce
from rewriter.errors import RewriteError
from rewriter.tce_write import rewrite

_ID = re.compile(r"'[0-9a-f-]{36}'")
_NONCE = re.compile(r"decode\('[0-9a-f]{32}', 'hex'\)")


def run(sql: str) -> str:
    out = rewrite(sql, tce.parse(sql), {})
    return _NONCE.sub("<nonce>", _ID.sub("<id>", out))


def test_create_secret() -> None:
    assert run("select vault.create_secret('s', 'n', new_description := 'd')") == (
        "select vault._proxy_create_secret(<id>::uuid, encode("
        "pgsodium.crypto_aead_det_encrypt(convert_to(('s')::text, 'utf8'), "
        "convert_to(<id>, 'utf8'), 0::bigint, 'pgsodium'::bytea, <nonce>), 'base64'), "
        "<nonce>, ('n')::text, ('d')::text, NULL::uuid)"
    )


def test_update_secret_without_a_new_secret_keeps_the_old_one() -> None:
    assert run("select vault.update_secret($1, new_name => $2)") == (
        "select vault._proxy_update_secret(($1)::uuid, NULL::text, NULL::bytea, "
        "($2)::text, NULL::text, NULL::uuid)"
    )


def test_decrypted_secrets_read_becomes_a_subquery() -> None:
    out = run("select decrypted_secret from vault.decrypted_secrets where id = $1")
    assert out.startswith("select decrypted_secret from (SELECT id, name, ")
    assert out.endswith(
        "FROM vault.decrypted_secrets _pgsp_vault) AS decrypted_secrets where id = $1"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "select vault.create_secret(md5('x'))",
        "select vault.create_secret(new_name => 'n')",
        "select vault.create_secret('s', description => 'd')",
        "select vault.update_secret(new_secret => 's')",
        "delete from vault.decrypted_secrets",
    ],
)
def test_refused(sql: str) -> None:
    with pytest.raises(RewriteError) as info:
        run(sql)
    assert info.value.sqlstate == "0A000"
