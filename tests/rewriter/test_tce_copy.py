"""COPY FROM STDIN into a labelled table (rewriter.tce_copy), on exact bytes."""

from __future__ import annotations

import base64

import pytest
from pglast import parse_sql

from rewriter import tce
from rewriter.errors import RewriteError
from rewriter.tce_copy import CopyRows, plan_copy

KEY = "9c2d4b0e-0c4c-4a0e-9d8e-2f4a4b7b6a11"
TABLE = tce.Relation(
    "table",
    '"public"."t"',
    "public.decrypted_t",
    (
        tce.Column("id", "integer"),
        tce.Column("note", "text"),
        tce.Column("secret", "text", encrypted=True, key_id=KEY, associated=("id",)),
        tce.Column("raw", "bytea", encrypted=True, key_id=KEY, nonce="n"),
        tce.Column("n", "bytea"),
        tce.Column("g", "integer", generated=True),
    ),
)


def fake_encrypt(
    message: bytes, additional: bytes | None, nonce: bytes | None, key: str
) -> bytes:
    """Not encryption: shows exactly what the real one would be given (the key
    only when it is not the label's KEY ID)."""
    shown = b"" if key == KEY else b"|" + key.encode()
    return (
        b"E("
        + message
        + b"|"
        + (additional or b"-")
        + b"|"
        + (nonce or b"-")
        + shown
        + b")"
    )


def plan(sql: str):  # type: ignore[no-untyped-def]
    return plan_copy(parse_sql(sql)[0].stmt, TABLE)


def rows(sql: str, data: bytes, chunk: int = 0) -> bytes:
    copy = CopyRows(plan(sql), fake_encrypt)
    if not chunk:
        return copy.feed(data) + copy.finish()
    out = b"".join(copy.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    return out + copy.finish()


def stored_text(ciphertext: bytes) -> bytes:
    """COPY's text form of encode(ciphertext, 'base64'): breaks every 76 chars."""
    encoded = base64.b64encode(ciphertext)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return b"\\n".join(lines)


def test_default_column_list_skips_generated_columns() -> None:
    assert plan("copy t from stdin").columns == ("id", "note", "secret", "raw", "n")


def test_only_encrypted_fields_change() -> None:
    data = b"7\tplain note\thello\t\\\\x0102\t\\\\x0a0b\n"
    expected = (
        b"7\tplain note\t"
        + stored_text(b"E(hello|7|-)")
        + b"\t\\\\x"
        + b"E(\x01\x02|-|\n\x0b)".hex().encode()
        + b"\t\\\\x0a0b\n"
    )
    assert rows("copy t from stdin", data) == expected
    # However the data is cut into CopyData messages.
    for chunk in (1, 2, 5, 13):
        assert rows("copy t from stdin", data * 3, chunk) == expected * 3


def test_escapes_nulls_and_line_ends() -> None:
    data = (
        b"1\t\\N\ta\\tb\\nc\\\\d\\101\\x41\\N\t\\N\t\\N\r\n"  # \N inside is "N"
        b"2\tx\t\\N\t\\N\t\\N\r\n"
        b"\\.\r\n"
        b"anything after the end marker\n"
    )
    out = rows("copy t from stdin", data)
    first, second, marker, after = out.split(b"\r\n", 3)
    assert first.split(b"\t")[2] == stored_text(b"E(a\tb\nc\\dAAN|1|-)")
    assert second == b"2\tx\t\\N\t\\N\t\\N"
    assert marker == b"\\."
    assert after == b"anything after the end marker\n"


def test_last_line_without_newline_header_and_options() -> None:
    sql = "copy t (secret, id) from stdin with (delimiter '|', null 'NULL', header)"
    data = b"secret|id\nsee|42\nNULL|43\nlast|44"
    out = rows(sql, data).split(b"\n")
    assert out[0] == b"secret|id"
    assert out[1] == stored_text(b"E(see|42|-)") + b"|42"
    assert out[2] == b"NULL|43"
    assert out[3] == stored_text(b"E(last|44|-)") + b"|44"
    # A delimiter that is a base64 character is escaped in the values written.
    out = rows("copy t (secret, id) from stdin with (delimiter 'R')", b"vR1\n")
    assert out == b"\\RSh2fDF8LSk=R1\n"  # base64 of E(v|1|-) is RSh2fDF8LSk=


def test_associated_data_is_the_text_form_of_the_value() -> None:
    out = rows("copy t (id, secret) from stdin", b" 0042\tv\n")
    assert out == b" 0042\t" + stored_text(b"E(v|42|-)") + b"\n"
    out = rows("copy t (id, secret) from stdin", b"\\N\tv\n")
    assert out == b"\\N\t" + stored_text(b"E(v|-|-)") + b"\n"


@pytest.mark.parametrize(
    ("data", "sqlstate"),
    [
        (b"1\t\n", "P0001"),  # the empty string, as pgsodium's trigger refuses it
        (b"1\n", "22P04"),  # fields missing
        (b"x1\tTOPSECRET\n", "22P04"),  # associated data that is no integer
        (b"1\tTOPSECRET\\xff\\xfe\n", "22P04"),  # not UTF-8
    ],
)
def test_bad_rows_fail_without_quoting_their_values(data: bytes, sqlstate: str) -> None:
    copy = CopyRows(plan("copy t (id, secret) from stdin"), fake_encrypt)
    with pytest.raises(RewriteError) as caught:
        copy.feed(data)
    assert caught.value.sqlstate == sqlstate
    assert "TOPSECRET" not in caught.value.message
    assert "\\x" not in caught.value.message


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("copy t from stdin (format binary)", "binary format"),
        ("copy t (secret) from stdin", "without id"),
        ("copy t (raw) from stdin", "without n"),
        ("copy t from '/tmp/plain.txt'", "server file"),
        ("copy t from program 'cat'", "server file or program"),
        ("copy t from stdin (encoding 'LATIN1')", "ENCODING"),
        ("copy t from stdin where secret = 'x'", "WHERE"),
        ("copy t from stdin (format csv, quote '')", "csv format with quote"),
        ("copy t from stdin (format csv, delimiter ', ')", "with delimiter"),
        ("copy t from stdin (format text, quote '\"')", "option QUOTE"),
        ("copy t from stdin (force_not_null (id))", "option"),
    ],
)
def test_what_cannot_be_encrypted_is_refused_before_any_row(sql: str, why: str) -> None:
    with pytest.raises(RewriteError) as caught:
        plan(sql)
    assert caught.value.sqlstate == "0A000"
    assert why in caught.value.message


