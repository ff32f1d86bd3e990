"""keystore.schema against a real PostgreSQL: shapes of §7, grants of §9/§11, behaviour.

Each database used here is created for this module and dropped afterwards; the
pgsodium roles are cluster-wide and may already exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from keystore import catalogue, schema
from keystore.errors import KeystoreError
from proxy.cluster import Cluster

FINGERPRINT = "sha256:keystore-schema-test"
EXPECTED = Path(__file__).parents[1] / "data" / "pgsodium-3.1.11-functions.tsv"
OUTSIDER = "ks_schema_outsider"
STUB_HINT = (
    "Connect through the pgsodium-proxy port: the proxy evaluates this function in "
    "the statements it is sent, not inside the server (a column default, a function "
    "or trigger body, dynamic SQL, a view that runs with its owner's privileges: "
    "make it security_invoker)."
)
ALL_TABLE = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
}
ROLES = ("pgsodium_keyiduser", "pgsodium_keyholder", "pgsodium_keymaker", OUTSIDER)
DUMMY: dict[str, Any] = {
    "bytea": b"\x00",
    "bigint": 1,
    "integer": 16,
    "uuid": uuid.UUID(int=1),
    "text": "x",
    "boolean": False,
    "inet": "127.0.0.1",
    "oid": 0,
    "regrole": "postgres",
}

# ---------------------------------------------------------------- helpers


def conninfo_for(cluster: Cluster, dbname: str, user: str = "postgres") -> str:
    # Every statement here is time-bounded by the server.
    return make_conninfo(
        cluster.dsn,
        dbname=dbname,
        user=user,
        connect_timeout=10,
        options="-c statement_timeout=60000",
    )


def create_database(cluster: Cluster, owner: str = "postgres") -> str:
    name = f"ks_schema_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo_for(cluster, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE {name} OWNER "{owner}"')
    return name


def drop_database(cluster: Cluster, name: str) -> None:
    with psycopg.connect(conninfo_for(cluster, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def install(conninfo: str, fingerprint: str = FINGERPRINT) -> list[str]:
    """Run the script in one transaction; return the NOTICEs it raised."""
    notices: list[str] = []
    with psycopg.connect(conninfo) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute(schema.render(fingerprint))  # type: ignore[arg-type]
    return notices


def error_of(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    """The psycopg error a statement raises, rolled back to a savepoint."""
    with pytest.raises(psycopg.Error) as info:
        with conn.transaction():
            conn.execute(sql, params)
    return info.value


def one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def expected_rows() -> list[list[str]]:
    lines = EXPECTED.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if not line.startswith("#")]


def installed_rows() -> list[list[str]]:
    """Reference rows of the functions the schema declares (all but "tce")."""
    return [
        row
        for row, sig in zip(expected_rows(), catalogue.FUNCTIONS, strict=True)
        if sig.kind in schema.INSTALLED_KINDS
    ]


SNAPSHOT = {
    "functions": """
        SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')',
               pg_get_function_result(p.oid), p.provolatile, p.proisstrict,
               p.prosecdef, p.prokind, pg_get_userbyid(p.proowner), p.proacl::text,
               p.proconfig::text, l.lanname, md5(p.prosrc)
          FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
         WHERE p.pronamespace = 'pgsodium'::regnamespace ORDER BY 1""",
    "relations": """
        SELECT relname, relkind, pg_get_userbyid(relowner), relacl::text
          FROM pg_class WHERE relnamespace = 'pgsodium'::regnamespace ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'pgsodium'::regnamespace AND a.attnum > 0
           AND NOT a.attisdropped ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid, true)
          FROM pg_constraint WHERE connamespace = 'pgsodium'::regnamespace
         ORDER BY 1, 2""",
    "indexes": """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid, 0, true)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'pgsodium'::regnamespace ORDER BY 1""",
    "views": """
        SELECT relname, pg_get_viewdef(oid, true) FROM pg_class
         WHERE relnamespace = 'pgsodium'::regnamespace AND relkind = 'v'
         ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype,
               array(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
                      ORDER BY e.enumsortorder),
               array(SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       FROM pg_attribute a WHERE a.attrelid = t.typrelid
                        AND a.attnum > 0 ORDER BY a.attnum)
          FROM pg_type t WHERE t.typnamespace = 'pgsodium'::regnamespace
         ORDER BY 1""",
    "sequence": """
        SELECT seqtypid::regtype::text, seqstart, seqincrement, seqmin, seqmax,
               seqcache, seqcycle, pg_get_serial_sequence('pgsodium.key', 'key_id')
          FROM pg_sequence WHERE seqrelid = 'pgsodium.key_key_id_seq'::regclass""",
    "schema": """
        SELECT pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace
         WHERE nspname = 'pgsodium'""",
    "default_acl": """
        SELECT pg_get_userbyid(defaclrole), defaclobjtype, defaclacl::text
          FROM pg_default_acl WHERE defaclnamespace = 'pgsodium'::regnamespace
         ORDER BY 1, 2""",
    "triggers": """
        SELECT tgname FROM pg_trigger
         WHERE tgrelid = 'pgsodium.key'::regclass AND NOT tgisinternal""",
}


def snapshot(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(conninfo) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in SNAPSHOT.items()}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def database(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh database with the schema installed once, as superuser."""
    name = create_database(pg_cluster)
    conninfo = conninfo_for(pg_cluster, name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not conn.execute(
            "SELECT FROM pg_roles WHERE rolname = %s", [OUTSIDER]
        ).fetchone():
            conn.execute(f"CREATE ROLE {OUTSIDER} NOLOGIN")
    install(conninfo)
    yield conninfo
    drop_database(pg_cluster, name)


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose work is rolled back after the test."""
    with psycopg.connect(database) as connection:
        yield connection
        connection.rollback()


@pytest.fixture(scope="module")
def functions(database: str) -> dict[str, tuple[Any, ...]]:
    """Installed pgsodium functions keyed as the reference prints them."""
    with psycopg.connect(database) as connection:
        rows = connection.execute(
            """
            SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')',
                   pg_get_function_result(p.oid), p.provolatile, p.proisstrict,
                   p.prosecdef, pg_get_userbyid(p.proowner),
                   array(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                     ELSE pg_get_userbyid(a.grantee) END
                           FROM aclexplode(coalesce(p.proacl,
                                                    acldefault('f', p.proowner))) a
                          WHERE a.privilege_type = 'EXECUTE'
                            AND a.grantee <> p.proowner ORDER BY 1),
                   p.proconfig
              FROM pg_proc p WHERE p.pronamespace = 'pgsodium'::regnamespace
            """
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


# ---------------------------------------------------------------- install


def test_render_is_one_script_with_every_placeholder_filled() -> None:
    script = schema.render(FINGERPRINT)
    assert "{{" not in script and "}}" not in script
    assert FINGERPRINT in script
    assert str(schema.ADVISORY_LOCK_KEY) in script
    assert schema.ADVISORY_LOCK_KEY == 0x7067736F6469756D


@pytest.mark.parametrize("fingerprint", ["", "it's", "a\\b", "x" * 257, "new\nline"])
def test_render_rejects_fingerprints_that_need_quoting(fingerprint: str) -> None:
    with pytest.raises(schema.SchemaError) as info:
        schema.render(fingerprint)
    assert isinstance(info.value, KeystoreError) and isinstance(info.value, ValueError)


def test_install_records_version_and_fingerprint(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT singleton, schema_version, root_key_fingerprint"
        " FROM pgsodium._proxy_meta"
    ).fetchall()
    assert row == [(True, schema.SCHEMA_VERSION, FINGERPRINT)]


def test_second_install_changes_nothing_but_upgraded_at(database: str) -> None:
    before = snapshot(database)
    with psycopg.connect(database) as conn:
        installed = one(conn, "SELECT installed_at FROM pgsodium._proxy_meta")

    install(database)
    after = snapshot(database)

    assert after == before
    with psycopg.connect(database) as conn:
        meta = conn.execute(
            "SELECT installed_at, upgraded_at IS NOT NULL FROM pgsodium._proxy_meta"
        ).fetchone()
    assert meta == (installed, True)


def test_other_root_key_is_refused_and_not_recorded(database: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        install(database, "sha256:some-other-key")

    assert info.value.sqlstate == schema.ROOT_KEY_MISMATCH_SQLSTATE == "28000"
    message = info.value.diag.message_primary or ""
    assert FINGERPRINT in message and "sha256:some-other-key" in message
    with psycopg.connect(database) as conn:
        stored = one(conn, "SELECT root_key_fingerprint FROM pgsodium._proxy_meta")
    assert stored == FINGERPRINT


def test_newer_schema_version_is_refused(conn: psycopg.Connection[Any]) -> None:
    conn.execute("UPDATE pgsodium._proxy_meta SET schema_version = schema_version + 1")

    error = error_of(conn, schema.render(FINGERPRINT))

    assert error.sqlstate == "55000"
    assert "newer than this proxy" in error.diag.message_primary


def test_installed_functions_are_the_catalogue_minus_tce(
    functions: dict[str, tuple[Any, ...]],
) -> None:
    declared = {name for name in functions if not name.startswith("_proxy_")}
    # TCE (keystore/sql/tce.sql) declares pgsodium's TCE functions itself, with
    # pgsodium's signatures and result types.
    tce = {
        row[0]: row[1]
        for row, sig in zip(expected_rows(), catalogue.FUNCTIONS, strict=True)
        if sig.kind == "tce"
    }
    assert declared == {row[0] for row in installed_rows()} | set(tce)
    assert len(declared) == 162 + 15
    assert {name: functions[name][0] for name in tce} == tce
    internal = {
        name.split("(")[0]
        for name in functions
        if name.startswith("_proxy_") and not name.startswith("_proxy_tce_")
    }
    assert internal == {
        "_proxy_check_execute",
        "_proxy_key_material",
        "_proxy_create_raw_key",
        "_proxy_raise",
        "_proxy_key_ref",
        "_proxy_key_materials",
        # Views users build over computed values (keystore/sql/views.sql).
        "_proxy_view_oids",
        "_proxy_view_names",
        "_proxy_view_definition",
        "_proxy_views",
    }


@pytest.mark.parametrize("row", installed_rows(), ids=lambda row: row[0][:70])
def test_function_matches_reference(
    functions: dict[str, tuple[Any, ...]], row: list[str]
) -> None:
    signature, result, flags, implementation, execute = row
    words = flags.split()
    short = {"keyiduser", "keyholder", "keymaker"}
    owner = "pgsodium_keymaker" if "owner keymaker" in implementation else "postgres"
    grantees = sorted(
        r if r == "PUBLIC" else f"pgsodium_{r}" for r in execute.split(",") if r
    )
    assert set(execute.split(",")) <= short | {"PUBLIC"}

    assert functions[signature][:6] == (
        result,
        {"IMM": "i", "STABLE": "s", "VOL": "v"}[words[0]],
        "STRICT" in words,
        "SECDEF" in words,
        owner,
        sorted(g for g in grantees if g != owner),
    )


def test_security_definer_functions_pin_search_path(
    functions: dict[str, tuple[Any, ...]],
) -> None:
    definers = {name: row for name, row in functions.items() if row[3]}
    # uuid, create_key, get_*, proxy (key material and materials, raw key, TCE
    # rebind, drop and ACCESS grants, …), pgsodium's
    # enable/disable_security_label_trigger
    assert len(definers) == 25 + 1 + 3 + 7 + 2
    # SECURITY: pg_temp last. Not listed (search_path = ''), it is searched first
    # for types and relations: a caller's temporary domain named text ran its
    # CHECK as the definer.
    assert all(
        row[6] == ["search_path=pg_catalog, pg_temp"] for row in definers.values()
    )


def test_a_callers_temporary_types_never_run_as_a_definer(database: str) -> None:
    """SECURITY: a caller's temporary domain named like a type a SECURITY DEFINER
    function's body writes (uuid, text) must not be resolved there: its CHECK
    would run with the definer's rights."""
    role = "ks_temp_types"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE pgsodium_keyiduser")
        admin.execute(f"GRANT TEMPORARY ON DATABASE {admin.info.dbname} TO {role}")
        key = create_key(admin)
        assert key is not None
    try:
        with psycopg.connect(database.replace("user=postgres", f"user={role}")) as c:
            c.execute(
                "CREATE FUNCTION pg_temp.same(v pg_catalog.text) RETURNS bool "
                "LANGUAGE plpgsql AS $$ BEGIN IF current_user <> session_user THEN "
                "RAISE EXCEPTION 'ran as %', current_user; END IF; RETURN true; "
                "END $$"
            )
            for name, base in (("uuid", "uuid"), ("text", "text")):
                c.execute(
                    f"CREATE DOMAIN pg_temp.{name} AS pg_catalog.{base} "
                    "CHECK (pg_temp.same(VALUE::pg_catalog.text))"
                )
            material = c.execute(
                "SELECT pgsodium._proxy_key_material(%s::pg_catalog.uuid, 'aead-det')",
                [key[0]],
            ).fetchone()
            assert material is not None and material[0].startswith("d,aead-det,")
    finally:
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_proxy_functions_flags_owners_and_grants(
    functions: dict[str, tuple[Any, ...]],
) -> None:
    got = {name.split("(")[0]: row[:6] for name, row in functions.items()}
    assert got["_proxy_check_execute"] == (
        "void",
        "s",
        False,
        False,
        "postgres",
        ["PUBLIC"],
    )
    assert got["_proxy_key_material"] == (
        "text",
        "s",
        False,
        True,
        "postgres",  # the owner of pgsodium.key: a restore grants privileges last
        ["pgsodium_keyiduser"],
    )
    assert got["_proxy_create_raw_key"] == (
        "pgsodium.valid_key",
        "v",
        False,
        True,
        "pgsodium_keymaker",
        ["PUBLIC", "pgsodium_keyiduser"],
    )
    assert got["_proxy_raise"] == ("void", "v", False, False, "postgres", ["PUBLIC"])


# ---------------------------------------------------------------- shapes (§7)

KEY_COLUMNS = [
    ("id", "uuid", True, "gen_random_uuid()"),
    ("status", "pgsodium.key_status", False, "'valid'::pgsodium.key_status"),
    ("created", "timestamp with time zone", True, "CURRENT_TIMESTAMP"),
    ("expires", "timestamp with time zone", False, None),
    ("key_type", "pgsodium.key_type", False, None),
    ("key_id", "bigint", False, "nextval('pgsodium.key_key_id_seq'::regclass)"),
    ("key_context", "bytea", False, "'\\x7067736f6469756d'::bytea"),
    ("name", "text", False, None),
    ("associated_data", "text", False, "'associated'::text"),
    ("raw_key", "bytea", False, None),
    ("raw_key_nonce", "bytea", False, None),
    ("parent_key", "uuid", False, None),
    ("comment", "text", False, None),
    ("user_data", "text", False, None),
]


def columns(conn: psycopg.Connection[Any], relation: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
        """,
        [relation],
    ).fetchall()


def test_key_table_columns(conn: psycopg.Connection[Any]) -> None:
    assert columns(conn, "pgsodium.key") == KEY_COLUMNS


def test_key_table_constraints(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """
        SELECT conname, pg_get_constraintdef(oid, true) FROM pg_constraint
         WHERE conrelid = 'pgsodium.key'::regclass ORDER BY contype, conname
        """
    ).fetchall()
    assert rows == [
        ("key_key_context_check", "CHECK (length(key_context) = 8)"),
        (
            "pgsodium_raw",
            "CHECK (\nCASE\n"
            "    WHEN raw_key IS NOT NULL THEN key_id IS NULL AND key_context IS NULL"
            " AND parent_key IS NOT NULL\n"
            "    ELSE key_id IS NOT NULL AND key_context IS NOT NULL"
            " AND parent_key IS NULL\nEND)",
        ),
        ("key_parent_key_fkey", "FOREIGN KEY (parent_key) REFERENCES pgsodium.key(id)"),
        ("key_pkey", "PRIMARY KEY (id)"),
        ("pgsodium_key_unique_name", "UNIQUE (name)"),
    ]


def test_key_table_indexes_and_no_trigger(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid, 0, true)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'pgsodium.key'::regclass ORDER BY 1
        """
    ).fetchall()
    key = "ON pgsodium.key USING btree"
    assert rows == [
        (
            "key_key_id_key_context_key_type_idx",
            "CREATE UNIQUE INDEX key_key_id_key_context_key_type_idx "
            f"{key} (key_id, key_context, key_type)",
        ),
        ("key_pkey", f"CREATE UNIQUE INDEX key_pkey {key} (id)"),
        (
            "key_status_idx",
            f"CREATE INDEX key_status_idx {key} (status) WHERE status = ANY "
            "(ARRAY['valid'::pgsodium.key_status, 'default'::pgsodium.key_status])",
        ),
        (
            "key_status_idx1",
            f"CREATE UNIQUE INDEX key_status_idx1 {key} (status) "
            "WHERE status = 'default'::pgsodium.key_status",
        ),
        (
            "pgsodium_key_unique_name",
            f"CREATE UNIQUE INDEX pgsodium_key_unique_name {key} (name)",
        ),
    ]
    # pgsodium's encrypting trigger is left out on purpose: the proxy encrypts.
    assert conn.execute(SNAPSHOT["triggers"]).fetchall() == []


def test_key_id_sequence(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute(SNAPSHOT["sequence"]).fetchall() == [
        ("bigint", 1, 1, 1, 2**63 - 1, 1, False, "pgsodium.key_key_id_seq")
    ]


def test_enums_in_pgsodium_order(conn: psycopg.Connection[Any]) -> None:
    enums = {row[0]: row[2] for row in conn.execute(SNAPSHOT["types"]) if row[1] == "e"}
    assert enums == {
        "key_status": list(catalogue.KEY_STATUSES),
        "key_type": list(catalogue.KEY_TYPES),
    }


def test_composite_types(conn: psycopg.Connection[Any]) -> None:
    composites = {
        f"pgsodium.{row[0]}": row[3]
        for row in conn.execute(SNAPSHOT["types"])
        if row[1] == "c"
        and row[0] not in ("key", "valid_key", "decrypted_key", "_proxy_meta")
        and row[0] not in ("_proxy_label", "_proxy_label_live", "_proxy_tce_rule")
        and row[0] not in ("masking_rule", "mask_columns", "seclabel")
    }
    assert composites == {
        name: [f"{column} {type_}" for column, type_ in attributes]
        for name, attributes in catalogue.COMPOSITE_TYPES.items()
    }


def test_views_have_pgsodiums_columns(conn: psycopg.Connection[Any]) -> None:
    key = {name: type_ for name, type_, _, _ in KEY_COLUMNS}
    valid = "id name status key_type key_id key_context created expires"
    decrypted = "id status created expires key_type key_id key_context name"
    valid_columns = [*valid.split(), "associated_data"]
    decrypted_columns = [
        *decrypted.split(),
        *"associated_data raw_key decrypted_raw_key raw_key_nonce parent_key".split(),
        "comment",
    ]
    assert columns(conn, "pgsodium.valid_key") == [
        (name, key[name], False, None) for name in valid_columns
    ]
    assert columns(conn, "pgsodium.decrypted_key") == [
        (name, key.get(name, "bytea"), False, None) for name in decrypted_columns
    ]


def test_roles_and_memberships(conn: psycopg.Connection[Any]) -> None:
    roles = conn.execute(
        """
        SELECT rolname, rolcanlogin, rolinherit FROM pg_roles
         WHERE rolname LIKE 'pgsodium\\_%' ORDER BY 1
        """
    ).fetchall()
    assert roles == [
        ("pgsodium_keyholder", False, True),
        ("pgsodium_keyiduser", False, True),
        ("pgsodium_keymaker", False, True),
    ]
    members = conn.execute(
        """
        SELECT r.rolname, m.rolname FROM pg_auth_members a
          JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
         WHERE r.rolname LIKE 'pgsodium\\_%' AND m.rolname LIKE 'pgsodium\\_%'
         ORDER BY 1, 2
        """
    ).fetchall()
    assert members == [
        ("pgsodium_keyholder", "pgsodium_keymaker"),
        ("pgsodium_keyiduser", "pgsodium_keyholder"),
        ("pgsodium_keyiduser", "pgsodium_keymaker"),
    ]


def table_privileges(
    conn: psycopg.Connection[Any], relation: str, role: str
) -> set[str]:
    privileges, check = ALL_TABLE, "has_table_privilege"
    if relation.endswith("_seq"):
        privileges, check = {"SELECT", "UPDATE", "USAGE"}, "has_sequence_privilege"
    return {
        p
        for p in privileges
        if one(conn, f"SELECT {check}(%s, %s, %s)", [role, relation, p])
    }


@pytest.mark.parametrize(
    ("relation", "expected"),
    [
        ("pgsodium.key", {"pgsodium_keymaker": ALL_TABLE}),
        (
            "pgsodium.key_key_id_seq",
            {"pgsodium_keymaker": {"SELECT", "UPDATE", "USAGE"}},
        ),
        (
            "pgsodium.valid_key",
            {
                "pgsodium_keymaker": ALL_TABLE,
                "pgsodium_keyholder": ALL_TABLE,
                "pgsodium_keyiduser": {"SELECT"},
            },
        ),
        (
            "pgsodium.decrypted_key",
            {"pgsodium_keymaker": ALL_TABLE, "pgsodium_keyholder": ALL_TABLE},
        ),
        (
            "pgsodium._proxy_meta",
            {role: {"SELECT"} for role in ROLES},
        ),
    ],
)
def test_relation_privileges(
    conn: psycopg.Connection[Any], relation: str, expected: dict[str, set[str]]
) -> None:
    for role in ROLES:
        assert table_privileges(conn, relation, role) == expected.get(role, set()), role


def test_schema_usage_for_public_only(conn: psycopg.Connection[Any]) -> None:
    assert one(conn, "SELECT has_schema_privilege(%s, 'pgsodium', 'USAGE')", [OUTSIDER])
    assert not one(
        conn, "SELECT has_schema_privilege(%s, 'pgsodium', 'CREATE')", [OUTSIDER]
    )
    assert not one(
        conn,
        "SELECT has_schema_privilege('pgsodium_keymaker', 'pgsodium', 'CREATE')",
    )


# ---------------------------------------------------------------- key functions


def create_key(
    conn: psycopg.Connection[Any], args: str = "", params: Any = None
) -> Any:
    return conn.execute(f"SELECT * FROM pgsodium.create_key({args})", params).fetchone()


def test_create_key_derived_with_defaults(conn: psycopg.Connection[Any]) -> None:
    row = create_key(conn)

    key_id = one(conn, "SELECT last_value FROM pgsodium.key_key_id_seq")
    assert row[2:6] == ("valid", "aead-det", key_id, b"pgsodium")
    assert row[1] is None and row[7] is None and row[8] == ""
    valid = conn.execute("SELECT * FROM pgsodium.valid_key WHERE id = %s", [row[0]])
    assert valid.fetchone() == row
    stored = conn.execute(
        "SELECT raw_key, raw_key_nonce, parent_key FROM pgsodium.key WHERE id = %s",
        [row[0]],
    ).fetchone()
    assert stored == (None, None, None)


def test_create_key_named_arguments_and_unique_name(
    conn: psycopg.Connection[Any],
) -> None:
    row = create_key(
        conn,
        "key_type := 'hmacsha256', name := 'ks-unique', key_context := 'abcdefgh',"
        " associated_data => 'ad', expires => now() + interval '1 day'",
    )
    assert (row[1], row[3], row[5], row[8]) == (
        "ks-unique",
        "hmacsha256",
        b"abcdefgh",
        "ad",
    )

    error = error_of(conn, "SELECT pgsodium.create_key(name := 'ks-unique')")

    assert error.sqlstate == "23505"
    assert error.diag.constraint_name == "pgsodium_key_unique_name"


def test_create_key_checks_context_and_parent(conn: psycopg.Connection[Any]) -> None:
    parent = create_key(conn)[0]

    with_parent = error_of(
        conn, "SELECT pgsodium.create_key(parent_key := %s)", [parent]
    )
    short_context = error_of(conn, "SELECT pgsodium.create_key(key_context := 'ab')")

    assert with_parent.diag.constraint_name == "pgsodium_raw"
    assert short_context.diag.constraint_name == "key_key_context_check"


def test_create_key_already_expired_returns_all_null_row(
    conn: psycopg.Connection[Any],
) -> None:
    row = create_key(conn, "name := 'ks-expired', expires := now() - interval '1 s'")

    assert row == (None,) * 9
    assert one(conn, "SELECT count(*) FROM pgsodium.key WHERE name = 'ks-expired'") == 1


def test_create_key_with_raw_key_refuses_and_stores_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    before = one(conn, "SELECT count(*) FROM pgsodium.key")

    error = error_of(conn, "SELECT pgsodium.create_key(raw_key := %s)", [b"k" * 32])

    assert error.sqlstate == "0A000"
    assert error.diag.message_primary == (
        "pgsodium.create_key() with a raw_key must be called through pgsodium-proxy"
    )
    assert error.diag.message_hint == STUB_HINT
    assert one(conn, "SELECT count(*) FROM pgsodium.key") == before


@pytest.mark.parametrize("role", [OUTSIDER, "pgsodium_keyiduser"])
def test_create_key_runs_with_keymaker_rights(
    conn: psycopg.Connection[Any], role: str
) -> None:
    conn.execute(f"SET ROLE {role}")
    row = create_key(conn, "name := %s", [f"ks-by-{role}"])
    conn.execute("RESET ROLE")

    assert row[1] == f"ks-by-{role}"
    denied = error_of(conn, f"SET ROLE {role}; SELECT * FROM pgsodium.key")
    assert denied.sqlstate == "42501"


def test_get_key_functions_filter_like_valid_key(conn: psycopg.Connection[Any]) -> None:
    live = create_key(conn, "name := 'ks-get-live'")
    create_key(conn, "name := 'ks-get-gone', expires := now() - interval '1 s'")
    conn.execute(
        "UPDATE pgsodium.key SET status = 'invalid' WHERE name = 'ks-get-gone'"
    )

    by_id = conn.execute("SELECT * FROM pgsodium.get_key_by_id(%s)", [live[0]])
    assert by_id.fetchall() == [live]
    by_name = conn.execute("SELECT * FROM pgsodium.get_key_by_name('ks-get-gone')")
    assert by_name.fetchall() == [(None,) * 9]
    named = conn.execute("SELECT name FROM pgsodium.get_named_keys('KS-GET-%')")
    assert named.fetchall() == [("ks-get-live",)]
    assert one(conn, "SELECT pgsodium.version()") == "3.1.11"


# ---------------------------------------------------------------- decrypted_key


def insert_raw_key(
    conn: psycopg.Connection[Any],
    parent: Any,
    *,
    key_type: str = "aead-det",
    raw_key: bytes = b"\x01" * 48,
    nonce: bytes | None = b"\x02" * 16,
    associated_data: str | None = "ad",
    name: str | None = None,
) -> uuid.UUID:
    """A raw-key row as the proxy stores it (raw_key already encrypted)."""
    key_uuid = uuid.uuid4()
    row = conn.execute(
        "SELECT * FROM pgsodium._proxy_create_raw_key"
        "(%s, %s, %s, %s, %s, %s, NULL, %s)",
        [key_uuid, key_type, name, raw_key, nonce, parent, associated_data],
    ).fetchone()
    assert row is not None and row[0] == key_uuid
    return key_uuid


def test_decrypted_key_refuses_only_decrypted_raw_key(
    conn: psycopg.Connection[Any],
) -> None:
    parent = create_key(conn)[0]
    raw = insert_raw_key(conn, parent)

    error = error_of(conn, "SELECT decrypted_raw_key FROM pgsodium.decrypted_key")
    assert error.sqlstate == "0A000"
    assert error.diag.message_primary == (
        "pgsodium.crypto_aead_det_decrypt() must be called through pgsodium-proxy"
    )

    rows = conn.execute(
        """
        SELECT id, status, created IS NOT NULL, key_type, key_id, key_context, name,
               associated_data, raw_key, raw_key_nonce, parent_key, comment
          FROM pgsodium.decrypted_key WHERE id IN (%s, %s) ORDER BY key_id NULLS LAST
        """,
        [parent, raw],
    ).fetchall()
    assert [row[0] for row in rows] == [parent, raw]
    assert rows[1][8:11] == (b"\x01" * 48, b"\x02" * 16, parent)
    derived_only = "SELECT decrypted_raw_key FROM pgsodium.decrypted_key WHERE id = %s"
    assert one(conn, derived_only, [parent]) is None


# ---------------------------------------------------------------- stubs


def stub_call(sig: catalogue.Signature) -> tuple[str, list[Any]]:
    if sig.language == "aggregate":
        columns = ", ".join(f"c{i}" for i in range(len(sig.params)))
        values = ", ".join("%s::bytea" for _ in sig.params)
        sql = (
            f"SELECT pgsodium.{sig.name}({columns})"
            f" FROM (VALUES ({values})) AS v({columns})"
        )
        return sql, [DUMMY["bytea"] for _ in sig.params]
    args = ", ".join(f"%s::{p.type}" for p in sig.params)
    return f"SELECT pgsodium.{sig.name}({args})", [DUMMY[p.type] for p in sig.params]


@pytest.mark.parametrize(
    "sig",
    [sig for sig in schema.installed_functions() if sig.kind == "crypto"],
    ids=lambda sig: sig.regprocedure.removeprefix("pgsodium."),
)
def test_crypto_stub_refuses_with_0a000(
    conn: psycopg.Connection[Any], sig: catalogue.Signature
) -> None:
    sql, params = stub_call(sig)

    error = error_of(conn, sql, params)

    assert error.sqlstate == "0A000"
    # An aggregate fails in its state function (crypto_sign_update_agg1/2).
    name = sig.name + ("1" if len(sig.params) == 1 else "2") * (
        sig.language == "aggregate"
    )
    assert error.diag.message_primary == (
        f"pgsodium.{name}() must be called through pgsodium-proxy"
    )
    assert error.diag.message_hint == STUB_HINT


# ---------------------------------------------------------------- _proxy_check_execute

CHECK = "SELECT pgsodium._proxy_check_execute(%s::regprocedure[])"
UU_ENCRYPT = "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid)"
CRYPTO_BOX = "pgsodium.crypto_box(bytea,bytea,bytea,bytea)"
PUBLIC_FN = "pgsodium.crypto_hash_sha256(bytea)"


def test_check_execute_raises_postgresqls_own_42501(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(f"SET ROLE {OUTSIDER}")
    native = error_of(
        conn,
        "SELECT pgsodium.crypto_aead_det_encrypt(''::bytea, ''::bytea, %s)",
        [uuid.UUID(int=1)],
    )

    error = error_of(conn, CHECK, [[PUBLIC_FN, UU_ENCRYPT, CRYPTO_BOX]])

    assert native.sqlstate == error.sqlstate == "42501"
    assert (
        error.diag.message_primary
        == native.diag.message_primary
        == ("permission denied for function crypto_aead_det_encrypt")
    )


def test_check_execute_passes_for_granted_roles(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET ROLE pgsodium_keyiduser")
    conn.execute(CHECK, [[PUBLIC_FN, UU_ENCRYPT]])
    conn.execute(CHECK, [[]])
    conn.execute(CHECK, [None])

    error = error_of(conn, CHECK, [[UU_ENCRYPT, CRYPTO_BOX]])
    assert error.diag.message_primary == "permission denied for function crypto_box"

    conn.execute("SET ROLE pgsodium_keyholder")
    conn.execute(CHECK, [[UU_ENCRYPT, CRYPTO_BOX]])


# ---------------------------------------------------------------- _proxy_key_material

MATERIAL = "SELECT pgsodium._proxy_key_material(%s, %s)"


def test_key_material_of_a_derived_key(conn: psycopg.Connection[Any]) -> None:
    key = create_key(conn, "'hmacsha512', key_context := 'ctx-1234'")

    text = one(conn, MATERIAL, [key[0], "hmacsha512"])

    assert text == f"d,hmacsha512,{key[4]},{b'ctx-1234'.hex()}"


def test_key_material_of_raw_keys_and_their_chain(
    conn: psycopg.Connection[Any],
) -> None:
    root = create_key(conn)
    middle = insert_raw_key(
        conn, root[0], raw_key=b"\xaa" * 48, nonce=None, associated_data=None
    )
    head = insert_raw_key(
        conn, middle, key_type="hmacsha256", raw_key=b"\xbb" * 64, associated_data="é"
    )

    text = one(conn, MATERIAL, [head, "hmacsha256"])

    assert text.split(";") == [
        f"r,hmacsha256,{head},{'bb' * 64},{'02' * 16},{'é'.encode().hex()},{middle}",
        f"r,aead-det,{middle},{'aa' * 48},,-,{root[0]}",
        f"d,aead-det,{root[4]},{b'pgsodium'.hex()}",
    ]
    empty_ad = insert_raw_key(conn, root[0], associated_data="")
    assert one(conn, MATERIAL, [empty_ad, "aead-det"]).split(";")[0].split(",")[5] == ""


def test_key_ref_is_the_material_of_the_rows_own_type(
    conn: psycopg.Connection[Any],
) -> None:
    """_proxy_key_ref, read once a row, writes a derived key's entry itself:
    exactly what _proxy_key_material gives for the row's key_type."""
    derived = create_key(conn, "'hmacsha512', key_context := 'ctx-5678'")
    raw = insert_raw_key(conn, create_key(conn)[0])
    ref = "SELECT pgsodium._proxy_key_ref(%s::uuid)"

    for key_uuid, key_type in ((derived[0], "hmacsha512"), (raw, "aead-det")):
        assert one(conn, ref, [key_uuid]) == one(conn, MATERIAL, [key_uuid, key_type])
    assert one(conn, ref, [uuid.uuid4()]) is None
    assert one(conn, ref, [None]) is None
    assert one(conn, "SELECT pgsodium._proxy_key_ref(42::bigint)") is None


def test_key_material_ignores_status_and_expiry(conn: psycopg.Connection[Any]) -> None:
    key = create_key(conn, "name := 'ks-material-old'")
    conn.execute(
        "UPDATE pgsodium.key SET status = 'expired', expires = now() - interval '1 d'"
        " WHERE id = %s",
        [key[0]],
    )
    assert one(conn, MATERIAL, [key[0], "aead-det"]).startswith("d,aead-det,")


@pytest.mark.parametrize(
    "case", ["wrong type", "unknown", "null uuid", "null type", "parent not aead-det"]
)
def test_key_material_without_a_matching_row_raises_p0002(
    conn: psycopg.Connection[Any], case: str
) -> None:
    derived = create_key(conn)[0]
    hmac_parent = create_key(conn, "'hmacsha256'")[0]
    orphan = insert_raw_key(conn, hmac_parent)
    params = {
        "wrong type": [derived, "secretbox"],
        "unknown": [uuid.uuid4(), "aead-det"],
        "null uuid": [None, "aead-det"],
        "null type": [derived, None],
        "parent not aead-det": [orphan, "aead-det"],
    }[case]

    error = error_of(conn, "SELECT pgsodium._proxy_key_material(%s::uuid, %s)", params)

    assert (error.sqlstate, error.diag.message_primary) == (
        "P0002",
        "query returned no rows",
    )


def test_key_material_stops_on_a_parent_cycle(conn: psycopg.Connection[Any]) -> None:
    root = create_key(conn)[0]
    first = insert_raw_key(conn, root)
    second = insert_raw_key(conn, first)
    conn.execute(
        "UPDATE pgsodium.key SET parent_key = %s WHERE id = %s", [second, first]
    )

    error = error_of(conn, MATERIAL, [second, "aead-det"])

    assert error.sqlstate == "54001"
    assert str(second) in error.diag.message_primary


def test_key_material_is_for_keyiduser_only(conn: psycopg.Connection[Any]) -> None:
    key = create_key(conn)
    conn.execute("SET ROLE pgsodium_keyiduser")
    assert one(conn, MATERIAL, [key[0], "aead-det"]).startswith("d,")
    conn.execute("RESET ROLE")
    conn.execute(f"SET ROLE {OUTSIDER}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(MATERIAL, [key[0], "aead-det"])


# ---------------------------------------------------------------- _proxy_create_raw_key


def test_create_raw_key_stores_the_given_ciphertext(
    conn: psycopg.Connection[Any],
) -> None:
    parent = create_key(conn)[0]
    conn.execute("SET ROLE pgsodium_keyiduser")
    key_uuid = insert_raw_key(
        conn, parent, key_type="auth", name="ks-raw", raw_key=b"\x07" * 64
    )
    conn.execute("RESET ROLE")

    row = conn.execute(
        "SELECT * FROM pgsodium.key WHERE id = %s", [key_uuid]
    ).fetchone()
    assert row is not None
    assert (row[1], row[4], row[5], row[6], row[7], row[8]) == (
        "valid",
        "auth",
        None,
        None,
        "ks-raw",
        "ad",
    )
    assert (row[9], row[10], row[11]) == (b"\x07" * 64, b"\x02" * 16, parent)
    valid = conn.execute("SELECT * FROM pgsodium.get_key_by_id(%s)", [key_uuid])
    assert valid.fetchone()[0] == key_uuid


def test_create_raw_key_without_parent_violates_pgsodium_raw(
    conn: psycopg.Connection[Any],
) -> None:
    error = error_of(
        conn,
        "SELECT pgsodium._proxy_create_raw_key(%s, 'aead-det', NULL, %s, NULL, NULL,"
        " NULL, '')",
        [uuid.uuid4(), b"x"],
    )
    assert error.diag.constraint_name == "pgsodium_raw"


# ---------------------------------------------------------------- _proxy_raise


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("22000", "pgsodium_crypto_aead_det_decrypt_by_id: invalid ciphertext"),
        ("P0002", "query returned no rows"),
        ("42501", "permission denied for function crypto_box"),
        ("0A000", "it's 100% unsupported"),
    ],
)
def test_proxy_raise_raises_exactly(
    conn: psycopg.Connection[Any], sqlstate: str, message: str
) -> None:
    error = error_of(conn, "SELECT pgsodium._proxy_raise(%s, %s)", [sqlstate, message])
    assert (error.sqlstate, error.diag.message_primary) == (sqlstate, message)


# ---------------------------------------------------------------- upgrade, installers

OLD_KEY_TYPES = catalogue.KEY_TYPES[:11]  # pgsodium 3.1.9: no ipcrypt key types


def test_install_over_an_older_install_converges(
    pg_cluster: Cluster, database: str
) -> None:
    name = create_database(pg_cluster)
    conninfo = conninfo_for(pg_cluster, name)
    try:
        with psycopg.connect(conninfo) as conn:
            conn.execute("CREATE SCHEMA pgsodium")
            labels = ", ".join(f"'{label}'" for label in OLD_KEY_TYPES)
            conn.execute(f"CREATE TYPE pgsodium.key_type AS ENUM ({labels})")
        install(conninfo)
        with psycopg.connect(conninfo) as conn:
            kept = create_key(conn, "name := 'ks-kept'")
            degrade_to_an_older_install(conn)

        install(conninfo)

        assert snapshot(conninfo) == snapshot(database)
        with psycopg.connect(conninfo) as conn:
            meta = conn.execute(
                "SELECT schema_version, upgraded_at IS NOT NULL"
                " FROM pgsodium._proxy_meta"
            ).fetchone()
            assert meta == (schema.SCHEMA_VERSION, True)
            assert create_key(conn, "name := 'ks-after'")[4] == kept[4] + 1
            assert one(conn, "SELECT name FROM pgsodium.key WHERE id = %s", [kept[0]])
    finally:
        drop_database(pg_cluster, name)


def degrade_to_an_older_install(conn: psycopg.Connection[Any]) -> None:
    """What an older schema version could lack or have differently."""
    conn.execute(
        "UPDATE pgsodium._proxy_meta SET schema_version = 0, upgraded_at = NULL"
    )
    conn.execute("DROP VIEW pgsodium.decrypted_key")
    conn.execute("DROP INDEX pgsodium.key_status_idx1")
    conn.execute("DROP FUNCTION pgsodium.crypto_box_seal(bytea, bytea)")
    conn.execute("DROP FUNCTION pgsodium._proxy_raise(text, text)")
    # A body that answered instead of refusing, and grants that were too wide.
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgsodium.crypto_hash_sha256(message bytea)"
        " RETURNS bytea LANGUAGE sql IMMUTABLE AS 'SELECT $1'"
    )
    conn.execute(
        "GRANT EXECUTE ON FUNCTION pgsodium.crypto_box(bytea, bytea, bytea, bytea)"
        " TO PUBLIC"
    )
    conn.execute("GRANT SELECT ON pgsodium.key TO pgsodium_keyiduser")
    conn.execute("ALTER FUNCTION pgsodium.create_key OWNER TO postgres")


@pytest.fixture
def installer_role(pg_cluster: Cluster, database: str) -> Iterator[str]:
    """A fresh login role (the pgsodium roles already exist from `database`)."""
    role = f"ks_installer_{uuid.uuid4().hex[:8]}"
    admin = conninfo_for(pg_cluster, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_createrole_installer_makes_keymaker_the_owner(
    pg_cluster: Cluster, installer_role: str
) -> None:
    with psycopg.connect(conninfo_for(pg_cluster, "postgres"), autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {installer_role} CREATEROLE")
    name = create_database(pg_cluster, owner=installer_role)
    try:
        as_installer = conninfo_for(pg_cluster, name, user=installer_role)
        notices = install(as_installer)
        notices += install(as_installer)  # again, now over keymaker-owned functions

        with psycopg.connect(conninfo_for(pg_cluster, name)) as conn:
            # Ownership is given; only the superuser's event triggers are missing.
            own = [n for n in notices if "pgsodium-proxy" in n]
            assert own and all("no event triggers" in n for n in own)
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
                " WHERE oid = ANY(%s::regprocedure[])",
                [keymaker_functions()],
            ).fetchall()
            assert owners == [("pgsodium_keymaker",)]
            assert not one(
                conn,
                "SELECT has_schema_privilege("
                "'pgsodium_keymaker', 'pgsodium', 'CREATE')",
            )
            assert one(
                conn,
                "SELECT pg_has_role(%s, 'pgsodium_keymaker', 'MEMBER')",
                [installer_role],
            )
            conn.execute(f"SET ROLE {OUTSIDER}")
            assert create_key(conn)[2] == "valid"
    finally:
        drop_database(pg_cluster, name)


def test_plain_installer_keeps_ownership_with_a_notice(
    pg_cluster: Cluster, installer_role: str
) -> None:
    name = create_database(pg_cluster, owner=installer_role)
    try:
        notices = install(conninfo_for(pg_cluster, name, user=installer_role))

        assert sorted(n for n in notices if "pgsodium-proxy" in n) == [
            f"pgsodium-proxy: role {installer_role} cannot make pgsodium_keymaker the"
            " owner of pgsodium.create_key() and the SECURITY DEFINER key functions;"
            f" {installer_role} keeps owning them",
            f"pgsodium-proxy: role {installer_role} is not a superuser, so no event "
            "triggers were installed: ALTER TABLE does not regenerate a labelled "
            "table's decrypting view, and dropping a labelled column or table keeps "
            "its labels",
        ]
        with psycopg.connect(conninfo_for(pg_cluster, name)) as conn:
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
                " WHERE oid = ANY(%s::regprocedure[])",
                [keymaker_functions()],
            ).fetchall()
            assert owners == [(installer_role,)]
            conn.execute(f"SET ROLE {OUTSIDER}")
            assert create_key(conn)[2] == "valid"
    finally:
        drop_database(pg_cluster, name)


def keymaker_functions() -> list[str]:
    return [
        sig.regprocedure
        for sig in schema.installed_functions()
        if sig.owner == "pgsodium_keymaker"
    ] + [fn for fn, (owner, _) in schema.PROXY_FUNCTIONS.items() if owner]


def test_init_gives_the_key_lookups_back_to_the_owner_of_the_key_table(
    database: str,
) -> None:
    """An install whose key lookups pgsodium_keymaker owned (as earlier versions
    made it) has them owned by the key table's owner again after init."""
    lookups = [fn for fn, (owner, _) in schema.PROXY_FUNCTIONS.items() if owner is None]
    with psycopg.connect(database, autocommit=True) as conn:
        for fn in lookups:
            conn.execute(f"ALTER FUNCTION {fn} OWNER TO pgsodium_keymaker")
        conn.execute(schema.render(FINGERPRINT))  # type: ignore[arg-type]
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
            " WHERE oid = ANY(%s::regprocedure[])",
            [lookups],
        ).fetchall()
    assert owners == [("postgres",)]


def test_concurrent_installs_serialise_on_the_advisory_lock(database: str) -> None:
    with psycopg.connect(database) as first, psycopg.connect(database) as second:
        first.execute(schema.render(FINGERPRINT))  # type: ignore[arg-type]
        holder = one(first, "SELECT pg_backend_pid()")
        second.execute("SET lock_timeout = '300ms'")

        error = error_of(second, schema.render(FINGERPRINT))

        assert error.sqlstate == "55P03"  # lock_not_available
        blocked_by = one(
            first,
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory'"
            " AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
            [schema.ADVISORY_LOCK_KEY],
        )
        assert blocked_by == holder
        first.commit()
        second.execute(schema.render(FINGERPRINT))  # type: ignore[arg-type]


# ---------------------------------------------------------------- user views


def test_views_over_computed_values_are_listed_however_deep(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE TABLE uv_t (id int, secret bytea, kid uuid)")
    for sql in [
        "CREATE VIEW uv_keys AS SELECT id, decrypted_raw_key "
        "FROM pgsodium.decrypted_key",
        "CREATE VIEW uv_call AS SELECT id, pgsodium.crypto_aead_det_decrypt("
        "secret, ''::bytea, kid) p FROM uv_t",
        "CREATE VIEW uv_agg AS SELECT kid, pgsodium.crypto_sign_update_agg(secret) "
        "FROM uv_t GROUP BY kid",
        "CREATE VIEW uv_vault AS SELECT name FROM vault.decrypted_secrets",
        "CREATE VIEW uv_deep AS SELECT * FROM (SELECT id FROM uv_call) s",
        "CREATE VIEW uv_plain AS SELECT id, key_type FROM pgsodium.valid_key",
        "CREATE VIEW uv_other AS SELECT id FROM uv_t",
        "CREATE MATERIALIZED VIEW uv_mat AS SELECT id FROM uv_t",
    ]:
        conn.execute(sql)
    listed = {
        row[0]
        for row in conn.execute(
            "SELECT o::regclass::text FROM pgsodium._proxy_view_oids() o"
        ).fetchall()
    }
    assert listed == {"uv_keys", "uv_call", "uv_agg", "uv_vault", "uv_deep"}
    names = {r[0] for r in conn.execute("SELECT pgsodium._proxy_view_names()")}
    assert names == listed


def test_view_lookup_gives_qualified_definitions_for_readers_own_privileges(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE SCHEMA uv_s")
    conn.execute("CREATE TABLE uv_s.t (id int, secret bytea, kid uuid)")
    conn.execute(
        "CREATE VIEW uv_s.mine (i, p) AS SELECT id, pgsodium.crypto_aead_det_decrypt"
        "(secret, ''::bytea, kid) FROM uv_s.t"
    )
    conn.execute(
        "CREATE VIEW uv_s.invoker WITH (security_invoker = on) AS SELECT i FROM "
        "uv_s.mine"
    )
    rows = conn.execute(
        "SELECT * FROM pgsodium._proxy_views(ARRAY['uv_s.mine', 'uv_s.invoker', "
        "'uv_s.t', 'no_such_relation'])"
    ).fetchall()
    found = {row[0]: row[1:] for row in rows}
    assert set(found) == {"uv_s.mine", "uv_s.invoker"}
    qualified, columns, definition = found["uv_s.mine"]
    assert (qualified, columns) == ("uv_s.mine", "i, p")
    assert "FROM uv_s.t" in definition and " AS p" in definition
    conn.execute(f"GRANT USAGE ON SCHEMA uv_s TO {OUTSIDER}")
    conn.execute(f"SET LOCAL ROLE {OUTSIDER}")
    rows = conn.execute(
        "SELECT name FROM pgsodium._proxy_views(ARRAY['uv_s.mine', 'uv_s.invoker'])"
    ).fetchall()
    assert rows == [("uv_s.invoker",)]  # not the owner's own view
