"""The upstream schema: pgsodium's roles, key table, views and function declarations.

render() returns ONE idempotent SQL script that the proxy's `init` runs in a single
transaction, as a superuser or a CREATEROLE role; no extension, no C. Crypto functions
are declared from keystore.catalogue with bodies that only refuse. Renders text only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType

from .catalogue import (
    COMPOSITE_TYPES,
    FUNCTIONS,
    KEY_STATUSES,
    KEY_TYPES,
    KEYHOLDER,
    KEYIDUSER,
    KEYMAKER,
    Param,
    Signature,
)
from .errors import KeystoreError

SCHEMA_VERSION = 2  # 2: vault._proxy_create_secret(uuid[], …), _proxy_tce_written

# The root key is this database's credential: a proxy presenting another one is
# refused with 28000 (invalid_authorization_specification), never recorded.
ROOT_KEY_MISMATCH_SQLSTATE = "28000"

# "pgsodium" as a big-endian int64: the transaction-level advisory lock of `init`.
ADVISORY_LOCK_KEY = int.from_bytes(b"pgsodium", "big")

STUB_SQLSTATE = "0A000"
STUB_HINT = (
    "Connect through the pgsodium-proxy port: the proxy evaluates this function in "
    "the statements it is sent, not inside the server (a column default, a function "
    "or trigger body, dynamic SQL, a view that runs with its owner's privileges: "
    "make it security_invoker)."
)

# Catalogue kinds declared from the catalogue; the "tce" functions are declared by
# keystore/sql/tce.sql, with the TCE machinery they belong to.
INSTALLED_KINDS = frozenset({"crypto", "keys"})

# The proxy's own functions (keystore/sql/proxy_internals.sql): owner (None: the
# owner of pgsodium.key, see ownership.sql), EXECUTE.
PROXY_FUNCTIONS: Mapping[str, tuple[str | None, tuple[str, ...]]] = MappingProxyType(
    {
        "pgsodium._proxy_check_execute(regprocedure[])": (None, ("PUBLIC",)),
        # SECURITY DEFINER as the owner of pgsodium.key, not pgsodium_keymaker: a
        # restore (pg_dump) grants privileges last, after its COPYs, and the proxy
        # reads key rows through these while it restores a labelled table.
        "pgsodium._proxy_key_material(uuid,pgsodium.key_type)": (None, (KEYIDUSER,)),
        "pgsodium._proxy_create_raw_key(uuid,pgsodium.key_type,text,bytea,bytea,uuid,"
        "timestamp with time zone,text,bytea)": (KEYMAKER, ("PUBLIC", KEYIDUSER)),
        "pgsodium._proxy_raise(text,text)": (None, ("PUBLIC",)),
        "pgsodium._proxy_key_ref(uuid)": (None, (KEYIDUSER,)),
        "pgsodium._proxy_key_materials()": (None, (KEYIDUSER,)),
        "pgsodium._proxy_key_ref(anyelement)": (None, ("PUBLIC",)),
    }
)

# State function of each aggregate (pgsodium 1.1.0: STYPE bytea, PARALLEL unsafe).
_AGGREGATE_SFUNCS = {
    "pgsodium.crypto_sign_update_agg(bytea)": "pgsodium.crypto_sign_update_agg1",
    "pgsodium.crypto_sign_update_agg(bytea,bytea)": "pgsodium.crypto_sign_update_agg2",
}

_VOLATILITY = {"i": "IMMUTABLE", "s": "STABLE", "v": "VOLATILE"}
# Hex, base64 and the usual "algorithm:" prefixes; nothing that needs SQL quoting.
_FINGERPRINT = re.compile(r"[0-9A-Za-z:+/=._-]{1,256}")


class SchemaError(KeystoreError, ValueError):
    """render() was given something it cannot put in the script."""


def installed_functions() -> tuple[Signature, ...]:
    """The catalogue signatures this schema declares upstream."""
    return tuple(sig for sig in FUNCTIONS if sig.kind in INSTALLED_KINDS)


def render(root_key_fingerprint: str) -> str:
    """The whole install/upgrade script for a proxy whose root key has this print.

    The caller runs it in one transaction and commits; it sets search_path to
    `pg_catalog, pg_temp` for the rest of that transaction.
    """
    if not _FINGERPRINT.fullmatch(root_key_fingerprint):
        raise SchemaError("root key fingerprint must be 1-256 of [0-9A-Za-z:+/=._-]")

    script = "\n\n".join(part for part in _parts() if part)
    for name, value in _placeholders(root_key_fingerprint).items():
        script = script.replace("{{" + name + "}}", value)
    if "{{" in script:
        raise AssertionError("unfilled placeholder in the schema script")
    return script + "\n"


def _parts() -> list[str]:
    """The script's pieces in dependency order."""
    functions = installed_functions()
    return [
        _sql("prologue.sql"),
        _sql("roles.sql"),
        _types(),
        _sql("key_table.sql"),
        *(_stub(sig) for sig in functions if sig.kind == "crypto"),
        *(_aggregate(sig) for sig in functions),
        _sql("decrypted_key.sql"),
        _sql("key_functions.sql"),
        _sql("proxy_internals.sql"),
        # Labels, masking views, decrypting views and the guard (proxy/tce.py).
        _sql("tce.sql"),
        # Supabase Vault 0.3's schema and API (rewriter/vault.py).
        _sql("vault.sql"),
        # Views users build over values the proxy computes (proxy/tce.py).
        _sql("views.sql"),
        *(
            _execute_grants(sig.regprocedure, sig.owner, sig.execute)
            for sig in functions
        ),
        *(_execute_grants(fn, *grant) for fn, grant in PROXY_FUNCTIONS.items()),
        _sql("privileges.sql"),
        _sql("ownership.sql"),
        _sql("epilogue.sql"),
    ]