KEYED = tce.Relation(
    "table",
    '"public"."k"',
    "public.decrypted_k",
    (
        tce.Column("id", "integer"),
        tce.Column("s", "text", encrypted=True, key_column="kid", associated=("id",)),
        tce.Column("kid", "uuid"),
        tce.Column("b", "bytea", encrypted=True, key_id=KEY),
    ),
)
OTHER = "0b7e3c2a-1d4f-4e6a-8b9c-0d1e2f3a4b5c"


def keyed_rows(sql: str, data: bytes) -> bytes:
    copy = CopyRows(plan_copy(parse_sql(sql)[0].stmt, KEYED), fake_encrypt)
    return copy.feed(data) + copy.finish()


def test_a_key_column_names_each_rows_key() -> None:
    sql = "copy k from stdin"
    plan = plan_copy(parse_sql(sql)[0].stmt, KEYED)
    assert plan.key_columns and plan.key_ids == (KEY,)
    out = keyed_rows(sql, f"1\tone\t{{{OTHER.upper()}}}\t\\N\n".encode())
    # The key as PostgreSQL reads the uuid; the key column itself is kept as sent.
    assert out == (
        b"1\t"
        + stored_text(b"E(one|1|-|" + OTHER.encode() + b")")
        + f"\t{{{OTHER.upper()}}}\t\\N\n".encode()
    )
    # A NULL key stores NULL, as INSERT (and pgsodium's trigger) does.
    assert keyed_rows(sql, b"2\ttwo\t\\N\t\\N\n") == b"2\t\\N\t\\N\t\\N\n"
    with pytest.raises(RewriteError, match="without kid"):
        plan_copy(parse_sql("copy k (id, s) from stdin")[0].stmt, KEYED)


def test_a_key_column_that_is_no_uuid_or_no_key_fails_the_copy() -> None:
    with pytest.raises(RewriteError) as caught:
        keyed_rows("copy k from stdin", b"1\tTOPSECRET\tnot-a-uuid\t\\N\n")
    assert caught.value.sqlstate == "22P04"
    assert "TOPSECRET" not in caught.value.message

    class Unknown(Exception):
        sqlstate, message = "P0002", "query returned no rows"

    def no_key(*args: object) -> bytes:
        raise Unknown()

    copy = CopyRows(plan_copy(parse_sql("copy k from stdin")[0].stmt, KEYED), no_key)
    with pytest.raises(RewriteError) as caught:
        copy.feed(f"1\tTOPSECRET\t{OTHER}\t\\N\n".encode())
    assert caught.value.sqlstate == "P0002"
    assert caught.value.message == "query returned no rows (COPY line 1, column s)"


