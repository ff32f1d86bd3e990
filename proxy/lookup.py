"""The one upstream query a rewritten statement needs before it runs.

It runs on the client's own connection, as the client's current role, inside the
client's transaction: EXECUTE privileges (42501) first, then key rows by uuid
(P0002), then new parent keys for raw keys created without one. It also reports
search_path, bytea_output and the root key fingerprint recorded by `init`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from . import codec
from .errors import SQLSTATE, ProxyError

if TYPE_CHECKING:
    from .session import Session

# SECURITY: the proxy's own queries run under the client's search_path, which may
# put a schema of its own before pg_catalog: every function, operator and type
# they name is schema-qualified, so none of them can be the client's (a
# has_function_privilege of its own would grant what pgsodium does not).
#
# Privileges first, in a statement of their own: PostgreSQL checks EXECUTE on every
# function of a statement before running any, and pgsodium's 42501 names the
# pgsodium function, not the proxy's helpers.
CHECK_SQL = """\
SELECT pg_catalog.current_schemas(true)::pg_catalog.text,
       pg_catalog.current_setting('bytea_output'),
       (SELECT root_key_fingerprint FROM pgsodium._proxy_meta),
       pgsodium._proxy_check_execute($1::pg_catalog.regprocedure[])::pg_catalog.text,
       ARRAY(SELECT pg_catalog.has_function_privilege(
                      p::pg_catalog.regprocedure, 'EXECUTE')
               FROM pg_catalog.unnest($2::pg_catalog.text[]) AS p)::pg_catalog.text,
       pg_catalog.current_setting('client_encoding'),
       (SELECT s.statement FROM pg_catalog.pg_prepared_statements s
         WHERE s.name OPERATOR(pg_catalog.=) $3::pg_catalog.text
           AND NOT s.from_sql)"""
KEYS_SQL = """\
SELECT x.n, pgsodium._proxy_key_material(x.u, x.t::pgsodium.key_type), NULL, NULL
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]),
                  pg_catalog.unnest($2::pg_catalog.text[]))
       WITH ORDINALITY AS x(u, t, n)
UNION ALL
SELECT OPERATOR(pg_catalog.-) g.n, k.id::pg_catalog.text,
       k.key_id::pg_catalog.text, pg_catalog.encode(k.key_context, 'hex')
  FROM pg_catalog.generate_series(1, $3::pg_catalog.int4) AS g(n),
       LATERAL pgsodium.create_key('aead-det'::pgsodium.key_type) AS k"""


# Keys for a COPY whose rows name their own keys (keystore/sql/proxy_internals.sql).
ALL_KEYS_SQL = (
    "SELECT key_uuid::pg_catalog.text, material FROM pgsodium._proxy_key_materials()"
)
MAX_COPY_KEYS = 100_000


class Bound(NamedTuple):
    """A query of the proxy's own with bind values as the client sent them: raw
    bytes in the client's formats, parsed with the given parameter type OIDs."""

    sql: str
    params: list[bytes | None]
    formats: tuple[int, ...] = ()
    types: tuple[int, ...] = ()


class Skipped(Exception):
    """The upstream discarded the request (an earlier error, until Sync)."""


class LookupFailed(Exception):
    """The upstream raised an error; `error` is the ErrorResponse for the client."""

    def __init__(self, error: bytes) -> None:
        super().__init__("lookup failed")
        self.error = error


@dataclass
class Found:
    schemas: list[str]
    bytea_output: str
    materials: dict[tuple[str, str], str]
    parents: list[tuple[str, int, bytes]]
    # EXECUTE privilege on functions that calls over rows may resolve to.
    privileges: dict[str, bool]
    # The text of the prepared statement named in the lookup, as the protocol's
    # Parse made it (None: no such statement, or one made by SQL PREPARE).
    prepared: str | None = None


def _array(values: list[str]) -> str:
    """A text[]-style array literal (used as a bind value, never spliced into SQL)."""
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


def _schemas(text: str) -> list[str]:
    return [s.strip('"') for s in text.strip("{}").split(",") if s]


async def lookup(
    session: Session,
    checks: list[str],
    keys: list[tuple[str, str]],
    parents: int,
    candidates: list[str] = [],  # noqa: B006 - never mutated
    caller: str = "crypto_aead_det_encrypt",
    statement: str | None = None,
) -> Found:
    """`caller`: the pgsodium function the client called that needs the keys, for
    the 42501 of a role that may not read them; `statement`: a prepared
    statement whose text to read too (Found.prepared)."""
    uuids = [k[0] or "00000000-0000-0000-0000-000000000000" for k in keys]
    queries: list[tuple[str, list[str | None]]] = [
        (CHECK_SQL, [_array(checks), _array(candidates), statement])
    ]
    if keys or parents:
        queries.append(
            (KEYS_SQL, [_array(uuids), _array([k[1] for k in keys]), str(parents)])
        )
    try:
        results = await session.internal(*queries)
    except LookupFailed as exc:
        raise _denied_as(_not_installed(exc), caller) from None
    header = results[0][0]
    rows = results[1] if len(results) > 1 else []
    check_encoding(session, header[5])
    fingerprint = header[2]
    expected = session.server.root_key.fingerprint()
    if fingerprint != expected:
        raise ProxyError(
            SQLSTATE.ROOT_KEY_MISMATCH,
            f"the root key of this pgsodium-proxy (fingerprint {expected}) is not "
            f"the one recorded in this database (fingerprint {fingerprint})",
            hint="Start the proxy with the root key that `pgsodium-proxy init` "
            "recorded for this database.",
        )
    materials: dict[tuple[str, str], str] = {}
    for row in rows:
        n = int(row[0] or 0)
        if n > 0:
            key = keys[n - 1]
            if not key[0]:
                continue  # a NULL uuid never matches (P0002 is raised when used)
            materials[key] = row[1] or ""
    found_parents = [
        (r[1] or "", int(r[2] or 0), bytes.fromhex(r[3] or ""))
        for r in rows
        if int(r[0] or 0) < 0
    ]
    allowed = [v == "t" for v in (header[4] or "{}").strip("{}").split(",") if v]
    return Found(
        _schemas(header[0] or ""),
        header[1] or "hex",
        materials,
        found_parents,
        dict(zip(candidates, allowed, strict=True)),
        header[6],
    )