def _placeholders(root_key_fingerprint: str) -> dict[str, str]:
    keymaker_functions = [
        sig.regprocedure for sig in installed_functions() if sig.owner == KEYMAKER
    ]
    keymaker_functions += [
        fn for fn, (owner, _) in PROXY_FUNCTIONS.items() if owner == KEYMAKER
    ]
    return {
        "root_key_fingerprint": root_key_fingerprint,
        "schema_version": str(SCHEMA_VERSION),
        "fingerprint_sqlstate": ROOT_KEY_MISMATCH_SQLSTATE,
        "advisory_lock_key": str(ADVISORY_LOCK_KEY),
        "keymaker_functions": ",\n      ".join(map(_literal, keymaker_functions)),
        "key_owner_functions": ",\n      ".join(
            _literal(fn) for fn, (owner, _) in PROXY_FUNCTIONS.items() if owner is None
        ),
    }


def _sql(name: str) -> str:
    return (resources.files(__package__) / "sql" / name).read_text("utf-8").strip()


def _literal(text: str) -> str:
    """A string literal that reads the same whatever standard_conforming_strings is."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def _types() -> str:
    """Schema pgsodium, its enums (labels in pgsodium's order) and composite types."""
    enums = {"key_status": KEY_STATUSES, "key_type": KEY_TYPES}
    lines = ["CREATE SCHEMA IF NOT EXISTS pgsodium;", "", "DO $types$", "DECLARE"]
    for name, labels in enums.items():
        listed = ", ".join(_literal(label) for label in labels)
        lines.append(f"  {name}_labels text[] := ARRAY[{listed}];")
    lines.append("BEGIN")
    for name, labels in enums.items():
        lines += _enum(name, labels)
    for name, columns in COMPOSITE_TYPES.items():
        body = ", ".join(f"{column} {type_}" for column, type_ in columns)
        lines += [
            f"  IF pg_catalog.to_regtype('{name}') IS NULL THEN",
            f"    CREATE TYPE {name} AS ({body});",
            "  END IF;",
        ]
    return "\n".join([*lines, "END", "$types$;"])


def _enum(name: str, labels: tuple[str, ...]) -> list[str]:
    """Create enum pgsodium.<name>, or add the labels an older install lacks, in
    order; the DO block holds the labels in the variable `<name>_labels`."""
    var = f"{name}_labels"
    listed = ", ".join(_literal(label) for label in labels)
    return [
        f"  IF pg_catalog.to_regtype('pgsodium.{name}') IS NULL THEN",
        f"    CREATE TYPE pgsodium.{name} AS ENUM ({listed});",
        "  END IF;",
        f"  FOR i IN 2..pg_catalog.cardinality({var}) LOOP",
        "    IF NOT EXISTS (SELECT FROM pg_catalog.pg_enum",
        f"                    WHERE enumtypid = 'pgsodium.{name}'::regtype",
        f"                      AND enumlabel = {var}[i]) THEN",
        "      EXECUTE pg_catalog.format(",
        f"        'ALTER TYPE pgsodium.{name} ADD VALUE %L AFTER %L',",
        f"        {var}[i], {var}[i - 1]);",
        "    END IF;",
        "  END LOOP;",
    ]


def _param(param: Param) -> str:
    head = param.type if param.name is None else f"{param.name} {param.type}"
    if param.default is None:
        return head
    # The catalogue keeps defaults as PostgreSQL prints them ('\x…'::bytea); written
    # as E'\\x…' they mean the same whatever standard_conforming_strings is.
    default = param.default
    if default.startswith("'") and "\\" in default:
        default = "E" + default.replace("\\", "\\\\")
    return f"{head} DEFAULT {default}"


def _stub(sig: Signature) -> str:
    """A declaration with pgsodium's exact signature whose body only refuses."""
    if sig.language == "aggregate":
        return ""
    flags = [_VOLATILITY[sig.volatility]]
    flags += ["STRICT"] * sig.strict
    # SECURITY: pg_temp last (searched first for types when not listed).
    pinned = "SET search_path = pg_catalog, pg_temp"
    flags += ["SECURITY DEFINER", pinned] * sig.security_definer
    message = f"pgsodium.{sig.name}() must be called through pgsodium-proxy"
    return "\n".join(
        [
            f"CREATE OR REPLACE FUNCTION pgsodium.{sig.name}("
            + ", ".join(_param(p) for p in sig.params)
            + ")",
            f"  RETURNS {sig.result}",
            f"  LANGUAGE plpgsql {' '.join(flags)}",
            "AS $stub$",
            "BEGIN",
            f"  RAISE EXCEPTION USING ERRCODE = {_literal(STUB_SQLSTATE)},",
            f"    MESSAGE = {_literal(message)},",
            f"    HINT = {_literal(STUB_HINT)};",
            "END",
            "$stub$;",
        ]
    )


def _aggregate(sig: Signature) -> str:
    if sig.language != "aggregate":
        return ""
    args = ", ".join(_param(p) for p in sig.params)
    sfunc = _AGGREGATE_SFUNCS[sig.regprocedure]
    return (
        f"CREATE OR REPLACE AGGREGATE pgsodium.{sig.name}({args}) (\n"
        f"  SFUNC = {sfunc}, STYPE = {sig.returns}, PARALLEL = UNSAFE);"
    )


def _execute_grants(function: str, owner: str | None, roles: Iterable[str]) -> str:
    """Reset EXECUTE on `function` to exactly `roles` (besides its owner)."""
    revoked = ["PUBLIC", KEYIDUSER, KEYHOLDER] + (
        [] if owner == KEYMAKER else [KEYMAKER]
    )
    return (
        f"REVOKE ALL ON FUNCTION {function} FROM {', '.join(revoked)};\n"
        f"GRANT EXECUTE ON FUNCTION {function} TO {', '.join(roles)};"
    )