def test_values_that_already_are_the_ciphertext_are_kept() -> None:
    """A dump restored through the proxy: its encrypted columns are already
    ciphertext under the label's key and the row's associated data; encrypting
    them again (as pgsodium's trigger does) would lose them."""
    stored = b"E(old|5|-)" * 4  # 40 bytes, the fake's "ciphertext"

    def decrypts(
        value: bytes, additional: bytes | None, nonce: bytes | None, key: str
    ) -> bool:
        return value == stored and additional == b"5" and key == KEY

    copy = CopyRows(plan("copy t (id, secret) from stdin"), fake_encrypt, decrypts)
    as_dumped = b"5\t" + stored_text(stored) + b"\n"
    assert copy.feed(as_dumped) == as_dumped
    # The same bytes under other associated data are a new plaintext.
    out = copy.feed(b"6\t" + stored_text(stored) + b"\n")
    assert out != b"6\t" + stored_text(stored) + b"\n"


def csv_stored(ciphertext: bytes) -> bytes:
    """The quoted CSV form of encode(ciphertext, 'base64'): real newlines inside."""
    encoded = base64.b64encode(ciphertext)
    return (
        b'"'
        + b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        + b'"'
    )


def test_csv_values_are_read_as_postgresql_reads_them() -> None:
    sql = "copy t (id, secret, note) from stdin (format csv)"
    long = b"x" * 80  # its base64 spans lines: written back inside quotes
    data = (
        b'1,"a, ""quoted""\nvalue",plain\n'  # delimiter, quotes, a newline inside
        b"2,," + b'"kept, as ""is"""' + b"\n"  # NULL: unquoted and empty
        b'"3",' + long + b",\r\n"
        b"\\.\n"
        b"after the end marker\n"
    )
    out = rows(sql, data)
    assert out == (
        b"1," + csv_stored(b'E(a, "quoted"\nvalue|1|-)') + b",plain\n"
        b'2,,"kept, as ""is"""\n'
        b'"3",' + csv_stored(b"E(" + long + b"|3|-)") + b",\r\n"
        b"\\.\n"
        b"after the end marker\n"
    )
    # However the data is cut into CopyData messages.
    for chunk in (1, 2, 3, 7, 64):
        assert rows(sql, data, chunk) == out


def test_csv_header_delimiter_quote_escape_and_null_options() -> None:
    sql = (
        "copy t (secret, id) from stdin with (format csv, header, delimiter ';', "
        "quote '|', escape '\\', null 'NULL')"
    )
    data = b"secret;id\n|a\\|b\\\\c|;5\nNULL;6\n|NULL|;7\nlast;8"
    out = rows(sql, data).split(b"\n")
    assert out[0] == b"secret;id"
    # \| and \\ inside quotes are a quote and a backslash; an escape elsewhere
    # is data. The value is written back quoted with the same characters.
    assert out[1] == b"|" + base64.b64encode(b"E(a|b\\c|5|-)") + b"|;5"
    assert out[2] == b"NULL;6"  # NULL
    assert out[3] == b"|" + base64.b64encode(b"E(NULL|7|-)") + b"|;7"  # quoted
    assert out[4] == b"|" + base64.b64encode(b"E(last|8|-)") + b"|;8"


def test_csv_rows_that_cannot_be_read_fail_without_their_values() -> None:
    copy = CopyRows(plan("copy t (id, secret) from stdin (format csv)"), fake_encrypt)
    assert copy.feed(b'1,"TOPSECRET never ends\n') == b""  # one record, so far
    with pytest.raises(RewriteError) as caught:
        copy.finish()
    assert caught.value.sqlstate == "22P04"
    assert "unterminated" in caught.value.message
    assert "TOPSECRET" not in caught.value.message
    copy = CopyRows(plan("copy t (id, secret) from stdin (format csv)"), fake_encrypt)
    with pytest.raises(RewriteError) as caught:
        copy.feed(b'1,""\n')  # the empty string, quoted, is not NULL
    assert caught.value.sqlstate == "P0001"


@pytest.mark.parametrize(
    "data",
    [
        b"h\r2,plain-two\r3,plain-three\r",  # no newline at all: one "header"
        b"2,plain-two\r3,plain-three\n",
        b'2,"quoted"\r\n3,plain\r',
    ],
)
@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_csv_lines_ending_in_a_lone_carriage_return_are_refused(
    data: bytes, chunk: int
) -> None:
    """SECURITY: PostgreSQL ends CSV lines at a lone \\r too; records the proxy
    did not split there would reach the table as written (plaintext)."""
    sql = "copy t (id, secret) from stdin (format csv, header)"
    with pytest.raises(RewriteError) as caught:
        rows(sql, data, chunk)
    assert caught.value.sqlstate == "0A000"
    assert b"plain" not in caught.value.message.encode()


def test_csv_lines_ending_in_crlf_and_quoted_carriage_returns_are_read() -> None:
    sql = "copy t (id, secret) from stdin (format csv)"
    out = rows(sql, b'2,"a\rb"\r\n3,c\r\n', 3)
    assert out.count(b"\r\n") == 2 and b"a\rb" not in out