def utf8_session(client: str | None, server: str | None) -> bool:
    """The proxy reads and writes the text it evaluates (bind values, row inputs,
    computed results) as UTF-8: true when the client's bytes are UTF-8 text.
    SQL_ASCII converts nothing, so over a UTF8 database they are its UTF-8."""
    return client == "UTF8" or (client == "SQL_ASCII" and server == "UTF8")


def encoding_refused(client: str | None) -> ProxyError:
    return ProxyError(
        SQLSTATE.FEATURE_NOT_SUPPORTED,
        "pgsodium-proxy evaluates pgsodium calls, protected columns and Vault only "
        f"with client_encoding UTF8 (this session's is {client})",
        hint="SET client_encoding = 'UTF8' in a statement of its own (most drivers "
        "use UTF8 already).",
    )


def encoding_may_change() -> ProxyError:
    return ProxyError(
        SQLSTATE.FEATURE_NOT_SUPPORTED,
        "pgsodium-proxy cannot evaluate a pgsodium call, a protected column or "
        "Vault after a statement of the same Query message that may change "
        "client_encoding (SET client_encoding or NAMES, RESET ALL, DISCARD, DO, "
        "CALL, set_config, a user's function)",
        hint="Send the statement as a Query of its own.",
    )


def check_encoding(session: Session, client: str | None) -> None:
    """SECURITY: `client` is the upstream's current client_encoding, asked on the
    client's connection right before the proxy evaluates: it sees a change that
    a message sent ahead (a pipeline) made, which no ParameterStatus told yet."""
    if not utf8_session(client, session.parameters.get("server_encoding")):
        raise encoding_refused(client)


def _not_installed(exc: LookupFailed) -> LookupFailed:
    """A database where `pgsodium-proxy init` never ran answers the lookup with
    the proxy's own missing table: said plainly, with the schema's SQLSTATE."""
    error = codec.decode_backend(codec.Frame(exc.error[0], exc.error[5:], exc.error))
    if error.sqlstate in ("42P01", "3F000", "42883") and "pgsodium" in error.message:
        return LookupFailed(
            ProxyError(
                "3F000",
                "the pgsodium schema of pgsodium-proxy is not installed in this "
                "database",
                hint="Run `pgsodium-proxy init` for this database.",
            ).to_error_response()
        )
    return exc


KEY_ROWS_HINT = (
    "pgsodium's key functions and key rows are pgsodium_keyiduser's: grant that "
    "role to this one (GRANT pgsodium_keyiduser TO ...), as pgsodium requires."
)


def _denied_as(exc: LookupFailed, caller: str) -> LookupFailed:
    """The 42501 of a role that may not read key rows (the proxy's functions that
    read them are pgsodium_keyiduser's, as the key rows are with pgsodium): named
    after the pgsodium function the client called, never the proxy's own."""
    error = codec.decode_backend(codec.Frame(exc.error[0], exc.error[5:], exc.error))
    if error.sqlstate != SQLSTATE.INSUFFICIENT_PRIVILEGE or "_proxy_" not in (
        error.message
    ):
        return exc
    return LookupFailed(
        ProxyError(
            SQLSTATE.INSUFFICIENT_PRIVILEGE,
            f"permission denied for function {caller}",
            hint=KEY_ROWS_HINT,
        ).to_error_response()
    )


def sanitize(frame: codec.Frame) -> bytes:
    """An upstream ErrorResponse for the client, without the proxy's internals
    (context lines, positions in the proxy's own query, source file and line)."""
    error = codec.decode_backend(frame)
    kept = tuple((c, v) for c, v in error.fields if c in "SVCMDH")
    return codec.ErrorResponse(kept).encode()


async def all_key_materials(session: Session) -> dict[tuple[str, str], str]:
    """Every aead-det key's material, as the client's current role may read them
    (as `lookup`'s materials). Past MAX_COPY_KEYS keys: 0A000."""
    try:
        (rows,) = await session.internal((ALL_KEYS_SQL, []))
    except LookupFailed as exc:
        # pgsodium's trigger encrypts each row with crypto_aead_det_encrypt.
        raise _denied_as(_not_installed(exc), "crypto_aead_det_encrypt") from None
    if len(rows) > MAX_COPY_KEYS:
        raise ProxyError(
            SQLSTATE.FEATURE_NOT_SUPPORTED,
            f"pgsodium-proxy cannot COPY into a column labelled ENCRYPT WITH KEY "
            f"COLUMN while the database has more than {MAX_COPY_KEYS} aead-det keys "
            "(use INSERT)",
        )
    return {(row[0] or "", "aead-det"): row[1] or "" for row in rows}
